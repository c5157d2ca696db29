"""Workload identity against the emulator with Microsoft's own credential: azure-identity's
WorkloadIdentityCredential reads a projected service-account token file and exchanges it as a
federated client assertion (issuer, subject, audience api://AzureADTokenExchange, RS256)."""

import base64
import json
import shutil
import subprocess
import tempfile
import time

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import WorkloadIdentityCredential
from azure.mgmt.network import NetworkManagementClient
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import OPERATOR, SUB, TENANT, TIME_SCALE, _binary

ISSUER = "https://oidc.fhirlock.test"
SUBJECT = "system:serviceaccount:fhirlock-system:fhirlock"


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def wi():
    """A second emulator whose operator client trusts a federated issuer (key made here)."""
    work = tempfile.mkdtemp(prefix="arm-emulator-wi-")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key().public_numbers()
    jwks = {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "sa-1", "n": _b64(pub.n), "e": _b64(pub.e)}]}
    with open(f"{work}/jwks.json", "w") as f:
        json.dump(jwks, f)
    config = {
        "tenants": [{"id": TENANT, "clients": [{
            "clientId": OPERATOR[0], "objectId": "6f1c2a52-0000-4000-8000-00000000b001", "displayName": "fhirlock-dev",
            "federatedCredentials": [{"issuer": ISSUER, "subject": SUBJECT, "jwksFile": f"{work}/jwks.json"}]}]}],
        "subscriptions": [SUB],
        "roleAssignments": [{"principal": "6f1c2a52-0000-4000-8000-00000000b001", "scope": f"/subscriptions/{SUB}", "actions": ["*"]}],
        "seed": [{"id": f"/subscriptions/{SUB}/resourceGroups/hscn-net", "body": {"location": "uksouth"}}],
    }
    with open(f"{work}/config.json", "w") as f:
        json.dump(config, f)
    proc = subprocess.Popen(
        [_binary(), "--addr", "127.0.0.1:0", "--data-dir", f"{work}/data", "--config", f"{work}/config.json", "--time-scale", TIME_SCALE],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        ready = json.loads(proc.stdout.readline())

        def token_file(sub=SUBJECT, aud="api://AzureADTokenExchange", iss=ISSUER, lifetime=3600):
            now = int(time.time())
            tok = jwt.encode({"iss": iss, "sub": sub, "aud": [aud], "iat": now, "nbf": now, "exp": now + lifetime},
                             key, algorithm="RS256", headers={"kid": "sa-1"})
            with tempfile.NamedTemporaryFile("w", dir=work, suffix=".token", delete=False) as f:
                f.write(tok)
                return f.name

        yield ready, token_file
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def _credential(ready, path):
    return WorkloadIdentityCredential(
        tenant_id=TENANT, client_id=OPERATOR[0], token_file_path=path,
        authority=ready["authority_host"], disable_instance_discovery=True, connection_verify=ready["ca_path"],
    )


def test_workload_identity_credential_exchanges_a_service_account_token(wi):
    ready, token_file = wi
    cred = _credential(ready, token_file())
    net = NetworkManagementClient(cred, SUB, base_url=ready["arm_endpoint"], credential_scopes=["https://management.azure.com/.default"],
                                  connection_verify=ready["ca_path"], polling_interval=0.05)
    v = net.virtual_networks.begin_create_or_update(
        "hscn-net", "wi-vnet", {"location": "uksouth", "properties": {"addressSpace": {"addressPrefixes": ["10.60.0.0/16"]}}}
    ).result()
    assert v["properties"]["provisioningState"] == "Succeeded"


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "system:serviceaccount:other:sa"},
        {"aud": "api://SomethingElse"},
        {"iss": "https://evil.example"},
        {"lifetime": -3600},
    ],
    ids=["wrong-subject", "wrong-audience", "wrong-issuer", "expired"],
)
def test_workload_identity_rejects_mismatched_assertions(wi, claims):
    ready, token_file = wi
    with pytest.raises(ClientAuthenticationError) as e:
        _credential(ready, token_file(**claims)).get_token("https://management.azure.com/.default")
    assert "AADSTS70021" in str(e.value) or "AADSTS700024" in str(e.value)
