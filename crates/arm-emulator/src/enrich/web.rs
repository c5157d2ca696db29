//! Microsoft.Web read-back: sites with their host names and `siteConfig`, and `config/web` with
//! the catch-all access-restriction rule the RP appends to each list.
//!
//! A site's host names (Web 2024-11-01 `Site`: `hostNames`, `enabledHostNames`, read-only, and
//! `hostNameSslStates`): the default name and every bound custom host name; enabled adds the
//! SCM name; the TLS states follow the bindings (`sslState`, `thumbprint`). The binding's
//! `sslState` is stored as sent, so `hostNameSslStates` shows it as the binding does.

use serde_json::{Map, Value, json};

use super::{base, obj, props_mut, stable_guid};
use crate::ids;
use crate::state::{Resource, State};
use crate::validate::*;

/// The priority of the synthetic catch-all rule: the largest an `int` holds, so it sorts last.
pub const SYNTHETIC_PRIORITY: i64 = 2147483647;

pub fn site_host(site_id: &str) -> String {
    format!(
        "{}.azurewebsites.net",
        ids::ArmPath::parse(site_id)
            .map(|p| p.name())
            .unwrap_or_default()
    )
    .to_ascii_lowercase()
}

pub fn render_site(state: &State, r: &Resource) -> Value {
    let mut v = base(r, WEB_SITE);
    obj(&mut v).entry("kind").or_insert(json!("app,linux"));
    let host = site_host(&r.id);
    let scm = host.replace(".azurewebsites.net", ".scm.azurewebsites.net");
    let config = state
        .get(&format!("{}/config/web", r.id))
        .map(|c| props(&c.body).clone());
    let bound = bound_host_names(state, &r.id);
    let mut names = vec![json!(host)];
    let mut ssl = vec![ssl_state(&host, None, "Standard")];
    for (name, binding) in &bound {
        names.push(json!(name));
        ssl.push(ssl_state(name, Some(binding), "Standard"));
    }
    let mut enabled = names.clone();
    enabled.push(json!(scm));
    ssl.push(ssl_state(&scm, None, "Repository"));
    let p = props_mut(&mut v);
    p.insert("defaultHostName".into(), json!(host));
    p.insert("hostNames".into(), json!(names));
    p.insert("enabledHostNames".into(), json!(enabled));
    p.insert("hostNameSslStates".into(), json!(ssl));
    p.insert("state".into(), json!("Running"));
    p.insert("usageState".into(), json!("Normal"));
    p.insert(
        "customDomainVerificationId".into(),
        json!(stable_guid(&r.id).replace('-', "").to_uppercase()),
    );
    p.insert("outboundIpAddresses".into(), json!("20.90.0.10,20.90.0.11"));
    p.insert(
        "possibleOutboundIpAddresses".into(),
        json!("20.90.0.10,20.90.0.11,20.90.0.12"),
    );
    p.entry("httpsOnly").or_insert(json!(false));
    if let Some(c) = config {
        p.insert("siteConfig".into(), c);
    }
    v
}

/// The site's host-name bindings (`Microsoft.Web/sites/hostNameBindings`), by host name.
fn bound_host_names<'a>(state: &'a State, site_id: &str) -> Vec<(String, &'a Value)> {
    let mut out: Vec<(String, &Value)> = state
        .children(site_id, "Microsoft.Web/sites/hostNameBindings")
        .map(|b| {
            let name = b.id.rsplit('/').next().unwrap_or_default();
            (name.to_ascii_lowercase(), &b.body)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// One entry of `hostNameSslStates` (Web 2024-11-01 `HostNameSslState`: `name`, `sslState`,
/// `thumbprint`, `hostType` `Standard`/`Repository`): a binding's TLS state as it was bound, the
/// default and SCM names `Disabled` (their TLS is App Service's own certificate).
fn ssl_state(name: &str, binding: Option<&Value>, host_type: &str) -> Value {
    let p = binding.map(props).cloned().unwrap_or_default();
    let mut e = json!({
        "name": name,
        "sslState": p.get("sslState").cloned().unwrap_or(json!("Disabled")),
        "hostType": host_type,
    });
    if let Some(t) = p
        .get("thumbprint")
        .filter(|t| t.as_str().is_some_and(|t| !t.is_empty()))
    {
        e["thumbprint"] = t.clone();
    }
    e
}

/// The unmatched action for a restriction list: explicit default, else Allow with no rules, else Deny (§3.4).
pub fn unmatched_action(rules: &[Value], default_action: Option<&str>) -> &'static str {
    match default_action {
        Some(a) if a.eq_ignore_ascii_case("Deny") => "Deny",
        Some(_) => "Allow",
        None if rules.is_empty() => "Allow",
        None => "Deny",
    }
}

/// Whether a rule is the synthetic catch-all the RP appends (clients may write it back).
pub fn is_synthetic(rule: &Value) -> bool {
    rule["ipAddress"]
        .as_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("Any"))
        && rule["priority"].as_i64() == Some(SYNTHETIC_PRIORITY)
}

pub fn strip_synthetic(props: &mut Map<String, Value>) {
    for k in ["ipSecurityRestrictions", "scmIpSecurityRestrictions"] {
        if let Some(Value::Array(a)) = props.get_mut(k) {
            a.retain(|r| !is_synthetic(r));
        }
    }
}

/// Defaults a new site's `config/web` starts with.
pub fn default_site_config() -> Value {
    json!({
        "numberOfWorkers": 1,
        "netFrameworkVersion": "v4.0",
        "http20Enabled": false,
        "minTlsVersion": "1.2",
        "scmMinTlsVersion": "1.2",
        "ftpsState": "AllAllowed",
        "alwaysOn": false,
        "ipSecurityRestrictions": [],
        "scmIpSecurityRestrictions": [],
        "scmIpSecurityRestrictionsUseMain": false,
        "vnetRouteAllEnabled": false,
    })
}

pub fn render_config(r: &Resource) -> Value {
    let mut v = base(r, WEB_CONFIG);
    obj(&mut v).insert("name".into(), json!("web"));
    let p = props_mut(&mut v);
    for (list, default) in [
        (
            "ipSecurityRestrictions",
            "ipSecurityRestrictionsDefaultAction",
        ),
        (
            "scmIpSecurityRestrictions",
            "scmIpSecurityRestrictionsDefaultAction",
        ),
    ] {
        let rules: Vec<Value> = p
            .get(list)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let action = unmatched_action(&rules, p.get(default).and_then(Value::as_str));
        let (name, desc) = if action == "Allow" {
            ("Allow all", "Allow all access")
        } else {
            ("Deny all", "Deny all access")
        };
        let mut out = rules;
        out.push(json!({"ipAddress": "Any", "action": action, "priority": SYNTHETIC_PRIORITY, "name": name, "description": desc}));
        p.insert(list.into(), json!(out));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::strip_read_only;

    #[test]
    fn synthetic_restriction_table() {
        // (rules, default action, expected synthetic action)
        let rule = json!({"ipAddress": "1.2.3.4/32", "action": "Allow", "priority": 100});
        let cases = [
            (vec![], None, "Allow"),
            (vec![rule.clone()], None, "Deny"),
            (vec![rule.clone()], Some("Allow"), "Allow"),
            (vec![], Some("Deny"), "Deny"),
        ];
        for (rules, default, want) in cases {
            assert_eq!(unmatched_action(&rules, default), want);
        }
        let r = Resource {
            id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/config/web"
                .into(),
            rtype: WEB_CONFIG.into(),
            body: json!({"properties": {"ipSecurityRestrictions": [rule], "ipSecurityRestrictionsDefaultAction": "Deny"}}),
            provisioning_state: "Succeeded".into(),
            etag: String::new(),
            pending_op: None,
            firewall_history: vec![],
        };
        let v = render_config(&r);
        let list = v["properties"]["ipSecurityRestrictions"]
            .as_array()
            .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1]["name"], "Deny all");
        assert_eq!(list[1]["priority"], SYNTHETIC_PRIORITY);
        assert_eq!(
            v["properties"]["scmIpSecurityRestrictions"][0]["name"],
            "Allow all"
        );
        // Written back, the synthetic entry is not stored.
        let mut back = v.clone();
        strip_read_only(WEB_CONFIG, &mut back);
        assert_eq!(
            back["properties"]["ipSecurityRestrictions"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}
