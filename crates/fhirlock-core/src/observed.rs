//! What fhirlock read from ARM in one reconcile: the raw JSON of each resource (so fields it does
//! not model survive a write), parsed on demand into the typed models.

use serde_json::{Value, json};

use crate::model::{
    self, ApplicationGateway, CosmosAccount, ServerFarm, Site, SiteConfig, Subnet, VirtualNetwork,
};

/// api-versions pinned per resource type (ARM reference §0).
pub mod api_version {
    pub const NETWORK: &str = "2025-01-01";
    pub const WEB: &str = "2024-11-01";
    pub const COSMOS: &str = "2025-04-15";
    pub const FEATURES: &str = "2021-07-01";
}

/// `Observed::isolation_feature` when fhirlock's identity may not read the feature registration
/// (it lives at subscription scope; roles on resource groups do not reach it).
pub const FEATURE_UNREADABLE: &str = "Unreadable";

/// One read of everything the endpoint involves. `None` means ARM answered 404.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub vnet: Option<Value>,
    pub gateway: Option<Value>,
    pub site: Option<Value>,
    pub site_config: Option<Value>,
    pub server_farm: Option<Value>,
    pub cosmos: Option<Value>,
    /// `properties.state` of the network-isolation feature registration, when read.
    pub isolation_feature: Option<String>,
    /// The `value` of `GET {site}/privateEndpointConnections` (WebApps_GetPrivateEndpointConnectionList,
    /// Web 2024-11-01: a `PrivateEndpointConnectionCollection` of
    /// `RemotePrivateEndpointConnectionARMResource`); `None` when not read.
    pub site_private_endpoints: Option<Vec<Value>>,
    /// With `hostHeader: Preserve` only: the App Service certificate fhirlock uploads for the host
    /// name (`Microsoft.Web/certificates`, Web 2024-11-01 `Certificates.json`), and the site's
    /// binding of the host name (`WebApps_GetHostNameBinding`). `None` when absent or not read.
    pub site_certificate: Option<Value>,
    pub host_name_binding: Option<Value>,
    /// fhirlock's earlier certificates for the host name (a renewed Secret is a new resource,
    /// [`crate::Desired::site_certificate_id`]): each ID `status.createdResources` records other
    /// than the current one, with what a GET said (`None`: 404). Read only when recorded, so
    /// only certificates fhirlock created are ever deleted.
    pub former_site_certificates: Vec<(String, Option<Value>)>,
    /// The WAF policy at [`crate::Desired::waf_policy_read_id`]: the one a WAF_v2 gateway
    /// references, or the one fhirlock created for a gateway that is Standard_v2 now. `None` when
    /// absent or not read (a Standard_v2 gateway's never-created policy is not read).
    pub waf_policy: Option<Value>,
    /// fhirlock's own policy once the spec names another ([`crate::Desired::former_waf_policy_id`]);
    /// `None` when absent or not read.
    pub former_waf_policy: Option<Value>,
}

impl Observed {
    pub fn vnet(&self) -> Option<VirtualNetwork> {
        self.vnet.as_ref().and_then(|v| model::parse(v).ok())
    }
    pub fn subnets(&self) -> Vec<Subnet> {
        self.vnet()
            .and_then(|v| v.properties.subnets)
            .unwrap_or_default()
    }
    pub fn subnet(&self, name: &str) -> Option<Subnet> {
        self.subnets().into_iter().find(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }
    /// The raw JSON of one subnet, for read-modify-write.
    pub fn subnet_json(&self, name: &str) -> Option<Value> {
        self.vnet
            .as_ref()?
            .pointer("/properties/subnets")?
            .as_array()?
            .iter()
            .find(|s| {
                s.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .cloned()
    }
    pub fn gateway(&self) -> Option<ApplicationGateway> {
        self.gateway.as_ref().and_then(|v| model::parse(v).ok())
    }
    pub fn site(&self) -> Option<Site> {
        self.site.as_ref().and_then(|v| model::parse(v).ok())
    }
    pub fn site_config(&self) -> Option<SiteConfig> {
        self.site_config.as_ref().and_then(|v| model::parse(v).ok())
    }
    pub fn server_farm(&self) -> Option<ServerFarm> {
        self.server_farm.as_ref().and_then(|v| model::parse(v).ok())
    }
    pub fn cosmos(&self) -> Option<CosmosAccount> {
        self.cosmos.as_ref().and_then(|v| model::parse(v).ok())
    }
    /// The site's private endpoint connections that carry traffic (or may: pending ones), from
    /// the documented list and from the site body, without duplicates; their IDs, lower-cased.
    pub fn site_private_endpoint_ids(&self) -> Vec<String> {
        let in_body = self
            .site()
            .and_then(|s| s.properties.private_endpoint_connections)
            .unwrap_or_default();
        live_connections(
            self.site_private_endpoints
                .iter()
                .flatten()
                .chain(in_body.iter()),
        )
    }
    /// The Cosmos DB account's private endpoint connections that carry traffic (or may).
    pub fn cosmos_private_endpoint_ids(&self) -> Vec<String> {
        let list = self
            .cosmos()
            .and_then(|c| c.properties.private_endpoint_connections)
            .unwrap_or_default();
        live_connections(list.iter())
    }
}

/// IDs (lower-cased, deduplicated) of the connections not `Rejected` or `Disconnected`
/// (`privateLinkServiceConnectionState.status`, in both the Web and the Cosmos DB models). A
/// connection without an ID or a state counts: it errs towards "there is a private endpoint".
fn live_connections<'a>(list: impl Iterator<Item = &'a Value>) -> Vec<String> {
    let mut out: Vec<String> = list
        .filter(|c| {
            !c.pointer("/properties/privateLinkServiceConnectionState/status")
                .and_then(Value::as_str)
                .is_some_and(|s| {
                    s.eq_ignore_ascii_case("Rejected") || s.eq_ignore_ascii_case("Disconnected")
                })
        })
        .map(|c| {
            c.get("id")
                .and_then(Value::as_str)
                .unwrap_or("(a private endpoint connection)")
                .to_ascii_lowercase()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Azure writes regions both as `uksouth` and `UK South`.
pub fn same_region(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase()
    };
    norm(a) == norm(b)
}

/// Where one resource of an endpoint lives in [`Observed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    Vnet,
    /// A subnet, kept inside the VNet's `properties.subnets` (the VNet GET carries them).
    Subnet(String),
    Gateway,
    Site,
    SiteConfig,
    Cosmos,
    WafPolicy,
    /// fhirlock's own WAF policy, replaced by one the spec names.
    FormerWafPolicy,
    SiteCertificate,
    HostNameBinding,
}

/// The slot of a resource this endpoint reads or writes; `None` for anything else (a teardown
/// sub-resource, a server farm), which only a full read refreshes.
pub fn slot(d: &crate::Desired, id: &str) -> Option<Slot> {
    use crate::id::same;
    if d.former_waf_policy_id().is_some_and(|f| same(f, id)) {
        return Some(Slot::FormerWafPolicy);
    }
    [
        (d.vnet_id.as_str(), Slot::Vnet),
        (&d.gateway.id, Slot::Gateway),
        (&d.site_id, Slot::Site),
        (&d.site_config_id(), Slot::SiteConfig),
        (&d.cosmos_id, Slot::Cosmos),
        (d.waf_policy_read_id(), Slot::WafPolicy),
        (&d.site_certificate_id(), Slot::SiteCertificate),
        (&d.host_name_binding_id(), Slot::HostNameBinding),
        (
            &d.gateway_subnet.id,
            Slot::Subnet(d.gateway_subnet.name.clone()),
        ),
        (
            &d.integration_subnet.id,
            Slot::Subnet(d.integration_subnet.name.clone()),
        ),
    ]
    .into_iter()
    .find(|(known, _)| same(known, id))
    .map(|(_, s)| s)
}

impl Observed {
    /// Takes in what ARM said of one resource (a GET, or the body a write answered with);
    /// `None` is a 404. A subnet replaces its namesake in the VNet's list, or joins it.
    pub fn absorb(&mut self, slot: &Slot, body: Option<Value>) {
        match slot {
            Slot::Vnet => self.vnet = body,
            Slot::Gateway => self.gateway = body,
            Slot::Site => self.site = body,
            Slot::SiteConfig => self.site_config = body,
            Slot::Cosmos => self.cosmos = body,
            Slot::WafPolicy => self.waf_policy = body,
            Slot::FormerWafPolicy => self.former_waf_policy = body,
            Slot::SiteCertificate => self.site_certificate = body,
            Slot::HostNameBinding => self.host_name_binding = body,
            Slot::Subnet(name) => {
                let Some(props) = self
                    .vnet
                    .as_mut()
                    .and_then(Value::as_object_mut)
                    .map(|v| v.entry("properties").or_insert_with(|| json!({})))
                    .and_then(Value::as_object_mut)
                else {
                    return;
                };
                let list = props.entry("subnets").or_insert_with(|| json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                let Some(subnets) = list.as_array_mut() else {
                    return;
                };
                let at = subnets.iter().position(|s| {
                    s.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                });
                match (at, body) {
                    (Some(i), Some(b)) => subnets[i] = b,
                    (None, Some(b)) => subnets.push(b),
                    (Some(i), None) => {
                        subnets.remove(i);
                    }
                    (None, None) => {}
                }
            }
        }
    }
}
