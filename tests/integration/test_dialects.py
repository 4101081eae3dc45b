"""The modules, the role and the probe against emulator dialects: answer shapes other than the default
(tests/emulator/dialects.py), over real HTTP with real ansible-playbook.

Each understood dialect must give the same outcome: writes once, reruns report changed=false, one row per
label. A dialect the reader cannot understand must stop every module before any write."""
import json
import subprocess
from pathlib import Path

import pytest
from ansible.release import __version__ as ansible_core_version

from fleet.test_fleet_role import Fleet, devices
from support import Emulator, ansible_env, bin_path

HERE = Path(__file__).resolve().parent
CORE_BEFORE_2_19 = tuple(int(part) for part in ansible_core_version.split(".")[:2]) < (2, 19)
UNDERSTOOD = ("cursor", "link", "offset", "drift", "both_ids", "maintenance")
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


# What each dialect must make the client say (it met the drift, waited out the 503 windows).
WARNED = {"drift": "changed while it was read", "maintenance": "Portal unavailable: waiting"}


@pytest.mark.parametrize("dialect_emulator", UNDERSTOOD, indirect=True)
def test_modules_converge_without_duplicates(dialect_emulator, run_playbook, tmp_path):
    result = run_playbook(playbook(tmp_path, dialect_emulator, HERE / "dialects" / "modules.yml"), env=dialect_emulator.env())
    assert result.rc == 0, result
    if dialect_emulator.dialect in WARNED:
        assert WARNED[dialect_emulator.dialect] in result.stdout + result.stderr, result


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
      - "'{word}' in item.msg"
  loop: "{{{{ [new_client, removed, paused, fleet] }}}}"
  loop_control: {{label: "{{{{ item.msg | default('') | truncate(60) }}}}"}}
"""


@pytest.mark.parametrize("dialect_emulator, word", [("unknown", "continuation"), ("drift_always", "changed while it was read")],
                         indirect=["dialect_emulator"])
def test_a_list_that_cannot_be_trusted_writes_nothing(dialect_emulator, word, run_playbook, tmp_path):
    """unknown: a continuation no reader understands; drift_always: a list whose pages shift every time it is read."""
    from ansible_collections.isr.mqtt.plugins.module_utils._portal import PortalClient
    control = dialect_emulator.control
    control.set_dialect("default")
    client = PortalClient(dialect_emulator.url, dialect_emulator.token)
    for index in range(3):
        client.create_client("seed-%d" % index, known_client_ids=set())
    control.set_dialect(dialect_emulator.dialect)
    control.reset_counters()
    tasks = tmp_path / "unknown.yml"
    tasks.write_text(UNKNOWN_TASKS.format(label="refused", url=dialect_emulator.url, token=dialect_emulator.token, word=word))
    result = run_playbook(playbook(tmp_path, dialect_emulator, tasks), env=dialect_emulator.env())
    assert result.rc == 0, result
    counters = control.counters()
    pages = 1 if dialect_emulator.dialect == "unknown" else 2 * 2  # drift: two pages, read twice
    assert counters["writes"] == 0 and counters["total"] == 4 * pages, counters
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
    "drift": {"envelope": "results", "pagination": "offset_total", "total": 3,
              "spellings": {"id": {"client_id": 2}, "label": {"label": 2}, "pause": {"paused": 2}}},
    "both_ids": {"envelope": "items", "pagination": "link", "total": 3,
                 "spellings": {"id": {"client_id": 2}, "extra_id": {"id": 2}, "label": {"label": 2}, "pause": {"paused": 2}}},
    "maintenance": {"envelope": "items", "pagination": "link", "total": 3,
                    "spellings": {"id": {"client_id": 2}, "label": {"label": 2}, "pause": {"paused": 2}}},
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
    if dialect_emulator.dialect == "both_ids":
        assert report["subscribers"]["spellings"]["id"] == {"subscriber_id": 1}
        assert report["subscribers"]["spellings"]["extra_id"] == {"id": 1}
    if dialect_emulator.dialect == "maintenance":  # the IETF draft's headers, read
        assert set(report["rate_limit"]["headers"]) == {"RateLimit", "RateLimit-Policy"}
        assert report["rate_limit"]["limit"] == 5000 and report["rate_limit"]["window_seconds"] == 3600
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


# ---------------------------------------------------------------- the inventory plugin

def seeded(emu, count=3):
    """``count`` clients (the second paused) and one subscriber, made in the default dialect; then the emulator's."""
    from ansible_collections.isr.mqtt.plugins.module_utils._portal import PortalClient
    emu.control.set_dialect("default")
    client = PortalClient(emu.url, emu.token)
    rows = []
    for index in range(count):
        row, dummy = client.create_client("inv-%d" % index, known_client_ids=set())
        if index == 1:
            client.pause_client(row["client_id"])
        rows.append(row)
    client.create_subscriber("inv-sub", known_ids=set())
    emu.control.set_dialect(emu.dialect)
    emu.control.reset_counters()
    return rows


def inventory(emu, tmp_path):
    source = tmp_path / "portal.isr_mqtt.yml"
    source.write_text("plugin: isr.mqtt.portal\ninclude_subscribers: true\n")
    env = ansible_env(emu.env())
    env.pop("ANSIBLE_INVENTORY_UNPARSED_WARNING", None)
    env["ANSIBLE_INVENTORY_UNPARSED_FAILED"] = "true"
    return subprocess.run([bin_path("ansible-inventory"), "-i", str(source), "--list"], capture_output=True, text=True,
                          env=env, cwd=str(tmp_path), timeout=300, check=False)


def plain(value):
    return value["__ansible_unsafe"] if isinstance(value, dict) and "__ansible_unsafe" in value else value


@pytest.mark.parametrize("dialect_emulator", ["drift", "both_ids", "maintenance"], indirect=True)
def test_inventory_plugin_reads_every_client_by_its_path_id(dialect_emulator, tmp_path):
    rows = seeded(dialect_emulator)
    done = inventory(dialect_emulator, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    hostvars = json.loads(done.stdout)["_meta"]["hostvars"]
    by_id = dict((plain(v["mqtt_client_id"]), v) for v in hostvars.values() if "mqtt_client_id" in v)
    assert set(by_id) == set(r["client_id"] for r in rows)
    assert [plain(by_id[r["client_id"]]["mqtt_paused"]) for r in rows] == [False, True, False]
    assert [plain(v["mqtt_subscriber_id"]) for v in hostvars.values() if "mqtt_subscriber_id" in v][0].startswith("sub-")
    assert dialect_emulator.control.counters()["writes"] == 0


@pytest.mark.parametrize("dialect_emulator", ["drift_always"], indirect=True)
def test_inventory_plugin_refuses_a_list_that_keeps_drifting(dialect_emulator, tmp_path):
    seeded(dialect_emulator)
    done = inventory(dialect_emulator, tmp_path)
    assert done.returncode != 0 and "changed while it was read, twice" in done.stdout + done.stderr, done.stderr[-3000:]


# ---------------------------------------------------------------- 503 windows with Retry-After (seconds)

WINDOW_TASKS = """
- name: Create a client while the portal is unavailable
  isr.mqtt.mqtt_client: {{label: "{label}", portal_url: "{url}", api_token: "{token}"}}
  register: made
  no_log: true

- name: Its password logs in
  ansible.builtin.uri:
    url: "{control}/verify"
    method: POST
    body_format: json
    body: {{username: "{{{{ made.client.username }}}}", password: "{{{{ made.password }}}}"}}
  register: login
  no_log: true

- name: Created once, with a password that works
  ansible.builtin.assert:
    that: [made is changed, login.json.ok]
    quiet: true
"""


@pytest.mark.parametrize("dialect_emulator, fault", [
    ("default", {"unavailable_s": 2}),  # 503 + Retry-After in seconds on the list: waited out
    ("maintenance", {"unavailable_s": 2}),  # ... as an HTTP date
    ("default", {"unavailable_after_create": 1}),  # the create is done, then answered 503: re-listed, adopted, rotated
], indirect=["dialect_emulator"])
def test_503_windows_are_waited_out_and_a_create_is_never_repeated_blindly(dialect_emulator, fault, run_playbook, tmp_path):
    seeded(dialect_emulator, count=2)
    control = dialect_emulator.control
    control.set_faults(**fault)
    tasks = tmp_path / "window.yml"
    tasks.write_text(WINDOW_TASKS.format(label="in-window", url=dialect_emulator.url, token=dialect_emulator.token,
                                         control=dialect_emulator.info["control_url"]))
    result = run_playbook(playbook(tmp_path, dialect_emulator, tasks), env=dialect_emulator.env())
    assert result.rc == 0, result
    output = result.stdout + result.stderr
    warned = not CORE_BEFORE_2_19  # before 2.19 no_log hides the task's warnings too
    if warned:
        assert "Portal unavailable: waiting" in output and "answered 503 with Retry-After" in output, result
    assert control.state()["labels"]["in-window"] == 1
    if "unavailable_after_create" in fault:
        assert "answer was lost" in output or not warned
        assert control.counters()["by_route"]["POST /api/v1/subscriber/publishers"] == 1
