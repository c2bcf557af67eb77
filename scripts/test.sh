#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need, starts a real local Kafka
# broker (KRaft, with a SASL listener), runs ruff, mypy and the whole pytest suite, and stops
# the broker again. Extra arguments go to pytest, e.g. `scripts/test.sh -m "not kafka" -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*" >&2; }

say "python environment (.venv)"
[ -x .venv/bin/python ] || python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"

if ! command -v chromium >/dev/null 2>&1; then
    say "headless browser (Debian's chromium) for the dashboard tests"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "chromium is missing and cannot be installed here: browser tests will skip (or fail under CI=true)" >&2
    fi
fi

say "Kafka broker"
broker_env=$(scripts/kafka.sh start --sasl)
trap 'scripts/kafka.sh stop >/dev/null 2>&1 || true' EXIT
set -a
eval "$broker_env"
set +a
echo "$broker_env" | grep -v PASSWORD >&2

say "ruff"
.venv/bin/ruff check .
say "mypy"
.venv/bin/mypy
say "pytest"
.venv/bin/python -m pytest "$@"
