#!/usr/bin/env bash
# Auth-path benchmark: gunicorn (2 sync workers) on PostgreSQL, driven by wrk from 127.0.0.1.
# Usage: bash bench/run.sh   (or: make bench). Settings and figures: bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
    echo "bench: wrk is not installed; install it with: apt-get update && apt-get install -y wrk" >&2
    exit 2
fi
python="${VENV:-.venv}/bin/python"
if [ ! -x "$python" ]; then
    echo "bench: $python not found; create the virtualenv first (make bench does)" >&2
    exit 2
fi
# exec: the driver gets our signals directly; it stops gunicorn by PID and drops the database.
exec "$python" bench/auth_bench.py
