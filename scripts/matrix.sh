#!/usr/bin/env bash
# Version matrix: for each leg (ansible-core version on a Python), a venv with the test requirements and that
# ansible-core, then ansible-test sanity (scripts/sanity.sh) and the integration tests (pytest tests/integration,
# which run that venv's ansible-playbook). Prints how long each step took.
#   bash scripts/matrix.sh                         the default legs below
#   MATRIX="2.18:python3.12" bash scripts/matrix.sh
#   MATRIX_STEPS="sanity" bash scripts/matrix.sh   only sanity (default: "sanity integration")
# Legs are CORE:PYTHON, PYTHON an interpreter name on PATH or a path. ansible-core 2.17 needs Python >= 3.10
# on the controller, 2.21 needs >= 3.12. Venvs are kept in ISR_MATRIX_DIR (default ~/.cache/isr-mqtt/matrix).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

find_python() {
  for candidate in "$@"; do
    if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
    if command -v "$candidate" >/dev/null 2>&1; then command -v "$candidate"; return 0; fi
  done
  return 1
}
default_legs="2.17:$(find_python python3.11 /root/.pyenv/versions/3.11.7/bin/python3 || echo python3.11)"
default_legs+=" 2.21:$(find_python /root/.pyenv/versions/3.13.0/bin/python3 python3.13 || echo python3.13)"
MATRIX="${MATRIX:-$default_legs}"
MATRIX_STEPS="${MATRIX_STEPS:-sanity integration}"
MATRIX_DIR="${ISR_MATRIX_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/isr-mqtt/matrix}"
mkdir -p "$MATRIX_DIR"

summary=()
failed=0
for leg in $MATRIX; do
  core="${leg%%:*}"
  py="$(find_python "${leg#*:}")" || { echo "leg $leg: no interpreter ${leg#*:}" >&2; summary+=("$leg: python not found"); failed=1; continue; }
  pyver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  venv="$MATRIX_DIR/ansible-core-$core-py$pyver"
  req="$MATRIX_DIR/requirements-$core.txt"
  { grep -v '^ansible-core' tests/requirements.txt; echo "ansible-core==$core.*"; } > "$req"
  echo "=== leg ansible-core $core on Python $pyver ($py) ==="

  start=$SECONDS
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  ( export ISR_VENV="$venv" ISR_REQUIREMENTS="$req"; source scripts/venv.sh )
  "$venv/bin/ansible" --version | sed -n 1p
  line="core $core / py $pyver: venv $((SECONDS - start))s"

  for step in $MATRIX_STEPS; do
    start=$SECONDS
    case "$step" in
      sanity)
        if ISR_VENV="$venv" ISR_REQUIREMENTS="$req" SANITY_PYTHON="$pyver" bash scripts/sanity.sh; then rc=0; else rc=$?; fi ;;
      integration)
        if "$venv/bin/python" -m pytest tests/integration -p no:cacheprovider -q -n "${TEST_WORKERS:-2}" --dist loadfile; then rc=0; else rc=$?; fi ;;
      *) echo "unknown step $step" >&2; exit 2 ;;
    esac
    if [ "$rc" -eq 0 ]; then status=pass; else status="FAIL rc=$rc"; failed=1; fi
    line+=", $step $status $((SECONDS - start))s"
  done
  summary+=("$line")
done

echo "=== matrix summary ==="
printf '%s\n' "${summary[@]}"
exit "$failed"
