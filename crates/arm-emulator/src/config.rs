//! The emulator's configuration file (YAML or JSON; see docs/emulator.md).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub const DEV_TENANT: &str = "6f1c2a52-0000-4000-8000-00000000a001";
pub const DEV_SUBSCRIPTION: &str = "6f1c2a52-0000-4000-8000-000000000001";
pub const DEV_CLIENT_ID: &str = "6f1c2a52-0000-4000-8000-00000000c001";
pub const DEV_CLIENT_OBJECT_ID: &str = "6f1c2a52-0000-4000-8000-00000000b001";
pub const DEV_CLIENT_SECRET: &str = "fhirlock-dev-secret";
pub const PORTAL_CLIENT_ID: &str = "6f1c2a52-0000-4000-8000-00000000c002";
pub const PORTAL_OBJECT_ID: &str = "6f1c2a52-0000-4000-8000-00000000b002";
pub const PORTAL_CLIENT_SECRET: &str = "portal-dev-secret";
pub const OUTSIDER_CLIENT_ID: &str = "6f1c2a52-0000-4000-8000-00000000c003";
pub const OUTSIDER_OBJECT_ID: &str = "6f1c2a52-0000-4000-8000-00000000b003";
pub const OUTSIDER_CLIENT_SECRET: &str = "outsider-dev-secret";

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub tenants: Vec<Tenant>,
    /// Subscriptions that exist. Subscriptions named in role assignments and seeds exist too.
    #[serde(default)]
    pub subscriptions: Vec<String>,
    #[serde(default)]
    pub role_assignments: Vec<RoleAssignment>,
    #[serde(default)]
    pub features: Vec<FeatureRegistration>,
    #[serde(default)]
    pub throttle: Throttle,
    #[serde(default)]
    pub lro: Lro,
    #[serde(default)]
    pub behaviour: Behaviour,
    /// Extra api-versions accepted per resource type (added to the built-in lists).
    #[serde(default)]
    pub api_versions: BTreeMap<String, Vec<String>>,
    /// Resources created (already Succeeded) when the data directory is new.
    #[serde(default)]
    pub seed: Vec<SeedResource>,
    /// Access-token lifetime in seconds (Entra's default is about an hour).
    #[serde(default = "default_token_lifetime")]
    pub token_lifetime_seconds: u64,
    /// The host's managed identities, for `/msi/token` and `/metadata/identity/oauth2/token`
    /// (`managed_identity.rs`).
    #[serde(default)]
    pub managed_identity: ManagedIdentityConfig,
}

/// `managedIdentity`: which clients of `tenants` the emulated host has as managed identities.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedIdentityConfig {
    /// The value `X-IDENTITY-HEADER` must carry (App Service's `IDENTITY_HEADER`).
    #[serde(default = "default_identity_header")]
    pub header: String,
    /// The client id answered when a request names none.
    #[serde(default)]
    pub system_assigned: Option<String>,
    /// Client ids a request may name (`client_id`, or the client's `object_id`).
    #[serde(default)]
    pub user_assigned: Vec<String>,
}

impl Default for ManagedIdentityConfig {
    fn default() -> Self {
        ManagedIdentityConfig {
            header: default_identity_header(),
            system_assigned: None,
            user_assigned: Vec::new(),
        }
    }
}

/// The development `IDENTITY_HEADER`.
pub const DEV_IDENTITY_HEADER: &str = "fhirlock-dev-identity-header";

fn default_identity_header() -> String {
    DEV_IDENTITY_HEADER.into()
}

fn default_token_lifetime() -> u64 {
    3599
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tenant {
    pub id: String,
    #[serde(default)]
    pub clients: Vec<Client>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Client {
    pub client_id: String,
    /// The service principal's object id: what ARM role assignments and error messages name.
    pub object_id: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub federated_credentials: Vec<FederatedCredential>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FederatedCredential {
    pub issuer: String,
    pub subject: String,
    #[serde(default = "default_audiences")]
    pub audiences: Vec<String>,
    /// A JWKS file with the issuer's public keys. If absent, `jwksUrl` (default `{issuer}/openid/v1/jwks`) is fetched.
    #[serde(default)]
    pub jwks_file: Option<String>,
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// A bearer token (file) to present when fetching `jwksUrl` (the kube-apiserver serves
    /// `/openid/v1/jwks` only to authenticated callers by default). Read on every fetch.
    #[serde(default)]
    pub jwks_bearer_token_file: Option<String>,
    /// PEM bundle to trust when fetching `jwksUrl` (e.g. the kube-apiserver's CA).
    #[serde(default)]
    pub ca_file: Option<String>,
}

fn default_audiences() -> Vec<String> {
    vec!["api://AzureADTokenExchange".to_string()]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleAssignment {
    /// Object id (or client id) of the principal.
    pub principal: String,
    /// ARM scope: `/subscriptions/{sub}`, `/subscriptions/{sub}/resourceGroups/{rg}`, or a resource id.
    pub scope: String,
    /// Any of `read`, `write`, `delete` (`*` for all).
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FeatureRegistration {
    pub subscription: String,
    pub namespace: String,
    pub name: String,
    /// `Registered`, `NotRegistered`, `Registering`, `Unregistering`.
    pub state: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bucket {
    pub capacity: f64,
    pub refill_per_second: f64,
}

/// Token-bucket sizes per (subscription, principal, operation kind). Defaults are ARM's (§5.4).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Throttle {
    #[serde(default = "reads_bucket")]
    pub reads: Bucket,
    #[serde(default = "writes_bucket")]
    pub writes: Bucket,
    #[serde(default = "writes_bucket")]
    pub deletes: Bucket,
}

fn reads_bucket() -> Bucket {
    Bucket {
        capacity: 250.0,
        refill_per_second: 25.0,
    }
}
fn writes_bucket() -> Bucket {
    Bucket {
        capacity: 200.0,
        refill_per_second: 10.0,
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            reads: reads_bucket(),
            writes: writes_bucket(),
            deletes: writes_bucket(),
        }
    }
}

/// Durations in seconds of real-Azure time; the global `--time-scale` multiplies them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lro {
    /// Keyed by resource type (`Microsoft.Network/virtualNetworks/subnets`, …, `resourceGroups`,
    /// `Microsoft.Features/features`). Missing types use `default`.
    #[serde(default = "default_durations")]
    pub durations: BTreeMap<String, f64>,
    #[serde(default = "default_duration")]
    pub default: f64,
    /// `Retry-After` the emulator advertises, in real-Azure seconds (scaled, minimum 1).
    #[serde(default = "default_retry_after")]
    pub retry_after_seconds: f64,
    /// Lower bound for the scaled `Retry-After` (set 0 to let tiny time scales poll as fast as they like).
    #[serde(default = "one_second")]
    pub min_retry_after_seconds: u64,
    /// Delay before a Cosmos account's firewall change reaches its data plane (real Azure: up to 15 min).
    #[serde(default = "default_cosmos_propagation")]
    pub cosmos_firewall_propagation_seconds: f64,
    /// Delay before a subnet's service-endpoint change switches its traffic's source identity.
    #[serde(default = "default_endpoint_propagation")]
    pub service_endpoint_propagation_seconds: f64,
}

fn default_duration() -> f64 {
    10.0
}
fn one_second() -> u64 {
    1
}
fn default_retry_after() -> f64 {
    10.0
}
fn default_endpoint_propagation() -> f64 {
    60.0
}
fn default_cosmos_propagation() -> f64 {
    900.0
}
fn default_durations() -> BTreeMap<String, f64> {
    [
        ("resourceGroups", 5.0),
        ("Microsoft.Network/virtualNetworks", 10.0),
        ("Microsoft.Network/virtualNetworks/subnets", 10.0),
        ("Microsoft.Network/applicationGateways", 300.0),
        // Backend health (a POST action) [U: no documented figure].
        ("Microsoft.Network/applicationGateways/backendhealth", 10.0),
        ("Microsoft.Network/publicIPAddresses", 5.0),
        ("Microsoft.Web/serverfarms", 0.0),
        ("Microsoft.Web/sites", 0.0),
        ("Microsoft.DocumentDB/databaseAccounts", 120.0),
        ("Microsoft.Features/features", 60.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl Default for Lro {
    fn default() -> Self {
        Lro {
            durations: default_durations(),
            default: default_duration(),
            retry_after_seconds: default_retry_after(),
            min_retry_after_seconds: one_second(),
            cosmos_firewall_propagation_seconds: default_cosmos_propagation(),
            service_endpoint_propagation_seconds: default_endpoint_propagation(),
        }
    }
}

impl Lro {
    pub fn duration_for(&self, rtype: &str) -> f64 {
        self.durations
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(rtype))
            .map(|(_, v)| *v)
            .unwrap_or(self.default)
    }
}

/// Switches for behaviour the reference marks unconfirmed ([U]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behaviour {
    /// Status for overlapping Cosmos writes: 412 (`PreconditionFailed`, observed) or 409.
    #[serde(default = "default_cosmos_conflict")]
    pub cosmos_conflict_status: u16,
    /// Status for overlapping Network writes: 409 `AnotherOperationInProgress` (default) or 429
    /// `RetryableErrorDueToAnotherOperation` with `Retry-After`.
    #[serde(default = "default_network_conflict")]
    pub network_conflict_status: u16,
    /// Network-isolated gateways always (`always`), only when the subscription registered
    /// `Microsoft.Network/EnableApplicationGatewayNetworkIsolation` (`feature`), or never (`never`).
    #[serde(default = "default_isolation")]
    pub network_isolation: String,
    /// A gateway operation also locks the VNet of its subnet (409 on subnet writes meanwhile).
    #[serde(default = "yes")]
    pub gateway_locks_vnet: bool,
    /// Enforce `If-Match` and `If-None-Match` on PUT, PATCH and DELETE, as the ARM RPC says
    /// resource providers do (`engine/preconditions.rs`). `false` ignores them, as an RP that does
    /// not implement them would ([U] for Network subnets and gateways; reference §5.5).
    #[serde(default = "yes")]
    pub enforce_if_match: bool,
    /// Sites per page of `WebApps_List` / `WebApps_ListByResourceGroup`; more come by `nextLink`.
    /// Azure's page size is not documented [U]; tests lower it to make clients page.
    #[serde(default = "default_sites_page_size")]
    pub sites_page_size: usize,
}

fn default_sites_page_size() -> usize {
    100
}

fn default_cosmos_conflict() -> u16 {
    412
}
fn default_network_conflict() -> u16 {
    409
}
fn default_isolation() -> String {
    "feature".to_string()
}
fn yes() -> bool {
    true
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            cosmos_conflict_status: 412,
            network_conflict_status: 409,
            network_isolation: default_isolation(),
            gateway_locks_vnet: true,
            enforce_if_match: true,
            sites_page_size: default_sites_page_size(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedResource {
    /// Full ARM id (`/subscriptions/…/resourceGroups/rg` or `…/providers/…`).
    pub id: String,
    /// The PUT body.
    #[serde(default)]
    pub body: Value,
}

impl Config {
    /// The development tenant used when no config file is given: an operator principal and a
    /// "portal user" with read/write/delete on the dev subscription, and an outsider with no role.
    pub fn dev() -> Config {
        let client = |cid: &str, oid: &str, name: &str, secret: &str| Client {
            client_id: cid.into(),
            object_id: oid.into(),
            display_name: name.into(),
            secrets: vec![secret.into()],
            federated_credentials: vec![],
        };
        Config {
            tenants: vec![Tenant {
                id: DEV_TENANT.into(),
                clients: vec![
                    client(
                        DEV_CLIENT_ID,
                        DEV_CLIENT_OBJECT_ID,
                        "fhirlock-dev",
                        DEV_CLIENT_SECRET,
                    ),
                    client(
                        PORTAL_CLIENT_ID,
                        PORTAL_OBJECT_ID,
                        "portal-user",
                        PORTAL_CLIENT_SECRET,
                    ),
                    client(
                        OUTSIDER_CLIENT_ID,
                        OUTSIDER_OBJECT_ID,
                        "outsider",
                        OUTSIDER_CLIENT_SECRET,
                    ),
                ],
            }],
            subscriptions: vec![DEV_SUBSCRIPTION.into()],
            role_assignments: vec![
                RoleAssignment {
                    principal: DEV_CLIENT_OBJECT_ID.into(),
                    scope: format!("/subscriptions/{DEV_SUBSCRIPTION}"),
                    actions: vec!["*".into()],
                },
                RoleAssignment {
                    principal: PORTAL_OBJECT_ID.into(),
                    scope: format!("/subscriptions/{DEV_SUBSCRIPTION}"),
                    actions: vec!["*".into()],
                },
            ],
            token_lifetime_seconds: default_token_lifetime(),
            ..Config::default()
        }
    }

    /// Reads YAML (a superset of JSON).
    pub fn load(path: &std::path::Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut c: Config =
            serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if c.token_lifetime_seconds == 0 {
            c.token_lifetime_seconds = default_token_lifetime();
        }
        Ok(c)
    }

    pub fn find_client(&self, tenant: &str, client_id: &str) -> Option<&Client> {
        self.tenants
            .iter()
            .find(|t| t.id.eq_ignore_ascii_case(tenant))?
            .clients
            .iter()
            .find(|c| c.client_id.eq_ignore_ascii_case(client_id))
    }

    pub fn principal_name(&self, oid: &str) -> Option<&str> {
        self.tenants
            .iter()
            .flat_map(|t| t.clients.iter())
            .find(|c| c.object_id.eq_ignore_ascii_case(oid))
            .map(|c| c.display_name.as_str())
    }

    pub fn subscription_exists(&self, sub: &str) -> bool {
        let scoped = |s: &str| {
            s.split('/')
                .nth(2)
                .is_some_and(|x| x.eq_ignore_ascii_case(sub))
        };
        self.subscriptions
            .iter()
            .any(|s| s.eq_ignore_ascii_case(sub))
            || self.role_assignments.iter().any(|r| scoped(&r.scope))
            || self.seed.iter().any(|r| scoped(&r.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_config_has_operator_portal_and_outsider() {
        let c = Config::dev();
        assert!(c.find_client(DEV_TENANT, DEV_CLIENT_ID).is_some());
        assert!(c.find_client(DEV_TENANT, PORTAL_CLIENT_ID).is_some());
        assert!(c.subscription_exists(DEV_SUBSCRIPTION));
        assert!(!c.subscription_exists("00000000-0000-0000-0000-000000000000"));
    }

    #[test]
    fn example_configs_parse() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/");
        for f in ["arm-emulator.yaml", "arm-emulator-estate.yaml"] {
            let c = Config::load(std::path::Path::new(&format!("{root}{f}"))).unwrap();
            assert!(!c.tenants.is_empty(), "{f}");
        }
    }
}
