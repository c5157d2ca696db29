//! Resource lists: `WebApps_List` / `WebApps_ListByResourceGroup` page by `nextLink` (Web
//! 2024-11-01 `WebApps.json`, `x-ms-pageable` `nextLinkName: nextLink`); Cosmos DB's
//! `DatabaseAccounts_List` has no next link (`nextLinkName: null`, 2025-04-15 `cosmos-db.json`).

mod common;
use arm_emulator::config::Config;
use arm_emulator::engine::Request;
use common::*;
use serde_json::{Value, json};

fn site(h: &mut H, name: &str) {
    h.ok(
        "PUT",
        &plan_id("p"),
        WEB,
        Some(json!({"location": "uksouth", "sku": {"name": "P1v3"}})),
    );
    h.ok(
        "PUT",
        &site_id(name),
        WEB,
        Some(json!({"location": "uksouth", "properties": {"serverFarmId": plan_id("p")}})),
    );
    h.settle();
}

/// Follows `nextLink` as a client does: the link exactly as given, with the caller's token.
fn all_pages(h: &mut H, path: &str) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut pages = 1;
    let mut page = h.ok("GET", path, WEB, None);
    loop {
        for s in page["value"].as_array().unwrap() {
            names.push(s["name"].as_str().unwrap().to_owned());
        }
        let Some(next) = page["nextLink"].as_str().map(str::to_owned) else {
            break;
        };
        let rest = next
            .strip_prefix("https://emu.test:8443")
            .expect("a link on the ARM endpoint");
        let token = h.token.clone();
        let r = h.raw(
            Request::new("GET", rest).with_header("Authorization", &format!("Bearer {token}")),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        page = serde_json::from_slice::<Value>(&r.body).unwrap();
        pages += 1;
    }
    names.sort();
    (names, pages)
}

#[test]
fn site_lists_page_by_next_link_and_cosmos_lists_do_not() {
    let mut cfg = Config::dev();
    cfg.behaviour.sites_page_size = 2;
    let mut h = H::with_config(cfg);
    h.ok(
        "PUT",
        &rg("fhir"),
        RG_API,
        Some(json!({"location": "uksouth"})),
    );
    for n in ["a1", "b2", "c3", "d4", "e5"] {
        site(&mut h, n);
    }
    let by_group = format!("{}/providers/Microsoft.Web/sites", rg("fhir"));
    let by_sub = format!("/subscriptions/{SUB}/providers/Microsoft.Web/sites");
    for path in [by_group, by_sub] {
        let first = h.ok("GET", &path, WEB, None);
        assert_eq!(first["value"].as_array().unwrap().len(), 2);
        assert!(
            first["nextLink"]
                .as_str()
                .unwrap()
                .contains("api-version=2024-11-01")
        );
        let (names, pages) = all_pages(&mut h, &path);
        assert_eq!(names, ["a1", "b2", "c3", "d4", "e5"], "{path}");
        assert_eq!(pages, 3, "{path}");
    }
    // The last page has no link, and a token that is not the emulator's is refused.
    let bad = h.call(
        "GET",
        &format!("/subscriptions/{SUB}/providers/Microsoft.Web/sites?$skipToken=x"),
        WEB,
        None,
    );
    assert_eq!(bad.status, 400);

    // A list under a resource group that does not exist is ARM's proxy 404 (ARM RPC).
    let missing = h.call(
        "GET",
        &format!("/subscriptions/{SUB}/resourceGroups/nope/providers/Microsoft.Web/sites"),
        WEB,
        None,
    );
    assert_eq!(missing.status, 404);
    assert!(String::from_utf8_lossy(&missing.body).contains("ResourceGroupNotFound"));

    h.ok("PUT", &cosmos_id("c"), COSMOS, Some(json!({"location": "uksouth", "properties": {"databaseAccountOfferType": "Standard", "locations": [{"locationName": "UK South"}]}})));
    h.settle();
    let cosmos = h.ok(
        "GET",
        &format!("/subscriptions/{SUB}/providers/Microsoft.DocumentDB/databaseAccounts"),
        COSMOS,
        None,
    );
    assert_eq!(cosmos["value"].as_array().unwrap().len(), 1);
    assert!(cosmos.get("nextLink").is_none());
}
