//! Cross-resource validation (§7.4): pure functions of the stored estate and the incoming body.

use serde_json::Value;

use crate::cidr::Cidr;
use crate::error::ArmError;
use crate::ids;
use crate::state::State;

pub const NET_SUBNET: &str = "Microsoft.Network/virtualNetworks/subnets";
pub const NET_VNET: &str = "Microsoft.Network/virtualNetworks";
pub const NET_AGW: &str = "Microsoft.Network/applicationGateways";
pub const NET_PIP: &str = "Microsoft.Network/publicIPAddresses";
pub const WEB_SITE: &str = "Microsoft.Web/sites";
pub const WEB_PLAN: &str = "Microsoft.Web/serverfarms";
pub const WEB_CONFIG: &str = "Microsoft.Web/sites/config";
pub const COSMOS: &str = "Microsoft.DocumentDB/databaseAccounts";

pub fn props(v: &Value) -> &Value {
    v.get("properties").unwrap_or(&Value::Null)
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The prefixes a subnet body declares (`addressPrefix` or `addressPrefixes`).
pub fn subnet_prefixes(subnet_props: &Value) -> Vec<String> {
    let mut p = strs(&subnet_props["addressPrefixes"]);
    if let Some(s) = subnet_props["addressPrefix"].as_str() {
        p.push(s.to_string());
    }
    p
}

pub fn delegation_services(subnet_props: &Value) -> Vec<String> {
    let mut v: Vec<String> = subnet_props["delegations"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| {
                    d["properties"]["serviceName"]
                        .as_str()
                        .map(|s| s.to_ascii_lowercase())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn has_service_endpoint(subnet_props: &Value, service: &str) -> bool {
    subnet_props["serviceEndpoints"]
        .as_array()
        .is_some_and(|a| {
            a.iter().any(|e| {
                e["service"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(service))
            })
        })
}

fn id_eq(a: &str, b: &str) -> bool {
    ids::key(a) == ids::key(b)
}

/// Resources using a subnet: sites integrated into it, and gateway IP configurations in it.
pub fn subnet_users(state: &State, subnet_id: &str) -> Vec<String> {
    let mut users = vec![];
    for site in state.of_type(WEB_SITE) {
        if props(&site.body)["virtualNetworkSubnetId"]
            .as_str()
            .is_some_and(|s| id_eq(s, subnet_id))
        {
            users.push(site.id.clone());
        }
    }
    for gw in state.of_type(NET_AGW) {
        for ipc in props(&gw.body)["gatewayIPConfigurations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if ipc["properties"]["subnet"]["id"]
                .as_str()
                .is_some_and(|s| id_eq(s, subnet_id))
            {
                let name = ipc["name"].as_str().unwrap_or("");
                users.push(format!("{}/gatewayIPConfigurations/{name}", gw.id));
            }
        }
    }
    users
}

fn vnet_prefixes(vnet_body: &Value) -> Vec<Cidr> {
    strs(&props(vnet_body)["addressSpace"]["addressPrefixes"])
        .iter()
        .filter_map(|p| Cidr::parse(p))
        .collect()
}

/// Subnet PUT: prefixes inside the VNet, no overlap with siblings, no delegation change while used.
pub fn subnet_put(
    state: &State,
    vnet_id: &str,
    vnet_body: &Value,
    subnet_id: &str,
    body: &Value,
) -> Result<(), ArmError> {
    let p = props(body);
    let name = ids::ArmPath::parse(subnet_id)
        .map(|x| x.name())
        .unwrap_or_default();
    let vnet_name = ids::ArmPath::parse(vnet_id)
        .map(|x| x.name())
        .unwrap_or_default();
    let prefixes = subnet_prefixes(p);
    if prefixes.is_empty() {
        return Err(ArmError::bad_request(
            "NetcfgInvalidSubnet",
            format!("Subnet '{name}' is not valid in virtual network '{vnet_name}'."),
        ));
    }
    let space = vnet_prefixes(vnet_body);
    for pf in &prefixes {
        let Some(c) = Cidr::parse(pf) else {
            return Err(ArmError::bad_request(
                "InvalidAddressPrefixFormat",
                format!(
                    "Address prefix {pf} of resource {subnet_id} is not formatted correctly. It should follow CIDR notation, for example 10.0.0.0/24."
                ),
            ));
        };
        if !space.iter().any(|s| s.contains(&c)) {
            return Err(ArmError::bad_request(
                "NetcfgSubnetRangeOutsideVnet",
                format!(
                    "Subnet '{name}' is not valid because its IP address range is outside the IP address range of virtual network '{vnet_name}'."
                ),
            ));
        }
        for sib in state.children(vnet_id, NET_SUBNET) {
            if id_eq(&sib.id, subnet_id) {
                continue;
            }
            if subnet_prefixes(props(&sib.body))
                .iter()
                .filter_map(|x| Cidr::parse(x))
                .any(|o| o.overlaps(&c))
            {
                return Err(ArmError::bad_request(
                    "NetcfgSubnetRangesOverlap",
                    format!(
                        "Subnet '{name}' is not valid because its IP address range overlaps with that of an existing subnet in virtual network '{vnet_name}'."
                    ),
                ));
            }
        }
    }
    if let Some(existing) = state.get(subnet_id) {
        let before = delegation_services(props(&existing.body));
        let after = delegation_services(p);
        let users = subnet_users(state, subnet_id);
        if before != after && !users.is_empty() {
            return Err(ArmError::bad_request(
                "SubnetDelegationsCannotChangeWhenSubnetUsedByResource",
                format!(
                    "Delegations of subnet {vnet_name}/{name} cannot be changed from [{}] to [{}] because it is being used by the resource {}.",
                    before.join(","),
                    after.join(","),
                    users[0]
                ),
            ));
        }
    }
    Ok(())
}

pub fn subnet_delete(state: &State, subnet_id: &str) -> Result<(), ArmError> {
    let users = subnet_users(state, subnet_id);
    if let Some(u) = users.first() {
        let name = ids::ArmPath::parse(subnet_id)
            .map(|x| x.name())
            .unwrap_or_default();
        return Err(ArmError::bad_request(
            "InUseSubnetCannotBeDeleted",
            format!(
                "Subnet {name} is in use by {u} and cannot be deleted. In order to delete the subnet, delete all the resources within the subnet. See aka.ms/deletesubnet."
            ),
        ));
    }
    Ok(())
}

/// VNet PUT: the address space must still hold every existing subnet that is kept.
pub fn vnet_put(state: &State, vnet_id: &str, body: &Value) -> Result<(), ArmError> {
    let prefixes = strs(&props(body)["addressSpace"]["addressPrefixes"]);
    if prefixes.is_empty() {
        return Err(ArmError::bad_request(
            "InvalidRequestFormat",
            "Cannot parse the request. addressSpace.addressPrefixes is required.",
        ));
    }
    for p in &prefixes {
        if Cidr::parse(p).is_none() {
            return Err(ArmError::bad_request(
                "InvalidAddressPrefixFormat",
                format!(
                    "Address prefix {p} of resource {vnet_id} is not formatted correctly. It should follow CIDR notation, for example 10.0.0.0/24."
                ),
            ));
        }
    }
    let space = vnet_prefixes(body);
    let listed = props(body).get("subnets").is_some();
    if !listed {
        for sub in state.children(vnet_id, NET_SUBNET) {
            for pf in subnet_prefixes(props(&sub.body))
                .iter()
                .filter_map(|x| Cidr::parse(x))
            {
                if !space.iter().any(|s| s.contains(&pf)) {
                    let name = ids::ArmPath::parse(&sub.id)
                        .map(|x| x.name())
                        .unwrap_or_default();
                    let vnet = ids::ArmPath::parse(vnet_id)
                        .map(|x| x.name())
                        .unwrap_or_default();
                    return Err(ArmError::bad_request(
                        "NetcfgSubnetRangeOutsideVnet",
                        format!(
                            "Subnet '{name}' is not valid because its IP address range is outside the IP address range of virtual network '{vnet}'."
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn is_v2(body: &Value) -> bool {
    let tier = props(body)["sku"]["tier"]
        .as_str()
        .or(props(body)["sku"]["name"].as_str())
        .unwrap_or("");
    tier.ends_with("_v2")
}

/// App Gateway PUT (§2.5, §2.6).
pub fn gateway_put(
    state: &State,
    agw_id: &str,
    body: &Value,
    api_version: &str,
    isolated: bool,
) -> Result<(), ArmError> {
    let p = props(body);
    let arr = |k: &str| p[k].as_array().cloned().unwrap_or_default();
    gateway_references(state, agw_id, p)?;
    // A Key Vault certificate is fetched as a user-assigned identity of the gateway (§2.6).
    let key_vault = arr("sslCertificates")
        .iter()
        .any(|c| c["properties"]["keyVaultSecretId"].is_string());
    if key_vault && !has_user_assigned_identity(body) {
        return Err(ArmError::bad_request(
            "ApplicationGatewayKeyVaultSecretRequiresUserAssignedIdentity",
            format!(
                "Application Gateway {agw_id} requires a 'UserAssigned' Identity with 'get' access policy to the referenced KeyVault. Please provide so by using top level 'Identity' property."
            ),
        ));
    }
    gateway_subnets(state, agw_id, body, isolated)?;
    gateway_frontends(state, agw_id, body, isolated)?;
    if api_version >= "2021-08-01" {
        for r in arr("requestRoutingRules") {
            if r["properties"]["priority"].is_null() {
                let name = r["name"].as_str().unwrap_or("");
                return Err(ArmError::bad_request(
                    "ApplicationGatewayRequestRoutingRulePriorityCannotBeEmpty",
                    format!(
                        "Priority for the request routing rule {agw_id}/requestRoutingRules/{name} cannot be empty. All request routing rules should have a priority defined starting from api-version 2021-08-01"
                    ),
                ));
            }
        }
    }
    gateway_listeners(agw_id, &arr("httpListeners"))
}

/// Every `{"id": …}` reference inside the gateway must resolve: children by name, others in the estate.
fn gateway_references(state: &State, agw_id: &str, p: &Value) -> Result<(), ArmError> {
    let mut refs = vec![];
    collect_refs(p, &mut refs);
    for r in &refs {
        let rk = ids::key(r);
        let own = ids::key(agw_id);
        if let Some(rest) = rk.strip_prefix(&format!("{own}/")) {
            let mut it = rest.splitn(2, '/');
            let (coll, name) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
            let found = p.as_object().is_some_and(|o| {
                o.iter().any(|(k, v)| {
                    k.eq_ignore_ascii_case(coll)
                        && v.as_array().is_some_and(|a| {
                            a.iter().any(|c| {
                                c["name"]
                                    .as_str()
                                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
                            })
                        })
                })
            });
            if !found {
                return Err(ArmError::invalid_reference(r, agw_id));
            }
        } else if rk.contains("/providers/microsoft.network/") && state.get(r).is_none() {
            // Only Network references are checked here; Key Vault and identities are not emulated,
            // and a WAF policy reference is checked by `engine/waf.rs` `check_gateway`.
            let t = ids::ArmPath::parse(r)
                .map(|x| x.type_name())
                .unwrap_or_default();
            if [NET_SUBNET, NET_PIP, NET_VNET]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(&t))
            {
                return Err(ArmError::invalid_reference(r, agw_id));
            }
        }
    }
    Ok(())
}

/// The gateway's subnets hold only gateways, and are delegated exactly when it is isolated.
fn gateway_subnets(
    state: &State,
    agw_id: &str,
    body: &Value,
    isolated: bool,
) -> Result<(), ArmError> {
    let gw_subnets: Vec<String> = props(body)["gatewayIPConfigurations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["properties"]["subnet"]["id"].as_str().map(str::to_string))
        .collect();
    for s in &gw_subnets {
        let others: Vec<String> = subnet_users(state, s)
            .into_iter()
            .filter(|u| !ids::key(u).contains("/providers/microsoft.network/applicationgateways/"))
            .collect();
        if !others.is_empty() {
            return Err(ArmError::bad_request(
                "ApplicationGatewaySubnetCannotHaveOtherResources",
                format!(
                    "Subnet {s} cannot be used for application gateway {agw_id} since it has other resources deployed. Subnet used for application gateway can only have other application gateways."
                ),
            ));
        }
        let delegated = state
            .get(s)
            .map(|x| delegation_services(props(&x.body)))
            .unwrap_or_default();
        if is_v2(body)
            && isolated
            && !delegated
                .iter()
                .any(|d| d == "microsoft.network/applicationgateways")
        {
            return Err(ArmError::bad_request(
                "ApplicationGatewayNetworkIsolationRequiresSubnetDelegation",
                format!(
                    "Application Gateway {agw_id} with NetworkIsolation requires subnet delegation. Please delegate subnet {s} to Microsoft.Network/applicationGateways."
                ),
            ));
        }
        if !isolated && !delegated.is_empty() {
            let name = ids::ArmPath::parse(s).map(|x| x.name()).unwrap_or_default();
            return Err(ArmError::bad_request(
                "ApplicationGatewaySubnetCannotHaveDelegations",
                format!("Subnet {name} cannot have delegations configured."),
            ));
        }
    }
    Ok(())
}

/// A v2 gateway needs a public frontend unless isolated; private frontends are static and in
/// their subnet.
fn gateway_frontends(
    state: &State,
    agw_id: &str,
    body: &Value,
    isolated: bool,
) -> Result<(), ArmError> {
    let fes = props(body)["frontendIPConfigurations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let has_public = fes
        .iter()
        .any(|f| f["properties"]["publicIPAddress"]["id"].is_string());
    let tier = props(body)["sku"]["tier"].as_str().unwrap_or("");
    if is_v2(body) && !isolated && !has_public {
        return Err(ArmError::bad_request(
            "ApplicationGatewayPrivateOnlyNotSupported",
            format!(
                "Subscription does not support Application Gateway without Public IP for the selected SKU tier {tier}. Supported SKU tiers are Standard,WAF."
            ),
        ));
    }
    for fe in &fes {
        let fp = &fe["properties"];
        let private = fp["privateIPAddress"].is_string() || fp["subnet"]["id"].is_string();
        if is_v2(body) && private && fp["privateIPAllocationMethod"].as_str() != Some("Static") {
            let name = fe["name"].as_str().unwrap_or("");
            return Err(ArmError::bad_request(
                "ApplicationGatewayFrontendIpPrivateIpAddressInvalidAllocationType",
                format!(
                    "FrontendIpConfiguration {agw_id}/frontendIPConfigurations/{name} of Application Gateway with SKU tier {tier} can only use PrivateIPAddress with IpAllocationMethod as Static."
                ),
            ));
        }
        if let (Some(ip), Some(sid)) =
            (fp["privateIPAddress"].as_str(), fp["subnet"]["id"].as_str())
        {
            let in_subnet = state
                .get(sid)
                .map(|s| subnet_prefixes(props(&s.body)))
                .unwrap_or_default()
                .iter()
                .filter_map(|x| Cidr::parse(x))
                .any(|c| Cidr::parse(ip).is_some_and(|i| c.contains(&i)));
            if !in_subnet {
                return Err(ArmError::bad_request(
                    "PrivateIPAddressNotInSubnet",
                    format!(
                        "IP configuration {agw_id}/frontendIPConfigurations/{} is referencing a private IP address {ip} that does not belong to subnet {sid}.",
                        fe["name"].as_str().unwrap_or("")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Two Basic listeners on one frontend IP + port need distinct host names.
fn gateway_listeners(agw_id: &str, listeners: &[Value]) -> Result<(), ArmError> {
    for (i, a) in listeners.iter().enumerate() {
        for b in listeners.iter().skip(i + 1) {
            let key = |l: &Value| {
                (
                    ids::key(
                        l["properties"]["frontendIPConfiguration"]["id"]
                            .as_str()
                            .unwrap_or(""),
                    ),
                    ids::key(l["properties"]["frontendPort"]["id"].as_str().unwrap_or("")),
                    l["properties"]["hostName"]
                        .as_str()
                        .unwrap_or("")
                        .to_ascii_lowercase(),
                )
            };
            if key(a) == key(b) {
                return Err(ArmError::bad_request(
                    "ApplicationGatewayHttpListenersUsingSameFrontendPort",
                    format!(
                        "Two Http Listeners of Application Gateway {agw_id} are using the same Frontend Port {}.",
                        a["properties"]["frontendPort"]["id"].as_str().unwrap_or("")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `identity.type` includes UserAssigned and at least one identity is named.
fn has_user_assigned_identity(body: &Value) -> bool {
    let identity = &body["identity"];
    identity["type"]
        .as_str()
        .is_some_and(|t| t.to_ascii_lowercase().contains("userassigned"))
        && identity["userAssignedIdentities"]
            .as_object()
            .is_some_and(|m| !m.is_empty())
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if o.len() == 1
                && let Some(Value::String(id)) = o.get("id")
            {
                out.push(id.clone());
                return;
            }
            for (_, x) in o {
                collect_refs(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// Site PUT/PATCH (merged body): plan exists, integration subnet delegated to Microsoft.Web/serverFarms.
pub fn site_put(state: &State, site_id: &str, body: &Value) -> Result<(), ArmError> {
    let p = props(body);
    if let Some(plan) = p["serverFarmId"].as_str() {
        match state.get(plan) {
            None => return Err(ArmError::invalid_reference(plan, site_id)),
            Some(pl) => {
                let tier = pl.body["sku"]["tier"]
                    .as_str()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if p["virtualNetworkSubnetId"].is_string() && (tier == "free" || tier == "shared") {
                    return Err(ArmError::bad_request(
                        "BadRequest",
                        format!(
                            "The App Service plan {plan} (tier {tier}) does not support virtual network integration."
                        ),
                    ));
                }
            }
        }
    }
    if let Some(sid) = p["virtualNetworkSubnetId"].as_str() {
        check_integration_subnet(state, site_id, p["serverFarmId"].as_str(), sid)?;
    }
    Ok(())
}

pub fn check_integration_subnet(
    state: &State,
    site_id: &str,
    plan: Option<&str>,
    sid: &str,
) -> Result<(), ArmError> {
    let Some(subnet) = state.get(sid) else {
        return Err(ArmError::invalid_reference(sid, site_id));
    };
    // IPv4, /28 or larger (§1.5.6).
    if let Some(small) = subnet_prefixes(props(&subnet.body))
        .iter()
        .filter_map(|p| Cidr::parse(p))
        .find(|c| c.len > 28)
    {
        return Err(ArmError::bad_request(
            "BadRequest",
            format!(
                "Subnet {sid} has prefix length /{}; virtual network integration needs a /28 or larger subnet.",
                small.len
            ),
        ));
    }
    // One App Service plan per integration subnet.
    let other_plan = state.of_type(WEB_SITE).find(|s| {
        ids::key(&s.id) != ids::key(site_id)
            && props(&s.body)["virtualNetworkSubnetId"]
                .as_str()
                .is_some_and(|x| id_eq(x, sid))
            && props(&s.body)["serverFarmId"]
                .as_str()
                .zip(plan)
                .is_some_and(|(a, b)| !id_eq(a, b))
    });
    if let Some(other) = other_plan {
        return Err(ArmError::bad_request(
            "BadRequest",
            format!(
                "Subnet {sid} is already used by another App Service plan (site {}). A subnet can be used by only one App Service plan.",
                other.id
            ),
        ));
    }
    if !delegation_services(props(&subnet.body))
        .iter()
        .any(|d| d == "microsoft.web/serverfarms")
    {
        let path = ids::ArmPath::parse(sid);
        let (vnet, name) = path
            .map(|x| (x.names.first().cloned().unwrap_or_default(), x.name()))
            .unwrap_or_default();
        return Err(ArmError::bad_request(
            "BadRequest",
            format!(
                "Subnet {name} in VNET {vnet} is missing a delegation to Microsoft.Web/serverFarms. Please add the delegation and try again."
            ),
        ));
    }
    let gw_users: Vec<String> = subnet_users(state, sid)
        .into_iter()
        .filter(|u| ids::key(u).contains("/applicationgateways/"))
        .collect();
    if let Some(g) = gw_users.first() {
        return Err(ArmError::bad_request(
            "BadRequest",
            format!(
                "Subnet {sid} is in use by {g} and cannot be used for virtual network integration."
            ),
        ));
    }
    Ok(())
}

/// Cosmos PUT/PATCH (merged body). `previous` is the stored body for PATCH.
pub fn cosmos_put(
    state: &State,
    account_id: &str,
    body: &Value,
    previous: Option<&Value>,
    is_put: bool,
) -> Result<(), ArmError> {
    let p = props(body);
    if is_put
        && (p["databaseAccountOfferType"].is_null()
            || p["locations"].as_array().is_none_or(|a| a.is_empty()))
    {
        return Err(ArmError::bad_request(
            "BadRequest",
            "The request must specify properties.databaseAccountOfferType and properties.locations.",
        ));
    }
    for rule in p["ipRules"].as_array().into_iter().flatten() {
        let ip = rule["ipAddressOrRange"].as_str().unwrap_or("");
        let Some(range) = Cidr::parse(ip) else {
            return Err(ArmError::bad_request(
                "BadRequest",
                format!("Invalid IP address or range '{ip}' in ipRules."),
            ));
        };
        // Cosmos DB's IP filter sees only public addresses: the REST spec's IpAddressOrRange
        // (cosmos-db.json, 2025-04-15) says a rule "cannot be contained in one of the following
        // ranges: 10.0.0.0/8, 100.64.0.0/10, 172.16.0.0/12, 192.168.0.0/16, since these are not
        // enforceable by the IP address filter". The error code and text are [U].
        let unenforceable = [
            "10.0.0.0/8",
            "100.64.0.0/10",
            "172.16.0.0/12",
            "192.168.0.0/16",
        ]
        .into_iter()
        .filter_map(Cidr::parse)
        .find(|private| private.contains(&range));
        if unenforceable.is_some() {
            return Err(ArmError::bad_request(
                "BadRequest",
                format!(
                    "IP address or range '{ip}' in ipRules is in a private range, which the IP address filter cannot enforce."
                ),
            ));
        }
    }
    for rule in p["virtualNetworkRules"].as_array().into_iter().flatten() {
        let Some(sid) = rule["id"].as_str() else {
            return Err(ArmError::bad_request(
                "BadRequest",
                "virtualNetworkRules[].id is required.",
            ));
        };
        let ignore = rule["ignoreMissingVNetServiceEndpoint"]
            .as_bool()
            .unwrap_or(false);
        match state.get(sid) {
            None if !ignore => return Err(ArmError::invalid_reference(sid, account_id)),
            Some(s)
                if !ignore && !has_service_endpoint(props(&s.body), "Microsoft.AzureCosmosDB") =>
            {
                return Err(ArmError::bad_request(
                    "BadRequest",
                    format!(
                        "[emulator] Subnet {sid} does not have the service endpoint Microsoft.AzureCosmosDB enabled; enable it or set ignoreMissingVNetServiceEndpoint to true."
                    ),
                ));
            }
            _ => {}
        }
    }
    if let Some(prev) = previous {
        let loc_changed =
            p.get("locations").is_some() && p["locations"] != props(prev)["locations"];
        let others_changed = p.as_object().is_some_and(|o| {
            o.iter()
                .any(|(k, v)| k != "locations" && props(prev).get(k) != Some(v))
        });
        if loc_changed && others_changed {
            return Err(ArmError::bad_request(
                "BadRequest",
                "You cannot simultaneously modify the locations array and other properties of the database account.",
            ));
        }
    }
    Ok(())
}
