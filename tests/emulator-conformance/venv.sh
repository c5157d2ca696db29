#!/usr/bin/env bash
# Makes (once) and prints the suite's venv: Microsoft's Python clients (requirements.txt) and, side
# by side under $venv/sdk-models/<pin>, the models check_bodies.py validates against
# (requirements-models.txt). Cached per hash of both files. Needs only python3 (3.11+).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$here/requirements.txt"
models="$here/requirements-models.txt"
hash="$(cat "$req" "$models" | sha256sum | cut -c1-16)"
cache="${FHIRLOCK_CACHE_DIR:-$HOME/.cache/fhirlock}"
venv="$cache/venv-$hash"
mkdir -p "$cache"
# One maker at a time (run.sh and check-bodies.sh may start together).
exec 9>"$cache/venv.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  # Made in place (not renamed afterwards), so the scripts' interpreter paths stay right.
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
  grep -oE '^azure-mgmt-[a-z]+==[0-9.]+' "$models" | while read -r pin; do
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
      --target "$venv/sdk-models/$pin" "$pin" >&2
  done
  touch "$venv/.complete"
fi
echo "$venv"
