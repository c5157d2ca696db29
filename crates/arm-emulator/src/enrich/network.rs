//! Microsoft.Network read-back: subnets with their delegations, service endpoints and
//! back-references, VNets with their subnets, gateways with child ids and cross-links, public IPs.

use serde_json::{Value, json};

use super::{base, obj, props_mut, stable_guid};
use crate::ids;
use crate::state::{Resource, State};
use crate::validate::*;

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

/// The gateway's child collections; each child gets an id, etag and type on read.
pub(super) const AGW_COLLECTIONS: &[&str] = &[
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

/// A user-assigned identity entry as ARM returns it: the identity's own service principal and
/// client IDs (the same wherever the identity is attached; stable GUIDs derived from its ID here).
pub fn user_assigned_entry(identity_id: &str) -> Value {
    json!({
        "principalId": stable_guid(&format!("{identity_id}/principalId")),
        "clientId": stable_guid(&format!("{identity_id}/clientId")),
    })
}
