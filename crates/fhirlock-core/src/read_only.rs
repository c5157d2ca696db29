//! The fields Microsoft's specification marks read-only, taken out of a body built from a
//! read-back before it is written. ARM ignores them on a PUT (ARM RPC: the server sets them), but
//! a client that echoes them sends the server's view back as if it were its own wish, and a
//! stricter resource provider, or a future api-version, may refuse them.
//!
//! Source: the `_validation` `readonly` entries of Microsoft's generated models in
//! azure-mgmt-network 30.0.0 (api-version 2024-10-01), `ApplicationGateway` and `Subnet`, walked
//! recursively through every model they embed. No Python release carries 2025-01-01, the
//! api-version fhirlock sends (`observed::api_version::NETWORK`); 2024-10-01 is the nearest below
//! it, and the 2025-01-01 REST spec (azure-rest-api-specs
//! `specification/network/resource-manager/Microsoft.Network/stable/2025-01-01/applicationGateway.json`,
//! `virtualNetwork.json`) was spot-checked for the fields fhirlock's bodies carry [U: no full
//! diff of the two versions' read-only sets]. `tests/emulator-conformance/check_bodies.py` holds
//! recorded bodies to the same models.
//!
//! Paths are dot-separated JSON keys; `[]` is every item of an array, `{}` every value of a map.

use serde_json::Value;

/// A resource type whose bodies fhirlock builds from what it read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `Microsoft.Network/applicationGateways`.
    ApplicationGateway,
    /// `Microsoft.Network/virtualNetworks/subnets`.
    Subnet,
    /// `Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies`.
    WafPolicy,
}

/// Every child collection of an Application Gateway whose items are sub-resources with a
/// read-only `etag`, `type` and `properties.provisioningState` (ApplicationGatewayIPConfiguration,
/// …SslCertificate, …Probe, …BackendAddressPool and so on, in the model).
const GATEWAY_CHILDREN: &[&str] = &[
    "gatewayIPConfigurations",
    "authenticationCertificates",
    "trustedRootCertificates",
    "trustedClientCertificates",
    "sslCertificates",
    "frontendIPConfigurations",
    "frontendPorts",
    "probes",
    "backendAddressPools",
    "backendHttpSettingsCollection",
    "backendSettingsCollection",
    "httpListeners",
    "listeners",
    "sslProfiles",
    "urlPathMaps",
    "requestRoutingRules",
    "routingRules",
    "privateLinkConfigurations",
    "loadDistributionPolicies",
];

/// The gateway's other read-only fields (besides [`GATEWAY_CHILDREN`]'s three each).
const GATEWAY: &[&str] = &[
    "name",
    "type",
    "etag",
    "identity.principalId",
    "identity.tenantId",
    "identity.userAssignedIdentities.{}.principalId",
    "identity.userAssignedIdentities.{}.clientId",
    "properties.operationalState",
    "properties.resourceGuid",
    "properties.provisioningState",
    "properties.privateEndpointConnections",
    "properties.defaultPredefinedSslPolicy",
    "properties.trustedClientCertificates.[].properties.validatedCertData",
    "properties.trustedClientCertificates.[].properties.clientCertIssuerDN",
    "properties.sslCertificates.[].properties.publicCertData",
    "properties.backendAddressPools.[].properties.backendIPConfigurations",
    "properties.urlPathMaps.[].properties.pathRules.[].etag",
    "properties.urlPathMaps.[].properties.pathRules.[].type",
    "properties.urlPathMaps.[].properties.pathRules.[].properties.provisioningState",
    // RewriteRuleSet and RedirectConfiguration carry only some of the three.
    "properties.rewriteRuleSets.[].etag",
    "properties.rewriteRuleSets.[].properties.provisioningState",
    "properties.redirectConfigurations.[].etag",
    "properties.redirectConfigurations.[].type",
    "properties.privateLinkConfigurations.[].properties.ipConfigurations.[].etag",
    "properties.privateLinkConfigurations.[].properties.ipConfigurations.[].type",
    "properties.privateLinkConfigurations.[].properties.ipConfigurations.[].properties.provisioningState",
    "properties.loadDistributionPolicies.[].properties.loadDistributionTargets.[].etag",
    "properties.loadDistributionPolicies.[].properties.loadDistributionTargets.[].type",
];

/// The subnet's read-only fields. Its `id`, `name` and `type` are writable in the model. The
/// references (`networkSecurityGroup`, `routeTable`, `serviceEndpointPolicies`) embed whole
/// models there; a read-back carries only their `id`, but their read-only parts are listed too.
const SUBNET: &[&str] = &[
    "etag",
    "properties.provisioningState",
    "properties.purpose",
    "properties.privateEndpoints",
    "properties.ipConfigurations",
    "properties.ipConfigurationProfiles",
    "properties.resourceNavigationLinks",
    "properties.serviceAssociationLinks",
    "properties.serviceEndpoints.[].provisioningState",
    "properties.delegations.[].etag",
    "properties.delegations.[].properties.actions",
    "properties.delegations.[].properties.provisioningState",
    "properties.applicationGatewayIPConfigurations.[].etag",
    "properties.applicationGatewayIPConfigurations.[].type",
    "properties.applicationGatewayIPConfigurations.[].properties.provisioningState",
    "properties.ipamPoolPrefixAllocations.[].allocatedAddressPrefixes",
    "properties.networkSecurityGroup.name",
    "properties.networkSecurityGroup.type",
    "properties.networkSecurityGroup.etag",
    "properties.networkSecurityGroup.properties.securityRules.[].etag",
    "properties.networkSecurityGroup.properties.securityRules.[].properties.provisioningState",
    "properties.networkSecurityGroup.properties.securityRules.[].properties.sourceApplicationSecurityGroups.[].name",
    "properties.networkSecurityGroup.properties.securityRules.[].properties.sourceApplicationSecurityGroups.[].type",
    "properties.networkSecurityGroup.properties.securityRules.[].properties.sourceApplicationSecurityGroups.[].etag",
    "properties.networkSecurityGroup.properties.securityRules.[].properties.sourceApplicationSecurityGroups.[].properties.resourceGuid",
    "properties.networkSecurityGroup.properties.securityRules.[].properties.sourceApplicationSecurityGroups.[].properties.provisioningState",
    "properties.networkSecurityGroup.properties.securityRules.[].properties.destinationApplicationSecurityGroups.[].name",
    "properties.networkSecurityGroup.properties.securityRules.[].properties.destinationApplicationSecurityGroups.[].type",
    "properties.networkSecurityGroup.properties.securityRules.[].properties.destinationApplicationSecurityGroups.[].etag",
    "properties.networkSecurityGroup.properties.securityRules.[].properties.destinationApplicationSecurityGroups.[].properties.resourceGuid",
    "properties.networkSecurityGroup.properties.securityRules.[].properties.destinationApplicationSecurityGroups.[].properties.provisioningState",
    "properties.networkSecurityGroup.properties.defaultSecurityRules",
    "properties.networkSecurityGroup.properties.networkInterfaces",
    "properties.networkSecurityGroup.properties.subnets",
    "properties.networkSecurityGroup.properties.flowLogs",
    "properties.networkSecurityGroup.properties.resourceGuid",
    "properties.networkSecurityGroup.properties.provisioningState",
    "properties.routeTable.name",
    "properties.routeTable.type",
    "properties.routeTable.etag",
    "properties.routeTable.properties.routes.[].etag",
    "properties.routeTable.properties.routes.[].properties.provisioningState",
    "properties.routeTable.properties.routes.[].properties.hasBgpOverride",
    "properties.routeTable.properties.subnets",
    "properties.routeTable.properties.provisioningState",
    "properties.routeTable.properties.resourceGuid",
    "properties.serviceEndpointPolicies.[].name",
    "properties.serviceEndpointPolicies.[].type",
    "properties.serviceEndpointPolicies.[].etag",
    "properties.serviceEndpointPolicies.[].kind",
    "properties.serviceEndpointPolicies.[].properties.serviceEndpointPolicyDefinitions.[].etag",
    "properties.serviceEndpointPolicies.[].properties.serviceEndpointPolicyDefinitions.[].properties.provisioningState",
    "properties.serviceEndpointPolicies.[].properties.subnets",
    "properties.serviceEndpointPolicies.[].properties.resourceGuid",
    "properties.serviceEndpointPolicies.[].properties.provisioningState",
];

/// The WAF policy's read-only fields: `readOnly` in the 2025-01-01 REST spec itself
/// (`webapplicationfirewall.json`, `WebApplicationFirewallPolicy` and what it embeds; `name` and
/// `type` from `network.json` `Resource`). `applicationGateways` are the gateways that reference
/// it, embedded whole, so they go as one.
const WAF_POLICY: &[&str] = &[
    "name",
    "type",
    "etag",
    "properties.applicationGateways",
    "properties.provisioningState",
    "properties.resourceState",
    "properties.httpListeners",
    "properties.pathBasedRules",
    "properties.applicationGatewayForContainers",
    "properties.customRules.[].etag",
    "properties.managedRules.managedRuleSets.[].computedDisabledRules",
];

/// The read-only paths of `kind`, as listed in the module's source.
pub fn paths(kind: Kind) -> Vec<String> {
    match kind {
        Kind::Subnet => SUBNET.iter().map(|p| (*p).to_owned()).collect(),
        Kind::WafPolicy => WAF_POLICY.iter().map(|p| (*p).to_owned()).collect(),
        Kind::ApplicationGateway => {
            let children = GATEWAY_CHILDREN.iter().flat_map(|c| {
                ["etag", "type", "properties.provisioningState"]
                    .map(|f| format!("properties.{c}.[].{f}"))
            });
            GATEWAY
                .iter()
                .map(|p| (*p).to_owned())
                .chain(children)
                .collect()
        }
    }
}

/// `body` without any field the specification marks read-only for `kind`. Everything else, the
/// fields fhirlock has no model for included, is left as it is.
pub fn strip(kind: Kind, body: &mut Value) {
    for path in paths(kind) {
        let parts: Vec<&str> = path.split('.').collect();
        remove(body, &parts);
    }
}

fn remove(v: &mut Value, parts: &[&str]) {
    let Some((first, rest)) = parts.split_first() else {
        return;
    };
    match (*first, v) {
        ("[]", Value::Array(items)) => items.iter_mut().for_each(|x| remove(x, rest)),
        ("{}", Value::Object(m)) => m.values_mut().for_each(|x| remove(x, rest)),
        (key, Value::Object(m)) if rest.is_empty() => {
            m.remove(key);
        }
        (key, Value::Object(m)) => {
            if let Some(x) = m.get_mut(key) {
                remove(x, rest);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_gateway_read_back_loses_what_the_server_sets_and_keeps_the_rest() {
        let mut read_back = json!({
            "id": "/s/agw", "name": "agw", "type": "Microsoft.Network/applicationGateways",
            "etag": "W/\"1\"", "location": "uksouth", "tags": {"a": "b"},
            "identity": {"type": "UserAssigned", "principalId": "p", "tenantId": "t",
                "userAssignedIdentities": {"/s/uai": {"principalId": "p", "clientId": "c"}}},
            "properties": {
                "provisioningState": "Succeeded", "operationalState": "Running", "resourceGuid": "g",
                "defaultPredefinedSslPolicy": "AppGwSslPolicy20220101", "privateEndpointConnections": [],
                "sku": {"name": "Standard_v2", "tier": "Standard_v2"},
                "futureField": {"etag": "kept: not a known read-only path"},
                "sslCertificates": [{"id": "/s/agw/sslCertificates/c", "name": "c", "etag": "W/\"1\"",
                    "type": "Microsoft.Network/applicationGateways/sslCertificates",
                    "properties": {"provisioningState": "Succeeded", "publicCertData": "MII", "keyVaultSecretId": "https://kv/s"}}],
                "backendAddressPools": [{"name": "app", "etag": "W/\"1\"", "properties": {
                    "backendAddresses": [{"fqdn": "x"}], "backendIPConfigurations": [], "provisioningState": "Succeeded"}}],
                "urlPathMaps": [{"name": "m", "properties": {"pathRules": [{"name": "r", "etag": "e", "type": "t",
                    "properties": {"paths": ["/a"], "provisioningState": "Succeeded"}}]}}],
                "redirectConfigurations": [{"name": "rc", "etag": "e", "type": "t", "properties": {"redirectType": "Permanent"}}]
            }
        });
        strip(Kind::ApplicationGateway, &mut read_back);
        assert_eq!(
            read_back,
            json!({
                "id": "/s/agw", "location": "uksouth", "tags": {"a": "b"},
                "identity": {"type": "UserAssigned", "userAssignedIdentities": {"/s/uai": {}}},
                "properties": {
                    "sku": {"name": "Standard_v2", "tier": "Standard_v2"},
                    "futureField": {"etag": "kept: not a known read-only path"},
                    "sslCertificates": [{"id": "/s/agw/sslCertificates/c", "name": "c",
                        "properties": {"keyVaultSecretId": "https://kv/s"}}],
                    "backendAddressPools": [{"name": "app", "properties": {"backendAddresses": [{"fqdn": "x"}]}}],
                    "urlPathMaps": [{"name": "m", "properties": {"pathRules": [{"name": "r", "properties": {"paths": ["/a"]}}]}}],
                    "redirectConfigurations": [{"name": "rc", "properties": {"redirectType": "Permanent"}}]
                }
            })
        );
    }

    #[test]
    fn a_subnet_read_back_loses_what_the_server_sets_and_keeps_the_rest() {
        let mut read_back = json!({
            "id": "/s/v/subnets/a", "name": "a", "type": "Microsoft.Network/virtualNetworks/subnets",
            "etag": "W/\"7\"",
            "properties": {
                "addressPrefix": "10.0.1.0/24", "provisioningState": "Succeeded", "purpose": "x",
                "privateEndpointNetworkPolicies": "Disabled",
                "networkSecurityGroup": {"id": "/s/nsg"},
                "serviceEndpoints": [{"service": "Microsoft.Web", "locations": ["*"], "provisioningState": "Succeeded"}],
                "delegations": [{"id": "/s/v/subnets/a/delegations/d", "name": "d", "etag": "W/\"7\"",
                    "type": "Microsoft.Network/virtualNetworks/subnets/delegations",
                    "properties": {"serviceName": "Microsoft.Web/serverFarms", "actions": ["a"], "provisioningState": "Succeeded"}}],
                "serviceAssociationLinks": [{"name": "AppServiceLink"}],
                "ipConfigurations": [{"id": "/s/nic/ipc"}],
                "applicationGatewayIPConfigurations": [{"id": "/s/agw/gatewayIPConfigurations/g", "etag": "e", "type": "t",
                    "properties": {"subnet": {"id": "/s/v/subnets/a"}, "provisioningState": "Succeeded"}}]
            }
        });
        strip(Kind::Subnet, &mut read_back);
        assert_eq!(
            read_back,
            json!({
                "id": "/s/v/subnets/a", "name": "a", "type": "Microsoft.Network/virtualNetworks/subnets",
                "properties": {
                    "addressPrefix": "10.0.1.0/24", "privateEndpointNetworkPolicies": "Disabled",
                    "networkSecurityGroup": {"id": "/s/nsg"},
                    "serviceEndpoints": [{"service": "Microsoft.Web", "locations": ["*"]}],
                    "delegations": [{"id": "/s/v/subnets/a/delegations/d", "name": "d",
                        "type": "Microsoft.Network/virtualNetworks/subnets/delegations",
                        "properties": {"serviceName": "Microsoft.Web/serverFarms"}}],
                    "applicationGatewayIPConfigurations": [{"id": "/s/agw/gatewayIPConfigurations/g",
                        "properties": {"subnet": {"id": "/s/v/subnets/a"}}}]
                }
            })
        );
    }

    #[test]
    fn every_gateway_child_loses_its_etag_type_and_provisioning_state() {
        for child in GATEWAY_CHILDREN {
            let mut v = json!({"properties": {*child: [{"name": "n", "etag": "e", "type": "t",
                "properties": {"provisioningState": "Succeeded", "x": 1}}]}});
            strip(Kind::ApplicationGateway, &mut v);
            assert_eq!(
                v,
                json!({"properties": {*child: [{"name": "n", "properties": {"x": 1}}]}}),
                "{child}"
            );
        }
    }

    #[test]
    fn a_waf_policy_read_back_loses_its_back_references_and_state() {
        let mut read_back = json!({
            "id": "/s/p", "name": "p", "type": "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies",
            "etag": "W/\"1\"", "location": "uksouth", "tags": {"t": "v"},
            "properties": {
                "provisioningState": "Succeeded", "resourceState": "Enabled",
                "applicationGateways": [{"id": "/s/agw"}], "httpListeners": [], "pathBasedRules": [],
                "policySettings": {"state": "Enabled", "mode": "Prevention"},
                "customRules": [{"name": "c", "etag": "e", "priority": 1}],
                "managedRules": {"managedRuleSets": [{"ruleSetType": "Microsoft_DefaultRuleSet",
                    "ruleSetVersion": "2.1", "computedDisabledRules": []}]}
            }
        });
        strip(Kind::WafPolicy, &mut read_back);
        assert_eq!(
            read_back,
            json!({
                "id": "/s/p", "location": "uksouth", "tags": {"t": "v"},
                "properties": {
                    "policySettings": {"state": "Enabled", "mode": "Prevention"},
                    "customRules": [{"name": "c", "priority": 1}],
                    "managedRules": {"managedRuleSets": [{"ruleSetType": "Microsoft_DefaultRuleSet",
                        "ruleSetVersion": "2.1"}]}
                }
            })
        );
    }

    #[test]
    fn bodies_of_the_wrong_shape_are_left_alone() {
        for mut v in [
            json!(null),
            json!([1, 2]),
            json!("s"),
            json!({"properties": "not an object"}),
            json!({"properties": {"sslCertificates": {"not": "an array"}}}),
            json!({"identity": {"userAssignedIdentities": ["not", "a", "map"]}}),
        ] {
            let before = v.clone();
            strip(Kind::ApplicationGateway, &mut v);
            strip(Kind::Subnet, &mut v);
            assert_eq!(v, before);
        }
    }
}
