#!/usr/bin/env bash
# Builds the pinned kube-apiserver, kubectl, kube-controller-manager and etcd from their official
# Go modules into a cache directory keyed by the versions, and prints that directory. A second run
# finds them and skips; a cache from before a binary was added builds only that one.
# kube-controller-manager is there for its namespace controller alone: without it a deleted
# namespace stays Terminating for ever (the apiserver only marks it), and the tests of what
# deleting a namespace does to its endpoints need the real thing.
#
#   FHIRLOCK_CACHE_DIR   cache root (default: $XDG_CACHE_HOME/fhirlock or ~/.cache/fhirlock)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache_root=${FHIRLOCK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fhirlock}
gover=$(go env GOVERSION)
out="$cache_root/k8s-bins/kube-${KUBE_VERSION}_etcd-${ETCD_VERSION}_${gover}"
kube_bins="kube-apiserver kubectl kube-controller-manager"
missing=""
for b in $kube_bins etcd; do
  [ -x "$out/$b" ] || missing="$missing $b"
done
if [ -z "$missing" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
start=$(date +%s)

"$here/gen-gomod.sh"
(cd "$here" && go mod tidy)
# /version reports what these say; without them it would claim v0.0.0-master.
ld="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld="$ld -X $pkg.gitVersion=${KUBE_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor}"
  ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
# Each renamed into place once built, so an interrupted build never looks complete.
for b in $missing; do
  if [ "$b" = etcd ]; then
    (cd "$here/etcd" && go mod tidy && go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" .)
  else
    (cd "$here" && go build -trimpath -ldflags "$ld" -o "$out/$b.tmp" "k8s.io/kubernetes/cmd/$b")
  fi
  mv "$out/$b.tmp" "$out/$b"
done
echo "k8s-bins: built$missing in $(( $(date +%s) - start ))s into $out" >&2
echo "$out"
