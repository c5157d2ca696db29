#!/usr/bin/env bash
# Fetches the CRDs of Flux (GitRepository, Kustomization) and Argo CD (Application, AppProject)
# from the controllers' Go modules, pinned with their checksums in crds.txt, into a cache directory
# keyed by crds.txt and this script, and prints that directory. The tests install them in the test
# apiserver so that examples/flux and examples/argocd pass a server-side dry run against the real
# schemas. A second run finds them and skips.
#
# The modules are downloaded into a throwaway module cache: Argo CD's is 58 MB, of which the two
# CRDs are 0.4 MB. Nothing is built.
#
#   FHIRLOCK_CACHE_DIR   cache root (default: $XDG_CACHE_HOME/fhirlock or ~/.cache/fhirlock)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache_root=${FHIRLOCK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fhirlock}
key=$(cd "$here" && cat crds.txt build.sh | sha256sum | cut -c1-16)
out="$cache_root/gitops-crds/$key"
entries=$(grep -v '^[[:space:]]*\(#\|$\)' "$here/crds.txt")
complete() {
  local path
  while read -r _ _ _ path; do
    [ -s "$out/$(basename "$path")" ] || return 1
  done <<<"$entries"
}
if complete; then
  echo "$out"
  exit 0
fi
start=$(date +%s)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/crds"
# Outside any module, with a private, writable module cache (so that rm can remove it).
export GOMODCACHE="$tmp/mod" GOFLAGS=-modcacherw GO111MODULE=on
cd "$tmp"
field() { sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}$/\1/p" <<<"$json"; }
declare -A dirs=()
while read -r module version sum path; do
  if [ -z "${dirs[$module@$version]:-}" ]; then
    json=$(go mod download -json "$module@$version")
    err=$(field Error)
    [ -z "$err" ] || { echo "gitops-crds: $module@$version: $err" >&2; exit 1; }
    got=$(field Sum)
    [ "$got" = "$sum" ] || { echo "gitops-crds: $module@$version has checksum $got, crds.txt pins $sum" >&2; exit 1; }
    dirs[$module@$version]=$(field Dir)
  fi
  src="${dirs[$module@$version]}/$path"
  [ -s "$src" ] || { echo "gitops-crds: $module@$version has no $path" >&2; exit 1; }
  grep -q '^kind: CustomResourceDefinition$' "$src" || { echo "gitops-crds: $path is not a CRD" >&2; exit 1; }
  install -m 0644 "$src" "$tmp/crds/$(basename "$path")"
done <<<"$entries"
# Move last so an interrupted fetch never looks complete.
mkdir -p "$(dirname "$out")"
rm -rf "$out"
mv "$tmp/crds" "$out"
echo "gitops-crds: fetched in $(( $(date +%s) - start ))s into $out" >&2
echo "$out"
