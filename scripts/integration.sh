#!/usr/bin/env bash
# ansible-test integration against the portal emulator, the way the anchor collections run theirs:
#   bash scripts/integration.sh [TARGET...]   copy the collection to .../ansible_collections/isr/mqtt, then for each
#                                             target (default: all): start a fresh emulator (the targets expect an
#                                             empty account), fill tests/integration/integration_config.yml there from
#                                             the template, run `ansible-test integration --venv --requirements TARGET`,
#                                             stop the emulator
#   bash scripts/integration.sh setup         the setup step alone, for running ansible-test yourself: start an
#                                             emulator (left running), write tests/integration/integration_config.yml
#                                             in this checkout (git-ignored: it holds the token), print the stop command
# The venv is scripts/venv.sh's (ISR_VENV picks another, e.g. a matrix leg's).
set -euo pipefail
source "$(dirname "$0")/venv.sh"
cd "$REPO_ROOT"

python_version="$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
source scripts/ansible_test_env.sh
work="$(mktemp -d)"
emulator_pid=""
state="$work/emulator.json"

start_emulator() {
  python tests/emulator/serve.py --db :memory: --state-file "$state" > "$work/emulator.log" 2>&1 &
  emulator_pid=$!
  for _ in $(seq 1 300); do
    [ -s "$state" ] && return 0
    kill -0 "$emulator_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "the emulator did not start:" >&2
  grep -v '^API token' "$work/emulator.log" >&2
  exit 1
}

# integration_config.yml from the template, with the running emulator's values.
write_config() {
  python - "$state" tests/integration/integration_config.yml.template "$1" <<'PY'
import json, os, string, sys
state = json.load(open(sys.argv[1]))
values = {"ISR_PORTAL_URL": state["portal_url"], "ISR_PORTAL_TOKEN": state["token"],
          "ISR_CONTROL_URL": state["control_url"], "ISR_ACCOUNT_ID": state["account_id"]}
text = string.Template(open(sys.argv[2]).read()).substitute(values)
fd = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as out:
    out.write(text)
PY
}

if [ "${1:-}" = setup ]; then
  start_emulator
  write_config tests/integration/integration_config.yml
  echo "emulator running (pid $emulator_pid); wrote tests/integration/integration_config.yml"
  echo "stop it with:  kill $emulator_pid"
  exit 0
fi

stop_emulator() { if kill "$emulator_pid" 2>/dev/null; then wait "$emulator_pid" 2>/dev/null || true; fi; }
trap 'stop_emulator; rm -rf "$work"' EXIT
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || mapfile -t targets < <(find tests/integration/targets -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
dest="$work/ansible_collections/isr/mqtt"
copy_collection "$dest"
cd "$dest"
for target in "${targets[@]}"; do
  start_emulator
  write_config tests/integration/integration_config.yml
  ansible-test integration --color no --python "$python_version" --venv --requirements "$target"
  stop_emulator
  rm -f "$state"
done
echo "ansible-test integration: ${#targets[@]} targets passed (${targets[*]})"
