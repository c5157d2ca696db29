//! The WAF policy of a WAF_v2 gateway, in place of the inline WAF configuration (#12 item 6):
//! migration in one gateway write, the mode, drift, Standard_v2 and teardown.

mod common;

use common::*;
use fhirlock_core::plan::{self, StepKind, waf};
use fhirlock_core::{Desired, Observed, posture, preflight, simulate};
use serde_json::{Value, json};

fn codes(o: &Observed, d: &Desired) -> Vec<&'static str> {
    posture::findings(d, o)
        .iter()
        .map(|f| f.code.as_str())
        .collect()
}

fn kinds(d: &Desired, o: &Observed) -> Vec<(StepKind, bool)> {
    plan::plan(d, o)
        .steps
        .iter()
        .map(|s| (s.kind, s.ready()))
        .collect()
}

fn step(d: &Desired, o: &Observed, kind: StepKind) -> Option<fhirlock_core::Step> {
    plan::plan(d, o).steps.into_iter().find(|s| s.kind == kind)
}

/// The converged estate as the code before WAF policies left it: the gateway carries the inline
/// configuration (OWASP 3.2, Prevention) and no policy exists.
fn inline_waf(d: &Desired) -> Observed {
    let (mut o, _, _) = converge(d, &wide_open());
    let p = o.gateway.as_mut().unwrap()["properties"]
        .as_object_mut()
        .unwrap();
    p.remove("firewallPolicy");
    p.remove("forceFirewallPolicyAssociation");
    p.insert(
        "webApplicationFirewallConfiguration".into(),
        json!({"enabled": true, "firewallMode": "Prevention", "ruleSetType": "OWASP", "ruleSetVersion": "3.2"}),
    );
    o.waf_policy = None;
    o
}

fn standard(d: &Desired) -> Desired {
    let mut s = d.clone();
    s.gateway.tier = "Standard_v2";
    s.gateway.waf = None;
    s
}

#[test]
fn a_new_waf_v2_gateway_references_a_policy_fhirlock_creates_first() {
    let d = desired();
    let (end, history, _) = converge(&d, &wide_open());
    let order: Vec<StepKind> = history.iter().map(|(s, _, _)| s.kind).collect();
    let at = |k| order.iter().position(|x| *x == k).unwrap();
    assert!(at(StepKind::WafPolicy) < at(StepKind::Gateway), "{order:?}");
    let (policy, _, _) = &history[at(StepKind::WafPolicy)];
    assert_eq!(policy.resource_id, d.gateway.owned_waf_policy_id);
    assert!(policy.resource_id.ends_with(
        "/providers/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/agw-fhir-waf"
    ));
    assert_eq!(
        policy.body["properties"]["policySettings"],
        json!({"state": "Enabled", "mode": "Prevention", "requestBodyCheck": true})
    );
    assert_eq!(
        policy.body["properties"]["managedRules"]["managedRuleSets"],
        json!([{"ruleSetType": "Microsoft_DefaultRuleSet", "ruleSetVersion": "2.2"}])
    );
    assert_eq!(policy.body["tags"]["fhirlock-owner"], json!(d.owner));
    assert_eq!(policy.body["location"], "uksouth");
    let gw = &end.gateway.as_ref().unwrap()["properties"];
    assert_eq!(
        gw["firewallPolicy"]["id"],
        json!(d.gateway.owned_waf_policy_id)
    );
    assert!(gw.get("webApplicationFirewallConfiguration").is_none());
    assert!(plan::plan(&d, &end).is_empty());
}

#[test]
fn an_inline_waf_gateway_moves_to_the_policy_in_one_gateway_write() {
    let d = desired();
    let old = inline_waf(&d);
    assert!(codes(&old, &d).contains(&"WafPolicyNotAttached"));
    // The policy first; the gateway waits for it.
    assert_eq!(
        kinds(&d, &old),
        [(StepKind::WafPolicy, true), (StepKind::Gateway, false)]
    );
    let with_policy = simulate::apply(&old, &step(&d, &old, StepKind::WafPolicy).unwrap());
    let gw = step(&d, &with_policy, StepKind::Gateway).unwrap();
    assert!(gw.ready(), "{:?}", gw.waiting_for);
    // The one write swaps the inline block for the policy.
    let p = &gw.body["properties"];
    assert_eq!(
        p["firewallPolicy"]["id"],
        json!(d.gateway.owned_waf_policy_id)
    );
    assert_eq!(p["forceFirewallPolicyAssociation"], true);
    assert!(p.get("webApplicationFirewallConfiguration").is_none());
    let fields: Vec<&str> = gw.changes.iter().map(|c| c.path.as_str()).collect();
    assert!(
        fields.contains(&"properties.webApplicationFirewallConfiguration")
            && fields.contains(&"properties.firewallPolicy"),
        "{fields:?}"
    );
    let after = simulate::apply(&with_policy, &gw);
    assert!(plan::plan(&d, &after).is_empty());
    assert_eq!(codes(&after, &d), ["CosmosKeyAuthEnabled"]);
}

#[test]
fn the_spec_mode_is_the_policys_and_drift_from_it_is_put_right() {
    let mut d = desired();
    // Detection for a tuning period: no finding, the policy says so.
    d.gateway.waf.as_mut().unwrap().mode = "Detection";
    let (end, _, _) = converge(&d, &wide_open());
    assert_eq!(
        end.waf_policy.as_ref().unwrap()["properties"]["policySettings"]["mode"],
        "Detection"
    );
    assert!(!codes(&end, &d).contains(&"WafDetectionMode"));
    // Back to Prevention: one PUT of the policy, nothing else.
    let d = desired();
    assert_eq!(kinds(&d, &end), [(StepKind::WafPolicy, true)]);
    assert!(codes(&end, &d).contains(&"WafDetectionMode"));

    // Someone disables the policy in the portal and adds a tuning exclusion: the state goes
    // back, the exclusion stays.
    let (mut o, _, _) = converge(&d, &wide_open());
    let p = &mut o.waf_policy.as_mut().unwrap()["properties"];
    p["policySettings"]["state"] = json!("Disabled");
    p["managedRules"]["exclusions"] = json!([{"matchVariable": "RequestArgNames",
        "selectorMatchOperator": "Equals", "selector": "_filter"}]);
    assert!(codes(&o, &d).contains(&"WafPolicyDisabled"));
    let s = step(&d, &o, StepKind::WafPolicy).unwrap();
    assert!(!s.creates);
    assert_eq!(
        s.changes
            .iter()
            .map(|c| c.path.as_str())
            .collect::<Vec<_>>(),
        ["properties.policySettings.state"]
    );
    assert_eq!(
        s.body["properties"]["managedRules"]["exclusions"][0]["selector"],
        "_filter"
    );
    let drift = plan::plan(&d, &o).drift(&[fhirlock_core::component::Component::Gateway]);
    assert_eq!(drift.len(), 1, "{drift:?}");
}

#[test]
fn a_gateway_switched_to_another_policy_is_switched_back() {
    let d = desired();
    let (mut o, _, _) = converge(&d, &wide_open());
    let other = format!(
        "/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/lenient"
    );
    o.gateway.as_mut().unwrap()["properties"]["firewallPolicy"] = json!({"id": other});
    assert!(codes(&o, &d).contains(&"WafPolicyNotAttached"));
    let gw = step(&d, &o, StepKind::Gateway).unwrap();
    assert!(gw.ready());
    assert_eq!(
        gw.body["properties"]["firewallPolicy"]["id"],
        json!(d.gateway.owned_waf_policy_id)
    );
}

#[test]
fn standard_v2_leaves_no_waf_and_deletes_fhirlocks_policy_after_the_gateway_lets_go() {
    let d = desired();
    let (o, _, _) = converge(&d, &wide_open());
    let s = standard(&d);
    assert_eq!(
        kinds(&s, &o),
        [
            (StepKind::Gateway, true),
            (StepKind::DeleteWafPolicy, false)
        ]
    );
    let gw = step(&s, &o, StepKind::Gateway).unwrap();
    let p = &gw.body["properties"];
    assert_eq!(p["sku"]["tier"], "Standard_v2");
    for k in [
        "firewallPolicy",
        "forceFirewallPolicyAssociation",
        "webApplicationFirewallConfiguration",
    ] {
        assert!(p.get(k).is_none(), "{k}");
    }
    let after = simulate::apply(&o, &gw);
    let del = step(&s, &after, StepKind::DeleteWafPolicy).unwrap();
    assert!(del.ready(), "{:?}", del.waiting_for);
    assert_eq!(del.resource_id, d.gateway.owned_waf_policy_id);
    let end = simulate::apply(&after, &del);
    assert!(plan::plan(&s, &end).is_empty());
    // An old inline block goes too.
    let old = inline_waf(&d);
    let gw = step(&s, &old, StepKind::Gateway).unwrap();
    assert!(
        gw.body["properties"]
            .get("webApplicationFirewallConfiguration")
            .is_none()
    );
    // A policy of that name someone else tagged is never deleted.
    let mut foreign = after.clone();
    foreign.waf_policy.as_mut().unwrap()["tags"]["fhirlock-owner"] = json!("other/endpoint");
    assert!(step(&s, &foreign, StepKind::DeleteWafPolicy).is_none());
}

#[test]
fn a_policy_the_spec_names_is_attached_never_written_and_must_exist() {
    let mut d = desired();
    let theirs = format!(
        "/subscriptions/{SUB}/resourceGroups/sec/providers/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/trust-waf"
    );
    let w = d.gateway.waf.as_mut().unwrap();
    w.policy_id = theirs.clone();
    w.owned = false;
    let missing = wide_open();
    let pre: Vec<_> = preflight::check(&d, &missing)
        .iter()
        .map(|f| f.code)
        .collect();
    assert!(pre.contains(&"WafPolicyNotFound"), "{pre:?}");
    let mut o = wide_open();
    o.waf_policy = Some(
        json!({"id": theirs, "properties": {"provisioningState": "Succeeded",
        "policySettings": {"state": "Enabled", "mode": "Detection"}}}),
    );
    assert!(preflight::check(&d, &o).is_empty());
    let (end, history, _) = converge(&d, &o);
    assert!(
        history
            .iter()
            .all(|(s, _, _)| s.kind != StepKind::WafPolicy)
    );
    assert_eq!(waf::attached(&end), Some(theirs));
    // Its mode is its owner's choice.
    assert!(!codes(&end, &d).contains(&"WafDetectionMode"));
}

#[test]
fn a_policy_of_fhirlocks_name_that_another_owns_stops_in_preflight() {
    let d = desired();
    let mut o = wide_open();
    o.waf_policy = Some(
        json!({"id": d.gateway.owned_waf_policy_id, "tags": {"fhirlock-owner": "other/endpoint"},
        "properties": {"policySettings": {"state": "Enabled", "mode": "Prevention"}}}),
    );
    let pre: Vec<_> = preflight::check(&d, &o).iter().map(|f| f.code).collect();
    assert_eq!(pre, ["WafPolicyNotOwned"]);
}

#[test]
fn teardown_deletes_fhirlocks_policy_after_the_gateway_and_only_if_it_created_it() {
    let d = desired();
    let (o, _, _) = converge(&d, &wide_open());
    let policy = d.gateway.owned_waf_policy_id.clone();
    let all = [
        gw_subnet(),
        int_subnet(),
        d.gateway.id.clone(),
        policy.clone(),
    ];
    let t = plan::teardown(&d, &o, &all);
    let del: Vec<(StepKind, bool)> = t
        .steps
        .iter()
        .filter(|s| matches!(s.kind, StepKind::DeleteGateway | StepKind::DeleteWafPolicy))
        .map(|s| (s.kind, s.ready()))
        .collect();
    assert_eq!(
        del,
        [
            (StepKind::DeleteGateway, true),
            (StepKind::DeleteWafPolicy, false)
        ]
    );
    let mut gone = o.clone();
    gone.gateway = None;
    let t = plan::teardown(&d, &gone, &all);
    assert!(
        t.steps
            .iter()
            .any(|s| s.kind == StepKind::DeleteWafPolicy && s.ready())
    );
    // Not recorded as created: left alone.
    let t = plan::teardown(&d, &gone, &all[..3]);
    assert!(t.steps.iter().all(|s| s.kind != StepKind::DeleteWafPolicy));
}

#[test]
fn the_gateway_body_never_sends_what_the_policy_model_marks_read_only() {
    let d = desired();
    let mut o = inline_waf(&d);
    o.waf_policy = Some(
        json!({"id": d.gateway.owned_waf_policy_id, "name": "agw-fhir-waf",
        "type": "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies",
        "etag": "W/\"1\"", "tags": {"fhirlock-owner": d.owner}, "location": "uksouth",
        "properties": {"provisioningState": "Succeeded", "resourceState": "Enabled",
            "applicationGateways": [{"id": d.gateway.id}],
            "policySettings": {"state": "Enabled", "mode": "Detection"},
            "managedRules": {"managedRuleSets": [{"ruleSetType": "Microsoft_DefaultRuleSet",
                "ruleSetVersion": "2.1", "computedDisabledRules": []}]}}}),
    );
    let s = step(&d, &o, StepKind::WafPolicy).unwrap();
    let p = &s.body["properties"];
    for k in ["provisioningState", "resourceState", "applicationGateways"] {
        assert!(p.get(k).is_none(), "{k}");
    }
    assert!(s.body.get("etag").is_none() && s.body.get("name").is_none());
    assert_eq!(
        p["managedRules"]["managedRuleSets"][0],
        json!({"ruleSetType": "Microsoft_DefaultRuleSet", "ruleSetVersion": "2.1"})
    );
    assert_eq!(s.body["id"], Value::String(d.gateway.owned_waf_policy_id));
}

#[test]
fn a_policy_id_in_place_of_fhirlocks_own_deletes_it_once_the_gateway_lets_go() {
    let d = desired();
    let (converged, _, _) = converge(&d, &wide_open());
    let theirs = format!(
        "/subscriptions/{SUB}/resourceGroups/sec/providers/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/trust-waf"
    );
    let mut u = d.clone();
    let w = u.gateway.waf.as_mut().unwrap();
    w.policy_id = theirs.clone();
    w.owned = false;
    // Not recorded as created: fhirlock's policy is not even read, and never deleted.
    assert_eq!(u.former_waf_policy_id(), None);
    u.gateway.owned_waf_policy_recorded = true;
    let owned = d.gateway.owned_waf_policy_id.clone();
    assert_eq!(u.former_waf_policy_id(), Some(owned.as_str()));
    assert_eq!(
        fhirlock_core::observed::slot(&u, &owned),
        Some(fhirlock_core::observed::Slot::FormerWafPolicy)
    );
    // A look reads the spec's policy at the gateway's reference and fhirlock's beside it.
    let mut o = converged.clone();
    o.former_waf_policy = converged.waf_policy.clone();
    o.waf_policy = Some(
        json!({"id": theirs, "properties": {"provisioningState": "Succeeded",
        "policySettings": {"state": "Enabled", "mode": "Prevention"}}}),
    );
    assert_eq!(
        kinds(&u, &o),
        [
            (StepKind::Gateway, true),
            (StepKind::DeleteWafPolicy, false)
        ]
    );
    let gw = step(&u, &o, StepKind::Gateway).unwrap();
    assert_eq!(gw.body["properties"]["firewallPolicy"]["id"], json!(theirs));
    let after = simulate::apply(&o, &gw);
    let del = step(&u, &after, StepKind::DeleteWafPolicy).unwrap();
    assert!(del.ready(), "{:?}", del.waiting_for);
    assert_eq!(del.resource_id, owned);
    assert!(
        waf::gone(&u, &after).is_empty(),
        "still there: still recorded"
    );
    let end = simulate::apply(&after, &del);
    assert!(end.former_waf_policy.is_none() && end.waf_policy.is_some());
    assert!(plan::plan(&u, &end).is_empty());
    // Deleted: status forgets it, so the next look does not read it.
    assert_eq!(waf::gone(&u, &end), std::slice::from_ref(&owned));
    // Teardown deletes it too while it is still there.
    let all = [owned.clone()];
    let t = plan::teardown(&u, &after, &all);
    assert!(t.steps.iter().any(|s| s.kind == StepKind::DeleteWafPolicy));
    // A spec that names fhirlock's own policy by its ID keeps it: never deleted from under the
    // gateway, never forgotten.
    let mut same = u.clone();
    same.gateway.waf.as_mut().unwrap().policy_id = owned.clone();
    assert!(same.former_waf_policy_id().is_none());
    assert!(step(&same, &converged, StepKind::DeleteWafPolicy).is_none());
    assert!(waf::gone(&same, &Observed::default()).is_empty());
}

#[test]
fn fhirlocks_policy_keeps_the_rule_set_it_has_and_a_converged_one_is_never_rewritten() {
    let d = desired();
    let (mut o, _, _) = converge(&d, &wide_open());
    // A policy created with DRS 2.1 (fhirlock before 2.2), or moved to another set by a person.
    for sets in [
        json!([{"ruleSetType": "Microsoft_DefaultRuleSet", "ruleSetVersion": "2.1"}]),
        json!([{"ruleSetType": "OWASP", "ruleSetVersion": "3.2"},
               {"ruleSetType": "Microsoft_BotManagerRuleSet", "ruleSetVersion": "1.1"}]),
    ] {
        o.waf_policy.as_mut().unwrap()["properties"]["managedRules"]["managedRuleSets"] =
            sets.clone();
        assert!(plan::plan(&d, &o).is_empty(), "no write for the rule set");
        // A write for another reason sends the rule sets as they are.
        let mut drifted = o.clone();
        drifted.waf_policy.as_mut().unwrap()["properties"]["policySettings"]["mode"] =
            json!("Detection");
        let s = step(&d, &drifted, StepKind::WafPolicy).unwrap();
        let fields: Vec<&str> = s.changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(fields, ["properties.policySettings.mode"]);
        assert_eq!(
            s.body["properties"]["managedRules"]["managedRuleSets"],
            sets
        );
    }
}
