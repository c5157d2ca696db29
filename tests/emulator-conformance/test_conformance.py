"""arm-emulator against Microsoft's Python SDK clients and their pollers (begin_*().result())."""

import json
import time

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest

from conftest import OUTSIDER, PORTAL, SUB

NET_RG = "hscn-net"
VNET = "hscn-vnet"
APP_RG = "fhir"


def subnet_id(name):
    return f"/subscriptions/{SUB}/resourceGroups/{NET_RG}/providers/Microsoft.Network/virtualNetworks/{VNET}/subnets/{name}"


def test_client_secret_credential_gets_a_token_from_the_emulator(emu):
    tok = emu.credential().get_token("https://management.azure.com/.default")
    assert tok.token.count(".") == 2
    with pytest.raises(ClientAuthenticationError):
        emu.credential((OUTSIDER[0], "wrong-secret")).get_token("https://management.azure.com/.default")


def test_resource_group_create_get_delete(emu):
    rc = emu.resources()
    rg = rc.resource_groups.create_or_update("conf-rg", {"location": "uksouth", "tags": {"a": "b"}})
    assert rg.name == "conf-rg"
    assert rc.resource_groups.get("conf-rg").tags == {"a": "b"}
    rc.resource_groups.begin_delete("conf-rg").result()
    with pytest.raises(ResourceNotFoundError):
        rc.resource_groups.get("conf-rg")


def test_vnet_and_subnets_crud_through_pollers(emu):
    net = emu.network()
    v = net.virtual_networks.begin_create_or_update(
        NET_RG, "conf-vnet", {"location": "uksouth", "properties": {"addressSpace": {"addressPrefixes": ["10.50.0.0/16"]}}}
    ).result()
    assert v["properties"]["provisioningState"] == "Succeeded"
    # Update: the SDK's read-modify-write of the VNet (subnets omitted keep them, api-version >= 2023-09-01).
    v["tags"] = {"owner": "conformance"}
    v2 = net.virtual_networks.begin_create_or_update(NET_RG, "conf-vnet", v).result()
    assert v2["tags"] == {"owner": "conformance"}
    s = net.subnets.begin_create_or_update(
        NET_RG,
        "conf-vnet",
        "app-int",
        {
            "properties": {
                "addressPrefix": "10.50.2.0/26",
                "delegations": [{"name": "web", "properties": {"serviceName": "Microsoft.Web/serverFarms"}}],
                "serviceEndpoints": [{"service": "Microsoft.AzureCosmosDB"}],
            }
        },
    ).result()
    assert s["properties"]["provisioningState"] == "Succeeded"
    assert s["properties"]["delegations"][0]["properties"]["actions"] == ["Microsoft.Network/virtualNetworks/subnets/action"]
    assert s["properties"]["serviceEndpoints"][0]["locations"] == ["*"]
    # Update = full replace through the poller.
    s2 = net.subnets.begin_create_or_update(NET_RG, "conf-vnet", "app-int", {"properties": {"addressPrefix": "10.50.2.0/26"}}).result()
    assert "serviceEndpoints" not in s2["properties"]
    got = net.subnets.get(NET_RG, "conf-vnet", "app-int")
    assert got["properties"]["addressPrefix"] == "10.50.2.0/26"
    assert [x.name for x in net.subnets.list(NET_RG, "conf-vnet")] == ["app-int"]
    net.subnets.begin_delete(NET_RG, "conf-vnet", "app-int").result()
    with pytest.raises(ResourceNotFoundError):
        net.subnets.get(NET_RG, "conf-vnet", "app-int")
    net.virtual_networks.begin_delete(NET_RG, "conf-vnet").result()


def _gateway_body(agw_id, snet, pip=None):
    fes = [{"name": "fe-private", "properties": {"privateIPAllocationMethod": "Static", "privateIPAddress": "10.20.1.10", "subnet": {"id": snet}}}]
    if pip:
        fes.append({"name": "fe-public", "properties": {"publicIPAddress": {"id": pip}}})
    return {
        "location": "uksouth",
        "properties": {
            "sku": {"name": "Standard_v2", "tier": "Standard_v2", "capacity": 2},
            "gatewayIPConfigurations": [{"name": "gwip", "properties": {"subnet": {"id": snet}}}],
            "frontendIPConfigurations": fes,
            "frontendPorts": [{"name": "p443", "properties": {"port": 443}}],
            "backendAddressPools": [{"name": "app", "properties": {"backendAddresses": [{"fqdn": "fhir-server.azurewebsites.net"}]}}],
            "backendHttpSettingsCollection": [{"name": "https", "properties": {"port": 443, "protocol": "Https", "pickHostNameFromBackendAddress": True}}],
            "httpListeners": [{"name": "l443", "properties": {
                "frontendIPConfiguration": {"id": f"{agw_id}/frontendIPConfigurations/fe-private"},
                "frontendPort": {"id": f"{agw_id}/frontendPorts/p443"}, "protocol": "Http"}}],
            "requestRoutingRules": [{"name": "r1", "properties": {"ruleType": "Basic", "priority": 100,
                "httpListener": {"id": f"{agw_id}/httpListeners/l443"},
                "backendAddressPool": {"id": f"{agw_id}/backendAddressPools/app"},
                "backendHttpSettings": {"id": f"{agw_id}/backendHttpSettingsCollection/https"}}}],
        },
    }


@pytest.fixture(scope="module")
def agw_subnet(emu):
    net = emu.network()
    net.subnets.begin_create_or_update(
        NET_RG,
        VNET,
        "snet-agw",
        {"properties": {"addressPrefix": "10.20.1.0/24", "serviceEndpoints": [{"service": "Microsoft.Web"}],
                        "delegations": [{"name": "agw", "properties": {"serviceName": "Microsoft.Network/applicationGateways"}}]}},
    ).result()
    return subnet_id("snet-agw")


def test_public_ip_and_application_gateway_crud_and_conflict(emu, agw_subnet):
    net = emu.network()
    pip = net.public_ip_addresses.begin_create_or_update(
        NET_RG, "conf-pip", {"location": "uksouth", "sku": {"name": "Standard"}, "properties": {"publicIPAllocationMethod": "Static"}}
    ).result()
    assert pip["properties"]["ipAddress"]
    pip = net.public_ip_addresses.begin_create_or_update(
        NET_RG, "conf-pip", {"location": "uksouth", "sku": {"name": "Standard"}, "tags": {"t": "1"}, "properties": {"publicIPAllocationMethod": "Static"}}
    ).result()
    assert net.public_ip_addresses.get(NET_RG, "conf-pip").tags == {"t": "1"}
    agw_id = f"/subscriptions/{SUB}/resourceGroups/{NET_RG}/providers/Microsoft.Network/applicationGateways/conf-agw"
    poller = net.application_gateways.begin_create_or_update(NET_RG, "conf-agw", _gateway_body(agw_id, agw_subnet, pip.id))
    # While the gateway is Updating, another write to it (or its VNet) is 409 AnotherOperationInProgress.
    with pytest.raises(HttpResponseError) as e:
        net.application_gateways.begin_create_or_update(NET_RG, "conf-agw", _gateway_body(agw_id, agw_subnet, pip.id))
    assert e.value.status_code == 409
    assert e.value.error.code == "AnotherOperationInProgress"
    g = poller.result()
    assert g["properties"]["provisioningState"] == "Succeeded"
    assert g["properties"]["backendAddressPools"][0]["properties"]["requestRoutingRules"][0]["id"].endswith("/requestRoutingRules/r1")
    sub = net.subnets.get(NET_RG, VNET, "snet-agw")
    assert sub["properties"]["applicationGatewayIPConfigurations"][0]["id"] == f"{agw_id}/gatewayIPConfigurations/gwip"
    # Update: drop the public frontend (full replace).
    g2 = net.application_gateways.begin_create_or_update(NET_RG, "conf-agw", _gateway_body(agw_id, agw_subnet)).result()
    assert len(g2["properties"]["frontendIPConfigurations"]) == 1
    net.application_gateways.begin_delete(NET_RG, "conf-agw").result()
    net.public_ip_addresses.begin_delete(NET_RG, "conf-pip").result()
    with pytest.raises(ResourceNotFoundError):
        net.application_gateways.get(NET_RG, "conf-agw")


def test_key_vault_certificate_needs_a_user_assigned_identity(emu, agw_subnet):
    net = emu.network()
    agw_id = f"/subscriptions/{SUB}/resourceGroups/{NET_RG}/providers/Microsoft.Network/applicationGateways/conf-agw-kv"
    uai = f"/subscriptions/{SUB}/resourceGroups/{APP_RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-agw"
    body = _gateway_body(agw_id, agw_subnet)
    body["properties"]["frontendIPConfigurations"][0]["properties"]["privateIPAddress"] = "10.20.1.11"
    body["properties"]["sslCertificates"] = [
        {"name": "kv", "properties": {"keyVaultSecretId": "https://fhir-vault.vault.azure.net/secrets/fhir-tls"}}
    ]
    with pytest.raises(HttpResponseError) as e:
        net.application_gateways.begin_create_or_update(NET_RG, "conf-agw-kv", body)
    assert e.value.status_code == 400
    assert e.value.error.code == "ApplicationGatewayKeyVaultSecretRequiresUserAssignedIdentity"
    body["identity"] = {"type": "UserAssigned", "userAssignedIdentities": {uai: {}}}
    # A private-only gateway has no internet egress: without the Microsoft.KeyVault endpoint on
    # its subnet it cannot fetch the certificate, and the SDK's poller sees the operation fail.
    with pytest.raises(HttpResponseError) as e:
        net.application_gateways.begin_create_or_update(NET_RG, "conf-agw-kv", body).result()
    assert "ApplicationGatewayKeyVaultSecretException" in str(e.value)
    net.subnets.begin_create_or_update(
        NET_RG,
        VNET,
        "snet-agw",
        {"properties": {"addressPrefix": "10.20.1.0/24",
                        "serviceEndpoints": [{"service": "Microsoft.Web"}, {"service": "Microsoft.KeyVault"}],
                        "delegations": [{"name": "agw", "properties": {"serviceName": "Microsoft.Network/applicationGateways"}}]}},
    ).result()
    g = net.application_gateways.begin_create_or_update(NET_RG, "conf-agw-kv", body).result()
    assert g["properties"]["provisioningState"] == "Succeeded"
    entry = g["identity"]["userAssignedIdentities"][uai]
    assert entry["principalId"] and entry["clientId"]
    # The SDK's read-modify-write sends the model back as it came; the identity survives unchanged.
    g2 = net.application_gateways.begin_create_or_update(NET_RG, "conf-agw-kv", g).result()
    assert g2["identity"] == g["identity"]
    net.application_gateways.begin_delete(NET_RG, "conf-agw-kv").result()


def test_web_plan_site_config_and_vnet_integration(emu):
    net = emu.network()
    net.subnets.begin_create_or_update(
        NET_RG, VNET, "snet-web-int",
        {"properties": {"addressPrefix": "10.20.8.0/26", "delegations": [{"name": "w", "properties": {"serviceName": "Microsoft.Web/serverFarms"}}]}},
    ).result()
    web = emu.web()
    plan = web.app_service_plans.begin_create_or_update(
        APP_RG, "conf-plan", {"location": "uksouth", "sku": {"name": "P1v3", "tier": "PremiumV3"}, "kind": "linux", "properties": {"reserved": True}}
    ).result()
    plan = web.app_service_plans.update(APP_RG, "conf-plan", {"tags": {"t": "1"}})
    assert web.app_service_plans.get(APP_RG, "conf-plan").tags == {"t": "1"}
    site = web.web_apps.begin_create_or_update(
        APP_RG, "conf-site", {"location": "uksouth", "properties": {"serverFarmId": plan.id, "httpsOnly": True}}
    ).result()
    assert site["properties"]["defaultHostName"] == "conf-site.azurewebsites.net"
    cfg = web.web_apps.update_configuration(
        APP_RG, "conf-site",
        {"properties": {"ipSecurityRestrictions": [{"name": "agw", "action": "Allow", "priority": 100, "vnetSubnetResourceId": subnet_id("snet-web-int")}],
                        "ipSecurityRestrictionsDefaultAction": "Deny", "scmIpSecurityRestrictionsDefaultAction": "Deny", "ftpsState": "Disabled"}},
    )
    rules = cfg["properties"]["ipSecurityRestrictions"]
    assert [r["name"] for r in rules] == ["agw", "Deny all"]
    assert rules[-1]["priority"] == 2147483647
    got = web.web_apps.get_configuration(APP_RG, "conf-site")
    assert got["properties"]["ftpsState"] == "Disabled"
    # Regional VNet integration through the site PATCH, then the swift connection API.
    web.web_apps.update(APP_RG, "conf-site", {"properties": {"virtualNetworkSubnetId": subnet_id("snet-web-int")}})
    link = net.subnets.get(NET_RG, VNET, "snet-web-int")["properties"]["serviceAssociationLinks"][0]
    assert link["properties"]["linkedResourceType"] == "Microsoft.Web/serverfarms"
    conn = web.web_apps.get_swift_virtual_network_connection(APP_RG, "conf-site")
    assert conn["properties"]["subnetResourceId"] == subnet_id("snet-web-int")
    web.web_apps.delete_swift_virtual_network(APP_RG, "conf-site")
    assert "serviceAssociationLinks" not in net.subnets.get(NET_RG, VNET, "snet-web-int")["properties"]
    web.web_apps.create_or_update_swift_virtual_network_connection_with_check(
        APP_RG, "conf-site", {"properties": {"subnetResourceId": subnet_id("snet-web-int"), "swiftSupported": True}}
    )
    assert web.web_apps.get(APP_RG, "conf-site")["properties"]["virtualNetworkSubnetId"] == subnet_id("snet-web-int")
    web.web_apps.delete_swift_virtual_network(APP_RG, "conf-site")
    web.web_apps.delete(APP_RG, "conf-site")
    web.app_service_plans.delete(APP_RG, "conf-plan")
    with pytest.raises(ResourceNotFoundError):
        web.web_apps.get(APP_RG, "conf-site")
    net.subnets.begin_delete(NET_RG, VNET, "snet-web-int").result()


def test_cosmos_create_update_conflict_delete(emu):
    cosmos = emu.cosmos()
    acct = cosmos.database_accounts.begin_create_or_update(
        APP_RG, "conf-cosmos",
        {"location": "uksouth", "kind": "GlobalDocumentDB", "properties": {
            "databaseAccountOfferType": "Standard", "locations": [{"locationName": "UK South", "failoverPriority": 0}],
            "ipRules": [{"ipAddressOrRange": "1.1.1.1"}, {"ipAddressOrRange": "2.2.2.2"}], "disableLocalAuth": True}},
    ).result()
    assert acct["properties"]["provisioningState"] == "Succeeded"
    assert acct["properties"]["readLocations"][0]["locationName"] == "UK South"
    poller = cosmos.database_accounts.begin_update(APP_RG, "conf-cosmos", {"properties": {"ipRules": [{"ipAddressOrRange": "3.3.3.3"}]}})
    with pytest.raises(HttpResponseError) as e:
        cosmos.database_accounts.begin_update(APP_RG, "conf-cosmos", {"properties": {"ipRules": []}})
    assert e.value.status_code == 412
    assert e.value.error.code == "PreconditionFailed"
    upd = poller.result()
    assert [r["ipAddressOrRange"] for r in upd["properties"]["ipRules"]] == ["3.3.3.3"]
    assert upd["properties"]["disableLocalAuth"] is True
    cosmos.database_accounts.begin_delete(APP_RG, "conf-cosmos").result()
    with pytest.raises(ResourceNotFoundError):
        cosmos.database_accounts.get(APP_RG, "conf-cosmos")


def test_throttling_is_retried_by_the_sdk_honouring_retry_after(emu):
    emu.control("PUT", "/_emulator/throttle", {
        "reads": {"capacity": 2, "refillPerSecond": 2},
        "writes": {"capacity": 200, "refillPerSecond": 10},
        "deletes": {"capacity": 200, "refillPerSecond": 10}})
    emu.control("DELETE", "/_emulator/stats")
    net = emu.network()
    for _ in range(4):
        assert net.virtual_networks.get(NET_RG, VNET).name == VNET
    stats = emu.control("GET", "/_emulator/stats")
    assert stats["byStatus"].get("429", 0) >= 1, stats["byStatus"]
    assert stats["byStatus"]["200"] == 4


def test_outside_a_role_assignment_is_403_authorization_failed(emu):
    with pytest.raises(HttpResponseError) as e:
        emu.network(OUTSIDER).virtual_networks.get(NET_RG, VNET)
    assert e.value.status_code == 403
    assert e.value.error.code == "AuthorizationFailed"
    assert "does not have authorization to perform action 'Microsoft.Network/virtualNetworks/read'" in e.value.error.message


def test_out_of_band_portal_user_changes_are_plain_arm_calls(emu):
    web = emu.web(PORTAL)
    web.web_apps.update_configuration(APP_RG, "fhir-server", {"properties": {"scmIpSecurityRestrictionsDefaultAction": "Allow"}})
    stats = emu.control("GET", "/_emulator/stats")
    assert stats["byPrincipal"].get("6f1c2a52-0000-4000-8000-00000000b002", 0) >= 1
    assert emu.web().web_apps.get_configuration(APP_RG, "fhir-server")["properties"]["scmIpSecurityRestrictionsDefaultAction"] == "Allow"


def test_unknown_fields_round_trip(emu):
    net = emu.network()
    pipeline = net._client  # the SDK's own authenticated pipeline
    url = f"{emu.arm}{subnet_id('snet-unknown')}?api-version=2025-01-01"
    body = {"properties": {"addressPrefix": "10.20.9.0/24", "futureKnob": {"mode": "strict"}}}
    r = pipeline.send_request(HttpRequest("PUT", url, json=body))
    assert r.status_code == 201
    for _ in range(200):  # the raw PUT started an LRO; a second write meanwhile would be a 409
        if net.subnets.get(NET_RG, VNET, "snet-unknown")["properties"]["provisioningState"] == "Succeeded":
            break
        time.sleep(0.05)
    net.subnets.begin_create_or_update(NET_RG, VNET, "snet-unknown", net.subnets.get(NET_RG, VNET, "snet-unknown")).result()
    got = pipeline.send_request(HttpRequest("GET", url))
    assert got.json()["properties"]["futureKnob"] == {"mode": "strict"}, "the SDK's read-modify-write kept the unknown field"
    net.subnets.begin_delete(NET_RG, VNET, "snet-unknown").result()


def test_unsupported_api_version_is_no_registered_provider_found(emu):
    net = emu.network()
    r = net._client.send_request(HttpRequest("GET", f"{emu.arm}{subnet_id('x')}?api-version=2017-01-01"))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "NoRegisteredProviderFound"
    assert r.headers["x-ms-request-id"]


def test_exposure_oracle_sees_the_wide_open_seed(emu):
    x = emu.control("GET", "/_emulator/exposure")
    site = f"/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.Web/sites/fhir-server"
    assert x["sites"][site]["main"]["internetDirect"] is True
    cosmos = f"/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.DocumentDB/databaseAccounts/fhir-cosmos"
    assert x["cosmos"][cosmos]["dataPlane"]["internetDirect"] is True
