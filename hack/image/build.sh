#!/usr/bin/env bash
# Builds fhirlock's OCI image without a Docker daemon, and prints the path of its OCI image layout.
#
#   1. A statically linked fhirlock for x86_64-unknown-linux-musl. Rust links musl's libc.a into
#      every musl executable, so the result has no program interpreter and no shared library (the
#      checks below refuse anything else). Unlike static glibc it has no NSS modules to miss (musl
#      resolves names itself from /etc/hosts and /etc/resolv.conf, which is all a pod has) and
#      needs no /dev/urandom (randomness comes from the getrandom system call).
#      What it needs, installed here when missing (idempotent, quiet when present):
#        - Rust's standard library for musl: `rustup target add x86_64-unknown-linux-musl`
#          (downloads from static.rust-lang.org);
#        - `musl-gcc` (Debian's musl-tools), because aws-lc-sys (rustls' crypto, through aws-lc-rs)
#          compiles C: that C must see musl's headers, not glibc's. Rust itself links with its own
#          musl crt objects and libc.a, so the linker stays the system `cc`.
#      The global allocator stays musl's malloc (see docs/install.md for the measurement).
#   2. hack/image/oci.py writes an OCI image layout (one layer: the binary, a CA bundle for TLS to
#      Azure, /etc/passwd and /etc/group naming the non-root user 65532, an empty /tmp), with a
#      config that runs /fhirlock as 65532:65532. No shell, no package manager.
#
# Output: target/image/fhirlock (the binary) with target/image/kubectl-fhirlock (a link to it, the
# kubectl plugin), target/image/fhirlock-oci (an OCI image layout; `skopeo copy oci:target/image/fhirlock-oci
# docker://REGISTRY/fhirlock:TAG` pushes it) and target/image/fhirlock-oci.tar (the same, as one
# archive).
#
# arm64 (FHIRLOCK_IMAGE_ARCH=arm64, as `make release` builds it) is cross-compiled for
# aarch64-unknown-linux-musl by cargo-zigbuild: zig compiles aws-lc-sys' C against musl's aarch64
# headers and links, so no cross gcc and no daemon (the tools from hack/release/tools.sh).
#
#   FHIRLOCK_IMAGE_PROFILE   cargo profile (default release)
#   FHIRLOCK_IMAGE_ARCH      amd64 (default) or arm64
#   FHIRLOCK_IMAGE_OUT       output directory (default target/image, or target/image-arm64)
#   FHIRLOCK_IMAGE_SBOM      a CycloneDX JSON file to put in the image at /sbom/fhirlock.cdx.json
#   FHIRLOCK_IMAGE_CARGO_CONFIG  `cargo --config` values for the build, separated by spaces
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
arch=${FHIRLOCK_IMAGE_ARCH:-amd64}
case "$arch" in
  amd64) triple=x86_64-unknown-linux-musl; out_default="$root/target/image" ;;
  arm64) triple=aarch64-unknown-linux-musl; out_default="$root/target/image-arm64" ;;
  *) echo "image: FHIRLOCK_IMAGE_ARCH must be amd64 or arm64, not $arch" >&2; exit 2 ;;
esac
profile=${FHIRLOCK_IMAGE_PROFILE:-release}
config=()
read -ra cfgs <<<"${FHIRLOCK_IMAGE_CARGO_CONFIG:-}"
for c in "${cfgs[@]}"; do config+=(--config "$c"); done
cd "$root"

# Rust's standard library for musl, in the toolchain this directory uses.
if [ "$arch" = amd64 ] && [ ! -d "$(rustc --print sysroot)/lib/rustlib/$triple/lib" ]; then
  command -v rustup >/dev/null || {
    echo "image: Rust has no standard library for $triple and there is no rustup to add it" >&2
    exit 1
  }
  echo "image: rustup target add $triple" >&2
  rustup target add "$triple" >&2 || {
    echo "image: could not add the Rust target $triple (rustup downloads it from" \
      "static.rust-lang.org); add it by hand: rustup target add $triple" >&2
    exit 1
  }
fi

# A C compiler for musl, for aws-lc-sys.
if [ "$arch" = amd64 ] && ! command -v musl-gcc >/dev/null; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  if ! command -v apt-get >/dev/null; then
    echo "image: musl-gcc not found; install musl-tools (or your distribution's musl-gcc)" >&2
    exit 1
  fi
  echo "image: apt-get install musl-tools (for musl-gcc)" >&2
  export DEBIAN_FRONTEND=noninteractive
  # A fresh Debian image has no package lists: update only when the install cannot find it.
  $sudo apt-get install -y -qq --no-install-recommends musl-tools >/dev/null 2>&1 || {
    $sudo apt-get update -qq >&2 &&
      $sudo apt-get install -y -qq --no-install-recommends musl-tools >&2
  } || {
    echo "image: could not install musl-tools (needs root or sudo, and the Debian archive)" >&2
    exit 1
  }
  command -v musl-gcc >/dev/null || { echo "image: musl-tools installed no musl-gcc" >&2; exit 1; }
fi
export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc}

# --target keeps these objects under target/$triple, apart from the normal (dynamic) build.
if [ "$arch" = amd64 ]; then
  cargo build --locked --profile "$profile" --target "$triple" "${config[@]}" \
    -p fhirlock --bin fhirlock >&2
else
  # The pinned cargo-zigbuild and zig (from PyPI), and rustup's aarch64 musl standard library.
  tools=$("$root/hack/release/tools.sh")
  export CARGO_ZIGBUILD_PYTHON_PATH="$tools/venv/bin/python"
  # Debian's strip reads x86 ELF only (and zig's objcopy cannot strip), so the linker strips:
  # symbols are for debugging the build, not for the image. Only this target's units see it.
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C strip=symbols"
  "$tools/bin/cargo-zigbuild" zigbuild --locked --profile "$profile" --target "$triple" \
    "${config[@]}" -p fhirlock --bin fhirlock >&2
fi
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
out=${FHIRLOCK_IMAGE_OUT:-$out_default}
mkdir -p "$out"
# Symbols are for debugging the build, not for the image: ~30 MB before, about a third after.
if [ "$arch" = amd64 ]; then
  strip --strip-all -o "$out/fhirlock" "$bin"
else
  install -m 0755 "$bin" "$out/fhirlock"
fi
# The kubectl plugin is the same binary by another name (docs/install.md).
ln -sfn fhirlock "$out/kubectl-fhirlock"
sbom=()
[ -n "${FHIRLOCK_IMAGE_SBOM:-}" ] && sbom=(--sbom "$FHIRLOCK_IMAGE_SBOM")
python3 "$here/oci.py" --binary "$out/fhirlock" --ca "$ca" --version "$version" \
  --arch "$arch" "${sbom[@]}" --revision "$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)" \
  --out "$out/fhirlock-oci" --tar "$out/fhirlock-oci.tar" >&2
echo "$out/fhirlock-oci"
