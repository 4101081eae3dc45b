"""Fault matrix: the fleet role under the emulator's injected faults, then a rerun after the fault clears.

Each test provisions a fleet with the real role (real ansible-playbook, real HTTP, real SIGKILL), lets a fault
strike, clears it, reruns, and audits (tests/reliability/conftest.py::audit): no duplicate client, every
client of the fleet has a working password in the vaulted store (checked with POST /_emulator/verify) or was
recovered by rotation in the rerun (its progress line counts the rotations), the store is valid YAML at 0600.

Sizes: 200 devices where the fault strikes per request at random or in bursts (error rate, dropped creates,
429 bursts, budget, token revocation, both kills); 40-60 where the point holds with fewer and each request
costs seconds (latency, timeouts, two concurrent runs).
"""
import time

import pytest

from fleet.test_fleet_role import devices

from .conftest import Workspace, audit, kill_tree, process_tree, progress_counts, report, restart_same_port

pytestmark = pytest.mark.slow

ROTATE = "POST /api/v1/subscriber/publishers/{client_id}/rotate-credentials"
CREATE = "POST /api/v1/subscriber/publishers"

TIMEOUT_PLAYBOOK = """
- name: Provision the fleet with a short request timeout
  hosts: localhost
  gather_facts: false
  connection: local
  module_defaults:
    group/isr.mqtt.portal:
      timeout: {timeout}
  roles:
    - role: isr.mqtt.fleet
"""


def labels_of(fleet):
    return [d["label"] for d in fleet]


def missing_from_store(ws, labels):
    """Fleet labels on the portal whose password neither the store nor its journal holds (a rerun must rotate them)."""
    on_portal = ws.emulator.control.state()["labels"]
    stored = set(ws.raw_entries()) | set(ws.journaled())
    return sorted(label for label in labels if on_portal.get(label) and label not in stored)


def rerun_and_audit(ws, fleet, name, runs, env=None, extra=None):
    """Rerun with the fault cleared; the rerun must recover exactly the clients missing from the store."""
    labels = labels_of(fleet)
    missing = missing_from_store(ws, labels)
    ws.emulator.control.reset_counters()
    out = ws.run(fleet, env=env, extra=extra)
    counts = progress_counts(out)
    by_route = ws.emulator.control.counters()["by_route"]
    result = audit(ws, labels)
    report(name, runs=runs + 1, duplicates=result["duplicates"], lost=len(result["lost"]), stale=result["stale"], missing=result["missing"],
           recovered=len(missing), portal_clients=result["portal_clients"])
    assert result["duplicates"] == 0, result
    assert result["lost"] == [], result["lost"][:10]
    assert result["portal_clients"] == len(labels)
    # Recovered by rotation and says so: one rotation per missing password, reported in the progress counts.
    assert by_route.get(ROTATE, 0) == len(missing) == counts.get("rotated", 0), (missing, by_route, counts)
    assert counts.get("created", 0) == by_route.get(CREATE, 0)
    return result, missing


def test_latency_of_seconds_per_request(ws, emulator):
    """Every request takes 2 s: slow, but complete, and nothing duplicated. 40 devices make the point."""
    fleet = devices(40)
    emulator.control.set_faults(latency_s=2)
    ws.run(fleet, extra={"fleet_batch_size": 0, "fleet_parallel": 8})
    result = audit(ws, labels_of(fleet))
    assert result["duplicates"] == 0 and result["lost"] == [] and result["portal_clients"] == 40
    emulator.control.set_faults()
    rerun_and_audit(ws, fleet, "latency_s=2", runs=1)


def test_request_timeouts_mid_run(ws, emulator):
    """Latency above the timeout strikes mid-run: creates time out after the portal committed them.

    The role has no timeout variable (fleet_timeout); module_defaults for group/isr.mqtt.portal sets it.
    """
    (ws.dir / "fleet_timeout.yml").write_text(TIMEOUT_PLAYBOOK.format(timeout=2))
    fleet = devices(60)
    proc = ws.start(fleet, playbook="fleet_timeout.yml", extra={"fleet_batch_size": 0, "fleet_parallel": 4})
    seen = ws.wait_for_clients(10, proc)
    emulator.control.set_faults(latency_s=4)
    rc, out = ws.finish(proc)
    assert seen < 60, "the run ended before the fault struck; nothing was tested"
    assert rc == 2, out[-4000:]
    assert "within timeout=2" in out, out[-4000:]  # a clear failure naming the timeout
    emulator.control.set_faults()
    time.sleep(4.5)  # creates the portal was still sleeping on commit now
    # Everything received before the failure was persisted.
    first = audit(ws, labels_of(fleet))
    stored = set(ws.raw_entries())
    assert all(label not in stored for label, dummy in first["lost"]), first["lost"]
    result, missing = rerun_and_audit(ws, fleet, "latency_s=4 > timeout=2 mid-run", runs=1)


def test_error_rate_30_percent(ws, emulator):
    """30% of requests answered 500/502/503 at random: runs fail part way, nothing duplicated or lost."""
    fleet = devices(200)
    emulator.control.set_faults(error_rate=0.3, error_statuses=[500, 502, 503])
    runs = 0
    for dummy in range(3):  # bounded: a few runs under the fault, each continuing where the last stopped
        runs += 1
        out = ws.run(fleet, expect_rc=None, extra={"fleet_batch_size": 50})
        assert "Traceback" not in out, out[-4000:]
        result = audit(ws, labels_of(fleet))
        assert result["duplicates"] == 0, result
        stored = set(ws.raw_entries())
        assert all(label not in stored for label, dummy in result["lost"]), result["lost"]  # stored ones work
    emulator.control.set_faults()
    rerun_and_audit(ws, fleet, "error_rate=0.3", runs=runs)


def test_connection_dropped_after_create(ws, emulator):
    """The portal commits a create and drops the connection: recovered by rotation in the same run, and it says so."""
    fleet = devices(200)
    emulator.control.set_faults(drop_after_create=10)
    out = ws.run(fleet, extra={"fleet_parallel": 8})
    by_route = emulator.control.counters()["by_route"]
    assert by_route.get(CREATE) == 200 and by_route.get(ROTATE) == 10, by_route
    assert progress_counts(out).get("rotated") == 10
    assert out.count("answer was lost") >= 1, out[-4000:]  # the module warns about each recovery
    result = audit(ws, labels_of(fleet))
    assert result["duplicates"] == 0 and result["lost"] == [], result
    rerun_and_audit(ws, fleet, "drop_after_create=10", runs=1)


def test_429_bursts(ws, emulator):
    fleet = devices(200)
    emulator.control.set_faults(burst_429=25)
    out = ws.run(fleet)
    assert "rate limit" in out.lower(), out[-3000:]  # the waits are announced
    result = audit(ws, labels_of(fleet))
    assert result["duplicates"] == 0 and result["lost"] == [] and result["portal_clients"] == 200
    rerun_and_audit(ws, fleet, "burst_429=25", runs=1)


def test_hourly_budget_exhausted_mid_run_is_waited_out(ws, emulator):
    """A budget of 60 requests per 3 s window: the run waits for each reset and completes."""
    fleet = devices(200)
    emulator.control.set_account(emulator.account_id, hourly_budget=60, window_seconds=3)
    ws.run(fleet)
    result = audit(ws, labels_of(fleet))
    assert result["duplicates"] == 0 and result["lost"] == [] and result["portal_clients"] == 200
    emulator.control.set_account(emulator.account_id, hourly_budget=5000, window_seconds=3600)
    rerun_and_audit(ws, fleet, "hourly_budget=60/3s", runs=1)


def test_hourly_budget_exhausted_beyond_the_wait_ceiling(ws, emulator):
    """Budget used up for an hour, fleet_rate_limit_max_wait 5 s: clear failure, everything received kept."""
    fleet = devices(200)
    emulator.control.set_account(emulator.account_id, hourly_budget=90, window_seconds=3600)
    out = ws.run(fleet, expect_rc=2, extra={"fleet_rate_limit_max_wait": 5, "fleet_batch_size": 50})
    assert "rate" in out.lower() and "limit" in out.lower(), out[-4000:]
    first = audit(ws, labels_of(fleet))
    assert 0 < first["portal_clients"] < 200 and first["lost"] == [], first
    emulator.control.set_account(emulator.account_id, hourly_budget=5000, window_seconds=1)
    time.sleep(1.1)
    result, missing = rerun_and_audit(ws, fleet, "hourly_budget=90/1h, max_wait=5", runs=1)
    assert missing == []


def test_token_revoked_mid_run(ws, emulator):
    fleet = devices(200)
    token = emulator.control.create_token(emulator.account_id)
    emulator.control.set_faults(latency_s=0.02)
    proc = ws.start(fleet, env={"ISR_PORTAL_TOKEN": token}, extra={"fleet_batch_size": 50, "fleet_parallel": 4})
    seen = ws.wait_for_clients(60, proc)
    emulator.control.revoke_token(token)
    rc, out = ws.finish(proc)
    assert seen < 200, "the run ended before the token was revoked; nothing was tested"
    assert rc == 2, out[-4000:]
    assert "revoked" in out or "token" in out.lower(), out[-4000:]
    assert token not in out
    emulator.control.set_faults()
    first = audit(ws, labels_of(fleet))
    assert first["lost"] == [] and first["duplicates"] == 0, first  # everything received so far persisted
    assert 60 <= first["portal_clients"] < 200
    result, missing = rerun_and_audit(ws, fleet, "token revoked mid-run", runs=1)
    assert missing == []


def test_emulator_killed_and_restarted_mid_run(tmp_path, file_emulator):
    """SIGKILL the portal mid-run, restart it on the same SQLite file and port: tokens and clients survive."""
    emulator = file_emulator
    ws = Workspace(tmp_path, emulator)
    token = emulator.token  # serve.py seeds a new account at each start; the first one's token must keep working
    env = {"ISR_PORTAL_TOKEN": token, "ISR_PORTAL_URL": emulator.url}
    fleet = devices(200)
    emulator.control.set_faults(latency_s=0.02)
    proc = ws.start(fleet, env=env, extra={"fleet_batch_size": 50, "fleet_parallel": 4})
    seen = ws.wait_for_clients(70, proc)
    restart_same_port(emulator)
    rc, out = ws.finish(proc)
    assert seen < 200, "the run ended before the kill; nothing was tested"
    assert "Traceback" not in out, out[-4000:]
    assert emulator.control.state()["clients"] >= seen  # committed clients survived the SIGKILL
    runs = 1
    first = audit(ws, labels_of(fleet))
    assert first["duplicates"] == 0, first
    result, missing = rerun_and_audit(ws, fleet, "emulator SIGKILL + restart (rc=%d)" % rc, runs=runs, env=env)


def test_playbook_killed_mid_batch(ws, emulator):
    """SIGKILL ansible-playbook (its process group) in the middle of a batch: no password is lost.

    Every password is journaled vault-encrypted (<store>.journal, fsync) the moment it arrives, so the rerun folds
    the journal into the store and rotates none (before the journal: every password of the batch in flight).
    """
    fleet = devices(200)
    emulator.control.set_faults(latency_s=0.05)
    proc = ws.start(fleet, extra={"fleet_batch_size": 100, "fleet_parallel": 4})
    seen = ws.wait_for_clients(130, proc)
    tree = process_tree(proc.pid)
    kill_tree(proc)
    rc, out = ws.finish(proc)
    assert rc == -9 and 130 <= seen < 200, (rc, seen)
    assert len(tree) > 1  # the workers were killed too
    time.sleep(0.5)  # a create already sent finishes on the portal
    at_rest = emulator.control.state()["clients"]
    assert at_rest < 200, "the batch went on after the kill"
    emulator.control.set_faults()
    journaled = ws.journaled()
    assert len(journaled) >= 100 and not set(journaled) & set(ws.raw_entries()), "the kill did not land mid-run"
    assert oct((ws.store.parent / (ws.store.name + ".journal")).stat().st_mode & 0o777) == "0o600"
    # At most the creates in flight at the kill (parallel 4) lack a password: their answers never came back.
    missing = missing_from_store(ws, labels_of(fleet))
    report("ansible-playbook SIGKILL mid-batch (journal)", journaled=len(journaled), missing=len(missing))
    assert len(missing) <= 4, missing
    result, recovered = rerun_and_audit(ws, fleet, "ansible-playbook SIGKILL mid-batch", runs=1)
    assert recovered == missing
    assert not (ws.store.parent / (ws.store.name + ".journal")).exists()  # folded into the store


def test_two_role_runs_at_once_on_the_same_fleet_and_store(ws, emulator):
    """Two runs of the same fleet on the same store at the same time (different fleets: tests/fleet).

    The role's run lock (<store>.run-lock) makes the second run wait; it then lists, finds every client with its
    password in the store and creates nothing. Without the lock: 23 of 60 duplicated, 60 of 60 with 0.5 s latency.
    """
    fleet = devices(60)
    # 0.5 s per request: each run's creates take ~7 s, so the two runs' list-then-create windows overlap even
    # when one starts a few seconds after the other (without it the race is won or lost by chance).
    emulator.control.set_faults(latency_s=0.5)
    procs = [ws.start(fleet, extra={"fleet_batch_size": 0, "fleet_parallel": 4}) for dummy in range(2)]
    outs = [ws.finish(p) for p in procs]
    emulator.control.set_faults()
    first = audit(ws, labels_of(fleet))
    report("two runs at once, same fleet (first pass)", runs=2, duplicates=first["duplicates"], lost=len(first["lost"]))
    assert first["duplicates"] == 0, (first, [o[1][-1500:] for o in outs])
    assert first["lost"] == [], first["lost"][:10]
    assert [rc for rc, dummy in outs] == [0, 0], [o[1][-1500:] for o in outs]
    assert sum("waiting up to" in out for dummy, out in outs) == 1  # one run waited for the other's lock
    assert not (ws.dir / "store" / "credentials.yml.run-lock").exists()
    rerun_and_audit(ws, fleet, "two runs at once, same fleet", runs=2)
