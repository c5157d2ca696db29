//! Answers ARM should never give, but a proxy, a bug or a hostile tenant might: the core must
//! decide something sensible (a plan, a pre-flight failure) and never panic.

mod common;

use common::*;
use fhirlock_core::plan::StepKind;
use fhirlock_core::status::Assessment;
use serde_json::json;

#[test]
fn cosmos_vnet_rules_that_are_not_objects_are_replaced_not_a_panic() {
    let d = desired();
    for junk in [json!("a string"), json!(5), json!(null), json!([1, 2])] {
        let mut o = wide_open();
        o.cosmos.as_mut().unwrap()["properties"]["virtualNetworkRules"] = json!([junk.clone()]);
        let a = Assessment::of(&d, &o);
        let lockdown = a
            .plan
            .steps
            .iter()
            .find(|s| s.kind == StepKind::CosmosLockdown || s.kind == StepKind::CosmosVnetRule);
        assert!(
            lockdown.is_some() || !a.preflight.is_empty(),
            "{junk}: neither a step that rewrites the rules nor a pre-flight failure"
        );
    }
}
