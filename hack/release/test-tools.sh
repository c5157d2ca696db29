#!/usr/bin/env bash
# Makes sure the release test's tools from Debian are installed, and prints their paths, one a
# line: qemu-aarch64-static, then skopeo. Installs Debian's qemu-user-static and skopeo with
# apt-get when missing (as root, or through sudo -n, as hack/image/build.sh installs musl-tools).
#
# - qemu-aarch64-static, QEMU's user-mode emulator: the test runs the static arm64 binary under it
#   directly (`qemu-aarch64-static ./fhirlock version`): no binfmt_misc, no root filesystem.
# - skopeo reads the multi-architecture image archive as registries' clients do: it picks the
#   image for an architecture from the index, and copies all of them.
set -euo pipefail
declare -A package=([qemu-aarch64-static]=qemu-user-static [skopeo]=skopeo)
missing=()
for cmd in qemu-aarch64-static skopeo; do
  command -v "$cmd" >/dev/null || missing+=("${package[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || {
    echo "release test tools: install ${missing[*]} (no apt-get here)" >&2
    exit 1
  }
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  echo "release test tools: apt-get install ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # A fresh Debian image has no package lists: update only when the install cannot find them.
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    $sudo apt-get update -qq >&2 &&
      $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  } || {
    echo "release test tools: could not install ${missing[*]} (needs root or sudo, and the" \
      "Debian archive)" >&2
    exit 1
  }
fi
for cmd in qemu-aarch64-static skopeo; do
  command -v "$cmd" || { echo "release test tools: $cmd is still missing" >&2; exit 1; }
done
