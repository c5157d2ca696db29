#!/usr/bin/env bash
# Makes sure bash, zsh and fish are installed, for the test that loads `fhirlock completion` into
# each real shell (tests/cli.rs). Installs Debian's zsh and fish with apt-get when missing (as root,
# or through sudo -n), as hack/image/build.sh does for musl-tools; quiet when they are present.
# Prints the path of each shell, one a line: bash, zsh, fish.
set -euo pipefail
missing=()
for sh in zsh fish; do command -v "$sh" >/dev/null || missing+=("$sh"); done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || {
    echo "shells: ${missing[*]} not found and no apt-get to install them; install them by hand" >&2
    exit 1
  }
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  echo "shells: apt-get install ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # A fresh Debian image has no package lists: update only when the install cannot find them.
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    $sudo apt-get update -qq >&2 &&
      $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  } || {
    echo "shells: could not install ${missing[*]} (needs root or sudo, and the Debian archive)" >&2
    exit 1
  }
fi
for sh in bash zsh fish; do
  command -v "$sh" || { echo "shells: $sh is still missing" >&2; exit 1; }
done
