//! Reference §7.1 and §7.2: long-running operations as each provider answers them, and PUT
//! replacing a resource while PATCH merges into it. Names start with the checklist item.

mod common;
use common::estate::*;
use common::*;
use serde_json::json;

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
