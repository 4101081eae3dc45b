#!/usr/bin/env bash
# The test command: unit, emulator, integration (real ansible-playbook against the emulator),
# fleet and broker end-to-end tests with coverage of the shared client, then ansible-test sanity.
set -euo pipefail
source "$(dirname "$0")/venv.sh"
cd "$REPO_ROOT"

python -m pytest tests -p no:cacheprovider -n "${TEST_WORKERS:-2}" --dist loadfile \
  --cov=plugins/module_utils --cov-report=term-missing "$@"
bash scripts/sanity.sh
