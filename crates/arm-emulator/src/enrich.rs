//! Read-back enrichment (§7.5): what a GET returns, computed from the stored body and the rest of
//! the estate. Stored bodies hold only what clients wrote; everything server-made is derived here,
//! so back-references (serviceAssociationLinks, applicationGatewayIPConfigurations) never go stale.

use serde_json::{Map, Value, json};

use crate::ids;
use crate::state::{Resource, State};
use crate::validate::*;

pub const SYNTHETIC_PRIORITY: i64 = 2147483647;

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

/// Delegation actions the RP fills in (§1.3).
pub fn delegation_actions(service: &str) -> Vec<&'static str> {
    match service.to_ascii_lowercase().as_str() {
        "microsoft.web/serverfarms" => vec!["Microsoft.Network/virtualNetworks/subnets/action"],
        "microsoft.network/applicationgateways" => {
            vec!["Microsoft.Network/virtualNetworks/subnets/join/action"]
        }
        _ => vec!["Microsoft.Network/virtualNetworks/subnets/join/action"],
    }
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

fn vnet_etag(state: &State, subnet_id: &str) -> String {
    state
        .get(&ids::parent(subnet_id))
        .map(|v| v.etag.clone())
        .unwrap_or_default()
}

pub fn render_subnet(state: &State, r: &Resource) -> Value {
    let mut v = base(r, NET_SUBNET);
    let etag = vnet_etag(state, &r.id);
    let vnet_loc = state
        .get(&ids::parent(&r.id))
        .and_then(|x| x.body["location"].as_str().map(str::to_string))
        .unwrap_or_default();
    obj(&mut v).insert("etag".into(), json!(etag));
    obj(&mut v).remove("location");
    let ps = r.provisioning_state.clone();
    let p = props_mut(&mut v);
    p.insert("provisioningState".into(), json!(ps));
    if let Some(Value::Array(ds)) = p.get_mut("delegations") {
        for d in ds.iter_mut() {
            let name = d["name"].as_str().unwrap_or("").to_string();
            let svc = d["properties"]["serviceName"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let o = obj(d);
            o.insert("id".into(), json!(format!("{}/delegations/{name}", r.id)));
            o.insert("etag".into(), json!(etag));
            o.insert(
                "type".into(),
                json!("Microsoft.Network/virtualNetworks/subnets/delegations"),
            );
            let dp = obj(o.entry("properties").or_insert_with(|| json!({})));
            dp.insert("actions".into(), json!(delegation_actions(&svc)));
            dp.insert("provisioningState".into(), json!("Succeeded"));
        }
    }
    if let Some(Value::Array(ses)) = p.get_mut("serviceEndpoints") {
        for se in ses.iter_mut() {
            let svc = se["service"].as_str().unwrap_or("").to_string();
            let o = obj(se);
            if !o.contains_key("locations") {
                let locs = if svc.eq_ignore_ascii_case("Microsoft.Web")
                    || svc.eq_ignore_ascii_case("Microsoft.AzureCosmosDB")
                {
                    json!(["*"])
                } else {
                    json!([vnet_loc])
                };
                o.insert("locations".into(), locs);
            }
            let st = if ps == "Succeeded" {
                "Succeeded"
            } else {
                "Updating"
            };
            o.insert("provisioningState".into(), json!(st));
        }
    }
    p.entry("privateEndpointNetworkPolicies")
        .or_insert(json!("Disabled"));
    p.entry("privateLinkServiceNetworkPolicies")
        .or_insert(json!("Enabled"));
    let mut links = vec![];
    let mut agw_ipcs = vec![];
    for u in subnet_users(state, &r.id) {
        if ids::key(&u).contains("/applicationgateways/") {
            agw_ipcs.push(json!({"id": u}));
        } else if let Some(site) = state.get(&u) {
            let plan = props(&site.body)["serverFarmId"]
                .as_str()
                .unwrap_or("")
                .replace("/serverFarms/", "/serverfarms/");
            links.push(json!({
                "name": "AppServiceLink",
                "id": format!("{}/serviceAssociationLinks/AppServiceLink", r.id),
                "etag": etag,
                "type": "Microsoft.Network/virtualNetworks/subnets/serviceAssociationLinks",
                "properties": {
                    "provisioningState": "Succeeded",
                    "linkedResourceType": "Microsoft.Web/serverfarms",
                    "link": plan,
                    "enabledForArmDeployments": false,
                    "allowDelete": false,
                    "locations": []
                }
            }));
        }
    }
    if !links.is_empty() {
        links.truncate(1); // one link per plan; the emulator models one plan per subnet
        p.insert("serviceAssociationLinks".into(), json!(links));
    }
    if !agw_ipcs.is_empty() {
        p.insert(
            "applicationGatewayIPConfigurations".into(),
            json!(agw_ipcs.clone()),
        );
        p.insert("ipConfigurations".into(), json!(agw_ipcs));
    }
    v
}

pub fn render_vnet(state: &State, r: &Resource) -> Value {
    let mut v = base(r, NET_VNET);
    obj(&mut v).insert("etag".into(), json!(r.etag));
    let subnets: Vec<Value> = state
        .children(&r.id, NET_SUBNET)
        .map(|s| render_subnet(state, s))
        .collect();
    // A VNet reads Updating while any of its subnets does (Terraform polls for exactly this).
    let busy = state
        .children(&r.id, NET_SUBNET)
        .any(|s| s.provisioning_state == "Updating" || s.provisioning_state == "Deleting");
    let ps = if busy && r.provisioning_state == "Succeeded" {
        "Updating".to_string()
    } else {
        r.provisioning_state.clone()
    };
    let p = props_mut(&mut v);
    p.insert("provisioningState".into(), json!(ps));
    p.insert("resourceGuid".into(), json!(stable_guid(&r.id)));
    p.insert("subnets".into(), json!(subnets));
    p.entry("virtualNetworkPeerings").or_insert(json!([]));
    p.entry("enableDdosProtection").or_insert(json!(false));
    v
}

const AGW_COLLECTIONS: &[&str] = &[
    "gatewayIPConfigurations",
    "frontendIPConfigurations",
    "frontendPorts",
    "backendAddressPools",
    "backendHttpSettingsCollection",
    "probes",
    "httpListeners",
    "sslCertificates",
    "requestRoutingRules",
    "trustedRootCertificates",
    "sslProfiles",
    "rewriteRuleSets",
    "urlPathMaps",
    "redirectConfigurations",
];

pub fn render_gateway(_state: &State, r: &Resource) -> Value {
    let mut v = base(r, NET_AGW);
    obj(&mut v).insert("etag".into(), json!(r.etag));
    if let Some(Value::Object(users)) = v
        .get_mut("identity")
        .and_then(|i| i.get_mut("userAssignedIdentities"))
    {
        for (id, entry) in users.iter_mut() {
            let e = obj(entry);
            for (k, x) in user_assigned_entry(id).as_object().expect("object") {
                e.insert(k.clone(), x.clone());
            }
        }
    }
    let original = props(&r.body).clone();
    // Back-references: (collection, child name) -> (field, [ids]).
    let mut backrefs: Vec<(String, String, &str, String)> = vec![];
    let by = |coll: &str| original[coll].as_array().cloned().unwrap_or_default();
    for l in by("httpListeners") {
        let lid = format!(
            "{}/httpListeners/{}",
            r.id,
            l["name"].as_str().unwrap_or("")
        );
        for (field, coll) in [
            ("frontendIPConfiguration", "frontendIPConfigurations"),
            ("frontendPort", "frontendPorts"),
        ] {
            if let Some(target) = l["properties"][field]["id"].as_str() {
                backrefs.push((
                    coll.into(),
                    target.rsplit('/').next().unwrap_or("").into(),
                    "httpListeners",
                    lid.clone(),
                ));
            }
        }
    }
    for rr in by("requestRoutingRules") {
        let rid = format!(
            "{}/requestRoutingRules/{}",
            r.id,
            rr["name"].as_str().unwrap_or("")
        );
        for (field, coll) in [
            ("backendAddressPool", "backendAddressPools"),
            ("backendHttpSettings", "backendHttpSettingsCollection"),
            ("httpListener", "httpListeners"),
        ] {
            if let Some(target) = rr["properties"][field]["id"].as_str() {
                backrefs.push((
                    coll.into(),
                    target.rsplit('/').next().unwrap_or("").into(),
                    "requestRoutingRules",
                    rid.clone(),
                ));
            }
        }
    }
    let etag = r.etag.clone();
    let child_state = if r.provisioning_state == "Failed" {
        "Failed"
    } else {
        "Succeeded"
    };
    let p = props_mut(&mut v);
    for coll in AGW_COLLECTIONS {
        if let Some(Value::Array(items)) = p.get_mut(*coll) {
            for it in items.iter_mut() {
                let name = it["name"].as_str().unwrap_or("").to_string();
                let o = obj(it);
                o.insert("id".into(), json!(format!("{}/{coll}/{name}", r.id)));
                o.insert("etag".into(), json!(etag));
                o.insert(
                    "type".into(),
                    json!(format!("Microsoft.Network/applicationGateways/{coll}")),
                );
                let cp = obj(o.entry("properties").or_insert_with(|| json!({})));
                cp.insert("provisioningState".into(), json!(child_state));
                for (bc, bn, field, id) in &backrefs {
                    if bc == coll && bn.eq_ignore_ascii_case(&name) {
                        let e = cp.entry(field.to_string()).or_insert_with(|| json!([]));
                        if let Value::Array(a) = e {
                            a.push(json!({"id": id}));
                        }
                    }
                }
                if *coll == "sslCertificates" {
                    cp.remove("data");
                    cp.remove("password");
                    cp.insert("publicCertData".into(), json!("MIIEMULATORPUBLICCERTDATA"));
                }
            }
        }
    }
    p.insert("provisioningState".into(), json!(r.provisioning_state));
    p.insert("resourceGuid".into(), json!(stable_guid(&r.id)));
    p.insert(
        "operationalState".into(),
        json!(if r.provisioning_state == "Failed" {
            "Stopped"
        } else {
            "Running"
        }),
    );
    v
}

pub fn render_pip(state: &State, r: &Resource) -> Value {
    let mut v = base(r, NET_PIP);
    obj(&mut v).insert("etag".into(), json!(r.etag));
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, ids::key(&r.id).as_bytes());
    let ip = format!(
        "20.{}.{}.{}",
        d.as_ref()[0],
        d.as_ref()[1],
        d.as_ref()[2].max(1)
    );
    let mut ipc = None;
    for gw in state.of_type(NET_AGW) {
        for fe in props(&gw.body)["frontendIPConfigurations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if fe["properties"]["publicIPAddress"]["id"]
                .as_str()
                .is_some_and(|x| ids::key(x) == ids::key(&r.id))
            {
                ipc = Some(format!(
                    "{}/frontendIPConfigurations/{}",
                    gw.id,
                    fe["name"].as_str().unwrap_or("")
                ));
            }
        }
    }
    let p = props_mut(&mut v);
    p.insert("provisioningState".into(), json!(r.provisioning_state));
    p.insert("ipAddress".into(), json!(ip));
    p.insert("resourceGuid".into(), json!(stable_guid(&r.id)));
    p.entry("publicIPAllocationMethod")
        .or_insert(json!("Static"));
    p.entry("publicIPAddressVersion").or_insert(json!("IPv4"));
    if let Some(id) = ipc {
        p.insert("ipConfiguration".into(), json!({"id": id}));
    }
    v
}

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
    let p = props_mut(&mut v);
    p.insert("defaultHostName".into(), json!(host));
    p.insert("hostNames".into(), json!([host]));
    p.insert("enabledHostNames".into(), json!([host, scm]));
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

/// Cosmos network settings with defaults applied (what both GET and the exposure oracle see).
pub fn cosmos_network(p: &Value) -> Value {
    json!({
        "publicNetworkAccess": p["publicNetworkAccess"].as_str().unwrap_or("Enabled"),
        "isVirtualNetworkFilterEnabled": p["isVirtualNetworkFilterEnabled"].as_bool().unwrap_or(false),
        "virtualNetworkRules": p["virtualNetworkRules"].as_array().cloned().unwrap_or_default(),
        "ipRules": p["ipRules"].as_array().cloned().unwrap_or_default(),
        "networkAclBypass": p["networkAclBypass"].as_str().unwrap_or("None"),
        "networkAclBypassResourceIds": p["networkAclBypassResourceIds"].as_array().cloned().unwrap_or_default(),
    })
}

pub fn render_cosmos(r: &Resource) -> Value {
    let mut v = base(r, COSMOS);
    obj(&mut v)
        .entry("kind")
        .or_insert(json!("GlobalDocumentDB"));
    let name = ids::ArmPath::parse(&r.id)
        .map(|p| p.name())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let net = cosmos_network(props(&r.body));
    let state = r.provisioning_state.clone();
    let loc_state = if state == "Succeeded" || state == "Failed" {
        state.clone()
    } else {
        "Updating".into()
    };
    let p = props_mut(&mut v);
    for (k, val) in net.as_object().expect("object") {
        p.entry(k.clone()).or_insert(val.clone());
    }
    p.entry("disableLocalAuth").or_insert(json!(false));
    p.entry("disableKeyBasedMetadataWriteAccess")
        .or_insert(json!(false));
    p.entry("minimalTlsVersion").or_insert(json!("Tls12"));
    p.entry("consistencyPolicy").or_insert(json!({"defaultConsistencyLevel": "Session", "maxIntervalInSeconds": 5, "maxStalenessPrefix": 100}));
    p.insert("provisioningState".into(), json!(state));
    p.insert(
        "documentEndpoint".into(),
        json!(format!("https://{name}.documents.azure.com:443/")),
    );
    let mut locs = p
        .get("locations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for l in locs.iter_mut() {
        let ln = l["locationName"].as_str().unwrap_or("").to_string();
        let slug = ln.to_ascii_lowercase().replace(' ', "");
        let o = obj(l);
        o.insert("id".into(), json!(format!("{name}-{slug}")));
        o.insert(
            "documentEndpoint".into(),
            json!(format!("https://{name}-{slug}.documents.azure.com:443/")),
        );
        o.insert("provisioningState".into(), json!(loc_state));
        o.entry("failoverPriority").or_insert(json!(0));
        o.entry("isZoneRedundant").or_insert(json!(false));
    }
    let writes: Vec<Value> = locs
        .iter()
        .filter(|l| l["failoverPriority"].as_i64() == Some(0))
        .cloned()
        .collect();
    p.insert("locations".into(), json!(locs.clone()));
    p.insert("readLocations".into(), json!(locs));
    p.insert("writeLocations".into(), json!(writes));
    v
}

/// Read-only and server-made fields a client may send back on PUT/PATCH; dropped before storing
/// (everything else, including unknown fields, is stored).
pub fn strip_read_only(rtype: &str, body: &mut Value) {
    let o = obj(body);
    for k in ["id", "type", "etag"] {
        o.remove(k);
    }
    if !rtype.eq_ignore_ascii_case("resourceGroups") {
        o.remove("name");
    }
    if rtype.eq_ignore_ascii_case(NET_AGW)
        && let Some(Value::Object(identity)) = o.get_mut("identity")
    {
        strip_identity(identity);
    }
    let Some(Value::Object(p)) = o.get_mut("properties") else {
        return;
    };
    for k in ["provisioningState", "resourceGuid"] {
        p.remove(k);
    }
    if rtype.eq_ignore_ascii_case(NET_SUBNET) {
        for k in [
            "serviceAssociationLinks",
            "applicationGatewayIPConfigurations",
            "ipConfigurations",
            "resourceNavigationLinks",
            "privateEndpoints",
            "purpose",
        ] {
            p.remove(k);
        }
        for k in ["delegations", "serviceEndpoints"] {
            if let Some(Value::Array(items)) = p.get_mut(k) {
                for it in items.iter_mut() {
                    let io = obj(it);
                    io.remove("id");
                    io.remove("etag");
                    io.remove("type");
                    io.remove("provisioningState");
                    if let Some(Value::Object(ip)) = io.get_mut("properties") {
                        ip.remove("actions");
                        ip.remove("provisioningState");
                    }
                }
            }
        }
    } else if rtype.eq_ignore_ascii_case(NET_VNET) {
        // subnets are handled by the caller (they become child resources)
    } else if rtype.eq_ignore_ascii_case(NET_AGW) {
        p.remove("operationalState");
        for coll in AGW_COLLECTIONS {
            if let Some(Value::Array(items)) = p.get_mut(*coll) {
                for it in items.iter_mut() {
                    let io = obj(it);
                    io.remove("id");
                    io.remove("etag");
                    io.remove("type");
                    if let Some(Value::Object(cp)) = io.get_mut("properties") {
                        cp.remove("provisioningState");
                        cp.remove("publicCertData");
                        if !matches!(*coll, "requestRoutingRules" | "urlPathMaps") {
                            cp.remove("requestRoutingRules");
                        }
                        if matches!(*coll, "frontendIPConfigurations" | "frontendPorts") {
                            cp.remove("httpListeners");
                        }
                    }
                }
            }
        }
    } else if rtype.eq_ignore_ascii_case(NET_PIP) {
        p.remove("ipAddress");
        p.remove("ipConfiguration");
    } else if rtype.eq_ignore_ascii_case(WEB_SITE) {
        for k in [
            "defaultHostName",
            "hostNames",
            "enabledHostNames",
            "state",
            "usageState",
            "customDomainVerificationId",
            "outboundIpAddresses",
            "possibleOutboundIpAddresses",
        ] {
            p.remove(k);
        }
    } else if rtype.eq_ignore_ascii_case(WEB_CONFIG) {
        strip_synthetic(p);
    } else if rtype.eq_ignore_ascii_case(COSMOS) {
        for k in [
            "documentEndpoint",
            "readLocations",
            "writeLocations",
            "privateEndpointConnections",
        ] {
            p.remove(k);
        }
        if let Some(Value::Array(locs)) = p.get_mut("locations") {
            for l in locs.iter_mut() {
                let lo = obj(l);
                lo.remove("id");
                lo.remove("documentEndpoint");
                lo.remove("provisioningState");
            }
        }
    }
}

/// The server-made parts of a managed identity (§2.2): `principalId`/`tenantId` beside the type
/// and `principalId`/`clientId` inside each user-assigned entry.
fn strip_identity(identity: &mut Map<String, Value>) {
    identity.remove("principalId");
    identity.remove("tenantId");
    if let Some(Value::Object(users)) = identity.get_mut("userAssignedIdentities") {
        for entry in users.values_mut() {
            let e = obj(entry);
            e.remove("principalId");
            e.remove("clientId");
        }
    }
}

/// A user-assigned identity entry as ARM returns it: the identity's own service principal and
/// client IDs (the same wherever the identity is attached; stable GUIDs derived from its ID here).
pub fn user_assigned_entry(identity_id: &str) -> Value {
    json!({
        "principalId": stable_guid(&format!("{identity_id}/principalId")),
        "clientId": stable_guid(&format!("{identity_id}/clientId")),
    })
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

    #[test]
    fn strip_read_only_keeps_unknown_fields() {
        let mut b = json!({"id": "x", "etag": "e", "properties": {"provisioningState": "Succeeded", "addressPrefix": "10.0.0.0/24",
            "futureField": {"a": 1}, "serviceAssociationLinks": [], "delegations": [{"name": "d", "id": "i", "properties": {"serviceName": "S", "actions": ["a"]}}]}});
        strip_read_only(NET_SUBNET, &mut b);
        assert_eq!(
            b,
            json!({"properties": {"addressPrefix": "10.0.0.0/24", "futureField": {"a": 1}, "delegations": [{"name": "d", "properties": {"serviceName": "S"}}]}})
        );
    }

    #[test]
    fn gateway_identity_ids_are_server_made() {
        let uai = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-agw";
        // (what a client sends, what is stored)
        let table = [
            (
                json!({"type": "UserAssigned", "principalId": "p", "tenantId": "t", "futureField": 1,
                    "userAssignedIdentities": {uai: {"principalId": "p1", "clientId": "c1", "futureEntryField": 2}}}),
                json!({"type": "UserAssigned", "futureField": 1, "userAssignedIdentities": {uai: {"futureEntryField": 2}}}),
            ),
            (
                json!({"type": "UserAssigned", "userAssignedIdentities": {uai: {}}}),
                json!({"type": "UserAssigned", "userAssignedIdentities": {uai: {}}}),
            ),
            (json!({"type": "None"}), json!({"type": "None"})),
        ];
        for (sent, stored) in table {
            let mut b = json!({"location": "uksouth", "identity": sent, "properties": {}});
            strip_read_only(NET_AGW, &mut b);
            assert_eq!(b["identity"], stored);
        }
        // Read back, each entry carries the identity's own IDs, the same on every read.
        let e = user_assigned_entry(uai);
        assert_eq!(e, user_assigned_entry(&uai.to_ascii_uppercase()));
        assert_ne!(e["principalId"], e["clientId"]);
    }
}
