//! Endpoints that share a site, a Cosmos DB account or a VNet (issue 13): which claims conflict
//! (the later endpoint stalls `ConflictsWith`, naming the earlier, and plans nothing), the union of
//! the rules on shared resources (each keeps the others', nobody's go), posture, teardown, and a
//! property: two endpoints converging on one estate in any interleaving end with empty plans and
//! admit nothing beyond the union.

mod common;

use std::collections::BTreeMap;

use common::*;
use fhirlock_core::peers::{self, Claim, Peers};
use fhirlock_core::plan::{self, Clock, FIREWALL_PROPAGATION, StepKind};
use fhirlock_core::posture::{FindingCode, Source, Target};
use fhirlock_core::status::Assessment;
use fhirlock_core::{Certificate, Desired, Observed, posture, preflight, simulate};
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use serde_json::{Value, json};

fn at(second: i64) -> Option<Timestamp> {
    Some(Timestamp::from_second(1_700_000_000 + second).unwrap())
}

/// The example endpoint as `ns/name`, with `edits` (JSON pointer, value) to its spec.
fn spec_of(edits: &[(&str, Value)]) -> fhirlock_api::v1alpha1::SecuredFhirEndpointSpec {
    let mut obj = fhirlock_api::fixtures::base_example();
    for (path, v) in edits {
        *obj.pointer_mut(path).unwrap_or_else(|| panic!("{path}")) = v.clone();
    }
    serde_json::from_value(obj["spec"].clone()).unwrap()
}

fn endpoint(owner: &str, edits: &[(&str, Value)]) -> Desired {
    let (ns, name) = owner.split_once('/').unwrap();
    Desired::from_spec(
        ns,
        name,
        &spec_of(edits),
        Certificate::Pfx {
            data_base64: "UEZY".into(),
            password: "pw".into(),
            fingerprint: "abc123".into(),
        },
    )
}

/// `d` created at `created`, among `others` (each: owner, created, edits).
/// Spec edits: a JSON pointer into the example and its new value.
type Edits<'a> = &'a [(&'a str, Value)];

fn among(mut d: Desired, created: i64, others: &[(&str, i64, Edits)]) -> Desired {
    d.peers = Peers {
        created: at(created),
        others: others
            .iter()
            .map(|(owner, t, edits)| {
                let (ns, name) = owner.split_once('/').unwrap();
                Claim::of(ns, name, at(*t), false, &spec_of(edits))
            })
            .collect(),
    };
    d
}

/// A second endpoint on the same site, Cosmos DB account, VNet and integration subnet, with its
/// own gateway and gateway subnet.
fn b_edits() -> Vec<(&'static str, Value)> {
    vec![
        (
            "/spec/network/gatewaySubnet",
            json!({"name": "snet-fhir-agw-b", "addressPrefix": "10.20.3.0/26"}),
        ),
        ("/spec/gateway/name", json!("agw-fhir-b")),
        ("/spec/gateway/privateIPAddress", json!("10.20.3.10")),
        ("/spec/gateway/hostName", json!("fhir-b.trust.nhs.uk")),
    ]
}

fn b_gw_subnet() -> String {
    format!("{}/subnets/snet-fhir-agw-b", vnet_id())
}

#[test]
fn contested_claims_stall_the_later_endpoint_naming_the_earlier() {
    let b = b_edits();
    // (what the later endpoint changes from B's spec, what the message must name)
    type Case<'a> = (&'a str, Vec<(&'a str, Value)>, Option<&'a str>);
    let table: Vec<Case> = vec![
        (
            "shares site, account, VNet and integration subnet",
            vec![],
            None,
        ),
        (
            "the same gateway",
            vec![("/spec/gateway/name", json!("AGW-FHIR"))],
            Some("Application Gateway"),
        ),
        (
            "the same gateway subnet",
            vec![
                (
                    "/spec/network/gatewaySubnet",
                    json!({"name": "snet-fhir-agw", "addressPrefix": "10.20.1.0/26"}),
                ),
                ("/spec/gateway/privateIPAddress", json!("10.20.1.20")),
            ],
            Some("gateway subnet snet-fhir-agw (10.20.1.0/26)"),
        ),
        (
            "an overlapping gateway subnet under another name",
            vec![
                (
                    "/spec/network/gatewaySubnet",
                    json!({"name": "snet-other", "addressPrefix": "10.20.1.0/27"}),
                ),
                ("/spec/gateway/privateIPAddress", json!("10.20.1.20")),
            ],
            Some("overlapping"),
        ),
        (
            "a gateway subnet over the other's integration subnet",
            vec![
                (
                    "/spec/network/gatewaySubnet",
                    json!({"name": "snet-other", "addressPrefix": "10.20.2.0/28"}),
                ),
                ("/spec/gateway/privateIPAddress", json!("10.20.2.10")),
            ],
            Some("snet-fhir-int"),
        ),
        (
            "the same site with another integration subnet",
            vec![(
                "/spec/network/integrationSubnet",
                json!({"name": "snet-fhir-int-b", "addressPrefix": "10.20.4.0/27"}),
            )],
            Some("one regional VNet integration"),
        ),
        (
            "the same site with another SCM lock",
            vec![("/spec/appService/scmSite", json!("LockedDenyAll"))],
            Some("scmSite"),
        ),
    ];
    for (case, extra, names) in table {
        let mut edits = b.clone();
        edits.extend(extra);
        let a = endpoint("team-a/records", &[]);
        let later = among(
            endpoint("team-b/records", &edits),
            10,
            &[("team-a/records", 0, &[])],
        );
        let earlier = among(a, 0, &[("team-b/records", 10, &edits)]);
        assert_eq!(
            peers::conflict(&earlier),
            None,
            "{case}: the earlier one keeps it"
        );
        match (peers::conflict(&later), names) {
            (None, None) => {}
            (Some(c), Some(what)) => {
                assert_eq!(c.with, "team-a/records", "{case}");
                assert!(c.claim.contains(what), "{case}: {}", c.claim);
                assert!(c.message().contains("team-a/records"), "{case}");
            }
            (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn the_order_is_creation_time_then_name_and_a_peer_being_deleted_still_holds_its_claim() {
    let same = [("/spec/gateway/hostName", json!("other.trust.nhs.uk"))];
    // Same second: namespace/name decides.
    let b = among(endpoint("b/x", &same), 5, &[("a/x", 5, &[])]);
    let a = among(endpoint("a/x", &[]), 5, &[("b/x", 5, &same)]);
    assert!(peers::conflict(&b).is_some() && peers::conflict(&a).is_none());
    // Created earlier wins over the name.
    let b = among(endpoint("b/x", &same), 1, &[("a/x", 5, &[])]);
    assert!(peers::conflict(&b).is_none());
    // A peer being deleted still holds the gateway until it is gone.
    let mut late = among(endpoint("b/x", &same), 9, &[("a/x", 5, &[])]);
    late.peers.others[0].deleting = true;
    assert_eq!(peers::conflict(&late).unwrap().with, "a/x");
    // Without peers (the one-shot CLI) nothing conflicts.
    assert_eq!(peers::conflict(&endpoint("b/x", &same)), None);
}

#[test]
fn a_conflicting_endpoint_fails_preflight_first_and_plans_no_write() {
    let edits = [("/spec/gateway/hostName", json!("other.trust.nhs.uk"))];
    let d = among(
        endpoint("team-c/records", &edits),
        30,
        &[("team-a/records", 0, &[])],
    );
    let o = wide_open();
    let failures = preflight::check(&d, &o);
    assert_eq!(failures[0].code, "ConflictsWith", "{failures:?}");
    assert!(failures[0].message.contains("team-a/records"));
    let a = Assessment::of(&d, &o);
    assert!(a.plan.is_empty(), "a conflicting endpoint plans nothing");
    assert!(!a.preflight.is_empty());
}

/// `wide_open` as converged by endpoint A, then with B's rule beside A's, and a rule of nobody's.
fn shared_site() -> Observed {
    let a = endpoint("team-a/records", &[]);
    let (mut o, _, _) = converge(&a, &wide_open());
    let cfg = o.site_config.as_mut().unwrap();
    let rules = cfg["properties"]["ipSecurityRestrictions"]
        .as_array_mut()
        .unwrap();
    rules.push(json!({"name": peers::rule_name("team-b/records"), "action": "Allow", "priority": 100, "vnetSubnetResourceId": b_gw_subnet()}));
    rules.push(json!({"name": "stray", "action": "Allow", "priority": 300, "vnetSubnetResourceId": format!("{}/subnets/snet-workloads", vnet_id())}));
    let cosmos = o.cosmos.as_mut().unwrap();
    let vnet_rules = cosmos["properties"]["virtualNetworkRules"]
        .as_array_mut()
        .unwrap();
    vnet_rules.insert(0, json!({"id": format!("{}/subnets/snet-fhir-int-c", vnet_id()), "ignoreMissingVNetServiceEndpoint": false}));
    vnet_rules.push(json!({"id": format!("{}/subnets/snet-stray", vnet_id()), "ignoreMissingVNetServiceEndpoint": false}));
    o
}

fn rule_subnets(o: &Observed) -> Vec<String> {
    o.site_config.as_ref().unwrap()["properties"]["ipSecurityRestrictions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["vnetSubnetResourceId"].as_str())
        .map(|s| s.rsplit('/').next().unwrap().to_owned())
        .collect()
}

fn cosmos_subnets(o: &Observed) -> Vec<String> {
    o.cosmos.as_ref().unwrap()["properties"]["virtualNetworkRules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["id"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn the_peers_rules_stay_nobodys_go_and_neither_is_a_finding_for_a_peer() {
    let o = shared_site();
    // C declares the account only (another site, its own integration subnet).
    let c_edits = [
        (
            "/spec/appService/id",
            json!(format!(
                "/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.Web/sites/other-app"
            )),
        ),
        (
            "/spec/network/integrationSubnet",
            json!({"name": "snet-fhir-int-c", "addressPrefix": "10.20.5.0/27"}),
        ),
        (
            "/spec/network/gatewaySubnet",
            json!({"name": "snet-fhir-agw-c", "addressPrefix": "10.20.6.0/26"}),
        ),
        ("/spec/gateway/name", json!("agw-fhir-c")),
        ("/spec/gateway/privateIPAddress", json!("10.20.6.10")),
    ];
    let b = b_edits();
    let a = among(
        endpoint("team-a/records", &[]),
        0,
        &[("team-b/records", 10, &b), ("team-c/records", 20, &c_edits)],
    );
    let plan = plan::plan(&a, &o);
    let site = plan
        .steps
        .iter()
        .find(|s| s.kind == StepKind::SiteAccessRestrictions)
        .expect("the stray rule goes");
    let cosmos = plan
        .steps
        .iter()
        .find(|s| s.kind == StepKind::CosmosLockdown)
        .expect("the stray Cosmos rule goes");
    let after = simulate::apply(&simulate::apply(&o, site), cosmos);
    let mut got = rule_subnets(&after);
    got.sort();
    assert_eq!(got, ["snet-fhir-agw", "snet-fhir-agw-b"]);
    assert_eq!(cosmos_subnets(&after), ["snet-fhir-int-c", "snet-fhir-int"]);
    assert!(
        plan::plan(&a, &after).is_empty(),
        "and then nothing: no flip-flop"
    );
    let codes: Vec<_> = posture::findings(&a, &after)
        .into_iter()
        .filter(|f| f.is_blocking())
        .map(|f| f.code)
        .collect();
    assert!(
        codes.is_empty(),
        "a peer's rule is not a back door: {codes:?}"
    );
    // Without the peers, both are back doors, and the lockdown takes them away.
    let alone = endpoint("team-a/records", &[]);
    let codes: Vec<_> = posture::findings(&alone, &after)
        .into_iter()
        .map(|f| f.code)
        .collect();
    assert!(
        codes.contains(&FindingCode::SiteAllowsOtherSources),
        "{codes:?}"
    );
    assert!(
        codes.contains(&FindingCode::CosmosForeignVnetRule),
        "{codes:?}"
    );
}

#[test]
fn a_new_rule_is_named_for_its_endpoint() {
    let a = endpoint("team-a/records", &[]);
    let (o, _, _) = converge(&a, &wide_open());
    let rules = &o.site_config.as_ref().unwrap()["properties"]["ipSecurityRestrictions"];
    let ours: Vec<_> = rules
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["vnetSubnetResourceId"] == json!(gw_subnet()))
        .collect();
    assert_eq!(ours.len(), 1, "{rules}");
    assert_eq!(ours[0]["name"], json!(peers::rule_name("team-a/records")));
    assert_ne!(
        peers::rule_name("team-a/records"),
        peers::rule_name("team-b/records")
    );
    assert_eq!(peers::rule_name("team-a/records").len(), 19);
}

#[test]
fn teardown_removes_only_this_endpoints_rule_and_leaves_what_a_peer_shares() {
    let o = shared_site();
    let created = vec![gw_subnet(), int_subnet(), {
        let a = endpoint("team-a/records", &[]);
        a.gateway.id
    }];
    let b = b_edits();
    let a = among(
        endpoint("team-a/records", &[]),
        0,
        &[("team-b/records", 10, &b)],
    );
    let t = plan::teardown(&a, &o, &created);
    let kinds: Vec<_> = t.steps.iter().map(|s| s.kind).collect();
    assert!(
        !kinds.contains(&StepKind::RemoveSiteVnetIntegration),
        "{kinds:?}"
    );
    assert!(
        !kinds.contains(&StepKind::RemoveCosmosVnetRule),
        "{kinds:?}"
    );
    let deleted: Vec<_> = t
        .steps
        .iter()
        .filter(|s| s.kind == StepKind::DeleteSubnet)
        .map(|s| s.resource_id.clone())
        .collect();
    assert_eq!(
        deleted,
        [gw_subnet()],
        "the shared integration subnet stays"
    );
    let rule = t
        .steps
        .iter()
        .find(|s| s.kind == StepKind::RemoveGatewayRule)
        .unwrap();
    let after = simulate::apply(&o, rule);
    assert_eq!(rule_subnets(&after), ["snet-fhir-agw-b", "snet-workloads"]);

    // A later endpoint that contests A's gateway subnet and is deleted removes nothing of A's.
    let c_edits = [("/spec/gateway/name", json!("agw-fhir-c"))];
    let c = among(
        endpoint("team-c/records", &c_edits),
        30,
        &[("team-a/records", 0, &[]), ("team-b/records", 10, &b)],
    );
    let t = plan::teardown(&c, &o, &[]);
    assert!(t.is_empty(), "{:?}", t.steps);

    // Alone, A removes the integration and its Cosmos DB rule too.
    let alone = endpoint("team-a/records", &[]);
    let kinds: Vec<_> = plan::teardown(&alone, &o, &created)
        .steps
        .iter()
        .map(|s| s.kind)
        .collect();
    assert!(kinds.contains(&StepKind::RemoveSiteVnetIntegration));
    assert!(kinds.contains(&StepKind::RemoveCosmosVnetRule));
}

// ---- the property: two endpoints converging on one estate -----------------------------------

/// The shared estate: one VNet and one Cosmos DB account, sites by ID; the rest (the gateway and
/// what belongs to it) as each endpoint last left it.
#[derive(Clone, Debug)]
struct World {
    base: Observed,
    sites: BTreeMap<String, (Option<Value>, Option<Value>)>,
    own: BTreeMap<String, Observed>,
}

impl World {
    fn view(&self, d: &Desired) -> Observed {
        let mut o = self.own.get(&d.owner).unwrap_or(&self.base).clone();
        let (site, cfg) = self.sites[&d.site_id.to_ascii_lowercase()].clone();
        o.site = site;
        o.site_config = cfg;
        o.vnet = self.base.vnet.clone();
        o.cosmos = self.base.cosmos.clone();
        o
    }

    fn store(&mut self, d: &Desired, o: Observed) {
        self.sites.insert(
            d.site_id.to_ascii_lowercase(),
            (o.site.clone(), o.site_config.clone()),
        );
        self.base.vnet = o.vnet.clone();
        self.base.cosmos = o.cosmos.clone();
        self.own.insert(d.owner.clone(), o);
    }
}

fn other_site_id() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.Web/sites/fhir-server-b")
}

fn pair(share_site: bool) -> (Desired, Desired) {
    let mut b = b_edits();
    if !share_site {
        b.push(("/spec/appService/id", json!(other_site_id())));
        b.push((
            "/spec/network/integrationSubnet",
            json!({"name": "snet-fhir-int-b", "addressPrefix": "10.20.4.0/27"}),
        ));
    }
    let a = among(
        endpoint("team-a/records", &[]),
        0,
        &[("team-b/records", 10, &b)],
    );
    let b = among(
        endpoint("team-b/records", &b),
        10,
        &[("team-a/records", 0, &[])],
    );
    (a, b)
}

fn world(share_site: bool) -> World {
    let open = wide_open();
    let mut sites = BTreeMap::new();
    sites.insert(
        site_id().to_ascii_lowercase(),
        (open.site.clone(), open.site_config.clone()),
    );
    if !share_site {
        let rename = |v: &Option<Value>| {
            v.as_ref().map(|v| {
                serde_json::from_str(&v.to_string().replace("fhir-server", "fhir-server-b"))
                    .unwrap()
            })
        };
        sites.insert(
            other_site_id().to_ascii_lowercase(),
            (rename(&open.site), rename(&open.site_config)),
        );
    }
    World {
        base: open,
        sites,
        own: BTreeMap::new(),
    }
}

/// Both endpoints take turns (in the order `order` gives, round by round) until neither plans
/// anything; the final world.
fn converge_both(share_site: bool, order: &[bool]) -> Result<(World, Desired, Desired), String> {
    let (a, b) = pair(share_site);
    let mut w = world(share_site);
    let mut since: BTreeMap<String, Option<Timestamp>> = BTreeMap::new();
    let mut now = t0();
    for round in 0..80 {
        let mut idle = true;
        let first_a = order
            .get(round % order.len().max(1))
            .copied()
            .unwrap_or(true);
        let turns = if first_a { [&a, &b] } else { [&b, &a] };
        for d in turns {
            let o = w.view(d);
            let clock = Clock::at(
                now,
                since.get(&d.owner).copied().flatten(),
                FIREWALL_PROPAGATION,
            );
            let p = plan::plan_at(d, &o, &clock);
            since.insert(d.owner.clone(), plan::admitted_since(d, &o, &clock));
            let mut o = o;
            for step in p.steps.iter().filter(|s| s.ready()) {
                o = simulate::apply(&o, step);
                idle = false;
            }
            w.store(d, o);
        }
        now += ROUND;
        let done = [&a, &b].iter().all(|d| {
            plan::plan_at(
                d,
                &w.view(d),
                &Clock::at(now, since[&d.owner], FIREWALL_PROPAGATION),
            )
            .is_empty()
        });
        if done {
            return Ok((w, a, b));
        }
        if idle && round > 10 {
            return Err(format!("stuck at round {round}"));
        }
    }
    let left: Vec<_> = [&a, &b]
        .iter()
        .map(|d| plan::plan(d, &w.view(d)).steps)
        .collect();
    Err(format!(
        "no end in 80 rounds: the endpoints undo each other: {left:#?}"
    ))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the interleaving: both endpoints converge, each one's plan is then empty (no
    /// flip-flop), and the sites and the account admit exactly the union of what the two declare.
    #[test]
    fn two_endpoints_on_shared_resources_converge_to_the_union(
        share_site in any::<bool>(),
        order in prop::collection::vec(any::<bool>(), 1..6),
    ) {
        let (w, a, b) = converge_both(share_site, &order).map_err(TestCaseError::fail)?;
        let union_site: Vec<Source> = [&a, &b]
            .iter()
            .map(|d| Source::Subnet(d.gateway_subnet.id.to_ascii_lowercase()))
            .collect();
        let union_cosmos: Vec<Source> = [&a, &b]
            .iter()
            .map(|d| Source::Subnet(d.integration_subnet.id.to_ascii_lowercase()))
            .collect();
        for d in [&a, &b] {
            let o = w.view(d);
            let exposure = posture::exposure(&o);
            for (target, source) in &exposure {
                let allowed = match target {
                    Target::Site | Target::Scm => union_site.contains(source),
                    Target::Cosmos => union_cosmos.contains(source),
                };
                prop_assert!(allowed, "{} admits {:?} to {:?}: {:?}", d.owner, source, target, exposure);
            }
            // Each endpoint's own path is open.
            let own = Source::Subnet(d.gateway_subnet.id.to_ascii_lowercase());
            prop_assert!(exposure.contains(&(Target::Site, own)), "{:?}", exposure);
            let own = Source::Subnet(d.integration_subnet.id.to_ascii_lowercase());
            prop_assert!(exposure.contains(&(Target::Cosmos, own)), "{:?}", exposure);
        }
        if share_site {
            let o = w.view(&a);
            let site = posture::exposure(&o);
            for s in &union_site {
                prop_assert!(site.contains(&(Target::Site, s.clone())), "both gateways reach the shared site: {:?}", site);
            }
        }
    }
}
