//! WAF policies (`Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies`, REST spec
//! 2025-01-01 `webapplicationfirewall.json`) and a gateway's `firewallPolicy` (#12 item 6).

mod common;
use common::estate::*;
use common::*;
use serde_json::{Value, json};

fn policy_id(name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/{name}",
        rg("hscn-net")
    )
}

fn policy(mode: &str) -> Value {
    json!({"location": "uksouth", "tags": {"fhirlock-owner": "ns/e"}, "properties": {
        "policySettings": {"state": "Enabled", "mode": mode, "requestBodyCheck": true},
        "managedRules": {"managedRuleSets": [{"ruleSetType": "Microsoft_DefaultRuleSet", "ruleSetVersion": "2.1"}]}}})
}

fn waf_gateway(policy: Option<&str>, inline: bool) -> Value {
    let mut b = gateway_body(None);
    b["properties"]["sku"] = json!({"name": "WAF_v2", "tier": "WAF_v2", "capacity": 2});
    if let Some(p) = policy {
        b["properties"]["firewallPolicy"] = json!({"id": p});
        b["properties"]["forceFirewallPolicyAssociation"] = json!(true);
    }
    if inline {
        b["properties"]["webApplicationFirewallConfiguration"] = json!({"enabled": true,
            "firewallMode": "Prevention", "ruleSetType": "OWASP", "ruleSetVersion": "3.2"});
    }
    b
}

fn estate() -> H {
    let mut h = H::new();
    register_isolation(&mut h);
    agw_subnet(&mut h);
    h
}

#[test]
fn a_policy_put_is_synchronous_and_reads_back_its_state_and_its_gateways() {
    let mut h = estate();
    let id = policy_id("agw-fhir-waf");
    let r = h.call("PUT", &id, NET, Some(policy("Prevention")));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.get_header("Azure-AsyncOperation").is_none() && r.get_header("Location").is_none(),
        "not long-running"
    );
    let v = r.json_body();
    assert_eq!(v["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        v["type"],
        "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies"
    );
    assert!(v["etag"].is_string());
    assert_eq!(v["properties"]["applicationGateways"], json!([]));
    // Updated in place: 200.
    let r = h.call("PUT", &id, NET, Some(policy("Detection")));
    assert_eq!(r.status, 200);
    h.ok(
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        Some(waf_gateway(Some(&id), false)),
    );
    h.settle();
    let v = h.ok("GET", &id, NET, None);
    assert_eq!(v["properties"]["policySettings"]["mode"], "Detection");
    assert_eq!(
        v["properties"]["applicationGateways"],
        json!([{"id": agw_id("agw-fhir")}])
    );
    // Sending the read-back again stores none of the server's fields.
    let r = h.call("PUT", &id, NET, Some(v));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn a_policy_body_is_held_to_the_model() {
    let mut h = estate();
    let id = policy_id("p");
    let mut bad = policy("Prevention");
    bad["properties"]["policySettings"]["mode"] = json!("Block");
    h.fails("PUT", &id, NET, Some(bad), 400, "InvalidRequestFormat");
    let mut bad = policy("Prevention");
    bad["properties"]["policySettings"]["state"] = json!("On");
    h.fails("PUT", &id, NET, Some(bad), 400, "InvalidRequestFormat");
    let mut bad = policy("Prevention");
    bad["properties"]["managedRules"] = json!({});
    h.fails("PUT", &id, NET, Some(bad), 400, "InvalidRequestFormat");
    let mut bad = policy("Prevention");
    bad["properties"]["managedRules"]["managedRuleSets"][0]["ruleSetVersion"] = json!("9.9");
    h.fails("PUT", &id, NET, Some(bad), 400, "BadRequest");
    let mut bad = policy("Prevention");
    bad.as_object_mut().unwrap().remove("location");
    h.fails("PUT", &id, NET, Some(bad), 400, "LocationRequired");
    // There is no PATCH in the spec.
    h.call("PUT", &id, NET, Some(policy("Prevention")));
    let r = h.call("PATCH", &id, NET, Some(json!({"tags": {}})));
    assert_eq!(r.status, 405);
}

#[test]
fn a_gateway_references_only_a_policy_that_exists_and_keeps_one_once_it_has_one() {
    let mut h = estate();
    let agw = agw_id("agw-fhir");
    let p1 = policy_id("p1");
    h.fails(
        "PUT",
        &agw,
        NET,
        Some(waf_gateway(Some(&p1), false)),
        400,
        "InvalidResourceReference",
    );
    h.ok("PUT", &p1, NET, Some(policy("Prevention")));
    // WAF_v2 with no WAF at all, and a Standard_v2 naming a policy, are refused.
    h.fails(
        "PUT",
        &agw,
        NET,
        Some(waf_gateway(None, false)),
        400,
        "BadRequest",
    );
    let mut std_with_policy = waf_gateway(Some(&p1), false);
    std_with_policy["properties"]["sku"] =
        json!({"name": "Standard_v2", "tier": "Standard_v2", "capacity": 2});
    h.fails("PUT", &agw, NET, Some(std_with_policy), 400, "BadRequest");
    h.ok("PUT", &agw, NET, Some(waf_gateway(Some(&p1), false)));
    h.settle();
    // Dropping it is refused; replacing it is not.
    h.fails(
        "PUT",
        &agw,
        NET,
        Some(waf_gateway(None, true)),
        400,
        "ApplicationGatewayFirewallPolicyCannotBeRemoved",
    );
    h.fails(
        "PUT",
        &agw,
        NET,
        Some(waf_gateway(Some(&p1), true)),
        400,
        "ApplicationGatewayWafConfigurationCannotBeChangedWithWafPolicy",
    );
    let p2 = policy_id("p2");
    h.ok("PUT", &p2, NET, Some(policy("Prevention")));
    h.ok("PUT", &agw, NET, Some(waf_gateway(Some(&p2), false)));
    h.settle();
    // A policy in use cannot be deleted; once the gateway is Standard_v2 it can.
    h.fails(
        "DELETE",
        &p2,
        NET,
        None,
        400,
        "ApplicationGatewayWebApplicationFirewallPolicyInUse",
    );
    h.ok("PUT", &agw, NET, Some(gateway_body(None)));
    h.settle();
    let r = h.call("DELETE", &p2, NET, None);
    assert_eq!(r.status, 202);
    assert!(r.get_header("Location").is_some());
    h.settle();
    assert_eq!(h.call("GET", &p2, NET, None).status, 404);
    assert_eq!(h.call("DELETE", &p2, NET, None).status, 204);
}

#[test]
fn an_inline_waf_gateway_takes_a_policy_in_one_put_only_when_forced() {
    let mut h = estate();
    let agw = agw_id("agw-fhir");
    h.ok("PUT", &agw, NET, Some(waf_gateway(None, true)));
    h.settle();
    let p = policy_id("agw-fhir-waf");
    h.ok("PUT", &p, NET, Some(policy("Prevention")));
    let mut unforced = waf_gateway(Some(&p), false);
    unforced["properties"]
        .as_object_mut()
        .unwrap()
        .remove("forceFirewallPolicyAssociation");
    h.fails("PUT", &agw, NET, Some(unforced), 400, "BadRequest");
    h.ok("PUT", &agw, NET, Some(waf_gateway(Some(&p), false)));
    h.settle();
    let g = h.ok("GET", &agw, NET, None);
    assert_eq!(g["properties"]["firewallPolicy"]["id"], json!(p));
    assert!(g["properties"]["webApplicationFirewallConfiguration"].is_null());
}
