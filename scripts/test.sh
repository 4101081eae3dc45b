#!/usr/bin/env bash
# The test command. In order, each a stage that must pass:
#   1. pytest: unit, emulator (incl. schemathesis), integration (real ansible-playbook against the emulator),
#      module EXAMPLES, fleet role, molecule, artifact (built tarball), printed commands (docs: every command of
#      demo.sh, README and quickstart in a new shell), broker end-to-end, reliability
#      (fault matrix, secrets, bad input, TLS) - with coverage of plugins/module_utils;
#   2. ansible-test sanity with no ignore files;
#   3. ansible-lint (production profile), galaxy-importer (Galaxy's import check of the built tarball, with its
#      ansible-doc, ansible-lint and flake8 checks: no errors, no warnings), antsibull-changelog lint,
#      antsibull-docs lint, ansible-builder create.
# Not here: `bash scripts/integration.sh` (ansible-test integration of the same targets that stage 1 runs with
# ansible-playbook; a fresh emulator and ansible-test start-up per target, several minutes).
# TEST_QUICK=1 skips the slow fault matrix (pytest -m "not slow") and stage 3. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/venv.sh"
cd "$REPO_ROOT"

stage() { printf '\n===== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

marker=()
[ -z "${TEST_QUICK:-}" ] || marker=(-m "not slow")
stage "pytest"
python -m pytest tests -p no:cacheprovider -n "${TEST_WORKERS:-2}" --dist loadfile "${marker[@]}" \
  --cov=plugins/module_utils --cov-report=term-missing --cov-fail-under=90 --durations=15 "$@"

stage "ansible-test sanity"
bash scripts/sanity.sh

if [ -z "${TEST_QUICK:-}" ]; then
  stage "ansible-lint"
  bash scripts/lint.sh
  stage "galaxy-importer"
  bash scripts/galaxy_importer.sh
  stage "changelog"
  bash scripts/changelog.sh
  stage "docs lint"
  bash scripts/docs.sh check
  stage "execution environment"
  bash scripts/ee.sh
fi
stage "done"
