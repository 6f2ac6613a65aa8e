#!/usr/bin/env bash
# Set everything up, then run the demo (extra arguments go to `relais demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/relais demo "$@"
