#!/usr/bin/env bash
# Conformance suite: Microsoft's Python SDK clients against arm-emulator.
# Needs only python3 (3.11+) and cargo. The venv is cached per requirements hash.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
req="$here/requirements.txt"
hash="$(sha256sum "$req" | cut -c1-16)"
cache="${FHIRLOCK_CACHE_DIR:-$HOME/.cache/fhirlock}"
venv="$cache/venv-$hash"
if [ ! -x "$venv/bin/pytest" ]; then
  mkdir -p "$cache"
  rm -rf "$venv.tmp"
  python3 -m venv "$venv.tmp"
  "$venv.tmp/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  mv "$venv.tmp" "$venv"
fi
(cd "$root" && cargo build --quiet -p arm-emulator)
target="${CARGO_TARGET_DIR:-$root/target}"
export ARM_EMULATOR_BIN="${ARM_EMULATOR_BIN:-$target/debug/arm-emulator}"
cd "$here"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
