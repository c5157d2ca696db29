"""The emulator held to Microsoft's models (issue #12): a corpus of invalid write bodies generated
from the pinned SDK models (corpus.py) is sent to the running emulator, which must refuse each with
400 in ARM's error shape; read-only fields, which ARM's RPC has resource providers ignore, must be
accepted. The emulator's enum table must still match the models."""

import time

import pytest
from azure.core.rest import HttpRequest

import check_bodies as cb
import corpus
import gen_enum_rules

SETTLING = ("Updating", "Creating", "Deleting", "Accepted")


def test_the_emulators_enum_table_matches_the_models():
    committed = gen_enum_rules.parse(gen_enum_rules.OUT.read_text())
    assert committed == gen_enum_rules.rules(), (
        "crates/arm-emulator/src/body_rules/enums.rs is stale: run gen_enum_rules.py with the suite's venv"
    )


class Sender:
    def __init__(self, emu):
        self.emu = emu
        self.pipeline = emu.network()._client

    def send(self, method, rid, api, body=None):
        url = f"{self.emu.arm}{rid}?api-version={api}"
        return self.pipeline.send_request(HttpRequest(method, url, json=body))

    def verify_domain(self):
        """Publishes the asuid TXT record App Service verifies the corpus host name by."""
        site = self.send("GET", corpus.SITE_ID, corpus.API["Microsoft.Web"]).json()
        record = {"name": f"asuid.{corpus.HOST}", "type": "TXT", "value": site["properties"]["customDomainVerificationId"]}
        self.emu.control("POST", "/_emulator/dns", record)

    def settle(self, base):
        """Waits until the resource's own operation has finished (writes meanwhile are 409/412)."""
        if base.rtype == "resourceGroups" or base.rtype.startswith("Microsoft.Web"):
            return
        for _ in range(600):
            r = self.send("GET", base.id, base.api)
            state = r.json().get("properties", {}).get("provisioningState") if r.status_code == 200 else None
            if state not in SETTLING:
                return
            time.sleep(0.05)
        pytest.fail(f"{base.id} did not settle")


@pytest.fixture(scope="module")
def estate(emu):
    """Every base written once, in order: each must be accepted."""
    s = Sender(emu)
    for base in corpus.BASES:
        assert cb.check_body(base.rtype, base.method, base.body, base.id) == [], f"base {base.method} {base.rtype} is clean"
        if base.rtype == "Microsoft.Web/sites/hostNameBindings":
            s.verify_domain()
        r = s.send(base.method, base.id, base.api, base.body)
        assert 200 <= r.status_code < 300, f"base {base.method} {base.id}: {r.status_code} {r.text()}"
        s.settle(base)
    yield s
    s.send("DELETE", corpus.RG, corpus.API["resourceGroups"])


REFUSED = [v for b in corpus.BASES for v in corpus.variants(b) if v.kind != "read-only"]
IGNORED = [v for b in corpus.BASES for v in corpus.variants(b) if v.kind == "read-only" and not b.rtype.endswith("applicationGateways")]


def _id(v):
    return f"{v.base.method}-{v.base.rtype.rsplit('/', 1)[-1]}-{v.kind}-{v.at}"


def test_the_corpus_covers_every_kind_on_every_type():
    kinds = {(v.base.rtype, v.kind) for v in REFUSED}
    for rtype in ("Microsoft.Network/applicationGateways", "Microsoft.Web/sites/config", "Microsoft.DocumentDB/databaseAccounts"):
        assert (rtype, "enum") in kinds
    for rtype in ("resourceGroups", "Microsoft.Network/virtualNetworks", "Microsoft.Network/applicationGateways",
                  "Microsoft.Network/publicIPAddresses", "Microsoft.Web/sites", "Microsoft.DocumentDB/databaseAccounts"):
        assert (rtype, "tag") in kinds, rtype
    assert ("Microsoft.DocumentDB/databaseAccounts", "required") in kinds and ("Microsoft.Web/sites", "required") in kinds
    # hostHeader Preserve's types: the binding's enums, the certificate's location and tags.
    assert ("Microsoft.Web/sites/hostNameBindings", "enum") in kinds
    assert ("Microsoft.Web/certificates", "required") in kinds and ("Microsoft.Web/certificates", "tag") in kinds
    assert len(REFUSED) > 80 and len(IGNORED) > 20


@pytest.mark.parametrize("v", REFUSED, ids=_id)
def test_the_emulator_refuses_what_the_models_forbid(estate, v):
    assert cb.check_body(v.base.rtype, v.base.method, v.body, v.base.id), "the checker flags it too"
    r = estate.send(v.base.method, v.base.id, v.base.api, v.body)
    assert r.status_code == 400, f"{v.kind} {v.at}: {r.status_code} {r.text()}"
    err = r.json()["error"]
    assert err["code"] and err["message"], err
    assert r.headers["x-ms-request-id"]
    if v.kind == "tag":
        assert err["code"] == "InvalidTagNameCharacters"


@pytest.mark.parametrize("v", IGNORED, ids=_id)
def test_the_emulator_accepts_and_ignores_read_only_fields(estate, v):
    assert any(x.kind == "read-only" for x in cb.check_body(v.base.rtype, v.base.method, v.body, v.base.id)), "the checker flags it"
    r = estate.send(v.base.method, v.base.id, v.base.api, v.body)
    assert 200 <= r.status_code < 300, f"{v.at}: {r.status_code} {r.text()}"
    estate.settle(v.base)
    # Only the read-only fields the emulator knows are dropped; others a Web body carries (e.g.
    # properties.availabilityState) are stored as sent (docs/emulator.md, "Where it differs").
