"""Issue 23: a purge never deletes a client outside the fleet without the explicit opt-in (item 1), and two runs of
one fleet into two stores with separate lock directories leave no unreported duplicate and lose no password
(item 7). Real ansible-playbook (isr.mqtt.mqtt_fleet and the isr.mqtt.fleet role) against the emulator."""
import json
import subprocess
import threading
import time

import pytest
import yaml

from fleet.test_fleet_role import Fleet, devices
from support import Emulator, ansible_env, bin_path, seed_clients

# Each of these deleted every foreign client in issue 23 (or would have): all refused without purge_allow_foreign.
EVERYTHING = [".*", "^", "$", ".", "(?:)", "|", r"\S*", "x?", r"[\s\S]*", r"\A", "dev-", "^[a-z]", "^dev-|other", "(?i)^dev-",
              "^other-"]
FLEET = ["dev-%03d" % i for i in range(3)]
STRAYS = ["dev-old-%02d" % i for i in range(12)]  # of the fleet's naming, not in the fleet: purge candidates
FOREIGN = ["other-%02d" % i for i in range(10)]  # somebody else's


@pytest.fixture
def portal(tmp_path):
    emu = Emulator(tmp_path, db=tmp_path / "portal.sqlite").start()
    yield emu
    emu.stop()


def seed(emulator, labels):
    return seed_clients(emulator.db, emulator.account_id, labels)


def rows_by_label(emulator):
    """{label: [client_id, ...]} straight from the portal state (the emulator's counts) plus ids from a list."""
    from ansible_collections.isr.mqtt.plugins.module_utils._portal import PortalClient
    found = {}
    for row in PortalClient(emulator.url, emulator.token).list_clients():
        found.setdefault(row["label"], []).append(row)
    return found


def playbook(tmp_path, name, tasks):
    path = tmp_path / name
    path.write_text(yaml.safe_dump([{"name": name, "hosts": "localhost", "gather_facts": False, "connection": "local",
                                     "tasks": tasks}], sort_keys=False))
    return path


def run(emulator, path, *args):
    done = subprocess.run([bin_path("ansible-playbook"), "-i", "localhost,", str(path)] + list(args), capture_output=True,
                          text=True, cwd=str(path.parent), env=ansible_env(emulator.env()), timeout=600, check=False)
    return done.returncode, done.stdout + done.stderr


def fleet_task(purge_match, **options):
    args = dict({"clients": [{"label": label} for label in FLEET], "purge": True, "purge_match": purge_match}, **options)
    return {"name": "purge %s" % purge_match, "isr.mqtt.mqtt_fleet": args}


# ---------------------------------------------------------------------------
# item 1: mqtt_fleet
# ---------------------------------------------------------------------------

def test_mqtt_fleet_refuses_every_purge_outside_the_fleet_or_over_purge_max_with_zero_writes(portal, tmp_path):
    seed(portal, FLEET + STRAYS + FOREIGN)
    before = portal.control.state()["labels"]
    tasks = []
    for index, pattern in enumerate(EVERYTHING + ["^dev-"]):  # the last: in the fleet's naming, but 12 > purge_max 10
        task = dict(fleet_task(pattern), register="r%d" % index, ignore_errors=True)
        tasks.append(task)
    dump = "{{ [%s] | to_json }}" % ", ".join("r%d" % i for i in range(len(tasks)))
    tasks.append({"name": "dump", "ansible.builtin.copy": {"content": dump, "dest": str(tmp_path / "results.json"), "mode": "0600"}})
    portal.control.reset_counters()
    rc, out = run(portal, playbook(tmp_path, "refusals.yml", tasks))
    assert rc == 0, out[-4000:]  # ignore_errors: the play goes on; each task is judged below
    results = json.loads((tmp_path / "results.json").read_text())
    for pattern, result in zip(EVERYTHING, results):
        assert result["failed"], (pattern, result)
        assert "purge_match %r" % pattern in result["msg"] and "purge_allow_foreign: true" in result["msg"], result["msg"]
    over = results[-1]
    assert over["failed"] and "purge would delete 12 clients, more than purge_max (10)" in over["msg"]
    assert all("%s (" % label in over["msg"] for label in STRAYS) and len(over["would_purge"]) == 12
    counters = portal.control.counters()
    assert counters["writes"] == 0 and counters["by_route"].get("GET /api/v1/subscriber/publishers") == 1  # only ^dev- listed
    assert portal.control.state()["labels"] == before


def test_mqtt_fleet_check_mode_lists_the_rows_then_purge_max_and_the_opt_in_allow_them(portal, tmp_path):
    seed(portal, FLEET + STRAYS + FOREIGN)
    ids = dict((label, rows[0]["client_id"]) for label, rows in rows_by_label(portal).items())
    portal.control.reset_counters()
    rc, out = run(portal, playbook(tmp_path, "check.yml", [fleet_task("^dev-", purge_max=12)]), "--check", "--diff")
    assert rc == 0, out[-4000:]
    assert portal.control.counters()["writes"] == 0
    assert "purge would delete 12 clients: " in out
    for label in STRAYS:
        assert "%s (%s)" % (label, ids[label]) in out  # the printed line, and the diff's before
    assert '"client_id": "%s"' % ids[STRAYS[0]] in out or "client_id: %s" % ids[STRAYS[0]] in out

    rc, out = run(portal, playbook(tmp_path, "purge.yml", [
        fleet_task("^dev-", purge_max=12),
        fleet_task(".*", purge_allow_foreign=True),  # the opt-in: every foreign client goes, the fleet stays
    ]))
    assert rc == 0, out[-4000:]
    assert "purge deleted 12 clients: " in out and "purge deleted 10 clients: " in out
    assert sorted(portal.control.state()["labels"]) == FLEET


# ---------------------------------------------------------------------------
# item 1: the role
# ---------------------------------------------------------------------------

def test_role_purge_refusals_change_nothing_and_name_the_fix_check_mode_lists_the_rows(portal, tmp_path):
    fleet = Fleet(tmp_path, portal)
    wanted = [{"label": label} for label in FLEET]
    fleet.run(wanted)
    seed(portal, STRAYS[:11] + FOREIGN)
    before = portal.control.state()["labels"]
    ids = dict((label, rows[0]["client_id"]) for label, rows in rows_by_label(portal).items())

    portal.control.reset_counters()
    out = fleet.run(wanted, expect_rc=2, extra={"fleet_purge": True, "fleet_purge_match": ".*"})
    assert "purge_match '.*' matches an empty label" in out and "fleet_purge_allow_foreign" in out
    out = fleet.run(wanted, expect_rc=2, extra={"fleet_purge": True, "fleet_purge_match": "^dev-"})  # 11 > 10
    assert "purge would delete 11 clients, more than purge_max (10)" in out and "fleet_purge_max" in out
    assert all("%s (%s)" % (label, ids[label]) in out for label in STRAYS[:11])
    out = fleet.run(wanted, expect_rc=2, extra={"fleet_purge": True, "fleet_purge_match": "^dev-", "fleet_purge_max": -1})
    assert "fleet_purge_max must be 0" in out
    out = fleet.run(wanted, extra={"fleet_purge": True, "fleet_purge_match": "^dev-", "fleet_purge_max": 11}, args=["--check"])
    assert "purge would delete 11 clients: " in out and "%s (%s)" % (STRAYS[0], ids[STRAYS[0]]) in out
    assert portal.control.counters()["writes"] == 0 and portal.control.state()["labels"] == before

    out = fleet.run(wanted, extra={"fleet_purge": True, "fleet_purge_match": "^dev-", "fleet_purge_max": 11})
    assert "purge deleted 11 clients: " in out and "%s (%s)" % (STRAYS[10], ids[STRAYS[10]]) in out
    out = fleet.run(wanted, extra={"fleet_purge": True, "fleet_purge_match": "^other-", "fleet_purge_allow_foreign": True})
    assert "purge deleted 10 clients: " in out
    assert sorted(portal.control.state()["labels"]) == FLEET
    fleet.assert_store_matches_portal(FLEET)


# ---------------------------------------------------------------------------
# item 7: two stores, separate lock directories
# ---------------------------------------------------------------------------

def test_a_client_created_by_another_run_during_the_writes_fails_the_run_naming_it(portal, tmp_path):
    """Deterministic: the 'other run' creates race-0003 (straight in the portal's database) after this run listed."""
    fleet = Fleet(tmp_path, portal)
    wanted = devices(6, prefix="race-")
    portal.control.set_faults(latency_s=1.0)  # three rounds of two creates: the other create lands among them
    command = fleet.command(wanted, extra={"fleet_parallel": 2})
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(tmp_path),
                            env=ansible_env(portal.env()))
    try:
        deadline = time.monotonic() + 300
        while not portal.control.counters()["by_route"].get("POST /api/v1/subscriber/publishers"):
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first create"
            time.sleep(0.05)
        twin = seed(portal, ["race-0003"])[0]["client_id"]
        out = proc.communicate(timeout=300)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    portal.control.set_faults()
    assert proc.returncode == 2, out[-4000:]
    ours = [row["client_id"] for row in rows_by_label(portal)["race-0003"] if row["client_id"] != twin]
    assert "Another run changed this fleet at the same time" in out and "race-0003 (" in out
    assert twin in out and "%s created by this run" % ours[0] in out
    fleet.assert_store_matches_portal(["race-%04d" % i for i in range(6) if i != 3])  # every password kept
    entries = fleet.entries()
    assert entries["race-0003"]["client_id"] == ours[0]
    assert portal.control.verify(entries["race-0003"]["username"], entries["race-0003"]["password"])["ok"]

    portal.control.reset_counters()
    out = fleet.run(wanted, expect_rc=2)  # and the next run stops before any write, naming both
    assert "Labels held by several portal clients, nothing was changed" in out and twin in out and ours[0] in out
    assert portal.control.counters()["writes"] == 0


def test_two_runs_into_two_stores_leave_no_unreported_duplicate_and_lose_no_password(tmp_path, emulator):
    """Two role runs of one fleet at once, each with its own store and lock directory (two controllers)."""
    wanted = devices(12, prefix="two-")
    labels = [d["label"] for d in wanted]
    runs = {}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        runs[name] = Fleet(tmp_path / name, emulator)
    emulator.control.set_faults(latency_s=0.5)  # widens the window between the list and the last create
    outs = {}

    def go(name):
        outs[name] = runs[name].run(wanted, expect_rc=None, extra={"fleet_parallel": 4},
                                    env={"ISR_MQTT_LOCK_DIR": str(tmp_path / name / "locks")})

    threads = [threading.Thread(target=go, args=(name,)) for name in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    emulator.control.set_faults()

    portal = rows_by_label(emulator)
    duplicates = dict((label, [r["client_id"] for r in rows]) for label, rows in portal.items() if len(rows) > 1)
    for name, out in outs.items():
        recap = out.split("PLAY RECAP")[-1]
        assert "failed=0" in recap or "Another run changed this fleet at the same time" in out \
            or "Labels held by several portal clients" in out or "holds none of the" in out, out[-4000:]
    for label, ids in duplicates.items():  # every duplicate is named, with its client_ids, by a run
        assert any("%s (" % label in out and all(cid in out for cid in ids) for out in outs.values()), (label, ids)

    stored = [dict(entry, store=name, label=label) for name, f in runs.items() if f.store.exists()
              for label, entry in f.entries().items()]
    lost, stale = [], []
    for label in labels:
        for row in portal.get(label, []):
            held = [e for e in stored if e["client_id"] == row["client_id"]]
            if not any(emulator.control.verify(e["username"], e["password"])["ok"] for e in held):
                lost.append((label, row["client_id"]))
            stale.extend(e for e in held if not emulator.control.verify(e["username"], e["password"])["ok"])
    assert all(portal.get(label) for label in labels) and lost == []
    # A stored password that no longer works is one the portal rotated after it: the next run of that store sees the
    # later rotated_at and recovers it (rotated_elsewhere).
    for entry in stale:
        row = [r for r in portal[entry["label"]] if r["client_id"] == entry["client_id"]][0]
        assert row["rotated_at"] > entry["rotated_at"], (entry["label"], row["rotated_at"], entry["rotated_at"])
    print(json.dumps({"duplicates": len(duplicates), "lost": len(lost), "stale": len(stale),
                      "failed": [name for name, out in outs.items() if "failed=0" not in out.split("PLAY RECAP")[-1]]}))


def test_a_second_store_that_starts_after_the_first_run_is_refused_before_any_write(tmp_path, emulator):
    """Run B of the same fleet into its own store and lock directory, after run A created everything: B's store holds
    none of the fleet's clients, so recovering them would take A's passwords (the lost-store guard refuses)."""
    wanted = devices(6, prefix="late-")
    runs = {}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        runs[name] = Fleet(tmp_path / name, emulator)
    env = dict((name, {"ISR_MQTT_LOCK_DIR": str(tmp_path / name / "locks")}) for name in runs)
    runs["a"].run(wanted, env=env["a"])
    emulator.control.reset_counters()
    out = runs["b"].run(wanted, expect_rc=2, env=env["b"])
    assert "holds none of the 6 clients" in out and "fleet_recover_missing: force" in out, out[-4000:]
    assert emulator.control.counters()["writes"] == 0
    runs["a"].assert_store_matches_portal([d["label"] for d in wanted])  # A's passwords still log in
