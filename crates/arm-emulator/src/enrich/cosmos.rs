//! Microsoft.DocumentDB read-back: database accounts with their network defaults, endpoints and
//! per-region locations.

use serde_json::{Value, json};

use super::{base, obj, props_mut};
use crate::ids;
use crate::state::Resource;
use crate::validate::*;

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
