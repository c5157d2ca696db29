#!/usr/bin/env bash
# Builds azidentity-check (the Azure SDK for Go's azidentity, azcore and armresources, pinned in
# go.mod), cached; prints its directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/../lib/go-tool.sh" "$here" azidentity-check
