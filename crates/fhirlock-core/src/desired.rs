//! What the spec asks for, resolved to ARM IDs and values. Built from a validated spec plus the
//! certificate the edge resolved (a Secret converted to PFX, or a Key Vault secret ID).

use fhirlock_api::v1alpha1::{
    DeletionPolicy, GatewayTier, Mode, ScmSiteLock, SecuredFhirEndpointSpec, SslPolicy,
};

use crate::id::{self, ResourceId};

/// The listener certificate, as the gateway takes it.
#[derive(Clone, PartialEq)]
pub enum Certificate {
    /// A PFX (base64) with its password, and a fingerprint of the source so a change is seen
    /// without reading the secret back (ARM never returns it).
    Pfx {
        data_base64: String,
        password: String,
        fingerprint: String,
    },
    /// A Key Vault secret the gateway reads as a user-assigned managed identity (ARM rejects a
    /// `keyVaultSecretId` on a gateway without one).
    KeyVault {
        secret_id: String,
        /// ARM ID of the user-assigned identity, put on the gateway's `identity`.
        identity_id: String,
    },
    /// Not resolved (offline `plan`/`audit` without the Secret): the gateway step cannot be built.
    Unresolved { reason: String },
}

impl std::fmt::Debug for Certificate {
    // Never print the PFX or its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Certificate::Pfx { fingerprint, .. } => {
                write!(f, "Pfx {{ fingerprint: {fingerprint} }}")
            }
            Certificate::KeyVault {
                secret_id,
                identity_id,
            } => write!(f, "KeyVault {{ {secret_id} as {identity_id} }}"),
            Certificate::Unresolved { reason } => write!(f, "Unresolved {{ {reason} }}"),
        }
    }
}

impl Certificate {
    /// What the gateway's `fhirlock-tls` tag records for this certificate. For Key Vault it
    /// names the secret and a short digest of the identity (case-insensitive, as ARM IDs are), so
    /// a new identity changes the marker too. The whole ID would not fit in a tag value: Azure
    /// allows 256 characters, and the longest secret ID the API admits leaves room for 10 hex digits.
    pub fn marker(&self) -> Option<String> {
        match self {
            Certificate::Pfx { fingerprint, .. } => Some(format!("sha256:{fingerprint}")),
            Certificate::KeyVault {
                secret_id,
                identity_id,
            } => Some(format!(
                "keyvault:{secret_id}{IDENTITY_MARK}{}",
                identity_digest(identity_id)
            )),
            Certificate::Unresolved { .. } => None,
        }
    }
}

/// What separates the secret ID from the identity's digest in a Key Vault marker.
pub(crate) const IDENTITY_MARK: &str = ";identity:";

/// 10 hex digits naming an identity ID, whatever its case.
pub(crate) fn identity_digest(identity_id: &str) -> String {
    let id = identity_id.trim_end_matches('/').to_ascii_lowercase();
    format!("{:010x}", fnv1a(id.as_bytes()) >> 24)
}

/// FNV-1a, 64 bits: a stable digest for change detection (not for security; the ID is public).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// `<namespace>/<name>` of the endpoint; the value of the owner tag.
    pub owner: String,
    pub subscription: String,
    pub vnet_id: String,
    pub gateway_subnet: SubnetDesired,
    pub integration_subnet: SubnetDesired,
    pub site_id: String,
    pub scm: ScmSiteLock,
    pub cosmos_id: String,
    pub gateway: GatewayDesired,
    pub mode: Mode,
    pub deletion_policy: DeletionPolicy,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SubnetDesired {
    pub name: String,
    pub id: String,
    pub prefix: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GatewayDesired {
    pub id: String,
    pub name: String,
    pub resource_group: String,
    pub location: String,
    pub tier: &'static str,
    pub min_capacity: i32,
    pub max_capacity: i32,
    pub private_ip: String,
    pub host_name: String,
    pub ssl_policy: &'static str,
    pub probe_path: String,
    pub certificate: Certificate,
}

impl Desired {
    pub fn from_spec(
        namespace: &str,
        name: &str,
        spec: &SecuredFhirEndpointSpec,
        certificate: Certificate,
    ) -> Self {
        let s = spec;
        let vnet_id = s
            .network
            .virtual_network_id
            .trim_end_matches('/')
            .to_owned();
        let subnet = |n: &fhirlock_api::v1alpha1::SubnetSpec| SubnetDesired {
            name: n.name.clone(),
            id: id::subnet_id(&vnet_id, &n.name),
            prefix: n.address_prefix.clone(),
        };
        let g = &s.gateway;
        Desired {
            owner: format!("{namespace}/{name}"),
            subscription: s.subscription_id.to_ascii_lowercase(),
            gateway_subnet: subnet(&s.network.gateway_subnet),
            integration_subnet: subnet(&s.network.integration_subnet),
            vnet_id,
            site_id: s.app_service.id.trim_end_matches('/').to_owned(),
            scm: s.app_service.scm_site,
            cosmos_id: s.cosmos_db.id.trim_end_matches('/').to_owned(),
            gateway: GatewayDesired {
                id: format!(
                    "{}/providers/Microsoft.Network/applicationGateways/{}",
                    id::resource_group_id(&s.subscription_id, &g.resource_group),
                    g.name
                ),
                name: g.name.clone(),
                resource_group: g.resource_group.clone(),
                location: g.location.clone(),
                tier: match g.sku.tier {
                    GatewayTier::StandardV2 => "Standard_v2",
                    GatewayTier::WafV2 => "WAF_v2",
                },
                min_capacity: g.sku.min_capacity,
                max_capacity: g.sku.max_capacity,
                private_ip: g.private_ip_address.clone(),
                host_name: g.host_name.clone(),
                ssl_policy: match g.ssl_policy {
                    SslPolicy::AppGwSslPolicy20220101 => "AppGwSslPolicy20220101",
                    SslPolicy::AppGwSslPolicy20220101S => "AppGwSslPolicy20220101S",
                },
                probe_path: g.probe_path.clone(),
                certificate,
            },
            mode: s.mode,
            deletion_policy: s.deletion_policy,
        }
    }

    pub fn site_config_id(&self) -> String {
        format!("{}/config/web", self.site_id)
    }

    pub fn site_name(&self) -> String {
        ResourceId::parse(&self.site_id)
            .map(|r| r.name().to_owned())
            .unwrap_or_default()
    }

    /// The subscription feature a private-only gateway needs.
    pub fn isolation_feature_id(&self) -> String {
        format!(
            "/subscriptions/{}/providers/Microsoft.Features/providers/Microsoft.Network/features/EnableApplicationGatewayNetworkIsolation",
            self.subscription
        )
    }
}
