//! Body rules through the engine (issue #12): ARM's tag rules on every resource type that carries
//! tags, enum values outside Microsoft's models, and read-only fields (accepted and ignored).

mod common;

use common::estate::*;
use common::*;
use serde_json::json;

const BAD_TAGS: &[&str] = &[
    "fhirlock.io/owner",
    "fhirlock.io/tls",
    "a<b",
    "a%b",
    "a&b",
    "a\\b",
    "a?b",
    "a>b",
];

#[test]
fn reserved_characters_in_tag_names_are_refused_on_every_tagged_type_put_and_patch() {
    let mut h = H::new();
    register_isolation(&mut h);
    agw_subnet(&mut h);
    site_and_cosmos(&mut h);
    let pip = format!(
        "{}/providers/Microsoft.Network/publicIPAddresses/pip",
        rg("hscn-net")
    );
    h.ok("PUT", &pip, NET, Some(json!({"location": "uksouth", "sku": {"name": "Standard"}, "properties": {"publicIPAllocationMethod": "Static"}})));
    h.settle();
    let writes: Vec<(&str, String, &str, serde_json::Value)> = vec![
        ("PUT", rg("fhir"), RG_API, json!({"location": "uksouth"})),
        ("PATCH", rg("fhir"), RG_API, json!({})),
        (
            "PUT",
            vnet_id("hscn-net", "hscn-vnet"),
            NET,
            json!({"location": "uksouth", "properties": {"addressSpace": {"addressPrefixes": ["10.20.0.0/16"]}}}),
        ),
        ("PATCH", vnet_id("hscn-net", "hscn-vnet"), NET, json!({})),
        (
            "PUT",
            pip.clone(),
            NET,
            json!({"location": "uksouth", "sku": {"name": "Standard"}, "properties": {"publicIPAllocationMethod": "Static"}}),
        ),
        ("PATCH", pip.clone(), NET, json!({})),
        ("PUT", agw_id("agw-fhir"), NET, gateway_body(Some(&pip))),
        ("PATCH", agw_id("agw-fhir"), NET, json!({})),
        (
            "PUT",
            plan_id("plan"),
            WEB,
            json!({"location": "uksouth", "sku": {"name": "P1v3", "tier": "PremiumV3"}}),
        ),
        ("PATCH", plan_id("plan"), WEB, json!({})),
        (
            "PUT",
            site_id("fhir-server"),
            WEB,
            json!({"location": "uksouth", "properties": {"serverFarmId": plan_id("plan")}}),
        ),
        ("PATCH", site_id("fhir-server"), WEB, json!({})),
        (
            "PUT",
            cosmos_id("fhir-cosmos"),
            COSMOS,
            json!({"location": "uksouth", "properties": {"databaseAccountOfferType": "Standard", "locations": [{"locationName": "UK South", "failoverPriority": 0}]}}),
        ),
        ("PATCH", cosmos_id("fhir-cosmos"), COSMOS, json!({})),
    ];
    for (method, id, api, body) in &writes {
        for name in BAD_TAGS {
            let mut b = body.clone();
            b["tags"] = json!({"env": "dev", *name: "x"});
            let v = h.fails(method, id, api, Some(b), 400, "InvalidTagNameCharacters");
            let msg = v["error"]["message"].as_str().unwrap_or("");
            assert!(msg.contains(name), "{method} {id}: {msg}");
        }
    }
    // The renamed tags are valid, and a refused write changed nothing.
    let mut b = gateway_body(Some(&pip));
    b["tags"] = json!({"fhirlock-owner": "default/patient-records", "fhirlock-tls": "sha256:00"});
    h.ok("PUT", &agw_id("agw-fhir"), NET, Some(b));
    assert_eq!(h.ok("GET", &rg("fhir"), RG_API, None).get("tags"), None);
}

#[test]
fn tag_count_and_lengths_follow_arm_limits() {
    let mut h = H::new();
    let many: serde_json::Map<String, serde_json::Value> =
        (0..51).map(|i| (format!("t{i}"), json!("v"))).collect();
    h.fails(
        "PATCH",
        &rg("fhir"),
        RG_API,
        Some(json!({"tags": many})),
        400,
        "TooManyTags",
    );
    let long_name = json!({"tags": {"n".repeat(513): "v"}});
    h.fails(
        "PATCH",
        &rg("fhir"),
        RG_API,
        Some(long_name),
        400,
        "InvalidTagName",
    );
    let long_value = json!({"tags": {"n": "v".repeat(257)}});
    h.fails(
        "PATCH",
        &rg("fhir"),
        RG_API,
        Some(long_value),
        400,
        "InvalidTagValueLength",
    );
    let fifty: serde_json::Map<String, serde_json::Value> = (0..50)
        .map(|i| (format!("t{i}"), json!("v".repeat(256))))
        .collect();
    h.ok("PATCH", &rg("fhir"), RG_API, Some(json!({"tags": fifty})));
}

#[test]
fn enum_values_outside_the_models_are_refused() {
    let mut h = H::new();
    register_isolation(&mut h);
    agw_subnet(&mut h);
    site_and_cosmos(&mut h);
    let mut gw = gateway_body(None);
    gw["properties"]["frontendIPConfigurations"][0]["properties"]["privateIPAllocationMethod"] =
        json!("Fixed");
    let v = h.fails(
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        Some(gw),
        400,
        "InvalidRequestFormat",
    );
    let detail = v["error"]["details"][0]["message"].as_str().unwrap_or("");
    assert!(
        detail.contains("Fixed") && detail.contains("privateIPAllocationMethod"),
        "{detail}"
    );
    let cfg = format!("{}/config/web", site_id("fhir-server"));
    h.fails(
        "PATCH",
        &cfg,
        WEB,
        Some(json!({"properties": {"ftpsState": "Off"}})),
        400,
        "BadRequest",
    );
    h.fails(
        "PUT",
        &cfg,
        WEB,
        Some(json!({"properties": {"ipSecurityRestrictionsDefaultAction": "Block"}})),
        400,
        "BadRequest",
    );
    h.fails(
        "PATCH",
        &cosmos_id("fhir-cosmos"),
        COSMOS,
        Some(json!({"properties": {"publicNetworkAccess": "Private"}})),
        400,
        "BadRequest",
    );
    // Case does not matter to the resource providers' deserialisers.
    h.ok(
        "PATCH",
        &cfg,
        WEB,
        Some(json!({"properties": {"ftpsState": "disabled"}})),
    );
}

/// ARM's RPC (`v1.0/async-api-reference.md`): a `provisioningState` matching the server's is
/// ignored; one that does not "should" be 400, which is not known to be enforced [U], so the
/// emulator ignores every read-only field.
#[test]
fn read_only_fields_are_accepted_and_ignored() {
    let mut h = H::new();
    site_and_cosmos(&mut h);
    let body = json!({"properties": {"httpsOnly": true, "state": "Stopped", "defaultHostName": "evil.example", "provisioningState": "Succeeded"}});
    let got = h.ok("PATCH", &site_id("fhir-server"), WEB, Some(body));
    assert_eq!(got["properties"]["httpsOnly"], true);
    assert_ne!(got["properties"]["defaultHostName"], "evil.example");
    let r = h.put_subnet(
        "ro",
        json!({"addressPrefix": "10.20.9.0/24", "provisioningState": "Succeeded", "purpose": "x"}),
    );
    assert_eq!(r.status, 201);
    h.settle();
    let s = h.ok("GET", &subnet_id("hscn-net", "hscn-vnet", "ro"), NET, None);
    assert_eq!(s["properties"]["provisioningState"], "Succeeded");
    assert!(s["properties"].get("purpose").is_none_or(|p| p != "x"));
}
