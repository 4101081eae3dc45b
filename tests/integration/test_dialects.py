"""The modules, the role and the probe against emulator dialects: answer shapes other than the default
(tests/emulator/dialects.py), over real HTTP with real ansible-playbook.

Each understood dialect must give the same outcome: writes once, reruns report changed=false, one row per
label. A dialect the reader cannot understand must stop every module before any write."""
import json
import subprocess
from pathlib import Path

import pytest

from fleet.test_fleet_role import Fleet, devices
from support import Emulator, ansible_env, bin_path

HERE = Path(__file__).resolve().parent
UNDERSTOOD = ("cursor", "link", "offset")
PLAYBOOK = """
- name: Dialect {dialect}
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    dialect: "{dialect}"
    portal_url: "{url}"
    api_token: "{token}"
    control_url: "{control}"
  tasks:
    - name: Run the tasks
      ansible.builtin.include_tasks: "{tasks}"
"""


@pytest.fixture
def dialect_emulator(request, tmp_path):
    emu = Emulator(tmp_path, extra_args=["--dialect", request.param]).start()
    emu.dialect = request.param
    yield emu
    emu.stop()


def playbook(tmp_path, emu, tasks):
    path = tmp_path / "dialect.yml"
    path.write_text(PLAYBOOK.format(dialect=emu.dialect, url=emu.url, token=emu.token, control=emu.info["control_url"],
                                    tasks=tasks))
    return path


@pytest.mark.parametrize("dialect_emulator", UNDERSTOOD, indirect=True)
def test_modules_converge_without_duplicates(dialect_emulator, run_playbook, tmp_path):
    result = run_playbook(playbook(tmp_path, dialect_emulator, HERE / "dialects" / "modules.yml"), env=dialect_emulator.env())
    assert result.rc == 0, result


@pytest.mark.parametrize("dialect_emulator", UNDERSTOOD, indirect=True)
def test_role_converges_and_stores_working_passwords(dialect_emulator, tmp_path):
    work = tmp_path / "role"
    work.mkdir()
    fleet = Fleet(work, dialect_emulator)
    wanted = devices(5)
    wanted[0]["paused"] = True
    fleet.run(wanted)
    labels = [d["label"] for d in wanted]
    fleet.assert_store_matches_portal(labels[1:])  # the paused one cannot log in
    dialect_emulator.control.reset_counters()
    out = fleet.run(wanted)
    assert "changed=0" in out.split("PLAY RECAP")[-1], out[-3000:]
    assert dialect_emulator.control.counters()["writes"] == 0
    assert dialect_emulator.control.state()["labels"] == dict.fromkeys(labels, 1)


UNKNOWN_TASKS = """
- name: A new client ({label})
  isr.mqtt.mqtt_client: {{label: new-one, portal_url: "{url}", api_token: "{token}"}}
  register: new_client
  ignore_errors: true

- name: Remove a client that exists
  isr.mqtt.mqtt_client: {{label: seed-0, state: absent, portal_url: "{url}", api_token: "{token}"}}
  register: removed
  ignore_errors: true

- name: Pause a client that exists
  isr.mqtt.mqtt_client: {{label: seed-1, paused: true, portal_url: "{url}", api_token: "{token}"}}
  register: paused
  ignore_errors: true

- name: A fleet
  isr.mqtt.mqtt_fleet: {{clients: [{{label: seed-0}}, {{label: new-two}}], portal_url: "{url}", api_token: "{token}"}}
  register: fleet
  ignore_errors: true

- name: Every module refused, naming what it did not understand
  ansible.builtin.assert:
    that:
      - item is failed
      - "'continuation' in item.msg"
  loop: "{{{{ [new_client, removed, paused, fleet] }}}}"
  loop_control: {{label: "{{{{ item.msg | default('') | truncate(60) }}}}"}}
"""


@pytest.mark.parametrize("dialect_emulator", ["unknown"], indirect=True)
def test_unknown_continuation_writes_nothing(dialect_emulator, run_playbook, tmp_path):
    from ansible_collections.isr.mqtt.plugins.module_utils._portal import PortalClient
    control = dialect_emulator.control
    control.set_dialect("default")
    client = PortalClient(dialect_emulator.url, dialect_emulator.token)
    for index in range(3):
        client.create_client("seed-%d" % index, known_client_ids=set())
    control.set_dialect("unknown")
    control.reset_counters()
    tasks = tmp_path / "unknown.yml"
    tasks.write_text(UNKNOWN_TASKS.format(label="refused", url=dialect_emulator.url, token=dialect_emulator.token))
    result = run_playbook(playbook(tmp_path, dialect_emulator, tasks), env=dialect_emulator.env())
    assert result.rc == 0, result
    counters = control.counters()
    assert counters["writes"] == 0 and counters["total"] == 4, counters
    assert control.state()["labels"] == {"seed-0": 1, "seed-1": 1, "seed-2": 1}


# ---------------------------------------------------------------- the probe, ad hoc

EXPECTED = {
    "default": {"envelope": "items", "pagination": "link",
                "spellings": {"id": {"client_id": 3}, "label": {"label": 3}, "pause": {"paused": 3}}},
    "cursor": {"envelope": "data", "pagination": "cursor",
               "spellings": {"id": {"client_id": 2}, "label": {"name": 2}, "pause": {"enabled (inverted)": 2}}},
    "link": {"envelope": "array", "pagination": "link_header",
             "spellings": {"id": {"client_id": 2}, "label": {"label": 2}, "pause": {"status=active": 1, "status=paused": 1}}},
    "offset": {"envelope": "results", "pagination": "offset_total", "total": 3,
               "spellings": {"id": {"id": 2}, "label": {"label": 2}, "pause": {"is_paused": 2}}},
}


def probe(emu):
    done = subprocess.run([bin_path("ansible"), "localhost", "-m", "isr.mqtt.portal_info"], capture_output=True, text=True,
                          env=ansible_env(emu.env()), timeout=300, check=False)
    text = done.stdout
    return done.returncode, json.loads(text[text.index("{"):]), text + done.stderr


@pytest.mark.parametrize("dialect_emulator", sorted(EXPECTED) + ["unknown"], indirect=True)
def test_probe_reports_what_it_saw(dialect_emulator):
    from ansible_collections.isr.mqtt.plugins.module_utils._portal import PortalClient
    control = dialect_emulator.control
    control.set_dialect("default")
    client = PortalClient(dialect_emulator.url, dialect_emulator.token)
    for index in range(3):
        row, dummy = client.create_client("probe-%d" % index, known_client_ids=set())
        if index == 1:
            client.pause_client(row["client_id"])
    client.create_subscriber("probe-sub", known_ids=set())
    control.set_dialect(dialect_emulator.dialect)
    control.reset_counters()

    rc, report, text = probe(dialect_emulator)
    assert rc == 0, text
    counters = control.counters()  # counts the API requests; the OpenAPI document is not one
    assert counters["writes"] == 0 and counters["total"] == 2 and 2 < report["requests"] <= 4, (counters, report["requests"])
    assert dialect_emulator.token not in text
    assert report["changed"] is False and report["token"] == "accepted" and report["mgmt_addon"] is True
    assert report["rate_limit"]["remaining"] is not None and 0 < report["rate_limit"]["reset_seconds"] <= 3600
    if dialect_emulator.dialect == "unknown":
        assert report["understood"] is False
        assert any("continuation" in problem for problem in report["problems"]), report["problems"]
        return
    assert report["understood"] is True and report["problems"] == [], report["problems"]
    for key, value in EXPECTED[dialect_emulator.dialect].items():
        assert report["clients"][key] == value, (key, report["clients"])
    if dialect_emulator.dialect == "link":
        assert report["api"]["source"] is None and any("OpenAPI" in note for note in report["notes"])
    else:
        assert report["api"]["version"] == "1.0" and report["api"]["create_password_fields"] == ["device.password"]
        assert "label" in report["api"]["create_request_fields"] and report["api"]["rotate_password_fields"] == ["password"]


@pytest.mark.parametrize("dialect_emulator", ["default", "link"], indirect=True)
def test_probe_with_a_bad_token_fails_and_says_why(dialect_emulator):
    env = dict(dialect_emulator.env(), ISR_PORTAL_TOKEN="isr_mqtt_rest_wrong")
    done = subprocess.run([bin_path("ansible"), "localhost", "-m", "isr.mqtt.portal_info"], capture_output=True, text=True,
                          env=ansible_env(env), timeout=300, check=False)
    assert done.returncode != 0
    assert '"token": "rejected"' in done.stdout
    assert ("redirect" in done.stdout) == (dialect_emulator.dialect == "link")
    assert "isr_mqtt_rest_wrong" not in done.stdout + done.stderr
