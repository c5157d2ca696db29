#!/usr/bin/env bash
# The ARM client stands on azure_core 1.x alone: no legacy azure_mgmt_* crate (frozen, preview-only
# Cosmos, blocking LRO loops, a second azure_core/reqwest/TLS stack) and one major of azure_core.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=$(cargo tree --workspace --locked -e normal,build,dev --prefix none --format '{p}' | sed 's/ (.*//' | sort -u)
if grep -E '^azure_mgmt' <<<"$pkgs"; then echo "check-deps: azure_mgmt_* crates are not allowed" >&2; exit 1; fi
majors=$(grep -E '^azure_core v' <<<"$pkgs" | sed -E 's/^azure_core v([0-9]+)\..*/\1/' | sort -u)
if [ "$(wc -l <<<"$majors")" != 1 ]; then echo "check-deps: more than one major of azure_core: $majors" >&2; exit 1; fi
if grep -E '^(openssl-sys|native-tls) ' <<<"$pkgs"; then echo "check-deps: one TLS stack (rustls) only" >&2; exit 1; fi
echo "check-deps: no azure_mgmt_*, azure_core v$majors.x only, rustls only"
