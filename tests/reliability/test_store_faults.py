"""A store that cannot break silently: the fleet role (real ansible-playbook, real HTTP) after the store was damaged,
after a rotation outside this collection, with another vault password, and on a full disk.

Expected everywhere: 0 duplicates and 0 stale or missing passwords after the rerun (audit() checks every entry
against the emulator's verify endpoint), or a clear error naming what to do, with 0 requests to the portal.
"""
import json
import os
import subprocess
import time

import pytest
import requests

from fleet.test_fleet_role import devices

from .conftest import audit, progress_counts, report

pytestmark = pytest.mark.slow

ROTATE = "POST /api/v1/subscriber/publishers/{client_id}/rotate-credentials"


def damage(text, label, how):
    """The store text with ``label``'s entry damaged: one hex digit flipped, ciphertext cut short, or password null."""
    lines = text.splitlines(True)
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(json.dumps(label) + ":"))
    first = next(i for i in range(start, len(lines)) if "password:" in lines[i])
    end = next((i for i in range(first + 1, len(lines)) if not lines[i].startswith("      ")), len(lines))
    if how == "null":
        return "".join(lines[:first] + ["    password: null\n"] + lines[end:])
    if how == "truncated":
        return "".join(lines[:first + 3] + lines[end:])
    line = lines[first + 3]
    col = len(line) - len(line.lstrip()) + 7
    lines[first + 3] = line[:col] + ("0" if line[col] != "0" else "1") + line[col + 1:]
    return "".join(lines)


def test_damaged_entries_are_named_and_recovered_by_rotation(ws, emulator):
    fleet = devices(8)
    labels = [d["label"] for d in fleet]
    ws.run(fleet)
    text = ws.store.read_text()
    for label, how in (("dev-0001", "flipped"), ("dev-0003", "truncated"), ("dev-0005", "null")):
        text = damage(text, label, how)
    ws.store.write_text(text)
    emulator.control.reset_counters()
    out = ws.run(fleet)
    by_route = emulator.control.counters()["by_route"]
    result = audit(ws, labels)
    report("store entries damaged (bit flip, truncated, null)", runs=2, duplicates=result["duplicates"],
           lost=len(result["lost"]), stale=result["stale"], missing=result["missing"], recovered=by_route.get(ROTATE, 0))
    for label in ("dev-0001", "dev-0003", "dev-0005"):
        assert "%s: " % label in out, out[-3000:]
    assert by_route.get(ROTATE, 0) == 3 == progress_counts(out).get("rotated"), by_route
    assert result["duplicates"] == 0 and result["lost"] == [] and result["stored"] == 8, result


def test_a_password_rotated_through_the_api_between_runs_is_recovered(ws, emulator):
    fleet = devices(5)
    labels = [d["label"] for d in fleet]
    ws.run(fleet)
    time.sleep(1.1)  # the portal's rotated_at has one-second resolution
    entry = ws.entries()["dev-0002"]
    answer = requests.post("%s/api/v1/subscriber/publishers/%s/rotate-credentials" % (emulator.url, entry["client_id"]),
                           headers={"Authorization": "Bearer %s" % emulator.token}, timeout=30)
    assert answer.status_code == 200
    assert audit(ws, labels)["lost"] == [("dev-0002", "wrong password")]  # the fault is real: the store is stale
    out = ws.run(fleet)
    result = audit(ws, labels)
    report("password rotated outside the collection between runs", runs=2, duplicates=result["duplicates"],
           lost=len(result["lost"]), stale=result["stale"], missing=result["missing"], recovered=progress_counts(out).get("rotated", 0))
    assert "rotated outside this collection" in out and "dev-0002" in out
    assert result["duplicates"] == 0 and result["lost"] == [], result
    assert progress_counts(out).get("rotated") == 1
    assert progress_counts(ws.run(fleet)) == {}  # and the next run has nothing to do


def test_a_run_with_another_vault_password_fails_before_any_request(ws, emulator):
    fleet = devices(4)
    ws.run(fleet)
    before = ws.store.read_bytes()
    good = ws.vault_file.read_text()
    ws.vault_file.write_text("a-different-vault-password\n")
    emulator.control.reset_counters()
    try:
        out = ws.run(fleet, expect_rc=2, extra={"fleet_rotate": ["dev-0001"]})
    finally:
        ws.vault_file.write_text(good)
    counters = emulator.control.counters()
    report("run with another vault password", runs=2, requests=counters["total"], writes=counters["writes"])
    assert "none of the 4 vaulted entries" in out and "--vault-id fleet@prompt" in out, out[-3000:]
    assert counters["total"] == 0 and ws.store.read_bytes() == before


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_disk_fails_before_any_request_and_a_rerun_rotates_nothing(ws, emulator, tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (%s); the action's own test injects ENOSPC instead" % done.stderr.strip())
    try:
        store = mount / "credentials.yml"
        fleet = devices(20)
        ws.run(fleet, extra={"fleet_store": str(store)})
        fd = os.open(str(mount / "filler"), os.O_WRONLY | os.O_CREAT, 0o600)  # fill the disk
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        before = store.read_bytes()
        for dummy in range(2):  # the run, and a rerun on the same full disk
            emulator.control.reset_counters()
            out = ws.run(fleet, expect_rc=2, extra={"fleet_store": str(store), "fleet_rotate": ["dev-0001", "dev-0002"]})
            counters = emulator.control.counters()
            # the run lock or the read's space probe: either way the path, the reason, and nothing sent
            assert str(store) in out and "No space left on device" in out and "nothing was sent" in out, out[-3000:]
            assert counters["total"] == 0 and store.read_bytes() == before
        report("disk full where the store lives (tmpfs)", runs=3, requests=counters["total"], writes=counters["writes"])
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_three_runs_of_one_fleet_into_three_stores_at_once(ws, emulator):
    """Before issue 18: 473 duplicates and 27 stale. Now the account lock serialises the module runs and the store
    claims refuse a fleet whose labels another store keeps: one run provisions, the others fail before any write."""
    fleet = devices(60)
    labels = [d["label"] for d in fleet]
    emulator.control.set_faults(latency_s=0.2)
    stores = [ws.dir / "store" / ("run-%d.yml" % n) for n in range(3)]
    procs = [ws.start(fleet, extra={"fleet_store": str(store), "fleet_batch_size": 0, "fleet_parallel": 4}) for store in stores]
    outs = [ws.finish(p) for p in procs]
    emulator.control.set_faults()
    winners = [n for n, (rc, dummy) in enumerate(outs) if rc == 0]
    assert len(winners) == 1, [(rc, out[-1500:]) for rc, out in outs]
    for n, (rc, out) in enumerate(outs):
        if n not in winners:
            assert rc == 2 and "another credential store, %s, keeps" % stores[winners[0]] in out, out[-3000:]
            assert "Nothing was changed" in out
    ws.store = stores[winners[0]]
    result = audit(ws, labels)
    report("three runs at once, same fleet, three stores", runs=3, duplicates=result["duplicates"],
           lost=len(result["lost"]), stale=result["stale"], missing=result["missing"])
    assert result["duplicates"] == 0 and result["lost"] == [] and result["portal_clients"] == 60, result
    # the losers' stores hold nothing that could go stale
    assert all(not store.exists() or "dev-" not in store.read_text() for n, store in enumerate(stores) if n not in winners)


@pytest.mark.parametrize("emptied", ["", "{}\n", "isr_mqtt_credentials: {}\n"])
def test_an_emptied_store_fails_before_any_write_and_force_recovers_it(ws, emulator, emptied):
    fleet = devices(4)
    labels = [d["label"] for d in fleet]
    ws.run(fleet)
    ws.store.write_text(emptied)
    emulator.control.reset_counters()
    out = ws.run(fleet, expect_rc=2)
    counters = emulator.control.counters()
    assert "%s holds none of the 4 clients" % ws.store in out and "fleet_recover_missing: force" in out, out[-3000:]
    assert counters["writes"] == 0 and ws.store.read_text() == emptied
    out = ws.run(fleet, extra={"fleet_recover_missing": "force"})
    result = audit(ws, labels)
    report("store emptied (%r), then force" % emptied, runs=3, duplicates=result["duplicates"], lost=len(result["lost"]),
           writes_before_force=counters["writes"], recovered=progress_counts(out).get("rotated", 0))
    assert progress_counts(out).get("rotated") == 4 and result["duplicates"] == 0 and result["lost"] == [], result


def test_a_store_that_lost_a_large_share_fails_but_a_few_lost_entries_are_recovered(ws, emulator):
    fleet = devices(24)
    labels = [d["label"] for d in fleet]
    ws.run(fleet)
    full = ws.store.read_text()
    text = full
    for label in labels[:11]:  # 11 of 24: more than 10 and more than 10%
        text = drop(text, label)
    ws.store.write_text(text)
    emulator.control.reset_counters()
    out = ws.run(fleet, expect_rc=2)
    assert "11 of the 24 clients of this fleet on the portal have no password in the credential store %s" % ws.store in out, out[-3000:]
    assert emulator.control.counters()["writes"] == 0
    ws.store.write_text(drop(drop(full, labels[0]), labels[1]))  # two lost entries: recovered as before
    out = ws.run(fleet)
    result = audit(ws, labels)
    assert progress_counts(out).get("rotated") == 2 and result["lost"] == [] and result["duplicates"] == 0, result


def drop(text, label):
    """The store text without ``label``'s entry."""
    lines = text.splitlines(True)
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(json.dumps(label) + ":"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("  \"")), len(lines))
    return "".join(lines[:start] + lines[end:])


def set_field(text, label, field, value):
    """The store text with ``field`` of ``label``'s entry replaced by the JSON scalar of ``value``."""
    start = text.index(json.dumps(label) + ":")
    line = text.index("    %s: " % field, start)
    return text[:line] + "    %s: %s" % (field, json.dumps(value)) + text[text.index("\n", line):]


def test_edited_plain_fields_are_named_and_recovered_by_rotation(ws, emulator):
    fleet = devices(8)
    labels = [d["label"] for d in fleet]
    ws.run(fleet)
    entries = ws.entries()
    edits = {"dev-0001": ("username", "pub-ffffffffffff"), "dev-0002": ("client_id", entries["dev-0003"]["client_id"]),
             "dev-0004": ("history_topic_prefix", "acct/elsewhere"), "dev-0005": ("publish_topic", "acct/elsewhere/"),
             "dev-0006": ("rotated_at", "2099-01-01T00:00:00Z")}
    text = ws.store.read_text()
    for label, (field, value) in edits.items():
        text = set_field(text, label, field, value)
    ws.store.write_text(text)
    assert "dev-0001" in [label for label, dummy in audit(ws, labels)["lost"]]  # the edit is real: dev-0001 cannot log in
    emulator.control.reset_counters()
    out = ws.run(fleet)
    by_route = emulator.control.counters()["by_route"]
    result = audit(ws, labels)
    report("store plain fields edited (username, client_id, topics, rotated_at)", runs=2, duplicates=result["duplicates"],
           lost=len(result["lost"]), stale=result["stale"], recovered=by_route.get(ROTATE, 0))
    for label in edits:
        assert "%s: its fields or password do not match its integrity check" % label in out, out[-3000:]
    assert by_route.get(ROTATE, 0) == 5 == progress_counts(out).get("rotated"), by_route
    assert result["duplicates"] == 0 and result["lost"] == [] and result["stored"] == 8, result
    stored = ws.entries()
    assert all(stored[label][field] != value for label, (field, value) in edits.items())
    assert progress_counts(ws.run(fleet)) == {}  # sealed again: the next run has nothing to do


def test_a_flipped_digit_in_a_journal_record_is_named_and_recovered(ws, emulator):
    fleet = devices(4)
    labels = [d["label"] for d in fleet]
    ws.run(fleet)
    # A run that journaled a rotation and was stopped before it stored it (as a kill would leave it).
    (ws.dir / "journal_only.yml").write_text(
        "- name: Rotate into the journal only\n  hosts: localhost\n  gather_facts: false\n  connection: local\n  tasks:\n"
        "    - name: Rotate\n      isr.mqtt.mqtt_fleet:\n        clients: %s\n        rotate: [dev-0002]\n"
        "        journal: %s.journal\n        return_password: ciphertext\n        return_credentials: not_journaled\n"
        "      no_log: true\n" % (json.dumps(fleet), ws.store))
    ws.run(playbook="journal_only.yml")
    journal = ws.store.parent / (ws.store.name + ".journal")
    record = json.loads(journal.read_text())
    digit = record["client_id"][-1]
    record["client_id"] = record["client_id"][:-1] + ("1" if digit != "1" else "2")
    journal.write_text(json.dumps(record) + "\n")
    emulator.control.reset_counters()
    out = ws.run(fleet)
    result = audit(ws, labels)
    report("journal record with a flipped digit", runs=3, duplicates=result["duplicates"], lost=len(result["lost"]),
           recovered=progress_counts(out).get("rotated", 0))
    assert "dev-0002: its fields or password do not match its integrity check" in out, out[-3000:]
    assert progress_counts(out).get("rotated") == 1 and result["lost"] == [] and result["duplicates"] == 0, result
