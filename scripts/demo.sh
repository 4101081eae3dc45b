#!/usr/bin/env bash
# The README's first command: start the portal emulator on 127.0.0.1 (with Mosquitto behind it when
# installed), provision a demo fleet with the role isr.mqtt.fleet, read one password back, and show
# a message travelling from a provisioned device to a read-only subscriber.
#   DEMO_DEVICES=50   how many devices
#   DEMO_KEEP=1       leave the emulator running at the end
set -euo pipefail
source "$(dirname "$0")/venv.sh"
cd "$REPO_ROOT"

demo="$REPO_ROOT/demo"
mkdir -p "$demo" && chmod 700 "$demo"
state="$demo/emulator.json"
vault_pass="$demo/vault-pass.txt"
store="$demo/mqtt_credentials.yml"
[ -s "$vault_pass" ] || (umask 077 && python -c 'import secrets; print(secrets.token_urlsafe(32))' > "$vault_pass")

broker_flag=()
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
  broker_flag=(--broker)
else
  echo "mosquitto is not installed: running without a broker (apt-get install mosquitto to see the MQTT part)"
fi

# A fresh portal each time, so a fresh store too.
rm -f "$state" "$store" "$demo/portal.sqlite"*
python tests/emulator/serve.py --db "$demo/portal.sqlite" --state-file "$state" "${broker_flag[@]}" > "$demo/emulator.log" 2>&1 &
emulator_pid=$!
stop_emulator() { if kill "$emulator_pid" 2>/dev/null; then wait "$emulator_pid" 2>/dev/null || true; fi; }
[ -n "${DEMO_KEEP:-}" ] || trap stop_emulator EXIT
for _ in $(seq 1 300); do
  [ -s "$state" ] && break
  kill -0 "$emulator_pid" 2>/dev/null || { cat "$demo/emulator.log"; exit 1; }
  sleep 0.1
done
[ -s "$state" ] || { echo "the emulator did not start"; cat "$demo/emulator.log"; exit 1; }
cat "$demo/emulator.log"

export ISR_PORTAL_URL ISR_PORTAL_TOKEN
ISR_PORTAL_URL=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["portal_url"])' "$state")
ISR_PORTAL_TOKEN=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$state")
collections="$demo/collections"
mkdir -p "$collections/ansible_collections/isr"
ln -sfn "$REPO_ROOT" "$collections/ansible_collections/isr/mqtt"
ANSIBLE_PYTHON_INTERPRETER="$(command -v python)"
export ANSIBLE_PYTHON_INTERPRETER ANSIBLE_COLLECTIONS_PATH="$collections" ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_INVENTORY_UNPARSED_WARNING=0

echo
echo "== Provisioning ${DEMO_DEVICES:-50} devices with the role isr.mqtt.fleet"
ansible-playbook -i localhost, playbooks/demo_fleet.yml --vault-id "demo@$vault_pass" \
  -e "demo_count=${DEMO_DEVICES:-50}" -e "demo_store=$store"

echo
echo "== One MQTT client as the portal lists it, through isr.mqtt.mqtt_client_info (no password)"
ansible localhost -i localhost, -c local -m isr.mqtt.mqtt_client_info -a "label=demo-device-1" | head -30

if [ "${#broker_flag[@]}" -gt 0 ]; then
  echo
  echo "== A device publishes, a read-only subscriber receives (real Mosquitto on 127.0.0.1)"
  ansible-playbook -i localhost, playbooks/demo_broker.yml -e "demo_dir=$demo"
  python scripts/demo_mqtt.py --state-file "$state" --store "$store" --vault-password-file "$vault_pass" \
    --listener-user "$demo/demo-listener.user" --listener-password-file "$demo/demo-listener.pass"
  if command -v mosquitto_pub >/dev/null 2>&1 && command -v mosquitto_sub >/dev/null 2>&1; then
    echo
    echo "== isr.mqtt.device delivers credentials to 3 device hosts; each publishes with its file, a subscriber hears all"
    ansible-playbook -i localhost, playbooks/demo_devices.yml --vault-id "demo@$vault_pass" \
      -e "demo_dir=$demo" -e "demo_store=$store" -e "demo_state=$state"
  else
    echo "mosquitto_pub/mosquitto_sub not installed: skipping the device delivery (apt-get install mosquitto-clients)"
  fi
fi

echo
echo "Store: $store (passwords vault-encrypted; vault password in $vault_pass)"
echo "Read one password back (prints it):"
echo "  ansible localhost -i localhost, -m ansible.builtin.debug -a \"var=isr_mqtt_credentials['demo-device-1'].password\" -e @$store --vault-id demo@$vault_pass"
if [ -n "${DEMO_KEEP:-}" ]; then
  echo "The emulator keeps running (pid $emulator_pid): ISR_PORTAL_URL=$ISR_PORTAL_URL, token in $state"
fi
