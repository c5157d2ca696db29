#!/usr/bin/env bash
# Builds the pinned helm from its official Go module into a cache directory keyed by the version,
# and prints that directory. A second run finds it and skips (the build takes minutes on 2 cores).
#
#   FHIRLOCK_CACHE_DIR   cache root (default: $XDG_CACHE_HOME/fhirlock or ~/.cache/fhirlock)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache_root=${FHIRLOCK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fhirlock}
gover=$(go env GOVERSION)
out="$cache_root/helm/helm-${HELM_VERSION}_${gover}"
if [ -x "$out/helm" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
start=$(date +%s)
# `helm version` reports what these say; without them it would claim an unreleased version.
ld="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
(cd "$here" && go mod download && go build -trimpath -ldflags "$ld" -o "$out/helm.tmp" helm.sh/helm/v3/cmd/helm)
# Rename last so an interrupted build never looks complete.
mv "$out/helm.tmp" "$out/helm"
echo "helm: built ${HELM_VERSION} in $(( $(date +%s) - start ))s into $out" >&2
echo "$out"
