#!/usr/bin/env bash
# Builds alert-check (Prometheus' PromQL engine, template expander and rule parser, from the
# github.com/prometheus/prometheus module pinned in go.mod), cached; prints its directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/../lib/go-tool.sh" "$here" alert-check
