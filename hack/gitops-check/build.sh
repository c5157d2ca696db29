#!/usr/bin/env bash
# Builds gitops-check (kstatus from sigs.k8s.io/cli-utils and Flux's fork, and gopher-lua as Argo
# CD runs health scripts), cached; prints its directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/../lib/go-tool.sh" "$here" gitops-check
