"""isr.mqtt.device with device_format mosquitto_bridge, end to end.

One device host (local connection) gets a Mosquitto conf.d snippet from the role; a real, local Mosquitto started
with `include_dir` of that directory bridges to the emulator's broker with the device's credential. Mosquitto 2.0
has no config-test flag, so the proof that it parses the snippet is that it runs with it: the bridge reports itself
connected on the local `$SYS/broker/connection/<client id>/state`, and a message published to the local broker reaches
a read-only subscriber of the portal's broker. Also: file mode 0640, owner mosquitto when that user exists and the
run is root, no `.masked` copy on the device (the masked render is on the controller), a rerun changes nothing.
"""
import json
import os
import pwd
import queue
import socket
import stat
import subprocess
import sys
import time
import uuid

from emulator.broker import find_mosquitto
from support import ansible_env, bin_path

VAULT = "bridge-vault-secret"
MARKER = "password hidden by isr.mqtt.device"
PLAYBOOK = """
- name: A read-only subscriber for the test
  hosts: "{{ 'localhost' if listener | default(false) | bool else 'nowhere' }}"
  connection: local
  gather_facts: false
  tasks:
    - name: Create it, password to a 0600 file
      isr.mqtt.mqtt_subscriber:
        label: bridge-test-listener
        password_file: "{{ out }}/listener.pass"
      register: listener_login
    - name: Its user name and filter for the test
      ansible.builtin.copy:
        content: "{{ listener_login.subscriber | to_json }}"
        dest: "{{ out }}/listener.json"
        mode: "0600"

- name: Provision and deliver a bridge
  hosts: devices
  gather_facts: false
  roles:
    - role: isr.mqtt.fleet
    - role: isr.mqtt.device
      device_format: mosquitto_bridge
      device_bridge_service: ""      # no systemd here: the test starts Mosquitto itself
      device_broker_host: 127.0.0.1
      device_broker_port: "{{ broker_port | int }}"
      device_broker_tls: false
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(tmp_path, portal, **evars):
    env = ansible_env(dict(portal.env(), ANSIBLE_HOME=str(tmp_path / "ansible-home")))
    cmd = [bin_path("ansible-playbook"), "-i", str(tmp_path / "hosts.ini"), str(tmp_path / "site.yml"), "--diff",
           "--vault-id", "fleet@%s" % (tmp_path / "vault-pass"),
           "-e", json.dumps(dict(evars, out=str(tmp_path), broker_port=portal.info["broker_port"]))]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    return done.stdout


def read_bridge(path):
    lines = [line.split(None, 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict((key, [v for k, v in lines if k == key]) for key, dummy in lines)


def test_the_bridge_snippet_runs_in_a_real_mosquitto_and_forwards_to_the_portal(portal, tmp_path, mqtt):
    conf_d = tmp_path / "device" / "etc" / "mosquitto" / "conf.d"
    snippet = conf_d / "isr-mqtt-bridge.conf"
    (tmp_path / "vault-pass").write_text(VAULT + "\n")
    (tmp_path / "site.yml").write_text(PLAYBOOK)
    (tmp_path / "hosts.ini").write_text(
        "[devices]\nbridge-01 device_path=%s\n[devices:vars]\nansible_connection=local\nansible_python_interpreter=%s\n"
        "fleet_store=%s\n" % (snippet, sys.executable, tmp_path / "credentials.yml"))

    first = run(tmp_path, portal, listener=True)
    assert MARKER in first                                            # --diff shows the masked render

    # The file: mode 0640, Mosquitto's own when it can be (root, and the user exists), else the connecting user's.
    info = snippet.stat()
    assert stat.S_IMODE(info.st_mode) == 0o640
    try:
        expected_owner = pwd.getpwnam("mosquitto").pw_uid if os.geteuid() == 0 else os.geteuid()
    except KeyError:
        expected_owner = os.geteuid()
    assert info.st_uid == expected_owner
    assert sorted(os.listdir(str(conf_d))) == ["isr-mqtt-bridge.conf"]          # no .masked copy on the device
    masked = tmp_path / "isr_mqtt_device_masked" / "bridge-01" / str(snippet).lstrip("/")
    assert MARKER in masked.read_text() and stat.S_IMODE(masked.stat().st_mode) == 0o600

    bridge = read_bridge(snippet)
    assert bridge["connection"] == ["isr-mqtt"]
    assert bridge["address"] == ["127.0.0.1:%d" % portal.info["broker_port"]]
    username, password = bridge["remote_username"][0], bridge["remote_password"][0]
    assert bridge["remote_clientid"] == [username] and MARKER not in password
    assert len(bridge["topic"]) == 1 and bridge["topic"][0].endswith("/# out 1")
    assert "bridge_cafile" not in bridge and "bridge_capath" not in bridge     # no TLS asked for
    assert password not in masked.read_text() and password not in first

    # A real Mosquitto with the snippet included; it bridges to the emulator's broker.
    local_port = free_port()
    (tmp_path / "mosquitto.conf").write_text(
        "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stdout\nlog_type all\ninclude_dir %s\n" % (local_port, conf_d))
    log = open(str(tmp_path / "mosquitto.log"), "wb")
    local = subprocess.Popen([find_mosquitto(), "-c", str(tmp_path / "mosquitto.conf")], stdout=log, stderr=subprocess.STDOUT)
    try:
        listener = json.loads((tmp_path / "listener.json").read_text())
        portal_side = mqtt.session("127.0.0.1", portal.info["broker_port"], listener["username"],
                                   (tmp_path / "listener.pass").read_text())
        assert portal_side.subscribe(listener["subscribe_filter"]) in (0, 1, 2)
        device_side = None
        deadline = time.monotonic() + 20
        while device_side is None or device_side.rc != mqtt.OK:      # Mosquitto needs a moment to listen
            assert local.poll() is None, "mosquitto refused the snippet:\n" + (tmp_path / "mosquitto.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "mosquitto.log").read_text()
            time.sleep(0.2)
            try:
                device_side = mqtt.session("127.0.0.1", local_port, None, None)
            except OSError:
                device_side = None
        device_side.subscribe("$SYS/broker/connection/%s/state" % username)  # retained; 1 once the bridge is connected
        state = None
        while state != b"1" and time.monotonic() < deadline:
            try:
                state = device_side.messages.get(timeout=1).payload
            except queue.Empty:
                pass
        assert state == b"1", "the bridge did not connect:\n" + (tmp_path / "mosquitto.log").read_text()

        topic = bridge["topic"][0].split()[0].replace("#", "from-the-bridge")
        payload = uuid.uuid4().hex.encode()
        assert device_side.publish(topic, payload) in mqtt.PUBLISHED
        assert portal_side.received(topic, payload, timeout=10), (tmp_path / "mosquitto.log").read_text()
    finally:
        local.terminate()
        local.wait(15)
        log.close()
        print((tmp_path / "mosquitto.log").read_text())  # shown when the test fails

    rerun = run(tmp_path, portal)
    assert "changed=0" in rerun and "failed=0" in rerun
