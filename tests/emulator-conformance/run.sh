#!/usr/bin/env bash
# Conformance suite: Microsoft's Python SDK clients against arm-emulator, and the body checker's
# own tests. Needs only python3 (3.11+) and cargo. The venv is made by venv.sh (cached).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$("$here/venv.sh")"
(cd "$root" && cargo build --quiet --locked -p arm-emulator)
target="${CARGO_TARGET_DIR:-$root/target}"
export ARM_EMULATOR_BIN="${ARM_EMULATOR_BIN:-$target/debug/arm-emulator}"
cd "$here"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
