#!/usr/bin/env python3
"""Checks a CycloneDX JSON SBOM with the CycloneDX reference library (cyclonedx-python-lib):
its JSON validator holds the document to the schema of the specVersion it declares. Prints
nothing and exits 0 when valid; prints the schema errors and exits 1 when not.

  python sbom.py FILE...   (run by the release venv's python, hack/release/tools.sh)
"""
import json
import sys

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator


def main():
    failed = False
    for path in sys.argv[1:]:
        with open(path) as f:
            text = f.read()
        version = json.loads(text).get("specVersion")
        try:
            schema = SchemaVersion.from_version(version)
        except Exception:
            print(f"{path}: specVersion {version!r} is not a CycloneDX version", file=sys.stderr)
            failed = True
            continue
        error = JsonStrictValidator(schema).validate_str(text)
        if error is not None:
            # jsonschema's error: the message, the failing path; the whole schema is noise.
            detail = getattr(error.data, "message", error)
            where = "/".join(str(p) for p in getattr(error.data, "absolute_path", []))
            print(f"{path}: not valid CycloneDX {version}: {detail} (at /{where})", file=sys.stderr)
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
