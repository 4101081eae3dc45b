"""Secrets never leak: every password and token the emulator issued (serve.py --record-secrets) is searched for in
everything the runs leave behind.

A secret leaves a module run vault-encrypted, into a 0600 file, or to a task that said no_log. Four runs:

1. `-vvvv --diff`, default stdout callback plus the junit and tree callbacks, ANSIBLE_LOG_PATH, a jsonfile fact
   cache, gather_facts and a cacheable set_fact: the modules with password_file and under no_log (then stored with
   isr.mqtt.vault_credentials), the careless play, and the fleet role over hosts (per-host facts, then
   `debug: var=_fleet_result`);
2. the `minimal` callback at verbosity 0: the careless play and the role's recovery (a fresh store: every password
   recovered by rotation);
3. the `oneline` callback at `-v`: the careless play;
4. a JSON stdout callback (tests/reliability/callback_plugins/json_results.py, what ansible.posix.json does): the
   careless play.

The careless play has no no_log anywhere and a token ending in a newline: mqtt_client create and rotate,
mqtt_subscriber create, mqtt_fleet create (stored as it is), a create whose pause then fails (fail_after_creates),
a 500 page that echoes the Authorization header after 300 characters, assertions that every registered password
is a vaulted value, and the vaulted values used in templates (rendered into 0600 files under no_log: the user decrypts on purpose).

Searched: stdout, stderr, the log, the fact cache, junit and tree files, the stores, and every file the runs wrote
under their directory (ANSIBLE_HOME, local temp included) - except the password files, which must hold a password
at mode 0600. A fifth run without a vault secret must change nothing that would return a password.

A sixth run (issue 24, fixture debug_run) sets ANSIBLE_DEBUG=1 and ANSIBLE_KEEP_REMOTE_FILES=1, with the token as a
module option: the modules, the fleet role with debug dumps of its registered results and the hosts' variables, and
mqtt_login_check against the broker; it also reads the main process's core limit.
"""
import os
import re
import resource
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.parsing.vault import VaultLib, VaultSecret

from support import Emulator, ansible_env, bin_path

VAULT = "secrets-test-vault"
HERE = Path(__file__).resolve().parent

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

- name: A careless user - no no_log anywhere - and a token read with its trailing newline
  hosts: localhost
  gather_facts: false
  connection: local
  module_defaults:
    group/isr.mqtt.portal:
      api_token: "{{ portal_token }}\n"
  vars:
    care: "care{{ run_no }}"
  tasks:
    - name: Create a client
      isr.mqtt.mqtt_client:
        label: "{{ care }}-c"
      register: cc
    - name: Rotate its password
      isr.mqtt.mqtt_client:
        label: "{{ care }}-c"
        rotate_password: true
      register: ccr
    - name: Create a read-only subscriber
      isr.mqtt.mqtt_subscriber:
        label: "{{ care }}-s"
      register: cs
    - name: Create a fleet
      isr.mqtt.mqtt_fleet:
        clients: [{label: "{{ care }}-f1"}, {label: "{{ care }}-f2"}]
      register: cf
    - name: Store the fleet's passwords as they are (already vaulted)
      isr.mqtt.vault_credentials:
        path: "{{ carestore }}"
        credentials: "{{ cf.credentials }}"
    - name: Inject a failure after the next create
      ansible.builtin.uri: {url: "{{ control_url }}/faults", method: PUT, body_format: json, body: {fail_after_creates: 1}}
    - name: Create, then the pause fails
      isr.mqtt.mqtt_client:
        label: "{{ care }}-p"
        paused: true
      register: cp
      ignore_errors: true
    - name: A text 500 page that echoes the Authorization header (on every retry)
      ansible.builtin.uri: {url: "{{ control_url }}/faults", method: PUT, body_format: json, body: {echo_auth_500: 5}}
    - name: List while the portal echoes the token
      isr.mqtt.mqtt_client_info:
      register: ci
      ignore_errors: true
    - name: Faults off
      ansible.builtin.uri: {url: "{{ control_url }}/faults", method: PUT, body_format: json, body: {}}
    - name: The failures happened, and the failed create still carries its password
      ansible.builtin.assert:
        that: [cp is failed, cp.password is not none, ci is failed, "'500' in ci.msg"]
    - name: The registered results hold vaulted values (debug var= would decrypt them on 2.19+, so it is not used)
      ansible.builtin.assert:
        that: ["cc.password is vault_encrypted", "cs.password is vault_encrypted", "cp.password is vault_encrypted",
               "cf.credentials[care ~ '-f1'].password is vault_encrypted",
               "cf.credentials[care ~ '-f1'].password_vault is match('[$]ANSIBLE_VAULT;1.2;AES256;fleet')"]
    - name: Use the vaulted passwords in templates, as a device would (the user decrypts on purpose, under no_log)
      ansible.builtin.copy:
        content: "{{ item.password }}"
        dest: "{{ out }}/{{ item.name }}.pw"
        mode: "0600"
      no_log: true
      loop:
        - {name: "{{ care }}-c", password: "{{ ccr.password }}"}
        - {name: "{{ care }}-s", password: "{{ cs.password }}"}
        - {name: "{{ care }}-p", password: "{{ cp.password }}"}
        - {name: "{{ care }}-f1", password: "{{ cf.credentials[care ~ '-f1'].password }}"}

- name: The fleet role over hosts
  hosts: "{{ 'devices' if run_no | int <= 2 else 'nowhere' }}"
  gather_facts: true
  roles:
    - role: isr.mqtt.fleet
      fleet_api_token: "{{ portal_token }}"
  post_tasks:
    - {name: What the role left registered (ciphertext text only), ansible.builtin.debug: {var: _fleet_result}}
    - name: Use the fact as a device would (rendered only into a 0600 file)
      ansible.builtin.copy:
        content: "{{ mqtt_password }}"
        dest: "{{ out }}/{{ inventory_hostname }}.pw"
        mode: "0600"
      delegate_to: localhost
      no_log: true
"""

NO_SINK_PLAYBOOK = """
- name: No sink - no vault secret, no no_log, no password_file, no opt-in
  hosts: localhost
  gather_facts: false
  tasks:
    - {name: Create, isr.mqtt.mqtt_client: {label: nosink-c}, register: n1, ignore_errors: true}
    - {name: Rotate, isr.mqtt.mqtt_client: {label: care1-c, rotate_password: true}, register: n2, ignore_errors: true}
    - {name: Subscriber, isr.mqtt.mqtt_subscriber: {label: nosink-s}, register: n3, ignore_errors: true}
    - {name: Fleet, isr.mqtt.mqtt_fleet: {clients: [{label: nosink-f}]}, register: n4, ignore_errors: true}
    - name: Each failed, naming the ways to fix it
      ansible.builtin.assert:
        that: "item is failed and 'nowhere safe to go' in item.msg and 'no_log: true' in item.msg"
      loop: "{{ [n1, n2, n3, n4] }}"
      loop_control: {label: "{{ item.msg | default('') | truncate(40) }}"}
    - name: A pause returns no password and needs no sink
      isr.mqtt.mqtt_client: {label: care1-c, paused: true}

- name: The role without a vault secret fails before any write
  hosts: devices
  gather_facts: false
  roles:
    - {role: isr.mqtt.fleet, fleet_store: "{{ nosink_store }}"}
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
    runs = (  # (run_no, fleet store, options, stdout callback and notification callbacks)
        (1, "fleet.yml", ["-vvvv", "--diff"], dict(ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.junit,ansible.builtin.tree",
                                                   JUNIT_OUTPUT_DIR=str(run_dir / "junit"),
                                                   ANSIBLE_CALLBACK_TREE_DIR=str(run_dir / "tree"))),
        (2, "fleet-recovered.yml", [], dict(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal")),  # a fresh store: recovery
        (3, "unused.yml", ["-v"], dict(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.oneline")),
        (4, "unused.yml", [], dict(ANSIBLE_STDOUT_CALLBACK="json_results", ANSIBLE_CALLBACK_PLUGINS=str(HERE / "callback_plugins"))),
    )
    for run_no, store, options, callbacks in runs:
        if run_no == 2:  # the old store set aside (a second store that keeps the same labels is refused)
            os.rename(str(run_dir / "store" / "fleet.yml"), str(run_dir / "store" / "fleet.yml.old"))
        extra = "out=%s modstore=%s carestore=%s fleet_store=%s run_no=%d control_url=%s" % (
            out, run_dir / "store" / "modules.yml", run_dir / "store" / "careless.yml", run_dir / "store" / store,
            run_no, emu.info["control_url"])
        if run_no == 2:
            extra += " fleet_recover_missing=force"  # a fresh store recovering the whole fleet is refused unless forced
        cmd = [bin_path("ansible-playbook"), "-i", str(run_dir / "hosts.ini"), str(run_dir / "site.yml")] + options + [
            "--vault-id", "fleet@%s" % (run_dir / "vault-pass"), "-e", "@%s" % (run_dir / "token.yml"), "-e", extra]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=str(run_dir), env=dict(env, **callbacks),
                              timeout=600)
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
        outputs.append(("run %d stdout" % run_no, done.stdout))
        outputs.append(("run %d stderr" % run_no, done.stderr))
        assert "$ANSIBLE_VAULT" in done.stdout, "run %d printed no ciphertext: the careless play proved nothing" % run_no

    os.rename(str(run_dir / "store" / "fleet.yml.old"), str(run_dir / "store" / "fleet.yml"))  # searched below

    # Run 5: no vault secret, no no_log, no password_file, no opt-in: nothing that would return a password is done.
    (run_dir / "nosink.yml").write_text(NO_SINK_PLAYBOOK)
    emu.control.reset_counters()
    done = subprocess.run([bin_path("ansible-playbook"), "-i", str(run_dir / "hosts.ini"), str(run_dir / "nosink.yml"),
                           "-e", "nosink_store=%s" % (run_dir / "store" / "nosink.yml")],
                          check=False, capture_output=True, text=True, cwd=str(run_dir), timeout=600,
                          env=dict(ansible_env({"ISR_PORTAL_URL": emu.url, "ISR_PORTAL_TOKEN": emu.token}),
                                   ANSIBLE_HOME=str(home), ANSIBLE_LOCAL_TEMP=str(home / "tmp")))
    outputs.append(("run 5 (no sink) stdout", done.stdout))
    outputs.append(("run 5 (no sink) stderr", done.stderr))
    assert done.returncode == 2 and "no vault secret is loaded" in done.stdout, done.stdout[-6000:]
    assert "All assertions passed" in done.stdout, done.stdout[-6000:]
    no_sink_writes = emu.control.counters()
    assert no_sink_writes["writes"] == 1 and list(r for r in no_sink_writes["by_route"] if not r.startswith("GET")) == [
        "POST /api/v1/subscriber/publishers/{client_id}/pause"], no_sink_writes  # only the pause, which needs no sink
    assert not any(label.startswith("nosink") for label in emu.control.state()["labels"])

    secrets = [line.strip() for line in record.read_text().splitlines() if line.strip()]
    passwords = [s for s in secrets if not s.startswith("isr_mqtt_rest_")]
    # c1 and c2 create+rotate, s1, f1/f2 create + f1 rotate, 4 hosts + 4 recoveries, 6 per careless run; + the token
    assert len(passwords) >= 16 + 4 * 6 and any(s.startswith("isr_mqtt_rest_") for s in secrets), secrets
    assert "fleet-recovered" in "".join(o for dummy, o in outputs)
    assert "'rotated': 4" in outputs[2][1], "run 2 did not recover the 4 hosts by rotation"
    assert any((run_dir / "junit").iterdir()) and any((run_dir / "tree").iterdir()), "junit/tree wrote nothing"

    password_files = {out / "c1.pw", out / "s1.pw"} | {out / ("sec-h%d.pw" % i) for i in range(4)} | {
        out / ("care%d-%s.pw" % (run_no, kind)) for run_no in range(1, 5) for kind in ("c", "s", "p", "f1")}
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
    channels = {}  # channel -> [texts searched, plaintext occurrences] (the table in docs/reliability.md)
    for where, text in texts:
        counted = channels.setdefault(channel_of(where, str(run_dir)), [0, 0])
        counted[0] += 1
        counted[1] += sum(text.count(secret) for secret in secrets)
    for name in sorted(channels):
        print("channel %-45s %4d searched %4d plaintext secrets" % (name, channels[name][0], channels[name][1]))
    # The stores hold every password, vaulted.
    for store in ("fleet.yml", "fleet-recovered.yml", "modules.yml", "careless.yml"):
        text = (run_dir / "store" / store).read_text()
        assert "$ANSIBLE_VAULT" in text and stat.S_IMODE((run_dir / "store" / store).stat().st_mode) == 0o600
    cached = "".join(p.read_text() for p in (run_dir / "facts").iterdir())
    assert "$ANSIBLE_VAULT" in cached  # the hosts' mqtt_password facts are cached as ciphertext
    return {"passwords": [f for f in found if not f[1].startswith("isr_mq")],
            "tokens": [f for f in found if f[1].startswith("isr_mq")], "channels": channels}


RUN_NAMES = {"run 1": "stdout default -vvvv --diff", "run 2": "stdout minimal", "run 3": "stdout oneline -v",
             "run 4": "stdout json", "run 5": "stdout no-sink run (no vault secret)"}
FILE_CHANNELS = (("ansible.log", "ANSIBLE_LOG_PATH"), ("facts", "jsonfile fact cache"), ("junit", "junit files"),
                 ("tree", "tree files"), ("store", "credential stores (vaulted)"), ("ansible-home", "ANSIBLE_HOME, local temp"))


def channel_of(where, run_dir):
    """The output channel a searched text belongs to."""
    if not where.startswith(run_dir):
        return RUN_NAMES[where[:5]] + (" (stderr)" if "stderr" in where else "")
    first = os.path.relpath(where, run_dir).split(os.sep, maxsplit=1)[0]
    return dict(FILE_CHANNELS).get(first, "other files of the run")


def test_every_channel_was_searched(leaks):
    # ANSIBLE_HOME is searched too, but Ansible removes its local temp at the end: it may hold no file at all.
    expected = set(RUN_NAMES.values()) | set(name for dummy, name in FILE_CHANNELS if dummy != "ansible-home")
    assert expected <= set(leaks["channels"]), sorted(expected - set(leaks["channels"]))
    assert all(count == 0 for dummy, count in leaks["channels"].values()), leaks["channels"]


# Issue 24: ANSIBLE_DEBUG prints a module's arguments (the token, when it is an option) and its raw output (a new
# password, before the action plugin encrypts it); ANSIBLE_KEEP_REMOTE_FILES keeps its AnsiballZ file (arguments
# included). On the controller the collection's modules run inside the worker, so neither has anything to show.
DEBUG_PLAYBOOK = r"""
- name: The modules on the controller, the token as a module option
  hosts: localhost
  gather_facts: false
  connection: local
  module_defaults:
    group/isr.mqtt.portal:
      api_token: "{{ portal_token }}"
  tasks:
    - name: Create a client
      isr.mqtt.mqtt_client: {label: dbg-c}
      register: dc
    - name: Rotate its password under no_log (plain text in the registered result, by design)
      isr.mqtt.mqtt_client: {label: dbg-c, rotate_password: true}
      register: dcr
      no_log: true
    - name: Create a read-only subscriber
      isr.mqtt.mqtt_subscriber: {label: dbg-s}
      register: ds
    - name: The fleet module
      isr.mqtt.mqtt_fleet: {clients: [{label: dbg-f1}]}
      register: df
    - name: Read the client (the info modules take the token too)
      isr.mqtt.mqtt_client_info: {label: dbg-c}
    - name: Read the subscribers
      isr.mqtt.mqtt_subscriber_info:
    - name: Read the portal
      isr.mqtt.portal_info:
    - name: A module process, whose file ANSIBLE_KEEP_REMOTE_FILES keeps (the test's proof that it does)
      ansible.builtin.ping:
    - name: Core file size limit of the main ansible-playbook process (the parent of this worker)
      ansible.builtin.debug:
        msg: "main process {{ lookup('ansible.builtin.pipe', 'grep \"core file\" /proc/$(awk \"/^PPid/{print \\$2}\" /proc/$PPID/status)/limits') }}"

- name: The fleet role over hosts
  hosts: devices
  gather_facts: false
  roles:
    - role: isr.mqtt.fleet
      fleet_api_token: "{{ portal_token }}"
  post_tasks:
    - {name: The role's store result (ciphertext text only), ansible.builtin.debug: {var: _fleet_store_result}, run_once: true}
    - {name: The role's fleet result (ciphertext text only), ansible.builtin.debug: {var: _fleet_result}, run_once: true}
    # Left out: mqtt_password, a vaulted value for templates to decrypt (README, Secrets), and the user's own
    # portal_token, plain text once its vault file (-e @token.yml) is loaded.
    - name: Each host's variables, but the vaulted fact and the user's token
      ansible.builtin.debug:
        msg: "{{ hostvars[inventory_hostname] | dict2items | rejectattr('key', 'in', ['mqtt_password', 'portal_token']) | items2dict
                 | combine({'ansible_facts': ansible_facts | dict2items | rejectattr('key', 'eq', 'mqtt_password') | items2dict}) }}"
    - name: The fact is a vaulted value
      ansible.builtin.assert:
        that: [mqtt_password is vault_encrypted]
        quiet: true

- name: Every new password logs in to the broker
  hosts: localhost
  gather_facts: false
  connection: local
  tasks:
    - name: Log in with each (the client's after its rotation)
      isr.mqtt.mqtt_login_check:
        host: 127.0.0.1
        port: "{{ broker_port }}"
        credentials: >-
          {%- set out = [{'username': dc.client.username, 'password': dcr.password},
                         {'username': ds.subscriber.username, 'password': ds.password},
                         {'username': df.credentials['dbg-f1'].username, 'password': df.credentials['dbg-f1'].password}] -%}
          {%- for h in groups['devices'] -%}
          {%-   set _ = out.append({'username': hostvars[h].mqtt_username, 'password': hostvars[h].mqtt_password}) -%}
          {%- endfor -%}
          {{ out }}
      register: dl
    - name: All of them worked
      ansible.builtin.assert:
        that: "dl.counts == {'ok': 5}"
"""


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory):
    """One -v run with ANSIBLE_DEBUG=1 and ANSIBLE_KEEP_REMOTE_FILES=1; returns what it left behind."""
    run_dir = tmp_path_factory.mktemp("secrets-debug")
    record = run_dir / "issued-secrets.txt"
    (run_dir / "emulator").mkdir()
    emu = Emulator(run_dir / "emulator", broker=True, extra_args=["--record-secrets", str(record)]).start(timeout=60)
    try:
        home = run_dir / "ansible-home"
        (run_dir / "store").mkdir()
        (run_dir / "vault-pass").write_text(VAULT + "\n")
        vault = VaultLib([("fleet", VaultSecret(VAULT.encode()))])
        (run_dir / "token.yml").write_bytes(vault.encrypt("portal_token: %s\n" % emu.token, vault.secrets[0][1], vault_id="fleet"))
        (run_dir / "site.yml").write_text(DEBUG_PLAYBOOK)
        (run_dir / "hosts.ini").write_text("localhost ansible_connection=local\n[devices]\ndbg-h0\ndbg-h1\n"
                                           "[devices:vars]\nansible_connection=local\n")
        env = ansible_env(dict({"ISR_PORTAL_URL": emu.url}, ANSIBLE_DEBUG="1", ANSIBLE_KEEP_REMOTE_FILES="1",
                               ANSIBLE_HOME=str(home), ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
                               ANSIBLE_REMOTE_TEMP=str(home / "remote-tmp")))
        hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
        done = subprocess.run(
            [bin_path("ansible-playbook"), "-v", "-i", str(run_dir / "hosts.ini"), str(run_dir / "site.yml"),
             "--vault-id", "fleet@%s" % (run_dir / "vault-pass"), "-e", "@%s" % (run_dir / "token.yml"),
             "-e", "fleet_store=%s broker_port=%s" % (run_dir / "store" / "fleet.yml", emu.info["broker_port"])],
            check=False, capture_output=True, text=True, cwd=str(run_dir), env=env, timeout=600,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (hard, hard)))  # cores allowed, as on many hosts
    finally:
        emu.stop()
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    secrets = [line.strip() for line in record.read_text().splitlines() if line.strip()]
    files = {}
    for root, dummy, names in os.walk(str(run_dir)):
        for name in names:
            path = os.path.join(root, name)
            if name not in ("vault-pass", "issued-secrets.txt") and "emulator" not in os.path.relpath(path, str(run_dir)):
                with open(path, "rb") as handle:
                    files[path] = handle.read().decode("utf-8", "replace")
    texts = [("stdout", done.stdout), ("stderr", done.stderr)] + sorted(files.items())
    found = sorted(set((where, secret[:6] + "...") for where, text in texts for secret in secrets if secret in text))
    print("ANSIBLE_DEBUG run: searched stdout, stderr and %d files for %d secrets: %d leaks: %s"
          % (len(files), len(secrets), len(found), found))
    for where, text in texts:  # where each leak is, the secret masked
        for secret in secrets:
            at = text.find(secret)
            if at >= 0:
                print("  %s: ...%s..." % (where, text[max(0, at - 300):at + 100].replace(secret, "<SECRET>")))
    return dict(stdout=done.stdout, files=files, secrets=secrets, found=found, core_hard=hard)


def test_debug_and_kept_files_hold_no_secret(debug_run):
    # 4 from the modules (create, rotate, subscriber, fleet) and 2 hosts of the role, plus the token
    assert len(debug_run["secrets"]) >= 7 and any(s.startswith("isr_mqtt_rest_") for s in debug_run["secrets"])
    assert "_low_level_execute_command() done" in debug_run["stdout"], "ANSIBLE_DEBUG printed nothing: no proof"
    kept = [path for path in debug_run["files"] if os.path.basename(path).startswith("AnsiballZ_")]
    assert any(path.endswith("AnsiballZ_ping.py") for path in kept), "no kept module file: no proof"
    assert not [path for path in kept if "mqtt" in os.path.basename(path) or "info" in os.path.basename(path)], kept
    assert debug_run["found"] == []


def test_role_debug_dumps_show_ciphertext(debug_run):
    stdout = debug_run["stdout"]
    assert '"_fleet_store_result": {' in stdout and '"_fleet_result": {' in stdout
    assert stdout.count("$ANSIBLE_VAULT;1.2;AES256;fleet") >= 2


def test_role_fleet_task_result_is_not_censored(debug_run):
    """AWX takes a task's 'changed' from its (callback) result: the role's mqtt_fleet task has no no_log."""
    stdout = debug_run["stdout"]
    start = stdout.index("TASK [isr.mqtt.fleet : Reconcile the MQTT clients")
    section = stdout[start:stdout.index("TASK [", start + 10)]
    assert "changed: [dbg-h0 -> localhost] => {" in section and '"counts": {' in section, section[-3000:]
    assert "censored" not in section


def test_main_process_writes_no_core(debug_run):
    if debug_run["core_hard"] == 0:
        pytest.skip("the hard core limit is 0 here already: nothing to show")
    assert re.search(r"main process Max core file size\s+0\s+0\s+bytes", debug_run["stdout"]), debug_run["stdout"][-3000:]


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-s"])
