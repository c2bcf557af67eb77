#!/usr/bin/env bash
# The demo command (README): installs computewatch into .venv and runs `computewatch demo`:
# a simulated fleet feeds the processing core in-process, results go to the embedded
# ClickHouse engine (./data/clickhouse) and the dashboard serves on http://127.0.0.1:8501.
# Extra arguments go to `computewatch demo`, e.g. `scripts/demo.sh --port 8600 --rate 20`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
exec .venv/bin/computewatch demo "$@"
