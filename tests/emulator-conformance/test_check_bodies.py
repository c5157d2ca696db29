"""The test of the test: check_bodies.py must report each kind of broken body and pass good ones."""

import json
import subprocess
import sys

import pytest

import check_bodies as cb
import sdk_models as sm

SUB = "6f1c2a52-0000-4000-8000-000000000001"
NET = f"/subscriptions/{SUB}/resourceGroups/hscn-net/providers/Microsoft.Network"
SUBNET_ID = f"{NET}/virtualNetworks/hscn-vnet/subnets/snet-fhir-agw"
AGW_ID = f"{NET}/applicationGateways/agw-fhir"
SITE_ID = f"/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.Web/sites/fhir-server"
COSMOS_ID = f"/subscriptions/{SUB}/resourceGroups/fhir/providers/Microsoft.DocumentDB/databaseAccounts/fhir-cosmos"

SUBNET = "Microsoft.Network/virtualNetworks/subnets"
AGW = "Microsoft.Network/applicationGateways"
CONFIG = "Microsoft.Web/sites/config"
SITE = "Microsoft.Web/sites"
COSMOS = "Microsoft.DocumentDB/databaseAccounts"


def good_subnet():
    return {
        "name": "snet-fhir-agw",
        "properties": {
            "addressPrefix": "10.20.1.0/26",
            "delegations": [{"name": "agw", "properties": {"serviceName": "Microsoft.Network/applicationGateways"}}],
            "serviceEndpoints": [{"service": "Microsoft.Web"}],
            "privateEndpointNetworkPolicies": "Disabled",
        },
    }


def good_gateway():
    ref = lambda coll, name: {"id": f"{AGW_ID}/{coll}/{name}"}  # noqa: E731
    return {
        "location": "uksouth",
        "tags": {"fhirlock-owner": "default/patient-records", "fhirlock-tls": "sha256:00ff"},
        "properties": {
            "sku": {"name": "Standard_v2", "tier": "Standard_v2", "capacity": 2},
            "gatewayIPConfigurations": [{"name": "gwip", "properties": {"subnet": {"id": SUBNET_ID}}}],
            "frontendIPConfigurations": [
                {"name": "fe", "properties": {"privateIPAllocationMethod": "Static", "privateIPAddress": "10.20.1.10", "subnet": {"id": SUBNET_ID}}}
            ],
            "frontendPorts": [{"name": "p443", "properties": {"port": 443}}],
            "sslCertificates": [{"name": "tls", "properties": {"data": "<redacted>", "password": "<redacted>"}}],
            "backendAddressPools": [{"name": "app", "properties": {"backendAddresses": [{"fqdn": "fhir-server.azurewebsites.net"}]}}],
            "backendHttpSettingsCollection": [
                {"name": "https", "properties": {"port": 443, "protocol": "Https", "pickHostNameFromBackendAddress": True, "requestTimeout": 30}}
            ],
            "httpListeners": [
                {
                    "name": "l443",
                    "properties": {
                        "frontendIPConfiguration": ref("frontendIPConfigurations", "fe"),
                        "frontendPort": ref("frontendPorts", "p443"),
                        "protocol": "Https",
                        "hostName": "fhir.trust.nhs.uk",
                        "sslCertificate": ref("sslCertificates", "tls"),
                    },
                }
            ],
            "requestRoutingRules": [
                {
                    "name": "r1",
                    "properties": {
                        "ruleType": "Basic",
                        "priority": 100,
                        "httpListener": ref("httpListeners", "l443"),
                        "backendAddressPool": ref("backendAddressPools", "app"),
                        "backendHttpSettings": ref("backendHttpSettingsCollection", "https"),
                    },
                }
            ],
            "sslPolicy": {"policyType": "Predefined", "policyName": "AppGwSslPolicy20220101"},
        },
    }


def good_config():
    return {
        "properties": {
            "minTlsVersion": "1.2",
            "ftpsState": "Disabled",
            "ipSecurityRestrictionsDefaultAction": "Deny",
            "scmIpSecurityRestrictionsDefaultAction": "Deny",
            "scmIpSecurityRestrictionsUseMain": False,
            "ipSecurityRestrictions": [
                {"name": "fhirlock-gateway", "action": "Allow", "priority": 100, "vnetSubnetResourceId": SUBNET_ID, "tag": "Default"}
            ],
        }
    }


def good_cosmos_put():
    return {
        "location": "uksouth",
        "kind": "GlobalDocumentDB",
        "properties": {
            "databaseAccountOfferType": "Standard",
            "locations": [{"locationName": "UK South", "failoverPriority": 0}],
            "publicNetworkAccess": "Enabled",
            "isVirtualNetworkFilterEnabled": True,
            "virtualNetworkRules": [{"id": SUBNET_ID, "ignoreMissingVNetServiceEndpoint": False}],
            "networkAclBypass": "None",
        },
    }


GOOD = [
    (SUBNET, "PUT", good_subnet),
    (AGW, "PUT", good_gateway),
    (AGW, "PATCH", lambda: {"tags": {"fhirlock-owner": "default/patient-records"}}),
    (CONFIG, "PATCH", good_config),
    (CONFIG, "PUT", good_config),
    (SITE, "PATCH", lambda: {"properties": {"httpsOnly": True, "virtualNetworkSubnetId": SUBNET_ID}}),
    (COSMOS, "PUT", good_cosmos_put),
    (COSMOS, "PATCH", lambda: {"properties": {"publicNetworkAccess": "Enabled", "ipRules": [], "networkAclBypass": "None"}}),
    ("resourceGroups", "PUT", lambda: {"location": "uksouth", "tags": {"env": "dev"}}),
]


@pytest.mark.parametrize("rtype,method,body", GOOD, ids=[f"{t.rsplit('/', 1)[-1]}-{m}" for t, m, _ in GOOD])
def test_known_good_bodies_pass(rtype, method, body):
    path = f"{SITE_ID}/config/web" if rtype == CONFIG else ""
    assert cb.check_body(rtype, method, body(), path) == []


def _with(body, dotted, value):
    """A copy of body with value set at a dotted path (`a.b[0].c`)."""
    body = json.loads(json.dumps(body))
    node = body
    parts = dotted.split(".")
    for p in parts[:-1]:
        name, _, idx = p.partition("[")
        node = node[name] if not idx else node[name][int(idx[:-1])]
    node[parts[-1]] = value
    return body


def _without(body, dotted):
    body = json.loads(json.dumps(body))
    node = body
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node[p]
    del node[parts[-1]]
    return body


BROKEN = [
    # (name, rtype, method, body, kind, at)
    ("read-only provisioningState", SUBNET, "PUT", _with(good_subnet(), "properties.provisioningState", "Succeeded"), "read-only", "properties.provisioningState"),
    ("read-only etag", SUBNET, "PUT", _with(good_subnet(), "etag", 'W/"1"'), "read-only", "etag"),
    ("read-only delegation actions", SUBNET, "PUT", _with(good_subnet(), "properties.delegations[0].properties.actions", ["x"]), "read-only", "properties.delegations[0].properties.actions"),
    ("read-only gateway child type", AGW, "PUT", _with(good_gateway(), "properties.frontendPorts[0].type", "Microsoft.Network/applicationGateways/frontendPorts"), "read-only", "properties.frontendPorts[0].type"),
    ("read-only operationalState", AGW, "PUT", _with(good_gateway(), "properties.operationalState", "Running"), "read-only", "properties.operationalState"),
    ("unknown top-level property", SUBNET, "PUT", _with(good_subnet(), "properties.addressPrefixx", "10.0.0.0/24"), "unknown", "properties.addressPrefixx"),
    ("unknown nested property", AGW, "PUT", _with(good_gateway(), "properties.frontendPorts[0].properties.portNumber", 443), "unknown", "properties.frontendPorts[0].properties.portNumber"),
    ("unknown with wrong case", CONFIG, "PATCH", _with(good_config(), "properties.MinTlsVersion", "1.2"), "unknown", "properties.MinTlsVersion"),
    ("bad enum: allocation method", AGW, "PUT", _with(good_gateway(), "properties.frontendIPConfigurations[0].properties.privateIPAllocationMethod", "Fixed"), "enum", "properties.frontendIPConfigurations[0].properties.privateIPAllocationMethod"),
    ("bad enum: sku tier", AGW, "PUT", _with(good_gateway(), "properties.sku.tier", "Premium_v2"), "enum", "properties.sku.tier"),
    ("bad enum: ftpsState", CONFIG, "PATCH", _with(good_config(), "properties.ftpsState", "Off"), "enum", "properties.ftpsState"),
    ("bad enum: restriction default action", CONFIG, "PATCH", _with(good_config(), "properties.ipSecurityRestrictionsDefaultAction", "Block"), "enum", "properties.ipSecurityRestrictionsDefaultAction"),
    ("bad enum: cosmos publicNetworkAccess", COSMOS, "PATCH", {"properties": {"publicNetworkAccess": "Private"}}, "enum", "properties.publicNetworkAccess"),
    ("bad tag name fhirlock.io/owner", AGW, "PUT", _with(good_gateway(), "tags", {"fhirlock.io/owner": "default/x"}), "tag", "tags.fhirlock.io/owner"),
    ("bad tag name on PATCH", AGW, "PATCH", {"tags": {"fhirlock.io/tls": "sha256:00"}}, "tag", "tags.fhirlock.io/tls"),
    ("bad tag name on a resource group", "resourceGroups", "PUT", {"location": "uksouth", "tags": {"a?b": "x"}}, "tag", "tags.a?b"),
    ("too many tags", COSMOS, "PATCH", {"tags": {f"t{i}": "v" for i in range(51)}}, "tag", "tags"),
    ("tag value too long", AGW, "PATCH", {"tags": {"k": "v" * 257}}, "tag", "tags.k"),
    ("missing required locations", COSMOS, "PUT", _without(good_cosmos_put(), "properties.locations"), "required", "properties.locations"),
    ("missing required offer type", COSMOS, "PUT", _without(good_cosmos_put(), "properties.databaseAccountOfferType"), "required", "properties.databaseAccountOfferType"),
    ("missing required location", SITE, "PUT", {"properties": {"serverFarmId": "/x"}}, "required", "location"),
    ("constant offer type", COSMOS, "PUT", _with(good_cosmos_put(), "properties.databaseAccountOfferType", "Premium"), "constant", "properties.databaseAccountOfferType"),
    ("constraint: priority range", CONFIG, "PATCH", _with(good_config(), "properties.preWarmedInstanceCount", 11), "constraint", "properties.preWarmedInstanceCount"),
    ("type: port as string", AGW, "PUT", _with(good_gateway(), "properties.frontendPorts[0].properties.port", "443"), "type", "properties.frontendPorts[0].properties.port"),
]


@pytest.mark.parametrize("name,rtype,method,body,kind,at", BROKEN, ids=[b[0] for b in BROKEN])
def test_each_broken_body_is_reported(name, rtype, method, body, kind, at):
    path = f"{SITE_ID}/config/web" if rtype == CONFIG else ""
    found = [(v.kind, v.path) for v in cb.check_body(rtype, method, body, path)]
    assert (kind, at) in found, found
    assert len(found) == 1, f"only the one fault is reported: {found}"


def test_models_are_the_pinned_api_versions():
    pins = sm.read_pins()
    assert {k: p.api_version for k, p in pins.items()} == {"network": "2024-10-01", "web": "2024-11-01", "cosmosdb": "2025-04-15"}
    for pkg in pins.values():
        sm.models_of(pkg)  # installed and importable beside the newer clients


def _dump(tmp_path, bodies):
    reqs = [
        {"seq": i + 1, "principal": "op", "method": m, "path": p, "resourceType": t, "apiVersion": "2025-01-01", "status": 200, "body": b}
        for i, (m, p, t, b) in enumerate(bodies)
    ]
    f = tmp_path / "requests.json"
    f.write_text(json.dumps({"capacity": 10000, "dropped": 0, "requests": reqs}))
    return f


def test_cli_exit_status_and_listing(tmp_path):
    good = _dump(tmp_path, [("PUT", SUBNET_ID, SUBNET, good_subnet()), ("GET", SUBNET_ID, SUBNET, None)])
    r = subprocess.run([sys.executable, "check_bodies.py", "--from-file", str(good)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "checked 1 write bodies" in r.stdout and "no violations" in r.stdout
    bad_body = _with(good_gateway(), "tags", {"fhirlock.io/owner": "x"})
    bad = _dump(tmp_path, [("PUT", AGW_ID, AGW, bad_body), ("PUT", SUBNET_ID, SUBNET, _with(good_subnet(), "properties.provisioningState", "Succeeded"))])
    r = subprocess.run([sys.executable, "check_bodies.py", "--from-file", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "[tag] tags.fhirlock.io/owner" in r.stdout and "[read-only] properties.provisioningState" in r.stdout
    assert "2 violation(s)" in r.stdout
    r = subprocess.run([sys.executable, "check_bodies.py", "--from-file", str(bad), "--json", "--principal", "someone-else"], capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["checked"] == 0
    r = subprocess.run([sys.executable, "check_bodies.py", "--from-file", str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert r.returncode == 2


def test_a_backend_health_post_without_a_body_passes_and_one_with_a_body_does_not():
    path = f"{AGW_ID}/backendhealth"
    rtype = "Microsoft.Network/applicationGateways/backendhealth"
    bare = {"seq": 1, "method": "POST", "path": path, "resourceType": rtype, "body": None}
    assert cb.check_requests([bare]) == []
    with_body = dict(bare, seq=2, body={"anything": 1})
    found = cb.check_requests([with_body])
    assert [v.kind for _, v in found] == ["body"]
