//! Azure resources as ARM returns them: typed for the fields fhirlock reads or manages, with
//! every other field kept in `rest`, so a read-modify-write returns them untouched. Field names
//! are ARM's wire names (see the ARM reference); read-only fields are read, never invented.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

type Rest = Map<String, Value>;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualNetwork {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default)]
    pub properties: VirtualNetworkProperties,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualNetworkProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_space: Option<AddressSpace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnets: Option<Vec<Subnet>>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressSpace {
    #[serde(default)]
    pub address_prefixes: Vec<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subnet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub properties: SubnetProperties,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_prefixes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_endpoints: Option<Vec<ServiceEndpoint>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegations: Option<Vec<Delegation>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// Read-only: NICs, load balancers and gateway instances using the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_configurations: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_endpoints: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_association_links: Option<Vec<Value>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "applicationGatewayIPConfigurations"
    )]
    pub application_gateway_ip_configurations: Option<Vec<Value>>,
    #[serde(flatten)]
    pub rest: Rest,
}

impl Subnet {
    /// The subnet's prefixes, in whichever form ARM returned them.
    pub fn prefixes(&self) -> Vec<String> {
        match (
            &self.properties.address_prefix,
            &self.properties.address_prefixes,
        ) {
            (Some(p), _) => vec![p.clone()],
            (None, Some(ps)) => ps.clone(),
            _ => Vec::new(),
        }
    }

    pub fn endpoint(&self, service: &str) -> Option<&ServiceEndpoint> {
        self.properties
            .service_endpoints
            .iter()
            .flatten()
            .find(|e| e.service.eq_ignore_ascii_case(service))
    }

    pub fn delegated_to(&self, service: &str) -> bool {
        self.properties
            .delegations
            .iter()
            .flatten()
            .any(|d| d.properties.service_name.eq_ignore_ascii_case(service))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEndpoint {
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locations: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delegation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub properties: DelegationProperties,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelegationProperties {
    #[serde(default)]
    pub service_name: String,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Site {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default)]
    pub properties: SiteProperties,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiteProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_network_subnet_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_farm_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_host_name: Option<String>,
    /// `Enabled`, `Disabled` or empty (Web 2024-11-01 `Site` model: "Property to allow or block
    /// all public traffic"). Unset means enabled unless the app has a private endpoint (Microsoft
    /// Learn, "Azure App Service access restrictions", App access).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_network_access: Option<String>,
    /// Read-only, and not in the Web 2024-11-01 or 2025-05-01 `Site` model: Azure Resource Graph
    /// shows a site's connections here [O]; whether an ARM GET does is [U]. The documented list
    /// is `sites/{name}/privateEndpointConnections` ([`crate::Observed::site_private_endpoints`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_endpoint_connections: Option<Vec<Value>>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// `sites/{name}/config/web`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiteConfig {
    #[serde(default)]
    pub properties: SiteConfigProperties,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiteConfigProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_security_restrictions: Option<Vec<IpRestriction>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_security_restrictions_default_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scm_ip_security_restrictions: Option<Vec<IpRestriction>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scm_ip_security_restrictions_use_main: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scm_ip_security_restrictions_default_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tls_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ftps_state: Option<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// One App Service access-restriction rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpRestriction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vnet_subnet_resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// ARM appends this to every read of a rule list; it is not a rule anyone wrote.
pub const SYNTHETIC_PRIORITY: i64 = 2_147_483_647;

impl IpRestriction {
    pub fn is_synthetic(&self) -> bool {
        self.priority == Some(SYNTHETIC_PRIORITY)
            && self
                .ip_address
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case("any"))
    }
    pub fn allows(&self) -> bool {
        !self
            .action
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case("deny"))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerFarm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<Sku>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sku {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CosmosAccount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default)]
    pub properties: CosmosProperties,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CosmosProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_virtual_network_filter_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_network_rules: Option<Vec<CosmosVnetRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_rules: Option<Vec<CosmosIpRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_acl_bypass: Option<String>,
    /// `Enabled`, `Disabled` or `SecuredByPerimeter` (Cosmos DB 2025-04-15 `PublicNetworkAccess`
    /// enum, azure-mgmt-cosmosdb 9.8.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_network_access: Option<String>,
    /// Read-only (2025-04-15 `DatabaseAccountGetResults.properties.privateEndpointConnections`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_endpoint_connections: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_local_auth: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CosmosVnetRule {
    pub id: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "ignoreMissingVNetServiceEndpoint"
    )]
    pub ignore_missing_vnet_service_endpoint: Option<bool>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CosmosIpRule {
    #[serde(default)]
    pub ip_address_or_range: String,
    #[serde(flatten)]
    pub rest: Rest,
}

/// The gateway: fhirlock creates it whole, so only what posture and ownership need is typed; the
/// rest of its body is compared as JSON against the desired body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationGateway {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Map<String, Value>>,
    #[serde(default)]
    pub properties: GatewayProperties,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayProperties {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "frontendIPConfigurations"
    )]
    pub frontend_ip_configurations: Option<Vec<FrontendIpConfiguration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontendIpConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub properties: FrontendIpProperties,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FrontendIpProperties {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "privateIPAddress"
    )]
    pub private_ip_address: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "publicIPAddress"
    )]
    pub public_ip_address: Option<Value>,
    #[serde(flatten)]
    pub rest: Rest,
}

impl ApplicationGateway {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.as_ref()?.get(key)?.as_str()
    }
    pub fn public_frontends(&self) -> Vec<String> {
        self.properties
            .frontend_ip_configurations
            .iter()
            .flatten()
            .filter(|f| {
                f.properties
                    .public_ip_address
                    .as_ref()
                    .is_some_and(|v| !v.is_null())
            })
            .map(|f| f.name.clone().unwrap_or_default())
            .collect()
    }
    pub fn private_ip(&self) -> Option<String> {
        self.properties
            .frontend_ip_configurations
            .iter()
            .flatten()
            .find_map(|f| f.properties.private_ip_address.clone())
    }
}

/// Parses a resource body, keeping what it does not model.
pub fn parse<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, serde_json::Error> {
    serde_json::from_value(v.clone())
}

/// Serializes a model back to JSON.
pub fn to_json<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).expect("models always serialize")
}
