#!/usr/bin/env python3
"""Holds recorded ARM write bodies to Microsoft's own models (issue #12's ground truth).

Input: the emulator's request log (`GET /_emulator/requests`, see docs/emulator.md), from a file or
fetched from a running emulator. Every PUT/PATCH body is validated against the Azure SDK for Python
model of its resource type, at the api-version fhirlock sends (`requirements-models.txt`), and
against ARM's tag rules. Reported: read-only fields present, properties unknown to the type
(recursively, through the flattened `properties` envelope), enum values that do not exist, required
properties missing, constants, constraints (pattern, length, range, items), JSON types, and tags.

    check_bodies.py --from-file requests.json [--principal OID] [--json]
    check_bodies.py --url https://127.0.0.1:PORT --ca ca.pem [--principal OID] [--json]

Exit status: 0 no violation, 1 violations (listed on stdout), 2 bad input.
Run it with the suite's venv: `tests/emulator-conformance/check-bodies.sh …` makes it if needed.
"""

from __future__ import annotations

import argparse
import json
import re
import ssl
import sys
import urllib.request
from dataclasses import dataclass

import sdk_models as sm

# ARM-wide tag rules. Source: Microsoft Learn, "Use tags to organize your Azure resources and
# management hierarchy", Limitations (MicrosoftDocs/azure-docs
# articles/azure-resource-manager/management/tag-resources.md): tag names can't contain
# < > % & \ ? /; at most 50 tag name/value pairs; name <= 512 characters, value <= 256.
TAG_NAME_RESERVED = set("<>%&\\?/")
MAX_TAGS, MAX_TAG_NAME, MAX_TAG_VALUE = 50, 512, 256

# (resource type, method) -> (SDK module, model class). Resource types as the emulator records them.
MODELS = {
    ("microsoft.network/virtualnetworks", "PUT"): ("network", "VirtualNetwork"),
    ("microsoft.network/virtualnetworks", "PATCH"): ("network", "TagsObject"),
    ("microsoft.network/virtualnetworks/subnets", "PUT"): ("network", "Subnet"),
    ("microsoft.network/applicationgateways", "PUT"): ("network", "ApplicationGateway"),
    ("microsoft.network/applicationgateways", "PATCH"): ("network", "TagsObject"),
    ("microsoft.network/publicipaddresses", "PUT"): ("network", "PublicIPAddress"),
    ("microsoft.network/applicationgatewaywebapplicationfirewallpolicies", "PUT"): ("network", "WebApplicationFirewallPolicy"),
    ("microsoft.network/publicipaddresses", "PATCH"): ("network", "TagsObject"),
    ("microsoft.web/serverfarms", "PUT"): ("web", "AppServicePlan"),
    ("microsoft.web/serverfarms", "PATCH"): ("web", "AppServicePlanPatchResource"),
    ("microsoft.web/sites", "PUT"): ("web", "Site"),
    ("microsoft.web/sites", "PATCH"): ("web", "SitePatchResource"),
    ("microsoft.web/sites/config", "PUT"): ("web", "SiteConfigResource"),
    ("microsoft.web/sites/config", "PATCH"): ("web", "SiteConfigResource"),
    ("microsoft.web/sites/networkconfig", "PUT"): ("web", "SwiftVirtualNetwork"),
    ("microsoft.web/sites/networkconfig", "PATCH"): ("web", "SwiftVirtualNetwork"),
    # hostHeader Preserve: the App Service certificate (Certificates_CreateOrUpdate) and the site's
    # host-name binding (WebApps_CreateOrUpdateHostNameBinding), Web 2024-11-01.
    ("microsoft.web/certificates", "PUT"): ("web", "Certificate"),
    ("microsoft.web/sites/hostnamebindings", "PUT"): ("web", "HostNameBinding"),
    ("microsoft.documentdb/databaseaccounts", "PUT"): ("cosmosdb", "DatabaseAccountCreateUpdateParameters"),
    ("microsoft.documentdb/databaseaccounts", "PATCH"): ("cosmosdb", "DatabaseAccountUpdateParameters"),
}

# POST actions whose operation declares no body parameter: a body sent to one is a violation.
# ApplicationGateways_BackendHealth (SPEC-NET 2025-01-01 applicationGateway.json): path and query only.
BODYLESS_POSTS = ("microsoft.network/applicationgateways/backendhealth",)

PRIMITIVES = {
    "str": (str,),
    "int": (int,),
    "long": (int,),
    "float": (int, float),
    "bool": (bool,),
    "iso-8601": (str,),
    "rfc-1123": (str,),
    "duration": (str,),
    "date": (str,),
    "time": (str,),
    "unix-time": (int,),
    "base64": (str,),
    "bytearray": (str,),
    "decimal": (int, float, str),
}


@dataclass(frozen=True)
class Violation:
    kind: str  # read-only | unknown | enum | required | constant | constraint | type | tag | model
    path: str
    message: str


def tag_violations(body) -> list[Violation]:
    tags = body.get("tags") if isinstance(body, dict) else None
    if not isinstance(tags, dict):
        return []
    out = []
    for name, value in tags.items():
        bad = sorted({c for c in name if c in TAG_NAME_RESERVED or ord(c) < 32 or ord(c) == 127})
        if bad:
            out.append(Violation("tag", f"tags.{name}", f"tag name has reserved characters {' '.join(bad)} (ARM: InvalidTagNameCharacters)"))
        if len(name) > MAX_TAG_NAME:
            out.append(Violation("tag", f"tags.{name[:40]}…", f"tag name longer than {MAX_TAG_NAME} characters"))
        if isinstance(value, str) and len(value) > MAX_TAG_VALUE:
            out.append(Violation("tag", f"tags.{name}", f"tag value longer than {MAX_TAG_VALUE} characters ({len(value)})"))
        if value is not None and not isinstance(value, str):
            out.append(Violation("tag", f"tags.{name}", f"tag value must be a string, not {type(value).__name__}"))
    if len(tags) > MAX_TAGS:
        out.append(Violation("tag", "tags", f"{len(tags)} tags; at most {MAX_TAGS} are allowed"))
    return out


class Checker:
    """Validates one JSON value against one model class, collecting violations."""

    def __init__(self, models):
        self.models = models
        self.out: list[Violation] = []

    def model(self, cls, value, at: str):
        if not isinstance(value, dict):
            self.out.append(Violation("type", at or "(body)", f"expected an object ({cls.__name__}), got {type(value).__name__}"))
            return
        cls = sm.subtype(cls, value, self.models)
        self.tree(sm.wire_tree(cls), value, at, cls)
        for f in sm.fields(cls):
            if f.required and _get(value, f.wire) is None:
                self.out.append(Violation("required", _join(at, ".".join(f.wire)), f"required by {cls.__name__} but missing"))

    def tree(self, tree: dict, obj: dict, at: str, cls):
        for key, v in obj.items():
            here = _join(at, key)
            node = tree.get(key)
            if node is None:
                near = next((k for k in tree if k.lower() == key.lower()), None)
                hint = f" (did you mean '{near}'?)" if near else ""
                self.out.append(Violation("unknown", here, f"not a property of {cls.__name__}{hint}"))
            elif isinstance(node, dict):
                if v is None:
                    continue
                if not isinstance(v, dict):
                    self.out.append(Violation("type", here, f"expected an object, got {type(v).__name__}"))
                    continue
                self.tree(node, v, here, cls)
            else:
                self.field(node, v, here, cls)

    def field(self, f: sm.Field, v, at: str, cls):
        if f.readonly:
            self.out.append(Violation("read-only", at, f"read-only in {cls.__name__}: the server sets it; do not send it"))
            return
        if v is None:
            return
        if f.constant is not None and v != f.constant:
            self.out.append(Violation("constant", at, f"must be {f.constant!r}, got {v!r}"))
        self.value(f.type, v, at, f)

    def value(self, t: str, v, at: str, f: sm.Field):
        if v is None:
            return
        if t.startswith("[") and t.endswith("]"):
            if not isinstance(v, list):
                self.out.append(Violation("type", at, f"expected an array, got {type(v).__name__}"))
                return
            self.rules(f, v, at, items=True)
            for i, x in enumerate(v):
                self.value(t[1:-1], x, f"{at}[{i}]", f)
            return
        if t.startswith("{") and t.endswith("}"):
            if not isinstance(v, dict):
                self.out.append(Violation("type", at, f"expected an object (map), got {type(v).__name__}"))
                return
            for k, x in v.items():
                self.value(t[1:-1], x, _join(at, k), f)
            return
        if t == "object":
            return
        if t in PRIMITIVES:
            ok = isinstance(v, PRIMITIVES[t]) and not (t != "bool" and isinstance(v, bool))
            if not ok:
                self.out.append(Violation("type", at, f"expected {t}, got {type(v).__name__} {v!r}"))
                return
            if f.enum is not None and isinstance(v, str):
                known = [e.value for e in f.enum]
                if v.lower() not in (k.lower() for k in known):
                    self.out.append(Violation("enum", at, f"{v!r} is not a {f.enum.__name__}: one of {', '.join(known)}"))
            self.rules(f, v, at, items=False)
            return
        cls = sm.model_class(self.models, t)
        if cls is None:
            self.out.append(Violation("model", at, f"no model {t} in the SDK package"))
            return
        self.model(cls, v, at)

    def rules(self, f: sm.Field, v, at: str, items: bool):
        for rule, arg in f.rules:
            broken = None
            if items and rule == "min_items" and len(v) < arg:
                broken = f"at least {arg} items"
            elif items and rule == "max_items" and len(v) > arg:
                broken = f"at most {arg} items"
            elif items and rule == "unique" and arg and len({json.dumps(x, sort_keys=True) for x in v}) != len(v):
                broken = "unique items"
            elif not items and isinstance(v, str) and rule == "pattern" and not re.match(arg, v, re.UNICODE):
                broken = f"to match {arg}"
            elif not items and isinstance(v, str) and rule == "min_length" and len(v) < arg:
                broken = f"at least {arg} characters"
            elif not items and isinstance(v, str) and rule == "max_length" and len(v) > arg:
                broken = f"at most {arg} characters"
            elif not items and _num(v) and rule == "minimum" and v < arg:
                broken = f">= {arg}"
            elif not items and _num(v) and rule == "maximum" and v > arg:
                broken = f"<= {arg}"
            elif not items and _num(v) and rule == "minimum_ex" and v <= arg:
                broken = f"> {arg}"
            elif not items and _num(v) and rule == "maximum_ex" and v >= arg:
                broken = f"< {arg}"
            elif not items and _num(v) and rule == "multiple" and v % arg != 0:
                broken = f"a multiple of {arg}"
            if broken:
                self.out.append(Violation("constraint", at, f"{v!r} must be {broken} ({rule})"))


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _join(at: str, key: str) -> str:
    return f"{at}.{key}" if at else key


def _get(obj: dict, wire: tuple[str, ...]):
    for part in wire:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def model_for(resource_type: str, method: str, packages: dict[str, sm.Package] | None = None):
    """(Package, model class) for a write, or None when no model is pinned for it."""
    key = MODELS.get((resource_type.lower(), method.upper()))
    if key is None:
        return None
    packages = packages or sm.read_pins()
    pkg = packages[key[0]]
    return pkg, getattr(sm.models_of(pkg), key[1])


def check_body(resource_type: str, method: str, body, path: str = "") -> list[Violation]:
    """Every violation in one write body. ARM's tag rules apply to every resource type."""
    out = tag_violations(body)
    if body is None:
        return out
    if isinstance(body, str):
        return out + [Violation("type", "(body)", f"body is not JSON: {body}")]
    if resource_type.lower() == "microsoft.web/sites/config" and path and not path.rstrip("/").lower().endswith("/config/web"):
        return out  # other config sections (appsettings, …) have other models
    found = model_for(resource_type, method)
    if found is None:
        return out
    _, cls = found
    c = Checker(sm.models_of(found[0]))
    c.model(cls, body, "")
    return out + c.out


def check_requests(requests: list[dict], principal: str | None = None) -> list[tuple[dict, Violation]]:
    """Violations of every recorded PUT/PATCH, and of bodies sent to body-less POST actions
    (optionally of one principal only)."""
    out = []
    for r in requests:
        if principal and r.get("principal", "").lower() != principal.lower():
            continue
        if r.get("method") == "POST" and r.get("resourceType", "").lower() in BODYLESS_POSTS:
            if r.get("body") is not None:
                out.append((r, Violation("body", "(body)", "this action takes no request body")))
            continue
        if r.get("method") not in ("PUT", "PATCH"):
            continue
        for v in check_body(r.get("resourceType", ""), r["method"], r.get("body"), r.get("path", "")):
            out.append((r, v))
    return out


def load_requests(source: str) -> tuple[list[dict], int]:
    raw = sys.stdin.read() if source == "-" else open(source, encoding="utf-8").read()
    doc = json.loads(raw)
    if isinstance(doc, list):
        return doc, 0
    return doc.get("requests", []), int(doc.get("dropped", 0))


def fetch_requests(url: str, ca: str | None) -> tuple[list[dict], int]:
    ctx = ssl.create_default_context(cafile=ca) if ca else None
    with urllib.request.urlopen(url.rstrip("/") + "/_emulator/requests?writesOnly=true", context=ctx) as r:
        doc = json.loads(r.read())
    return doc["requests"], int(doc.get("dropped", 0))


def report(found: list[tuple[dict, Violation]], checked: int, dropped: int, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {
                "checked": checked,
                "dropped": dropped,
                "violations": [
                    {"seq": r.get("seq"), "method": r["method"], "path": r.get("path"), "resourceType": r.get("resourceType"),
                     "apiVersion": r.get("apiVersion"), "principal": r.get("principal"), "kind": v.kind, "at": v.path, "message": v.message}
                    for r, v in found
                ],
            },
            indent=2,
        )
    pins = sm.read_pins()
    lines = [f"checked {checked} write bodies against " + ", ".join(f"{p.pin} (api-version {p.api_version})" for p in pins.values())]
    if dropped:
        lines.append(f"warning: the emulator dropped {dropped} older requests (its log keeps the last 10,000); they were not checked")
    for r, v in found:
        lines.append(f"#{r.get('seq', '?')} {r['method']} {r.get('path')} (api-version {r.get('apiVersion')}): [{v.kind}] {v.path}: {v.message}")
    lines.append(f"{len(found)} violation(s)" if found else "no violations")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-file", metavar="FILE", help="a GET /_emulator/requests dump (or a JSON list of its entries); - for stdin")
    src.add_argument("--url", help="a running emulator's arm_endpoint, to fetch the log from")
    ap.add_argument("--ca", help="the emulator's ca.pem (with --url)")
    ap.add_argument("--principal", help="check only this caller's writes (object id), e.g. the operator's")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    a = ap.parse_args(argv)
    try:
        reqs, dropped = load_requests(a.from_file) if a.from_file else fetch_requests(a.url, a.ca)
    except (OSError, ValueError, KeyError) as e:
        print(f"check_bodies: cannot read the request log: {e}", file=sys.stderr)
        return 2
    found = check_requests(reqs, a.principal)
    checked = sum(1 for r in reqs if r.get("method") in ("PUT", "PATCH") and (not a.principal or r.get("principal", "").lower() == a.principal.lower()))
    print(report(found, checked, dropped, a.json))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
