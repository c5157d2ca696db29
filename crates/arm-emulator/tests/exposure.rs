//! The exposure oracle's verdicts: a wide-open estate, a fully locked one, and one case per back door.

mod common;
use common::*;
use serde_json::{Value, json};

const NETRG: &str = "hscn-net";

fn snet(name: &str) -> String {
    subnet_id(NETRG, "hscn-vnet", name)
}
fn site() -> String {
    site_id("fhir-server")
}
fn cosmos() -> String {
    cosmos_id("fhir-cosmos")
}
fn cfg() -> String {
    format!("{}/config/web", site())
}

fn main_of(x: &Value) -> Value {
    x["sites"][&site()]["main"].clone()
}
fn scm_of(x: &Value) -> Value {
    x["sites"][&site()]["scm"].clone()
}
fn cosmos_of(x: &Value) -> Value {
    x["cosmos"][&cosmos()]["dataPlane"].clone()
}
fn fe(name: &str) -> String {
    format!(
        "frontend:{}/frontendIPConfigurations/{name}",
        agw_id("agw-fhir")
    )
}

/// The §6 end state applied to the wide-open estate, the way the operator would.
fn locked() -> H {
    let mut h = H::estate();
    let r = h.put_subnet("snet-agw", json!({"addressPrefix": "10.20.1.0/24",
        "delegations": [{"name": "agw", "properties": {"serviceName": "Microsoft.Network/applicationGateways"}}],
        "serviceEndpoints": [{"service": "Microsoft.Web", "locations": ["*"]}]}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    h.settle();
    h.put_subnet("snet-app-int", json!({"addressPrefix": "10.20.2.0/26",
        "delegations": [{"name": "Microsoft.Web.serverFarms", "properties": {"serviceName": "Microsoft.Web/serverFarms"}}],
        "serviceEndpoints": [{"service": "Microsoft.AzureCosmosDB", "locations": ["*"]}]}));
    h.settle();
    h.ok("PATCH", &cosmos(), COSMOS, Some(json!({"properties": {"publicNetworkAccess": "Enabled", "isVirtualNetworkFilterEnabled": true,
        "virtualNetworkRules": [{"id": snet("snet-app-int"), "ignoreMissingVNetServiceEndpoint": false}],
        "ipRules": [], "networkAclBypass": "None", "networkAclBypassResourceIds": [], "disableLocalAuth": true}})));
    h.settle();
    h.ok("PATCH", &site(), WEB, Some(json!({"properties": {"httpsOnly": true, "publicNetworkAccess": "Enabled", "virtualNetworkSubnetId": snet("snet-app-int")}})));
    h.ok("PUT", &agw_id("agw-fhir"), NET, Some(gateway(false)));
    h.settle();
    h.ok("PATCH", &cfg(), WEB, Some(json!({"properties": {
        "ipSecurityRestrictions": [{"name": "agw-subnet", "action": "Allow", "priority": 100, "tag": "Default", "vnetSubnetResourceId": snet("snet-agw")}],
        "ipSecurityRestrictionsDefaultAction": "Deny",
        "scmIpSecurityRestrictionsUseMain": false, "scmIpSecurityRestrictions": [], "scmIpSecurityRestrictionsDefaultAction": "Deny"}})));
    h
}

fn gateway(public: bool) -> Value {
    let id = agw_id("agw-fhir");
    let mut fes = vec![
        json!({"name": "fe-private", "properties": {"privateIPAllocationMethod": "Static", "privateIPAddress": "10.20.1.10", "subnet": {"id": snet("snet-agw")}}}),
    ];
    let mut listeners = vec![
        json!({"name": "l-private", "properties": {"frontendIPConfiguration": {"id": format!("{id}/frontendIPConfigurations/fe-private")}, "frontendPort": {"id": format!("{id}/frontendPorts/p443")}, "protocol": "Https"}}),
    ];
    let mut rules = vec![
        json!({"name": "r-private", "properties": {"ruleType": "Basic", "priority": 100, "httpListener": {"id": format!("{id}/httpListeners/l-private")},
        "backendAddressPool": {"id": format!("{id}/backendAddressPools/app")}, "backendHttpSettings": {"id": format!("{id}/backendHttpSettingsCollection/https")}}}),
    ];
    if public {
        fes.push(json!({"name": "fe-public", "properties": {"publicIPAddress": {"id": format!("{}/providers/Microsoft.Network/publicIPAddresses/pip", rg(NETRG))}}}));
        listeners.push(json!({"name": "l-public", "properties": {"frontendIPConfiguration": {"id": format!("{id}/frontendIPConfigurations/fe-public")}, "frontendPort": {"id": format!("{id}/frontendPorts/p443")}, "protocol": "Https"}}));
        rules.push(json!({"name": "r-public", "properties": {"ruleType": "Basic", "priority": 200, "httpListener": {"id": format!("{id}/httpListeners/l-public")},
            "backendAddressPool": {"id": format!("{id}/backendAddressPools/app")}, "backendHttpSettings": {"id": format!("{id}/backendHttpSettingsCollection/https")}}}));
    }
    json!({"location": "uksouth", "properties": {
        "sku": {"name": "Standard_v2", "tier": "Standard_v2"}, "autoscaleConfiguration": {"minCapacity": 2, "maxCapacity": 4},
        "gatewayIPConfigurations": [{"name": "gwip", "properties": {"subnet": {"id": snet("snet-agw")}}}],
        "frontendIPConfigurations": fes,
        "frontendPorts": [{"name": "p443", "properties": {"port": 443}}],
        "backendAddressPools": [{"name": "app", "properties": {"backendAddresses": [{"fqdn": "fhir-server.azurewebsites.net"}]}}],
        "backendHttpSettingsCollection": [{"name": "https", "properties": {"port": 443, "protocol": "Https", "pickHostNameFromBackendAddress": true}}],
        "httpListeners": listeners, "requestRoutingRules": rules}})
}

#[test]
fn wide_open_estate_is_reachable_from_everywhere() {
    let mut h = H::estate();
    let x = h.exposure();
    let main = main_of(&x);
    assert_eq!(sources(&main), ["internet", "azure-services"]);
    assert!(
        main["reachableFrom"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("office"),
        "{main}"
    );
    assert_eq!(main["internetDirect"], true);
    assert_eq!(sources(&scm_of(&x)), ["internet", "azure-services"]);
    let c = cosmos_of(&x);
    assert_eq!(sources(&c), ["internet", "azure-services"]);
    assert_eq!(c["internetDirect"], true);
}

#[test]
fn fully_locked_estate_is_reachable_only_through_the_private_gateway() {
    let mut h = locked();
    h.settle();
    let x = h.exposure();
    let main = main_of(&x);
    assert_eq!(
        sources(&main),
        [format!("subnet:{}", snet("snet-agw")), fe("fe-private")],
        "{main}"
    );
    assert_eq!(main["internetDirect"], false);
    assert_eq!(main["internetViaGateway"], false);
    assert_eq!(sources(&scm_of(&x)), Vec::<String>::new());
    let c = cosmos_of(&x);
    assert_eq!(
        sources(&c),
        [format!("subnet:{}", snet("snet-app-int"))],
        "{c}"
    );
}

/// Reopens one door on the locked estate and returns the verdict.
fn with_door(f: impl FnOnce(&mut H)) -> Value {
    let mut h = locked();
    h.settle();
    f(&mut h);
    h.settle();
    h.exposure()
}

#[test]
fn back_door_site_default_allow() {
    let x = with_door(|h| {
        h.ok(
            "PATCH",
            &cfg(),
            WEB,
            Some(json!({"properties": {"ipSecurityRestrictionsDefaultAction": "Allow"}})),
        );
    });
    assert!(sources(&main_of(&x)).contains(&"internet".into()));
    assert_eq!(main_of(&x)["internetDirect"], true);
}

#[test]
fn back_door_site_extra_ip_allow_rule() {
    let x = with_door(|h| {
        h.ok("PATCH", &cfg(), WEB, Some(json!({"properties": {"ipSecurityRestrictions": [
            {"name": "agw-subnet", "action": "Allow", "priority": 100, "vnetSubnetResourceId": snet("snet-agw")},
            {"name": "office", "action": "Allow", "priority": 200, "ipAddress": "203.0.113.0/24"}]}})));
    });
    let main = main_of(&x);
    let internet = main["reachableFrom"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source"] == "internet")
        .unwrap();
    assert!(
        internet["reason"]
            .as_str()
            .unwrap()
            .contains("partly allowed by rule 'office'")
    );
}

#[test]
fn back_door_site_service_tag_rule_admits_azure_services() {
    let x = with_door(|h| {
        h.ok("PATCH", &cfg(), WEB, Some(json!({"properties": {"ipSecurityRestrictions": [
            {"name": "azure", "action": "Allow", "priority": 100, "tag": "ServiceTag", "ipAddress": "AzureCloud"}]}})));
    });
    let s = sources(&main_of(&x));
    assert!(
        s.contains(&"azure-services".into()) && !s.contains(&"internet".into()),
        "{s:?}"
    );
}

#[test]
fn back_door_scm_open_while_main_is_locked() {
    let x = with_door(|h| {
        h.ok(
            "PATCH",
            &cfg(),
            WEB,
            Some(json!({"properties": {"scmIpSecurityRestrictionsDefaultAction": "Allow"}})),
        );
    });
    assert_eq!(
        sources(&scm_of(&x)),
        [
            "internet",
            "azure-services",
            &format!("subnet:{}", snet("snet-agw")),
            &format!("subnet:{}", snet("snet-app-int"))
        ]
    );
    assert!(!sources(&main_of(&x)).contains(&"internet".into()));
}

#[test]
fn scm_inherits_main_rules_when_use_main_is_set() {
    let x = with_door(|h| {
        h.ok("PATCH", &cfg(), WEB, Some(json!({"properties": {"scmIpSecurityRestrictionsUseMain": true, "scmIpSecurityRestrictionsDefaultAction": "Allow"}})));
    });
    let scm = scm_of(&x);
    assert_eq!(
        sources(&scm),
        [format!("subnet:{}", snet("snet-agw"))],
        "main's rules apply, SCM's own default is ignored"
    );
    assert!(
        scm["reachableFrom"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("SCM uses the main site's rules")
    );
}

#[test]
fn back_door_public_frontend_on_the_gateway() {
    let x = with_door(|h| {
        h.ok("PUT", &format!("{}/providers/Microsoft.Network/publicIPAddresses/pip", rg(NETRG)), NET, Some(json!({"location": "uksouth", "sku": {"name": "Standard"}, "properties": {"publicIPAllocationMethod": "Static"}})));
        h.settle();
        h.ok("PUT", &agw_id("agw-fhir"), NET, Some(gateway(true)));
    });
    let main = main_of(&x);
    assert_eq!(main["internetViaGateway"], true);
    let public = main["reachableFrom"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source"] == fe("fe-public"))
        .unwrap();
    assert_eq!(public["public"], true);
    assert_eq!(main["internetDirect"], false);
}

#[test]
fn web_rule_for_a_subnet_without_the_web_endpoint_never_matches() {
    let x = with_door(|h| {
        h.put_subnet("snet-agw", json!({"addressPrefix": "10.20.1.0/24",
            "delegations": [{"name": "agw", "properties": {"serviceName": "Microsoft.Network/applicationGateways"}}]}));
    });
    assert_eq!(
        sources(&main_of(&x)),
        Vec::<String>::new(),
        "the gateway is cut off too"
    );
}

#[test]
fn site_public_network_access_disabled_closes_the_public_endpoint() {
    let x = with_door(|h| {
        h.ok(
            "PATCH",
            &site(),
            WEB,
            Some(json!({"properties": {"publicNetworkAccess": "Disabled"}})),
        );
        h.ok(
            "PATCH",
            &cfg(),
            WEB,
            Some(json!({"properties": {"ipSecurityRestrictionsDefaultAction": "Allow"}})),
        );
    });
    assert_eq!(sources(&main_of(&x)), Vec::<String>::new());
    assert_eq!(sources(&scm_of(&x)), Vec::<String>::new());
}

#[test]
fn back_door_cosmos_public_ip_rule() {
    let x = with_door(|h| {
        h.ok(
            "PATCH",
            &cosmos(),
            COSMOS,
            Some(json!({"properties": {"ipRules": [{"ipAddressOrRange": "198.51.100.0/24"}]}})),
        );
    });
    let c = cosmos_of(&x);
    assert!(sources(&c).contains(&"internet".into()));
    assert!(!sources(&c).contains(&"azure-services".into()));
}

#[test]
fn back_door_cosmos_accept_azure_datacenters_ip_rule() {
    let x = with_door(|h| {
        h.ok(
            "PATCH",
            &cosmos(),
            COSMOS,
            Some(json!({"properties": {"ipRules": [{"ipAddressOrRange": "0.0.0.0"}]}})),
        );
    });
    let s = sources(&cosmos_of(&x));
    assert!(s.contains(&"azure-services".into()) && !s.contains(&"internet".into()));
    assert!(
        s.contains(&format!("subnet:{}", snet("snet-agw"))),
        "a subnet without the Cosmos endpoint egresses from an Azure IP: {s:?}"
    );
}

#[test]
fn back_door_cosmos_azure_services_bypass() {
    let x = with_door(|h| {
        h.ok(
            "PATCH",
            &cosmos(),
            COSMOS,
            Some(json!({"properties": {"networkAclBypass": "AzureServices"}})),
        );
    });
    assert_eq!(
        sources(&cosmos_of(&x)),
        [
            "azure-services".to_string(),
            format!("subnet:{}", snet("snet-app-int"))
        ]
    );
}

#[test]
fn back_door_cosmos_no_firewall() {
    let x = with_door(|h| {
        h.ok(
            "PATCH",
            &cosmos(),
            COSMOS,
            Some(json!({"properties": {"isVirtualNetworkFilterEnabled": false, "ipRules": []}})),
        );
    });
    let s = sources(&cosmos_of(&x));
    assert_eq!(
        s.len(),
        4,
        "internet, azure-services and both subnets: {s:?}"
    );
}

#[test]
fn cosmos_public_network_access_disabled_admits_nothing() {
    let x = with_door(|h| {
        h.ok("PATCH", &cosmos(), COSMOS, Some(json!({"properties": {"publicNetworkAccess": "Disabled", "isVirtualNetworkFilterEnabled": false}})));
    });
    assert_eq!(sources(&cosmos_of(&x)), Vec::<String>::new());
}

#[test]
fn cosmos_vnet_rule_without_the_endpoint_admits_nothing() {
    let x = with_door(|h| {
        // Drop the Cosmos endpoint from the integration subnet (PUT replaces the subnet).
        h.put_subnet("snet-app-int", json!({"addressPrefix": "10.20.2.0/26",
            "delegations": [{"name": "Microsoft.Web.serverFarms", "properties": {"serviceName": "Microsoft.Web/serverFarms"}}]}));
    });
    assert_eq!(sources(&cosmos_of(&x)), Vec::<String>::new());
}

#[test]
fn exposure_lists_every_source() {
    let mut h = locked();
    let x = h.exposure();
    let ids: Vec<&str> = x["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert!(ids.contains(&"internet") && ids.contains(&"azure-services"));
}

fn outbound(x: &Value) -> Value {
    x["sites"][&site()]["outbound"].clone()
}
fn app_reaches_cosmos(x: &Value) -> bool {
    outbound(x)["cosmos"][&cosmos()]["reachable"] == true
}

/// The app's own calls to Cosmos DB come from an Azure address until it joins a subnet with the
/// Microsoft.AzureCosmosDB endpoint, then from that subnet; each is judged against the firewall
/// Cosmos DB applies now (a change arrives `cosmosFirewallPropagationSeconds`, 900, later).
#[test]
fn the_apps_calls_to_cosmos_come_from_its_subnet_and_meet_the_firewall_in_effect() {
    let mut h = H::estate();
    let x = h.exposure();
    assert_eq!(outbound(&x)["source"], "azure-address");
    assert!(
        app_reaches_cosmos(&x),
        "IP rule 0.0.0.0 admits it: {}",
        outbound(&x)
    );
    h.put_subnet("snet-app-int", json!({"addressPrefix": "10.20.2.0/26",
        "delegations": [{"name": "Microsoft.Web.serverFarms", "properties": {"serviceName": "Microsoft.Web/serverFarms"}}],
        "serviceEndpoints": [{"service": "Microsoft.AzureCosmosDB", "locations": ["*"]}]}));
    h.settle();
    // Joining before Cosmos DB admits the subnet cuts the app off: IP rules no longer match it.
    h.ok(
        "PATCH",
        &site(),
        WEB,
        Some(json!({"properties": {"virtualNetworkSubnetId": snet("snet-app-int")}})),
    );
    let x = h.exposure();
    assert_eq!(
        outbound(&x)["source"],
        format!("subnet:{}", snet("snet-app-int"))
    );
    assert_eq!(outbound(&x)["serviceEndpoint"], true);
    assert!(!app_reaches_cosmos(&x), "{}", outbound(&x));
    // The rule, with the filter on, reaches the data plane only after the propagation delay.
    h.ok(
        "PATCH",
        &cosmos(),
        COSMOS,
        Some(json!({"properties": {"isVirtualNetworkFilterEnabled": true,
        "virtualNetworkRules": [{"id": snet("snet-app-int")}]}})),
    );
    h.advance(890.0);
    assert!(!app_reaches_cosmos(&h.exposure()));
    h.advance(20.0);
    let x = h.exposure();
    assert!(app_reaches_cosmos(&x), "{}", outbound(&x));
}

/// In the order fhirlock keeps (the rule, the propagation delay, then the site joins), the app
/// reaches Cosmos DB at every moment.
#[test]
fn with_the_rule_in_effect_first_the_app_never_loses_cosmos() {
    let mut h = H::estate();
    h.put_subnet("snet-app-int", json!({"addressPrefix": "10.20.2.0/26",
        "delegations": [{"name": "Microsoft.Web.serverFarms", "properties": {"serviceName": "Microsoft.Web/serverFarms"}}],
        "serviceEndpoints": [{"service": "Microsoft.AzureCosmosDB", "locations": ["*"]}]}));
    h.settle();
    h.ok(
        "PATCH",
        &cosmos(),
        COSMOS,
        Some(json!({"properties": {"isVirtualNetworkFilterEnabled": true,
        "virtualNetworkRules": [{"id": snet("snet-app-int")}]}})),
    );
    for _ in 0..10 {
        h.advance(100.0);
        assert!(
            app_reaches_cosmos(&h.exposure()),
            "while the rule propagates"
        );
    }
    h.ok(
        "PATCH",
        &site(),
        WEB,
        Some(json!({"properties": {"virtualNetworkSubnetId": snet("snet-app-int")}})),
    );
    let x = h.exposure();
    assert!(app_reaches_cosmos(&x), "{}", outbound(&x));
}
