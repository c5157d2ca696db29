"""Microsoft's generated Python models as a schema: which wire fields a resource type has, which are
read-only, required or constant, their types, enums and constraints.

The models come from the Azure SDK for Python packages pinned in `requirements-models.txt`, at the
api-versions fhirlock sends. They are installed side by side (`pip install --no-deps --target
$VENV/sdk-models/<pin>`, by `venv.sh`) and loaded under private names, so they never clash with the
newer `azure.mgmt.*` clients the conformance suite runs. They use msrest-style metadata:
`_attribute_map` (attribute -> wire key, with `properties.x` for the flattened `properties`
envelope, and the msrest type: `str`, `[T]`, `{T}`, a model name) and `_validation`
(`readonly`, `required`, `constant`, `pattern`, `min_length`, …). Enum types are only named in the
`__init__` annotations (`Union[str, "_models.IPAllocationMethod"]`), so they are read from there.
"""

from __future__ import annotations

import enum
import functools
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import pathlib
import re
import sys
from dataclasses import dataclass, field

HERE = pathlib.Path(__file__).resolve().parent
PINS = HERE / "requirements-models.txt"


@dataclass(frozen=True)
class Package:
    """One pinned SDK package: its distribution pin, the api-version its models are generated at."""

    pin: str  # azure-mgmt-network==30.0.0
    module: str  # network
    api_version: str

    @property
    def directory(self) -> pathlib.Path:
        root = pathlib.Path(os.environ.get("FHIRLOCK_SDK_MODELS") or pathlib.Path(sys.prefix) / "sdk-models")
        return root / self.pin / "azure" / "mgmt" / self.module


def read_pins(path: pathlib.Path = PINS) -> dict[str, Package]:
    """`requirements-models.txt`: `azure-mgmt-x==V  # api-version YYYY-MM-DD …` lines, keyed by module."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^(azure-mgmt-(\w+)==[\w.]+)\s+#\s*api-version\s+(\d{4}-\d{2}-\d{2})", line.strip())
        if m:
            out[m.group(2)] = Package(m.group(1), m.group(2), m.group(3))
    return out


@functools.lru_cache(maxsize=None)
def models_of(pkg: Package):
    """The package's `models` module, imported from its own directory under a private name."""
    d = pkg.directory
    if not (d / "models").is_dir():
        raise RuntimeError(f"{pkg.pin} is not installed under {d.parents[2]} (run tests/emulator-conformance/venv.sh)")
    alias = "_fhirlock_sdk_" + re.sub(r"\W", "_", pkg.pin)
    if alias not in sys.modules:
        spec = importlib.machinery.ModuleSpec(alias, None, is_package=True)
        parent = importlib.util.module_from_spec(spec)
        parent.__path__ = [str(d)]  # the package's __init__ (its client) is never run
        sys.modules[alias] = parent
    return importlib.import_module(alias + ".models")


@dataclass(frozen=True)
class Field:
    attr: str
    wire: tuple[str, ...]  # ("properties", "addressPrefix")
    type: str  # msrest type string
    readonly: bool = False
    required: bool = False
    constant: object = None  # the value a constant field must have
    enum: type | None = None
    rules: tuple = field(default_factory=tuple)  # (("pattern", "^…$"), ("max_length", 80), …)


def _split_key(key: str) -> tuple[str, ...]:
    """msrest flattening: `properties.addressPrefix` -> two levels; `\\.` is a literal dot."""
    parts = re.split(r"(?<!\\)\.", key)
    return tuple(p.replace("\\.", ".") for p in parts)


def _enum_of(cls, attr: str, models) -> type | None:
    try:
        p = inspect.signature(cls.__init__).parameters.get(attr)
    except (TypeError, ValueError):
        return None
    if p is None or p.annotation is inspect.Parameter.empty:
        return None
    for name in re.findall(r"_models\.(\w+)", str(p.annotation)):
        e = getattr(models, name, None)
        if isinstance(e, type) and issubclass(e, enum.Enum):
            return e
    return None


@functools.lru_cache(maxsize=None)
def fields(cls) -> tuple[Field, ...]:
    """The wire fields of one model class."""
    amap = getattr(cls, "_attribute_map", None)
    if amap is None:
        raise TypeError(f"{cls.__name__} has no msrest _attribute_map; only msrest-style models are supported")
    models = sys.modules[cls.__module__.rsplit(".", 1)[0]]
    val = getattr(cls, "_validation", {}) or {}
    out = []
    for attr, meta in amap.items():
        v = val.get(attr, {})
        rules = tuple(sorted((k, x) for k, x in v.items() if k not in ("readonly", "required", "constant")))
        out.append(
            Field(
                attr=attr,
                wire=_split_key(meta["key"]),
                type=meta["type"],
                readonly=bool(v.get("readonly")),
                required=bool(v.get("required")),
                constant=getattr(cls, attr, None) if v.get("constant") else None,
                enum=_enum_of(cls, attr, models) if meta["type"] in ("str", "[str]") else None,
                rules=rules,
            )
        )
    return tuple(out)


def wire_tree(cls) -> dict:
    """Wire key -> Field, or -> a nested dict for a flattening envelope such as `properties`."""
    tree: dict = {}
    for f in fields(cls):
        node = tree
        for part in f.wire[:-1]:
            node = node.setdefault(part, {})
            if isinstance(node, Field):  # a field and an envelope share a key: keep the envelope
                break
        else:
            node[f.wire[-1]] = f
    return tree


def subtype(cls, value: dict, models):
    """The polymorphic subclass a discriminator selects (`_subtype_map`), else `cls`."""
    smap = getattr(cls, "_subtype_map", None) or {}
    for attr, choices in smap.items():
        key = next((f.wire for f in fields(cls) if f.attr == attr), None)
        if key and len(key) == 1 and isinstance(value.get(key[0]), str):
            name = choices.get(value[key[0]])
            sub = getattr(models, name, None) if name else None
            if sub is not None:
                return subtype(sub, value, models)
    return cls


def model_class(models, name: str):
    return getattr(models, name, None)
