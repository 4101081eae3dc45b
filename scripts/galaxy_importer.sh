#!/usr/bin/env bash
# Galaxy's own import check on the built tarball: galaxy-importer (PyPI) with its ansible-doc, ansible-lint and
# flake8 checks on and ansible-test off (that one needs a container engine). Fails on any error or warning.
# galaxy-importer pins attrs/flake8/ansible-lint versions that clash with the test venv, so it has its own venv
# (ISR_IMPORTER_VENV, default ~/.cache/isr-mqtt/venv-galaxy-importer), rebuilt when the pin below changes.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMPORTER="galaxy-importer==0.4.44"
IMPORTER_VENV="${ISR_IMPORTER_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/isr-mqtt/venv-galaxy-importer}"
if [ "$(cat "$IMPORTER_VENV/.installed" 2>/dev/null)" != "$IMPORTER" ]; then
  python3 -m venv "$IMPORTER_VENV"
  "$IMPORTER_VENV/bin/python" -m pip install -q "$IMPORTER"
  echo "$IMPORTER" > "$IMPORTER_VENV/.installed"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$REPO_ROOT"
PATH="$IMPORTER_VENV/bin:$PATH" ansible-galaxy collection build --force --output-path "$work" . >/dev/null
tarball="$(find "$work" -maxdepth 1 -name 'isr-mqtt-*.tar.gz')"

cd "$work"  # galaxy-importer writes importer_result.json into the current directory
export GALAXY_IMPORTER_RUN_ANSIBLE_DOC=true GALAXY_IMPORTER_RUN_ANSIBLE_LINT=true GALAXY_IMPORTER_OFFLINE_ANSIBLE_LINT=true
export GALAXY_IMPORTER_RUN_FLAKE8=true GALAXY_IMPORTER_RUN_ANSIBLE_TEST=false GALAXY_IMPORTER_CHECK_CHANGELOG=true
export GALAXY_IMPORTER_ANSIBLE_LOCAL_TMP="$work/ansible-tmp" GALAXY_IMPORTER_TMP_ROOT_DIR="$work"
rc=0
PATH="$IMPORTER_VENV/bin:$PATH" python -m galaxy_importer.main "$tarball" > "$work/importer.log" 2>&1 || rc=$?
cat "$work/importer.log"
problems="$(grep -cE '^(WARNING|ERROR|CRITICAL)' "$work/importer.log" || true)"
if [ "$rc" -ne 0 ] || [ "$problems" -ne 0 ]; then
  echo "galaxy-importer: FAILED (exit $rc, $problems warnings/errors above)" >&2
  exit 1
fi
echo "galaxy-importer: $(basename "$tarball") imports with no errors and no warnings"
