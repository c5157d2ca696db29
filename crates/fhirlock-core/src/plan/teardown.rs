//! The teardown for deletionPolicy Delete.

use serde_json::{Value, json};

use super::{LEGACY_RULE_NAME, Method, Plan, Precondition, Step, StepKind, step, waiting};
use crate::desired::{Desired, SubnetDesired};
use crate::id;
use crate::json::{self, FieldChange};
use crate::model::{self, IpRestriction};
use crate::observed::{Observed, api_version};
use crate::{peers, posture};

/// The teardown for deletionPolicy Delete: remove, in reverse safe order, only what fhirlock
/// created or added, and of that only what no other endpoint still declares (`d.peers`): their
/// rules, a shared integration subnet and the site's integration stay. With hostHeader Preserve,
/// the host-name binding and the App Service certificate fhirlock created go after the gateway.
/// The VNet, the site and the Cosmos account are never deleted, adopted subnets and gateways are
/// left (and with a gateway, its subnet), and nothing is re-opened: the site keeps its default
/// Deny, Cosmos its filter.
pub fn teardown(d: &Desired, o: &Observed, created: &[String]) -> Plan {
    let integrated = o
        .site()
        .and_then(|s| s.properties.virtual_network_subnet_id)
        .is_some_and(|s| id::same(&s, &d.integration_subnet.id));
    // Only a gateway fhirlock created (recorded before its PUT) and that still carries its owner
    // tag: one a person adopted by tagging it is managed, never deleted.
    let owned_gateway = o.gateway().is_some_and(|g| {
        g.tag(crate::OWNER_TAG) == Some(d.owner.as_str())
            && created.iter().any(|c| id::same(c, &d.gateway.id))
    });
    // A gateway that stays keeps its subnet.
    let gateway_stays = o.gateway().is_some() && !owned_gateway;
    // Another endpoint on the same site has the same integration subnet (or it would have
    // stalled on ConflictsWith): ending the integration would cut its app off Cosmos DB too.
    let site_shared = peers::still_claimed(d, |p| id::same(&p.site_id, &d.site_id));
    let mut steps = Vec::new();
    steps.extend(remove_gateway_rule(d, o));
    steps.extend(remove_cosmos_vnet_rule(d, o));
    if integrated && !site_shared {
        steps.push(remove_site_vnet_integration(d));
    }
    if owned_gateway {
        // Deleted only as read, owner tag and all: a gateway changed since is read again first.
        let mut s = delete_gateway(d);
        s.precondition = Precondition::for_etagged(false, o.gateway.as_ref());
        steps.push(s);
    }
    // fhirlock's WAF policy: only one it created (recorded before its PUT) that still carries its
    // owner tag, after the gateway (ARM refuses to delete a policy in use). A gateway that stays
    // keeps it while it references it: a WAF_v2 gateway cannot drop its policy.
    let policy_id = &d.gateway.owned_waf_policy_id;
    let kept = gateway_stays && super::waf::attached(o).is_some_and(|a| id::same(&a, policy_id));
    if !kept && created.iter().any(|c| id::same(c, policy_id)) {
        steps.extend(super::waf::delete(d, o, policy_id));
    }
    // hostHeader Preserve: fhirlock's host-name binding, then its certificate, only what it
    // created. The binding waits while something may still send the host name to the site (the
    // gateway being deleted, or fhirlock's access rule letting a gateway that stays in), so no
    // request meets a site that no longer serves its host; Azure refuses to delete a certificate
    // a binding uses, so the certificate waits for the binding.
    let rule_pending = steps.iter().any(|s| s.kind == StepKind::RemoveGatewayRule);
    let reaches = if owned_gateway {
        Some(format!("gateway {} to be deleted first", d.gateway.name))
    } else {
        let stays = o.gateway.is_some() && rule_pending;
        stays.then(|| "fhirlock's access rule for the gateway subnet to be removed".into())
    };
    let binding = super::host_name::delete_binding(d, o, created, reaches);
    let binding_goes = binding.is_some();
    steps.extend(binding);
    steps.extend(super::host_name::delete_certificates(
        d,
        o,
        created,
        binding_goes,
    ));
    // Each subnet waits for what uses it: the gateway for the gateway subnet, the site's
    // integration for the integration subnet.
    if !gateway_stays {
        steps.extend(delete_subnet(
            d,
            o,
            created,
            &d.gateway_subnet,
            owned_gateway,
        ));
    }
    let integrated = integrated && !site_shared;
    steps.extend(delete_subnet(
        d,
        o,
        created,
        &d.integration_subnet,
        integrated,
    ));
    Plan { steps }
}

fn remove_gateway_rule(d: &Desired, o: &Observed) -> Option<Step> {
    let cfg = o.site_config()?;
    let gw_subnet = d.gateway_subnet.id.as_str();
    let rules = posture::real_rules(cfg.properties.ip_security_restrictions.as_deref());
    // This endpoint's: its name, or an allow for its gateway subnet, or the name fhirlock used
    // before names were per endpoint; never a rule for a subnet another endpoint still claims
    // (a peer's rule, or the one a contesting endpoint waits to take over).
    let mine = peers::rule_name(&d.owner);
    let ours = |r: &IpRestriction| {
        let subnet = r.vnet_subnet_resource_id.as_deref();
        let named = r.name.as_deref() == Some(mine.as_str())
            || r.name.as_deref() == Some(LEGACY_RULE_NAME)
            || (r.allows() && subnet.is_some_and(|s| id::same(s, gw_subnet)));
        let claimed = subnet.is_some_and(|s| {
            peers::still_claimed(d, |p| {
                id::same(&p.gateway_subnet.id, s) || id::same(&p.integration_subnet.id, s)
            })
        });
        named && !claimed
    };
    if !rules.iter().any(ours) {
        return None;
    }
    let keep: Vec<Value> = rules
        .iter()
        .filter(|r| !ours(r))
        .map(model::to_json)
        .collect();
    let want = json!({"properties": {"ipSecurityRestrictions": keep}});
    let changes = json::diff("", o.site_config.as_ref(), &want);
    Some(step(
        StepKind::RemoveGatewayRule,
        &d.site_config_id(),
        Method::Patch,
        api_version::WEB,
        want,
        changes,
        "remove fhirlock's access rule for the gateway subnet (the site stays default Deny)",
    ))
}

fn remove_cosmos_vnet_rule(d: &Desired, o: &Observed) -> Option<Step> {
    let rules = o
        .cosmos()?
        .properties
        .virtual_network_rules
        .unwrap_or_default();
    // Left while another endpoint on this account uses the same integration subnet.
    let shared = peers::still_claimed(d, |p| {
        id::same(&p.cosmos_id, &d.cosmos_id)
            && id::same(&p.integration_subnet.id, &d.integration_subnet.id)
    });
    let ours = |r: &model::CosmosVnetRule| id::same(&r.id, &d.integration_subnet.id);
    if shared || !rules.iter().any(ours) {
        return None;
    }
    let keep: Vec<Value> = rules
        .iter()
        .filter(|r| !ours(r))
        .map(model::to_json)
        .collect();
    let want = json!({"properties": {"virtualNetworkRules": keep}});
    let changes = json::diff("", o.cosmos.as_ref(), &want);
    Some(step(
        StepKind::RemoveCosmosVnetRule,
        &d.cosmos_id,
        Method::Patch,
        api_version::COSMOS,
        want,
        changes,
        "remove fhirlock's Cosmos DB rule for the integration subnet (the filter stays on)",
    ))
}

fn remove_site_vnet_integration(d: &Desired) -> Step {
    let change = FieldChange {
        path: "properties.virtualNetworkSubnetId".into(),
        from: Some(json!(d.integration_subnet.id)),
        to: None,
    };
    step(
        StepKind::RemoveSiteVnetIntegration,
        &format!("{}/networkConfig/virtualNetwork", d.site_id),
        Method::Delete,
        api_version::WEB,
        Value::Null,
        vec![change],
        "end the site's VNet integration so the integration subnet can be removed",
    )
}

fn delete_gateway(d: &Desired) -> Step {
    let change = FieldChange {
        path: "(resource)".into(),
        from: Some(json!(d.gateway.name)),
        to: None,
    };
    step(
        StepKind::DeleteGateway,
        &d.gateway.id,
        Method::Delete,
        api_version::NETWORK,
        Value::Null,
        vec![change],
        "delete the gateway fhirlock created",
    )
}

/// Only a subnet fhirlock recorded as created, and only while it exists and no other endpoint
/// names it; `in_use` while what sits in it is still there.
fn delete_subnet(
    d: &Desired,
    o: &Observed,
    created: &[String],
    subnet: &SubnetDesired,
    in_use: bool,
) -> Option<Step> {
    let claimed = peers::still_claimed(d, |p| {
        id::same(&p.gateway_subnet.id, &subnet.id) || id::same(&p.integration_subnet.id, &subnet.id)
    });
    if claimed
        || !created.iter().any(|c| id::same(c, &subnet.id))
        || o.subnet(&subnet.name).is_none()
    {
        return None;
    }
    let change = FieldChange {
        path: "(resource)".into(),
        from: Some(json!(subnet.name)),
        to: None,
    };
    let mut s = step(
        StepKind::DeleteSubnet,
        &subnet.id,
        Method::Delete,
        api_version::NETWORK,
        Value::Null,
        vec![change],
        "delete the subnet fhirlock created",
    );
    s.precondition = Precondition::for_etagged(false, o.subnet_json(&subnet.name).as_ref());
    let why = in_use.then(|| format!("what uses {} to be removed first", subnet.name));
    Some(waiting(s, why))
}
