//! Which `If-Match` / `If-None-Match` the planner puts on each step, and that no body echoes a
//! field Microsoft's specification marks read-only (issue #12, items 4 and 5).

mod common;

use common::*;
use fhirlock_core::plan::{self, Precondition, StepKind};
use fhirlock_core::read_only::{self, Kind};
use fhirlock_core::{Observed, Step};
use serde_json::{Value, json};

const VNET_ETAG: &str = "W/\"00000007-0000-4000-8000-000000000007\"";
const GATEWAY_ETAG: &str = "W/\"0000000a-0000-4000-8000-00000000000a\"";
const POLICY_ETAG: &str = "W/\"0000000b-0000-4000-8000-00000000000b\"";

/// Every subnet carries its VNet's etag, as ARM returns them.
fn with_vnet_etag(o: &mut Observed, etag: &str) {
    let v = o.vnet.as_mut().unwrap();
    v["etag"] = json!(etag);
    for s in v["properties"]["subnets"].as_array_mut().unwrap() {
        s["etag"] = json!(etag);
    }
}

/// A subnet as ARM reads it back: etag, provisioning states, a delegation's actions, and a
/// back-reference, none of them writable.
fn read_back_subnet(name: &str, prefix: &str) -> Value {
    json!({
        "id": format!("{}/subnets/{name}", vnet_id()), "name": name, "etag": VNET_ETAG,
        "type": "Microsoft.Network/virtualNetworks/subnets",
        "properties": {
            "addressPrefix": prefix, "provisioningState": "Succeeded",
            "privateEndpointNetworkPolicies": "Disabled",
            "serviceEndpoints": [{"service": "Microsoft.Storage", "locations": ["uksouth"], "provisioningState": "Succeeded"}],
            "delegations": [], "ipConfigurations": [{"id": "/subscriptions/x/nic/ipconfigurations/a"}],
            "serviceAssociationLinks": []
        }
    })
}

/// The wide-open estate with both subnets already there (to adopt), lacking what fhirlock adds.
fn adopting() -> Observed {
    let mut o = wide_open();
    let subnets = o.vnet.as_mut().unwrap()["properties"]["subnets"]
        .as_array_mut()
        .unwrap();
    subnets.push(read_back_subnet("snet-fhir-agw", "10.20.1.0/26"));
    subnets.push(read_back_subnet("snet-fhir-int", "10.20.2.0/27"));
    with_vnet_etag(&mut o, VNET_ETAG);
    o
}

/// The converged estate, its gateway as ARM reads it back (etag, read-only state), with the
/// gateway's probe path changed behind fhirlock's back.
fn drifted_gateway() -> Observed {
    let d = desired();
    let (mut o, _, _) = converge(&d, &wide_open());
    with_vnet_etag(&mut o, VNET_ETAG);
    let g = o.gateway.as_mut().unwrap();
    g["etag"] = json!(GATEWAY_ETAG);
    g["name"] = json!("agw-fhir");
    g["type"] = json!("Microsoft.Network/applicationGateways");
    g["properties"]["operationalState"] = json!("Running");
    g["properties"]["resourceGuid"] = json!("5f0d7c2e-0000-4000-8000-000000000001");
    g["properties"]["probes"][0]["properties"]["path"] = json!("/changed");
    g["properties"]["x-unknown-gateway"] = json!(7);
    for child in ["frontendIPConfigurations", "probes", "sslCertificates"] {
        for c in g["properties"][child].as_array_mut().unwrap() {
            c["etag"] = json!(GATEWAY_ETAG);
            c["properties"]["provisioningState"] = json!("Succeeded");
        }
    }
    g["properties"]["sslCertificates"][0]["properties"]["publicCertData"] = json!("MIIB");
    // Its WAF policy as ARM reads it back, switched to Detection in the portal.
    let p = o.waf_policy.as_mut().unwrap();
    p["etag"] = json!(POLICY_ETAG);
    p["name"] = json!("agw-fhir-waf");
    p["type"] = json!("Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies");
    p["properties"]["policySettings"]["mode"] = json!("Detection");
    p["properties"]["resourceState"] = json!("Enabled");
    p["properties"]["applicationGateways"] = json!([{"id": d.gateway.id}]);
    p["properties"]["managedRules"]["managedRuleSets"][0]["computedDisabledRules"] = json!([]);
    p["properties"]["x-unknown-policy"] = json!(8);
    o
}

type Seen = Vec<(StepKind, Option<Precondition>)>;

fn preconditions(steps: &[Step]) -> Seen {
    steps
        .iter()
        .map(|s| (s.kind, s.precondition.clone()))
        .collect()
}

fn if_match(etag: &str) -> Option<Precondition> {
    Some(Precondition::IfMatch(etag.into()))
}

#[test]
fn each_step_kind_carries_the_precondition_of_its_resource() {
    let d = desired();
    // Created resources: If-None-Match: *, so two creations cannot both succeed.
    let seen = preconditions(&plan::plan(&d, &wide_open()).steps);
    // Adopted subnets: If-Match with the etag they were read with (their VNet's).
    let adopted = preconditions(&plan::plan(&d, &adopting()).steps);
    // A gateway that changed: If-Match with its own etag.
    let drifted = preconditions(&plan::plan(&d, &drifted_gateway()).steps);
    // The teardown: deletes of what was read, as read.
    let o = drifted_gateway();
    let created = [
        gw_subnet(),
        int_subnet(),
        d.gateway.id.clone(),
        d.gateway.owned_waf_policy_id.clone(),
    ];
    let teardown = preconditions(&plan::teardown(&d, &o, &created).steps);

    let table: [(StepKind, &Seen, Option<Precondition>); 20] = [
        (StepKind::SiteHttpsOnly, &seen, None),
        (StepKind::SiteTlsAndFtp, &seen, None),
        (
            StepKind::IntegrationSubnet,
            &seen,
            Some(Precondition::IfNoneMatch),
        ),
        (
            StepKind::GatewaySubnet,
            &seen,
            Some(Precondition::IfNoneMatch),
        ),
        (StepKind::CosmosVnetRule, &seen, None),
        (StepKind::SiteVnetIntegration, &seen, None),
        (StepKind::WafPolicy, &seen, Some(Precondition::IfNoneMatch)),
        (StepKind::Gateway, &seen, Some(Precondition::IfNoneMatch)),
        (StepKind::SiteAccessRestrictions, &seen, None),
        (StepKind::CosmosLockdown, &seen, None),
        (StepKind::IntegrationSubnet, &adopted, if_match(VNET_ETAG)),
        (StepKind::GatewaySubnet, &adopted, if_match(VNET_ETAG)),
        (StepKind::Gateway, &drifted, if_match(GATEWAY_ETAG)),
        (StepKind::WafPolicy, &drifted, if_match(POLICY_ETAG)),
        (StepKind::RemoveGatewayRule, &teardown, None),
        (StepKind::RemoveCosmosVnetRule, &teardown, None),
        (StepKind::RemoveSiteVnetIntegration, &teardown, None),
        (StepKind::DeleteGateway, &teardown, if_match(GATEWAY_ETAG)),
        (StepKind::DeleteWafPolicy, &teardown, if_match(POLICY_ETAG)),
        (StepKind::DeleteSubnet, &teardown, if_match(VNET_ETAG)),
    ];
    for (kind, steps, want) in table {
        let got = steps.iter().find(|(k, _)| *k == kind).map(|(_, p)| p);
        assert_eq!(got, Some(&want), "{kind}");
    }
}

#[test]
fn a_resource_read_without_an_etag_gets_no_if_match() {
    let d = desired();
    let mut o = drifted_gateway();
    o.gateway
        .as_mut()
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove("etag");
    let steps = plan::plan(&d, &o).steps;
    let gw = steps.iter().find(|s| s.kind == StepKind::Gateway).unwrap();
    assert_eq!(gw.precondition, None);
}

#[test]
fn a_re_read_after_a_412_re_plans_on_the_colleagues_change_with_its_etag() {
    let d = desired();
    let first = adopting();
    let before = plan::plan(&d, &first).steps;
    let gw_subnet_step = |steps: &[Step]| {
        steps
            .iter()
            .find(|s| s.kind == StepKind::GatewaySubnet)
            .cloned()
            .unwrap()
    };
    assert_eq!(gw_subnet_step(&before).precondition, if_match(VNET_ETAG));
    // A colleague turns private-endpoint network policies on in the portal: the VNet's etag
    // moves. fhirlock's write with the old etag is refused (412); the next pass reads again.
    let mut second = first.clone();
    let subnets = second.vnet.as_mut().unwrap()["properties"]["subnets"]
        .as_array_mut()
        .unwrap();
    let agw = subnets
        .iter_mut()
        .find(|s| s["name"] == "snet-fhir-agw")
        .unwrap();
    agw["properties"]["privateEndpointNetworkPolicies"] = json!("Enabled");
    let moved = "W/\"00000008-0000-4000-8000-000000000008\"";
    with_vnet_etag(&mut second, moved);
    let after = gw_subnet_step(&plan::plan(&d, &second).steps);
    assert_eq!(after.precondition, if_match(moved));
    assert_eq!(
        after.body["properties"]["privateEndpointNetworkPolicies"], "Enabled",
        "the colleague's change is built on, not overwritten"
    );
}

/// Whether `v` has a value at `path` (the read-only table's syntax).
fn has(v: &Value, parts: &[&str]) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return true;
    };
    match (*first, v) {
        ("[]", Value::Array(items)) => items.iter().any(|x| has(x, rest)),
        ("{}", Value::Object(m)) => m.values().any(|x| has(x, rest)),
        (k, Value::Object(m)) => m.get(k).is_some_and(|x| has(x, rest)),
        _ => false,
    }
}

#[test]
fn no_write_body_echoes_a_read_only_field() {
    let d = desired();
    let mut bodies = 0;
    for o in [adopting(), drifted_gateway()] {
        for s in plan::plan(&d, &o).steps {
            let kind = match s.kind {
                StepKind::Gateway => Kind::ApplicationGateway,
                StepKind::IntegrationSubnet | StepKind::GatewaySubnet => Kind::Subnet,
                StepKind::WafPolicy => Kind::WafPolicy,
                _ => continue,
            };
            bodies += 1;
            for path in read_only::paths(kind) {
                let parts: Vec<&str> = path.split('.').collect();
                assert!(!has(&s.body, &parts), "{} sends {path}", s.kind);
            }
            // What fhirlock has no model for, and writable fields it does not manage, stay.
            match kind {
                Kind::Subnet => {
                    assert_eq!(
                        s.body["properties"]["privateEndpointNetworkPolicies"],
                        "Disabled"
                    );
                    assert_eq!(
                        s.body["properties"]["serviceEndpoints"][0]["locations"],
                        json!(["uksouth"])
                    );
                }
                Kind::ApplicationGateway if !s.creates => {
                    assert_eq!(s.body["properties"]["x-unknown-gateway"], 7);
                    assert_eq!(s.body["id"], json!(d.gateway.id), "id is writable");
                }
                Kind::ApplicationGateway => {}
                Kind::WafPolicy if !s.creates => {
                    assert_eq!(s.body["properties"]["x-unknown-policy"], 8);
                    assert_eq!(s.body["properties"]["policySettings"]["mode"], "Prevention");
                }
                Kind::WafPolicy => {}
            }
        }
    }
    assert_eq!(
        bodies, 6,
        "two adopted subnets, the gateway and its WAF policy to create beside them, the drifted gateway and its drifted policy"
    );
}
