//! The write direction: the read-only and server-made fields a client may send back, which are
//! dropped before a body is stored.

use serde_json::{Map, Value};

use super::network::AGW_COLLECTIONS;
use super::obj;
use super::web::strip_synthetic;
use crate::validate::*;

/// The read-only properties of the App Service host-name types (Web 2024-11-01 `Certificates.json`
/// `Certificate`, `WebApps.json` `HostNameBinding`): a certificate's are computed from its PFX
/// (`thumbprint`, `subjectName` and `cerBlob` are put back from it), a binding's `virtualIP` is
/// App Service's.
const HOST_NAME_READ_ONLY: &[(&str, &[&str])] = &[
    (
        "Microsoft.Web/certificates",
        &[
            "friendlyName",
            "subjectName",
            "siteName",
            "selfLink",
            "issuer",
            "issueDate",
            "expirationDate",
            "thumbprint",
            "valid",
            "cerBlob",
            "publicKeyHash",
            "hostingEnvironmentProfile",
            "keyVaultSecretStatus",
        ],
    ),
    ("Microsoft.Web/sites/hostNameBindings", &["virtualIP"]),
];

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
    strip_host_name_types(rtype, p);
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
    } else if rtype.eq_ignore_ascii_case(crate::engine::NET_WAF) {
        // Server-made (webapplicationfirewall.json 2025-01-01, readOnly).
        for k in [
            "applicationGateways",
            "resourceState",
            "httpListeners",
            "pathBasedRules",
            "applicationGatewayForContainers",
        ] {
            p.remove(k);
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

fn strip_host_name_types(rtype: &str, p: &mut Map<String, Value>) {
    for (_, keys) in HOST_NAME_READ_ONLY
        .iter()
        .filter(|t| t.0.eq_ignore_ascii_case(rtype))
    {
        for k in *keys {
            p.remove(*k);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::user_assigned_entry;
    use serde_json::json;

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
