//! Issue #12, items 2 and 7: fhirlock never opens a public endpoint someone closed, stops on a site
//! with a private endpoint, and moves the site into the integration subnet only once Cosmos DB's
//! data plane admits that subnet (a firewall change takes up to 15 minutes to arrive).

mod common;

use std::time::Duration;

use common::*;
use fhirlock_core::plan::{self, Admission, Clock, FIREWALL_PROPAGATION, StepKind};
use fhirlock_core::posture::{self, Source, Target};
use fhirlock_core::status::Assessment;
use fhirlock_core::{Observed, preflight};
use serde_json::{Value, json};

fn codes(o: &Observed) -> Vec<&'static str> {
    preflight::check(&desired(), o)
        .into_iter()
        .map(|f| f.code)
        .collect()
}

fn connection(status: &str) -> Value {
    json!({"id": format!("{}/privateEndpointConnections/pe-1", site_id()),
        "properties": {"privateEndpoint": {"id": "/subscriptions/x/privateEndpoints/pe-1"},
        "privateLinkServiceConnectionState": {"status": status}}})
}

fn cosmos_props(o: &mut Observed) -> &mut Value {
    &mut o.cosmos.as_mut().unwrap()["properties"]
}

#[test]
fn a_cosmos_account_closed_to_public_traffic_stalls_and_nothing_is_written() {
    for (value, code) in [
        ("Disabled", "CosmosPublicAccessDisabled"),
        ("SecuredByPerimeter", "CosmosSecuredByPerimeter"),
    ] {
        let mut o = wide_open();
        cosmos_props(&mut o)["publicNetworkAccess"] = json!(value);
        let found = preflight::check(&desired(), &o);
        assert_eq!(found.iter().map(|f| f.code).collect::<Vec<_>>(), [code]);
        let message = &found[0].message;
        assert!(
            message.contains(value)
                && message.contains("private-endpoint mode")
                && message.contains("set publicNetworkAccess to Enabled yourself"),
            "{message}"
        );
        assert!(Assessment::of(&desired(), &o).plan.is_empty());
    }
    // Enabled, any case, and unset (how accounts without the property read) pass.
    for value in [json!("Enabled"), json!("enabled"), Value::Null] {
        let mut o = wide_open();
        cosmos_props(&mut o)["publicNetworkAccess"] = value;
        assert_eq!(codes(&o), Vec::<&str>::new());
    }
}

#[test]
fn a_site_closed_to_public_traffic_or_with_a_private_endpoint_stalls() {
    let mut closed = wide_open();
    closed.site.as_mut().unwrap()["properties"]["publicNetworkAccess"] = json!("Disabled");
    assert_eq!(codes(&closed), ["SitePublicAccessDisabled"]);

    // The documented list (WebApps_GetPrivateEndpointConnectionList) and the site body both count.
    let mut listed = wide_open();
    listed.site_private_endpoints = Some(vec![connection("Approved")]);
    assert_eq!(codes(&listed), ["SiteHasPrivateEndpoint"]);
    let mut in_body = wide_open();
    in_body.site.as_mut().unwrap()["properties"]["privateEndpointConnections"] =
        json!([connection("Pending")]);
    assert_eq!(codes(&in_body), ["SiteHasPrivateEndpoint"]);
    let message = &preflight::check(&desired(), &listed)[0].message;
    assert!(
        message.contains("pe-1")
            && message.contains("not support service-endpoint access restrictions"),
        "{message}"
    );
    assert!(Assessment::of(&desired(), &listed).plan.is_empty());

    // A rejected connection carries no traffic.
    let mut rejected = wide_open();
    rejected.site_private_endpoints = Some(vec![connection("Rejected")]);
    assert_eq!(codes(&rejected), Vec::<&str>::new());
}

#[test]
fn no_step_ever_writes_public_network_access() {
    let d = desired();
    let mut o = wide_open();
    cosmos_props(&mut o)
        .as_object_mut()
        .unwrap()
        .remove("publicNetworkAccess");
    let (end, history, _) = converge(&d, &o);
    for (s, _, _) in &history {
        assert!(
            !s.body.to_string().contains("publicNetworkAccess"),
            "{:?}: {}",
            s.kind,
            s.body
        );
    }
    assert!(end.cosmos.unwrap()["properties"]["publicNetworkAccess"].is_null());
}

#[test]
fn private_endpoints_are_ways_in_that_no_rule_filters() {
    let mut o = wide_open();
    o.site.as_mut().unwrap()["properties"]
        .as_object_mut()
        .unwrap()
        .remove("publicNetworkAccess");
    o.site_private_endpoints = Some(vec![connection("Approved")]);
    let pe = Source::PrivateEndpoint(format!(
        "{}/privateendpointconnections/pe-1",
        site_id().to_ascii_lowercase()
    ));
    let e = posture::exposure(&o);
    // Unset with a private endpoint means the public endpoint is off: the Allow rules count for nothing.
    assert!(e.contains(&(Target::Site, pe.clone())) && e.contains(&(Target::Scm, pe)));
    assert!(!e.contains(&(Target::Site, Source::Internet)), "{e:?}");

    // Cosmos DB with a private endpoint and no rule admits only the private endpoint.
    let mut c = wide_open();
    cosmos_props(&mut c)["ipRules"] = json!([]);
    cosmos_props(&mut c)["networkAclBypass"] = json!("None");
    cosmos_props(&mut c)["privateEndpointConnections"] = json!([connection("Approved")]);
    let e = posture::exposure(&c);
    assert!(!e.contains(&(Target::Cosmos, Source::Internet)), "{e:?}");
    assert!(
        e.iter()
            .any(|(t, s)| *t == Target::Cosmos && matches!(s, Source::PrivateEndpoint(_)))
    );
}

/// The wide-open estate after its subnets exist, so the Cosmos rule is ready.
fn with_subnets() -> Observed {
    let d = desired();
    let mut o = wide_open();
    for s in plan::plan(&d, &o).steps {
        if matches!(
            s.kind,
            StepKind::IntegrationSubnet | StepKind::GatewaySubnet
        ) {
            o = fhirlock_core::simulate::apply(&o, &s);
        }
    }
    o
}

fn step(p: &plan::Plan, kind: StepKind) -> Option<&fhirlock_core::Step> {
    p.steps.iter().find(|s| s.kind == kind)
}

#[test]
fn with_ip_rules_and_the_filter_off_the_rule_turns_the_filter_on_and_keeps_no_other_subnet() {
    let d = desired();
    let mut o = with_subnets();
    cosmos_props(&mut o)["virtualNetworkRules"] =
        json!([{"id": format!("{}/subnets/snet-workloads", vnet_id())}]);
    let p = plan::plan(&d, &o);
    let rule = step(&p, StepKind::CosmosVnetRule).unwrap();
    assert!(rule.ready());
    assert_eq!(
        rule.body,
        json!({"properties": {"isVirtualNetworkFilterEnabled": true,
            "virtualNetworkRules": [{"id": int_subnet(), "ignoreMissingVNetServiceEndpoint": false}]}})
    );
    // Until then, IP rules alone would refuse the subnet's service-endpoint traffic.
    let join = step(&p, StepKind::SiteVnetIntegration).unwrap();
    assert!(
        join.waiting_for
            .as_deref()
            .unwrap()
            .contains("VNet filter to be on with a rule for snet-fhir-int"),
        "{join:?}"
    );
    // The step changes nothing for anyone but the integration subnet.
    let after = fhirlock_core::simulate::apply(&o, rule);
    let before = posture::exposure(&o);
    let opened: Vec<_> = posture::exposure(&after)
        .difference(&before)
        .cloned()
        .collect();
    assert_eq!(
        opened,
        [(
            Target::Cosmos,
            Source::Subnet(int_subnet().to_ascii_lowercase())
        )]
    );
    assert_eq!(plan::admission(&d, &after), Admission::ByRule);
}

#[test]
fn the_site_joins_the_subnet_only_once_the_rule_has_had_time_to_propagate() {
    let d = desired();
    let mut o = with_subnets();
    let rule = step(&plan::plan(&d, &o), StepKind::CosmosVnetRule)
        .unwrap()
        .clone();
    o = fhirlock_core::simulate::apply(&o, &rule);
    let t = t0();
    let waits = |clock: &Clock| {
        step(&plan::plan_at(&d, &o, clock), StepKind::SiteVnetIntegration)
            .unwrap()
            .waiting_for
            .clone()
    };
    // First seen now: the clock starts, and the site waits.
    let first = Clock::at(t, None, FIREWALL_PROPAGATION);
    assert_eq!(plan::admitted_since(&d, &o, &first), Some(t));
    let why = waits(&first).unwrap();
    assert!(
        why.contains("Cosmos DB's firewall to apply the rule for snet-fhir-int"),
        "{why}"
    );
    // Not a second before the propagation time.
    let since = Some(t);
    let almost = Clock::at(
        t + (FIREWALL_PROPAGATION - Duration::from_secs(1)),
        since,
        FIREWALL_PROPAGATION,
    );
    assert!(waits(&almost).is_some());
    // The controller looks again when the wait ends, not every 5 s.
    assert_eq!(
        plan::wait_ends(&d, &o, &almost),
        Some(t + FIREWALL_PROPAGATION)
    );
    let over = Clock::at(t + FIREWALL_PROPAGATION, since, FIREWALL_PROPAGATION);
    assert_eq!(waits(&over), None);
    assert_eq!(plan::wait_ends(&d, &o, &over), None);
    // The clock is kept while the rule stays, and forgotten when it goes.
    assert_eq!(plan::admitted_since(&d, &o, &over), since);
    let mut gone = o.clone();
    cosmos_props(&mut gone)["virtualNetworkRules"] = json!([]);
    assert_eq!(plan::admitted_since(&d, &gone, &over), None);
    // The time unknown (`fhirlock plan`), the wait is never over.
    assert!(waits(&Clock::default()).is_some());
    // A configured (emulator) propagation time is honoured.
    let short = Clock::at(t + Duration::from_secs(10), since, Duration::from_secs(10));
    assert_eq!(waits(&short), None);
}

#[test]
fn the_clock_starts_only_on_a_settled_account() {
    let d = desired();
    let mut o = with_subnets();
    let rule = step(&plan::plan(&d, &o), StepKind::CosmosVnetRule)
        .unwrap()
        .clone();
    o = fhirlock_core::simulate::apply(&o, &rule);
    cosmos_props(&mut o)["provisioningState"] = json!("Updating");
    let now = Clock::at(t0(), None, FIREWALL_PROPAGATION);
    assert_eq!(plan::admitted_since(&d, &o, &now), None);
    // Once started it survives a later update (someone else's), which does not touch the rule.
    let kept = Clock::at(t0(), Some(t0()), FIREWALL_PROPAGATION);
    assert_eq!(plan::admitted_since(&d, &o, &kept), Some(t0()));
}

#[test]
fn with_no_cosmos_firewall_at_all_the_site_joins_at_once() {
    let d = desired();
    let mut o = with_subnets();
    cosmos_props(&mut o)["ipRules"] = json!([]);
    assert_eq!(plan::admission(&d, &o), Admission::Open);
    let p = plan::plan(&d, &o);
    assert!(step(&p, StepKind::SiteVnetIntegration).unwrap().ready());
    // The rule goes in without the filter: turning it on now would cut the app off.
    let rule = step(&p, StepKind::CosmosVnetRule).unwrap();
    assert!(
        rule.body["properties"]
            .get("isVirtualNetworkFilterEnabled")
            .is_none()
    );
}
