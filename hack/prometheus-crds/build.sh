#!/usr/bin/env bash
# Generates the ServiceMonitor and PrometheusRule CRDs (monitoring.coreos.com/v1) from the
# prometheus-operator Go API module with controller-gen, both pinned in go.mod, into a cache
# directory keyed by go.sum, and prints that directory. The tests install them in the test
# apiserver so the chart's optional ServiceMonitor and PrometheusRule pass a server-side dry run
# against their real schemas. A second run finds them and skips.
#
#   FHIRLOCK_CACHE_DIR   cache root (default: $XDG_CACHE_HOME/fhirlock or ~/.cache/fhirlock)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache_root=${FHIRLOCK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fhirlock}
gover=$(go env GOVERSION)
key=$(cd "$here" && cat go.mod go.sum build.sh | sha256sum | cut -c1-16)
out="$cache_root/prometheus-crds/${key}_${gover}"
want=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml)
done=1
for f in "${want[@]}"; do [ -s "$out/$f" ] || done=0; done
if [ "$done" = 1 ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
start=$(date +%s)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$here" && go build -trimpath -o "$tmp/controller-gen" sigs.k8s.io/controller-tools/cmd/controller-gen)
# controller-gen resolves the package through this module's go.mod.
(cd "$here" && "$tmp/controller-gen" crd:crdVersions=v1,maxDescLen=0 \
  paths=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1 \
  output:crd:artifacts:config="$tmp/crds")
for f in "${want[@]}"; do
  [ -s "$tmp/crds/$f" ] || { echo "prometheus-crds: controller-gen wrote no $f" >&2; ls "$tmp/crds" >&2; exit 1; }
  cp "$tmp/crds/$f" "$out/$f"
done
echo "prometheus-crds: generated in $(( $(date +%s) - start ))s into $out" >&2
echo "$out"
