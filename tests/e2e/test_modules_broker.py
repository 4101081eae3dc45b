"""The collection's modules and role against the emulator with a real broker: what Ansible does, MQTT clients feel."""
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent.parent

CLIENT_PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: The device credential
      isr.mqtt.mqtt_client:
        label: "{{ label }}"
        state: "{{ client_state | default('present') }}"
        paused: "{{ paused | default(omit) }}"
        rotate_password: "{{ rotate | default(false) }}"
        password_file: "{{ out }}/device.password"
      register: device
    - name: A read-only subscriber for the account
      isr.mqtt.mqtt_subscriber:
        label: e2e-listener
        password_file: "{{ out }}/subscriber.password"
      register: listener
      when: with_listener | default(false)   # once is enough; every task costs seconds
    - name: Hand the (password-free) results to the test
      ansible.builtin.copy:
        dest: "{{ out }}/result.json"
        content: "{{ {'client': device.client, 'subscriber': listener.subscriber | default(None)} | to_json }}"
"""

FLEET_PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Reconcile the fleet
      isr.mqtt.mqtt_fleet:
        clients: "{{ devices }}"
        rotate: "{{ rotate | default([]) }}"
      register: fleet
      no_log: true
    - name: Store new passwords vault-encrypted
      isr.mqtt.vault_credentials:
        path: "{{ store }}"
        credentials: "{{ fleet.credentials }}"
"""

ROLE_PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: isr.mqtt.fleet
      vars:
        fleet_devices: "{{ devices }}"
        fleet_store: "{{ store }}"
        fleet_rotate: "{{ rotate | default([]) }}"
"""


@pytest.fixture
def play(portal, run_playbook, tmp_path):
    """play(text, **extra_vars) runs a playbook against the emulator; fails the test on a non-zero rc."""
    (tmp_path / "vault-pass").write_text("e2e-vault-secret\n")

    def run(text, **extra):
        path = tmp_path / ("play-%s.yml" % uuid.uuid4().hex[:6])
        path.write_text(text)
        extra.setdefault("out", str(tmp_path))
        result = run_playbook(path, "-e", json.dumps(extra), "--vault-password-file", str(tmp_path / "vault-pass"),
                              env=portal.env())
        assert result.rc == 0, result
        return result

    return run


@pytest.fixture
def broker_at(portal):
    return portal.info["broker_host"], portal.info["broker_port"]


def vaulted_password(store, label, tmp_path):
    """Read one password back from the vaulted store with `ansible-vault decrypt`, as an operator would."""
    loader = type("Loader", (yaml.SafeLoader,), {})
    loader.add_constructor("!vault", lambda ldr, node: ldr.construct_scalar(node))
    ciphertext = yaml.load(Path(store).read_text(), Loader=loader)["isr_mqtt_credentials"][label]["password"]
    vault = str(Path(sys.executable).parent / "ansible-vault")
    done = subprocess.run([vault, "decrypt", "--vault-password-file", str(tmp_path / "vault-pass"), "--output", "-"],
                          input=ciphertext, capture_output=True, text=True, check=True)
    return done.stdout


def store_entry(store, label):
    loader = type("Loader", (yaml.SafeLoader,), {})
    loader.add_constructor("!vault", lambda ldr, node: "<vaulted>")
    return yaml.load(Path(store).read_text(), Loader=loader)["isr_mqtt_credentials"][label]


def test_mqtt_client_and_subscriber_modules_drive_the_broker(play, portal, broker_at, tmp_path, mqtt):
    host, port = broker_at
    label = "e2e-device"

    def step(**extra):
        play(CLIENT_PLAY, label=label, **extra)
        return json.loads((tmp_path / "result.json").read_text())

    result = step(with_listener=True)
    client_id, sub = result["client"]["client_id"], result["subscriber"]
    password = (tmp_path / "device.password").read_text()

    listener = mqtt.session(host, port, sub["username"], (tmp_path / "subscriber.password").read_text())
    assert listener.rc == mqtt.OK
    assert listener.subscribe(sub["subscribe_filter"]) == 1
    device = mqtt.session(host, port, client_id, password, client_id)
    assert device.rc == mqtt.OK
    topic = "%s/%s/telemetry/temp" % (portal.account_id, client_id)
    assert mqtt.publish_and_check(device, listener, topic) == (0, True)
    assert listener.publish(topic, b"x") == mqtt.NOT_AUTHORIZED

    step(paused=True)
    assert device.disconnected.wait(5)
    assert mqtt.connect(host, port, client_id, password, client_id) in mqtt.REFUSED
    step(paused=False)
    assert mqtt.connect(host, port, client_id, password, client_id) == mqtt.OK

    step(rotate=True)
    new = (tmp_path / "device.password").read_text()
    assert new != password
    assert mqtt.connect(host, port, client_id, password, client_id) in mqtt.REFUSED
    assert mqtt.connect(host, port, client_id, new, client_id) == mqtt.OK

    step(client_state="absent")
    assert mqtt.connect(host, port, client_id, new, client_id) in mqtt.REFUSED


def _vault_store_round(play, playbook, portal, broker_at, tmp_path, mqtt):
    """Provision two devices into a vaulted store, log in with the stored password, rotate one, log in again."""
    host, port = broker_at
    store = str(tmp_path / "credentials.yml")
    devices = [{"label": "e2e-fleet-1"}, {"label": "e2e-fleet-2", "paused": True}]
    play(playbook, devices=devices, store=store)
    assert "$ANSIBLE_VAULT" in Path(store).read_text()

    first = store_entry(store, "e2e-fleet-1")
    password = vaulted_password(store, "e2e-fleet-1", tmp_path)
    device = mqtt.session(host, port, first["username"], password, first["client_id"])
    assert device.rc == mqtt.OK
    assert device.publish("%s/%s/state/up" % (portal.account_id, first["client_id"]), b"1") in mqtt.PUBLISHED
    second = store_entry(store, "e2e-fleet-2")
    assert mqtt.connect(host, port, second["username"], vaulted_password(store, "e2e-fleet-2", tmp_path)) in mqtt.REFUSED  # paused

    play(playbook, devices=devices, store=store, rotate=["e2e-fleet-1"])
    assert device.disconnected.wait(5)
    new = vaulted_password(store, "e2e-fleet-1", tmp_path)
    assert new != password
    assert mqtt.connect(host, port, first["username"], password) in mqtt.REFUSED
    assert mqtt.connect(host, port, first["username"], new) == mqtt.OK


def test_fleet_module_and_vault_store_drive_the_broker(play, portal, broker_at, tmp_path, mqtt):
    _vault_store_round(play, FLEET_PLAY, portal, broker_at, tmp_path, mqtt)


@pytest.mark.skipif(not (REPO / "roles" / "fleet" / "tasks").is_dir(), reason="role isr.mqtt.fleet not written yet")
def test_fleet_role_and_vault_store_drive_the_broker(play, portal, broker_at, tmp_path, mqtt):
    _vault_store_round(play, ROLE_PLAY, portal, broker_at, tmp_path, mqtt)
