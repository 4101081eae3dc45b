# shellcheck shell=bash
# Sourced by the other scripts: make sure .venv exists with everything tests/requirements.txt lists.
# Re-installs only when the requirements file changed since the last install.
# ISR_VENV picks another venv, ISR_REQUIREMENTS another requirements file (scripts/matrix.sh uses both).
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ISR_VENV:-$REPO_ROOT/.venv}"
REQUIREMENTS="${ISR_REQUIREMENTS:-$REPO_ROOT/tests/requirements.txt}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r "$REQUIREMENTS"
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
