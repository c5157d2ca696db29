#!/usr/bin/env bash
# check_bodies.py with the suite's venv (made if needed). Arguments go to check_bodies.py:
#   check-bodies.sh --from-file requests.json [--principal OID] [--json]
#   check-bodies.sh --url https://127.0.0.1:PORT --ca ca.pem [--principal OID] [--json]
# Exit status: 0 no violation, 1 violations, 2 bad input.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$("$here/venv.sh")"
exec "$venv/bin/python" "$here/check_bodies.py" "$@"
