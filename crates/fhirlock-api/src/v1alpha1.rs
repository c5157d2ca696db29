//! `SecuredFhirEndpoint` v1alpha1: the outcome a platform team declares.
//!
//! Every rule that can be checked without Azure lives here, as a schema bound or a CEL rule, so the
//! apiserver rejects a bad manifest at `kubectl apply` time. Rules that need Azure (a prefix outside
//! the VNet, a subnet in use) become a `Stalled` condition at reconcile time instead.
//!
//! Field descriptions are the doc comments below: they are what `kubectl explain` shows.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// ARM resource IDs are case-insensitive in Azure; the prefix checks below accept any case.
const SUB_PREFIX: &str = "(?i)^/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourceGroups/[-a-zA-Z0-9_.()]{1,90}/providers/";

/// Declares an Azure-hosted FHIR API that is reachable only through a private Application Gateway
/// on the HSCN-connected virtual network, with every other way in closed.
// Several printcolumn(...) share `type_ = "string"`; clippy reads them as one attribute repeated.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "fhirlock.io",
    version = "v1alpha1",
    kind = "SecuredFhirEndpoint",
    plural = "securedfhirendpoints",
    singular = "securedfhirendpoint",
    shortname = "sfe",
    category = "fhirlock",
    namespaced,
    status = "SecuredFhirEndpointStatus",
    cel,
    doc = "A FHIR API kept reachable only through a private Application Gateway on the HSCN network, with every other way in closed.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(
        name = "Reachable",
        type_ = "string",
        description = "Whether the gateway's health probe reaches the FHIR server (its backend health)",
        json_path = r#".status.conditions[?(@.type=="Reachable")].status"#
    ),
    printcolumn(
        name = "Gateway-IP",
        type_ = "string",
        json_path = ".status.gateway.privateIPAddress"
    ),
    printcolumn(
        name = "Findings",
        type_ = "integer",
        json_path = ".status.findingCount"
    ),
    // priority 1: only in `kubectl get -o wide`.
    printcolumn(
        name = "Mode",
        type_ = "string",
        description = "Enforce changes Azure; Audit only reports",
        json_path = ".spec.mode",
        priority = 1
    ),
    printcolumn(
        name = "Gateway",
        type_ = "string",
        description = "The Application Gateway's name",
        json_path = ".spec.gateway.name",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new(
        "!isCIDR(self.network.gatewaySubnet.addressPrefix) || !isIP(self.gateway.privateIPAddress) || cidr(self.network.gatewaySubnet.addressPrefix).containsIP(self.gateway.privateIPAddress)"
    ).message("spec.gateway.privateIPAddress must lie inside spec.network.gatewaySubnet.addressPrefix"))]
#[x_kube(validation = Rule::new(
        "!isCIDR(self.network.gatewaySubnet.addressPrefix) || !isIP(self.gateway.privateIPAddress) || !cidr(self.gateway.privateIPAddress + '/30').containsIP(cidr(self.network.gatewaySubnet.addressPrefix).ip())"
    ).message("spec.gateway.privateIPAddress must not be one of the first four addresses of the gateway subnet: Azure reserves them"))]
#[x_kube(validation = Rule::new(
        "!isCIDR(self.network.gatewaySubnet.addressPrefix) || !isCIDR(self.network.integrationSubnet.addressPrefix) || !(cidr(self.network.gatewaySubnet.addressPrefix).containsIP(cidr(self.network.integrationSubnet.addressPrefix).ip()) || cidr(self.network.integrationSubnet.addressPrefix).containsIP(cidr(self.network.gatewaySubnet.addressPrefix).ip()))"
    ).message("spec.network.gatewaySubnet and spec.network.integrationSubnet must not overlap: each must be a dedicated subnet"))]
#[x_kube(validation = Rule::new(
        "!isCIDR(self.network.gatewaySubnet.addressPrefix) || cidr(self.network.gatewaySubnet.addressPrefix).prefixLength() < 24 || self.gateway.sku.maxCapacity + 6 <= {24: 256, 25: 128, 26: 64, 27: 32, 28: 16, 29: 8, 30: 4, 31: 2, 32: 1}[cidr(self.network.gatewaySubnet.addressPrefix).prefixLength()]"
    ).message("spec.network.gatewaySubnet is too small for spec.gateway.sku.maxCapacity: it needs one address per instance, one for the private frontend and five Azure reserves"))]
#[x_kube(validation = Rule::new("self.network.gatewaySubnet.name != self.network.integrationSubnet.name")
        .message("spec.network.gatewaySubnet.name and spec.network.integrationSubnet.name must differ"))]
#[x_kube(validation = Rule::new("self.network.virtualNetworkId.lowerAscii().startsWith('/subscriptions/' + self.subscriptionId.lowerAscii() + '/')")
        .message("spec.network.virtualNetworkId must be in spec.subscriptionId"))]
#[x_kube(validation = Rule::new("self.appService.id.lowerAscii().startsWith('/subscriptions/' + self.subscriptionId.lowerAscii() + '/')")
        .message("spec.appService.id must be in spec.subscriptionId"))]
#[x_kube(validation = Rule::new("self.cosmosDb.id.lowerAscii().startsWith('/subscriptions/' + self.subscriptionId.lowerAscii() + '/')")
        .message("spec.cosmosDb.id must be in spec.subscriptionId"))]
#[x_kube(validation = Rule::new("!has(self.gateway.waf) || !has(self.gateway.waf.policyId) || self.gateway.waf.policyId.lowerAscii().startsWith('/subscriptions/' + self.subscriptionId.lowerAscii() + '/')")
        .message("spec.gateway.waf.policyId must be in spec.subscriptionId"))]
#[x_kube(validation = Rule::new("!has(self.appService.hostHeader) || self.appService.hostHeader != 'Preserve' || has(self.gateway.tls.secretRef)")
        .message("spec.appService.hostHeader Preserve needs spec.gateway.tls.secretRef: App Service imports a Key Vault certificate by the vault's resource ID and its own access grant, which fhirlock does not manage yet"))]
#[x_kube(validation = Rule::new("!has(self.gateway.tls.keyVaultIdentityId) || self.gateway.tls.keyVaultIdentityId.lowerAscii().startsWith('/subscriptions/' + self.subscriptionId.lowerAscii() + '/')")
        .message("spec.gateway.tls.keyVaultIdentityId must be in spec.subscriptionId"))]
#[serde(rename_all = "camelCase")]
pub struct SecuredFhirEndpointSpec {
    /// The Azure subscription that holds the VNet, the App Service, the Cosmos DB account and the
    /// gateway fhirlock creates. A GUID. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.subscriptionId is immutable: create a new SecuredFhirEndpoint for another subscription"))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')")
        .message("spec.subscriptionId must be a subscription GUID such as 6f1c2a52-0000-4000-8000-000000000001"))]
    #[schemars(length(max = 36))]
    pub subscription_id: String,

    /// The Azure identity fhirlock acts with for this endpoint. When omitted, fhirlock uses the
    /// identity the operator configuration assigns to this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_ref: Option<LocalSecretReference>,

    /// Where the endpoint lives on the private network: the existing VNet and the two dedicated
    /// subnets fhirlock creates or adopts in it.
    pub network: NetworkSpec,

    /// The existing App Service (web app) that runs the FHIR server.
    pub app_service: AppServiceSpec,

    /// The existing Cosmos DB account the FHIR server stores its data in.
    pub cosmos_db: CosmosDbSpec,

    /// The private Application Gateway v2 fhirlock creates in front of the App Service.
    pub gateway: GatewaySpec,

    /// Enforce: change Azure until it matches this spec. Audit: observe and report findings and
    /// the plan Enforce would carry out, never write to Azure.
    #[serde(default)]
    pub mode: Mode,

    /// What happens in Azure when this object is deleted. Retain: leave everything as it is.
    /// Delete: remove what fhirlock created or added (gateway, subnets, access-restriction rules,
    /// the Cosmos VNet rule, the VNet integration). The VNet, the App Service and the Cosmos DB
    /// account are never deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// A reference to a Secret in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LocalSecretReference {
    /// Name of the Secret in this namespace. For an Azure identity it holds `tenantId` and
    /// `clientId` (workload identity), plus `clientSecret` for a client-secret identity.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')")
        .message("Secret name must be a lowercase DNS subdomain such as fhir-tls"))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The private network the endpoint is reachable on.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// ARM ID of the existing virtual network peered to HSCN, for example
    /// `/subscriptions/<sub>/resourceGroups/hscn-net/providers/Microsoft.Network/virtualNetworks/hscn-vnet`.
    /// fhirlock never creates, changes or deletes the VNet itself. Immutable.
    #[x_kube(validation = Rule::new(format!("self.matches('{SUB_PREFIX}Microsoft\\\\.Network/virtualNetworks/[a-zA-Z0-9]([-a-zA-Z0-9_.]{{0,62}}[a-zA-Z0-9_])?$')"))
        .message("spec.network.virtualNetworkId must be an ARM ID of the form /subscriptions/<guid>/resourceGroups/<group>/providers/Microsoft.Network/virtualNetworks/<name>"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.network.virtualNetworkId is immutable: create a new SecuredFhirEndpoint to move to another VNet"))]
    #[schemars(length(max = 512))]
    pub virtual_network_id: String,

    /// The dedicated subnet for the Application Gateway. fhirlock delegates it to
    /// `Microsoft.Network/applicationGateways` and adds the `Microsoft.Web` service endpoint, so
    /// that the App Service can admit traffic from this subnet and nothing else. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.network.gatewaySubnet is immutable: an Application Gateway cannot move to another subnet in place"))]
    pub gateway_subnet: SubnetSpec,

    /// The dedicated subnet for App Service regional VNet integration. fhirlock delegates it to
    /// `Microsoft.Web/serverFarms` and adds the `Microsoft.AzureCosmosDB` service endpoint, so that
    /// the Cosmos DB firewall can admit this subnet and nothing else. At least a /28. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.network.integrationSubnet is immutable: Azure cannot resize or rename a subnet that App Service uses"))]
    #[x_kube(validation = Rule::new("!isCIDR(self.addressPrefix) || cidr(self.addressPrefix).prefixLength() <= 28")
        .message("spec.network.integrationSubnet.addressPrefix must be a /28 or larger: App Service VNet integration needs it (a /26 is recommended)"))]
    pub integration_subnet: SubnetSpec,
}

/// A subnet fhirlock creates in the VNet, or adopts when one of this name already exists.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SubnetSpec {
    /// Subnet name: 1–80 letters, digits, underscores, periods or hyphens, starting with a letter or
    /// digit and ending with a letter, digit or underscore. Names Azure reserves for other
    /// services (GatewaySubnet, AzureFirewallSubnet, ...) are not allowed.
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,78}[a-zA-Z0-9_])?$')")
        .message("subnet name must be 1-80 letters, digits, '_', '.' or '-', start with a letter or digit and end with a letter, digit or '_'"))]
    #[x_kube(validation = Rule::new("!(self.lowerAscii() in ['gatewaysubnet', 'azurefirewallsubnet', 'azurefirewallmanagementsubnet', 'azurebastionsubnet', 'routeserversubnet'])")
        .message("subnet name is reserved by Azure for another service: choose a dedicated name"))]
    #[schemars(length(min = 1, max = 80))]
    pub name: String,

    /// IPv4 address prefix in CIDR notation, written as its network address (for example
    /// `10.20.1.0/26`, not `10.20.1.5/26`). It must lie inside the VNet's address space.
    #[x_kube(validation = Rule::new("isCIDR(self) && cidr(self).ip().family() == 4")
        .message("addressPrefix must be an IPv4 CIDR such as 10.20.1.0/26"))]
    #[x_kube(validation = Rule::new("!isCIDR(self) || cidr(self) == cidr(self).masked()")
        .message("addressPrefix must be written as its network address (for example 10.20.1.0/26, not 10.20.1.5/26)"))]
    #[x_kube(validation = Rule::new("!isCIDR(self) || cidr(self).prefixLength() >= 8 && cidr(self).prefixLength() <= 29")
        .message("addressPrefix length must be between /8 and /29"))]
    #[schemars(length(max = 18))]
    pub address_prefix: String,
}

/// The App Service that runs the FHIR server.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppServiceSpec {
    /// ARM ID of the existing web app, for example
    /// `/subscriptions/<sub>/resourceGroups/fhir/providers/Microsoft.Web/sites/fhir-server`.
    /// Deployment slots are not supported. fhirlock manages only its access restrictions, HTTPS and
    /// TLS settings, FTP state and VNet integration; it never deletes the app.
    #[x_kube(validation = Rule::new(format!("self.matches('{SUB_PREFIX}Microsoft\\\\.Web/sites/[a-zA-Z0-9][-a-zA-Z0-9]{{0,58}}$')"))
        .message("spec.appService.id must be an ARM ID of the form /subscriptions/<guid>/resourceGroups/<group>/providers/Microsoft.Web/sites/<name> (no slots)"))]
    #[schemars(length(max = 512))]
    pub id: String,

    /// How the SCM (Kudu, deployment) site is locked. LockedLikeMain: the SCM site uses the main
    /// site's rules, so only the gateway subnet reaches it. LockedDenyAll: the SCM site denies
    /// every source; deploy through another path (for example run-from-package).
    #[serde(default)]
    pub scm_site: ScmSiteLock,

    /// The Host header the App Service receives from the gateway. Default: the app's default host
    /// name (`<app>.azurewebsites.net`); the FHIR server then builds absolute URLs (Bundle.link,
    /// fullUrl, Location) from it unless it honours the gateway's X-Original-Host header.
    /// Preserve: spec.gateway.hostName, as clients sent it; fhirlock adds that host name to the
    /// App Service with the certificate from spec.gateway.tls.secretRef (a host-name binding, which
    /// Azure accepts only once the DNS TXT record shown in status.nextSteps exists).
    #[serde(default)]
    pub host_header: HostHeader,
}

/// The Cosmos DB account behind the FHIR server.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CosmosDbSpec {
    /// ARM ID of the existing Cosmos DB account, for example
    /// `/subscriptions/<sub>/resourceGroups/fhir/providers/Microsoft.DocumentDB/databaseAccounts/fhir-cosmos`.
    /// fhirlock manages only its network firewall; it never deletes the account.
    #[x_kube(validation = Rule::new(format!("self.matches('{SUB_PREFIX}Microsoft\\\\.DocumentDB/databaseAccounts/[a-z0-9][-a-z0-9]{{1,42}}[a-z0-9]$')"))
        .message("spec.cosmosDb.id must be an ARM ID of the form /subscriptions/<guid>/resourceGroups/<group>/providers/Microsoft.DocumentDB/databaseAccounts/<name> (3-44 lowercase letters, digits or '-')"))]
    #[schemars(length(max = 512))]
    pub id: String,
}

/// The Application Gateway v2 fhirlock creates, with a private frontend only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.sku.minCapacity <= self.sku.maxCapacity")
    .message("spec.gateway.sku.minCapacity must not exceed spec.gateway.sku.maxCapacity"))]
#[x_kube(validation = Rule::new("!has(self.waf) || self.sku.tier == 'WAF_v2'")
    .message("spec.gateway.waf is only for sku.tier WAF_v2: remove it, or set the tier to WAF_v2"))]
pub struct GatewaySpec {
    /// Name of the gateway fhirlock creates: 1–80 letters, digits, underscores, periods or hyphens,
    /// starting with a letter or digit and ending with a letter, digit or underscore. Immutable.
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,78}[a-zA-Z0-9_])?$')")
        .message("spec.gateway.name must be 1-80 letters, digits, '_', '.' or '-', start with a letter or digit and end with a letter, digit or '_'"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.gateway.name is immutable: Azure cannot rename a gateway"))]
    #[schemars(length(min = 1, max = 80))]
    pub name: String,

    /// Resource group, in spec.subscriptionId, to create the gateway in. Immutable.
    #[x_kube(validation = Rule::new("self.matches('^[-a-zA-Z0-9_.()]*[-a-zA-Z0-9_()]$')")
        .message("spec.gateway.resourceGroup must be 1-90 letters, digits, '_', '-', '.', '(' or ')' and must not end with '.'"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.gateway.resourceGroup is immutable: Azure cannot move a gateway in place"))]
    #[schemars(length(min = 1, max = 90))]
    pub resource_group: String,

    /// Azure region of the gateway, as ARM writes it (lowercase, no spaces, for example `uksouth`).
    /// It must be the VNet's region. Immutable.
    #[x_kube(validation = Rule::new("self.matches('^[a-z][a-z0-9]*$')")
        .message("spec.gateway.location must be an Azure region name in lowercase without spaces, for example uksouth"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.gateway.location is immutable: Azure cannot move a gateway to another region"))]
    #[schemars(length(min = 2, max = 40))]
    pub location: String,

    /// Tier and autoscale bounds.
    #[serde(default)]
    pub sku: GatewaySku,

    /// The static private frontend IP address, inside the gateway subnet and not one of its first
    /// four addresses. HSCN traffic is forwarded to it. Immutable: Azure cannot change a private
    /// frontend IP in place.
    #[x_kube(validation = Rule::new("isIP(self) && ip(self).family() == 4").message("spec.gateway.privateIPAddress must be an IPv4 address such as 10.20.1.10"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.gateway.privateIPAddress is immutable: Azure cannot change a private frontend IP in place"))]
    #[schemars(length(max = 15))]
    #[serde(rename = "privateIPAddress")]
    pub private_ip_address: String,

    /// The FHIR host name clients use, for example `fhir.trust.nhs.uk`. The HTTPS listener answers
    /// for it; the DNS record for it is a next step reported in status.
    #[x_kube(validation = Rule::new("self.matches('^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\\\\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$')")
        .message("spec.gateway.hostName must be a fully qualified DNS name in lowercase, such as fhir.trust.nhs.uk"))]
    #[schemars(length(min = 1, max = 253))]
    pub host_name: String,

    /// The certificate for hostName: exactly one of secretRef or keyVaultSecretId (the latter with
    /// keyVaultIdentityId).
    pub tls: GatewayTls,

    /// The predefined TLS policy. Both allowed policies require TLS 1.2 or later.
    #[serde(default)]
    pub ssl_policy: SslPolicy,

    /// Path of the health probe on the FHIR server. The default, /metadata, is the FHIR
    /// CapabilityStatement, which every FHIR server answers without authentication.
    #[serde(default = "default_probe_path")]
    #[x_kube(validation = Rule::new("self.startsWith('/') && !self.contains(' ')").message("spec.gateway.probePath must be an absolute path starting with '/' and without spaces"))]
    #[schemars(length(min = 1, max = 1024))]
    pub probe_path: String,

    /// The web application firewall of a WAF_v2 gateway (not allowed with Standard_v2). When
    /// omitted, a WAF_v2 gateway gets fhirlock's own WAF policy in Prevention mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waf: Option<GatewayWaf>,
}

/// The WAF policy of a WAF_v2 gateway.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayWaf {
    /// Prevention blocks the requests the managed rules match; Detection only logs them, for a
    /// tuning period (FHIR search parameters and JSON bodies can match managed rules). Applies to
    /// the policy fhirlock creates, not to a policyId.
    #[serde(default)]
    pub mode: WafMode,

    /// ARM ID of an existing WAF policy the gateway uses instead of one fhirlock creates, for
    /// example `/subscriptions/<sub>/resourceGroups/fhir/providers/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/waf-fhir`.
    /// fhirlock attaches it and never changes or deletes it; its owner keeps its mode and rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(format!("self.matches('{SUB_PREFIX}Microsoft\\\\.Network/ApplicationGatewayWebApplicationFirewallPolicies/[a-zA-Z0-9]([-a-zA-Z0-9_.]{{0,126}}[a-zA-Z0-9_])?$')"))
        .message("spec.gateway.waf.policyId must be an ARM ID of the form /subscriptions/<guid>/resourceGroups/<group>/providers/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/<name>"))]
    #[schemars(length(max = 512))]
    pub policy_id: Option<String>,
}

/// What the WAF does with a request its rules match.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WafMode {
    /// Block it.
    #[default]
    Prevention,
    /// Log it and let it through.
    Detection,
}

fn default_probe_path() -> String {
    "/metadata".into()
}

/// Gateway tier and autoscale bounds.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySku {
    /// Standard_v2, or WAF_v2 for the web application firewall.
    #[serde(default)]
    pub tier: GatewayTier,
    /// Minimum instance count, 0–125.
    #[serde(default = "default_min_capacity")]
    #[schemars(range(min = 0, max = 125))]
    pub min_capacity: i32,
    /// Maximum instance count, 2–125. The gateway subnet must have room for it.
    #[serde(default = "default_max_capacity")]
    #[schemars(range(min = 2, max = 125))]
    pub max_capacity: i32,
}

fn default_min_capacity() -> i32 {
    1
}
fn default_max_capacity() -> i32 {
    3
}

impl Default for GatewaySku {
    fn default() -> Self {
        Self {
            tier: GatewayTier::default(),
            min_capacity: default_min_capacity(),
            max_capacity: default_max_capacity(),
        }
    }
}

/// Where the listener certificate comes from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretRef) != has(self.keyVaultSecretId)")
    .message("spec.gateway.tls must set exactly one of secretRef or keyVaultSecretId"))]
#[x_kube(validation = Rule::new("!has(self.keyVaultSecretId) || has(self.keyVaultIdentityId)")
    .message("spec.gateway.tls.keyVaultIdentityId is required with keyVaultSecretId: Azure reads the secret as a user-assigned identity on the gateway; set it to that identity's resource ID, and grant the identity Key Vault Secrets User on the secret"))]
#[x_kube(validation = Rule::new("!has(self.secretRef) || !has(self.keyVaultIdentityId)")
    .message("spec.gateway.tls.keyVaultIdentityId is only for keyVaultSecretId: remove it when the certificate comes from secretRef"))]
pub struct GatewayTls {
    /// A `kubernetes.io/tls` Secret in this namespace (cert-manager writes these). fhirlock
    /// converts it to PFX for the gateway and updates the gateway when the Secret changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalSecretReference>,
    /// A Key Vault secret ID, for example `https://my-vault.vault.azure.net/secrets/fhir-tls`.
    /// Requires keyVaultIdentityId. The gateway also needs a private path to the vault (a private
    /// endpoint or the Microsoft.KeyVault service endpoint on the gateway subnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^https://[a-zA-Z0-9-]{3,24}\\\\.vault\\\\.(azure\\\\.net|azure\\\\.cn|usgovcloudapi\\\\.net)/secrets/[a-zA-Z0-9-]{1,127}(/[0-9a-fA-F]{32})?/?$')")
        .message("spec.gateway.tls.keyVaultSecretId must be a Key Vault secret URL such as https://my-vault.vault.azure.net/secrets/fhir-tls"))]
    #[schemars(length(max = 512))]
    pub key_vault_secret_id: Option<String>,
    /// Resource ID of the user-assigned managed identity the gateway reads keyVaultSecretId as, for
    /// example `/subscriptions/<sub>/resourceGroups/fhir/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-agw-fhir`.
    /// Required with keyVaultSecretId, not allowed with secretRef. fhirlock adds it to the
    /// gateway's identities (keeping any others); it does not create the identity or grant it
    /// access: give it the Key Vault Secrets User role on the secret (or get on secrets in an
    /// access policy) first, or Azure rejects the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(format!("self.matches('{SUB_PREFIX}Microsoft\\\\.ManagedIdentity/userAssignedIdentities/[a-zA-Z0-9][-a-zA-Z0-9_]{{2,127}}$')"))
        .message("spec.gateway.tls.keyVaultIdentityId must be an ARM ID of the form /subscriptions/<guid>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name> (3-128 letters, digits, '-' or '_')"))]
    #[schemars(length(max = 512))]
    pub key_vault_identity_id: Option<String>,
}

/// Whether fhirlock changes Azure.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Change Azure until it matches the spec, and keep it so.
    #[default]
    Enforce,
    /// Observe and report findings and the plan; never write to Azure.
    Audit,
}

/// What deleting the SecuredFhirEndpoint does in Azure.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Leave Azure as it is.
    #[default]
    Retain,
    /// Remove what fhirlock created or added; never the VNet, the App Service or Cosmos DB.
    Delete,
}

/// How the App Service's SCM (Kudu) site is locked.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScmSiteLock {
    /// The SCM site follows the main site's rules: only the gateway subnet.
    #[default]
    LockedLikeMain,
    /// The SCM site denies every source.
    LockedDenyAll,
}

/// The Host header the gateway sends to the App Service.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostHeader {
    /// The app's default host name (`<app>.azurewebsites.net`), as before.
    #[default]
    Default,
    /// The FHIR host name clients used (spec.gateway.hostName), bound to the App Service.
    Preserve,
}

/// Application Gateway v2 tier.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GatewayTier {
    /// Standard v2.
    #[serde(rename = "Standard_v2")]
    StandardV2,
    /// Standard v2 with the web application firewall.
    #[default]
    #[serde(rename = "WAF_v2")]
    WafV2,
}

/// Predefined Application Gateway TLS policies that allow TLS 1.2 and later only.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SslPolicy {
    /// TLS 1.2 and 1.3 with a broad cipher list.
    AppGwSslPolicy20220101,
    /// TLS 1.2 and 1.3 with a strict cipher list.
    #[default]
    AppGwSslPolicy20220101S,
}

/// What fhirlock last observed and did.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecuredFhirEndpointStatus {
    /// The metadata.generation this status describes. When it lags metadata.generation, fhirlock
    /// has not yet acted on the latest spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Reconciling and Stalled (as kstatus, Flux and Argo CD read them), and one condition
    /// per component: SubnetsReady, GatewayReady, AppServiceLocked, CosmosLocked, PostureCompliant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub conditions: Vec<Condition>,

    /// The gateway fhirlock manages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayStatus>,

    /// Every way the FHIR API or its data is reachable other than through the gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub findings: Vec<Finding>,

    /// Number of blocking findings, the ways in other than the gateway (shown by `kubectl get sfe`);
    /// advisory findings are listed in `findings` but not counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding_count: Option<i32>,

    /// Azure long-running operations in flight, resumed after an operator restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub pending_operations: Vec<PendingOperation>,

    /// The changes Enforce mode would make (always filled in Audit mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub plan: Vec<PlannedChange>,

    /// What people outside Azure still need to do, such as HSCN forwarding and the DNS record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub next_steps: Vec<String>,

    /// When fhirlock last compared Azure with the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,

    /// The last drift fhirlock found and corrected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drift: Option<Drift>,

    /// ARM IDs of the resources fhirlock created (not adopted) for this endpoint: with
    /// deletionPolicy Delete, these are removed on deletion; adopted ones never are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub created_resources: Vec<String>,

    /// When fhirlock first saw the Cosmos DB firewall admit the integration subnet (VNet filter on,
    /// the subnet's rule in place, the account settled). Cosmos DB applies a firewall change up to
    /// 15 minutes after it is made, so the App Service joins the subnet only that long after this
    /// time. Cleared when the rule goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosmos_rule_since: Option<Time>,
}

/// The gateway as last observed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// ARM ID of the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The private frontend IP address.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "privateIPAddress"
    )]
    pub private_ip_address: Option<String>,
    /// ARM provisioningState of the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// When the listener certificate from spec.gateway.tls.secretRef expires (its notAfter).
    /// fhirlock warns (Event CertificateExpiresSoon) from 21 days before. Absent with a Key
    /// Vault certificate, which fhirlock never sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_not_after: Option<Time>,
}

/// One way in other than the gateway.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Stable code, for example ScmSitePublic (see docs/posture.md).
    pub code: String,
    /// High, Medium, Low or Advisory.
    pub severity: String,
    /// ARM ID of the resource that is open.
    pub resource_id: String,
    /// What is open and how.
    pub message: String,
    /// When fhirlock first saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// A long-running Azure operation fhirlock submitted and is tracking.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PendingOperation {
    /// ARM ID of the resource being changed.
    pub resource_id: String,
    /// The step that started it, for example Gateway.
    pub step: String,
    /// The HTTP method of the write (PUT, PATCH or DELETE).
    pub method: String,
    /// The api-version of the write.
    pub api_version: String,
    /// The operation status URL ARM returned (Azure-AsyncOperation or Location).
    pub status_url: String,
    /// How to read the status URL: AsyncOperation, Location or ProvisioningState.
    pub kind: String,
    /// When it was submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Time>,
}

/// One field-level change fhirlock would make.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChange {
    /// ARM ID of the resource to change.
    pub resource_id: String,
    /// The field path, for example properties.ipSecurityRestrictionsDefaultAction.
    pub field: String,
    /// The current value (JSON), or absent when the resource does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The value fhirlock would set (JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Why.
    pub reason: String,
}

/// Drift found and corrected.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    /// When it was found.
    pub time: Time,
    /// The fields that differed, as `<resource>: <field> <old> -> <new>`.
    #[schemars(length(max = 64))]
    pub fields: Vec<String>,
}
