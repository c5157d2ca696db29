//! The estates and endpoints a benchmark converges: endpoint `i` has its own estate, a VNet
//! `10.a.b.0/24` (one per endpoint, so that one endpoint's gateway operation never locks another's
//! VNet), an App Service plan, a wide-open site and a wide-open Cosmos account, like
//! `examples/arm-emulator-estate.yaml`.

use fhirlock_testkit::SUBSCRIPTION as SUB;
use serde_json::{Value, json};

/// The namespace of every benchmark's endpoints.
pub const NS: &str = "bench";

fn octets(i: usize) -> (usize, usize) {
    (20 + i / 256, i % 256)
}

pub fn vnet_id(i: usize) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/hscn-net/providers/Microsoft.Network/virtualNetworks/vnet-e{i}"
    )
}
pub fn site_id(i: usize) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.Web/sites/site-e{i}")
}
pub fn cosmos_id(i: usize) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.DocumentDB/databaseAccounts/cosmos-e{i}"
    )
}

pub fn seeds(n: usize) -> Vec<Value> {
    let mut out = vec![
        json!({"id": format!("/subscriptions/{SUB}/resourceGroups/hscn-net"), "body": {"location": "uksouth"}}),
        json!({"id": format!("/subscriptions/{SUB}/resourceGroups/fhir"), "body": {"location": "uksouth"}}),
    ];
    for i in 0..n {
        let (a, b) = octets(i);
        let plan = format!(
            "/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.Web/serverfarms/plan-e{i}"
        );
        out.push(json!({"id": vnet_id(i), "body": {"location": "uksouth",
            "properties": {"addressSpace": {"addressPrefixes": [format!("10.{a}.{b}.0/24")]}}}}));
        out.push(json!({"id": plan, "body": {"location": "uksouth", "kind": "linux",
            "sku": {"name": "P1v3", "tier": "PremiumV3", "size": "P1v3", "family": "Pv3", "capacity": 1},
            "properties": {"reserved": true}}}));
        out.push(json!({"id": site_id(i), "body": {"location": "uksouth", "kind": "app,linux", "properties": {
            "serverFarmId": plan, "httpsOnly": false, "publicNetworkAccess": "Enabled",
            "siteConfig": {"linuxFxVersion": "DOTNETCORE|8.0", "ipSecurityRestrictionsDefaultAction": "Allow",
                "ipSecurityRestrictions": [{"name": "office", "ipAddress": "203.0.113.0/24", "action": "Allow", "priority": 100, "tag": "Default"}],
                "scmIpSecurityRestrictionsDefaultAction": "Allow", "scmIpSecurityRestrictionsUseMain": false,
                "scmIpSecurityRestrictions": [], "minTlsVersion": "1.2", "ftpsState": "AllAllowed"}}}}));
        out.push(json!({"id": cosmos_id(i), "body": {"location": "uksouth", "kind": "GlobalDocumentDB", "properties": {
            "databaseAccountOfferType": "Standard",
            "locations": [{"locationName": "UK South", "failoverPriority": 0, "isZoneRedundant": false}],
            "publicNetworkAccess": "Enabled", "isVirtualNetworkFilterEnabled": false, "virtualNetworkRules": [],
            "ipRules": [{"ipAddressOrRange": "198.51.100.0/24"}, {"ipAddressOrRange": "0.0.0.0"}],
            "networkAclBypass": "AzureServices", "networkAclBypassResourceIds": [],
            "disableLocalAuth": false, "disableKeyBasedMetadataWriteAccess": false}}}));
    }
    out
}

/// `examples/fhir-endpoint.yaml`, re-pointed at estate `i`.
pub fn endpoint(i: usize) -> Value {
    let (a, b) = octets(i);
    json!({
        "apiVersion": "fhirlock.io/v1alpha1",
        "kind": "SecuredFhirEndpoint",
        "metadata": {"name": format!("ep-e{i}"), "namespace": NS},
        "spec": {
            "subscriptionId": SUB,
            "network": {
                "virtualNetworkId": vnet_id(i),
                "gatewaySubnet": {"name": "snet-fhir-agw", "addressPrefix": format!("10.{a}.{b}.0/26")},
                "integrationSubnet": {"name": "snet-fhir-int", "addressPrefix": format!("10.{a}.{b}.64/27")},
            },
            "appService": {"id": site_id(i), "scmSite": "LockedLikeMain"},
            "cosmosDb": {"id": cosmos_id(i)},
            "gateway": {
                "name": format!("agw-e{i}"), "resourceGroup": "fhir", "location": "uksouth",
                "sku": {"tier": "WAF_v2", "minCapacity": 1, "maxCapacity": 3},
                "privateIPAddress": format!("10.{a}.{b}.10"),
                "hostName": format!("fhir-e{i}.trust.nhs.uk"),
                "tls": {"secretRef": {"name": "fhir-tls"}},
                "sslPolicy": "AppGwSslPolicy20220101S",
                "probePath": "/metadata",
            },
            "mode": "Enforce",
            "deletionPolicy": "Retain",
        }
    })
}

/// Which endpoint an ARM id belongs to (`…-e<i>` in one of its names).
pub fn endpoint_of(id: &str) -> Option<usize> {
    let at = id.find("-e")?;
    let digits: String = id[at + 2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
