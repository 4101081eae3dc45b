#!/usr/bin/env bash
# The fleet benchmark, one command: bash benchmarks/run.sh [run.py options, e.g. --sizes 100,1000 --repeat 1]
# Uses the project venv (scripts/venv.sh; ISR_VENV picks another), adds psutil, runs every scenario and writes
# the table to benchmarks/output/<run-id>/results.md; only with --update-doc also into the tracked
# docs/performance.md. Takes ~30-40 min on 2 cores.
set -euo pipefail
source "$(dirname "$0")/../scripts/venv.sh"
cd "$REPO_ROOT"
python -m pip install -q -r benchmarks/requirements.txt
exec python benchmarks/run.py "$@"
