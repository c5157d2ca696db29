#!/usr/bin/env bash
# Builds fhirlock's OCI image without a Docker daemon, and prints the path of its OCI image layout.
#
#   1. A statically linked fhirlock: x86_64-unknown-linux-gnu with `-C target-feature=+crt-static`
#      (a static-pie executable: no dynamic loader, no shared library). Not musl: rustup here can
#      only reach package registries, so the musl standard library cannot be installed, and
#      Debian's musl-tools bring a C toolchain, not Rust's std for musl. glibc ≥ 2.34 has its DNS
#      and files name services built in, so name resolution needs no shared NSS module.
#   2. hack/image/oci.py writes an OCI image layout (one layer: the binary, a CA bundle for TLS to
#      Azure, /etc/passwd and /etc/group naming the non-root user 65532, an empty /tmp), with a
#      config that runs /fhirlock as 65532:65532. No shell, no package manager.
#
# Output: target/image/fhirlock-oci (an OCI image layout; `skopeo copy oci:target/image/fhirlock-oci
# docker://REGISTRY/fhirlock:TAG` pushes it) and target/image/fhirlock-oci.tar (the same, as one
# archive).
#
#   FHIRLOCK_IMAGE_PROFILE   cargo profile (default release)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
triple=x86_64-unknown-linux-gnu
profile=${FHIRLOCK_IMAGE_PROFILE:-release}
cd "$root"
# --target keeps these objects under target/$triple, apart from the normal (dynamic) build, and
# applies RUSTFLAGS to the target only, not to build scripts and proc macros.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --locked --profile "$profile" --target "$triple" -p fhirlock --bin fhirlock >&2
dir=$profile; [ "$profile" = dev ] && dir=debug
bin="$root/target/$triple/$dir/fhirlock"
# Refuse a binary that would need a loader or shared libraries at run time.
if readelf -lW "$bin" | grep -q 'Requesting program interpreter'; then
  echo "image: $bin has a program interpreter: not static" >&2; exit 1
fi
if readelf -dW "$bin" | grep -q '(NEEDED)'; then
  echo "image: $bin needs shared libraries:" >&2; readelf -dW "$bin" | grep NEEDED >&2; exit 1
fi
ca=${FHIRLOCK_CA_CERTIFICATES:-/etc/ssl/certs/ca-certificates.crt}
[ -s "$ca" ] || { echo "image: no CA bundle at $ca (apt-get install ca-certificates)" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
out="$root/target/image"
mkdir -p "$out"
# Symbols are for debugging the build, not for the image: ~30 MB before, about a third after.
strip --strip-all -o "$out/fhirlock" "$bin"
python3 "$here/oci.py" --binary "$out/fhirlock" --ca "$ca" --version "$version" \
  --revision "$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)" \
  --out "$out/fhirlock-oci" --tar "$out/fhirlock-oci.tar" >&2
echo "$out/fhirlock-oci"
