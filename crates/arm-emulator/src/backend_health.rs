//! Application Gateway backend health (`ApplicationGateways_BackendHealth`), computed from the
//! emulated state: for every backend pool and the HTTP settings a routing rule pairs it with, each
//! server's `health` and `healthProbeLog`, as the gateway's probe would find it.
//!
//! Sources. Shape and enum: `Azure/azure-rest-api-specs`
//! `specification/network/resource-manager/Microsoft.Network/stable/2025-01-01/applicationGateway.json`,
//! `ApplicationGatewayBackendHealth` → `backendAddressPools[]{backendAddressPool,
//! backendHttpSettingsCollection[]{backendHttpSettings, servers[]{address, health, healthProbeLog}}}`,
//! `health` one of `Unknown`, `Up`, `Down`, `Partial`, `Draining` (the portal shows Healthy and
//! Unhealthy). Messages: Microsoft Learn, "Troubleshoot backend health issues in Application
//! Gateway" (`articles/application-gateway/application-gateway-backend-health-troubleshooting.md`),
//! quoted below. That App Service answers a caller its access restrictions refuse with 403:
//! Learn, "Set up Azure App Service access restrictions" ("If the address isn't allowed access
//! based on the rules in the list, the service replies with an HTTP 403 status code").
//!
//! Not modelled: the FHIR server itself (there is no data plane, so a reachable, running app
//! answers the probe path with 200 [U]); a stopped app (the `stop` action is not emulated); NSGs
//! and routes (not emulated).

use serde_json::{Value, json};

use crate::enrich::site_host;
use crate::exposure::{Source, ref_name, restrictions_admit, subnet_source};
use crate::state::State;
use crate::validate::*;

/// Learn, "HTTP status code mismatch" (`{HTTPStatusCode0}`: the probe's accepted codes).
fn status_mismatch(expected: &str, received: u16) -> String {
    format!(
        "Status code of the backend's HTTP response did not match the probe setting. Expected:{expected} Received:{received}."
    )
}

/// Learn, "Common Name (CN) doesn't match", the v2 message.
pub const CN_MISMATCH: &str = "The Common Name of the leaf certificate presented by the backend server does not match the Probe or Backend Setting hostname of the application gateway.";

/// Learn, "DNS resolution error".
pub const DNS_ERROR: &str = "Application Gateway could not create a probe for this backend. This usually happens when the FQDN of the backend has not been entered correctly.";

/// Learn, "Backend health status: Unknown".
pub const UNKNOWN: &str = "The backend health status could not be retrieved. This happens when an NSG/UDR/Firewall on the application gateway subnet is blocking traffic on ports 65503-65534 in case of v1 SKU, and ports 65200-65535 in case of the v2 SKU or if the FQDN configured in the backend pool could not be resolved to an IP address. To learn more visit - https://aka.ms/UnknownBackendHealth.";

/// What the portal shows for a healthy server [U: the API's wording is not documented].
pub const SUCCESS: &str = "Success. Received 200 status code";

/// The whole `ApplicationGatewayBackendHealth` of gateway `gateway_id` at `now_ms`.
pub fn backend_health(state: &State, gateway_id: &str, now_ms: u64) -> Value {
    let Some(gw) = state.get(gateway_id) else {
        return json!({"backendAddressPools": []});
    };
    let gp = props(&gw.body);
    let named = |coll: &str, name: &str| {
        gp[coll]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| {
                x["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .cloned()
    };
    // Pools with the settings routing rules pair them with [U: whether Azure also lists pools no
    // rule uses].
    let mut pairs: Vec<(String, String)> = vec![];
    for r in gp["requestRoutingRules"].as_array().into_iter().flatten() {
        let pair = (
            ref_name(&r["properties"]["backendAddressPool"]),
            ref_name(&r["properties"]["backendHttpSettings"]),
        );
        if !pair.0.is_empty() && !pair.1.is_empty() && !pairs.contains(&pair) {
            pairs.push(pair);
        }
    }
    let mut pools: Vec<Value> = vec![];
    for (pool_name, settings_name) in pairs {
        let (Some(pool), Some(settings)) = (
            named("backendAddressPools", &pool_name),
            named("backendHttpSettingsCollection", &settings_name),
        ) else {
            continue;
        };
        let probe = named("probes", &ref_name(&settings["properties"]["probe"]));
        let servers: Vec<Value> = pool["properties"]["backendAddresses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let address = a["fqdn"].as_str().or(a["ipAddress"].as_str()).unwrap_or("");
                let (health, log) = if gw.provisioning_state != "Succeeded" {
                    ("Unknown", UNKNOWN.to_string())
                } else {
                    probe_server(state, gp, &settings, probe.as_ref(), address, now_ms)
                };
                json!({"address": address, "health": health, "healthProbeLog": log})
            })
            .collect();
        let sid = |coll: &str, name: &str| json!({"id": format!("{}/{coll}/{}", gw.id, name)});
        let pool_name = pool["name"].as_str().unwrap_or(&pool_name).to_string();
        let settings_name = settings["name"]
            .as_str()
            .unwrap_or(&settings_name)
            .to_string();
        let entry = json!({"backendHttpSettings": sid("backendHttpSettingsCollection", &settings_name), "servers": servers});
        match pools.iter_mut().find(|p| {
            p["backendAddressPool"]["id"].as_str()
                == sid("backendAddressPools", &pool_name)["id"].as_str()
        }) {
            Some(p) => p["backendHttpSettingsCollection"]
                .as_array_mut()
                .expect("array")
                .push(entry),
            None => pools.push(json!({
                "backendAddressPool": sid("backendAddressPools", &pool_name),
                "backendHttpSettingsCollection": [entry],
            })),
        }
    }
    json!({"backendAddressPools": pools})
}

/// The host name the probe sends (and, for HTTPS, the SNI it checks the certificate against):
/// the probe's `host`, or with `pickHostNameFromBackendHttpSettings` the settings' `hostName`, or
/// with their `pickHostNameFromBackendAddress` the server's address (Learn, "Application Gateway
/// health probes overview"; `ApplicationGatewayProbePropertiesFormat`). Without a custom probe, the
/// default probe goes to 127.0.0.1 unless the settings name a host (Learn, troubleshooting page).
fn probe_host(settings: &Value, probe: Option<&Value>, address: &str) -> String {
    let sp = &settings["properties"];
    let from_settings = || {
        if sp["pickHostNameFromBackendAddress"].as_bool() == Some(true) {
            address.to_string()
        } else {
            sp["hostName"].as_str().unwrap_or("127.0.0.1").to_string()
        }
    };
    match probe.map(|p| &p["properties"]) {
        Some(pp) if pp["pickHostNameFromBackendHttpSettings"].as_bool() == Some(true) => {
            from_settings()
        }
        Some(pp) => pp["host"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(from_settings),
        None => from_settings(),
    }
    .to_ascii_lowercase()
}

/// One server as the probe finds it: `(health, healthProbeLog)`.
fn probe_server(
    state: &State,
    gp: &Value,
    settings: &Value,
    probe: Option<&Value>,
    address: &str,
    now_ms: u64,
) -> (&'static str, String) {
    let Some(site) = state
        .of_type(WEB_SITE)
        .find(|s| site_host(&s.id).eq_ignore_ascii_case(address))
    else {
        // No other host exists in the emulated world [U: an IP address would time out instead].
        return ("Down", DNS_ERROR.to_string());
    };
    let host = probe_host(settings, probe, address);
    let https = settings["properties"]["protocol"]
        .as_str()
        .is_some_and(|p| p.eq_ignore_ascii_case("Https"));
    // App Service presents its *.azurewebsites.net wildcard certificate for the default domain
    // [U: custom domains with their own binding are not emulated].
    let wildcard = host
        .strip_suffix(".azurewebsites.net")
        .is_some_and(|label| !label.is_empty() && !label.contains('.'));
    if https && !wildcard {
        return ("Down", CN_MISMATCH.to_string());
    }
    let expected = probe
        .and_then(|p| p["properties"]["match"]["statusCodes"].as_array())
        .map(|c| {
            c.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "200-399".to_string());
    // App Service routes by Host: another app's name finds no app here [O: "404 Web app not found"].
    if host != site_host(&site.id) {
        return ("Down", status_mismatch(&expected, 404));
    }
    let gateway_subnet = gp["gatewayIPConfigurations"][0]["properties"]["subnet"]["id"]
        .as_str()
        .unwrap_or("");
    let src = subnet_source(state, gateway_subnet, "Microsoft.Web", now_ms);
    if !main_site_admits(state, &site.id, &src) {
        return ("Down", status_mismatch(&expected, 403));
    }
    ("Up", SUCCESS.to_string())
}

/// Whether the main site's access restrictions (and `publicNetworkAccess`) let `src` in.
fn main_site_admits(state: &State, site_id: &str, src: &Source) -> bool {
    let disabled = state.get(site_id).is_some_and(|s| {
        props(&s.body)["publicNetworkAccess"]
            .as_str()
            .is_some_and(|p| p.eq_ignore_ascii_case("Disabled"))
    });
    if disabled {
        return false;
    }
    let cfg = state
        .get(&format!("{site_id}/config/web"))
        .map(|c| props(&c.body).clone())
        .unwrap_or(json!({}));
    let rules: Vec<Value> = cfg["ipSecurityRestrictions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    restrictions_admit(
        &rules,
        cfg["ipSecurityRestrictionsDefaultAction"].as_str(),
        src,
    )
    .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Resource;

    const SUB: &str = "/subscriptions/s/resourceGroups/rg/providers";

    fn res(id: &str, rtype: &str, body: Value) -> (String, Resource) {
        (
            crate::ids::key(id),
            Resource {
                id: id.into(),
                rtype: rtype.into(),
                body,
                provisioning_state: "Succeeded".into(),
                etag: String::new(),
                pending_op: None,
                firewall_history: vec![],
            },
        )
    }

    /// A gateway in front of `fhir.azurewebsites.net`, the site's rules, and the gateway
    /// settings' host name override (`None`: pick it from the backend address).
    fn world(rules: Value, default_action: &str, host_override: Option<&str>) -> State {
        let subnet = format!("{SUB}/Microsoft.Network/virtualNetworks/v/subnets/agw");
        let gw = format!("{SUB}/Microsoft.Network/applicationGateways/agw");
        let site = format!("{SUB}/Microsoft.Web/sites/fhir");
        let r = |c: &str, n: &str| json!({"id": format!("{gw}/{c}/{n}")});
        let settings = match host_override {
            None => {
                json!({"port": 443, "protocol": "Https", "pickHostNameFromBackendAddress": true, "probe": r("probes", "p")})
            }
            Some(h) => {
                json!({"port": 443, "protocol": "Https", "hostName": h, "probe": r("probes", "p")})
            }
        };
        let mut s = State::default();
        s.resources.extend([
            res(&subnet, NET_SUBNET, json!({"properties": {"addressPrefix": "10.20.1.0/26", "serviceEndpoints": [{"service": "Microsoft.Web"}]}})),
            res(&site, WEB_SITE, json!({"properties": {}})),
            res(&format!("{site}/config/web"), WEB_CONFIG, json!({"properties": {"ipSecurityRestrictions": rules, "ipSecurityRestrictionsDefaultAction": default_action}})),
            res(&gw, NET_AGW, json!({"properties": {
                "gatewayIPConfigurations": [{"name": "ip", "properties": {"subnet": {"id": subnet}}}],
                "backendAddressPools": [{"name": "pool", "properties": {"backendAddresses": [{"fqdn": "fhir.azurewebsites.net"}]}}],
                "backendHttpSettingsCollection": [{"name": "https", "properties": settings}],
                "probes": [{"name": "p", "properties": {"protocol": "Https", "path": "/metadata", "pickHostNameFromBackendHttpSettings": true, "match": {"statusCodes": ["200-399"]}}}],
                "requestRoutingRules": [{"name": "rule", "properties": {"backendAddressPool": r("backendAddressPools", "pool"), "backendHttpSettings": r("backendHttpSettingsCollection", "https")}}],
            }})),
        ]);
        s
    }

    fn server(s: &State) -> Value {
        let h = backend_health(
            s,
            &format!("{SUB}/Microsoft.Network/applicationGateways/agw"),
            0,
        );
        h["backendAddressPools"][0]["backendHttpSettingsCollection"][0]["servers"][0].clone()
    }

    #[test]
    fn the_probe_is_judged_by_the_sites_rules_the_certificate_and_the_host() {
        let gw_rule = json!([{"name": "agw", "vnetSubnetResourceId": format!("{SUB}/Microsoft.Network/virtualNetworks/v/subnets/agw"), "action": "Allow", "priority": 100}]);
        let deny_gw = json!([{"name": "no", "vnetSubnetResourceId": format!("{SUB}/Microsoft.Network/virtualNetworks/v/subnets/agw"), "action": "Deny", "priority": 50}, gw_rule[0].clone()]);
        // (rules, default action, host override) -> (health, log contains)
        let table = [
            (gw_rule.clone(), "Deny", None, "Up", "Success"),
            (json!([]), "Allow", None, "Up", "Success"),
            (
                json!([]),
                "Deny",
                None,
                "Down",
                "Expected:200-399 Received:403",
            ),
            (deny_gw, "Deny", None, "Down", "Received:403"),
            (
                gw_rule.clone(),
                "Deny",
                Some("fhir.trust.nhs.uk"),
                "Down",
                "Common Name",
            ),
            (
                gw_rule.clone(),
                "Deny",
                Some("other.azurewebsites.net"),
                "Down",
                "Received:404",
            ),
            (
                gw_rule,
                "Deny",
                Some("fhir.azurewebsites.net"),
                "Up",
                "Success",
            ),
        ];
        for (rules, default, host, health, log) in table {
            let got = server(&world(rules.clone(), default, host));
            assert_eq!(got["health"], health, "{rules} {default} {host:?}: {got}");
            assert!(
                got["healthProbeLog"].as_str().unwrap().contains(log),
                "{got}"
            );
            assert_eq!(got["address"], "fhir.azurewebsites.net");
        }
    }

    #[test]
    fn a_gateway_being_written_reports_unknown_and_an_unknown_host_a_dns_error() {
        let mut s = world(json!([]), "Allow", None);
        let gw = format!("{SUB}/Microsoft.Network/applicationGateways/agw");
        s.get_mut(&gw).unwrap().provisioning_state = "Updating".into();
        assert_eq!(server(&s)["health"], "Unknown");
        let mut s = world(json!([]), "Allow", None);
        s.get_mut(&gw).unwrap().body["properties"]["backendAddressPools"][0]["properties"]["backendAddresses"]
            [0]["fqdn"] = json!("elsewhere.example");
        assert_eq!(server(&s)["healthProbeLog"], DNS_ERROR);
    }
}
