# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The isr.mqtt.portal inventory plugin for real: ansible-inventory and ansible-playbook against an emulator holding
2500 MQTT clients, over HTTP, with only what the AWX credential type injects (ISR_PORTAL_URL, ISR_PORTAL_TOKEN)."""
import json
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

from ansible_collections.isr.mqtt.plugins.inventory.portal import safe_host_name
from ansible_collections.isr.mqtt.plugins.module_utils._portal import PortalClient
from support import REPO, Emulator, ansible_env, bin_path, seed_clients

CLIENTS = 2500
TEMPLATE_LABEL = "{{ lookup('ansible.builtin.pipe', 'touch %s') }}"
PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "resume_paused.yml"
LIST_ROUTE = "GET /api/v1/subscriber/publishers"


def awx_credential_env(portal_url, api_token):
    """The environment an AWX credential of extensions/awx/credential_type_isr_portal.yml gives a job."""
    credential_type = yaml.safe_load((REPO / "extensions" / "awx" / "credential_type_isr_portal.yml").read_text())
    inputs = {"portal_url": portal_url, "api_token": api_token}
    return dict((name, jinja2.Template(template).render(inputs)) for name, template in credential_type["injectors"]["env"].items())


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    """An emulator with 2500 clients: sensor-0000..sensor-2496, two clients labelled "pump", one whose label is a
    template; paused: three sensors, both pumps and the template."""
    workdir = tmp_path_factory.mktemp("inventory-portal")
    emulator = Emulator(workdir, db=workdir / "portal.sqlite").start()
    emulator.marker = workdir / "template-was-rendered"
    template_label = TEMPLATE_LABEL % emulator.marker
    labels = ["sensor-%04d" % n for n in range(CLIENTS - 3)] + ["pump", "pump", template_label]
    paused = ["sensor-0007", "sensor-0100", "sensor-2496", "pump", template_label]
    emulator.rows = seed_clients(emulator.db, emulator.account_id, labels, paused=paused)
    emulator.workdir = workdir
    yield emulator
    emulator.stop()


def host_name(row):
    """The documented naming rule, for the rows seeded above."""
    return "pump_" + row["client_id"] if row["label"] == "pump" else safe_host_name(row["label"])


def run(portal, cmd, config="plugin: isr.mqtt.portal\n", name="portal.isr_mqtt.yml", env=None):
    """Run an Ansible command with the inventory file; returns (stdout, stderr, list requests sent to the portal)."""
    inventory = portal.workdir / name
    inventory.write_text(config)
    portal.control.reset_counters()
    full_env = ansible_env(dict(awx_credential_env(portal.url, portal.token), **(env or {})))
    full_env.pop("ANSIBLE_INVENTORY_UNPARSED_WARNING")  # a failing source must show
    full_env["ANSIBLE_INVENTORY_UNPARSED_FAILED"] = "true"  # as AWX runs inventory updates
    completed = subprocess.run([bin_path(cmd[0]), "-i", str(inventory)] + cmd[1:], capture_output=True, text=True,
                               env=full_env, cwd=str(portal.workdir), timeout=600, check=False)
    assert completed.returncode == 0, "rc=%s\n%s\n%s" % (completed.returncode, completed.stdout[-5000:], completed.stderr[-5000:])
    assert portal.token not in completed.stdout + completed.stderr
    return completed.stdout, completed.stderr, portal.control.counters()["by_route"].get(LIST_ROUTE, 0)


def plain(value):
    """A host variable of `ansible-inventory --list` (2.19 writes strings from plugins as {"__ansible_unsafe": ...})."""
    return value["__ansible_unsafe"] if isinstance(value, dict) and "__ansible_unsafe" in value else value


def paused_hosts(portal):
    return set(host_name(r) for r in portal.rows if r["paused"])


def test_list_follows_all_pages_and_groups_with_the_credential_env_only(portal):
    stdout, stderr, list_requests = run(portal, ["ansible-inventory", "--list"])
    assert list_requests == 3  # 2500 clients in pages of 1000
    inventory = json.loads(stdout)
    hostvars = inventory["_meta"]["hostvars"]
    clients = inventory["mqtt_clients"]["hosts"]
    assert sorted(clients) == sorted(host_name(r) for r in portal.rows) and len(hostvars) == CLIENTS
    paused = set(inventory["mqtt_paused"]["hosts"])
    assert paused == paused_hosts(portal) and len(paused) == 6
    assert set(inventory["mqtt_active"]["hosts"]) == set(clients) - paused
    assert "2 portal entries would be host 'pump'" in stderr
    by_id = dict((plain(v["mqtt_client_id"]), dict((k, plain(x)) for k, x in v.items())) for v in hostvars.values())
    assert set(by_id) == set(r["client_id"] for r in portal.rows)
    for row in portal.rows[:50] + portal.rows[-3:]:
        assert by_id[row["client_id"]]["mqtt_topic"] == row["topic"]
        assert by_id[row["client_id"]]["mqtt_label"] == row["label"]
        assert by_id[row["client_id"]]["mqtt_paused"] is row["paused"]
    assert "password" not in stdout


def graph_groups(stdout):
    """{group: [host, ...]} from `ansible-inventory --graph` (direct members only)."""
    groups = {}
    current = None
    for line in stdout.splitlines():
        name = line.strip(" |-")
        if line.lstrip(" |").startswith("--@"):
            current = groups.setdefault(name.lstrip("@").rstrip(":"), [])
        elif current is not None and name:
            current.append(name)
    return groups


def test_graph_shows_the_groups(portal):
    stdout, dummy, list_requests = run(portal, ["ansible-inventory", "--graph"])
    assert list_requests == 3
    groups = graph_groups(stdout)
    assert {"mqtt_clients", "mqtt_paused", "mqtt_active"} <= set(groups)
    assert sorted(groups["mqtt_clients"]) == sorted(host_name(r) for r in portal.rows)
    assert set(groups["mqtt_paused"]) == paused_hosts(portal)
    assert len(groups["mqtt_active"]) == CLIENTS - 6


def test_cache_hit_sends_no_request(portal):
    config = ("plugin: isr.mqtt.portal\ncache: true\ncache_plugin: ansible.builtin.jsonfile\n"
              "cache_connection: %s\ncache_timeout: 3600\n" % (portal.workdir / "cache"))
    first, dummy, first_requests = run(portal, ["ansible-inventory", "--graph"], config, name="cached.isr_mqtt.yml")
    second, dummy, second_requests = run(portal, ["ansible-inventory", "--graph"], config, name="cached.isr_mqtt.yml")
    # ansible-playbook's --flush-cache (ansible-inventory has it only from ansible-core 2.18 on) reads the portal again
    playbook = portal.workdir / "noop.yml"
    playbook.write_text("- hosts: localhost\n  gather_facts: false\n  tasks: []\n")
    dummy, dummy2, flushed_requests = run(portal, ["ansible-playbook", "--flush-cache", str(playbook)], config,
                                          name="cached.isr_mqtt.yml")
    refreshed, dummy, refreshed_requests = run(portal, ["ansible-inventory", "--graph"], config, name="cached.isr_mqtt.yml")
    assert (first_requests, second_requests, flushed_requests, refreshed_requests) == (3, 0, 3, 0)
    assert first == second == refreshed and len(graph_groups(second)["mqtt_clients"]) == CLIENTS
    cached = "".join(p.read_text() for p in (portal.workdir / "cache").iterdir())
    assert portal.rows[0]["client_id"] in cached and portal.token not in cached


def test_token_as_a_vault_value_in_the_inventory_file(portal):
    vault_file = portal.workdir / "vault-pass"
    vault_file.write_text("inventory-vault-password\n")
    encrypted = subprocess.run([bin_path("ansible-vault"), "encrypt_string", "--vault-password-file", str(vault_file),
                                "--name", "api_token", portal.token], capture_output=True, text=True, check=True,
                               env=ansible_env()).stdout
    config = "plugin: isr.mqtt.portal\nfilters:\n  label: ^sensor-00\n" + encrypted
    stdout, dummy, list_requests = run(portal, ["ansible-inventory", "--graph", "--vault-password-file", str(vault_file)],
                                       config, name="vaulted.isr_mqtt.yml",
                                       env={"ISR_PORTAL_TOKEN": "isr_mqtt_rest_not-this-one"})
    assert list_requests == 3
    assert sorted(graph_groups(stdout)["mqtt_clients"]) == ["sensor-%04d" % n for n in range(100)]


def test_playbook_resumes_the_paused_clients(portal):
    stdout, dummy, dummy = run(portal, ["ansible-playbook", str(PLAYBOOK)], name="portal.isr_mqtt.yml")
    assert stdout.count("ok=2    changed=1 ") == 6, stdout
    assert "labelled {{ lookup('ansible.builtin.pipe'" in stdout  # shown as data
    assert not portal.marker.exists()  # and never run as a template
    rows = PortalClient(portal.url, portal.token).list_clients()
    assert len(rows) == CLIENTS and not [r for r in rows if r["paused"]]
    by_id = dict((r["client_id"], r) for r in rows)
    for before in portal.rows:  # resuming changed nothing else
        after = by_id[before["client_id"]]
        assert dict((key, after[key]) for key in before if key != "paused") == dict((key, before[key]) for key in before if key != "paused")


def test_the_bare_file_name_isr_mqtt_yml_is_taken(portal):
    stdout, dummy, list_requests = run(portal, ["ansible-inventory", "--graph"], name="isr_mqtt.yml")
    assert list_requests == 3
    assert len(graph_groups(stdout)["mqtt_clients"]) == CLIENTS


def test_a_portal_url_with_a_part_of_the_api_path_fails_before_any_request(portal):
    inventory = portal.workdir / "doubled.isr_mqtt.yml"
    inventory.write_text("plugin: isr.mqtt.portal\nportal_url: %s/api/v1\n" % portal.url)
    env = ansible_env(dict(awx_credential_env(portal.url, portal.token), ANSIBLE_INVENTORY_UNPARSED_FAILED="true"))
    env.pop("ANSIBLE_INVENTORY_UNPARSED_WARNING")
    portal.control.reset_counters()
    completed = subprocess.run([bin_path("ansible-inventory"), "-i", str(inventory), "--graph"], capture_output=True,
                               text=True, env=env, cwd=str(portal.workdir), timeout=600, check=False)
    output = " ".join((completed.stdout + completed.stderr).split())  # the message may be wrapped
    assert completed.returncode != 0, output
    assert "portal_url %s/api/v1 ends in /api/v1" % portal.url in output
    assert "give the portal's origin only, for example %s " % portal.url in output
    assert portal.control.counters()["total"] == 0 and portal.token not in output
