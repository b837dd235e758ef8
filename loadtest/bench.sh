#!/usr/bin/env bash
# `make bench`: raw limits + every ready scenario in loadtest/scenarios/, one Markdown report in
# loadtest/results/. Loopback only, throwaway stores, about 10 minutes. Extra arguments go to
# loadtest.bench (e.g. `loadtest/bench.sh --only healthz`, `--quick`, `--list`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${VENV:-.venv}/bin/python"
[ -x "$PY" ] || PY=python3
if [ -z "${STAGEDOOR_BENCH_COMMAND:-}" ]; then
    if [ -n "${MAKELEVEL:-}" ] && [ $# -eq 0 ]; then
        export STAGEDOOR_BENCH_COMMAND="make bench"
    else
        export STAGEDOOR_BENCH_COMMAND="loadtest/bench.sh${*:+ $*}"
    fi
fi
# The whole run is bounded by loadtest.bench (--budget); this is the hard stop behind it.
exec timeout --kill-after=30 660 "$PY" -m loadtest.bench "$@"
