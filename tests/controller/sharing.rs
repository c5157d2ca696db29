//! Endpoints that share a site and a Cosmos DB account (issue 13): each keeps the other's rules,
//! a third that contests a gateway subnet stalls without writing, and deleting one leaves the
//! other's rules in place.

use super::*;

/// B's spec beside the example: its own gateway and gateway subnet; the same site, Cosmos DB
/// account, VNet and integration subnet (a site has one VNet integration).
fn second_endpoint() -> Vec<(&'static str, Value)> {
    vec![
        (
            "/spec/network/gatewaySubnet",
            json!({"name": "snet-fhir-agw-b", "addressPrefix": "10.20.3.0/26"}),
        ),
        ("/spec/gateway/name", json!("agw-fhir-b")),
        ("/spec/gateway/privateIPAddress", json!("10.20.3.10")),
        ("/spec/deletionPolicy", json!("Delete")),
    ]
}

fn subnet(name: &str) -> String {
    format!("subnet:{}/subnets/{name}", vnet()).to_ascii_lowercase()
}

/// The sources the emulator's oracle says reach `v` (lower-cased), once Cosmos DB's firewall
/// has settled.
fn settled(emu: &Emulator) -> Value {
    for _ in 0..240 {
        let e = rt().block_on(emu.control.exposure()).unwrap();
        let pending = e["cosmos"]
            .as_object()
            .unwrap()
            .values()
            .any(|c| c["dataPlane"]["pendingFirewallChange"] == true);
        if !pending {
            return e;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("the Cosmos DB firewall never settled");
}

fn sources(v: &Value) -> Vec<String> {
    let mut s: Vec<String> = v["reachableFrom"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source"].as_str().unwrap().to_ascii_lowercase())
        .filter(|s| s.starts_with("subnet:"))
        .collect();
    s.sort();
    s
}

fn site_rule_subnets(emu: &Emulator) -> Vec<String> {
    let cfg = rt()
        .block_on(
            emu.portal()
                .unwrap()
                .get(&format!("{}/config/web", site()), WEB),
        )
        .unwrap()
        .unwrap();
    let mut s: Vec<String> = cfg["properties"]["ipSecurityRestrictions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["vnetSubnetResourceId"].as_str())
        .map(|s| s.rsplit('/').next().unwrap().to_owned())
        .collect();
    s.sort();
    s
}

#[test]
fn endpoints_on_one_site_and_account_keep_each_others_rules_and_a_contested_subnet_stalls() {
    let _s = serial();
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    let (ns_a, ns_b, ns_c) = (
        namespace("e2e-share-a"),
        namespace("e2e-share-b"),
        namespace("e2e-share-c"),
    );
    let op = operator(
        &emu,
        &tenancy(emu.dir(), &[&ns_a, &ns_b, &ns_c], None),
        None,
        &["--resync-seconds", "3"],
    );
    let a = endpoint_in(&emu, &ns_a, &[("/spec/deletionPolicy", json!("Delete"))]);
    wait_for(&op, &ns_a, &a, READY, "A Ready", is_ready);
    let b = endpoint_in(&emu, &ns_b, &second_endpoint());
    wait_for(&op, &ns_b, &b, READY, "B Ready", is_ready);
    wait_for(&op, &ns_a, &a, READY, "A still Ready", is_ready);

    // Two resyncs and more (3 s each): neither undoes the other, so nobody writes.
    rt().block_on(emu.control.reset_stats()).unwrap();
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(operator_writes(&emu), 0, "the endpoints take turns");
    assert_eq!(
        site_rule_subnets(&emu),
        ["snet-fhir-agw", "snet-fhir-agw-b"]
    );

    // The oracle: the site from both gateway subnets only, Cosmos DB from the integration subnet.
    let e = settled(&emu);
    let site_e = &e["sites"][site()];
    assert_eq!(
        sources(&site_e["main"]),
        [subnet("snet-fhir-agw"), subnet("snet-fhir-agw-b")],
        "{site_e}"
    );
    assert_eq!(site_e["main"]["internetDirect"], false);
    assert_eq!(
        sources(&e["cosmos"][cosmos()]["dataPlane"]),
        [subnet("snet-fhir-int")]
    );

    // C contests A's gateway subnet: it stalls, naming A, and nobody writes.
    let c = endpoint_in(
        &emu,
        &ns_c,
        &[
            ("/spec/gateway/name", json!("agw-fhir-c")),
            ("/spec/deletionPolicy", json!("Delete")),
        ],
    );
    let obj = wait_for(&op, &ns_c, &c, Duration::from_secs(60), "C stalls", |o| {
        condition(o, "Stalled").is_some_and(|c| c["reason"] == "ConflictsWith")
    });
    let message = condition(&obj, "Stalled").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains(&format!("{ns_a}/{a}")), "{message}");
    assert!(message.contains("snet-fhir-agw"), "{message}");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(operator_writes(&emu), 0, "a conflicting endpoint wrote");

    // Deleting C (Delete) removes nothing of A's: the subnet it contested is A's.
    kubectl_ok(&["delete", "sfe", &c, "-n", &ns_c, "--timeout=60s"]);
    assert_eq!(operator_writes(&emu), 0, "C's teardown touched A's rule");
    // Deleting B (Delete) removes B's rule and gateway only; A stays Ready with its rules.
    kubectl_ok(&["delete", "sfe", &b, "-n", &ns_b, "--timeout=120s"]);
    assert_eq!(site_rule_subnets(&emu), ["snet-fhir-agw"]);
    let portal = emu.portal().unwrap();
    let gw_b = gateway().replace("agw-fhir", "agw-fhir-b");
    assert!(rt().block_on(portal.get(&gw_b, NET)).unwrap().is_none());
    let s = rt().block_on(portal.get(&site(), WEB)).unwrap().unwrap();
    assert!(
        s["properties"]["virtualNetworkSubnetId"]
            .as_str()
            .is_some_and(|i| i.ends_with("/subnets/snet-fhir-int")),
        "B's teardown ended the integration A needs: {}",
        s["properties"]["virtualNetworkSubnetId"]
    );
    rt().block_on(emu.control.reset_stats()).unwrap();
    std::thread::sleep(Duration::from_secs(7));
    let obj = wait_for(&op, &ns_a, &a, READY, "A Ready", is_ready);
    assert_eq!(
        condition(&obj, "AppServiceLocked").unwrap()["status"],
        "True"
    );
    assert_eq!(
        operator_writes(&emu),
        0,
        "A had to repair what B's deletion did"
    );
    assert_eq!(
        sources(&settled(&emu)["cosmos"][cosmos()]["dataPlane"]),
        [subnet("snet-fhir-int")]
    );
    drop(op);
}
