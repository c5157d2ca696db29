//! Reference §7.3 and §7.8: writes that collide with a running operation, and changes that reach
//! the data plane only after a delay. Names start with the checklist item.

mod common;
use common::estate::*;
use common::*;
use serde_json::json;

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
