"""The isr.mqtt.fleet role end to end: real ansible-playbook against the emulator."""
import itertools
import json
import subprocess
import threading

import pytest
import yaml

from support import ansible_env, bin_path

RUN_NUMBERS = itertools.count()

VAULT_PASSWORD = "fleet-test-vault-password"

PLAYBOOK = """
- name: Provision the fleet
  hosts: localhost
  gather_facts: false
  connection: local
  roles:
    - role: isr.mqtt.fleet
"""

HOSTS_PLAYBOOK = """
- name: Provision the hosts as devices
  hosts: devices
  gather_facts: false
  roles:
    - role: isr.mqtt.fleet
  post_tasks:
    - name: Render a config from the facts
      ansible.builtin.template:
        src: "{{ playbook_dir }}/device.conf.j2"
        dest: "{{ playbook_dir }}/out/{{ inventory_hostname }}.conf"
        mode: "0600"
      delegate_to: localhost
"""

# docs/fleet-role.md's form for big fleets: the role's argument validation runs once, not once per host.
HOSTS_ONCE_PLAYBOOK = HOSTS_PLAYBOOK.replace("    - role: isr.mqtt.fleet\n", "    - role: isr.mqtt.fleet\n      run_once: true\n")


# The role without per-host facts; the isr.mqtt.fleet_store vars plugin (enabled by VARS_PLUGIN_ENV) serves the store.
HOSTS_VARS_PLAYBOOK = HOSTS_ONCE_PLAYBOOK.replace("      run_once: true\n", "      run_once: true\n      fleet_host_facts: false\n", 1)


class Fleet:
    """A workspace: vault password file, store path, playbooks, and a runner."""

    def __init__(self, tmp_path, emulator):
        self.dir = tmp_path
        self.emulator = emulator
        self.store = tmp_path / "store" / "credentials.yml"
        self.store.parent.mkdir()
        self.vault_file = tmp_path / "vault-pass"
        self.vault_file.write_text(VAULT_PASSWORD + "\n")
        (tmp_path / "fleet.yml").write_text(PLAYBOOK)
        (tmp_path / "hosts.yml").write_text(HOSTS_PLAYBOOK)
        (tmp_path / "hosts_once.yml").write_text(HOSTS_ONCE_PLAYBOOK)
        (tmp_path / "hosts_vars.yml").write_text(HOSTS_VARS_PLAYBOOK)
        (tmp_path / "device.conf.j2").write_text("user={{ mqtt_username }}\npassword={{ mqtt_password }}\n")
        (tmp_path / "out").mkdir()

    def command(self, devices=None, playbook="fleet.yml", inventory="localhost,", extra=None, args=()):
        evars = {"fleet_store": str(self.store), "fleet_batch_size": 100}
        if devices is not None:
            evars["fleet_devices"] = devices
        evars.update(extra or {})
        varfile = self.dir / ("vars-%d.json" % next(RUN_NUMBERS))  # runs may start at once
        varfile.write_text(json.dumps(evars))
        return [bin_path("ansible-playbook"), "-i", inventory, str(self.dir / playbook), "-e", "@%s" % varfile,
                "--vault-id", "fleet@%s" % self.vault_file] + list(args)

    def run(self, devices=None, expect_rc=0, env=None, **kwargs):
        environment = dict(self.emulator.env(), ANSIBLE_PYTHON_INTERPRETER=__import__("sys").executable)
        environment.update(env or {})
        done = subprocess.run(self.command(devices, **kwargs), capture_output=True, text=True, cwd=str(self.dir), check=False,
                              env=ansible_env(environment), timeout=900)
        out = done.stdout + done.stderr
        if expect_rc is not None:
            assert done.returncode == expect_rc, out[-6000:]
        return out

    def entries(self):
        """The store as include_vars would load it, decrypted (ansible's own loader + our vault secret)."""
        from ansible.parsing.vault import VaultLib, VaultSecret
        vault = VaultLib([("fleet", VaultSecret(VAULT_PASSWORD.encode()))])

        class Loader(yaml.SafeLoader):
            pass
        Loader.add_constructor("!vault", lambda loader, node: vault.decrypt(loader.construct_scalar(node)).decode())
        data = yaml.load(self.store.read_text(), Loader=Loader)  # nosec: SafeLoader + !vault
        return data["isr_mqtt_credentials"]

    def assert_store_matches_portal(self, labels):
        entries = self.entries()
        assert set(labels) <= set(entries)
        state = self.emulator.control.state()
        for label in labels:
            assert state["labels"].get(label) == 1, label
        for label in list(labels)[:: max(1, len(labels) // 20)]:  # a sample keeps the test fast
            verdict = self.emulator.control.verify(entries[label]["username"], entries[label]["password"])
            assert verdict["ok"], (label, verdict)


def devices(n, prefix="dev-", **flags):
    return [dict({"label": "%s%04d" % (prefix, i)}, **flags) for i in range(n)]


def summary(out):
    """The counts of every batch's progress line."""
    return [line for line in out.splitlines() if '"msg": "batch ' in line]


@pytest.fixture
def fleet(tmp_path, emulator):
    return Fleet(tmp_path, emulator)


def writes(emulator):
    return emulator.control.counters()["writes"]


def test_provision_200_then_rerun_is_a_noop(fleet, emulator):
    fleet.run(devices(200))
    fleet.assert_store_matches_portal([d["label"] for d in devices(200)])
    counters = emulator.control.counters()
    assert counters["by_route"].get("POST /api/v1/subscriber/publishers") == 200
    before = fleet.store.read_bytes()
    assert oct(fleet.store.stat().st_mode & 0o777) == "0o600"

    emulator.control.reset_counters()
    out = fleet.run(devices(200))
    counters = emulator.control.counters()
    assert counters["writes"] == 0
    assert counters["total"] == 1, counters  # one list: the plan finds nothing to do, so no batch runs
    assert fleet.store.read_bytes() == before  # ciphertext untouched
    assert "changed=0" in out.split("PLAY RECAP")[-1]


def test_pause_subset_purge_and_rotate_by_age(fleet, emulator):
    fleet.run(devices(30))
    fleet.run(devices(3, prefix="other-"), extra={"fleet_store": str(fleet.dir / "store" / "other.yml")})
    wanted = devices(30)
    for item in wanted[:5]:
        item["paused"] = True
    emulator.control.reset_counters()
    out = fleet.run(wanted[:25], extra={"fleet_purge": True, "fleet_purge_match": "^dev-"})
    counters = emulator.control.counters()["by_route"]
    assert counters.get("POST /api/v1/subscriber/publishers/{client_id}/pause") == 5
    assert counters.get("DELETE /api/v1/subscriber/publishers/{client_id}") == 5
    labels = emulator.control.state()["labels"]
    assert "dev-0029" not in labels and labels.get("other-0000") == 1  # purge spared other people's clients
    assert "dev-0029" not in fleet.entries()
    assert "'deleted': 5" in out and "'paused': 5" in out

    # An old rotated_at in the store rotates exactly that password.
    text = fleet.store.read_text()
    entries = yaml.safe_load(text.replace("!vault |", "|"))["isr_mqtt_credentials"]
    old = entries["dev-0010"]["rotated_at"]
    fleet.store.write_text(text.replace('"dev-0010":\n    client_id: "%s"\n    username: "%s"\n    publish_topic: "%s"\n    '
                                        'history_topic_prefix: "%s"\n    rotated_at: "%s"' % (
                                            entries["dev-0010"]["client_id"], entries["dev-0010"]["username"],
                                            entries["dev-0010"]["publish_topic"], entries["dev-0010"]["history_topic_prefix"], old),
                                        '"dev-0010":\n    client_id: "%s"\n    username: "%s"\n    publish_topic: "%s"\n    '
                                        'history_topic_prefix: "%s"\n    rotated_at: "2000-01-01T00:00:00Z"' % (
                                            entries["dev-0010"]["client_id"], entries["dev-0010"]["username"],
                                            entries["dev-0010"]["publish_topic"], entries["dev-0010"]["history_topic_prefix"])))
    reseal(fleet.store, "dev-0010")  # an edit by hand would be damaged (and recovered): this is the age rule's test
    previous = fleet.entries()["dev-0010"]["password"]
    emulator.control.reset_counters()
    out = fleet.run(wanted[:25], extra={"fleet_password_max_age_days": 30})
    assert "integrity check" not in out
    assert emulator.control.counters()["by_route"].get("POST /api/v1/subscriber/publishers/{client_id}/rotate-credentials") == 1
    entry = fleet.entries()["dev-0010"]
    assert entry["password"] != previous and entry["rotated_at"] != "2000-01-01T00:00:00Z"
    assert not emulator.control.verify(entry["username"], previous)["ok"]
    fleet.assert_store_matches_portal([d["label"] for d in wanted[5:25]])  # paused clients cannot log in


def reseal(store, label):
    """Give ``label``'s entry a valid integrity check again after a test changed a field (as the role would)."""
    from ansible.parsing.vault import VaultSecret
    from ansible_collections.isr.mqtt.plugins.plugin_utils._seal import Sealer, salt_of

    class Loader(yaml.SafeLoader):
        pass
    Loader.add_constructor("!vault", lambda loader, node: loader.construct_scalar(node))
    text = store.read_text()
    entry = yaml.load(text, Loader=Loader)["isr_mqtt_credentials"][label]  # nosec: SafeLoader + !vault
    secret = VaultSecret(VAULT_PASSWORD.encode())
    check = Sealer([("fleet", secret)], secret, salt_of(entry["check"])).seal(label, entry)
    store.write_text(text.replace('check: "%s"' % entry["check"], 'check: "%s"' % check))


def test_lost_store_is_recovered_by_rotation_without_duplicates(fleet, emulator):
    fleet.run(devices(40))
    fleet.store.unlink()
    emulator.control.reset_counters()
    out = fleet.run(devices(40), expect_rc=2)  # a lost store does not rotate the fleet without being told to
    assert "%s holds none of the 40 clients" % fleet.store in out and "fleet_recover_missing: force" in out, out[-3000:]
    assert not fleet.store.exists()
    assert all(route.startswith("GET ") for route in emulator.control.counters()["by_route"]), emulator.control.counters()
    fleet.run(devices(40), extra={"fleet_recover_missing": "force"})
    by_route = emulator.control.counters()["by_route"]
    assert by_route.get("POST /api/v1/subscriber/publishers/{client_id}/rotate-credentials") == 40
    assert "POST /api/v1/subscriber/publishers" not in by_route
    fleet.assert_store_matches_portal([d["label"] for d in devices(40)])


def test_failure_half_way_keeps_every_password(fleet, emulator):
    emulator.control.set_faults(fail_after_creates=50)
    out = fleet.run(devices(120), expect_rc=2, extra={"fleet_batch_size": 0, "fleet_parallel": 4})
    assert "passwords received are in 'credentials'" in out or "failed" in out
    entries = fleet.entries()
    created = [label for label, count in emulator.control.state()["labels"].items() if count]
    assert len(created) >= 50 and set(created) == set(entries)  # every created client's password was stored
    for label in created[:10]:
        assert emulator.control.verify(entries[label]["username"], entries[label]["password"])["ok"]

    emulator.control.set_faults()
    emulator.control.reset_counters()
    fleet.run(devices(120), extra={"fleet_batch_size": 0})
    by_route = emulator.control.counters()["by_route"]
    assert by_route.get("POST /api/v1/subscriber/publishers") == 120 - len(created)
    assert "POST /api/v1/subscriber/publishers/{client_id}/rotate-credentials" not in by_route
    fleet.assert_store_matches_portal([d["label"] for d in devices(120)])


def test_two_concurrent_runs_on_one_store(fleet, emulator):
    results = {}

    def go(prefix):
        results[prefix] = fleet.run(devices(30, prefix=prefix), expect_rc=None)

    threads = [threading.Thread(target=go, args=(p,)) for p in ("a-", "b-")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for prefix, out in results.items():
        assert "failed=0" in out.split("PLAY RECAP")[-1], out[-4000:]
    fleet.assert_store_matches_portal([d["label"] for d in devices(30, prefix="a-") + devices(30, prefix="b-")])


def test_check_mode_predicts_and_writes_nothing(fleet, emulator):
    fleet.run(devices(10))
    before = fleet.store.read_bytes()
    wanted = devices(15)
    wanted[0]["paused"] = True
    emulator.control.reset_counters()
    out = fleet.run(wanted, args=["--check", "--diff"])
    assert writes(emulator) == 0
    assert fleet.store.read_bytes() == before
    assert "'created': 5" in out and "'paused': 1" in out and "'unchanged': 9" in out
    # The reconcile task predicts the changes; the store step writes nothing: "ok", never "changed".
    persist_task = out.split("TASK [isr.mqtt.fleet : Persist every password received")[1].split("TASK [")[0]
    assert "ok: [localhost]" in persist_task and "changed:" not in persist_task, persist_task


def test_no_secret_in_verbose_output_store_or_fact_cache(fleet, emulator, tmp_path):
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("[devices]\n" + "".join("host%02d fleet_label=h-%02d\n" % (i, i) for i in range(6))
                         + "[devices:vars]\nansible_connection=local\n")
    cache = tmp_path / "facts"
    out = fleet.run(playbook="hosts.yml", inventory=str(inventory), args=["-vvvv"],
                    env={"ANSIBLE_CACHE_PLUGIN": "jsonfile", "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(cache)})
    entries = fleet.entries()
    secrets = [entry["password"] for entry in entries.values()] + [emulator.token]
    assert len(entries) == 6
    cached = "".join(p.read_text() for p in cache.iterdir())
    store_text = fleet.store.read_text()
    for secret in secrets:
        assert secret not in out
        assert secret not in cached
        assert secret not in store_text
    assert "$ANSIBLE_VAULT" in cached  # the password fact is there, as ciphertext


def test_facts_render_in_a_template(fleet, emulator, tmp_path):
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("[devices]\n" + "".join("host%02d\n" % i for i in range(4)) + "[devices:vars]\nansible_connection=local\n")
    fleet.run(playbook="hosts.yml", inventory=str(inventory))
    entries = fleet.entries()
    rendered = (tmp_path / "out" / "host02.conf").read_text()
    assert rendered == "user=%s\npassword=%s\n" % (entries["host02"]["username"], entries["host02"]["password"])
    assert emulator.control.verify(entries["host02"]["username"], entries["host02"]["password"])["ok"]


def test_role_applied_run_once_validates_once_and_gives_every_host_its_facts(fleet, emulator, tmp_path):
    assert "run_once: true" in HOSTS_ONCE_PLAYBOOK
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("[devices]\n" + "".join("host%02d\n" % i for i in range(5)) + "[devices:vars]\nansible_connection=local\n")
    out = fleet.run(playbook="hosts_once.yml", inventory=str(inventory))
    validation = out.split("Validating arguments against arg spec")[1].split("TASK [")[0]
    assert validation.count("ok: [") == 1, validation
    entries = fleet.entries()
    assert sorted(entries) == ["host%02d" % i for i in range(5)]
    for i in range(5):  # the post_task, per host, renders each host's own credential from its facts
        rendered = (tmp_path / "out" / ("host%02d.conf" % i)).read_text()
        assert rendered == "user=%s\npassword=%s\n" % (entries["host%02d" % i]["username"], entries["host%02d" % i]["password"])


def test_vars_plugin_gives_every_host_its_credential_and_sees_a_rotation_in_the_same_run(fleet, emulator, tmp_path):
    assert "fleet_host_facts: false" in HOSTS_VARS_PLAYBOOK
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("[devices]\nhost00 fleet_label=gw-00\nhost01\nhost02\n[devices:vars]\nansible_connection=local\n")
    plugin_env = {"ANSIBLE_VARS_ENABLED": "host_group_vars,isr.mqtt.fleet_store", "ISR_MQTT_FLEET_STORE": str(fleet.store)}

    def rendered():
        return dict((h, (tmp_path / "out" / ("%s.conf" % h)).read_text()) for h in ("host00", "host01", "host02"))

    def expected(entries):
        return dict((h, "user=%s\npassword=%s\n" % (entries[label]["username"], entries[label]["password"]))
                    for h, label in (("host00", "gw-00"), ("host01", "host01"), ("host02", "host02")))

    out = fleet.run(playbook="hosts_vars.yml", inventory=str(inventory), env=plugin_env)
    facts_task = out.split("TASK [isr.mqtt.fleet : Set each device's MQTT facts")[1].split("TASK [")[0]
    assert "(item=" not in facts_task, facts_task  # no fact was set: the post_task's values came from the plugin
    first = fleet.entries()
    assert sorted(first) == ["gw-00", "host01", "host02"] and rendered() == expected(first)

    # The store changes during the run (rotation): the post_task after the role renders the new password.
    out = fleet.run(playbook="hosts_vars.yml", inventory=str(inventory), env=plugin_env, extra={"fleet_rotate": ["host01"]},
                    args=["-vvvv"])
    second = fleet.entries()
    assert second["host01"]["password"] != first["host01"]["password"] and second["gw-00"] == first["gw-00"]
    assert rendered() == expected(second)
    assert emulator.control.verify(second["host01"]["username"], second["host01"]["password"])["ok"]

    listed = subprocess.run([bin_path("ansible-inventory"), "-i", str(inventory), "--list", "--vault-id", "fleet@%s" % fleet.vault_file],
                            capture_output=True, text=True, check=False, env=ansible_env(plugin_env), cwd=str(tmp_path))
    assert listed.returncode == 0, listed.stderr[-3000:]
    hostvars = json.loads(listed.stdout)["_meta"]["hostvars"]
    assert second["host01"]["username"] in json.dumps(hostvars["host01"]["mqtt_username"])
    assert "$ANSIBLE_VAULT" in json.dumps(hostvars["host01"]["mqtt_password"])
    for entry in list(first.values()) + list(second.values()):
        assert entry["password"] not in out and entry["password"] not in listed.stdout + listed.stderr


def test_vars_plugin_fails_on_a_damaged_store_before_any_request(fleet, emulator, tmp_path):
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("[devices]\nhost00\n[devices:vars]\nansible_connection=local\n")
    fleet.store.write_text("isr_mqtt_credentials: [unclosed\n")
    out = fleet.run(playbook="hosts_vars.yml", inventory=str(inventory), expect_rc=None,
                    env={"ANSIBLE_VARS_ENABLED": "host_group_vars,isr.mqtt.fleet_store", "ISR_MQTT_FLEET_STORE": str(fleet.store)})
    assert "isr.mqtt.fleet_store: the credential store %s is not valid YAML" % fleet.store in out, out[-3000:]
    assert emulator.control.counters()["total"] == 0


def test_vars_plugin_fails_naming_the_store_when_it_disappears_mid_run(fleet, emulator, tmp_path):
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("[devices]\nhost00\n[devices:vars]\nansible_connection=local\n")
    env = {"ANSIBLE_VARS_ENABLED": "host_group_vars,isr.mqtt.fleet_store", "ISR_MQTT_FLEET_STORE": str(fleet.store)}
    fleet.run(playbook="hosts_vars.yml", inventory=str(inventory), env=env)
    (tmp_path / "vanish.yml").write_text(
        "- name: Use the served credential, lose the store, use it again\n  hosts: devices\n  gather_facts: false\n  tasks:\n"
        "    - name: Served\n      ansible.builtin.assert:\n        that: mqtt_username | length > 0\n"
        "    - name: The store goes away\n      ansible.builtin.file:\n        path: %s\n        state: absent\n"
        "      delegate_to: localhost\n"
        "    - name: Served again?\n      ansible.builtin.debug:\n        msg: \"{{ mqtt_username | default('none') }}\"\n" % fleet.store)
    out = fleet.run(playbook="vanish.yml", inventory=str(inventory), env=env, expect_rc=None)  # rc 4 on 2.19
    assert "isr.mqtt.fleet_store: the credential store %s served" % fleet.store in out and "is gone now" in out, out[-3000:]
    assert "ok: [host00] => {\n    \"msg\": \"none\"" not in out


def test_include_vars_of_the_store_yields_the_password(fleet, emulator, tmp_path):
    fleet.run(devices(2))
    (tmp_path / "read.yml").write_text(
        "- name: Read\n  hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - name: Load\n      ansible.builtin.include_vars:\n        file: %s\n        name: st\n"
        "    - name: Write\n      ansible.builtin.copy:\n        content: \"{{ st.isr_mqtt_credentials['dev-0001'].password }}\"\n"
        "        dest: %s\n        mode: '0600'\n" % (fleet.store, tmp_path / "pw.txt"))
    done = subprocess.run([bin_path("ansible-playbook"), "-i", "localhost,", "-c", "local", str(tmp_path / "read.yml"),
                           "--vault-id", "fleet@%s" % fleet.vault_file], capture_output=True, text=True, check=False,
                          env=ansible_env({"ANSIBLE_PYTHON_INTERPRETER": __import__("sys").executable}))
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "pw.txt").read_text() == fleet.entries()["dev-0001"]["password"]


def test_no_vault_secret_fails_before_any_write(fleet, emulator):
    cmd = [c for c in fleet.command(devices(3)) if not c.startswith("fleet@") and c != "--vault-id"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(fleet.emulator.env()), cwd=str(fleet.dir),
                          check=False)
    assert done.returncode != 0
    assert "--vault-id" in done.stdout and "no vault secret" in done.stdout
    assert writes(emulator) == 0 and not fleet.store.exists()


def test_paced_run_sends_no_request_the_budget_would_refuse(fleet, emulator):
    """A budget of 25 requests per 4 s window, 60 devices: the run waits for each new window instead of being refused."""
    emulator.control.set_account(emulator.account_id, hourly_budget=25, window_seconds=4)
    out = fleet.run(devices(60), extra={"fleet_batch_size": 20})
    by_route = emulator.control.counters()["by_route"]
    assert by_route.get("POST /api/v1/subscriber/publishers") == 60  # each POST once: none answered 429
    assert emulator.control.state()["clients"] == 60
    assert "rate limit: " in out and "ETA" in out  # the progress line while waiting
    fleet.assert_store_matches_portal([d["label"] for d in devices(60)])


def test_max_duration_stops_between_batches_and_the_rerun_resumes(fleet, emulator):
    emulator.control.set_faults(latency_s=0.5)
    out = fleet.run(devices(30), extra={"fleet_batch_size": 10, "fleet_parallel": 10, "fleet_max_duration": 1})
    emulator.control.set_faults()
    assert "stopped at fleet_max_duration" in out
    created = emulator.control.state()["clients"]
    assert created in (10, 20), created
    assert len(fleet.entries()) == created  # everything received is in the store
    emulator.control.reset_counters()
    fleet.run(devices(30))
    assert emulator.control.counters()["by_route"].get("POST /api/v1/subscriber/publishers") == 30 - created
    fleet.assert_store_matches_portal([d["label"] for d in devices(30)])
