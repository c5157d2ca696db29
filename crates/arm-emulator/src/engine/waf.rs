//! Microsoft.Network WAF policies (`ApplicationGatewayWebApplicationFirewallPolicies`) and what
//! a gateway's `firewallPolicy` may do.
//!
//! Source: azure-rest-api-specs `specification/network/resource-manager/Microsoft.Network/stable/2025-01-01/webapplicationfirewall.json`:
//! PUT answers 200/201 with the policy and is not long-running; DELETE is (202, 204 when absent,
//! `final-state-via: location`); `managedRules` and each rule set's `ruleSetType` and
//! `ruleSetVersion` are required; `applicationGateways`, `provisioningState` and `resourceState`
//! are read-only. The enums (`policySettings.state`, `.mode`) are in `body_rules/enums.rs`.
//! What ARM answers to the gateway-side rules below is [O] or [U], as each says.

use serde_json::{Value, json};

use super::{Engine, R, Response, loc_slug};
use crate::enrich::render;
use crate::error::ArmError;
use crate::ids::{self, ArmPath};
use crate::state::{OpKind, Resource, State};
use crate::validate::{NET_AGW, props};

pub const NET_WAF: &str = "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies";

/// Rule sets Application Gateway WAF v2 offers (Learn "Web Application Firewall DRS and CRS rule
/// groups and rules"; Learn "Upgrade CRS or DRS ruleset version"). DRS 2.2, which fhirlock's
/// policies get, is GA on Application Gateway (Learn "Azure Web Application Firewall managed
/// ruleset support policy": N = DRS 2.2; Azure Network Security Blog "General availability of
/// Default Ruleset (DRS) 2.2 for Web Application Firewall", 29 April 2026). The spec leaves
/// `ruleSetType` free; the live list is `ApplicationGateways_ListAvailableWafRuleSets` [U: not
/// read from a real subscription].
const RULE_SETS: &[(&str, &[&str])] = &[
    ("OWASP", &["3.0", "3.1", "3.2"]),
    ("Microsoft_DefaultRuleSet", &["2.1", "2.2"]),
    ("Microsoft_BotManagerRuleSet", &["0.1", "1.0", "1.1"]),
];

impl Engine {
    pub(super) fn put_waf_policy(&mut self, p: &ArmPath, body: Value) -> R<Response> {
        let id = p.id();
        Self::require_location(&body)?;
        rule_sets(&body)?;
        let created = self.upsert(&id, NET_WAF, body);
        let r = self.state.get(&id).expect("stored");
        Ok(Response::json(
            if created { 201 } else { 200 },
            &render(&self.state, r),
        ))
    }

    /// A policy a gateway still references cannot go [U: the code and wording are the
    /// emulator's; that ARM refuses it is observed (Terraform must detach first)].
    pub(super) fn delete_waf_policy(
        &mut self,
        p: &ArmPath,
        existing: &Resource,
        api: &str,
        now: u64,
        fail: Option<Value>,
    ) -> R<Response> {
        let id = p.id();
        let users = gateways_using(&self.state, &id);
        if let Some(gw) = users.first() {
            return Err(ArmError::bad_request(
                "ApplicationGatewayWebApplicationFirewallPolicyInUse",
                format!(
                    "[emulator] Web application firewall policy {id} cannot be deleted because it is in use by application gateway {gw}."
                ),
            ));
        }
        let loc = loc_slug(&existing.body);
        let op = self.start_op(
            OpKind::Delete,
            &id,
            NET_WAF,
            &p.subscription,
            &loc,
            api,
            now,
            fail,
        );
        Ok(self.lro_headers(&op, Response::empty(202), true))
    }
}

/// `managedRules.managedRuleSets` with known rule sets (required: the spec's `required`).
fn rule_sets(body: &Value) -> R<()> {
    let sets = props(body)["managedRules"]["managedRuleSets"].as_array();
    let Some(sets) = sets.filter(|s| !s.is_empty()) else {
        return Err(ArmError::bad_request(
            "InvalidRequestFormat",
            "[emulator] The property 'properties.managedRules.managedRuleSets' is required.",
        ));
    };
    for s in sets {
        let (t, v) = (
            s["ruleSetType"].as_str().unwrap_or(""),
            s["ruleSetVersion"].as_str().unwrap_or(""),
        );
        let known = RULE_SETS.iter().any(|(kt, versions)| {
            kt.eq_ignore_ascii_case(t) && versions.iter().any(|kv| kv.eq_ignore_ascii_case(v))
        });
        if !known {
            return Err(ArmError::bad_request(
                "BadRequest",
                format!(
                    "[emulator] Managed rule set {t} {v} is not offered for Application Gateway WAF."
                ),
            ));
        }
    }
    Ok(())
}

/// Gateways whose `firewallPolicy` is `policy_id`.
pub fn gateways_using(state: &State, policy_id: &str) -> Vec<String> {
    state
        .of_type(NET_AGW)
        .filter(|g| {
            props(&g.body)["firewallPolicy"]["id"]
                .as_str()
                .is_some_and(|p| ids::key(p) == ids::key(policy_id))
        })
        .map(|g| g.id.clone())
        .collect()
}

/// A gateway PUT's WAF, against what is stored (`existing`):
/// - a `firewallPolicy` must name a policy that exists (`InvalidResourceReference` [O], as for
///   other references);
/// - only a WAF tier takes one [U: one report says switching to Standard_v2 detaches it; the
///   emulator refuses a Standard_v2 body that still names one];
/// - a WAF_v2 gateway with a policy cannot drop it (`ApplicationGatewayFirewallPolicyCannotBeRemoved`
///   [O: quoted in public deployment logs]; replacing it is allowed);
/// - the inline configuration cannot change while a policy is attached
///   (`ApplicationGatewayWafConfigurationCannotBeChangedWithWafPolicy` [O]);
/// - a policy is attached over an inline configuration only with `forceFirewallPolicyAssociation`
///   (SPEC-NET: it "associates a firewall policy ... regardless whether the policy differs from the
///   WAF Config") [U: the code; the emulator treats every inline block as differing];
/// - a WAF_v2 gateway needs a WAF, inline or policy [U: the emulator's rule and code].
pub fn check_gateway(state: &State, agw_id: &str, body: &Value, existing: Option<&Value>) -> R<()> {
    let p = props(body);
    let tier = p["sku"]["tier"].as_str().unwrap_or("");
    let waf_tier = tier.to_ascii_uppercase().starts_with("WAF");
    let policy = p["firewallPolicy"]["id"].as_str();
    let inline = p
        .get("webApplicationFirewallConfiguration")
        .filter(|v| !v.is_null());
    let before = existing.map(props);
    let policy_before = before.and_then(|b| b["firewallPolicy"]["id"].as_str());
    let inline_before = before
        .and_then(|b| b.get("webApplicationFirewallConfiguration"))
        .filter(|v| !v.is_null());
    if let Some(pid) = policy {
        if state.get(pid).is_none() {
            return Err(ArmError::invalid_reference(pid, agw_id));
        }
        if !waf_tier {
            return Err(ArmError::bad_request(
                "BadRequest",
                format!(
                    "[emulator] Application Gateway {agw_id} with SKU tier {tier} cannot have a firewall policy."
                ),
            ));
        }
    }
    if let (Some(old), None, true) = (policy_before, policy, waf_tier) {
        return Err(ArmError::bad_request(
            "ApplicationGatewayFirewallPolicyCannotBeRemoved",
            format!(
                "Firewall policy {old} cannot be removed from Application Gateway, changing from one firewall policy to another is permitted."
            ),
        ));
    }
    if let (Some(_), Some(new)) = (policy_before.and(policy), inline)
        && inline_before != Some(new)
    {
        return Err(ArmError::bad_request(
            "ApplicationGatewayWafConfigurationCannotBeChangedWithWafPolicy",
            format!(
                "WebApplicationFirewallConfiguration cannot be changed when there is a WAF Policy {} associated with it.",
                policy_before.unwrap_or_default()
            ),
        ));
    }
    let forced = p["forceFirewallPolicyAssociation"].as_bool() == Some(true);
    if policy.is_some()
        && policy_before.is_none()
        && (inline.is_some() || inline_before.is_some())
        && !forced
    {
        return Err(ArmError::bad_request(
            "BadRequest",
            format!(
                "[emulator] Application Gateway {agw_id} has a WAF configuration that differs from the firewall policy; set forceFirewallPolicyAssociation to associate it."
            ),
        ));
    }
    if waf_tier && tier.ends_with("_v2") && policy.is_none() && inline.is_none() {
        return Err(ArmError::bad_request(
            "BadRequest",
            format!(
                "[emulator] Application Gateway {agw_id} with SKU tier {tier} needs a WAF policy (firewallPolicy) or a webApplicationFirewallConfiguration."
            ),
        ));
    }
    Ok(())
}

/// A policy as GET returns it: its state, and the gateways that reference it (the spec embeds
/// whole `ApplicationGateway`s; the emulator gives their `id`s, as references are read back
/// elsewhere [U]).
pub fn render_waf_policy(state: &State, r: &Resource) -> Value {
    let mut v = r.body.clone();
    if !v.is_object() {
        v = json!({});
    }
    v["id"] = json!(r.id);
    v["name"] = json!(r.id.rsplit('/').next().unwrap_or_default());
    v["type"] = json!(NET_WAF);
    v["etag"] = json!(r.etag);
    if !v["properties"].is_object() {
        v["properties"] = json!({});
    }
    let users: Vec<Value> = gateways_using(state, &r.id)
        .into_iter()
        .map(|id| json!({"id": id}))
        .collect();
    let p = &mut v["properties"];
    p["provisioningState"] = json!(r.provisioning_state);
    p["resourceState"] = json!(match r.provisioning_state.as_str() {
        "Deleting" => "Deleting",
        _ => "Enabled",
    });
    p["applicationGateways"] = json!(users);
    p["httpListeners"] = json!([]);
    p["pathBasedRules"] = json!([]);
    v
}
