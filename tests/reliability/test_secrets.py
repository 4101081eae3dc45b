"""Secrets never leak: every password and token the emulator issued (serve.py --record-secrets) is searched for in
everything a representative run leaves behind.

The run (twice, both at -vvvv with --diff, ANSIBLE_LOG_PATH set, a jsonfile fact cache, gather_facts and a
cacheable set_fact): mqtt_client create + rotate (password_file, and returned under no_log then stored with
isr.mqtt.vault_credentials), mqtt_subscriber create (password_file), mqtt_fleet rotate, the fleet role over
hosts (per-host facts), and in the second run the role's recovery (a fresh store: every password recovered by
rotation). Searched: stdout, stderr, the log, the fact cache, the stores' plaintext, and every file the runs wrote
under their directory (ANSIBLE_HOME, local temp included) - except password_file outputs, which must hold a
password at mode 0600.
"""
import os
import stat
import subprocess
import sys

import pytest
from ansible.parsing.vault import VaultLib, VaultSecret

from support import Emulator, ansible_env, bin_path

VAULT = "secrets-test-vault"

PLAYBOOK = """
- name: Modules on the controller (first run only)
  hosts: "{{ 'localhost' if run_no | int == 1 else 'nowhere' }}"
  gather_facts: true
  connection: local
  module_defaults:
    group/isr.mqtt.portal:
      api_token: "{{ portal_token }}"
  tasks:
    - name: Create a client, password to a file
      isr.mqtt.mqtt_client:
        label: sec-c1
        password_file: "{{ out }}/c1.pw"
    - name: Create a client, password returned (no_log) and stored vaulted
      isr.mqtt.mqtt_client:
        label: sec-c2
        allow_subscribe: true
      register: c2
      no_log: true
    - name: Store it
      isr.mqtt.vault_credentials:
        path: "{{ modstore }}"
        credentials: "{{ {'sec-c2': {'client_id': c2.client.client_id, 'username': c2.client.username, 'password': c2.password}} if c2.password else {} }}"
    - name: Rotate, password to the file
      isr.mqtt.mqtt_client:
        label: sec-c1
        rotate_password: true
        password_file: "{{ out }}/c1.pw"
    - name: Rotate, password returned (no_log)
      isr.mqtt.mqtt_client:
        label: sec-c2
        rotate_password: true
      register: c2r
      no_log: true
    - name: Store the new one
      isr.mqtt.vault_credentials:
        path: "{{ modstore }}"
        credentials:
          sec-c2: {client_id: "{{ c2r.client.client_id }}", username: "{{ c2r.client.username }}", password: "{{ c2r.password }}"}
    - name: Pause it (a write that returns no password)
      isr.mqtt.mqtt_client:
        label: sec-c2
        paused: true
    - name: A read-only subscriber, password to a file
      isr.mqtt.mqtt_subscriber:
        label: sec-s1
        password_file: "{{ out }}/s1.pw"
    - name: Fleet module, result under no_log and stored
      isr.mqtt.mqtt_fleet:
        clients: [{label: sec-f1}, {label: sec-f2}]
      register: fl
      no_log: true
    - name: Store the fleet module's passwords
      isr.mqtt.vault_credentials:
        path: "{{ modstore }}"
        credentials: "{{ fl.credentials }}"
    - name: Fleet module, one rotation
      isr.mqtt.mqtt_fleet:
        clients: [{label: sec-f1}, {label: sec-f2}]
        rotate: [sec-f1]
      register: fl
      no_log: true
    - name: Store the rotated password
      isr.mqtt.vault_credentials:
        path: "{{ modstore }}"
        credentials: "{{ fl.credentials }}"
    - name: Cache something non-secret
      ansible.builtin.set_fact:
        sec_c2_client_id: "{{ c2.client.client_id if c2.client else '' }}"
        cacheable: true
    - name: Read the infos
      isr.mqtt.mqtt_client_info:
    - name: Read the subscribers
      isr.mqtt.mqtt_subscriber_info:

- name: The fleet role over hosts
  hosts: devices
  gather_facts: true
  roles:
    - role: isr.mqtt.fleet
      fleet_api_token: "{{ portal_token }}"
  post_tasks:
    - name: Use the fact as a device would (rendered only into a 0600 file)
      ansible.builtin.copy:
        content: "{{ mqtt_password }}"
        dest: "{{ out }}/{{ inventory_hostname }}.pw"
        mode: "0600"
      delegate_to: localhost
      no_log: true
"""


@pytest.fixture(scope="module")
def leaks(tmp_path_factory):
    """Run the representative playbook twice; returns {"passwords": [(where, secret)], "tokens": [...]}."""
    tmp_path = tmp_path_factory.mktemp("secrets")
    record = tmp_path / "issued-secrets.txt"
    emu_dir = tmp_path / "emulator"
    emu_dir.mkdir()
    emu = Emulator(emu_dir, extra_args=["--record-secrets", str(record)]).start()
    try:
        return _run(tmp_path, emu, record)
    finally:
        emu.stop()


def test_no_password_anywhere(leaks):
    assert leaks["passwords"] == []


def test_no_token_anywhere(leaks):
    assert leaks["tokens"] == []


def _run(tmp_path, emu, record):
    run_dir = tmp_path / "run"
    out = run_dir / "out"
    home = run_dir / "ansible-home"
    for path in (out, home, run_dir / "store", run_dir / "facts"):
        path.mkdir(parents=True)
    (run_dir / "vault-pass").write_text(VAULT + "\n")
    # The token as a vaulted variable, not ISR_PORTAL_TOKEN: gathered facts (ansible_env) and a fact cache would
    # copy the controller's environment, so that is how docs/awx.md and the README tell fact-caching users to pass it.
    vault = VaultLib([("fleet", VaultSecret(VAULT.encode()))])
    (run_dir / "token.yml").write_bytes(vault.encrypt("portal_token: %s\n" % emu.token, vault.secrets[0][1], vault_id="fleet"))
    (run_dir / "site.yml").write_text(PLAYBOOK)
    (run_dir / "hosts.ini").write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n[devices]\n" % sys.executable
                                       + "".join("sec-h%d\n" % i for i in range(4))
                                       + "[devices:vars]\nansible_connection=local\nansible_python_interpreter=%s\n"
                                       % sys.executable)
    env = ansible_env(dict(
        {"ISR_PORTAL_URL": emu.url}, ANSIBLE_LOG_PATH=str(run_dir / "ansible.log"), ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"), ANSIBLE_REMOTE_TEMP=str(home / "remote-tmp"),
        ANSIBLE_CACHE_PLUGIN="ansible.builtin.jsonfile", ANSIBLE_CACHE_PLUGIN_CONNECTION=str(run_dir / "facts"),
        ANSIBLE_GATHERING="smart"))
    outputs = []
    for run_no, store in ((1, "fleet.yml"), (2, "fleet-recovered.yml")):  # run 2: a fresh store -> recovery
        if run_no == 2:  # the old store set aside (a second store that keeps the same labels is refused)
            os.rename(str(run_dir / "store" / "fleet.yml"), str(run_dir / "store" / "fleet.yml.old"))
        cmd = [bin_path("ansible-playbook"), "-i", str(run_dir / "hosts.ini"), str(run_dir / "site.yml"),
               "-vvvv", "--diff", "--vault-id", "fleet@%s" % (run_dir / "vault-pass"), "-e", "@%s" % (run_dir / "token.yml"),
               "-e", "out=%s modstore=%s fleet_store=%s run_no=%d" % (out, run_dir / "store" / "modules.yml",
                                                                      run_dir / "store" / store, run_no)]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=str(run_dir), env=env, timeout=600)
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
        outputs.append(("run %d stdout" % run_no, done.stdout))
        outputs.append(("run %d stderr" % run_no, done.stderr))
    os.rename(str(run_dir / "store" / "fleet.yml.old"), str(run_dir / "store" / "fleet.yml"))  # searched below

    secrets = [line.strip() for line in record.read_text().splitlines() if line.strip()]
    passwords = [s for s in secrets if not s.startswith("isr_mqtt_rest_")]
    # c1 and c2 create+rotate, s1, f1/f2 create + f1 rotate, 4 hosts + 4 recoveries; + the token
    assert len(passwords) >= 16 and any(s.startswith("isr_mqtt_rest_") for s in secrets), secrets
    assert "fleet-recovered" in "".join(o for dummy, o in outputs)
    assert "'rotated': 4" in outputs[2][1], "run 2 did not recover the 4 hosts by rotation"

    password_files = {out / "c1.pw", out / "s1.pw"} | {out / ("sec-h%d.pw" % i) for i in range(4)}
    for path in password_files:
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
        assert path.read_text() in secrets, path  # it holds a password the portal issued
    assert (run_dir / "ansible.log").stat().st_size > 0
    assert any((run_dir / "facts").iterdir()), "the fact cache is empty: the test would prove nothing"

    texts = list(outputs)
    files = 0
    for root, dummy, names in os.walk(run_dir):
        for name in names:
            path = os.path.join(root, name)
            if path in {str(p) for p in password_files} or name == "vault-pass":
                continue
            files += 1
            with open(path, "rb") as handle:
                texts.append((path, handle.read().decode("utf-8", "replace")))
    found = sorted(set((where, secret[:6] + "...") for where, text in texts for secret in secrets if secret in text))
    print("searched %d outputs and %d files for %d secrets (%d passwords): %d leaks: %s"
          % (len(outputs), files, len(secrets), len(passwords), len(found), found))
    # The stores hold every password, vaulted.
    for store in ("fleet.yml", "fleet-recovered.yml", "modules.yml"):
        text = (run_dir / "store" / store).read_text()
        assert "$ANSIBLE_VAULT" in text and stat.S_IMODE((run_dir / "store" / store).stat().st_mode) == 0o600
    cached = "".join(p.read_text() for p in (run_dir / "facts").iterdir())
    assert "$ANSIBLE_VAULT" in cached  # the hosts' mqtt_password facts are cached as ciphertext
    return {"passwords": [f for f in found if not f[1].startswith("isr_mq")],
            "tokens": [f for f in found if f[1].startswith("isr_mq")]}


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-s"])
