#!/usr/bin/env bash
# Set everything up, then run the whole test suite (extra arguments go to pytest).
# PostgreSQL tests use RELAIS_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/test);
# they are skipped when it is unreachable, except under CI=true where that fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# CI: a known vulnerability in an installed package fails the run; no network is only a warning
if [ -n "${CI:-}" ]; then .venv/bin/python scripts/audit.py; fi
exec .venv/bin/python -m pytest "$@"
