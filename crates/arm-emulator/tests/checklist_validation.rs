//! Reference §7.4: cross-resource validation of subnets, gateways, sites and Cosmos accounts.
//! Names start with the checklist item.

mod common;
use common::estate::*;
use common::*;
use serde_json::json;

#[test]
fn s7_4_subnet_cidr_must_be_inside_vnet_and_not_overlap() {
    let mut h = H::new();
    let r = h.put_subnet("out", json!({"addressPrefix": "10.99.0.0/24"}));
    assert_eq!(
        (
            r.status,
            r.json_body()["error"]["code"].as_str().unwrap().to_string()
        ),
        (400, "NetcfgSubnetRangeOutsideVnet".to_string())
    );
    h.put_subnet("a", json!({"addressPrefix": "10.20.1.0/24"}));
    h.settle();
    let r = h.put_subnet("b", json!({"addressPrefixes": ["10.20.1.128/25"]}));
    assert_eq!(r.json_body()["error"]["code"], "NetcfgSubnetRangesOverlap");
}

#[test]
fn s7_4_in_use_subnet_cannot_be_deleted_or_redelegated() {
    let mut h = H::new();
    int_subnet(&mut h);
    site_and_cosmos(&mut h);
    h.ok("PATCH", &site_id("fhir-server"), WEB, Some(json!({"properties": {"virtualNetworkSubnetId": subnet_id("hscn-net", "hscn-vnet", "snet-app-int")}})));
    let sid = subnet_id("hscn-net", "hscn-vnet", "snet-app-int");
    h.fails("DELETE", &sid, NET, None, 400, "InUseSubnetCannotBeDeleted");
    h.fails(
        "PUT",
        &sid,
        NET,
        Some(json!({"properties": {"addressPrefix": "10.20.2.0/26"}})),
        400,
        "SubnetDelegationsCannotChangeWhenSubnetUsedByResource",
    );
    // Removing the integration (as Terraform does) frees it.
    h.ok(
        "DELETE",
        &format!("{}/networkConfig/virtualNetwork", site_id("fhir-server")),
        WEB,
        None,
    );
    assert_eq!(h.call("DELETE", &sid, NET, None).status, 202);
}

#[test]
fn s7_4_gateway_subnet_exclusivity() {
    let mut h = H::new();
    // A subnet delegated to serverFarms and used by a site, then offered to a gateway.
    h.put_subnet("snet-agw", json!({"addressPrefix": "10.20.1.0/24",
        "delegations": [{"name": "w", "properties": {"serviceName": "Microsoft.Web/serverFarms"}}]}));
    h.settle();
    site_and_cosmos(&mut h);
    h.ok("PATCH", &site_id("fhir-server"), WEB, Some(json!({"properties": {"virtualNetworkSubnetId": subnet_id("hscn-net", "hscn-vnet", "snet-agw")}})));
    register_isolation(&mut h);
    h.fails(
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        Some(gateway_body(None)),
        400,
        "ApplicationGatewaySubnetCannotHaveOtherResources",
    );
}

#[test]
fn s7_4_isolated_gateway_requires_subnet_delegation() {
    let mut h = H::new();
    h.put_subnet("snet-agw", json!({"addressPrefix": "10.20.1.0/24", "serviceEndpoints": [{"service": "Microsoft.Web"}]}));
    h.settle();
    register_isolation(&mut h);
    let v = h.fails(
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        Some(gateway_body(None)),
        400,
        "ApplicationGatewayNetworkIsolationRequiresSubnetDelegation",
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Please delegate subnet")
    );
}

#[test]
fn s7_4_without_isolation_a_private_only_v2_gateway_is_rejected() {
    let mut h = H::new();
    h.put_subnet("snet-agw", json!({"addressPrefix": "10.20.1.0/24"}));
    h.settle();
    h.fails(
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        Some(gateway_body(None)),
        400,
        "ApplicationGatewayPrivateOnlyNotSupported",
    );
}

#[test]
fn s7_4_v2_private_frontend_must_be_static() {
    let mut h = H::new();
    agw_subnet(&mut h);
    register_isolation(&mut h);
    let mut b = gateway_body(None);
    b["properties"]["frontendIPConfigurations"][0]["properties"]["privateIPAllocationMethod"] =
        json!("Dynamic");
    h.fails(
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        Some(b),
        400,
        "ApplicationGatewayFrontendIpPrivateIpAddressInvalidAllocationType",
    );
}

#[test]
fn s7_4_routing_rule_priority_is_mandatory_from_2021_08_01() {
    let mut h = H::new();
    agw_subnet(&mut h);
    register_isolation(&mut h);
    let mut b = gateway_body(None);
    b["properties"]["requestRoutingRules"][0]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("priority");
    h.fails(
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        Some(b),
        400,
        "ApplicationGatewayRequestRoutingRulePriorityCannotBeEmpty",
    );
}

#[test]
fn s7_4_key_vault_certificate_needs_a_user_assigned_identity() {
    let mut h = H::new();
    agw_subnet(&mut h);
    register_isolation(&mut h);
    for (case, identity) in [
        ("no identity", None),
        ("type None", Some(json!({"type": "None"}))),
        (
            "UserAssigned naming no identity",
            Some(json!({"type": "UserAssigned", "userAssignedIdentities": {}})),
        ),
        (
            "identities listed but the type is not UserAssigned",
            Some(json!({"type": "SystemAssigned", "userAssignedIdentities": {uai("id-agw"): {}}})),
        ),
    ] {
        let v = h.fails(
            "PUT",
            &agw_id("agw-fhir"),
            NET,
            Some(key_vault_gateway(identity)),
            400,
            "ApplicationGatewayKeyVaultSecretRequiresUserAssignedIdentity",
        );
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(&agw_id("agw-fhir")) && msg.contains("top level 'Identity' property"),
            "{case}: {msg}"
        );
    }
    // Nothing was stored.
    h.fails(
        "GET",
        &agw_id("agw-fhir"),
        NET,
        None,
        404,
        "ResourceNotFound",
    );
    // A PFX certificate needs no identity.
    h.ok("PUT", &agw_id("agw-fhir"), NET, Some(gateway_body(None)));
}

/// A private-only gateway has no internet egress, so it reaches Key Vault only through a private
/// endpoint or the `Microsoft.KeyVault` service endpoint on its subnet (Learn, "Private
/// Application Gateway deployment"). Without one, its operation fails as Azure reports a
/// certificate it could not fetch (`src/key_vault.rs`).
#[test]
fn s7_4_private_only_gateway_fetches_a_key_vault_certificate_only_through_the_key_vault_endpoint() {
    let mut h = H::new();
    agw_subnet(&mut h);
    register_isolation(&mut h);
    let body = key_vault_gateway(Some(
        json!({"type": "UserAssigned", "userAssignedIdentities": {uai("id-agw"): {}}}),
    ));
    let r = h.call("PUT", &agw_id("agw-fhir"), NET, Some(body.clone()));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let url = r.get_header("Azure-AsyncOperation").unwrap().to_string();
    h.settle();
    let status = h.poll(&url).json_body();
    assert_eq!(status["status"], "Failed", "{status}");
    assert_eq!(
        status["error"]["code"],
        "ApplicationGatewayKeyVaultSecretException"
    );
    assert!(
        status["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&agw_id("agw-fhir"))
    );
    assert_eq!(
        status["error"]["details"][0]["code"],
        "ApplicationGatewayKeyVaultSecretAccessDenied"
    );
    let g = h.ok("GET", &agw_id("agw-fhir"), NET, None);
    assert_eq!(g["properties"]["provisioningState"], "Failed");

    // The same gateway with a public frontend egresses to the vault.
    let pip = format!(
        "{}/providers/Microsoft.Network/publicIPAddresses/pip",
        rg("hscn-net")
    );
    h.ok("PUT", &pip, NET, Some(json!({"location": "uksouth", "sku": {"name": "Standard"}, "properties": {"publicIPAllocationMethod": "Static"}})));
    h.settle();
    let mut public = body.clone();
    public["properties"]["frontendIPConfigurations"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "fe-public", "properties": {"publicIPAddress": {"id": pip}}}));
    let r = h.call("PUT", &agw_id("agw-fhir"), NET, Some(public));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    h.settle();
    let g = h.ok("GET", &agw_id("agw-fhir"), NET, None);
    assert_eq!(g["properties"]["provisioningState"], "Succeeded");

    // Private-only again, once the subnet has the Microsoft.KeyVault endpoint: PUT again, it
    // recovers.
    agw_subnet_reaching_key_vault(&mut h);
    let r = h.call("PUT", &agw_id("agw-fhir"), NET, Some(body));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let url = r.get_header("Azure-AsyncOperation").unwrap().to_string();
    h.settle();
    assert_eq!(h.poll(&url).json_body()["status"], "Succeeded");
    let g = h.ok("GET", &agw_id("agw-fhir"), NET, None);
    assert_eq!(g["properties"]["provisioningState"], "Succeeded");
}

#[test]
fn s7_4_site_integration_needs_serverfarms_delegation_and_creates_service_association_link() {
    let mut h = H::new();
    h.put_subnet("plain", json!({"addressPrefix": "10.20.3.0/26"}));
    h.settle();
    int_subnet(&mut h);
    site_and_cosmos(&mut h);
    let v = h.fails("PATCH", &site_id("fhir-server"), WEB, Some(json!({"properties": {"virtualNetworkSubnetId": subnet_id("hscn-net", "hscn-vnet", "plain")}})), 400, "BadRequest");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing a delegation to Microsoft.Web/serverFarms")
    );
    h.ok("PATCH", &site_id("fhir-server"), WEB, Some(json!({"properties": {"virtualNetworkSubnetId": subnet_id("hscn-net", "hscn-vnet", "snet-app-int")}})));
    let s = h.ok(
        "GET",
        &subnet_id("hscn-net", "hscn-vnet", "snet-app-int"),
        NET,
        None,
    );
    let link = &s["properties"]["serviceAssociationLinks"][0];
    assert_eq!(link["name"], "AppServiceLink");
    assert_eq!(
        link["properties"]["linkedResourceType"],
        "Microsoft.Web/serverfarms"
    );
    assert_eq!(link["properties"]["allowDelete"], false);
    assert!(
        link["properties"]["link"]
            .as_str()
            .unwrap()
            .contains("/serverfarms/plan")
    );
}

#[test]
fn s7_4_cosmos_vnet_rule_needs_cosmos_endpoint_unless_ignored() {
    let mut h = H::new();
    h.put_subnet("plain", json!({"addressPrefix": "10.20.3.0/26"}));
    h.settle();
    let rule = |ignore: bool| json!({"properties": {"isVirtualNetworkFilterEnabled": true, "virtualNetworkRules": [{"id": subnet_id("hscn-net", "hscn-vnet", "plain"), "ignoreMissingVNetServiceEndpoint": ignore}]}});
    site_and_cosmos(&mut h);
    let v = h.fails(
        "PATCH",
        &cosmos_id("fhir-cosmos"),
        COSMOS,
        Some(rule(false)),
        400,
        "BadRequest",
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Microsoft.AzureCosmosDB")
    );
    h.ok("PATCH", &cosmos_id("fhir-cosmos"), COSMOS, Some(rule(true)));
}

#[test]
fn s7_4_missing_references_are_invalid_resource_reference() {
    let mut h = H::new();
    register_isolation(&mut h);
    let v = h.fails(
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        Some(gateway_body(None)),
        400,
        "InvalidResourceReference",
    );
    assert_eq!(v["error"]["details"][0]["code"], "NotFound");
    site_and_cosmos(&mut h);
    h.fails("PATCH", &site_id("fhir-server"), WEB, Some(json!({"properties": {"virtualNetworkSubnetId": subnet_id("hscn-net", "hscn-vnet", "nope")}})), 400, "InvalidResourceReference");
    // A reference to a gateway child that does not exist.
    agw_subnet(&mut h);
    let mut b = gateway_body(None);
    b["properties"]["requestRoutingRules"][0]["properties"]["backendAddressPool"]["id"] = json!(
        format!("{}/backendAddressPools/missing", agw_id("agw-fhir"))
    );
    h.fails(
        "PUT",
        &agw_id("agw-fhir"),
        NET,
        Some(b),
        400,
        "InvalidResourceReference",
    );
}
