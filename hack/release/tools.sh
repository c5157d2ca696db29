#!/usr/bin/env bash
# Installs (once) the tools `make release` needs into a cache directory keyed by their pins, and
# prints that directory:
#
#   DIR/bin/cargo-zigbuild    (crates.io, CARGO_ZIGBUILD_VERSION) links the aarch64 musl build
#   DIR/bin/cargo-cyclonedx   (crates.io, CARGO_CYCLONEDX_VERSION) writes the SBOM from Cargo.lock
#   DIR/venv/bin/python       with ziglang (zig, from PyPI) and cyclonedx-python-lib (the SBOM's
#                             schema validator), requirements.txt
#
# and the Rust standard library for aarch64-unknown-linux-musl (rustup target add). Nothing here
# needs a Docker daemon, a cross gcc or a download outside crates.io, PyPI and rustup.
#
#   FHIRLOCK_CACHE_DIR   cache root (default: $XDG_CACHE_HOME/fhirlock or ~/.cache/fhirlock)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache_root=${FHIRLOCK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fhirlock}
key=$(cat "$here/versions.env" "$here/requirements.txt" | sha256sum | cut -c1-16)
out="$cache_root/release-tools/$key"
mkdir -p "$out"
# One installer at a time (make release and the test may start together).
exec 9>"$out.lock"
flock 9

triple=aarch64-unknown-linux-musl
if [ ! -d "$(rustc --print sysroot)/lib/rustlib/$triple/lib" ]; then
  echo "release-tools: rustup target add $triple" >&2
  rustup target add "$triple" >&2 || {
    echo "release-tools: could not add the Rust target $triple; add it by hand:" \
      "rustup target add $triple" >&2
    exit 1
  }
fi

if [ ! -f "$out/.complete" ]; then
  start=$(date +%s)
  # Installed with their own Cargo.lock (--locked), into the cache rather than ~/.cargo/bin.
  for tool in "cargo-zigbuild@$CARGO_ZIGBUILD_VERSION" "cargo-cyclonedx@$CARGO_CYCLONEDX_VERSION"; do
    name=${tool%@*}
    [ -x "$out/bin/$name" ] && continue
    echo "release-tools: cargo install --locked $tool" >&2
    cargo install --quiet --locked --root "$out" "$tool" >&2
  done
  if [ ! -x "$out/venv/bin/python" ] || ! "$out/venv/bin/python" -c 'import ziglang, cyclonedx' 2>/dev/null; then
    rm -rf "$out/venv"
    python3 -m venv "$out/venv"
    "$out/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      -r "$here/requirements.txt" >&2
  fi
  touch "$out/.complete"
  echo "release-tools: installed in $(( $(date +%s) - start ))s into $out" >&2
fi
echo "$out"
