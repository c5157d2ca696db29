//! Reference §7.6, §7.7 and §7.9: the error envelope and request ids, throttling, and
//! authentication and authorization. Names start with the checklist item.

mod common;
use common::*;
use serde_json::json;

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
