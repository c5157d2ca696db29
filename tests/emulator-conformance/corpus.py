"""Invalid write bodies generated from Microsoft's models, for holding the emulator to them.

`BASES` are known-good bodies, one per resource type and write method the emulator serves, built
in their own resource group (`corpus`) so they touch nothing else in the suite's emulator. From
each, `variants` makes the invalid ones the models describe: every enum-typed field present gets a
value outside its enum; every required field is removed; the top-level tags get reserved
characters; and every read-only string field the model declares at the top level is added. ARM's
RPC (v1.0/async-api-reference.md) has resource providers ignore a `provisioningState` that matches
the server's, so that is the value sent; the emulator must accept these, not refuse them.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import check_bodies as cb
import sdk_models as sm

SUB = "6f1c2a52-0000-4000-8000-000000000001"
RG = f"/subscriptions/{SUB}/resourceGroups/corpus"
NET = f"{RG}/providers/Microsoft.Network"
WEB = f"{RG}/providers/Microsoft.Web"
VNET_ID = f"{NET}/virtualNetworks/corpus-vnet"
AGW_SUBNET = f"{VNET_ID}/subnets/agw"
INT_SUBNET = f"{VNET_ID}/subnets/int"
AGW_ID = f"{NET}/applicationGateways/corpus-agw"
PIP_ID = f"{NET}/publicIPAddresses/corpus-pip"
WAF_ID = f"{NET}/ApplicationGatewayWebApplicationFirewallPolicies/corpus-waf"
PLAN_ID = f"{WEB}/serverfarms/corpus-plan"
SITE_ID = f"{WEB}/sites/corpus-site"
COSMOS_ID = f"{RG}/providers/Microsoft.DocumentDB/databaseAccounts/corpus-cosmos"
CERT_ID = f"{WEB}/certificates/corpus-cert"
HOST = "fhir.corpus.test"
BINDING_ID = f"{SITE_ID}/hostNameBindings/{HOST}"
PFX_PASSWORD = "corpus-pfx-password"
API = {"Microsoft.Network": "2025-01-01", "Microsoft.Web": "2024-11-01", "Microsoft.DocumentDB": "2025-04-15", "resourceGroups": "2024-03-01"}


def _gateway():
    ref = lambda coll, name: {"id": f"{AGW_ID}/{coll}/{name}"}  # noqa: E731
    return {
        "location": "uksouth",
        "tags": {"fhirlock-owner": "corpus"},
        "properties": {
            "sku": {"name": "Standard_v2", "tier": "Standard_v2", "capacity": 1},
            "gatewayIPConfigurations": [{"name": "gwip", "properties": {"subnet": {"id": AGW_SUBNET}}}],
            "frontendIPConfigurations": [
                {"name": "fe", "properties": {"privateIPAllocationMethod": "Static", "privateIPAddress": "10.60.1.10", "subnet": {"id": AGW_SUBNET}}}
            ],
            "frontendPorts": [{"name": "p443", "properties": {"port": 443}}],
            "sslCertificates": [{"name": "tls", "properties": {"data": "UEZY", "password": "pw"}}],
            "backendAddressPools": [{"name": "app", "properties": {"backendAddresses": [{"fqdn": "corpus-site.azurewebsites.net"}]}}],
            "backendHttpSettingsCollection": [
                {"name": "https", "properties": {"port": 443, "protocol": "Https", "cookieBasedAffinity": "Disabled", "pickHostNameFromBackendAddress": True}}
            ],
            "httpListeners": [
                {
                    "name": "l443",
                    "properties": {
                        "frontendIPConfiguration": ref("frontendIPConfigurations", "fe"),
                        "frontendPort": ref("frontendPorts", "p443"),
                        "protocol": "Https",
                        "hostName": "fhir.corpus.test",
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


def _config():
    return {
        "properties": {
            "minTlsVersion": "1.2",
            "scmMinTlsVersion": "1.2",
            "ftpsState": "Disabled",
            "ipSecurityRestrictionsDefaultAction": "Deny",
            "scmIpSecurityRestrictionsDefaultAction": "Deny",
            "scmIpSecurityRestrictionsUseMain": False,
            "ipSecurityRestrictions": [{"name": "gw", "action": "Allow", "priority": 100, "vnetSubnetResourceId": AGW_SUBNET, "tag": "Default"}],
            "scmIpSecurityRestrictions": [{"name": "office", "action": "Allow", "priority": 100, "ipAddress": "203.0.113.0/24", "tag": "Default"}],
        }
    }


def _cosmos():
    return {
        "location": "uksouth",
        "kind": "GlobalDocumentDB",
        "tags": {"env": "corpus"},
        "properties": {
            "databaseAccountOfferType": "Standard",
            "locations": [{"locationName": "UK South", "failoverPriority": 0}],
            "publicNetworkAccess": "Enabled",
            "networkAclBypass": "None",
            "isVirtualNetworkFilterEnabled": True,
            "virtualNetworkRules": [{"id": INT_SUBNET, "ignoreMissingVNetServiceEndpoint": True}],
            "ipRules": [{"ipAddressOrRange": "203.0.113.7"}],
            "consistencyPolicy": {"defaultConsistencyLevel": "Session"},
            "minimalTlsVersion": "Tls12",
        },
    }


def _pfx() -> tuple[str, str]:
    """A PFX (base64) for HOST, self-signed, and the SHA-1 thumbprint App Service computes for it.
    The emulator opens the PFX and binds only a certificate that covers the host, as Azure does."""
    import base64
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    der = pkcs12.serialize_key_and_certificates(b"corpus", key, cert, None, serialization.BestAvailableEncryption(PFX_PASSWORD.encode()))
    thumb = cert.fingerprint(hashes.SHA1()).hex().upper()
    return base64.b64encode(der).decode(), thumb


PFX, THUMBPRINT = _pfx()


@dataclass
class Base:
    """A known-good write: (method, resource id, resource type as the emulator records it, body)."""

    method: str
    id: str
    rtype: str
    body: dict

    @property
    def api(self) -> str:
        ns = self.rtype.split("/")[0]
        return API.get(ns, API["resourceGroups"])


# Written in this order: each base's references exist once the ones before it are in place.
BASES = [
    Base("PUT", RG, "resourceGroups", {"location": "uksouth", "tags": {"env": "corpus"}}),
    Base("PATCH", RG, "resourceGroups", {"tags": {"env": "corpus"}}),
    Base("PUT", VNET_ID, "Microsoft.Network/virtualNetworks", {"location": "uksouth", "tags": {"env": "corpus"}, "properties": {"addressSpace": {"addressPrefixes": ["10.60.0.0/16"]}}}),
    Base("PATCH", VNET_ID, "Microsoft.Network/virtualNetworks", {"tags": {"env": "corpus"}}),
    Base("PUT", AGW_SUBNET, "Microsoft.Network/virtualNetworks/subnets", {"properties": {
        "addressPrefix": "10.60.1.0/26",
        "delegations": [{"name": "agw", "properties": {"serviceName": "Microsoft.Network/applicationGateways"}}],
        "serviceEndpoints": [{"service": "Microsoft.Web"}],
        "privateEndpointNetworkPolicies": "Disabled",
        "privateLinkServiceNetworkPolicies": "Enabled",
    }}),
    Base("PUT", INT_SUBNET, "Microsoft.Network/virtualNetworks/subnets", {"properties": {
        "addressPrefix": "10.60.2.0/26",
        "delegations": [{"name": "web", "properties": {"serviceName": "Microsoft.Web/serverFarms"}}],
        "serviceEndpoints": [{"service": "Microsoft.AzureCosmosDB"}],
    }}),
    Base("PUT", PIP_ID, "Microsoft.Network/publicIPAddresses", {"location": "uksouth", "sku": {"name": "Standard", "tier": "Regional"}, "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"}}),
    Base("PATCH", PIP_ID, "Microsoft.Network/publicIPAddresses", {"tags": {"env": "corpus"}}),
    Base("PUT", WAF_ID, "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies", {"location": "uksouth", "tags": {"fhirlock-owner": "corpus"}, "properties": {
        "policySettings": {"state": "Enabled", "mode": "Prevention", "requestBodyCheck": True},
        "managedRules": {"managedRuleSets": [{"ruleSetType": "Microsoft_DefaultRuleSet", "ruleSetVersion": "2.1"}]},
    }}),
    Base("PUT", AGW_ID, "Microsoft.Network/applicationGateways", _gateway()),
    Base("PUT", PLAN_ID, "Microsoft.Web/serverfarms", {"location": "uksouth", "kind": "linux", "sku": {"name": "P1v3", "tier": "PremiumV3", "capacity": 1}, "properties": {"reserved": True}}),
    # AppServicePlanPatchResource and SitePatchResource have no `tags` at 2024-11-01.
    Base("PATCH", PLAN_ID, "Microsoft.Web/serverfarms", {"properties": {"perSiteScaling": False}}),
    Base("PUT", SITE_ID, "Microsoft.Web/sites", {"location": "uksouth", "kind": "app,linux", "tags": {"env": "corpus"}, "properties": {
        "serverFarmId": PLAN_ID, "httpsOnly": True, "publicNetworkAccess": "Enabled", "clientCertMode": "Required",
        "siteConfig": {"minTlsVersion": "1.2", "ftpsState": "Disabled"}}}),
    Base("PATCH", SITE_ID, "Microsoft.Web/sites", {"properties": {"httpsOnly": True, "clientCertMode": "Optional"}}),
    Base("PUT", f"{SITE_ID}/config/web", "Microsoft.Web/sites/config", _config()),
    Base("PATCH", f"{SITE_ID}/config/web", "Microsoft.Web/sites/config", _config()),
    Base("PUT", f"{SITE_ID}/networkConfig/virtualNetwork", "Microsoft.Web/sites/networkConfig", {"properties": {"subnetResourceId": INT_SUBNET, "swiftSupported": True}}),
    # An App Service certificate and the host bound with it, as hostHeader Preserve writes them; the
    # binding needs the asuid TXT record in the emulated DNS first (test_emulator_corpus.estate).
    Base("PUT", CERT_ID, "Microsoft.Web/certificates", {"location": "uksouth", "tags": {"fhirlock-owner": "corpus"}, "properties": {
        "pfxBlob": PFX, "password": PFX_PASSWORD, "serverFarmId": PLAN_ID}}),
    Base("PUT", BINDING_ID, "Microsoft.Web/sites/hostNameBindings", {"properties": {
        "siteName": "corpus-site", "hostNameType": "Verified", "customHostNameDnsRecordType": "A",
        "azureResourceType": "Website", "sslState": "SniEnabled", "thumbprint": THUMBPRINT}}),
    Base("PUT", COSMOS_ID, "Microsoft.DocumentDB/databaseAccounts", _cosmos()),
    Base("PATCH", COSMOS_ID, "Microsoft.DocumentDB/databaseAccounts", {"tags": {"env": "corpus"}, "properties": {"publicNetworkAccess": "Enabled", "networkAclBypass": "None", "minimalTlsVersion": "Tls12"}}),
]


@dataclass
class Variant:
    base: Base
    kind: str  # enum | required | tag | read-only
    at: str
    body: dict


def _walk(cls, value, path, models, out):
    """(path, Field) for every field of the model tree present in value."""
    if not isinstance(value, dict):
        return
    cls = sm.subtype(cls, value, models)
    for f in sm.fields(cls):
        v = value
        for part in f.wire:
            v = v.get(part) if isinstance(v, dict) else None
        if v is None:
            continue
        here = path + list(f.wire)
        out.append((here, f))
        inner = f.type.strip("[]{}")
        sub = sm.model_class(models, inner) if inner not in cb.PRIMITIVES and inner != "object" else None
        if sub is None or f.readonly:
            continue
        for i, x in (enumerate(v) if isinstance(v, list) else [(None, v)]):
            _walk(sub, x, here + ([i] if i is not None else []), models, out)


def present_fields(base: Base):
    found = cb.model_for(base.rtype, base.method)
    if found is None:
        return []
    out = []
    _walk(found[1], base.body, [], sm.models_of(found[0]), out)
    return out


def _set(body, path, value=None, delete=False):
    body = copy.deepcopy(body)
    node = body
    for p in path[:-1]:
        node = node[p]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return body


def _dotted(path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def variants(base: Base) -> list[Variant]:
    out = []
    found = cb.model_for(base.rtype, base.method)
    for path, f in present_fields(base):
        if f.enum is not None and not f.readonly:
            bad = [f"Not{f.enum.__name__}"] if f.type == "str" else [f"Not{f.enum.__name__}"]
            out.append(Variant(base, "enum", _dotted(path), _set(base.body, path, bad[0] if f.type == "str" else bad)))
        if f.required:
            out.append(Variant(base, "required", _dotted(path), _set(base.body, path, delete=True)))
    if "tags" in base.body:
        for name in ("fhirlock.io/owner", "a<b", "a%b", "a&b", "a\\b", "a?b", "a>b"):
            out.append(Variant(base, "tag", f"tags.{name}", _set(base.body, ["tags"], {name: "x"})))
    if found is not None:
        for f in sm.fields(found[1]):
            if f.readonly and len(f.wire) <= 2 and f.type == "str" and f.wire[0] in ("properties", "etag", "type"):
                if len(f.wire) == 2 and not isinstance(base.body.get("properties"), dict):
                    continue
                out.append(Variant(base, "read-only", ".".join(f.wire), _set(base.body, list(f.wire), "Succeeded" if f.wire[-1] == "provisioningState" else "x")))
    return out


def dump(v: Variant) -> str:
    return json.dumps(v.body, sort_keys=True)
