//! Behaviour beyond the §7 checklist: unknown fields, faults, stats, features, VNet PUT, durability.

mod common;
use arm_emulator::engine::Request;
use common::*;
use serde_json::json;

#[test]
fn unknown_properties_round_trip_on_put_and_patch() {
    let mut h = H::new();
    h.put_subnet(
        "a",
        json!({"addressPrefix": "10.20.5.0/24", "futureKnob": {"x": [1, 2]}}),
    );
    h.settle();
    assert_eq!(
        h.ok("GET", &subnet_id("hscn-net", "hscn-vnet", "a"), NET, None)["properties"]["futureKnob"],
        json!({"x": [1, 2]})
    );
    h.ok("PUT", &cosmos_id("c"), COSMOS, Some(json!({"location": "uksouth", "newTopLevel": 7, "properties": {"databaseAccountOfferType": "Standard", "locations": [{"locationName": "UK South"}], "brandNew": "yes"}})));
    h.settle();
    h.ok(
        "PATCH",
        &cosmos_id("c"),
        COSMOS,
        Some(json!({"properties": {"anotherNew": true}})),
    );
    h.settle();
    let v = h.ok("GET", &cosmos_id("c"), COSMOS, None);
    assert_eq!(
        (
            v["newTopLevel"].clone(),
            v["properties"]["brandNew"].clone(),
            v["properties"]["anotherNew"].clone()
        ),
        (json!(7), json!("yes"), json!(true))
    );
}

#[test]
fn subnet_echoes_the_prefix_form_the_caller_used() {
    let mut h = H::new();
    h.put_subnet("a", json!({"addressPrefixes": ["10.20.5.0/24"]}));
    h.settle();
    let v = h.ok("GET", &subnet_id("hscn-net", "hscn-vnet", "a"), NET, None);
    assert!(v["properties"]["addressPrefix"].is_null());
    assert_eq!(v["properties"]["addressPrefixes"], json!(["10.20.5.0/24"]));
}

#[test]
fn vnet_put_without_subnets_keeps_them_and_with_empty_list_deletes_them() {
    let mut h = H::new();
    h.put_subnet("a", json!({"addressPrefix": "10.20.5.0/24"}));
    h.settle();
    let vnet = vnet_id("hscn-net", "hscn-vnet");
    h.ok("PUT", &vnet, NET, Some(json!({"location": "uksouth", "properties": {"addressSpace": {"addressPrefixes": ["10.20.0.0/16"]}}})));
    h.settle();
    assert_eq!(
        h.ok("GET", &vnet, NET, None)["properties"]["subnets"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    h.ok("PUT", &vnet, NET, Some(json!({"location": "uksouth", "properties": {"addressSpace": {"addressPrefixes": ["10.20.0.0/16"]}, "subnets": []}})));
    h.settle();
    assert_eq!(
        h.ok("GET", &vnet, NET, None)["properties"]["subnets"],
        json!([])
    );
}

#[test]
fn faults_status_count_latency_and_drop() {
    let mut h = H::new();
    let add = |h: &mut H, f: serde_json::Value| {
        h.raw(Request::new("POST", "/_emulator/faults").with_json(&f))
    };
    add(
        &mut h,
        json!({"method": "GET", "path": "*/resourceGroups/fhir", "count": 2, "status": 503, "retryAfter": 3}),
    );
    let r = h.call("GET", &rg("fhir"), RG_API, None);
    assert_eq!((r.status, r.get_header("Retry-After")), (503, Some("3")));
    assert_eq!(r.json_body()["error"]["code"], "ServiceUnavailable");
    assert_eq!(h.call("GET", &rg("fhir"), RG_API, None).status, 503);
    assert_eq!(
        h.call("GET", &rg("fhir"), RG_API, None).status,
        200,
        "count exhausted"
    );
    add(
        &mut h,
        json!({"path": "*/resourceGroups/fhir", "dropConnection": true}),
    );
    assert_eq!(
        h.call("GET", &rg("fhir"), RG_API, None).status,
        0,
        "dropped"
    );
    add(
        &mut h,
        json!({"path": "*/resourceGroups/fhir", "latencyMs": 250}),
    );
    let req = Request::new("GET", &format!("{}?api-version={RG_API}", rg("fhir")))
        .with_header("Authorization", &format!("Bearer {}", h.token));
    let handled = h.e.handle(&req, h.now);
    assert_eq!(handled.delay_ms, 250);
    for status in [429u16, 500, 409, 412] {
        add(
            &mut h,
            json!({"method": "PUT", "path": "*/subnets/*", "status": status}),
        );
        let r = h.put_subnet("z", json!({"addressPrefix": "10.20.9.0/24"}));
        assert_eq!(r.status, status);
    }
    assert_eq!(
        h.raw(Request::new("GET", "/_emulator/faults")).json_body()["faults"],
        json!([])
    );
}

#[test]
fn stats_count_requests_exactly_and_reset() {
    let mut h = H::new();
    h.raw(Request::new("DELETE", "/_emulator/stats"));
    h.call("GET", &rg("fhir"), RG_API, None);
    h.call("GET", &rg("fhir"), RG_API, None);
    let r = h.put_subnet("a", json!({"addressPrefix": "10.20.5.0/24"}));
    let url = r.get_header("Azure-AsyncOperation").unwrap().to_string();
    h.poll(&url);
    h.call("GET", &site_id("missing"), WEB, None);
    let s = h.raw(Request::new("GET", "/_emulator/stats")).json_body();
    assert_eq!(s["total"], 5);
    assert_eq!(
        (
            s["reads"].clone(),
            s["writes"].clone(),
            s["deletes"].clone()
        ),
        (json!(4), json!(1), json!(0))
    );
    assert_eq!(
        s["byResourceType"]["Microsoft.Network/virtualNetworks/subnets"],
        1
    );
    assert_eq!(
        s["byResourceType"]["Microsoft.Network/locations/operations"],
        1
    );
    assert_eq!(
        s["byPrincipal"][arm_emulator::config::DEV_CLIENT_OBJECT_ID],
        5
    );
    assert_eq!(s["byStatus"]["404"], 1);
    h.raw(Request::new("DELETE", "/_emulator/stats"));
    assert_eq!(
        h.raw(Request::new("GET", "/_emulator/stats")).json_body()["total"],
        0
    );
}

#[test]
fn feature_registration_moves_through_registering_to_registered() {
    let mut h = H::new();
    let f = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Features/providers/Microsoft.Network/features/EnableApplicationGatewayNetworkIsolation"
    );
    assert_eq!(
        h.ok("GET", &f, "2021-07-01", None)["properties"]["state"],
        "NotRegistered"
    );
    assert_eq!(
        h.ok("POST", &format!("{f}/register"), "2021-07-01", None)["properties"]["state"],
        "Registering"
    );
    h.advance(60.0);
    let v = h.ok("GET", &f, "2021-07-01", None);
    assert_eq!(v["properties"]["state"], "Registered");
    assert_eq!(
        v["name"],
        "Microsoft.Network/EnableApplicationGatewayNetworkIsolation"
    );
}

#[test]
fn accepted_writes_survive_a_restart_and_running_operations_finish_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut h = H::with_state(
        arm_emulator::config::Config::dev(),
        Default::default(),
        Some(path.clone()),
    );
    h.ok(
        "PUT",
        &rg("hscn-net"),
        RG_API,
        Some(json!({"location": "uksouth"})),
    );
    h.ok("PUT", &vnet_id("hscn-net", "v"), NET, Some(json!({"location": "uksouth", "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}}})));
    h.settle();
    let r = h.call(
        "PUT",
        &subnet_id("hscn-net", "v", "a"),
        NET,
        Some(json!({"properties": {"addressPrefix": "10.0.1.0/24"}})),
    );
    let url = r.get_header("Azure-AsyncOperation").unwrap().to_string();
    let now = h.now;
    drop(h); // no shutdown hook: what is on disk is what a kill -9 leaves
    let state = arm_emulator::state::State::load(&path).unwrap().unwrap();
    let mut h2 = H::with_state(arm_emulator::config::Config::dev(), state, Some(path));
    h2.now = now;
    assert_eq!(h2.poll(&url).json_body()["status"], "InProgress");
    h2.advance(10.0);
    assert_eq!(h2.poll(&url).json_body()["status"], "Succeeded");
    assert_eq!(
        h2.ok("GET", &subnet_id("hscn-net", "v", "a"), NET, None)["properties"]["provisioningState"],
        "Succeeded"
    );
}

#[test]
fn resource_group_delete_removes_its_resources() {
    let mut h = H::new();
    h.put_subnet("a", json!({"addressPrefix": "10.20.5.0/24"}));
    h.settle();
    let r = h.call("DELETE", &rg("hscn-net"), RG_API, None);
    assert_eq!(r.status, 202);
    let loc = r.get_header("Location").unwrap().to_string();
    assert!(loc.contains("/operationresults/"));
    assert_eq!(h.poll(&loc).status, 202);
    h.settle();
    assert_eq!(h.poll(&loc).status, 204);
    h.fails(
        "GET",
        &rg("hscn-net"),
        RG_API,
        None,
        404,
        "ResourceGroupNotFound",
    );
    assert!(
        h.e.state
            .get(&subnet_id("hscn-net", "hscn-vnet", "a"))
            .is_none()
    );
}

#[test]
fn lists_return_value_arrays() {
    let mut h = H::new();
    h.put_subnet("a", json!({"addressPrefix": "10.20.5.0/24"}));
    h.settle();
    let v = h.ok(
        "GET",
        &format!("{}/subnets", vnet_id("hscn-net", "hscn-vnet")),
        NET,
        None,
    );
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
    let v = h.ok(
        "GET",
        &format!(
            "{}/providers/Microsoft.Network/virtualNetworks",
            rg("hscn-net")
        ),
        NET,
        None,
    );
    assert_eq!(v["value"][0]["name"], "hscn-vnet");
    let v = h.ok(
        "GET",
        &format!("/subscriptions/{SUB}/resourcegroups"),
        RG_API,
        None,
    );
    assert_eq!(v["value"].as_array().unwrap().len(), 2);
}

/// Resources_ListByResourceGroup and Resources_List (Microsoft.Resources 2021-04-01): top-level
/// resources only, as envelopes without properties; a missing group is 404. Before this was
/// emulated, the path listed a type named `resources` and answered an empty list, so a check that
/// nothing is left in a group passed whatever was there.
#[test]
fn resource_lists_name_every_top_level_resource_of_a_group_and_no_child() {
    let mut h = H::new();
    h.put_subnet("a", json!({"addressPrefix": "10.20.5.0/24"}));
    h.settle();
    common::estate::site_and_cosmos(&mut h);
    let names = |v: &serde_json::Value| {
        let mut n: Vec<String> = v["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["type"].as_str().unwrap(),
                    r["name"].as_str().unwrap()
                )
            })
            .collect();
        n.sort();
        n
    };
    let fhir = h.ok("GET", &format!("{}/resources", rg("fhir")), RG_API, None);
    assert_eq!(
        names(&fhir),
        [
            "Microsoft.DocumentDB/databaseAccounts fhir-cosmos",
            "Microsoft.Web/serverfarms plan",
            "Microsoft.Web/sites fhir-server",
        ]
    );
    let site = fhir["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "fhir-server")
        .unwrap();
    assert_eq!(site["id"], site_id("fhir-server"));
    assert_eq!(site["location"], "uksouth");
    assert!(site.get("properties").is_none(), "{site}");
    let net = h.ok(
        "GET",
        &format!("{}/resources", rg("hscn-net")),
        RG_API,
        None,
    );
    assert_eq!(names(&net), ["Microsoft.Network/virtualNetworks hscn-vnet"]);
    let all = h.ok(
        "GET",
        &format!("/subscriptions/{SUB}/resources"),
        RG_API,
        None,
    );
    assert_eq!(all["value"].as_array().unwrap().len(), 4, "{all}");
    h.fails(
        "GET",
        &format!("{}/resources", rg("nope")),
        RG_API,
        None,
        404,
        "ResourceGroupNotFound",
    );
}

#[test]
fn integration_subnet_must_be_28_or_larger_and_serve_one_plan() {
    let mut h = H::new();
    let deleg = json!([{"name": "w", "properties": {"serviceName": "Microsoft.Web/serverFarms"}}]);
    h.put_subnet(
        "tiny",
        json!({"addressPrefix": "10.20.7.0/29", "delegations": deleg}),
    );
    h.settle();
    h.put_subnet(
        "int",
        json!({"addressPrefix": "10.20.8.0/26", "delegations": deleg}),
    );
    h.settle();
    h.ok(
        "PUT",
        &plan_id("p1"),
        WEB,
        Some(json!({"location": "uksouth", "sku": {"tier": "PremiumV3"}})),
    );
    h.ok(
        "PUT",
        &plan_id("p2"),
        WEB,
        Some(json!({"location": "uksouth", "sku": {"tier": "PremiumV3"}})),
    );
    h.ok(
        "PUT",
        &site_id("a"),
        WEB,
        Some(json!({"location": "uksouth", "properties": {"serverFarmId": plan_id("p1")}})),
    );
    h.ok(
        "PUT",
        &site_id("b"),
        WEB,
        Some(json!({"location": "uksouth", "properties": {"serverFarmId": plan_id("p2")}})),
    );
    let v = h.fails("PATCH", &site_id("a"), WEB, Some(json!({"properties": {"virtualNetworkSubnetId": subnet_id("hscn-net", "hscn-vnet", "tiny")}})), 400, "BadRequest");
    assert!(v["error"]["message"].as_str().unwrap().contains("/28"));
    h.ok("PATCH", &site_id("a"), WEB, Some(json!({"properties": {"virtualNetworkSubnetId": subnet_id("hscn-net", "hscn-vnet", "int")}})));
    let v = h.fails("PATCH", &site_id("b"), WEB, Some(json!({"properties": {"virtualNetworkSubnetId": subnet_id("hscn-net", "hscn-vnet", "int")}})), 400, "BadRequest");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only one App Service plan")
    );
}

#[test]
fn vnet_reads_updating_while_a_subnet_operation_runs() {
    let mut h = H::new();
    h.put_subnet("a", json!({"addressPrefix": "10.20.5.0/24"}));
    let vnet = vnet_id("hscn-net", "hscn-vnet");
    assert_eq!(
        h.ok("GET", &vnet, NET, None)["properties"]["provisioningState"],
        "Updating"
    );
    h.settle();
    assert_eq!(
        h.ok("GET", &vnet, NET, None)["properties"]["provisioningState"],
        "Succeeded"
    );
}

#[test]
fn network_get_has_etag_header_and_a_stale_if_match_is_refused_unless_switched_off() {
    let mut h = H::new();
    let vnet = vnet_id("hscn-net", "hscn-vnet");
    let r = h.call("GET", &vnet, NET, None);
    let etag = r.get_header("ETag").unwrap().to_string();
    assert_eq!(r.json_body()["etag"], etag.as_str());
    assert!(etag.starts_with("W/\""));
    let body = json!({"location": "uksouth", "properties": {"addressSpace": {"addressPrefixes": ["10.20.0.0/16"]}}});
    let stale = |h: &mut H, body: &serde_json::Value| {
        let req = Request::new("PUT", &format!("{vnet}?api-version={NET}"))
            .with_header("Authorization", &format!("Bearer {}", h.token))
            .with_header("If-Match", "W/\"stale\"")
            .with_json(body);
        h.raw(req)
    };
    // The ARM RPC's contract, enforced by default (more cases in tests/preconditions.rs).
    let r = stale(&mut h, &body);
    assert_eq!(
        (r.status, r.json_body()["error"]["code"].clone()),
        (412, json!("PreconditionFailed"))
    );
    // Switched off: ignored, as a resource provider that does not implement it would.
    h.e.cfg.behaviour.enforce_if_match = false;
    assert_eq!(stale(&mut h, &body).status, 200);
}

#[test]
fn cosmos_rejects_malformed_ip_rules() {
    let mut h = H::new();
    h.fails("PUT", &cosmos_id("c"), COSMOS, Some(json!({"location": "uksouth", "properties": {"databaseAccountOfferType": "Standard",
        "locations": [{"locationName": "UK South"}], "ipRules": [{"ipAddressOrRange": "not-an-ip"}]}})), 400, "BadRequest");
}

#[test]
fn cosmos_rejects_ip_rules_inside_private_ranges_it_cannot_enforce() {
    let body = |range: &str| {
        json!({"location": "uksouth", "properties": {"databaseAccountOfferType": "Standard",
        "locations": [{"locationName": "UK South"}], "ipRules": [{"ipAddressOrRange": range}]}})
    };
    let mut h = H::new();
    for private in [
        "10.0.0.0/8",
        "10.20.1.0/24",
        "100.64.0.1",
        "172.20.0.0/16",
        "192.168.1.7",
    ] {
        h.fails(
            "PUT",
            &cosmos_id("c"),
            COSMOS,
            Some(body(private)),
            400,
            "BadRequest",
        );
    }
    // Public addresses, and a range that merely contains a private one, are accepted.
    for (account, public) in [
        ("p1", "203.0.113.7"),
        ("p2", "198.51.100.0/24"),
        ("p3", "8.0.0.0/5"),
    ] {
        let r = h.call("PUT", &cosmos_id(account), COSMOS, Some(body(public)));
        assert!(r.status < 300, "{public}: {}", r.status);
    }
}

#[test]
fn a_doubled_leading_slash_is_tolerated() {
    let mut h = H::new();
    let req = Request::new("GET", &format!("/{}?api-version={RG_API}", rg("fhir")))
        .with_header("Authorization", &format!("Bearer {}", h.token));
    assert_eq!(h.raw(req).status, 200);
}

#[test]
fn subscription_get_answers_for_known_subscriptions_only() {
    let mut h = H::new();
    let v = h.ok("GET", &format!("/subscriptions/{SUB}"), RG_API, None);
    assert_eq!(
        (v["subscriptionId"].as_str(), v["state"].as_str()),
        (Some(SUB), Some("Enabled"))
    );
    h.fails(
        "GET",
        "/subscriptions/00000000-0000-0000-0000-000000000000",
        RG_API,
        None,
        404,
        "SubscriptionNotFound",
    );
}
