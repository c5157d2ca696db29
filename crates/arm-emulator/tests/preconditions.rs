//! Conditional writes (ARM RPC `Addendum.md`, "ETags for Resources"; `engine/preconditions.rs`):
//! etags on every Network answer, new on every write; `If-Match` and `If-None-Match` enforced on
//! PUT, PATCH and DELETE, refused with ARM's 412 `PreconditionFailed` envelope.

mod common;

use arm_emulator::engine::{Request, Response};
use common::estate::*;
use common::*;
use serde_json::{Value, json};

/// `method path` with one precondition header.
fn conditional(
    h: &mut H,
    method: &str,
    path: &str,
    api: &str,
    header: (&str, &str),
    body: Option<Value>,
) -> Response {
    let mut req = Request::new(method, &format!("{path}?api-version={api}"))
        .with_header("Authorization", &format!("Bearer {}", h.token))
        .with_header(header.0, header.1);
    if let Some(b) = body {
        req = req.with_json(&b);
    }
    h.raw(req)
}

fn refused(r: &Response) {
    let v = r.json_body();
    assert_eq!(r.status, 412, "{v}");
    assert_eq!(v["error"]["code"], "PreconditionFailed", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

/// The etag a GET shows, header and body alike.
fn etag_of(h: &mut H, path: &str, api: &str) -> String {
    let r = h.call("GET", path, api, None);
    let e = r.get_header("ETag").expect("ETag header").to_string();
    assert_eq!(r.json_body()["etag"], e.as_str(), "header and body agree");
    e
}

fn subnet(name: &str) -> String {
    subnet_id("hscn-net", "hscn-vnet", name)
}

fn subnet_body(prefix: &str) -> Value {
    json!({"properties": {"addressPrefix": prefix}})
}

#[test]
fn etags_come_back_on_get_and_put_answers_and_change_on_every_write() {
    let mut h = H::new();
    let vnet = vnet_id("hscn-net", "hscn-vnet");
    let before = etag_of(&mut h, &vnet, NET);
    // A subnet's PUT answer carries the etag as header and in the body: its VNet's, new.
    let r = h.put_subnet("a", json!({"addressPrefix": "10.20.5.0/24"}));
    assert_eq!(r.status, 201);
    let put_etag = r
        .get_header("ETag")
        .expect("ETag on the PUT answer")
        .to_string();
    assert_eq!(r.json_body()["etag"], put_etag.as_str());
    assert_ne!(put_etag, before, "a write moves the etag");
    assert_eq!(etag_of(&mut h, &subnet("a"), NET), put_etag);
    assert_eq!(
        etag_of(&mut h, &vnet, NET),
        put_etag,
        "a subnet's etag is its VNet's"
    );
    h.settle();
    // A write to another subnet of the VNet moves every subnet's etag.
    let a = etag_of(&mut h, &subnet("a"), NET);
    assert_eq!(
        h.put_subnet("b", json!({"addressPrefix": "10.20.6.0/24"}))
            .status,
        201
    );
    h.settle();
    assert_ne!(etag_of(&mut h, &subnet("a"), NET), a);
    assert_eq!(
        etag_of(&mut h, &subnet("a"), NET),
        etag_of(&mut h, &subnet("b"), NET)
    );

    // The gateway: its own etag, on the PUT answer and on GET, new after each write.
    agw_subnet(&mut h);
    register_isolation(&mut h);
    let r = h.call("PUT", &agw_id("agw-fhir"), NET, Some(gateway_body(None)));
    assert_eq!(r.status, 201);
    let created = r
        .get_header("ETag")
        .expect("ETag on the PUT answer")
        .to_string();
    assert_eq!(r.json_body()["etag"], created.as_str());
    h.settle();
    let read = etag_of(&mut h, &agw_id("agw-fhir"), NET);
    let r = h.call("PUT", &agw_id("agw-fhir"), NET, Some(gateway_body(None)));
    assert_eq!(r.status, 200);
    assert_ne!(r.get_header("ETag").unwrap(), read);
    // UpdateTags (PATCH) too.
    h.settle();
    let read = etag_of(&mut h, &agw_id("agw-fhir"), NET);
    let r = h.call(
        "PATCH",
        &agw_id("agw-fhir"),
        NET,
        Some(json!({"tags": {"a": "b"}})),
    );
    assert_eq!(r.status, 200);
    assert_ne!(r.get_header("ETag").unwrap(), read);
    assert_eq!(
        etag_of(&mut h, &agw_id("agw-fhir"), NET),
        r.get_header("ETag").unwrap()
    );
}

#[test]
fn a_stale_if_match_is_refused_and_changes_nothing() {
    let mut h = H::new();
    assert_eq!(
        h.put_subnet("a", json!({"addressPrefix": "10.20.5.0/24"}))
            .status,
        201
    );
    h.settle();
    let read = etag_of(&mut h, &subnet("a"), NET);
    // A colleague changes the subnet after fhirlock read it.
    let colleague = json!({"properties": {"addressPrefix": "10.20.5.0/24", "privateEndpointNetworkPolicies": "Enabled"}});
    assert_eq!(
        h.call("PUT", &subnet("a"), NET, Some(colleague)).status,
        200
    );
    h.settle();
    // fhirlock's write with what it read is refused; the colleague's change stands.
    let ours = json!({"properties": {"addressPrefix": "10.20.5.0/24", "serviceEndpoints": [{"service": "Microsoft.Web"}]}});
    let r = conditional(
        &mut h,
        "PUT",
        &subnet("a"),
        NET,
        ("If-Match", &read),
        Some(ours.clone()),
    );
    refused(&r);
    let v = h.ok("GET", &subnet("a"), NET, None);
    assert_eq!(v["properties"]["privateEndpointNetworkPolicies"], "Enabled");
    assert!(v["properties"]["serviceEndpoints"].is_null(), "{v}");
    // With the etag read now, it goes through.
    let now = etag_of(&mut h, &subnet("a"), NET);
    let r = conditional(
        &mut h,
        "PUT",
        &subnet("a"),
        NET,
        ("If-Match", &now),
        Some(ours),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn if_match_any_needs_the_resource_and_if_none_match_any_forbids_it() {
    let mut h = H::new();
    // If-Match: * on a subnet that does not exist: 412, nothing created.
    refused(&conditional(
        &mut h,
        "PUT",
        &subnet("a"),
        NET,
        ("If-Match", "*"),
        Some(subnet_body("10.20.5.0/24")),
    ));
    h.fails("GET", &subnet("a"), NET, None, 404, "NotFound");
    // If-None-Match: * creates once; the second creation is refused.
    let r = conditional(
        &mut h,
        "PUT",
        &subnet("a"),
        NET,
        ("If-None-Match", "*"),
        Some(subnet_body("10.20.5.0/24")),
    );
    assert_eq!(r.status, 201);
    h.settle();
    refused(&conditional(
        &mut h,
        "PUT",
        &subnet("a"),
        NET,
        ("If-None-Match", "*"),
        Some(subnet_body("10.20.5.0/24")),
    ));
    // If-Match: * on one that exists: as without.
    let r = conditional(
        &mut h,
        "PUT",
        &subnet("a"),
        NET,
        ("If-Match", "*"),
        Some(subnet_body("10.20.5.0/24")),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn two_first_time_creations_of_one_gateway_cannot_both_succeed() {
    let mut h = H::new();
    agw_subnet(&mut h);
    register_isolation(&mut h);
    let first = conditional(
        &mut h,
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        ("If-None-Match", "*"),
        Some(gateway_body(None)),
    );
    assert_eq!(first.status, 201);
    h.settle();
    refused(&conditional(
        &mut h,
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        ("If-None-Match", "*"),
        Some(gateway_body(None)),
    ));
}

#[test]
fn patch_and_delete_check_if_match_and_leave_absence_to_their_own_answers() {
    let mut h = H::new();
    agw_subnet(&mut h);
    register_isolation(&mut h);
    h.ok("PUT", &agw_id("agw-fhir"), NET, Some(gateway_body(None)));
    h.settle();
    let gw = agw_id("agw-fhir");
    let stale = "W/\"00000000-0000-4000-8000-000000000000\"";
    let tags = Some(json!({"tags": {"team": "fhir"}}));
    refused(&conditional(
        &mut h,
        "PATCH",
        &gw,
        NET,
        ("If-Match", stale),
        tags.clone(),
    ));
    let read = etag_of(&mut h, &gw, NET);
    assert_eq!(
        conditional(&mut h, "PATCH", &gw, NET, ("If-Match", &read), tags.clone()).status,
        200
    );
    refused(&conditional(
        &mut h,
        "DELETE",
        &gw,
        NET,
        ("If-Match", &read),
        None,
    ));
    let read = etag_of(&mut h, &gw, NET);
    assert_eq!(
        conditional(&mut h, "DELETE", &gw, NET, ("If-Match", &read), None).status,
        202
    );
    h.settle();
    // Absent: PATCH is 404 and DELETE 204, as without the header (the RPC's tables).
    let r = conditional(&mut h, "PATCH", &gw, NET, ("If-Match", &read), tags);
    assert_eq!(r.status, 404);
    assert_eq!(
        conditional(&mut h, "DELETE", &gw, NET, ("If-Match", &read), None).status,
        204
    );
}

#[test]
fn a_resource_without_an_etag_matches_only_any() {
    let mut h = H::new();
    site_and_cosmos(&mut h);
    let site = site_id("fhir-server");
    let r = h.call("GET", &site, WEB, None);
    assert!(
        r.get_header("ETag").is_none(),
        "Site has no etag in its model"
    );
    let patch = Some(json!({"properties": {"httpsOnly": true}}));
    refused(&conditional(
        &mut h,
        "PATCH",
        &site,
        WEB,
        ("If-Match", "W/\"1\""),
        patch.clone(),
    ));
    assert_eq!(
        conditional(&mut h, "PATCH", &site, WEB, ("If-Match", "*"), patch).status,
        200
    );
    let cosmos = Some(json!({"properties": {"ipRules": []}}));
    refused(&conditional(
        &mut h,
        "PATCH",
        &cosmos_id("fhir-cosmos"),
        COSMOS,
        ("If-Match", "W/\"1\""),
        cosmos,
    ));
    let put = json!({"location": "uksouth", "properties": {"serverFarmId": plan_id("plan")}});
    refused(&conditional(
        &mut h,
        "PUT",
        &site,
        WEB,
        ("If-None-Match", "*"),
        Some(put),
    ));
}
