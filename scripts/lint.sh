#!/usr/bin/env bash
# ansible-lint (profile production, offline; config: .ansible-lint) on the whole collection.
# ansible-lint lives in its own venv (ISR_LINT_VENV, default ~/.cache/isr-mqtt/venv-lint) so that its ansible-core does not
# fight the test venv's pin. The collection is made importable as isr.mqtt through a symlink in a temp dir.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LINT_VENV="${ISR_LINT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/isr-mqtt/venv-lint}"
if [ ! -x "$LINT_VENV/bin/ansible-lint" ]; then
  python3 -m venv "$LINT_VENV"
  "$LINT_VENV/bin/python" -m pip install -q ansible-lint
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ansible_collections/isr"
ln -s "$REPO_ROOT" "$work/ansible_collections/isr/mqtt"
cd "$REPO_ROOT"
ANSIBLE_COLLECTIONS_PATH="$work" PATH="$LINT_VENV/bin:$PATH" ansible-lint --nocolor "$@"
