#!/usr/bin/env bash
# Benchmarks: gunicorn (2 sync workers) on PostgreSQL, driven by wrk from 127.0.0.1.
# Usage: bash bench/run.sh [auth] [audit] [better_auth] [slow_clients] [framework]
# (or: make bench [BENCH="auth audit"]); no argument runs all five, in that order.
# Settings and figures: bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

benches=("$@")
if [ ${#benches[@]} -eq 0 ]; then
    benches=(auth audit better_auth slow_clients framework)
fi
for name in "${benches[@]}"; do
    case "$name" in
        auth | audit | better_auth | slow_clients | framework) ;;
        *)
            echo "bench: unknown benchmark '$name' (auth, audit, better_auth, slow_clients, framework)" >&2
            exit 2
            ;;
    esac
done

if ! command -v wrk >/dev/null 2>&1; then
    echo "bench: wrk is not installed; install it with: apt-get update && apt-get install -y wrk" >&2
    exit 2
fi
python="${VENV:-.venv}/bin/python"
if [ ! -x "$python" ]; then
    echo "bench: $python not found; create the virtualenv first (make bench does)" >&2
    exit 2
fi

# Each driver stops its gunicorn servers by PID and drops its databases when it gets SIGTERM.
# It runs in the background so that this script can pass a TERM, HUP or INT (Ctrl-C) on to it
# by its PID, wait for it to clean up, and only then exit.
driver=""
stop_driver() {
    trap '' TERM HUP INT
    if [ -n "$driver" ]; then
        kill -TERM "$driver" 2>/dev/null || true
        wait "$driver" || true
    fi
    exit "$1"
}
trap 'stop_driver 143' TERM
trap 'stop_driver 129' HUP
trap 'stop_driver 130' INT

status=0
for name in "${benches[@]}"; do
    echo "bench: --- ${name} benchmark ---" >&2
    if [ "$name" = framework ]; then
        "$python" -m bench.framework_bench & # imports bench.anchors and mita_app
    else
        "$python" "bench/${name}_bench.py" &
    fi
    driver=$!
    code=0
    wait "$driver" || code=$?
    driver=""
    if [ "$code" -ne 0 ]; then
        echo "bench: the ${name} benchmark exited with ${code}" >&2
        status=$code
    fi
done
exit "$status"
