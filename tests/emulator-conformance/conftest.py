"""Starts arm-emulator (HTTPS, loopback, temp data dir) for the session and builds SDK clients."""

import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import urllib.request
import ssl

import pytest
from azure.identity import ClientSecretCredential
from azure.mgmt.cosmosdb import CosmosDBManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.web import WebSiteManagementClient

ROOT = pathlib.Path(__file__).resolve().parents[2]
ESTATE = ROOT / "examples" / "arm-emulator-estate.yaml"
SUB = "6f1c2a52-0000-4000-8000-000000000001"
TENANT = "6f1c2a52-0000-4000-8000-00000000a001"
OPERATOR = ("6f1c2a52-0000-4000-8000-00000000c001", "fhirlock-dev-secret")
PORTAL = ("6f1c2a52-0000-4000-8000-00000000c002", "portal-dev-secret")
OUTSIDER = ("6f1c2a52-0000-4000-8000-00000000c003", "outsider-dev-secret")
# Azure time is scaled down 50x: a subnet takes 0.2 s, a gateway 6 s, a Cosmos update 2.4 s.
TIME_SCALE = "0.02"
POLL = 0.05


class Emulator:
    def __init__(self, ready, proc, data_dir):
        self.arm = ready["arm_endpoint"]
        self.authority = ready["authority_host"]
        self.ca = ready["ca_path"]
        self.proc = proc
        self.data_dir = data_dir
        self._ctx = ssl.create_default_context(cafile=self.ca)

    def control(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.arm + path, data=data, method=method, headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, context=self._ctx) as r:
            return json.loads(r.read() or b"null")

    def credential(self, who=OPERATOR):
        return ClientSecretCredential(
            TENANT, who[0], who[1], authority=self.authority, disable_instance_discovery=True, connection_verify=self.ca
        )

    def _kw(self):
        return dict(
            base_url=self.arm,
            credential_scopes=["https://management.azure.com/.default"],
            connection_verify=self.ca,
            polling_interval=POLL,
        )

    def network(self, who=OPERATOR):
        return NetworkManagementClient(self.credential(who), SUB, **self._kw())

    def web(self, who=OPERATOR):
        return WebSiteManagementClient(self.credential(who), SUB, **self._kw())

    def cosmos(self, who=OPERATOR):
        return CosmosDBManagementClient(self.credential(who), SUB, **self._kw())

    def resources(self, who=OPERATOR):
        return ResourceManagementClient(self.credential(who), SUB, **self._kw())


def _binary():
    b = os.environ.get("ARM_EMULATOR_BIN") or str(ROOT / "target" / "debug" / "arm-emulator")
    if not os.path.exists(b):
        raise RuntimeError(f"arm-emulator binary not found at {b}; run `cargo build -p arm-emulator`")
    return b


@pytest.fixture(scope="session")
def emu():
    data_dir = tempfile.mkdtemp(prefix="arm-emulator-conformance-")
    proc = subprocess.Popen(
        [_binary(), "--addr", "127.0.0.1:0", "--data-dir", data_dir, "--config", str(ESTATE), "--time-scale", TIME_SCALE],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"arm-emulator exited with {proc.wait()} before it was ready")
        e = Emulator(json.loads(line), proc, data_dir)
        yield e
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _clean_controls(emu):
    yield
    emu.control("DELETE", "/_emulator/faults")
    emu.control("DELETE", "/_emulator/throttle")
