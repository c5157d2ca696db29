//! What the spec asks for, resolved to ARM IDs and values. Built from a validated spec plus the
//! certificate the edge resolved (a Secret converted to PFX, or a Key Vault secret ID).

use fhirlock_api::v1alpha1::{
    DeletionPolicy, GatewayTier, HostHeader, Mode, ScmSiteLock, SecuredFhirEndpointSpec, SslPolicy,
    WafMode,
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
    /// The Host header the App Service receives (`spec.appService.hostHeader`).
    pub host_header: HostHeader,
    pub cosmos_id: String,
    pub gateway: GatewayDesired,
    pub mode: Mode,
    pub deletion_policy: DeletionPolicy,
    /// Who outside Azure routes the private network's address and publishes the DNS name, as
    /// `status.nextSteps` words it: HSCN and NHS England unless the tenancy says otherwise.
    pub private_network: crate::status::PrivateNetwork,
    /// The other endpoints in the cluster (none for the one-shot CLI): whose rules on a shared
    /// site or Cosmos DB account stay, and which claims are already taken ([`crate::peers`]).
    pub peers: crate::peers::Peers,
    /// This endpoint's App Service certificates `status.createdResources` records (set by the
    /// caller, which has the status): a renewed Secret's predecessors are read and deleted.
    pub recorded_site_certificates: Vec<String>,
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
    /// The WAF policy a WAF_v2 gateway references; `None` for Standard_v2.
    pub waf: Option<WafDesired>,
    /// ARM ID of the WAF policy fhirlock creates for this gateway (`<gateway>-waf` beside it),
    /// whether or not the tier wants it now: a Standard_v2 gateway's earlier one is removed.
    pub owned_waf_policy_id: String,
    /// `status.createdResources` names [`Self::owned_waf_policy_id`] (set by the caller, which
    /// has the status): then a look reads that policy even for a Standard_v2 gateway, so the one
    /// fhirlock created is deleted; never for a policy fhirlock did not create.
    pub owned_waf_policy_recorded: bool,
}

/// The WAF policy of a WAF_v2 gateway.
#[derive(Clone, Debug, PartialEq)]
pub struct WafDesired {
    /// ARM ID of the policy the gateway's `firewallPolicy` references.
    pub policy_id: String,
    /// True when fhirlock creates and keeps the policy (`spec.gateway.waf.policyId` unset);
    /// false for a policy its owner manages, which fhirlock only attaches.
    pub owned: bool,
    /// `policySettings.mode` of an owned policy: `Prevention` or `Detection`.
    pub mode: &'static str,
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
        let rg_id = id::resource_group_id(&s.subscription_id, &g.resource_group);
        let owned_waf_policy_id = format!(
            "{rg_id}/providers/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/{}-waf",
            g.name
        );
        let waf_spec = g.waf.clone().unwrap_or_default();
        let waf = (g.sku.tier == GatewayTier::WafV2).then(|| WafDesired {
            owned: waf_spec.policy_id.is_none(),
            policy_id: waf_spec
                .policy_id
                .map(|p| p.trim_end_matches('/').to_owned())
                .unwrap_or_else(|| owned_waf_policy_id.clone()),
            mode: match waf_spec.mode {
                WafMode::Prevention => "Prevention",
                WafMode::Detection => "Detection",
            },
        });
        Desired {
            owner: format!("{namespace}/{name}"),
            subscription: s.subscription_id.to_ascii_lowercase(),
            gateway_subnet: subnet(&s.network.gateway_subnet),
            integration_subnet: subnet(&s.network.integration_subnet),
            vnet_id,
            site_id: s.app_service.id.trim_end_matches('/').to_owned(),
            scm: s.app_service.scm_site,
            host_header: s.app_service.host_header,
            cosmos_id: s.cosmos_db.id.trim_end_matches('/').to_owned(),
            gateway: GatewayDesired {
                id: format!(
                    "{rg_id}/providers/Microsoft.Network/applicationGateways/{}",
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
                waf,
                owned_waf_policy_id,
                owned_waf_policy_recorded: false,
            },
            mode: s.mode,
            deletion_policy: s.deletion_policy,
            private_network: Default::default(),
            peers: Default::default(),
            recorded_site_certificates: Vec::new(),
        }
    }

    pub fn site_config_id(&self) -> String {
        format!("{}/config/web", self.site_id)
    }

    /// True when the App Service must receive the FHIR host name itself.
    pub fn preserves_host(&self) -> bool {
        self.host_header == HostHeader::Preserve
    }

    /// The App Service certificate fhirlock uploads for the FHIR host name: beside the site, in
    /// its resource group (a certificate must share the site's resource group and region to be
    /// bound, Learn "Add and manage TLS/SSL certificates in Azure App Service"). One resource per
    /// certificate, named by the first 16 hex digits of the Secret's fingerprint: a renewal is a
    /// new resource, because Azure refuses to replace a certificate a binding uses (W16).
    /// Without a Secret (Key Vault, unresolved) the name has no suffix.
    pub fn site_certificate_id(&self) -> String {
        let base = self.site_certificate_base_id();
        match &self.gateway.certificate {
            Certificate::Pfx { fingerprint, .. } => {
                format!("{base}-{}", fingerprint.get(..16).unwrap_or(fingerprint))
            }
            _ => base,
        }
    }

    /// [`Self::site_certificate_id`] without the fingerprint suffix (the name fhirlock used before
    /// it named certificates per fingerprint).
    fn site_certificate_base_id(&self) -> String {
        let group = self
            .site_id
            .to_ascii_lowercase()
            .find("/providers/")
            .map_or(self.site_id.as_str(), |i| &self.site_id[..i]);
        format!(
            "{group}/providers/Microsoft.Web/certificates/{}-{}",
            self.site_name(),
            self.gateway.host_name.replace('.', "-")
        )
    }

    /// Whether `id` names one of this endpoint's certificates, for any Secret: the unsuffixed
    /// name or the name with a fingerprint suffix.
    pub fn is_site_certificate_id(&self, id: &str) -> bool {
        let base = self.site_certificate_base_id();
        let id = id.trim_end_matches('/');
        let Some((head, tail)) = id.split_at_checked(base.len()) else {
            return false;
        };
        let suffix = tail.strip_prefix('-').unwrap_or(tail);
        crate::id::same(head, &base)
            && (tail.is_empty()
                || (tail.starts_with('-')
                    && (1..=16).contains(&suffix.len())
                    && suffix.bytes().all(|b| b.is_ascii_alphanumeric())))
    }

    /// The site's host-name binding for the FHIR host name
    /// (`Microsoft.Web/sites/hostNameBindings`, named by the host name).
    pub fn host_name_binding_id(&self) -> String {
        format!(
            "{}/hostNameBindings/{}",
            self.site_id, self.gateway.host_name
        )
    }

    pub fn site_name(&self) -> String {
        ResourceId::parse(&self.site_id)
            .map(|r| r.name().to_owned())
            .unwrap_or_default()
    }

    /// The WAF policy a look reads: the one a WAF_v2 gateway references, else the one fhirlock
    /// creates (a Standard_v2 gateway may have left it behind).
    pub fn waf_policy_read_id(&self) -> &str {
        self.gateway
            .waf
            .as_ref()
            .map_or(&self.gateway.owned_waf_policy_id, |w| &w.policy_id)
    }

    /// Whether a look reads [`Self::waf_policy_read_id`]: for a WAF_v2 gateway, and for one
    /// whose policy fhirlock created earlier.
    pub fn reads_waf_policy(&self) -> bool {
        self.gateway.waf.is_some() || self.gateway.owned_waf_policy_recorded
    }

    /// fhirlock's own policy while the WAF_v2 gateway is to reference one the spec names
    /// (`spec.gateway.waf.policyId`): read, beside that one, only while status records it, so
    /// it is deleted once the gateway lets go (a Standard_v2 gateway's is read at
    /// [`Self::waf_policy_read_id`]).
    pub fn former_waf_policy_id(&self) -> Option<&str> {
        let g = &self.gateway;
        let replaced = g.waf.is_some() && !self.wants_owned_waf_policy();
        (replaced && g.owned_waf_policy_recorded).then_some(g.owned_waf_policy_id.as_str())
    }

    /// Whether the gateway is to reference fhirlock's own policy (a spec that names it by its
    /// ID counts too: it is never deleted from under the gateway).
    pub fn wants_owned_waf_policy(&self) -> bool {
        self.gateway
            .waf
            .as_ref()
            .is_some_and(|w| id::same(&w.policy_id, &self.gateway.owned_waf_policy_id))
    }

    /// The subscription feature a private-only gateway needs.
    pub fn isolation_feature_id(&self) -> String {
        format!(
            "/subscriptions/{}/providers/Microsoft.Features/providers/Microsoft.Network/features/EnableApplicationGatewayNetworkIsolation",
            self.subscription
        )
    }
}
