#!/usr/bin/env bash
# Builds alert-check (Prometheus' PromQL engine, template expander and rule parser, from the
# github.com/prometheus/prometheus module pinned in go.mod) into a cache directory keyed by this
# module's sources and the Go version, and prints that directory. A second run finds it and skips.
#
#   FHIRLOCK_CACHE_DIR   cache root (default: $XDG_CACHE_HOME/fhirlock or ~/.cache/fhirlock)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache_root=${FHIRLOCK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fhirlock}
gover=$(go env GOVERSION)
key=$(cd "$here" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)
out="$cache_root/alert-check/${key}_${gover}"
if [ -x "$out/alert-check" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
start=$(date +%s)
(cd "$here" && go build -trimpath -ldflags "-s -w" -o "$out/alert-check.tmp" .)
mv "$out/alert-check.tmp" "$out/alert-check"
echo "alert-check: built in $(( $(date +%s) - start ))s into $out" >&2
echo "$out"
