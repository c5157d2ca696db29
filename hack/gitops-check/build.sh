#!/usr/bin/env bash
# Builds gitops-check (kstatus from sigs.k8s.io/cli-utils and Flux's fork, and gopher-lua as Argo
# CD runs health scripts) into a cache directory keyed by this module's sources and the Go
# version, and prints that directory. A second run finds it and skips.
#
#   FHIRLOCK_CACHE_DIR   cache root (default: $XDG_CACHE_HOME/fhirlock or ~/.cache/fhirlock)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache_root=${FHIRLOCK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fhirlock}
gover=$(go env GOVERSION)
key=$(cd "$here" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)
out="$cache_root/gitops-check/${key}_${gover}"
if [ -x "$out/gitops-check" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
start=$(date +%s)
(cd "$here" && go build -trimpath -ldflags "-s -w" -o "$out/gitops-check.tmp" .)
mv "$out/gitops-check.tmp" "$out/gitops-check"
echo "gitops-check: built in $(( $(date +%s) - start ))s into $out" >&2
echo "$out"
