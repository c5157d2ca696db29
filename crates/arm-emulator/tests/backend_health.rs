//! `POST …/applicationGateways/{name}/backendhealth` (ApplicationGateways_BackendHealth, SPEC-NET
//! 2025-01-01): no body, 202 with `Location` (final-state-via location), the health as the final
//! poll's body, computed from the exposure rules; and the action locks nothing.

mod common;
use common::estate::*;
use common::*;
use serde_json::{Value, json};

fn gateway_in_front_of_the_site(h: &mut H) {
    register_isolation(h);
    agw_subnet(h);
    site_and_cosmos(h);
    let mut body = gateway_body(None);
    body["properties"]["sslCertificates"][0]["properties"] =
        json!({"data": "UEZY", "password": "secret"});
    assert_eq!(
        h.call("PUT", &agw_id("agw-fhir"), NET, Some(body)).status,
        201
    );
    h.settle();
}

/// Starts a backend-health request, checks it is an LRO answered through `Location` only, and
/// returns the health once the operation is over.
fn backend_health(h: &mut H) -> Value {
    let r = h.call(
        "POST",
        &format!("{}/backendhealth", agw_id("agw-fhir")),
        NET,
        None,
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.body.is_empty());
    assert!(r.get_header("Azure-AsyncOperation").is_none());
    let loc = r.get_header("Location").unwrap().to_string();
    assert!(
        loc.contains("/providers/Microsoft.Network/locations/uksouth/operationResults/"),
        "{loc}"
    );
    assert_eq!(r.get_header("Retry-After"), Some("10"));
    assert_eq!(h.poll(&loc).status, 202);
    h.advance(10.0);
    let done = h.poll(&loc);
    assert_eq!(done.status, 200);
    done.json_body()
}

fn server(health: &Value) -> Value {
    let pool = &health["backendAddressPools"][0];
    assert_eq!(
        pool["backendAddressPool"]["id"],
        format!("{}/backendAddressPools/app", agw_id("agw-fhir"))
    );
    let settings = &pool["backendHttpSettingsCollection"][0];
    assert_eq!(
        settings["backendHttpSettings"]["id"],
        format!("{}/backendHttpSettingsCollection/https", agw_id("agw-fhir"))
    );
    settings["servers"][0].clone()
}

#[test]
fn backend_health_is_a_location_lro_that_reports_what_the_sites_access_restrictions_do_to_the_gateway()
 {
    let mut h = H::new();
    gateway_in_front_of_the_site(&mut h);
    // A wide-open site: the gateway's probe gets in.
    let up = server(&backend_health(&mut h));
    assert_eq!(up["address"], "fhir-server.azurewebsites.net");
    assert_eq!(up["health"], "Up");

    // Only an office IP, default Deny: App Service answers the gateway's probe 403.
    h.ok("PATCH", &format!("{}/config/web", site_id("fhir-server")), WEB, Some(json!({"properties": {
        "ipSecurityRestrictions": [{"name": "office", "ipAddress": "203.0.113.0/24", "action": "Allow", "priority": 100}],
        "ipSecurityRestrictionsDefaultAction": "Deny"}})));
    let down = server(&backend_health(&mut h));
    assert_eq!(down["health"], "Down");
    assert_eq!(
        down["healthProbeLog"],
        "Status code of the backend's HTTP response did not match the probe setting. Expected:200-399 Received:403."
    );

    // The gateway subnet allowed by its service endpoint: Up again.
    h.ok("PATCH", &format!("{}/config/web", site_id("fhir-server")), WEB, Some(json!({"properties": {
        "ipSecurityRestrictions": [{"name": "agw", "vnetSubnetResourceId": subnet_id("hscn-net", "hscn-vnet", "snet-agw"), "action": "Allow", "priority": 100}]}})));
    assert_eq!(server(&backend_health(&mut h))["health"], "Up");
}

#[test]
fn a_backend_health_request_locks_nothing_and_needs_an_existing_gateway() {
    let mut h = H::new();
    gateway_in_front_of_the_site(&mut h);
    let r = h.call(
        "POST",
        &format!("{}/backendhealth", agw_id("agw-fhir")),
        NET,
        None,
    );
    assert_eq!(r.status, 202);
    // While it runs the gateway is neither Updating nor locked against a write.
    let gw = h.ok("GET", &agw_id("agw-fhir"), NET, None);
    assert_eq!(gw["properties"]["provisioningState"], "Succeeded");
    let mut body = gateway_body(None);
    body["properties"]["sslCertificates"][0]["properties"] =
        json!({"data": "UEZY", "password": "secret"});
    assert_eq!(
        h.call("PUT", &agw_id("agw-fhir"), NET, Some(body)).status,
        200
    );

    h.fails(
        "POST",
        &format!("{}/backendhealth", agw_id("nope")),
        NET,
        None,
        404,
        "ResourceNotFound",
    );
}
