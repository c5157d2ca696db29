//! The exposure oracle: from the emulated state alone, which sources can reach each site's main and
//! SCM endpoints and each Cosmos account's data plane, following Azure's documented rules
//! (service endpoints, access restrictions and default actions, SCM inheritance, Cosmos VNet filter,
//! IP rules and bypass, public network access, public frontends on gateways).
//!
//! Sources: `internet`, `azure-services`, `subnet:{id}` for every subnet, and
//! `frontend:{gatewayId}/frontendIPConfigurations/{name}` for every gateway frontend. Each site
//! also gets its own calls judged (`outbound`): whether each Cosmos DB account admits the app.

use serde_json::{Value, json};

use crate::cidr::Cidr;
use crate::enrich::{cosmos_network, site_host};
use crate::ids;
use crate::state::{Resource, State};
use crate::validate::*;

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Internet,
    AzureServices,
    /// One address in Azure's public datacentre ranges: an App Service app's own outbound address.
    AzureAddress,
    /// A subnet, with whether it has the service endpoint the target's service cares about, and
    /// its prefixes (service-endpoint traffic arrives from the subnet's private addresses).
    Subnet {
        id: String,
        endpoint: bool,
        prefixes: Vec<Cidr>,
    },
}

/// A subnet as a traffic source at `now`: service endpoints count once their switch has
/// propagated (the subnet's history), its prefixes are the current ones.
pub fn subnet_source(state: &State, id: &str, service: &str, now_ms: u64) -> Source {
    let body = state.get(id).map(|s| s.body.clone()).unwrap_or_default();
    let effective: Vec<String> = state
        .get(id)
        .and_then(|r| r.firewall_history.iter().rfind(|(t, _)| *t <= now_ms))
        .and_then(|(_, v)| serde_json::from_value(v.clone()).ok())
        .unwrap_or_else(|| crate::engine::endpoint_services(&body));
    Source::Subnet {
        id: id.to_string(),
        endpoint: effective.contains(&service.to_ascii_lowercase()),
        prefixes: subnet_prefixes(props(&body))
            .iter()
            .filter_map(|p| Cidr::parse(p))
            .collect(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Match {
    Full,
    Partial,
    No,
}

fn tag_matches(tag: &str, src: &Source) -> Match {
    let t = tag.trim();
    match src {
        Source::Internet if t.eq_ignore_ascii_case("Internet") => Match::Full,
        // Any Azure service tag (AzureCloud, AzureFrontDoor.Backend, …) admits some Azure service.
        Source::AzureServices if !t.eq_ignore_ascii_case("Internet") => Match::Partial,
        Source::Subnet {
            endpoint: false, ..
        }
        | Source::AzureAddress
            if t.eq_ignore_ascii_case("AzureCloud") =>
        {
            Match::Full
        }
        _ => Match::No,
    }
}

/// How an App Service access-restriction rule matches a source. Header filters are not evaluated
/// (a rule with headers is treated as matching: the oracle errs towards reporting exposure).
fn rule_match(rule: &Value, src: &Source) -> Match {
    if let Some(sid) = rule["vnetSubnetResourceId"].as_str() {
        return match src {
            Source::Subnet {
                id, endpoint: true, ..
            } if ids::key(id) == ids::key(sid) => Match::Full,
            _ => Match::No,
        };
    }
    let ip = rule["ipAddress"].as_str().unwrap_or("");
    if ip.eq_ignore_ascii_case("Any") {
        return Match::Full;
    }
    if rule["tag"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case("ServiceTag"))
    {
        return ip
            .split(',')
            .map(|t| tag_matches(t, src))
            .fold(Match::No, best);
    }
    ip.split(',')
        .map(|part| {
            let Some(c) = Cidr::parse(part) else {
                return Match::No;
            };
            match src {
                // Service-endpoint traffic carries the subnet's private source address, so an IP
                // rule covering that range matches it [U]; the oracle errs towards exposure.
                Source::Subnet {
                    endpoint: true,
                    prefixes,
                    ..
                } => {
                    if !prefixes.is_empty() && prefixes.iter().all(|p| c.contains(p)) {
                        Match::Full
                    } else if prefixes.iter().any(|p| c.overlaps(p)) {
                        Match::Partial
                    } else {
                        Match::No
                    }
                }
                _ if c.len == 0 => Match::Full,
                Source::Internet if !c.is_private() => Match::Partial,
                _ => Match::No,
            }
        })
        .fold(Match::No, best)
}

fn best(a: Match, b: Match) -> Match {
    match (a, b) {
        (Match::Full, _) | (_, Match::Full) => Match::Full,
        (Match::Partial, _) | (_, Match::Partial) => Match::Partial,
        _ => Match::No,
    }
}

/// Evaluates an access-restriction list (rules by ascending priority, first full match decides).
/// Returns the reason when the source gets in.
pub fn restrictions_admit(
    rules: &[Value],
    default_action: Option<&str>,
    src: &Source,
) -> Option<String> {
    let mut sorted: Vec<&Value> = rules
        .iter()
        .filter(|r| !crate::enrich::is_synthetic(r))
        .collect();
    sorted.sort_by_key(|r| r["priority"].as_i64().unwrap_or(i64::MAX));
    let owned: Vec<Value> = sorted.iter().map(|r| (*r).clone()).collect();
    for r in &sorted {
        let allow = !r["action"]
            .as_str()
            .is_some_and(|a| a.eq_ignore_ascii_case("Deny"));
        let name = r["name"].as_str().unwrap_or("(unnamed)");
        match (rule_match(r, src), allow) {
            (Match::Full, true) => return Some(format!("allowed by rule '{name}'")),
            (Match::Partial, true) => {
                return Some(format!(
                    "partly allowed by rule '{name}' ({})",
                    r["ipAddress"].as_str().unwrap_or("")
                ));
            }
            (Match::Full, false) => return None,
            _ => {}
        }
    }
    match crate::enrich::unmatched_action(&owned, default_action) {
        "Allow" => Some(if owned.is_empty() && default_action.is_none() {
            "no access restrictions (allow all)".to_string()
        } else {
            "unmatched traffic allowed (default action Allow)".to_string()
        }),
        _ => None,
    }
}

/// Cosmos data-plane admission for a source, from the account's effective network settings.
pub fn cosmos_admits(net: &Value, src: &Source) -> Option<String> {
    if net["publicNetworkAccess"]
        .as_str()
        .is_some_and(|p| !p.eq_ignore_ascii_case("Enabled"))
    {
        return None;
    }
    let ip_rules: Vec<String> = net["ipRules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["ipAddressOrRange"].as_str().map(str::to_string))
        .collect();
    let vnet_filter = net["isVirtualNetworkFilterEnabled"]
        .as_bool()
        .unwrap_or(false);
    if ip_rules.is_empty() && !vnet_filter {
        return Some("no firewall: all networks allowed".into());
    }
    let azure_dc = ip_rules.iter().any(|r| r.trim() == "0.0.0.0");
    match src {
        Source::Internet => ip_rules
            .iter()
            .find(|r| r.trim() != "0.0.0.0" && Cidr::parse(r).is_some_and(|c| !c.is_private()))
            .map(|r| format!("partly allowed by IP rule {r}")),
        Source::AzureServices => {
            if azure_dc {
                Some("IP rule 0.0.0.0 accepts connections from within public Azure datacenters".into())
            } else if net["networkAclBypass"].as_str().is_some_and(|b| b.eq_ignore_ascii_case("AzureServices")) {
                Some("networkAclBypass AzureServices".into())
            } else {
                None
            }
        }
        Source::Subnet {
            id, endpoint: true, ..
        } => {
            let listed = net["virtualNetworkRules"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["id"].as_str().is_some_and(|x| ids::key(x) == ids::key(id)));
            (vnet_filter && listed).then(|| "virtual network rule (service endpoint Microsoft.AzureCosmosDB)".to_string())
        }
        Source::Subnet { endpoint: false, .. } => azure_dc.then(|| {
            "no Microsoft.AzureCosmosDB endpoint: arrives from an Azure public IP, accepted by IP rule 0.0.0.0".to_string()
        }),
        // The app's own outbound addresses are not assigned by the emulator, so an IP rule naming
        // them is not evaluated; only `0.0.0.0` covers them [U].
        Source::AzureAddress => azure_dc.then(|| {
            "an Azure public address, accepted by IP rule 0.0.0.0".to_string()
        }),
    }
}

/// Where a site's calls to Cosmos DB come from, and whether each account admits them. With
/// regional VNet integration, "If all traffic routing isn't enabled, only private traffic
/// (RFC1918) and service endpoints configured on the integration subnet is sent into the virtual
/// network" (Microsoft Learn, "Integrate your app with an Azure virtual network",
/// `articles/app-service/overview-vnet-integration.md`), so the app's calls come from the subnet,
/// a service-endpoint source once the endpoint's switch has propagated; otherwise (not
/// integrated, or no `Microsoft.AzureCosmosDB` endpoint yet) from App Service's outbound
/// addresses, inside Azure's public ranges.
fn site_outbound(state: &State, site: &Resource, now_ms: u64) -> Value {
    let subnet = props(&site.body)["virtualNetworkSubnetId"]
        .as_str()
        .filter(|s| !s.is_empty() && state.get(s).is_some());
    let (name, src) = match subnet {
        Some(sid) => (
            format!("subnet:{sid}"),
            subnet_source(state, sid, "Microsoft.AzureCosmosDB", now_ms),
        ),
        None => ("azure-address".to_string(), Source::AzureAddress),
    };
    let mut cosmos = serde_json::Map::new();
    for acct in state.of_type(COSMOS) {
        let (net, _) = effective_cosmos(acct, now_ms);
        let verdict = cosmos_admits(&net, &src);
        cosmos.insert(
            acct.id.clone(),
            json!({"reachable": verdict.is_some(), "reason": verdict.unwrap_or_else(|| "refused by the firewall it applies now".into())}),
        );
    }
    let endpoint = matches!(src, Source::Subnet { endpoint: true, .. });
    json!({"source": name, "serviceEndpoint": endpoint, "cosmos": cosmos})
}

/// The Cosmos network settings the data plane enforces at `now` (firewall changes propagate late).
pub fn effective_cosmos(r: &Resource, now_ms: u64) -> (Value, bool) {
    let current = cosmos_network(props(&r.body));
    let effective = r
        .firewall_history
        .iter()
        .rfind(|(t, _)| *t <= now_ms)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| current.clone());
    let pending = r.firewall_history.iter().any(|(t, _)| *t > now_ms);
    (effective, pending)
}

fn subnets(state: &State) -> Vec<&Resource> {
    state.of_type(NET_SUBNET).collect()
}

fn entry(source: String, reason: String) -> Value {
    json!({"source": source, "reason": reason})
}

fn site_target(state: &State, site: &Resource, scm: bool, now_ms: u64) -> Value {
    let sp = props(&site.body);
    let cfg = state
        .get(&format!("{}/config/web", site.id))
        .map(|c| props(&c.body).clone())
        .unwrap_or(json!({}));
    let disabled = sp["publicNetworkAccess"]
        .as_str()
        .is_some_and(|p| p.eq_ignore_ascii_case("Disabled"));
    let use_main = cfg["scmIpSecurityRestrictionsUseMain"]
        .as_bool()
        .unwrap_or(false);
    let (list, default) = if !scm || use_main {
        (
            "ipSecurityRestrictions",
            "ipSecurityRestrictionsDefaultAction",
        )
    } else {
        (
            "scmIpSecurityRestrictions",
            "scmIpSecurityRestrictionsDefaultAction",
        )
    };
    let rules: Vec<Value> = cfg[list].as_array().cloned().unwrap_or_default();
    let default_action = cfg[default].as_str();
    let admit = |src: &Source| -> Option<String> {
        if disabled {
            return None;
        }
        restrictions_admit(&rules, default_action, src).map(|r| {
            if scm && use_main {
                format!("{r} (SCM uses the main site's rules)")
            } else {
                r
            }
        })
    };
    let mut reach = vec![];
    if let Some(r) = admit(&Source::Internet) {
        reach.push(entry("internet".into(), r));
    }
    if let Some(r) = admit(&Source::AzureServices) {
        reach.push(entry("azure-services".into(), r));
    }
    for s in subnets(state) {
        if let Some(r) = admit(&subnet_source(state, &s.id, "Microsoft.Web", now_ms)) {
            reach.push(entry(format!("subnet:{}", s.id), r));
        }
    }
    // Gateway frontends whose rules forward to this host.
    let host = site_host(&site.id);
    let host = if scm {
        host.replace(".azurewebsites.net", ".scm.azurewebsites.net")
    } else {
        host
    };
    let mut internet_via_gateway = false;
    for gw in state.of_type(NET_AGW) {
        if gw.provisioning_state == "Failed" {
            continue;
        }
        let gp = props(&gw.body);
        let gw_subnet = gp["gatewayIPConfigurations"][0]["properties"]["subnet"]["id"]
            .as_str()
            .unwrap_or("");
        let Some(why) = admit(&subnet_source(state, gw_subnet, "Microsoft.Web", now_ms)) else {
            continue;
        };
        for fe in gp["frontendIPConfigurations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let fe_name = fe["name"].as_str().unwrap_or("");
            if gateway_forwards(gp, fe_name, &host) {
                let public = fe["properties"]["publicIPAddress"]["id"].is_string();
                internet_via_gateway |= public;
                reach.push(json!({
                    "source": format!("frontend:{}/frontendIPConfigurations/{fe_name}", gw.id),
                    "public": public,
                    "reason": format!("gateway forwards {host}; gateway subnet {why}"),
                }));
            }
        }
    }
    let internet_direct = reach.iter().any(|e| e["source"] == "internet");
    json!({
        "endpoint": host,
        "reachableFrom": reach,
        "internetDirect": internet_direct,
        "internetViaGateway": internet_via_gateway,
    })
}

/// The lower-cased name a gateway sub-resource reference (`{"id": …/listeners/NAME}`) points
/// at, or "" when it has none: a gateway's parts refer to each other by ID.
pub fn ref_name(v: &Value) -> String {
    v["id"]
        .as_str()
        .and_then(|s| s.rsplit('/').next())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Whether a routing rule on frontend `fe` sends traffic to a backend pool that contains `host`.
fn gateway_forwards(gp: &Value, fe: &str, host: &str) -> bool {
    let listeners: Vec<String> = gp["httpListeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| ref_name(&l["properties"]["frontendIPConfiguration"]).eq_ignore_ascii_case(fe))
        .filter_map(|l| l["name"].as_str().map(|s| s.to_ascii_lowercase()))
        .collect();
    gp["requestRoutingRules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| {
            listeners.contains(&ref_name(&r["properties"]["httpListener"])) && {
                let pool = ref_name(&r["properties"]["backendAddressPool"]);
                gp["backendAddressPools"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| {
                        p["name"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case(&pool))
                            && p["properties"]["backendAddresses"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .any(|a| {
                                    a["fqdn"]
                                        .as_str()
                                        .is_some_and(|f| f.eq_ignore_ascii_case(host))
                                })
                    })
            }
        })
}

fn cosmos_target(state: &State, acct: &Resource, now_ms: u64) -> Value {
    let (net, pending) = effective_cosmos(acct, now_ms);
    let mut reach = vec![];
    for (name, src) in [
        ("internet", Source::Internet),
        ("azure-services", Source::AzureServices),
    ] {
        if let Some(r) = cosmos_admits(&net, &src) {
            reach.push(entry(name.into(), r));
        }
    }
    for s in subnets(state) {
        if let Some(r) = cosmos_admits(
            &net,
            &subnet_source(state, &s.id, "Microsoft.AzureCosmosDB", now_ms),
        ) {
            reach.push(entry(format!("subnet:{}", s.id), r));
        }
    }
    let internet = reach.iter().any(|e| e["source"] == "internet");
    json!({
        "endpoint": format!("https://{}.documents.azure.com:443/", ids::ArmPath::parse(&acct.id).map(|p| p.name()).unwrap_or_default().to_ascii_lowercase()),
        "reachableFrom": reach,
        "internetDirect": internet,
        "effectiveNetwork": net,
        "pendingFirewallChange": pending,
    })
}

/// The whole verdict: `{"sources":[…], "sites":{id:{main,scm}}, "cosmos":{id:{dataPlane}}}`.
pub fn exposure(state: &State, now_ms: u64) -> Value {
    let mut sources = vec![json!({"id": "internet"}), json!({"id": "azure-services"})];
    for s in subnets(state) {
        let ses: Vec<Value> = props(&s.body)["serviceEndpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["service"].clone())
            .collect();
        sources.push(json!({"id": format!("subnet:{}", s.id), "serviceEndpoints": ses}));
    }
    for gw in state.of_type(NET_AGW) {
        for fe in props(&gw.body)["frontendIPConfigurations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            sources.push(json!({
                "id": format!("frontend:{}/frontendIPConfigurations/{}", gw.id, fe["name"].as_str().unwrap_or("")),
                "public": fe["properties"]["publicIPAddress"]["id"].is_string(),
                "privateIPAddress": fe["properties"]["privateIPAddress"],
            }));
        }
    }
    let mut sites = serde_json::Map::new();
    for site in state.of_type(WEB_SITE) {
        sites.insert(
            site.id.clone(),
            json!({"main": site_target(state, site, false, now_ms), "scm": site_target(state, site, true, now_ms),
                   "outbound": site_outbound(state, site, now_ms)}),
        );
    }
    let mut cosmos = serde_json::Map::new();
    for acct in state.of_type(COSMOS) {
        cosmos.insert(
            acct.id.clone(),
            json!({"dataPlane": cosmos_target(state, acct, now_ms)}),
        );
    }
    json!({"sources": sources, "sites": sites, "cosmos": cosmos})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(ip: &str, action: &str, priority: i64) -> Value {
        json!({"name": format!("{action}-{ip}"), "ipAddress": ip, "action": action, "priority": priority})
    }

    #[test]
    fn restriction_evaluation_table() {
        let agw = || Source::Subnet {
            id: "/s/agw".into(),
            endpoint: true,
            prefixes: vec![Cidr::parse("10.20.1.0/24").unwrap()],
        };
        let plain = || Source::Subnet {
            id: "/s/plain".into(),
            endpoint: false,
            prefixes: vec![Cidr::parse("10.20.9.0/24").unwrap()],
        };
        let vnet_rule = json!({"name": "agw", "vnetSubnetResourceId": "/S/AGW", "action": "Allow", "priority": 100});
        let tag = json!({"name": "fd", "tag": "ServiceTag", "ipAddress": "AzureFrontDoor.Backend", "action": "Allow", "priority": 100});
        // (rules, default action, source, admitted?)
        let cases: Vec<(Vec<Value>, Option<&str>, Source, bool)> = vec![
            (vec![], None, Source::Internet, true),
            (vec![vnet_rule.clone()], None, Source::Internet, false),
            (vec![vnet_rule.clone()], None, agw(), true),
            (
                vec![vnet_rule.clone()],
                Some("Allow"),
                Source::Internet,
                true,
            ),
            (
                vec![rule("203.0.113.0/24", "Allow", 100)],
                Some("Deny"),
                Source::Internet,
                true,
            ),
            (
                vec![rule("203.0.113.0/24", "Allow", 100)],
                Some("Deny"),
                Source::AzureServices,
                false,
            ),
            // A partial deny does not stop the rest of the internet; a full one does.
            (
                vec![rule("203.0.113.0/24", "Deny", 100)],
                Some("Allow"),
                Source::Internet,
                true,
            ),
            (
                vec![rule("0.0.0.0/0", "Deny", 100), rule("Any", "Allow", 200)],
                None,
                Source::Internet,
                false,
            ),
            (vec![rule("Any", "Deny", 100)], Some("Allow"), agw(), false),
            // Priority, not list order, decides.
            (
                vec![rule("Any", "Allow", 200), rule("Any", "Deny", 100)],
                None,
                Source::Internet,
                false,
            ),
            (vec![tag.clone()], Some("Deny"), Source::AzureServices, true),
            (vec![tag], Some("Deny"), Source::Internet, false),
            // Service-endpoint traffic carries private addresses; a private IP rule over them matches.
            (
                vec![rule("10.20.0.0/16", "Allow", 100)],
                Some("Deny"),
                agw(),
                true,
            ),
            (
                vec![rule("10.20.0.0/16", "Allow", 100)],
                Some("Deny"),
                plain(),
                false,
            ),
            (
                vec![rule("10.20.0.0/16", "Allow", 100)],
                Some("Deny"),
                Source::Internet,
                false,
            ),
            (
                vec![
                    json!({"name": "cloud", "tag": "ServiceTag", "ipAddress": "AzureCloud", "action": "Allow", "priority": 1}),
                ],
                Some("Deny"),
                plain(),
                true,
            ),
        ];
        for (i, (rules, default, src, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                restrictions_admit(&rules, default, &src).is_some(),
                want,
                "case {i}: {src:?}"
            );
        }
    }

    #[test]
    fn cosmos_admission_table() {
        let with_ep = || Source::Subnet {
            id: "/s/int".into(),
            endpoint: true,
            prefixes: vec![],
        };
        let no_ep = || Source::Subnet {
            id: "/s/int".into(),
            endpoint: false,
            prefixes: vec![],
        };
        let net = |v: Value| {
            let mut base = json!({"publicNetworkAccess": "Enabled", "isVirtualNetworkFilterEnabled": false, "virtualNetworkRules": [], "ipRules": [], "networkAclBypass": "None"});
            crate::enrich::merge(&mut base, &v);
            base
        };
        let vnet_on = json!({"isVirtualNetworkFilterEnabled": true, "virtualNetworkRules": [{"id": "/S/INT"}]});
        let cases: Vec<(Value, Source, bool)> = vec![
            (net(json!({})), Source::Internet, true),
            (
                net(json!({"publicNetworkAccess": "Disabled"})),
                Source::Internet,
                false,
            ),
            (net(vnet_on.clone()), Source::Internet, false),
            (net(vnet_on.clone()), with_ep(), true),
            (net(vnet_on.clone()), no_ep(), false),
            (
                net(json!({"ipRules": [{"ipAddressOrRange": "0.0.0.0"}]})),
                Source::AzureServices,
                true,
            ),
            (
                net(json!({"ipRules": [{"ipAddressOrRange": "0.0.0.0"}]})),
                Source::Internet,
                false,
            ),
            (
                net(json!({"ipRules": [{"ipAddressOrRange": "0.0.0.0"}]})),
                no_ep(),
                true,
            ),
            (
                net(json!({"ipRules": [{"ipAddressOrRange": "0.0.0.0"}]})),
                with_ep(),
                false,
            ),
            (
                net(json!({"ipRules": [{"ipAddressOrRange": "198.51.100.7"}]})),
                Source::Internet,
                true,
            ),
            (
                net(json!({"ipRules": [{"ipAddressOrRange": "10.0.0.0/8"}]})),
                Source::Internet,
                false,
            ),
            (
                net(
                    json!({"isVirtualNetworkFilterEnabled": true, "networkAclBypass": "AzureServices"}),
                ),
                Source::AzureServices,
                true,
            ),
            (
                net(json!({"isVirtualNetworkFilterEnabled": true})),
                Source::AzureServices,
                false,
            ),
        ];
        for (i, (n, src, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                cosmos_admits(&n, &src).is_some(),
                want,
                "case {i}: {n} {src:?}"
            );
        }
    }
}
