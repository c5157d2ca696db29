//! Read-back enrichment (§7.5): what a GET returns, computed from the stored body and the rest of
//! the estate. Stored bodies hold only what clients wrote; everything server-made is derived here,
//! so back-references (serviceAssociationLinks, applicationGatewayIPConfigurations) never go stale.
//!
//! One file per provider (`network`, `web`, `cosmos`); `read_only` is the reverse direction, what
//! a client's write-back loses before it is stored.

mod cosmos;
mod network;
mod read_only;
mod web;

pub use cosmos::{cosmos_network, render_cosmos};
pub use network::{
    delegation_actions, render_gateway, render_pip, render_subnet, render_vnet, user_assigned_entry,
};
pub use read_only::strip_read_only;
pub use web::{
    SYNTHETIC_PRIORITY, default_site_config, is_synthetic, render_config, render_site, site_host,
    strip_synthetic, unmatched_action,
};

use serde_json::{Map, Value, json};

use crate::ids;
use crate::state::{Resource, State};
use crate::validate::*;

fn obj(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().expect("object")
}

fn props_mut(v: &mut Value) -> &mut Map<String, Value> {
    let o = obj(v);
    let p = o.entry("properties").or_insert_with(|| json!({}));
    obj(p)
}

/// A stable GUID derived from a resource id (resourceGuid, customDomainVerificationId).
pub fn stable_guid(seed: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, ids::key(seed).as_bytes());
    let h: String = d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Renders any stored resource as GET returns it.
pub fn render(state: &State, r: &Resource) -> Value {
    let t = r.rtype.as_str();
    if t.eq_ignore_ascii_case(NET_SUBNET) {
        render_subnet(state, r)
    } else if t.eq_ignore_ascii_case(NET_VNET) {
        render_vnet(state, r)
    } else if t.eq_ignore_ascii_case(NET_AGW) {
        render_gateway(state, r)
    } else if t.eq_ignore_ascii_case(NET_PIP) {
        render_pip(state, r)
    } else if t.eq_ignore_ascii_case(WEB_SITE) {
        render_site(state, r)
    } else if t.eq_ignore_ascii_case(WEB_CONFIG) {
        render_config(r)
    } else if t.eq_ignore_ascii_case(COSMOS) {
        render_cosmos(r)
    } else if t.eq_ignore_ascii_case(crate::engine::NET_WAF) {
        crate::engine::render_waf_policy(state, r)
    } else if t.eq_ignore_ascii_case("resourceGroups") {
        let mut v = base(r, "Microsoft.Resources/resourceGroups");
        props_mut(&mut v).insert("provisioningState".into(), json!(r.provisioning_state));
        v
    } else {
        let mut v = base(r, t);
        props_mut(&mut v).insert("provisioningState".into(), json!(r.provisioning_state));
        v
    }
}

fn base(r: &Resource, rtype: &str) -> Value {
    let mut v = r.body.clone();
    let o = obj(&mut v);
    o.insert("id".into(), json!(r.id));
    o.insert(
        "name".into(),
        json!(r.id.rsplit('/').next().unwrap_or_default()),
    );
    o.insert("type".into(), json!(rtype));
    v
}

/// JSON merge for PATCH: objects merge recursively, arrays and scalars replace (§4.3, §3.4).
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_replaces_arrays_and_merges_objects() {
        let mut a = json!({"properties": {"ipRules": [{"ipAddressOrRange": "1.1.1.1"}, {"ipAddressOrRange": "2.2.2.2"}], "x": 1, "o": {"a": 1}}});
        merge(
            &mut a,
            &json!({"properties": {"ipRules": [], "o": {"b": 2}, "unknownField": true}}),
        );
        assert_eq!(
            a,
            json!({"properties": {"ipRules": [], "x": 1, "o": {"a": 1, "b": 2}, "unknownField": true}})
        );
    }
}
