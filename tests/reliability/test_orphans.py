"""Only the ansible-playbook pid killed (SIGKILL), its workers and module processes left running, rerun at once.

Before the account lock and the parent watch (issue 18): 68-255 duplicates, because the rerun took over the run
lock of the dead run while the orphaned module kept creating, and orphans lived on for hours with passwords in
memory. Now: the orphaned module stops before its next request (its ansible-playbook is gone), the rerun's
modules wait for its account lock (a kernel flock, released when it ends) and then list what it did. Expected:
0 duplicates, 0 stale or missing passwords, no process of the killed run left.
"""
import os
import signal
import time

import pytest

from fleet.test_fleet_role import devices

from .conftest import audit, process_tree, progress_counts, report

pytestmark = pytest.mark.slow


def alive(pids):
    left = []
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] != "Z":
                    left.append(pid)
        except OSError:
            pass
    return left


def wait_gone(pids, limit_s=120):
    """Bounded wait for processes to end; returns those still alive (a liveness bound, not a speed claim)."""
    for dummy in range(int(limit_s / 0.1)):
        if not alive(pids):
            return []
        time.sleep(0.1)
    return alive(pids)


def test_ansible_playbook_killed_alone_and_rerun_at_once(ws, emulator):
    # 0.5 s per request, 2 at a time: the orphan would need ~100 s for its 400 creates, so it is still creating
    # while the rerun (8 at a time) works, even when a busy machine makes ansible-playbook slow to start.
    fleet = devices(400)
    labels = [d["label"] for d in fleet]
    emulator.control.set_faults(latency_s=0.5)
    proc = ws.start(fleet, extra={"fleet_batch_size": 0, "fleet_parallel": 2})
    seen = ws.wait_for_clients(16, proc)
    tree = [pid for pid in process_tree(proc.pid) if pid != proc.pid]
    os.kill(proc.pid, signal.SIGKILL)  # ansible-playbook only: its workers and the module go on for now
    proc.wait(timeout=60)
    assert 16 <= seen < 400 and tree, (seen, tree)
    rerun = ws.run(fleet, extra={"fleet_batch_size": 0, "fleet_parallel": 8})  # at once, orphans still alive
    left = wait_gone(tree)
    emulator.control.set_faults()
    time.sleep(0.5)  # a request an orphan had in flight completes on the portal
    result = audit(ws, labels)
    counts = progress_counts(rerun)
    report("ansible-playbook pid alone SIGKILL, immediate rerun", runs=2, duplicates=result["duplicates"],
           lost=len(result["lost"]), stale=result["stale"], missing=result["missing"], recovered=counts.get("rotated", 0), orphans_left=len(left))
    assert result["duplicates"] == 0, result
    assert result["lost"] == [], result["lost"][:10]  # missing or stale (verify endpoint)
    assert result["portal_clients"] == 400
    assert left == [], "processes of the killed run still alive: %s" % left
