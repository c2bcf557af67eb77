#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need, starts a real local Kafka
# broker (KRaft, with SASL_PLAINTEXT and SASL_SSL listeners), runs ruff, mypy and the whole
# pytest suite, and stops the broker again. Extra arguments go to pytest, e.g.
# `scripts/test.sh -m "not kafka" -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*" >&2; }

say "python environment (.venv)"
[ -x .venv/bin/python ] || python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"

# Debian's chromium (headless browser for the dashboard tests) and prometheus (a real server
# scraping the worker, and promtool for the alert rules)
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
    say "Debian packages: ${missing[*]}"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        for package in "${missing[@]}"; do  # prometheus without its recommended exporters
            flags=(); [ "$package" = prometheus ] && flags=(--no-install-recommends)
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${flags[@]}" "$package" >/dev/null
        done
    else
        echo "${missing[*]} missing and cannot be installed here: their tests will skip (or fail under CI=true)" >&2
    fi
fi

say "Kafka broker"
broker_env=$(scripts/kafka.sh start --ssl)  # SASL_PLAINTEXT and SASL_SSL listeners too
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
