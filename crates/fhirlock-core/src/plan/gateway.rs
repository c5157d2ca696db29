//! The gateway fhirlock wants, and what of an existing gateway it compares.

use serde_json::{Value, json};

use super::{normalize_ids, owned_tags, project};
use crate::desired::{Certificate, Desired};
use crate::id;
use crate::observed::Observed;

/// The whole gateway body fhirlock wants, merged over what exists so unmanaged fields survive.
pub fn gateway_body(d: &Desired, o: &Observed) -> Option<Value> {
    let g = &d.gateway;
    let gid = &g.id;
    let sub = |kind: &str, name: &str| json!({"id": format!("{gid}/{kind}/{name}")});
    let host = o
        .site()
        .and_then(|s| s.properties.default_host_name)
        .unwrap_or_else(|| format!("{}.azurewebsites.net", d.site_name()));
    let observed_certs = o
        .gateway
        .as_ref()
        .and_then(|v| v.pointer("/properties/sslCertificates"))
        .cloned();
    let certs = match &g.certificate {
        Certificate::Pfx {
            data_base64,
            password,
            ..
        } => {
            json!([{"name": "fhir-tls", "properties": {"data": data_base64, "password": password}}])
        }
        Certificate::KeyVault { secret_id, .. } => {
            json!([{"name": "fhir-tls", "properties": {"keyVaultSecretId": secret_id}}])
        }
        Certificate::Unresolved { .. } => observed_certs?,
    };
    // Preserve, once the App Service serves the host name: the client's Host goes through, and
    // the probe names it (Learn "Configure App Service with Application Gateway", custom domain:
    // "Override with new host name: No", a probe with the custom domain as its host). Until then,
    // and with Default, the app's default host name (Learn: "you must set the host header of the
    // incoming request on the web application to the default domain").
    let through = super::host_name::passes_host_through(d, o);
    let mut probe = json!({
        "protocol": "Https", "path": g.probe_path, "interval": 30, "timeout": 30, "unhealthyThreshold": 3,
        "pickHostNameFromBackendHttpSettings": !through, "match": {"statusCodes": ["200-399"]}});
    if through {
        probe["host"] = json!(g.host_name);
    }
    let props = json!({
        "sku": {"name": g.tier, "tier": g.tier},
        "autoscaleConfiguration": {"minCapacity": g.min_capacity, "maxCapacity": g.max_capacity},
        "sslPolicy": {"policyType": "Predefined", "policyName": g.ssl_policy},
        "gatewayIPConfigurations": [{"name": "gateway-ip", "properties": {"subnet": {"id": d.gateway_subnet.id}}}],
        "frontendIPConfigurations": [{"name": "private-frontend", "properties": {
            "privateIPAddress": g.private_ip, "privateIPAllocationMethod": "Static", "subnet": {"id": d.gateway_subnet.id}}}],
        "frontendPorts": [{"name": "https-443", "properties": {"port": 443}}],
        "sslCertificates": certs,
        "backendAddressPools": [{"name": "app-service", "properties": {"backendAddresses": [{"fqdn": host}]}}],
        "probes": [{"name": "fhir-metadata", "properties": probe}],
        "backendHttpSettingsCollection": [{"name": "app-service-https", "properties": {
            "port": 443, "protocol": "Https", "cookieBasedAffinity": "Disabled", "pickHostNameFromBackendAddress": !through,
            "requestTimeout": 30, "probe": sub("probes", "fhir-metadata")}}],
        "httpListeners": [{"name": "fhir-https", "properties": {
            "frontendIPConfiguration": sub("frontendIPConfigurations", "private-frontend"),
            "frontendPort": sub("frontendPorts", "https-443"), "protocol": "Https", "hostNames": [g.host_name],
            "requireServerNameIndication": true, "sslCertificate": sub("sslCertificates", "fhir-tls")}}],
        "requestRoutingRules": [{"name": "fhir", "properties": {
            "ruleType": "Basic", "priority": 100, "httpListener": sub("httpListeners", "fhir-https"),
            "backendAddressPool": sub("backendAddressPools", "app-service"),
            "backendHttpSettings": sub("backendHttpSettingsCollection", "app-service-https")}}],
    });
    // Anything but an object (a misbehaving proxy's answer) is no gateway to build on; indexing
    // into it would panic.
    let mut body = o
        .gateway
        .clone()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    body["location"] = json!(g.location);
    let mut tags = owned_tags(&body, &d.owner);
    let marker = g.certificate.marker().or_else(|| {
        tags.get(crate::TLS_TAG)
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    if let Some(m) = marker {
        tags.insert(crate::TLS_TAG.into(), json!(m));
    }
    body["tags"] = Value::Object(tags);
    if !body.get("properties").is_some_and(Value::is_object) {
        body["properties"] = json!({});
    }
    for (k, v) in props.as_object().expect("object") {
        body["properties"][k] = v.clone();
    }
    if let Some(p) = body["properties"].as_object_mut() {
        super::waf::gateway_properties(d, p);
    }
    // A PFX needs no identity: whatever identity the gateway has is left as it is.
    if let Certificate::KeyVault { identity_id, .. } = &g.certificate {
        // The identity an earlier keyVaultIdentityId put there, as the tag left on the gateway
        // names it: replaced, not kept beside the new one.
        let previous = o
            .gateway
            .as_ref()
            .and_then(|v| v.pointer("/tags").and_then(|t| t.get(crate::TLS_TAG)))
            .and_then(Value::as_str)
            .and_then(|m| m.rsplit_once(crate::desired::IDENTITY_MARK))
            .map(|(_, digest)| digest.to_owned());
        body["identity"] = gateway_identity(body.get("identity"), identity_id, previous.as_deref());
    }
    // The body is built on the read-back: what the server set is not sent back.
    crate::read_only::strip(crate::read_only::Kind::ApplicationGateway, &mut body);
    Some(body)
}

/// The gateway's `identity` with `identity_id` among its user-assigned identities: ARM reads a
/// `keyVaultSecretId` only as a user-assigned identity of the gateway. Identities someone else
/// put there, and unknown fields, are kept; the one whose digest is `previous` (fhirlock's, for
/// an earlier keyVaultIdentityId) is dropped. The read-only `principalId`/`clientId` ARM adds to
/// each entry (and `principalId`/`tenantId` beside them) are not sent back.
fn gateway_identity(observed: Option<&Value>, identity_id: &str, previous: Option<&str>) -> Value {
    let mut identity = observed
        .filter(|v| v.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    let o = identity.as_object_mut().expect("object");
    o.remove("principalId");
    o.remove("tenantId");
    let has_user = o
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.to_ascii_lowercase().contains("userassigned"));
    if !has_user {
        o.insert("type".into(), json!("UserAssigned"));
    }
    let mut users = o
        .get("userAssignedIdentities")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for entry in users.values_mut() {
        if let Some(e) = entry.as_object_mut() {
            e.remove("principalId");
            e.remove("clientId");
        } else {
            *entry = json!({});
        }
    }
    users.retain(|k, _| {
        id::same(k, identity_id) || previous != Some(crate::desired::identity_digest(k).as_str())
    });
    if !users.keys().any(|k| id::same(k, identity_id)) {
        users.insert(identity_id.to_owned(), json!({}));
    }
    o.insert("userAssignedIdentities".into(), Value::Object(users));
    identity
}

/// An `identity` as fhirlock compares it: the type, and the IDs of the user-assigned
/// identities, lower-cased and sorted (ARM fills each entry with principalId and clientId).
fn identity_view(identity: &Value) -> Value {
    let mut ids: Vec<String> = identity
        .get("userAssignedIdentities")
        .and_then(Value::as_object)
        .map(|m| {
            m.keys()
                .map(|k| k.trim_end_matches('/').to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    json!({"type": identity.get("type"), "userAssignedIdentities": ids})
}

/// What of the gateway fhirlock compares: the desired body without secrets ARM never returns,
/// and the observed body cut down to the same shape, with IDs lower-cased.
pub fn gateway_managed_view(desired: &Value, observed: Option<&Value>) -> (Value, Option<Value>) {
    let mut want = json!({"location": desired["location"], "tags": desired["tags"], "properties": desired["properties"]});
    // A write-time switch, not a setting to compare: whether ARM returns it is unknown.
    if let Some(p) = want["properties"].as_object_mut() {
        p.remove("forceFirewallPolicyAssociation");
    }
    if let Some(certs) = want
        .pointer_mut("/properties/sslCertificates")
        .and_then(Value::as_array_mut)
    {
        for c in certs {
            if let Some(p) = c.get_mut("properties").and_then(Value::as_object_mut) {
                p.remove("data");
                p.remove("password");
            }
        }
    }
    normalize_ids(&mut want);
    // The identity is compared when the body carries one (a Key Vault certificate, or one already
    // on the gateway): only its type and the keys of userAssignedIdentities.
    let identity = desired.get("identity").filter(|v| v.is_object());
    if let Some(i) = identity {
        want["identity"] = identity_view(i);
    }
    let got = observed.map(|o| {
        let mut v = project(o, &want);
        normalize_ids(&mut v);
        if let (Some(l), Some(w)) = (
            v.get("location").and_then(Value::as_str),
            want.get("location").and_then(Value::as_str),
        ) && crate::observed::same_region(l, w)
        {
            v["location"] = json!(w);
        }
        if identity.is_some() {
            match o.get("identity").filter(|i| i.is_object()) {
                Some(i) => {
                    let mut seen = identity_view(i);
                    if let (Some(t), Some(w)) =
                        (seen["type"].as_str(), want["identity"]["type"].as_str())
                        && t.eq_ignore_ascii_case(w)
                    {
                        seen["type"] = json!(w);
                    }
                    v["identity"] = seen;
                }
                None => {
                    if let Some(m) = v.as_object_mut() {
                        m.remove("identity");
                    }
                }
            }
        }
        v
    });
    (want, got)
}
