#!/usr/bin/env bash
# Builds the Go module in DIR (a small tool under hack/, its dependencies pinned in its go.mod)
# into a cache directory keyed by that module's sources and the Go version, and prints that
# directory. A second run finds it and skips.
#
#   hack/lib/go-tool.sh DIR NAME
#   FHIRLOCK_CACHE_DIR   cache root (default: $XDG_CACHE_HOME/fhirlock or ~/.cache/fhirlock)
set -euo pipefail
dir=$(cd "$1" && pwd)
name=$2
cache_root=${FHIRLOCK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fhirlock}
gover=$(go env GOVERSION)
key=$(cd "$dir" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)
out="$cache_root/$name/${key}_${gover}"
if [ -x "$out/$name" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
start=$(date +%s)
(cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$out/$name.tmp" .)
mv "$out/$name.tmp" "$out/$name"
echo "$name: built in $(( $(date +%s) - start ))s into $out" >&2
echo "$out"
