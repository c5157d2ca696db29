//! Pieces of the §6 estate the checklist tests build on: the gateway and integration subnets, a
//! network-isolated subscription, a gateway body, and a site with a Cosmos account.

use serde_json::{Value, json};

use super::*;

pub fn agw_subnet(h: &mut H) {
    let r = h.put_subnet("snet-agw", json!({
        "addressPrefix": "10.20.1.0/24",
        "delegations": [{"name": "agw", "properties": {"serviceName": "Microsoft.Network/applicationGateways"}}],
        "serviceEndpoints": [{"service": "Microsoft.Web"}]
    }));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    h.settle();
}

/// The gateway subnet with the `Microsoft.KeyVault` endpoint too, the private-only gateway's path
/// to the vault of a Key Vault certificate.
pub fn agw_subnet_reaching_key_vault(h: &mut H) {
    let r = h.put_subnet("snet-agw", json!({
        "addressPrefix": "10.20.1.0/24",
        "delegations": [{"name": "agw", "properties": {"serviceName": "Microsoft.Network/applicationGateways"}}],
        "serviceEndpoints": [{"service": "Microsoft.Web"}, {"service": "Microsoft.KeyVault"}]
    }));
    assert!(
        r.status == 200 || r.status == 201,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    h.settle();
}

pub fn int_subnet(h: &mut H) {
    let r = h.put_subnet("snet-app-int", json!({
        "addressPrefix": "10.20.2.0/26",
        "delegations": [{"name": "Microsoft.Web.serverFarms", "properties": {"serviceName": "Microsoft.Web/serverFarms"}}],
        "serviceEndpoints": [{"service": "Microsoft.AzureCosmosDB"}]
    }));
    assert_eq!(r.status, 201);
    h.settle();
}

pub fn register_isolation(h: &mut H) {
    h.ok("POST", &format!("/subscriptions/{SUB}/providers/Microsoft.Features/providers/Microsoft.Network/features/EnableApplicationGatewayNetworkIsolation/register"), "2021-07-01", None);
    h.settle();
}

pub fn gateway_body(public_ip: Option<&str>) -> Value {
    let id = agw_id("agw-fhir");
    let snet = subnet_id("hscn-net", "hscn-vnet", "snet-agw");
    let mut fes = vec![
        json!({"name": "fe-private", "properties": {"privateIPAllocationMethod": "Static", "privateIPAddress": "10.20.1.10", "subnet": {"id": snet}}}),
    ];
    if let Some(pip) = public_ip {
        fes.push(json!({"name": "fe-public", "properties": {"publicIPAddress": {"id": pip}}}));
    }
    json!({
        "location": "uksouth",
        "properties": {
            "sku": {"name": "Standard_v2", "tier": "Standard_v2", "capacity": 2},
            "gatewayIPConfigurations": [{"name": "gwip", "properties": {"subnet": {"id": snet}}}],
            "frontendIPConfigurations": fes,
            "frontendPorts": [{"name": "p443", "properties": {"port": 443}}],
            "sslCertificates": [{"name": "cert", "properties": {"data": "UEZY", "password": "secret"}}],
            "backendAddressPools": [{"name": "app", "properties": {"backendAddresses": [{"fqdn": "fhir-server.azurewebsites.net"}]}}],
            "backendHttpSettingsCollection": [{"name": "https", "properties": {"port": 443, "protocol": "Https", "pickHostNameFromBackendAddress": true}}],
            "httpListeners": [{"name": "l443", "properties": {
                "frontendIPConfiguration": {"id": format!("{id}/frontendIPConfigurations/fe-private")},
                "frontendPort": {"id": format!("{id}/frontendPorts/p443")},
                "protocol": "Https", "sslCertificate": {"id": format!("{id}/sslCertificates/cert")}}}],
            "requestRoutingRules": [{"name": "r1", "properties": {"ruleType": "Basic", "priority": 100,
                "httpListener": {"id": format!("{id}/httpListeners/l443")},
                "backendAddressPool": {"id": format!("{id}/backendAddressPools/app")},
                "backendHttpSettings": {"id": format!("{id}/backendHttpSettingsCollection/https")}}}]
        }
    })
}

pub fn site_and_cosmos(h: &mut H) {
    h.ok(
        "PUT",
        &plan_id("plan"),
        WEB,
        Some(json!({"location": "uksouth", "sku": {"name": "P1v3", "tier": "PremiumV3"}})),
    );
    h.ok(
        "PUT",
        &site_id("fhir-server"),
        WEB,
        Some(json!({"location": "uksouth", "properties": {"serverFarmId": plan_id("plan")}})),
    );
    h.ok("PUT", &cosmos_id("fhir-cosmos"), COSMOS, Some(json!({"location": "uksouth", "properties": {
        "databaseAccountOfferType": "Standard", "locations": [{"locationName": "UK South", "failoverPriority": 0}],
        "ipRules": [{"ipAddressOrRange": "203.0.113.7"}]}})));
    h.settle();
}

pub fn key_vault_gateway(identity: Option<Value>) -> Value {
    let mut b = gateway_body(None);
    b["properties"]["sslCertificates"] = json!([{"name": "cert", "properties": {
        "keyVaultSecretId": "https://fhir-vault.vault.azure.net/secrets/fhir-tls"}}]);
    if let Some(i) = identity {
        b["identity"] = i;
    }
    b
}

pub fn uai(name: &str) -> String {
    format!(
        "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
        rg("fhir")
    )
}
