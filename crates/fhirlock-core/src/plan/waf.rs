//! The WAF policy of a WAF_v2 gateway (`Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies`),
//! which replaces the inline `webApplicationFirewallConfiguration`: Microsoft deprecated that, and
//! it retires on 15 March 2027 (Learn "Azure Web Application Firewall (WAF) policy overview"; Azure
//! PSRule `Azure.AppGw.MigrateWAFPolicy`).
//!
//! Wire shapes: azure-rest-api-specs `specification/network/resource-manager/Microsoft.Network/stable/2025-01-01/webapplicationfirewall.json`
//! (`WebApplicationFirewallPolicy`, `PolicySettings`, `ManagedRuleSet`). Its PUT is not a
//! long-running operation (200/201 with the policy), its DELETE is (202, `final-state-via: location`).
//!
//! Order: fhirlock's policy is created before the gateway write that references it, and that one
//! gateway PUT both attaches the policy and drops the inline block, so no read of the gateway ever
//! shows it without a WAF. A Standard_v2 gateway carries neither, and fhirlock's policy is deleted
//! once the gateway no longer references it.

use serde_json::{Map, Value, json};

use super::{
    Method, Precondition, Step, StepKind, failed_state, managed_diff, owned_tags, step, waiting,
};
use crate::desired::Desired;
use crate::id;
use crate::json::FieldChange;
use crate::observed::{Observed, api_version};

/// The managed rule set of a policy fhirlock creates: Microsoft's Default Rule Set 2.2, generally
/// available for Application Gateway WAF v2 and the one Microsoft recommends (Learn "Upgrade CRS
/// or DRS ruleset version": "always use the highest available version (DRS 2.2)"; Learn "Azure
/// Web Application Firewall managed ruleset support policy": DRS 2.2 is N, 2.1 N-1; Azure Network
/// Security Blog "General availability of Default Ruleset (DRS) 2.2 for Web Application
/// Firewall", 29 April 2026: "across both Azure Front Door and Azure Application Gateway").
/// `ruleSetType`/`ruleSetVersion` are free strings in the 2025-01-01 spec (`ManagedRuleSet`).
/// Set only when fhirlock creates the policy: moving an existing policy to a newer set changes
/// which requests are blocked and needs its overrides and exclusions carried over, so upgrades
/// (and any set a person chose) are left to people, and a converged policy is never rewritten.
pub const RULE_SET: (&str, &str) = ("Microsoft_DefaultRuleSet", "2.2");

/// The gateway's reference to its WAF policy (`ApplicationGatewayPropertiesFormat.firewallPolicy`).
pub fn attached(o: &Observed) -> Option<String> {
    o.gateway
        .as_ref()?
        .pointer("/properties/firewallPolicy/id")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Sets the gateway properties for its WAF: a WAF_v2 gateway references its policy and carries
/// no inline configuration; a Standard_v2 gateway carries neither. `forceFirewallPolicyAssociation`
/// (SPEC-NET: "associates a firewall policy with an application gateway regardless whether the
/// policy differs from the WAF Config") lets the one PUT that swaps an inline configuration for
/// the policy go through.
pub(super) fn gateway_properties(d: &Desired, props: &mut Map<String, Value>) {
    props.remove("webApplicationFirewallConfiguration");
    match &d.gateway.waf {
        Some(w) => {
            props.insert("firewallPolicy".into(), json!({"id": w.policy_id}));
            props.insert("forceFirewallPolicyAssociation".into(), json!(true));
        }
        None => {
            props.remove("firewallPolicy");
            props.remove("forceFirewallPolicyAssociation");
        }
    }
}

/// What the gateway body drops that the observed gateway has: the comparison of the managed view
/// sees only what the body names.
pub(super) fn gateway_removals(d: &Desired, o: &Observed) -> Vec<FieldChange> {
    let Some(gw) = o.gateway.as_ref() else {
        return Vec::new();
    };
    let mut gone = vec!["webApplicationFirewallConfiguration"];
    if d.gateway.waf.is_none() {
        gone.push("firewallPolicy");
    }
    gone.into_iter()
        .filter_map(|k| {
            let v = gw.pointer(&format!("/properties/{k}"))?;
            (!v.is_null()).then(|| FieldChange {
                path: format!("properties.{k}"),
                from: Some(v.clone()),
                to: None,
            })
        })
        .collect()
}

/// Why the gateway step waits for the policy: a WAF_v2 gateway can reference only a policy that
/// exists (ARM refuses a reference to a missing one) and has settled.
pub(super) fn gateway_waits_for(d: &Desired, o: &Observed) -> Option<String> {
    let w = d.gateway.waf.as_ref()?;
    let settled = o.waf_policy.as_ref().is_some_and(|p| {
        p.pointer("/properties/provisioningState")
            .and_then(Value::as_str)
            .is_none_or(|s| s.eq_ignore_ascii_case("Succeeded"))
    });
    let name = w.policy_id.rsplit('/').next().unwrap_or_default();
    (!settled).then(|| format!("WAF policy {name} to exist and be Succeeded"))
}

/// The policy fhirlock creates and keeps for a WAF_v2 gateway: enabled, in the spec's mode,
/// checking request bodies, with the default rule set when it has none. Fields fhirlock does not
/// manage (custom rules, exclusions, overrides, limits) go back as they came.
pub(super) fn policy_step(d: &Desired, o: &Observed) -> Option<Step> {
    let w = d.gateway.waf.as_ref().filter(|w| w.owned)?;
    let observed = o.waf_policy.as_ref().filter(|v| v.is_object());
    let creates = observed.is_none();
    let mut body = observed.cloned().unwrap_or_else(|| json!({}));
    body["location"] = json!(d.gateway.location);
    body["tags"] = Value::Object(owned_tags(&body, &d.owner));
    if !body.get("properties").is_some_and(Value::is_object) {
        body["properties"] = json!({});
    }
    let settings = json!({"state": "Enabled", "mode": w.mode, "requestBodyCheck": true});
    let p = &mut body["properties"];
    if !p.get("policySettings").is_some_and(Value::is_object) {
        p["policySettings"] = json!({});
    }
    for (k, v) in settings.as_object().expect("object") {
        p["policySettings"][k] = v.clone();
    }
    let want =
        json!({"tags": {crate::OWNER_TAG: d.owner}, "properties": {"policySettings": settings}});
    // The rule set at creation only (see [`RULE_SET`]): an existing policy keeps its own.
    if creates {
        let sets = json!([{"ruleSetType": RULE_SET.0, "ruleSetVersion": RULE_SET.1}]);
        p["managedRules"] = json!({"managedRuleSets": sets});
    }
    let mut changes = match observed {
        None => vec![FieldChange {
            path: "(resource)".into(),
            from: None,
            to: Some(json!(format!(
                "WAF policy in {} mode with {} {}",
                w.mode, RULE_SET.0, RULE_SET.1
            ))),
        }],
        Some(seen) => managed_diff(seen, &want),
    };
    changes.extend(failed_state(observed));
    if changes.is_empty() {
        return None;
    }
    crate::read_only::strip(crate::read_only::Kind::WafPolicy, &mut body);
    let mut s = step(
        StepKind::WafPolicy,
        &w.policy_id,
        Method::Put,
        api_version::NETWORK,
        body,
        changes,
        "a WAF_v2 gateway needs a WAF policy: the inline WAF configuration retires on 15 March 2027",
    );
    s.creates = creates;
    s.precondition = Precondition::for_etagged(creates, observed);
    Some(s)
}

/// fhirlock's policy, once the gateway is not to reference it (Standard_v2 now, or a policy the
/// spec names): deleted once the gateway no longer references it (ARM refuses to delete a policy
/// in use). `observe` reads it only when `status.createdResources` names it, so only a policy
/// fhirlock created is ever deleted, and only while it carries this endpoint's owner tag.
pub(super) fn delete_step(d: &Desired, o: &Observed) -> Option<Step> {
    if d.wants_owned_waf_policy() {
        return None;
    }
    delete(d, o, &d.gateway.owned_waf_policy_id)
}

/// fhirlock's own policy as this look read it: at the gateway's reference when it is the one the
/// gateway is to reference or the gateway is Standard_v2, else beside the spec's.
fn owned_policy<'a>(d: &Desired, o: &'a Observed) -> Option<&'a Value> {
    if id::same(d.waf_policy_read_id(), &d.gateway.owned_waf_policy_id) {
        o.waf_policy.as_ref()
    } else {
        o.former_waf_policy.as_ref()
    }
}

/// What fhirlock created and has since deleted: its policy, once unwanted (the gateway is
/// Standard_v2 or references the spec's) and read as absent while status still records it.
/// Dropped from `status.createdResources`, so no later look pays a GET that answers 404; a
/// policy wanted again is created and recorded again.
pub fn gone(d: &Desired, o: &Observed) -> Vec<String> {
    let g = &d.gateway;
    let read = g.owned_waf_policy_recorded && d.reads_waf_policy();
    if !d.wants_owned_waf_policy() && read && owned_policy(d, o).is_none() {
        vec![g.owned_waf_policy_id.clone()]
    } else {
        Vec::new()
    }
}

/// The delete of fhirlock's policy `policy_id`, waiting while the gateway still references it.
/// `None` unless it exists with this endpoint's owner tag.
pub(super) fn delete(d: &Desired, o: &Observed, policy_id: &str) -> Option<Step> {
    let policy = owned_policy(d, o)?;
    let ours = policy
        .pointer(&format!("/tags/{}", crate::OWNER_TAG))
        .and_then(Value::as_str)
        == Some(d.owner.as_str());
    if !ours {
        return None;
    }
    let change = FieldChange {
        path: "(resource)".into(),
        from: Some(json!(policy_id.rsplit('/').next().unwrap_or_default())),
        to: None,
    };
    let mut s = step(
        StepKind::DeleteWafPolicy,
        policy_id,
        Method::Delete,
        api_version::NETWORK,
        Value::Null,
        vec![change],
        "delete the WAF policy fhirlock created, which no gateway of this endpoint uses",
    );
    s.precondition = Precondition::for_etagged(false, Some(policy));
    let in_use = attached(o).is_some_and(|a| id::same(&a, policy_id));
    let why = in_use.then(|| format!("gateway {} to stop referencing it", d.gateway.name));
    Some(waiting(s, why))
}

/// The WAF of a WAF_v2 gateway as a posture: the gateway must reference the spec's policy (an
/// inline configuration alone, or another policy, is not it), and the policy must be enabled;
/// fhirlock's own policy must also block, unless the spec asks for Detection (the mode of a
/// `policyId` is its owner's choice). Judged once the gateway exists.
pub(crate) fn findings(d: &Desired, o: &Observed) -> Vec<crate::posture::Finding> {
    use crate::posture::{FindingCode, Severity, finding};
    let (Some(w), Some(_)) = (&d.gateway.waf, &o.gateway) else {
        return Vec::new();
    };
    let attached = attached(o);
    if !attached
        .as_deref()
        .is_some_and(|a| id::same(a, &w.policy_id))
    {
        return vec![finding(
            FindingCode::WafPolicyNotAttached,
            Severity::Medium,
            &d.gateway.id,
            format!(
                "the WAF_v2 gateway references {} instead of WAF policy {}, so requests are not filtered by it",
                attached.as_deref().unwrap_or("no WAF policy"),
                w.policy_id
            ),
        )];
    }
    let setting = |k: &str| {
        o.waf_policy
            .as_ref()
            .and_then(|p| p.pointer(&format!("/properties/policySettings/{k}")))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut out = Vec::new();
    if setting("state").is_some_and(|s| s.eq_ignore_ascii_case("Disabled")) {
        out.push(finding(
            FindingCode::WafPolicyDisabled,
            Severity::Medium,
            &w.policy_id,
            "the gateway's WAF policy is Disabled, so no request is inspected".into(),
        ));
    }
    let detecting = setting("mode").is_some_and(|m| m.eq_ignore_ascii_case("Detection"));
    if detecting && w.owned && w.mode == "Prevention" {
        out.push(finding(
            FindingCode::WafDetectionMode,
            Severity::Medium,
            &w.policy_id,
            "the gateway's WAF policy is in Detection mode: requests its rules match are logged, not blocked".into(),
        ));
    }
    out
}
