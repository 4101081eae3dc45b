"""The last mile, end to end: isr.mqtt.fleet -> isr.mqtt.device -> the device logs in to the real Mosquitto.

20 device hosts (local connection, one directory each; env, json (with a validate hook), mosquitto and a
user template), a real emulator with
the broker behind it. One scenario (module-scoped, it costs several ansible-playbook runs), then one test per claim:

  1. provision + deliver + verify (publish): each file 0600 in a 0700 directory and parses; a paho client per
     device logs in with exactly what the file says and publishes; a read-only subscriber receives all 20;
  2. rerun: 0 changed on every host;
  3. check mode with --diff after two devices lost their files: reports them, shows the masked file, writes nothing;
  4. rotate 5: 5 files changed, 5 handlers fired, old passwords refused by Mosquitto, new ones accepted; the time
     each device was offline (rotation took its session away -> new file on the device) is measured;
  5. mqtt_login_check (in the rotation run): ok, bad_credentials for a wrong password, unreachable for a closed port;
  6. a leak scan of everything those runs printed or left on disk (-vvvv --diff, check mode, log file, fact cache).
"""
import json
import os
import shlex
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from support import Emulator, ansible_env, bin_path

VAULT = "device-role-vault-secret"
HOSTS = ["dev-%02d" % i for i in range(20)]
FORMATS = dict([(h, "env") for h in HOSTS[:13]] + [("dev-13", "template")] + [(h, "json") for h in HOSTS[14:17]]
               + [(h, "mosquitto_client") for h in HOSTS[17:19]] + [("dev-19", "mosquitto")])  # the deprecated name
NAMES = {"env": "mqtt.env", "json": "mqtt.json", "mosquitto": "mosquitto_pub", "mosquitto_client": "mosquitto_pub",
         "template": "device.conf"}
TEMPLATE = """# {{ device_mqtt.label }}: a user template
host={{ device_mqtt.host }}
port={{ device_mqtt.port }}
tls={{ device_mqtt.tls | lower }}
client_id={{ device_mqtt.client_id }}
username={{ device_mqtt.username }}
password={{ device_mqtt.password }}
publish_topic={{ device_mqtt.publish_topic }}
"""
ROTATED = ["dev-01", "dev-13", "dev-14", "dev-17", "dev-19"]   # every format among them
LOST = ["dev-03", "dev-15"]                                    # files removed before the check-mode run
MARKER = "password hidden by isr.mqtt.device"

PLAYBOOK = """
- name: A read-only subscriber for the test (first run only)
  hosts: "{{ 'localhost' if listener | default(false) | bool else 'nowhere' }}"
  connection: local
  gather_facts: false
  tasks:
    - name: Create it, password to a 0600 file
      isr.mqtt.mqtt_subscriber:
        label: device-test-listener
        password_file: "{{ out }}/listener.pass"
      register: listener_login
    - name: Its user name and filter for the test
      ansible.builtin.copy:
        content: "{{ listener_login.subscriber | to_json }}"
        dest: "{{ out }}/listener.json"
        mode: "0600"

- name: Provision and deliver
  hosts: devices
  gather_facts: false
  roles:
    - role: isr.mqtt.fleet
      fleet_rotate: "{{ rotate | default([]) }}"
    - role: isr.mqtt.device
      device_broker_host: 127.0.0.1
      device_broker_port: "{{ broker_port | int }}"
      device_broker_tls: false
      device_notify: [Record that the credential changed]
      device_verify: true
      device_verify_action: publish
  handlers:
    - name: Record that the credential changed
      ansible.builtin.shell: "echo {{ run_id }} >> {{ out }}/{{ inventory_hostname }}.handler"
      changed_when: true
      delegate_to: localhost

- name: mqtt_login_check against the same broker (rotation run only)
  hosts: "{{ 'localhost' if login_checks | default(false) | bool else 'nowhere' }}"
  connection: local
  gather_facts: false
  tasks:
    - name: Read dev-00's credential from the store (the facts may have passed through the fact cache)
      isr.mqtt.vault_credentials:
        path: "{{ store }}"
      register: stored
    - name: A good, a wrong and an unreachable login
      isr.mqtt.mqtt_login_check:
        host: 127.0.0.1
        port: "{{ item.port }}"
        timeout: 3
        fail_on_error: false
        credentials:
          - label: "{{ item.label }}"
            username: "{{ stored.credentials['dev-00'].username }}"
            password: "{{ stored.credentials['dev-00'].password if item.good else 'not-the-password' }}"
      loop:
        - {label: good, port: "{{ broker_port }}", good: true}
        - {label: wrong, port: "{{ broker_port }}", good: false}
        - {label: closed, port: "{{ closed_port }}", good: true}
      register: checks
    - name: Hand the results to the test
      ansible.builtin.copy:
        content: "{{ checks.results | map(attribute='results') | flatten | to_json }}"
        dest: "{{ out }}/login-checks.json"
        mode: "0600"
"""


def parse(path, fmt):
    """The connection settings as a device would read them from its file."""
    text = path.read_text()
    if fmt == "json":
        return json.loads(text)
    values = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if fmt == "template":
            key, dummy, value = line.partition("=")
            values[key] = value
        elif fmt == "env":
            key, dummy, value = line.partition("=")
            values[key[len("MQTT_"):].lower()] = shlex.split(value)[0] if value else ""
        else:  # mosquitto options: "-X value"
            option, dummy, value = line.partition(" ")
            values[option] = value
    if fmt in ("mosquitto", "mosquitto_client"):
        return {"host": values["-h"], "port": int(values["-p"]), "client_id": values["-i"], "username": values["-u"],
                "password": values["-P"], "tls": False}
    values["port"] = int(values["port"])
    return values


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]   # nobody listens once the socket is closed


class Scenario:
    def __init__(self, root, emu, record):
        self.root, self.emu, self.record = root, emu, record
        self.out = root / "out"
        self.home = root / "ansible-home"
        for path in (self.out, self.home, root / "facts"):
            path.mkdir(parents=True)
        (root / "vault-pass").write_text(VAULT + "\n")
        (root / "site.yml").write_text(PLAYBOOK)
        (root / "device.conf.j2").write_text(TEMPLATE)
        self.store = root / "credentials.yml"
        lines = ["[devices]"]
        for host in HOSTS:
            line = "%s device_format=%s device_path=%s" % (host, FORMATS[host], self.file(host))
            if FORMATS[host] == "template":
                line += " device_template=%s" % (root / "device.conf.j2")
            if FORMATS[host] == "json":  # the validate hook: a file that is not JSON never replaces the old one
                line += ' device_validate="%s -m json.tool %%s"' % sys.executable
            lines.append(line)
        lines += ["[devices:vars]", "ansible_connection=local", "ansible_python_interpreter=%s" % sys.executable,
                  "[all:vars]", "fleet_store=%s" % self.store]
        (root / "hosts.ini").write_text("\n".join(lines) + "\n")
        self.outputs = []      # (what, text) of every run
        self.timings = {}

    def file(self, host):
        return self.root / "hosts" / host / "etc" / "isr-mqtt" / NAMES[FORMATS[host]]

    def run(self, what, *args, **evars):
        evars = dict(evars, out=str(self.out), store=str(self.store), broker_port=self.emu.info["broker_port"], run_id=what)
        env = ansible_env(dict(
            self.emu.env(), ANSIBLE_LOG_PATH=str(self.root / "ansible.log"), ANSIBLE_HOME=str(self.home),
            ANSIBLE_LOCAL_TEMP=str(self.home / "tmp"), ANSIBLE_REMOTE_TEMP=str(self.home / "remote-tmp"),
            ANSIBLE_CACHE_PLUGIN="ansible.builtin.jsonfile", ANSIBLE_CACHE_PLUGIN_CONNECTION=str(self.root / "facts"),
            ANSIBLE_FORKS="10", ANSIBLE_PIPELINING="1"))
        cmd = [bin_path("ansible-playbook"), "-i", str(self.root / "hosts.ini"), str(self.root / "site.yml"),
               "-vvvv", "--diff", "--vault-id", "fleet@%s" % (self.root / "vault-pass"), "-e", json.dumps(evars)] + list(args)
        started = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=str(self.root), env=env, timeout=900, check=False)
        self.timings[what] = round(time.monotonic() - started, 1)
        self.outputs += [(what + " stdout", done.stdout), (what + " stderr", done.stderr)]
        assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-3000:]
        return done.stdout

    def store_entries(self):
        vault = VaultLib([("fleet", VaultSecret(VAULT.encode()))])
        loader = type("Loader", (yaml.SafeLoader,), {})
        loader.add_constructor("!vault", lambda ldr, node: vault.decrypt(ldr.construct_scalar(node)).decode())
        return yaml.load(self.store.read_text(), Loader=loader)["isr_mqtt_credentials"]  # nosec: SafeLoader + !vault

    def delivered(self):
        return dict((host, parse(self.file(host), FORMATS[host])) for host in HOSTS)

    def handler_runs(self):
        return dict((host, (self.out / (host + ".handler")).read_text().split()
                     if (self.out / (host + ".handler")).exists() else []) for host in HOSTS)


def recap(stdout):
    """{host: {ok: n, changed: n, failed: n, ...}} from PLAY RECAP."""
    counts = {}
    for line in stdout.split("PLAY RECAP", 1)[1].splitlines():
        if ":" in line:
            host, dummy, rest = line.partition(":")
            counts[host.strip()] = dict((k, int(v)) for k, v in (item.split("=") for item in rest.split()))
    return counts


class OfflineWatch(threading.Thread):
    """A device online with its old password: when the rotation takes its session away, wait for the new file."""

    def __init__(self, mqtt, scenario, host):
        super().__init__(daemon=True)
        self.scenario, self.host = scenario, host
        old = scenario.delivered()[host]
        self.old_text = scenario.file(host).read_text()
        self.session = mqtt.session(old["host"], old["port"], old["username"], old["password"], old["client_id"])
        assert self.session.rc == mqtt.OK
        self.offline_at = self.delivered_at = None
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set() and self.delivered_at is None:
            if self.offline_at is None and self.session.disconnected.is_set():
                self.offline_at = time.monotonic()
            if self.offline_at is not None and self.scenario.file(self.host).read_text() != self.old_text:
                self.delivered_at = time.monotonic()
            time.sleep(0.01)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    from e2e.conftest import _missing
    missing = _missing()
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("END-TO-END BROKER TESTS NOT RUN: %s" % missing)
        pytest.skip("END-TO-END BROKER TESTS NOT RUN: %s" % missing)
    root = tmp_path_factory.mktemp("device-role")
    record = root / "issued-secrets.txt"
    (root / "emulator").mkdir()
    emu = Emulator(root / "emulator", broker=True, extra_args=["--record-secrets", str(record)]).start()
    from e2e.conftest import Mqtt
    mqtt = Mqtt()
    s = Scenario(root / "run", emu, record)
    s.mqtt = mqtt
    try:
        _play(s, mqtt)
        yield s
    finally:
        mqtt.close()
        emu.stop()


def _play(s, mqtt):
    """Run every step once and keep what the tests look at."""
    s.first = s.run("first", listener=True)
    s.first_delivered = s.delivered()
    s.first_store = s.store_entries()
    s.first_modes = dict((h, (stat.S_IMODE(s.file(h).stat().st_mode), stat.S_IMODE(s.file(h).parent.stat().st_mode)))
                         for h in HOSTS)
    listener = json.loads((s.out / "listener.json").read_text())
    port = s.emu.info["broker_port"]
    s.listener = mqtt.session("127.0.0.1", port, listener["username"], (s.out / "listener.pass").read_text())
    s.listener_suback = s.listener.subscribe(listener["subscribe_filter"])
    s.published = {}
    for host, cred in s.first_delivered.items():
        device = mqtt.session(cred["host"], cred["port"], cred["username"], cred["password"], cred["client_id"])
        payload = ("%s %s" % (host, uuid.uuid4().hex)).encode()
        topic = cred["publish_topic"].rstrip("/") + "/telemetry" if "publish_topic" in cred else None
        if topic is None:  # the mosquitto options file carries no topic: the store's, as the device's app knows it
            topic = s.first_store[host]["publish_topic"].rstrip("/") + "/telemetry"
        s.published[host] = (device.rc, device.publish(topic, payload) if device.rc == mqtt.OK else None, topic, payload)
        device.close()
    s.received = {}
    deadline = time.monotonic() + 10
    while len(s.received) < len(HOSTS) and time.monotonic() < deadline:
        try:
            msg = s.listener.messages.get(timeout=0.5)
        except Exception:  # queue.Empty
            continue
        s.received[msg.payload.split()[0].decode()] = (msg.topic, msg.payload)

    s.rerun = s.run("rerun")

    kept = {}
    for host in LOST:
        kept[s.file(host)] = s.file(host).read_text()
        s.file(host).unlink()
    s.check = s.run("check", "--check")
    s.lost_after_check = [h for h in LOST if s.file(h).exists()]
    for path, text in kept.items():  # put them back as they were (a run to restore them costs a minute)
        path.write_text(text)
        path.chmod(0o600)

    before_texts = dict((h, s.file(h).read_text()) for h in HOSTS)
    s.handlers_before = s.handler_runs()
    watches = [OfflineWatch(mqtt, s, host) for host in ROTATED]
    for watch in watches:
        watch.start()
    s.rotate = s.run("rotate", rotate=ROTATED, login_checks=True, closed_port=closed_port())
    for watch in watches:
        watch.join(timeout=10)
        watch.stop.set()
    s.offline = dict((w.host, None if None in (w.offline_at, w.delivered_at) else round(w.delivered_at - w.offline_at, 2))
                     for w in watches)
    s.changed_files = sorted(h for h in HOSTS if s.file(h).read_text() != before_texts[h])
    s.rotated_delivered = s.delivered()
    s.old_logins = dict((h, mqtt.connect("127.0.0.1", port, s.first_delivered[h]["username"],
                                         s.first_delivered[h]["password"])) for h in ROTATED)
    s.new_logins = dict((h, mqtt.connect("127.0.0.1", port, s.rotated_delivered[h]["username"],
                                         s.rotated_delivered[h]["password"], s.rotated_delivered[h]["client_id"]))
                        for h in ROTATED)
    s.login_checks = json.loads((s.out / "login-checks.json").read_text())
    print("device role scenario: run times %s; offline between rotation and delivery (s): %s"
          % (s.timings, s.offline))


def test_every_device_gets_a_0600_file_that_parses_and_matches_the_store(scenario):
    assert scenario.first_modes == dict((h, (0o600, 0o700)) for h in HOSTS)
    for host, cred in scenario.first_delivered.items():
        stored = scenario.first_store[host]
        assert cred["client_id"] == stored["client_id"], host      # the portal's client id, as the portal expects
        assert (cred["username"], cred["password"]) == (stored["username"], stored["password"]), host
        assert (cred["host"], cred["port"], cred["tls"] in (False, "false")) == ("127.0.0.1", scenario.emu.info["broker_port"], True)
    assert all(runs[:1] == ["first"] for runs in scenario.handlers_before.values())   # a new file fires too


def test_each_device_logs_in_with_its_file_and_the_listener_gets_every_message(scenario):
    assert scenario.listener_suback in (0, 1)
    refused = dict((h, p[:2]) for h, p in scenario.published.items() if p[0] != 0 or p[1] not in (0, 16))
    assert refused == {}
    assert sorted(scenario.received) == HOSTS
    for host, (topic, payload) in scenario.received.items():
        assert (topic, payload) == scenario.published[host][2:], host


def test_the_role_verified_every_login_by_publishing(scenario):
    assert scenario.first.count("logged in and published to") >= len(HOSTS)
    assert all(counts["failed"] == 0 for counts in recap(scenario.first).values())


def test_rerun_changes_nothing(scenario):
    counts = recap(scenario.rerun)
    assert set(HOSTS) <= set(counts)
    assert dict((h, c["changed"]) for h, c in counts.items()) == dict((h, 0) for h in counts)


def test_check_mode_reports_the_lost_files_masked_and_writes_nothing(scenario):
    counts = recap(scenario.check)
    assert scenario.lost_after_check == []
    assert sorted(h for h in HOSTS if counts[h]["changed"]) == LOST
    assert scenario.check.count(MARKER) >= len(LOST)           # the masked file in the diff
    assert "MQTT_PASSWORD='**%s" % MARKER in scenario.check     # dev-03 (env): the password line, masked


def test_rotating_5_changes_5_files_fires_5_handlers_and_locks_out_the_old_passwords(scenario):
    assert scenario.changed_files == sorted(ROTATED)
    handlers = scenario.handler_runs()
    fired = sorted(h for h in HOSTS if handlers[h][len(scenario.handlers_before[h]):] == ["rotate"])
    assert fired == sorted(ROTATED)
    assert all(handlers[h] == scenario.handlers_before[h] for h in HOSTS if h not in ROTATED)
    assert all(rc in (134, 135) for rc in scenario.old_logins.values()), scenario.old_logins
    assert scenario.new_logins == dict((h, 0) for h in ROTATED)
    for host in ROTATED:
        assert scenario.rotated_delivered[host]["password"] != scenario.first_delivered[host]["password"]
        assert scenario.rotated_delivered[host]["client_id"] == scenario.first_delivered[host]["client_id"]
    assert scenario.rotate.count(MARKER) >= 2 * len(ROTATED)   # masked before and after in the diff
    assert all(seconds is not None and seconds > 0 for seconds in scenario.offline.values()), scenario.offline


def test_login_check_reports_ok_bad_credentials_and_unreachable(scenario):
    statuses = dict((r["label"], r["status"]) for r in scenario.login_checks)
    assert statuses == {"good": "ok", "wrong": "bad_credentials", "closed": "unreachable"}


def test_no_password_in_any_output_or_file(scenario):
    secrets = [line.strip() for line in scenario.record.read_text().splitlines() if line.strip()]
    passwords = [s for s in secrets if not s.startswith("isr_mqtt_rest_")]
    assert len(passwords) >= len(HOSTS) + len(ROTATED) + 1     # devices, rotations, the listener
    credential_files = set(str(scenario.file(h)) for h in HOSTS) | {str(scenario.out / "listener.pass")}
    texts = list(scenario.outputs)
    for dirpath, dummy, names in os.walk(scenario.root):
        for name in names:
            path = os.path.join(dirpath, name)
            if path not in credential_files and name != "vault-pass":
                with open(path, "rb") as handle:
                    texts.append((path, handle.read().decode("utf-8", "replace")))
    masked = [where for where, text in texts if "isr_mqtt_device_masked" in where and MARKER in text]
    assert len(masked) == len(HOSTS)                             # the masked renders stay on the controller...
    assert not [w for w, t in texts if w.endswith(".masked")]    # ...and none lies on a device
    assert any("facts" in where for where, dummy in texts), "the fact cache is empty: the scan would prove less"
    leaks = sorted(set((where, secret[:6] + "...") for where, text in texts for secret in passwords if secret in text))
    print("scanned %d outputs and files for %d passwords: %d leaks" % (len(texts), len(passwords), len(leaks)))
    assert leaks == []


def test_rotation_playbook_rotates_delivers_and_reports_the_devices_that_still_fail(portal, tmp_path, mqtt):
    """playbooks/rotate_devices.yml as a user runs it: dev-a rotated; dev-b paused on the portal, so its login fails."""
    (tmp_path / "vault-pass").write_text(VAULT + "\n")
    store = tmp_path / "credentials.yml"
    (tmp_path / "hosts.ini").write_text(
        "[devices]\ndev-a device_path=%s/a/mqtt.json\ndev-b device_path=%s/b/mqtt.json fleet_paused=true\n"
        "[devices:vars]\nansible_connection=local\nansible_python_interpreter=%s\nfleet_store=%s\n"
        "device_format=json\ndevice_broker_host=127.0.0.1\ndevice_broker_port=%d\ndevice_broker_tls=false\n"
        % (tmp_path, tmp_path, sys.executable, store, portal.info["broker_port"]))

    def rotate(labels):
        cmd = [bin_path("ansible-playbook"), "-i", str(tmp_path / "hosts.ini"), "isr.mqtt.rotate_devices",
               "--vault-id", "fleet@%s" % (tmp_path / "vault-pass")] + (["-e", json.dumps({"rotate_labels": labels})] if labels is not None else [])
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path), env=ansible_env(portal.env()),
                              timeout=600, check=False)
        return done.returncode, done.stdout + done.stderr

    rc, out = rotate(None)
    assert rc != 0 and "set rotate_labels" in out and not store.exists()     # nothing done without a batch
    rc, out = rotate(["dev-a"])                                               # provisions both (dev-a: new anyway)
    assert rc != 0 and "1 of 2 devices fail to log in: dev-b bad_credentials" in out, out[-4000:]
    old = json.loads((tmp_path / "a" / "mqtt.json").read_text())
    rc, out = rotate(["dev-a"])
    new = json.loads((tmp_path / "a" / "mqtt.json").read_text())
    assert rc != 0 and "rotated 1; 1 of 2 devices fail to log in: dev-b bad_credentials" in out, out[-4000:]
    assert new["client_id"] == old["client_id"] and new["password"] != old["password"]
    port = portal.info["broker_port"]
    assert mqtt.connect("127.0.0.1", port, old["username"], old["password"]) in mqtt.REFUSED
    assert mqtt.connect("127.0.0.1", port, new["username"], new["password"], new["client_id"]) == mqtt.OK
    paused = json.loads((tmp_path / "b" / "mqtt.json").read_text())          # delivered, refused while paused
    assert mqtt.connect("127.0.0.1", port, paused["username"], paused["password"]) in mqtt.REFUSED
    rc, out = rotate([])                                                      # an empty batch: deliver and check again
    assert rc != 0 and "rotated 0; 1 of 2 devices fail to log in: dev-b bad_credentials" in out, out[-4000:]
    assert json.loads((tmp_path / "a" / "mqtt.json").read_text()) == new     # nothing rotated
