#!/usr/bin/env bash
# The README's first command: start the portal emulator on 127.0.0.1 (with Mosquitto behind it when
# installed), provision a demo fleet with the role isr.mqtt.fleet, read one password back, and show
# a message travelling from a provisioned device to a read-only subscriber. It ends by writing
# demo/env.sh (venv on PATH, ANSIBLE_COLLECTIONS_PATH, ISR_PORTAL_URL, the token read from the state
# file) and prints the commands to try next, each after `source demo/env.sh`.
#   DEMO_DEVICES=50            how many devices
#   DEMO_KEEP=1                leave the emulator running at the end
#   bash scripts/demo.sh stop  stop an emulator that DEMO_KEEP=1 left running
# Steps are the demo_* functions below, run in order by the list at the end: add a step there.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

demo="$REPO_ROOT/demo"
state="$demo/emulator.json"
vault_pass="$demo/vault-pass.txt"
store="$demo/mqtt_credentials.yml"
stop_command="bash scripts/demo.sh stop"

# The pid of an emulator that an earlier run left running (DEMO_KEEP=1), if it still runs.
running_emulator() {
  local pid
  pid="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$state" 2>/dev/null)" || return 1
  grep -qs "serve.py" "/proc/$pid/cmdline" || return 1
  echo "$pid"
}

if [ "${1:-}" = stop ]; then
  if pid="$(running_emulator)"; then
    kill "$pid"  # serve.py stops its Mosquitto on SIGTERM
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    echo "stopped the demo emulator (pid $pid)"
  else
    echo "no demo emulator is running"
  fi
  exit 0
fi
if pid="$(running_emulator)"; then
  echo "A demo emulator is still running (pid $pid, left by DEMO_KEEP=1); this run would replace its database." >&2
  echo "Stop it first:  $stop_command" >&2
  exit 1
fi
source scripts/venv.sh  # the venv (.venv, or ISR_VENV) with ansible-core and the emulator's packages

demo_start_emulator() {
  mkdir -p "$demo" && chmod 700 "$demo"
  [ -s "$vault_pass" ] || (umask 077 && python -c 'import secrets; print(secrets.token_urlsafe(32))' > "$vault_pass")
  broker_flag=()
  if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
    broker_flag=(--broker)
  else
    echo "mosquitto is not installed: running without a broker (apt-get install mosquitto to see the MQTT part)"
  fi
  # A fresh portal each time, so a fresh store too: say so when an earlier run left its portal and store.
  if [ -e "$store" ] || [ -e "$demo/portal.sqlite" ]; then
    echo "demo/ holds an earlier demo run: starting over with a new, empty emulator portal; its store"
    echo "demo/mqtt_credentials.yml (made for the old portal) is replaced, so every client is created again."
  else
    echo "Starting the emulator portal (an empty database in demo/portal.sqlite)."
  fi
  rm -f "$state" "$store" "$store.lock" "$demo/env.sh" "$demo/portal.sqlite"* "$demo/emulator.log"
  # umask 077: the log and the state file hold the API token, the database the passwords (0600 each).
  (umask 077 && exec python tests/emulator/serve.py --db "$demo/portal.sqlite" --state-file "$state" "${broker_flag[@]}" \
    > "$demo/emulator.log" 2>&1) &
  emulator_pid=$!
  [ -n "${DEMO_KEEP:-}" ] || trap stop_emulator EXIT
  for _ in $(seq 1 300); do
    [ -s "$state" ] && break
    kill -0 "$emulator_pid" 2>/dev/null || { show_log; exit 1; }
    sleep 0.1
  done
  [ -s "$state" ] || { echo "the emulator did not start"; show_log; exit 1; }
  show_log
}
# The emulator's log without the token (it stays in the state file; demo/env.sh reads it from there).
show_log() { sed 's/^API token: .*/API token:   in demo\/emulator.json (demo\/env.sh reads it)/' "$demo/emulator.log"; }
stop_emulator() { if kill "$emulator_pid" 2>/dev/null; then wait "$emulator_pid" 2>/dev/null || true; fi; }

# demo/env.sh: what a new shell needs for the commands printed at the end. The token stays in the state
# file (mode 0600 in a 0700 directory); env.sh reads it from there, so it is printed nowhere.
demo_write_env() {
  local url broker_host broker_port
  url="$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["portal_url"])' "$state")"
  # The emulator's Mosquitto (empty without a broker): docs/rotation.md and docs/device-role.md use them.
  broker_host="$(python -c 'import json,sys; print(json.load(open(sys.argv[1])).get("broker_host", ""))' "$state")"
  broker_port="$(python -c 'import json,sys; print(json.load(open(sys.argv[1])).get("broker_port", ""))' "$state")"
  mkdir -p "$demo/collections/ansible_collections/isr"
  ln -sfn "$REPO_ROOT" "$demo/collections/ansible_collections/isr/mqtt"
  cat > "$demo/env.sh" <<EOF
# Written by scripts/demo.sh: \`source demo/env.sh\` in a new shell to use the demo's venv, collection and emulator.
export PATH="$VENV/bin:\$PATH"
export ANSIBLE_COLLECTIONS_PATH="$demo/collections"
export ANSIBLE_PYTHON_INTERPRETER="$VENV/bin/python"
export ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_INVENTORY_UNPARSED_WARNING=0
export ISR_PORTAL_URL="$url"
export ISR_BROKER_HOST="$broker_host" ISR_BROKER_PORT="$broker_port"
ISR_PORTAL_TOKEN="\$("$VENV/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$state")"
export ISR_PORTAL_TOKEN
EOF
  # shellcheck source=/dev/null
  source "$demo/env.sh"
}

demo_fleet() {
  echo
  echo "== Provisioning ${DEMO_DEVICES:-50} devices with the role isr.mqtt.fleet"
  ansible-playbook -i localhost, playbooks/demo_fleet.yml --vault-id "demo@$vault_pass" \
    -e "demo_count=${DEMO_DEVICES:-50}" -e "demo_store=$store"
  echo
  echo "== One MQTT client as the portal lists it, through isr.mqtt.mqtt_client_info (no password)"
  ansible localhost -i localhost, -c local -m isr.mqtt.mqtt_client_info -a "label=demo-device-1" | head -30
}

demo_broker() {
  [ "${#broker_flag[@]}" -gt 0 ] || return 0
  echo
  echo "== A device publishes, a read-only subscriber receives (real Mosquitto on 127.0.0.1)"
  ansible-playbook -i localhost, playbooks/demo_broker.yml -e "demo_dir=$demo"
  python scripts/demo_mqtt.py --state-file "$state" --store "$store" --vault-password-file "$vault_pass" \
    --listener-user "$demo/demo-listener.user" --listener-password-file "$demo/demo-listener.pass"
}

# isr.mqtt.device: deliver credentials to device hosts, which then publish (needs the broker and its clients).
demo_devices() {
  [ "${#broker_flag[@]}" -gt 0 ] || return 0
  if command -v mosquitto_pub >/dev/null 2>&1 && command -v mosquitto_sub >/dev/null 2>&1; then
    echo
    echo "== isr.mqtt.device delivers credentials to 3 device hosts; each publishes with its file, a subscriber hears all"
    ansible-playbook -i localhost, playbooks/demo_devices.yml --vault-id "demo@$vault_pass" \
      -e "demo_dir=$demo" -e "demo_store=$store" -e "demo_state=$state"
  else
    echo "mosquitto_pub/mosquitto_sub not installed: skipping the device delivery (apt-get install mosquitto-clients)"
  fi
}

# What to try next. Every command is printed after `source demo/env.sh`, with paths relative to the
# repository root, so it works when pasted into a new shell there.
demo_next_steps() {
  echo
  echo "Store: demo/mqtt_credentials.yml (passwords vault-encrypted; vault password in demo/vault-pass.txt)"
  echo "Try it in a new shell, from $REPO_ROOT:"
  echo
  echo "Read one password back (prints it):"
  echo "  source demo/env.sh"
  echo "  ansible localhost -i localhost, -c local -m ansible.builtin.debug -a \"var=isr_mqtt_credentials['demo-device-1'].password\" -e @demo/mqtt_credentials.yml --vault-id demo@demo/vault-pass.txt"
  echo
  echo "Read a module's documentation:"
  echo "  source demo/env.sh"
  echo "  ansible-doc isr.mqtt.mqtt_client"
  if [ -n "${DEMO_KEEP:-}" ]; then
    echo
    echo "Ask the emulator (it keeps running, pid $emulator_pid):"
    echo "  source demo/env.sh"
    echo "  ansible localhost -i localhost, -c local -m isr.mqtt.mqtt_client_info -a label=demo-device-2"
    echo
    echo "Stop the emulator:"
    echo "  $stop_command"
  fi
}

for step in demo_start_emulator demo_write_env demo_fleet demo_broker demo_devices demo_next_steps; do
  "$step"
done
