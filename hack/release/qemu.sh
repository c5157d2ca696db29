#!/usr/bin/env bash
# Makes sure QEMU's user-mode emulator for arm64 is installed (Debian's qemu-user-static, as root
# or through sudo -n, as hack/image/build.sh installs musl-tools) and prints its path. The release
# test runs the static arm64 binary under it directly (`qemu-aarch64-static ./fhirlock version`):
# no binfmt_misc registration, no root filesystem, no daemon.
set -euo pipefail
qemu=qemu-aarch64-static
if ! command -v "$qemu" >/dev/null; then
  command -v apt-get >/dev/null || {
    echo "qemu: $qemu not found and no apt-get to install it; install qemu-user-static" >&2
    exit 1
  }
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  echo "qemu: apt-get install qemu-user-static" >&2
  export DEBIAN_FRONTEND=noninteractive
  # A fresh Debian image has no package lists: update only when the install cannot find it.
  $sudo apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null 2>&1 || {
    $sudo apt-get update -qq >&2 &&
      $sudo apt-get install -y -qq --no-install-recommends qemu-user-static >&2
  } || {
    echo "qemu: could not install qemu-user-static (needs root or sudo, and the Debian archive)" >&2
    exit 1
  }
fi
command -v "$qemu" || { echo "qemu: qemu-user-static installed no $qemu" >&2; exit 1; }
