//! Reference §7.5: what a GET returns beyond what was written (ids, back-references, synthetic
//! rules, identities, locations). Names start with the checklist item.

mod common;
use common::estate::*;
use common::*;
use serde_json::{Value, json};

#[test]
fn s7_5_gateway_identity_reads_back_with_principal_and_client_ids() {
    let mut h = H::new();
    agw_subnet_reaching_key_vault(&mut h);
    register_isolation(&mut h);
    let (a, b) = (uai("id-agw"), uai("id-monitoring"));
    let put = key_vault_gateway(Some(json!({
        "type": "UserAssigned",
        "userAssignedIdentities": {a.clone(): {}, b.clone(): {}},
    })));
    let created = h.call("PUT", &agw_id("agw-fhir"), NET, Some(put));
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    h.settle();
    let g = h.ok("GET", &agw_id("agw-fhir"), NET, None);
    assert_eq!(g["properties"]["provisioningState"], "Succeeded");
    assert_eq!(g["identity"]["type"], "UserAssigned");
    let users = g["identity"]["userAssignedIdentities"].as_object().unwrap();
    assert_eq!(users.len(), 2);
    let guid = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.len() == 36 && s.matches('-').count() == 4)
    };
    for (id, entry) in users {
        assert!(
            guid(&entry["principalId"]) && guid(&entry["clientId"]),
            "{id}: {entry}"
        );
        assert_ne!(entry["principalId"], entry["clientId"]);
    }
    assert_ne!(users[&a]["principalId"], users[&b]["principalId"]);
    assert_eq!(
        g["properties"]["sslCertificates"][0]["properties"]["keyVaultSecretId"],
        "https://fhir-vault.vault.azure.net/secrets/fhir-tls"
    );
    // The read-back written back (principalId and clientId included, as an SDK read-modify-write
    // may send them) is accepted, and stored without them: the IDs are the identity's own.
    h.ok("PUT", &agw_id("agw-fhir"), NET, Some(g.clone()));
    h.settle();
    let again = h.ok("GET", &agw_id("agw-fhir"), NET, None);
    assert_eq!(again["identity"], g["identity"]);
    let state = h.raw(arm_emulator::engine::Request::new(
        "GET",
        "/_emulator/state",
    ));
    let stored = state.json_body().to_string();
    assert!(
        !stored.contains(
            g["identity"]["userAssignedIdentities"][&a]["principalId"]
                .as_str()
                .unwrap()
        ),
        "server-made IDs are derived on read, not stored"
    );
    // Dropping the identity while the certificate still comes from Key Vault is refused, and the
    // gateway keeps what it had.
    let mut without = g.clone();
    without.as_object_mut().unwrap().remove("identity");
    h.fails(
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        Some(without),
        400,
        "ApplicationGatewayKeyVaultSecretRequiresUserAssignedIdentity",
    );
    assert_eq!(
        h.ok("GET", &agw_id("agw-fhir"), NET, None)["identity"],
        g["identity"]
    );
}

#[test]
fn s7_5_subnet_delegation_and_service_endpoint_read_back() {
    let mut h = H::new();
    agw_subnet(&mut h);
    int_subnet(&mut h);
    let v = h.ok(
        "GET",
        &subnet_id("hscn-net", "hscn-vnet", "snet-agw"),
        NET,
        None,
    );
    let d = &v["properties"]["delegations"][0];
    assert_eq!(
        d["properties"]["actions"],
        json!(["Microsoft.Network/virtualNetworks/subnets/join/action"])
    );
    assert_eq!(
        d["id"],
        format!(
            "{}/delegations/agw",
            subnet_id("hscn-net", "hscn-vnet", "snet-agw")
        )
    );
    assert_eq!(
        d["type"],
        "Microsoft.Network/virtualNetworks/subnets/delegations"
    );
    assert_eq!(d["etag"], v["etag"]);
    let se = &v["properties"]["serviceEndpoints"][0];
    assert_eq!(
        (se["locations"].clone(), se["provisioningState"].clone()),
        (json!(["*"]), json!("Succeeded"))
    );
    let w = h.ok(
        "GET",
        &subnet_id("hscn-net", "hscn-vnet", "snet-app-int"),
        NET,
        None,
    );
    assert_eq!(
        w["properties"]["delegations"][0]["properties"]["actions"],
        json!(["Microsoft.Network/virtualNetworks/subnets/action"])
    );
    // Child etags share the VNet's.
    let vnet = h.ok("GET", &vnet_id("hscn-net", "hscn-vnet"), NET, None);
    assert_eq!(vnet["etag"], w["etag"]);
    assert_eq!(vnet["properties"]["subnets"].as_array().unwrap().len(), 2);
}

#[test]
fn s7_5_gateway_children_ids_backrefs_and_subnet_ipconfigurations() {
    let mut h = H::new();
    agw_subnet(&mut h);
    register_isolation(&mut h);
    h.ok("PUT", &agw_id("agw-fhir"), NET, Some(gateway_body(None)));
    h.settle();
    let g = h.ok("GET", &agw_id("agw-fhir"), NET, None);
    let id = agw_id("agw-fhir");
    let pool = &g["properties"]["backendAddressPools"][0];
    assert_eq!(pool["id"], format!("{id}/backendAddressPools/app"));
    assert_eq!(
        pool["type"],
        "Microsoft.Network/applicationGateways/backendAddressPools"
    );
    assert_eq!(pool["etag"], g["etag"]);
    assert_eq!(
        pool["properties"]["requestRoutingRules"],
        json!([{"id": format!("{id}/requestRoutingRules/r1")}])
    );
    assert_eq!(
        g["properties"]["frontendIPConfigurations"][0]["properties"]["httpListeners"],
        json!([{"id": format!("{id}/httpListeners/l443")}])
    );
    let cert = &g["properties"]["sslCertificates"][0]["properties"];
    assert!(
        cert["data"].is_null() && cert["password"].is_null() && cert["publicCertData"].is_string()
    );
    assert_eq!(g["properties"]["operationalState"], "Running");
    assert_eq!(g["tags"]["EnhancedNetworkControl"], "True");
    let s = h.ok(
        "GET",
        &subnet_id("hscn-net", "hscn-vnet", "snet-agw"),
        NET,
        None,
    );
    assert_eq!(
        s["properties"]["applicationGatewayIPConfigurations"],
        json!([{"id": format!("{id}/gatewayIPConfigurations/gwip")}])
    );
    // Writing the enriched document back is accepted and does not duplicate back-references.
    h.ok("PUT", &id, NET, Some(g.clone()));
    h.settle();
    let again = h.ok("GET", &id, NET, None);
    assert_eq!(
        again["properties"]["backendAddressPools"][0]["properties"]["requestRoutingRules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn s7_5_web_synthetic_allow_all_and_deny_all_at_max_priority() {
    let mut h = H::new();
    site_and_cosmos(&mut h);
    let cfg = format!("{}/config/web", site_id("fhir-server"));
    let v = h.ok("GET", &cfg, WEB, None);
    let last = v["properties"]["ipSecurityRestrictions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        last,
        json!({"ipAddress": "Any", "action": "Allow", "priority": 2147483647, "name": "Allow all", "description": "Allow all access"})
    );
    let mut back = v.clone();
    back["properties"]["ipSecurityRestrictionsDefaultAction"] = json!("Deny");
    let v = h.ok("PUT", &cfg, WEB, Some(back));
    let list = v["properties"]["ipSecurityRestrictions"]
        .as_array()
        .unwrap();
    assert_eq!(
        list.len(),
        1,
        "the written-back synthetic rule is not stored: {list:?}"
    );
    assert_eq!(list[0]["name"], "Deny all");
}

#[test]
fn s7_5_cosmos_read_and_write_locations() {
    let mut h = H::new();
    site_and_cosmos(&mut h);
    let v = h.ok("GET", &cosmos_id("fhir-cosmos"), COSMOS, None);
    let r = &v["properties"]["readLocations"][0];
    assert_eq!(r["locationName"], "UK South");
    assert_eq!(
        r["documentEndpoint"],
        "https://fhir-cosmos-uksouth.documents.azure.com:443/"
    );
    assert_eq!(r["provisioningState"], "Succeeded");
    assert_eq!(
        v["properties"]["writeLocations"].as_array().unwrap().len(),
        1
    );
    assert_eq!(
        v["properties"]["documentEndpoint"],
        "https://fhir-cosmos.documents.azure.com:443/"
    );
}
