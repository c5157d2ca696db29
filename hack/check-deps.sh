#!/usr/bin/env bash
# The ARM client stands on azure_core 1.x alone: no legacy azure_mgmt_* crate (frozen, preview-only
# Cosmos, blocking LRO loops, a second azure_core/reqwest/TLS stack) and one major of azure_core.
# The core is pure: no HTTP client, no async runtime, no Kubernetes client, even indirectly.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=$(cargo tree --workspace --locked -e normal,build,dev --prefix none --format '{p}' | sed 's/ (.*//' | sort -u)
if grep -E '^azure_mgmt' <<<"$pkgs"; then echo "check-deps: azure_mgmt_* crates are not allowed" >&2; exit 1; fi
majors=$(grep -E '^azure_core v' <<<"$pkgs" | sed -E 's/^azure_core v([0-9]+)\..*/\1/' | sort -u)
if [ "$(wc -l <<<"$majors")" != 1 ]; then echo "check-deps: more than one major of azure_core: $majors" >&2; exit 1; fi
if grep -E '^(openssl-sys|native-tls) ' <<<"$pkgs"; then echo "check-deps: one TLS stack (rustls) only" >&2; exit 1; fi
# Features as `cargo build -p fhirlock-core` resolves them, so a crate that only the binary enables
# does not count against the core.
core=$(cargo tree -p fhirlock-core --locked -e normal --prefix none --format '{p}' | sed 's/ (.*//' | sort -u)
if grep -E '^(hyper|reqwest|h2|tokio|async-std|kube-client|kube-runtime) ' <<<"$core"; then
  echo "check-deps: fhirlock-core must stay pure: no HTTP client, async runtime or kube client (see: cargo tree -p fhirlock-core -e normal -i <crate>)" >&2
  exit 1
fi
echo "check-deps: no azure_mgmt_*, azure_core v$majors.x only, rustls only, fhirlock-core pure"
