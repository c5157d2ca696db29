//! One test (at least) per behaviour in the reference's §7 checklist; names start with the item.

mod common;
use common::*;
use serde_json::{Value, json};

fn agw_subnet(h: &mut H) {
    let r = h.put_subnet("snet-agw", json!({
        "addressPrefix": "10.20.1.0/24",
        "delegations": [{"name": "agw", "properties": {"serviceName": "Microsoft.Network/applicationGateways"}}],
        "serviceEndpoints": [{"service": "Microsoft.Web"}]
    }));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    h.settle();
}

fn int_subnet(h: &mut H) {
    let r = h.put_subnet("snet-app-int", json!({
        "addressPrefix": "10.20.2.0/26",
        "delegations": [{"name": "Microsoft.Web.serverFarms", "properties": {"serviceName": "Microsoft.Web/serverFarms"}}],
        "serviceEndpoints": [{"service": "Microsoft.AzureCosmosDB"}]
    }));
    assert_eq!(r.status, 201);
    h.settle();
}

fn register_isolation(h: &mut H) {
    h.ok("POST", &format!("/subscriptions/{SUB}/providers/Microsoft.Features/providers/Microsoft.Network/features/EnableApplicationGatewayNetworkIsolation/register"), "2021-07-01", None);
    h.settle();
}

fn gateway_body(public_ip: Option<&str>) -> Value {
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

fn site_and_cosmos(h: &mut H) {
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

// ------------------------------------------------------------------ 7.1 LRO fidelity

#[test]
fn s7_1_subnet_put_201_updating_with_async_header_and_retry_after_then_succeeded() {
    let mut h = H::new();
    let r = h.put_subnet("a", json!({"addressPrefix": "10.20.5.0/24"}));
    assert_eq!(r.status, 201);
    assert_eq!(r.json_body()["properties"]["provisioningState"], "Updating");
    assert_eq!(r.get_header("Retry-After"), Some("10"));
    let url = r.get_header("Azure-AsyncOperation").unwrap().to_string();
    assert!(
        url.starts_with("https://emu.test:8443/subscriptions/"),
        "absolute: {url}"
    );
    assert!(url.contains("/providers/Microsoft.Network/locations/uksouth/operations/"));
    let p = h.poll(&url);
    assert_eq!(
        (p.status, p.json_body()["status"].as_str().unwrap()),
        (200, "InProgress")
    );
    assert_eq!(
        h.call("GET", &subnet_id("hscn-net", "hscn-vnet", "a"), NET, None)
            .json_body()["properties"]["provisioningState"],
        "Updating"
    );
    h.advance(10.0);
    let p = h.poll(&url);
    assert_eq!(p.json_body()["status"], "Succeeded");
    assert_eq!(
        h.ok("GET", &subnet_id("hscn-net", "hscn-vnet", "a"), NET, None)["properties"]["provisioningState"],
        "Succeeded"
    );
    // Second PUT of an existing subnet: 200.
    assert_eq!(
        h.put_subnet("a", json!({"addressPrefix": "10.20.5.0/24"}))
            .status,
        200
    );
}

#[test]
fn s7_1_delete_202_location_then_204_and_async_status() {
    let mut h = H::new();
    h.put_subnet("a", json!({"addressPrefix": "10.20.5.0/24"}));
    h.settle();
    let r = h.call(
        "DELETE",
        &subnet_id("hscn-net", "hscn-vnet", "a"),
        NET,
        None,
    );
    assert_eq!(r.status, 202);
    let loc = r.get_header("Location").unwrap().to_string();
    let asy = r.get_header("Azure-AsyncOperation").unwrap().to_string();
    assert!(loc.contains("/operationResults/") && loc.starts_with("https://"));
    assert_eq!(h.poll(&loc).status, 202);
    assert_eq!(h.poll(&asy).json_body()["status"], "InProgress");
    h.advance(10.0);
    assert_eq!(h.poll(&loc).status, 204);
    assert_eq!(h.poll(&asy).json_body()["status"], "Succeeded");
    h.fails(
        "GET",
        &subnet_id("hscn-net", "hscn-vnet", "a"),
        NET,
        None,
        404,
        "NotFound",
    );
    // Deleting what does not exist: 204.
    assert_eq!(
        h.call(
            "DELETE",
            &subnet_id("hscn-net", "hscn-vnet", "a"),
            NET,
            None
        )
        .status,
        204
    );
}

#[test]
fn s7_1_cosmos_put_and_patch_answer_200_with_async_header() {
    let mut h = H::new();
    let r = h.call("PUT", &cosmos_id("c"), COSMOS, Some(json!({"location": "uksouth", "properties": {"databaseAccountOfferType": "Standard", "locations": [{"locationName": "UK South"}]}})));
    assert_eq!(r.status, 200);
    assert_eq!(r.json_body()["properties"]["provisioningState"], "Creating");
    assert!(
        r.get_header("Azure-AsyncOperation")
            .unwrap()
            .contains("/providers/Microsoft.DocumentDB/locations/uksouth/operationsStatus/")
    );
    h.settle();
    let r = h.call(
        "PATCH",
        &cosmos_id("c"),
        COSMOS,
        Some(json!({"properties": {"ipRules": []}})),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json_body()["properties"]["provisioningState"], "Updating");
    assert!(r.get_header("Azure-AsyncOperation").is_some());
}

#[test]
fn s7_1_web_config_is_synchronous_and_site_put_200_or_202_when_configured() {
    let mut h = H::new();
    site_and_cosmos(&mut h);
    let r = h.call(
        "PATCH",
        &format!("{}/config/web", site_id("fhir-server")),
        WEB,
        Some(json!({"properties": {"ftpsState": "Disabled"}})),
    );
    assert_eq!(r.status, 200);
    assert!(r.get_header("Azure-AsyncOperation").is_none() && r.get_header("Location").is_none());
    assert_eq!(r.json_body()["properties"]["ftpsState"], "Disabled");
    // With a duration for sites, PUT is the "old model" 202 + Location and the new site is invisible until done.
    let mut cfg = arm_emulator::config::Config::dev();
    cfg.lro.durations.insert("Microsoft.Web/sites".into(), 20.0);
    let mut h = H::with_config(cfg);
    h.ok(
        "PUT",
        &rg("fhir"),
        RG_API,
        Some(json!({"location": "uksouth"})),
    );
    h.ok(
        "PUT",
        &plan_id("plan"),
        WEB,
        Some(json!({"location": "uksouth", "sku": {"tier": "PremiumV3"}})),
    );
    let r = h.call(
        "PUT",
        &site_id("s2"),
        WEB,
        Some(json!({"location": "uksouth", "properties": {"serverFarmId": plan_id("plan")}})),
    );
    assert_eq!(r.status, 202);
    let loc = r.get_header("Location").unwrap().to_string();
    h.fails("GET", &site_id("s2"), WEB, None, 404, "ResourceNotFound");
    assert_eq!(h.poll(&loc).status, 202);
    h.advance(20.0);
    let done = h.poll(&loc);
    assert_eq!(done.status, 200);
    assert_eq!(done.json_body()["name"], "s2");
}

#[test]
fn s7_1_durations_are_per_type_and_scaled_by_time_scale() {
    let mut cfg = arm_emulator::config::Config::dev();
    cfg.lro
        .durations
        .insert("Microsoft.Network/virtualNetworks/subnets".into(), 40.0);
    let mut h = H::with_config(cfg);
    h.e.time_scale = 0.5; // 40 s of Azure time -> 20 s
    h.ok(
        "PUT",
        &rg("hscn-net"),
        RG_API,
        Some(json!({"location": "uksouth"})),
    );
    h.ok("PUT", &vnet_id("hscn-net", "hscn-vnet"), NET, Some(json!({"location": "uksouth", "properties": {"addressSpace": {"addressPrefixes": ["10.20.0.0/16"]}}})));
    h.settle();
    let r = h.put_subnet("a", json!({"addressPrefix": "10.20.5.0/24"}));
    assert_eq!(
        r.get_header("Retry-After"),
        Some("5"),
        "Retry-After is scaled too"
    );
    let url = r.get_header("Azure-AsyncOperation").unwrap().to_string();
    h.advance(19.9);
    assert_eq!(h.poll(&url).json_body()["status"], "InProgress");
    h.advance(0.2);
    assert_eq!(h.poll(&url).json_body()["status"], "Succeeded");
    // At tiny scales Retry-After stays at the configured minimum (1 s) instead of reaching 0.
    h.e.time_scale = 0.01;
    let r = h.put_subnet("b", json!({"addressPrefix": "10.20.6.0/24"}));
    assert_eq!(r.get_header("Retry-After"), Some("1"));
}

#[test]
fn s7_1_injected_lro_failure_reports_error_in_status_and_failed_state() {
    let mut h = H::new();
    h.raw(
        arm_emulator::engine::Request::new("POST", "/_emulator/faults").with_json(
            &json!({"method": "PUT", "path": "*/subnets/a", "failLro": "InternalServerError"}),
        ),
    );
    let r = h.put_subnet("a", json!({"addressPrefix": "10.20.5.0/24"}));
    assert_eq!(r.status, 201);
    let url = r.get_header("Azure-AsyncOperation").unwrap().to_string();
    h.settle();
    let s = h.poll(&url).json_body();
    assert_eq!(s["status"], "Failed");
    assert_eq!(s["error"]["code"], "InternalServerError");
    assert_eq!(
        h.ok("GET", &subnet_id("hscn-net", "hscn-vnet", "a"), NET, None)["properties"]["provisioningState"],
        "Failed"
    );
}

// ------------------------------------------------------------------ 7.2 PUT replaces, PATCH merges

#[test]
fn s7_2_subnet_put_is_full_replace() {
    let mut h = H::new();
    h.put_subnet("a", json!({"addressPrefix": "10.20.5.0/24", "serviceEndpoints": [{"service": "Microsoft.Web"}], "routeTable": {"id": "/x"}}));
    h.settle();
    h.put_subnet("a", json!({"addressPrefix": "10.20.5.0/24"}));
    let v = h.ok("GET", &subnet_id("hscn-net", "hscn-vnet", "a"), NET, None);
    assert!(
        v["properties"]["serviceEndpoints"].is_null(),
        "omitted fields are removed: {v}"
    );
    assert!(v["properties"]["routeTable"].is_null());
}

#[test]
fn s7_2_gateway_put_is_full_replace() {
    let mut h = H::new();
    agw_subnet(&mut h);
    register_isolation(&mut h);
    let mut b = gateway_body(None);
    b["properties"]["autoscaleConfiguration"] = json!({"minCapacity": 2});
    h.ok("PUT", &agw_id("agw-fhir"), NET, Some(b));
    h.settle();
    h.ok("PUT", &agw_id("agw-fhir"), NET, Some(gateway_body(None)));
    h.settle();
    let v = h.ok("GET", &agw_id("agw-fhir"), NET, None);
    assert!(v["properties"]["autoscaleConfiguration"].is_null());
}

#[test]
fn s7_2_cosmos_patch_merges_and_replaces_arrays_whole() {
    let mut h = H::new();
    h.ok("PUT", &cosmos_id("c"), COSMOS, Some(json!({"location": "uksouth", "properties": {"databaseAccountOfferType": "Standard",
        "locations": [{"locationName": "UK South"}], "ipRules": [{"ipAddressOrRange": "1.1.1.1"}, {"ipAddressOrRange": "2.2.2.2"}], "disableLocalAuth": true}})));
    h.settle();
    h.ok(
        "PATCH",
        &cosmos_id("c"),
        COSMOS,
        Some(json!({"properties": {"ipRules": [{"ipAddressOrRange": "3.3.3.3"}]}})),
    );
    h.settle();
    let v = h.ok("GET", &cosmos_id("c"), COSMOS, None);
    assert_eq!(
        v["properties"]["ipRules"],
        json!([{"ipAddressOrRange": "3.3.3.3"}])
    );
    assert_eq!(
        v["properties"]["disableLocalAuth"], true,
        "untouched fields survive"
    );
}

#[test]
fn s7_2_config_web_patch_merges_and_replaces_arrays_whole() {
    let mut h = H::new();
    site_and_cosmos(&mut h);
    let cfg = format!("{}/config/web", site_id("fhir-server"));
    h.ok("PATCH", &cfg, WEB, Some(json!({"properties": {"ipSecurityRestrictions": [
        {"name": "a", "ipAddress": "1.1.1.1/32", "action": "Allow", "priority": 100},
        {"name": "b", "ipAddress": "2.2.2.2/32", "action": "Allow", "priority": 200}], "http20Enabled": true}})));
    let v = h.ok("PATCH", &cfg, WEB, Some(json!({"properties": {"ipSecurityRestrictions": [{"name": "c", "ipAddress": "3.3.3.3/32", "action": "Allow", "priority": 300}]}})));
    let names: Vec<&str> = v["properties"]["ipSecurityRestrictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c", "Deny all"]);
    assert_eq!(v["properties"]["http20Enabled"], true);
}

// ------------------------------------------------------------------ 7.3 conflicts

#[test]
fn s7_3_network_write_while_vnet_updating_is_409_another_operation_in_progress() {
    let mut h = H::new();
    h.put_subnet("a", json!({"addressPrefix": "10.20.5.0/24"}));
    let v = h.call(
        "PUT",
        &subnet_id("hscn-net", "hscn-vnet", "b"),
        NET,
        Some(json!({"properties": {"addressPrefix": "10.20.6.0/24"}})),
    );
    assert_eq!(v.status, 409);
    let body = v.json_body();
    assert_eq!(body["error"]["code"], "AnotherOperationInProgress");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/operations/")
    );
    assert_eq!(body["error"]["details"], json!([]));
    h.settle();
    assert_eq!(
        h.put_subnet("b", json!({"addressPrefix": "10.20.6.0/24"}))
            .status,
        201
    );
}

#[test]
fn s7_3_gateway_update_conflicts_with_itself_and_its_vnet() {
    let mut h = H::new();
    agw_subnet(&mut h);
    register_isolation(&mut h);
    h.ok("PUT", &agw_id("agw-fhir"), NET, Some(gateway_body(None)));
    h.fails(
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        Some(gateway_body(None)),
        409,
        "AnotherOperationInProgress",
    );
    let r = h.put_subnet("x", json!({"addressPrefix": "10.20.9.0/24"}));
    assert_eq!(r.status, 409, "the gateway's VNet is locked");
}

#[test]
fn s7_3_cosmos_write_while_updating_is_412_precondition_failed() {
    let mut h = H::new();
    h.ok("PUT", &cosmos_id("c"), COSMOS, Some(json!({"location": "uksouth", "properties": {"databaseAccountOfferType": "Standard", "locations": [{"locationName": "UK South"}]}})));
    let v = h.fails(
        "PATCH",
        &cosmos_id("c"),
        COSMOS,
        Some(json!({"properties": {"ipRules": []}})),
        412,
        "PreconditionFailed",
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exclusive lock on [c]")
    );
}

// ------------------------------------------------------------------ 7.4 cross-resource validation

#[test]
fn s7_4_subnet_cidr_must_be_inside_vnet_and_not_overlap() {
    let mut h = H::new();
    let r = h.put_subnet("out", json!({"addressPrefix": "10.99.0.0/24"}));
    assert_eq!(
        (
            r.status,
            r.json_body()["error"]["code"].as_str().unwrap().to_string()
        ),
        (400, "NetcfgSubnetRangeOutsideVnet".to_string())
    );
    h.put_subnet("a", json!({"addressPrefix": "10.20.1.0/24"}));
    h.settle();
    let r = h.put_subnet("b", json!({"addressPrefixes": ["10.20.1.128/25"]}));
    assert_eq!(r.json_body()["error"]["code"], "NetcfgSubnetRangesOverlap");
}

#[test]
fn s7_4_in_use_subnet_cannot_be_deleted_or_redelegated() {
    let mut h = H::new();
    int_subnet(&mut h);
    site_and_cosmos(&mut h);
    h.ok("PATCH", &site_id("fhir-server"), WEB, Some(json!({"properties": {"virtualNetworkSubnetId": subnet_id("hscn-net", "hscn-vnet", "snet-app-int")}})));
    let sid = subnet_id("hscn-net", "hscn-vnet", "snet-app-int");
    h.fails("DELETE", &sid, NET, None, 400, "InUseSubnetCannotBeDeleted");
    h.fails(
        "PUT",
        &sid,
        NET,
        Some(json!({"properties": {"addressPrefix": "10.20.2.0/26"}})),
        400,
        "SubnetDelegationsCannotChangeWhenSubnetUsedByResource",
    );
    // Removing the integration (as Terraform does) frees it.
    h.ok(
        "DELETE",
        &format!("{}/networkConfig/virtualNetwork", site_id("fhir-server")),
        WEB,
        None,
    );
    assert_eq!(h.call("DELETE", &sid, NET, None).status, 202);
}

#[test]
fn s7_4_gateway_subnet_exclusivity() {
    let mut h = H::new();
    // A subnet delegated to serverFarms and used by a site, then offered to a gateway.
    h.put_subnet("snet-agw", json!({"addressPrefix": "10.20.1.0/24",
        "delegations": [{"name": "w", "properties": {"serviceName": "Microsoft.Web/serverFarms"}}]}));
    h.settle();
    site_and_cosmos(&mut h);
    h.ok("PATCH", &site_id("fhir-server"), WEB, Some(json!({"properties": {"virtualNetworkSubnetId": subnet_id("hscn-net", "hscn-vnet", "snet-agw")}})));
    register_isolation(&mut h);
    h.fails(
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        Some(gateway_body(None)),
        400,
        "ApplicationGatewaySubnetCannotHaveOtherResources",
    );
}

#[test]
fn s7_4_isolated_gateway_requires_subnet_delegation() {
    let mut h = H::new();
    h.put_subnet("snet-agw", json!({"addressPrefix": "10.20.1.0/24", "serviceEndpoints": [{"service": "Microsoft.Web"}]}));
    h.settle();
    register_isolation(&mut h);
    let v = h.fails(
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        Some(gateway_body(None)),
        400,
        "ApplicationGatewayNetworkIsolationRequiresSubnetDelegation",
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Please delegate subnet")
    );
}

#[test]
fn s7_4_without_isolation_a_private_only_v2_gateway_is_rejected() {
    let mut h = H::new();
    h.put_subnet("snet-agw", json!({"addressPrefix": "10.20.1.0/24"}));
    h.settle();
    h.fails(
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        Some(gateway_body(None)),
        400,
        "ApplicationGatewayPrivateOnlyNotSupported",
    );
}

#[test]
fn s7_4_v2_private_frontend_must_be_static() {
    let mut h = H::new();
    agw_subnet(&mut h);
    register_isolation(&mut h);
    let mut b = gateway_body(None);
    b["properties"]["frontendIPConfigurations"][0]["properties"]["privateIPAllocationMethod"] =
        json!("Dynamic");
    h.fails(
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        Some(b),
        400,
        "ApplicationGatewayFrontendIpPrivateIpAddressInvalidAllocationType",
    );
}

#[test]
fn s7_4_routing_rule_priority_is_mandatory_from_2021_08_01() {
    let mut h = H::new();
    agw_subnet(&mut h);
    register_isolation(&mut h);
    let mut b = gateway_body(None);
    b["properties"]["requestRoutingRules"][0]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("priority");
    h.fails(
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        Some(b),
        400,
        "ApplicationGatewayRequestRoutingRulePriorityCannotBeEmpty",
    );
}

fn key_vault_gateway(identity: Option<Value>) -> Value {
    let mut b = gateway_body(None);
    b["properties"]["sslCertificates"] = json!([{"name": "cert", "properties": {
        "keyVaultSecretId": "https://fhir-vault.vault.azure.net/secrets/fhir-tls"}}]);
    if let Some(i) = identity {
        b["identity"] = i;
    }
    b
}

fn uai(name: &str) -> String {
    format!(
        "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
        rg("fhir")
    )
}

#[test]
fn s7_4_key_vault_certificate_needs_a_user_assigned_identity() {
    let mut h = H::new();
    agw_subnet(&mut h);
    register_isolation(&mut h);
    for (case, identity) in [
        ("no identity", None),
        ("type None", Some(json!({"type": "None"}))),
        (
            "UserAssigned naming no identity",
            Some(json!({"type": "UserAssigned", "userAssignedIdentities": {}})),
        ),
        (
            "identities listed but the type is not UserAssigned",
            Some(json!({"type": "SystemAssigned", "userAssignedIdentities": {uai("id-agw"): {}}})),
        ),
    ] {
        let v = h.fails(
            "PUT",
            &agw_id("agw-fhir"),
            NET,
            Some(key_vault_gateway(identity)),
            400,
            "ApplicationGatewayKeyVaultSecretRequiresUserAssignedIdentity",
        );
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(&agw_id("agw-fhir")) && msg.contains("top level 'Identity' property"),
            "{case}: {msg}"
        );
    }
    // Nothing was stored.
    h.fails(
        "GET",
        &agw_id("agw-fhir"),
        NET,
        None,
        404,
        "ResourceNotFound",
    );
    // A PFX certificate needs no identity.
    h.ok("PUT", &agw_id("agw-fhir"), NET, Some(gateway_body(None)));
}

#[test]
fn s7_5_gateway_identity_reads_back_with_principal_and_client_ids() {
    let mut h = H::new();
    agw_subnet(&mut h);
    register_isolation(&mut h);
    let (a, b) = (uai("id-agw"), uai("id-monitoring"));
    let put = key_vault_gateway(Some(json!({
        "type": "UserAssigned",
        "userAssignedIdentities": {a.clone(): {}, b.clone(): {}},
    })));
    let created = h.call("PUT", &agw_id("agw-fhir"), NET, Some(put));
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    h.settle();
    let g = h.ok("GET", &agw_id("agw-fhir"), NET, None);
    assert_eq!(g["identity"]["type"], "UserAssigned");
    let users = g["identity"]["userAssignedIdentities"].as_object().unwrap();
    assert_eq!(users.len(), 2);
    let guid = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.len() == 36 && s.matches('-').count() == 4)
    };
    for (id, entry) in users {
        assert!(
            guid(&entry["principalId"]) && guid(&entry["clientId"]),
            "{id}: {entry}"
        );
        assert_ne!(entry["principalId"], entry["clientId"]);
    }
    assert_ne!(users[&a]["principalId"], users[&b]["principalId"]);
    assert_eq!(
        g["properties"]["sslCertificates"][0]["properties"]["keyVaultSecretId"],
        "https://fhir-vault.vault.azure.net/secrets/fhir-tls"
    );
    // The read-back written back (principalId and clientId included, as an SDK read-modify-write
    // may send them) is accepted, and stored without them: the IDs are the identity's own.
    h.ok("PUT", &agw_id("agw-fhir"), NET, Some(g.clone()));
    h.settle();
    let again = h.ok("GET", &agw_id("agw-fhir"), NET, None);
    assert_eq!(again["identity"], g["identity"]);
    let state = h.raw(arm_emulator::engine::Request::new(
        "GET",
        "/_emulator/state",
    ));
    let stored = state.json_body().to_string();
    assert!(
        !stored.contains(
            g["identity"]["userAssignedIdentities"][&a]["principalId"]
                .as_str()
                .unwrap()
        ),
        "server-made IDs are derived on read, not stored"
    );
    // Dropping the identity while the certificate still comes from Key Vault is refused, and the
    // gateway keeps what it had.
    let mut without = g.clone();
    without.as_object_mut().unwrap().remove("identity");
    h.fails(
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        Some(without),
        400,
        "ApplicationGatewayKeyVaultSecretRequiresUserAssignedIdentity",
    );
    assert_eq!(
        h.ok("GET", &agw_id("agw-fhir"), NET, None)["identity"],
        g["identity"]
    );
}

#[test]
fn s7_4_site_integration_needs_serverfarms_delegation_and_creates_service_association_link() {
    let mut h = H::new();
    h.put_subnet("plain", json!({"addressPrefix": "10.20.3.0/26"}));
    h.settle();
    int_subnet(&mut h);
    site_and_cosmos(&mut h);
    let v = h.fails("PATCH", &site_id("fhir-server"), WEB, Some(json!({"properties": {"virtualNetworkSubnetId": subnet_id("hscn-net", "hscn-vnet", "plain")}})), 400, "BadRequest");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing a delegation to Microsoft.Web/serverFarms")
    );
    h.ok("PATCH", &site_id("fhir-server"), WEB, Some(json!({"properties": {"virtualNetworkSubnetId": subnet_id("hscn-net", "hscn-vnet", "snet-app-int")}})));
    let s = h.ok(
        "GET",
        &subnet_id("hscn-net", "hscn-vnet", "snet-app-int"),
        NET,
        None,
    );
    let link = &s["properties"]["serviceAssociationLinks"][0];
    assert_eq!(link["name"], "AppServiceLink");
    assert_eq!(
        link["properties"]["linkedResourceType"],
        "Microsoft.Web/serverfarms"
    );
    assert_eq!(link["properties"]["allowDelete"], false);
    assert!(
        link["properties"]["link"]
            .as_str()
            .unwrap()
            .contains("/serverfarms/plan")
    );
}

#[test]
fn s7_4_cosmos_vnet_rule_needs_cosmos_endpoint_unless_ignored() {
    let mut h = H::new();
    h.put_subnet("plain", json!({"addressPrefix": "10.20.3.0/26"}));
    h.settle();
    let rule = |ignore: bool| json!({"properties": {"isVirtualNetworkFilterEnabled": true, "virtualNetworkRules": [{"id": subnet_id("hscn-net", "hscn-vnet", "plain"), "ignoreMissingVNetServiceEndpoint": ignore}]}});
    site_and_cosmos(&mut h);
    let v = h.fails(
        "PATCH",
        &cosmos_id("fhir-cosmos"),
        COSMOS,
        Some(rule(false)),
        400,
        "BadRequest",
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Microsoft.AzureCosmosDB")
    );
    h.ok("PATCH", &cosmos_id("fhir-cosmos"), COSMOS, Some(rule(true)));
}

#[test]
fn s7_4_missing_references_are_invalid_resource_reference() {
    let mut h = H::new();
    register_isolation(&mut h);
    let v = h.fails(
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        Some(gateway_body(None)),
        400,
        "InvalidResourceReference",
    );
    assert_eq!(v["error"]["details"][0]["code"], "NotFound");
    site_and_cosmos(&mut h);
    h.fails("PATCH", &site_id("fhir-server"), WEB, Some(json!({"properties": {"virtualNetworkSubnetId": subnet_id("hscn-net", "hscn-vnet", "nope")}})), 400, "InvalidResourceReference");
    // A reference to a gateway child that does not exist.
    agw_subnet(&mut h);
    let mut b = gateway_body(None);
    b["properties"]["requestRoutingRules"][0]["properties"]["backendAddressPool"]["id"] = json!(
        format!("{}/backendAddressPools/missing", agw_id("agw-fhir"))
    );
    h.fails(
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        Some(b),
        400,
        "InvalidResourceReference",
    );
}

// ------------------------------------------------------------------ 7.5 read-back enrichment

#[test]
fn s7_5_subnet_delegation_and_service_endpoint_read_back() {
    let mut h = H::new();
    agw_subnet(&mut h);
    int_subnet(&mut h);
    let v = h.ok(
        "GET",
        &subnet_id("hscn-net", "hscn-vnet", "snet-agw"),
        NET,
        None,
    );
    let d = &v["properties"]["delegations"][0];
    assert_eq!(
        d["properties"]["actions"],
        json!(["Microsoft.Network/virtualNetworks/subnets/join/action"])
    );
    assert_eq!(
        d["id"],
        format!(
            "{}/delegations/agw",
            subnet_id("hscn-net", "hscn-vnet", "snet-agw")
        )
    );
    assert_eq!(
        d["type"],
        "Microsoft.Network/virtualNetworks/subnets/delegations"
    );
    assert_eq!(d["etag"], v["etag"]);
    let se = &v["properties"]["serviceEndpoints"][0];
    assert_eq!(
        (se["locations"].clone(), se["provisioningState"].clone()),
        (json!(["*"]), json!("Succeeded"))
    );
    let w = h.ok(
        "GET",
        &subnet_id("hscn-net", "hscn-vnet", "snet-app-int"),
        NET,
        None,
    );
    assert_eq!(
        w["properties"]["delegations"][0]["properties"]["actions"],
        json!(["Microsoft.Network/virtualNetworks/subnets/action"])
    );
    // Child etags share the VNet's.
    let vnet = h.ok("GET", &vnet_id("hscn-net", "hscn-vnet"), NET, None);
    assert_eq!(vnet["etag"], w["etag"]);
    assert_eq!(vnet["properties"]["subnets"].as_array().unwrap().len(), 2);
}

#[test]
fn s7_5_gateway_children_ids_backrefs_and_subnet_ipconfigurations() {
    let mut h = H::new();
    agw_subnet(&mut h);
    register_isolation(&mut h);
    h.ok("PUT", &agw_id("agw-fhir"), NET, Some(gateway_body(None)));
    h.settle();
    let g = h.ok("GET", &agw_id("agw-fhir"), NET, None);
    let id = agw_id("agw-fhir");
    let pool = &g["properties"]["backendAddressPools"][0];
    assert_eq!(pool["id"], format!("{id}/backendAddressPools/app"));
    assert_eq!(
        pool["type"],
        "Microsoft.Network/applicationGateways/backendAddressPools"
    );
    assert_eq!(pool["etag"], g["etag"]);
    assert_eq!(
        pool["properties"]["requestRoutingRules"],
        json!([{"id": format!("{id}/requestRoutingRules/r1")}])
    );
    assert_eq!(
        g["properties"]["frontendIPConfigurations"][0]["properties"]["httpListeners"],
        json!([{"id": format!("{id}/httpListeners/l443")}])
    );
    let cert = &g["properties"]["sslCertificates"][0]["properties"];
    assert!(
        cert["data"].is_null() && cert["password"].is_null() && cert["publicCertData"].is_string()
    );
    assert_eq!(g["properties"]["operationalState"], "Running");
    assert_eq!(g["tags"]["EnhancedNetworkControl"], "True");
    let s = h.ok(
        "GET",
        &subnet_id("hscn-net", "hscn-vnet", "snet-agw"),
        NET,
        None,
    );
    assert_eq!(
        s["properties"]["applicationGatewayIPConfigurations"],
        json!([{"id": format!("{id}/gatewayIPConfigurations/gwip")}])
    );
    // Writing the enriched document back is accepted and does not duplicate back-references.
    h.ok("PUT", &id, NET, Some(g.clone()));
    h.settle();
    let again = h.ok("GET", &id, NET, None);
    assert_eq!(
        again["properties"]["backendAddressPools"][0]["properties"]["requestRoutingRules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn s7_5_web_synthetic_allow_all_and_deny_all_at_max_priority() {
    let mut h = H::new();
    site_and_cosmos(&mut h);
    let cfg = format!("{}/config/web", site_id("fhir-server"));
    let v = h.ok("GET", &cfg, WEB, None);
    let last = v["properties"]["ipSecurityRestrictions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        last,
        json!({"ipAddress": "Any", "action": "Allow", "priority": 2147483647, "name": "Allow all", "description": "Allow all access"})
    );
    let mut back = v.clone();
    back["properties"]["ipSecurityRestrictionsDefaultAction"] = json!("Deny");
    let v = h.ok("PUT", &cfg, WEB, Some(back));
    let list = v["properties"]["ipSecurityRestrictions"]
        .as_array()
        .unwrap();
    assert_eq!(
        list.len(),
        1,
        "the written-back synthetic rule is not stored: {list:?}"
    );
    assert_eq!(list[0]["name"], "Deny all");
}

#[test]
fn s7_5_cosmos_read_and_write_locations() {
    let mut h = H::new();
    site_and_cosmos(&mut h);
    let v = h.ok("GET", &cosmos_id("fhir-cosmos"), COSMOS, None);
    let r = &v["properties"]["readLocations"][0];
    assert_eq!(r["locationName"], "UK South");
    assert_eq!(
        r["documentEndpoint"],
        "https://fhir-cosmos-uksouth.documents.azure.com:443/"
    );
    assert_eq!(r["provisioningState"], "Succeeded");
    assert_eq!(
        v["properties"]["writeLocations"].as_array().unwrap().len(),
        1
    );
    assert_eq!(
        v["properties"]["documentEndpoint"],
        "https://fhir-cosmos.documents.azure.com:443/"
    );
}

// ------------------------------------------------------------------ 7.6 errors and request ids

#[test]
fn s7_6_error_envelope_and_request_id_on_every_response() {
    let mut h = H::new();
    let r = h.call("GET", &site_id("nope"), WEB, None);
    assert_eq!(r.status, 404);
    let v = r.json_body();
    assert_eq!(v["error"]["code"], "ResourceNotFound");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Microsoft.Web/sites/nope")
    );
    assert!(v["error"]["details"].is_array());
    for req in [
        arm_emulator::engine::Request::new(
            "GET",
            &format!("{}?api-version=2024-03-01", rg("fhir")),
        ),
        arm_emulator::engine::Request::new("GET", "/_emulator/stats"),
        arm_emulator::engine::Request::new(
            "POST",
            &format!("/{}/oauth2/v2.0/token", arm_emulator::config::DEV_TENANT),
        ),
        arm_emulator::engine::Request::new("GET", "/nowhere"),
    ] {
        let r = h.raw(req);
        assert!(
            r.get_header("x-ms-request-id")
                .is_some_and(|v| v.len() == 36),
            "{}",
            r.status
        );
    }
    h.fails(
        "GET",
        &rg("missing"),
        RG_API,
        None,
        404,
        "ResourceGroupNotFound",
    );
    h.fails(
        "GET",
        &format!("{}/providers/Microsoft.Web/sites/x", rg("missing")),
        WEB,
        None,
        404,
        "ResourceGroupNotFound",
    );
}

#[test]
fn s7_6_unknown_api_version_is_no_registered_provider_found() {
    let mut h = H::new();
    let v = h.fails(
        "GET",
        &subnet_id("hscn-net", "hscn-vnet", "a"),
        "2019-01-01",
        None,
        400,
        "NoRegisteredProviderFound",
    );
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("API version '2019-01-01'") && m.contains("2025-01-01"),
        "{m}"
    );
}

// ------------------------------------------------------------------ 7.7 throttling

#[test]
fn s7_7_token_bucket_429_with_retry_after_and_remaining_headers_per_principal() {
    let mut h = H::new();
    h.raw(arm_emulator::engine::Request::new("PUT", "/_emulator/throttle").with_json(&json!({
        "reads": {"capacity": 3, "refillPerSecond": 0.5}, "writes": {"capacity": 200, "refillPerSecond": 10}, "deletes": {"capacity": 200, "refillPerSecond": 10}})));
    let path = rg("fhir");
    let remaining: Vec<String> = (0..3)
        .map(|_| {
            h.call("GET", &path, RG_API, None)
                .get_header("x-ms-ratelimit-remaining-subscription-reads")
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(remaining, ["2", "1", "0"]);
    let r = h.call("GET", &path, RG_API, None);
    assert_eq!(r.status, 429);
    assert_eq!(
        r.json_body()["error"]["code"],
        "SubscriptionRequestsThrottled"
    );
    assert_eq!(r.get_header("Retry-After"), Some("2"));
    // Writes have their own bucket; another principal has its own too.
    assert_eq!(
        h.call("PUT", &path, RG_API, Some(json!({"location": "uksouth"})))
            .get_header("x-ms-ratelimit-remaining-subscription-writes"),
        Some("199")
    );
    let other = h.token_for(
        arm_emulator::config::PORTAL_CLIENT_ID,
        arm_emulator::config::PORTAL_OBJECT_ID,
    );
    assert_eq!(h.call_as(&other, "GET", &path, RG_API, None).status, 200);
    h.advance(2.0);
    assert_eq!(h.call("GET", &path, RG_API, None).status, 200);
}

// ------------------------------------------------------------------ 7.8 eventual consistency

#[test]
fn s7_8_cosmos_firewall_change_reaches_the_data_plane_late() {
    let mut h = H::new();
    site_and_cosmos(&mut h);
    let id = cosmos_id("fhir-cosmos");
    let before = h.exposure()["cosmos"][&id]["dataPlane"].clone();
    assert!(sources(&before).contains(&"internet".to_string()));
    h.ok(
        "PATCH",
        &id,
        COSMOS,
        Some(json!({"properties": {"ipRules": [], "isVirtualNetworkFilterEnabled": true}})),
    );
    let during = h.exposure()["cosmos"][&id]["dataPlane"].clone();
    assert_eq!(during["pendingFirewallChange"], true);
    assert!(
        sources(&during).contains(&"internet".to_string()),
        "old firewall still enforced"
    );
    assert_eq!(
        h.ok("GET", &id, COSMOS, None)["properties"]["ipRules"],
        json!([]),
        "ARM shows the new value at once"
    );
    h.advance(900.0);
    let after = h.exposure()["cosmos"][&id]["dataPlane"].clone();
    assert_eq!(after["pendingFirewallChange"], false);
    assert!(sources(&after).is_empty(), "{after}");
}

// ------------------------------------------------------------------ 7.9 auth

#[test]
fn s7_9_expired_invalid_and_wrong_audience_tokens_are_401() {
    let mut h = H::new();
    let now_s = h.now / 1000;
    let expired = h.e.mint(
        arm_emulator::config::DEV_TENANT,
        arm_emulator::config::DEV_CLIENT_ID,
        arm_emulator::config::DEV_CLIENT_OBJECT_ID,
        "https://management.azure.com",
        now_s - 10,
    );
    let r = h.call_as(&expired, "GET", &rg("fhir"), RG_API, None);
    assert_eq!(
        (r.status, r.json_body()["error"]["code"].as_str().unwrap()),
        (401, "ExpiredAuthenticationToken")
    );
    assert!(
        r.get_header("WWW-Authenticate")
            .unwrap()
            .starts_with("Bearer authorization_uri=")
    );
    let r = h.call_as("not.a.token", "GET", &rg("fhir"), RG_API, None);
    assert_eq!(r.json_body()["error"]["code"], "InvalidAuthenticationToken");
    let other_key = arm_emulator::jwt::SigningKey::generate();
    let forged = other_key
        .sign(&json!({"aud": "https://management.azure.com", "exp": now_s + 100, "oid": "x"}));
    assert_eq!(
        h.call_as(&forged, "GET", &rg("fhir"), RG_API, None).status,
        401
    );
    let graph = h.e.mint(
        arm_emulator::config::DEV_TENANT,
        arm_emulator::config::DEV_CLIENT_ID,
        arm_emulator::config::DEV_CLIENT_OBJECT_ID,
        "https://graph.microsoft.com",
        now_s + 100,
    );
    assert_eq!(
        h.call_as(&graph, "GET", &rg("fhir"), RG_API, None)
            .json_body()["error"]["code"],
        "InvalidAuthenticationTokenAudience"
    );
    // Injected 401 for the next request.
    h.raw(
        arm_emulator::engine::Request::new("POST", "/_emulator/faults")
            .with_json(&json!({"path": "*/resourceGroups/fhir", "status": 401})),
    );
    assert_eq!(
        h.call("GET", &rg("fhir"), RG_API, None).json_body()["error"]["code"],
        "ExpiredAuthenticationToken"
    );
    assert_eq!(h.call("GET", &rg("fhir"), RG_API, None).status, 200);
}

#[test]
fn s7_9_outside_role_assignment_is_403_authorization_failed() {
    let mut h = H::new();
    let outsider = h.token_for(
        arm_emulator::config::OUTSIDER_CLIENT_ID,
        arm_emulator::config::OUTSIDER_OBJECT_ID,
    );
    let r = h.call_as(
        &outsider,
        "PUT",
        &subnet_id("hscn-net", "hscn-vnet", "a"),
        NET,
        Some(json!({"properties": {"addressPrefix": "10.20.5.0/24"}})),
    );
    assert_eq!(r.status, 403);
    let m = r.json_body()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        m,
        format!(
            "The client '{o}' with object id '{o}' does not have authorization to perform action 'Microsoft.Network/virtualNetworks/subnets/write' over scope '{}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
            subnet_id("hscn-net", "hscn-vnet", "a"),
            o = arm_emulator::config::OUTSIDER_OBJECT_ID
        )
    );
    // A read-only assignment on one resource group: reads there pass, writes and other groups do not.
    h.raw(arm_emulator::engine::Request::new("POST", "/_emulator/role-assignments").with_json(&json!({"principal": arm_emulator::config::OUTSIDER_OBJECT_ID, "scope": rg("fhir"), "actions": ["read"]})));
    assert_eq!(
        h.call_as(&outsider, "GET", &rg("fhir"), RG_API, None)
            .status,
        200
    );
    assert_eq!(
        h.call_as(
            &outsider,
            "PUT",
            &rg("fhir"),
            RG_API,
            Some(json!({"location": "uksouth"}))
        )
        .status,
        403
    );
    assert_eq!(
        h.call_as(&outsider, "GET", &rg("hscn-net"), RG_API, None)
            .status,
        403
    );
}

#[test]
fn s7_3_network_conflict_can_be_429_retryable_error_due_to_another_operation() {
    let mut cfg = arm_emulator::config::Config::dev();
    cfg.behaviour.network_conflict_status = 429;
    let mut h = H::with_config(cfg);
    h.ok(
        "PUT",
        &rg("hscn-net"),
        RG_API,
        Some(json!({"location": "uksouth"})),
    );
    h.ok("PUT", &vnet_id("hscn-net", "hscn-vnet"), NET, Some(json!({"location": "uksouth", "properties": {"addressSpace": {"addressPrefixes": ["10.20.0.0/16"]}}})));
    let r = h.put_subnet("a", json!({"addressPrefix": "10.20.5.0/24"}));
    assert_eq!(r.status, 429);
    assert_eq!(
        r.json_body()["error"]["code"],
        "RetryableErrorDueToAnotherOperation"
    );
    assert_eq!(r.get_header("Retry-After"), Some("10"));
}

#[test]
fn s7_8_service_endpoint_source_switch_takes_effect_late() {
    let mut h = H::new();
    site_and_cosmos(&mut h);
    let agw = subnet_id("hscn-net", "hscn-vnet", "snet-agw");
    h.put_subnet("snet-agw", json!({"addressPrefix": "10.20.1.0/24"}));
    h.settle();
    h.ok("PATCH", &format!("{}/config/web", site_id("fhir-server")), WEB, Some(json!({"properties": {
        "ipSecurityRestrictions": [{"name": "agw", "action": "Allow", "priority": 100, "vnetSubnetResourceId": agw}],
        "ipSecurityRestrictionsDefaultAction": "Deny"}})));
    let main = |h: &mut H| sources(&h.exposure()["sites"][&site_id("fhir-server")]["main"]);
    assert!(
        main(&mut h).is_empty(),
        "without the Microsoft.Web endpoint the rule never matches"
    );
    h.put_subnet("snet-agw", json!({"addressPrefix": "10.20.1.0/24", "serviceEndpoints": [{"service": "Microsoft.Web"}]}));
    h.advance(30.0);
    assert!(
        main(&mut h).is_empty(),
        "the source switch has not propagated yet"
    );
    h.advance(31.0);
    assert_eq!(main(&mut h), [format!("subnet:{agw}")]);
}
