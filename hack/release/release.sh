#!/usr/bin/env bash
# `make release`: fhirlock's release artefacts, built without a Docker daemon, into OUT (default
# target/dist), and prints OUT. For VERSION (Cargo.toml's, which must be the chart's appVersion):
#
#   fhirlock-VERSION-linux-amd64              static musl binaries (also the kubectl plugin:
#   fhirlock-VERSION-linux-arm64              install as kubectl-fhirlock)
#   fhirlock-VERSION-linux-amd64.cdx.json     CycloneDX 1.5 SBOMs from Cargo.lock, one per
#   fhirlock-VERSION-linux-arm64.cdx.json     target (dependencies differ by platform)
#   fhirlock-VERSION-linux-amd64.oci.tar      one OCI image layout per architecture, each with
#   fhirlock-VERSION-linux-arm64.oci.tar      its SBOM at /sbom/fhirlock.cdx.json
#   fhirlock-VERSION.oci.tar                  both, under one image index (a multi-arch tag)
#   fhirlock-CHARTVERSION.tgz                 the Helm chart (`helm package`, the pinned helm)
#   SHA256SUMS                                sha256sum of every file above (`sha256sum -c`)
#
# Every SBOM is validated against the CycloneDX schema (cyclonedx-python-lib) before it is used.
#
#   hack/release/release.sh [OUT]
#   FHIRLOCK_RELEASE_PROFILE   cargo profile of the binaries (default release)
#   FHIRLOCK_RELEASE_ARM64_UNOPTIMISED=1   build the arm64 binary unoptimised (dev profile, every
#       crate at opt-level 0, no debug info) for a test that only runs it: a cold cross build takes
#       about 2 minutes on 2 cores instead of 9. Never for publishing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/target/dist}
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
profile=${FHIRLOCK_RELEASE_PROFILE:-release}
declare -A profiles=([amd64]=$profile [arm64]=$profile)
declare -A configs=([amd64]="" [arm64]="")
if [ "${FHIRLOCK_RELEASE_ARM64_UNOPTIMISED:-}" = 1 ]; then
  profiles[arm64]=dev
  configs[arm64]='profile.dev.package."*".opt-level=0 profile.dev.debug=false'
fi
declare -A triples=([amd64]=x86_64-unknown-linux-musl [arm64]=aarch64-unknown-linux-musl)
cd "$root"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
chart=deploy/helm/fhirlock
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$chart/Chart.yaml")
if [ "$app_version" != "$version" ]; then
  echo "release: $chart/Chart.yaml appVersion is '$app_version' but Cargo.toml says $version;" \
    "set appVersion to $version (the image tag the chart deploys)" >&2
  exit 1
fi

tools=$("$here/tools.sh")
python="$tools/venv/bin/python"
helm="$("$root/hack/helm/build.sh")/helm"
work=$(mktemp -d "${TMPDIR:-/tmp}/fhirlock-release.XXXXXX")
trap 'rm -rf "$work"' EXIT
# A rerun replaces the last release's files, and never deletes anything else in OUT.
mkdir -p "$out"
for f in "$out"/* "$out"/.[!.]*; do
  [ -e "$f" ] || continue
  case "${f##*/}" in
    fhirlock-*|SHA256SUMS) rm -f "$f" ;;
    *) echo "release: $out holds ${f##*/}, which a release does not write; choose an empty directory" >&2; exit 1 ;;
  esac
done

# cargo-cyclonedx writes an SBOM beside every workspace member's Cargo.toml, so it runs on a copy
# of the sources (tracked and new files, as they are now), never in the tree people work in.
mkdir "$work/src"
git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
  xargs -0 cp --parents -t "$work/src"
# The SBOM's timestamp is the commit's (reproducible-builds.org SOURCE_DATE_EPOCH, which
# cargo-cyclonedx honours), not the time of the build. Given to cargo-cyclonedx alone: build
# scripts that watch it would rebuild on every commit.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

for arch in amd64 arm64; do
  triple=${triples[$arch]}
  base="fhirlock-$version-linux-$arch"
  # What is linked into the binary for this target: every transitive dependency of the fhirlock
  # package, without build-only ones (build scripts, their tools) and dev-dependencies.
  (cd "$work/src" && SOURCE_DATE_EPOCH=$epoch "$tools/bin/cargo-cyclonedx" cyclonedx --quiet \
    --manifest-path crates/fhirlock/Cargo.toml --format json --spec-version 1.5 \
    --all --no-build-deps --target "$triple" --override-filename "sbom-$arch")
  # The copy's path in bom-refs says where the build ran, not what it contains.
  sed "s#file://$work/src#file:///fhirlock#g" "$work/src/crates/fhirlock/sbom-$arch.json" \
    >"$out/$base.cdx.json"
  "$python" "$here/sbom.py" "$out/$base.cdx.json"

  FHIRLOCK_IMAGE_ARCH=$arch FHIRLOCK_IMAGE_PROFILE=${profiles[$arch]} \
    FHIRLOCK_IMAGE_CARGO_CONFIG=${configs[$arch]} \
    FHIRLOCK_IMAGE_OUT="$work/$arch" FHIRLOCK_IMAGE_SBOM="$out/$base.cdx.json" \
    "$root/hack/image/build.sh" >/dev/null
  install -m 0755 "$work/$arch/fhirlock" "$out/$base"
  cp "$work/$arch/fhirlock-oci.tar" "$out/$base.oci.tar"
done

python3 "$here/oci_index.py" --version "$version" --out "$work/index" \
  --tar "$out/fhirlock-$version.oci.tar" "$work/amd64/fhirlock-oci" "$work/arm64/fhirlock-oci" >&2
"$helm" package "$chart" --destination "$out" >&2

(cd "$out" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\0' | LC_ALL=C sort -z |
  xargs -0 sha256sum >SHA256SUMS)
echo "release: $(ls "$out" | wc -l) files in $out" >&2
echo "$out"
