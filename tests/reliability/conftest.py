"""Shared helpers of the reliability tests: fault runs of the fleet role, and the audit after them.

Reuses the fleet helper's workspace (`tests/fleet/test_fleet_role.py`: `Fleet`, `devices`, the vault password)
and adds what fault tests need on top: a run in the background (to revoke a token, kill the emulator or kill
ansible-playbook while it runs), a bounded wait for progress on the portal, and `audit()`, which checks the
issue's invariants: no duplicate client, every client of the fleet has a working password in the vaulted store
(or was recovered by rotation in the rerun, which says so in its counts), the store is valid YAML at mode 0600.

`RELIABILITY_REPORT=<file>` appends one JSON line per audited run (the numbers of docs/reliability.md).
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from support import Emulator, ansible_env
from fleet.test_fleet_role import Fleet

REPORT = os.environ.get("RELIABILITY_REPORT")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running reliability test (fault matrix); deselect with -m 'not slow'")


class Workspace(Fleet):
    """Fleet workspace plus background runs and progress waits."""

    def start(self, fleet_devices=None, env=None, **kwargs):
        """Start ansible-playbook in its own process group; returns the Popen (stdout+stderr to a file)."""
        environment = dict(self.emulator.env(), ANSIBLE_PYTHON_INTERPRETER=sys.executable)
        environment.update(env or {})
        log = open(self.dir / ("run-%d.log" % time.monotonic_ns()), "w+")
        proc = subprocess.Popen(self.command(fleet_devices, **kwargs), stdout=log, stderr=subprocess.STDOUT, text=True,
                                cwd=str(self.dir), env=ansible_env(environment), start_new_session=True)
        proc.log = log
        return proc

    @staticmethod
    def finish(proc, timeout=600):
        proc.wait(timeout=timeout)
        proc.log.seek(0)
        return proc.returncode, proc.log.read()

    def wait_for_clients(self, at_least, proc=None, control=None, limit_s=180):
        """Poll the portal's client count until it reaches `at_least` (bounded); returns the count seen."""
        control = control or self.emulator.control
        seen = 0
        for dummy in range(int(limit_s / 0.05)):
            seen = control.state()["clients"]
            if seen >= at_least or (proc is not None and proc.poll() is not None):
                return seen
            time.sleep(0.05)
        return seen

    def journaled(self):
        return journaled(self.store)

    def raw_entries(self):
        """The store parsed with ciphertext kept (None when missing)."""
        if not self.store.exists():
            return {}

        class Loader(yaml.SafeLoader):
            pass
        Loader.add_constructor("!vault", lambda loader, node: loader.construct_scalar(node))
        return (yaml.load(self.store.read_text(), Loader=Loader) or {}).get("isr_mqtt_credentials") or {}  # nosec


def journaled(store):
    """Labels whose password the store's journal (<store>.journal) holds, later lines winning."""
    path = store.parent / (store.name + ".journal")
    labels = set()
    for line in (path.read_text().splitlines() if path.exists() else []):
        try:
            record = json.loads(line)
        except ValueError:  # a last line cut by a kill
            continue
        (labels.discard if record.get("remove") else labels.add)(record["label"])
    return sorted(labels)


def progress_counts(out):
    """Summed counts of the role's per-batch progress lines ("batch i/n: {...}")."""
    total = {}
    for match in re.finditer(r"batch \d+/\d+: (\{[^}]*\})", out):
        for key, value in yaml.safe_load(match.group(1)).items():
            total[key] = total.get(key, 0) + int(value)
    return total


def audit(ws, labels, extra_portal_labels=()):
    """The invariants after a run. Returns a dict of numbers; raises AssertionError naming what is wrong.

    - duplicates: portal clients beyond the first per fleet label;
    - lost: fleet clients on the portal whose password in the store is missing or does not log in, counted apart as
      ``missing`` (no entry, or an entry without a password) and ``stale`` (an entry that no longer logs in: checked
      with the emulator's verify endpoint);
    - store: valid YAML, mode 0600, every vaulted value decrypts with the run's vault secret.
    """
    state = ws.emulator.control.state()
    portal_labels = state["labels"]
    fleet = set(labels)
    duplicates = sum(count - 1 for label, count in portal_labels.items() if label in fleet and count > 1)
    text = ws.store.read_text() if ws.store.exists() else ""
    if ws.store.exists():
        assert oct(ws.store.stat().st_mode & 0o777) == "0o600", "store mode %o" % (ws.store.stat().st_mode & 0o777)
        yaml.load(text, Loader=_VaultTagLoader)  # valid YAML (raises otherwise)
    entries = ws.entries() if ws.store.exists() else {}
    lost = []
    for label in sorted(fleet):
        if not portal_labels.get(label):
            continue
        entry = entries.get(label)
        if not entry or not entry.get("password"):
            lost.append((label, "no password in the store"))
            continue
        verdict = ws.emulator.control.verify(entry["username"], entry["password"])
        if not verdict["ok"] and verdict["reason"] != "client is paused":
            lost.append((label, verdict["reason"]))
    stray = sorted(set(portal_labels) - fleet - set(extra_portal_labels))
    missing = len([reason for dummy, reason in lost if reason == "no password in the store"])
    return {"portal_clients": sum(portal_labels.get(label, 0) for label in fleet), "duplicates": duplicates,
            "lost": lost, "missing": missing, "stale": len(lost) - missing, "stored": len(entries), "stray_labels": stray}


class _VaultTagLoader(yaml.SafeLoader):
    pass


_VaultTagLoader.add_constructor("!vault", lambda loader, node: loader.construct_scalar(node))


def report(test, **numbers):
    """Append one line of numbers for docs/reliability.md (only with RELIABILITY_REPORT set)."""
    if REPORT:
        with open(REPORT, "a") as handle:
            handle.write(json.dumps(dict(test=test, **numbers), default=str) + "\n")


@pytest.fixture
def ws(tmp_path, emulator):
    return Workspace(tmp_path, emulator)


@pytest.fixture
def file_emulator(tmp_path):
    """An emulator on a SQLite file (so that it can be killed and restarted on the same data and port)."""
    emu = Emulator(tmp_path, db=tmp_path / "portal.sqlite").start()
    yield emu
    emu.stop(sig=signal.SIGKILL)


def restart_same_port(emu):
    """SIGKILL the emulator process (by its pid) and start it again on the same port and DB file."""
    port = int(emu.url.rsplit(":", 1)[1])
    emu.process.send_signal(signal.SIGKILL)
    emu.process.wait(timeout=30)
    emu.extra_args = list(emu.extra_args) + ["--port", str(port)]
    last = None
    for dummy in range(50):  # bounded: the port is normally free at once (SO_REUSEADDR)
        try:
            return emu.start()
        except RuntimeError as exc:
            last = exc
            time.sleep(0.1)
    raise last


def _children_map():
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(pid):
    """pid and all its descendants (by parent pid)."""
    children, tree, todo = _children_map(), [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def kill_tree(proc):
    """SIGKILL a run we started and every process it started, by pid.

    Not the process group: ansible-playbook's workers call setsid(), so a group kill leaves them (and the
    module they run) going. The tree is frozen with SIGSTOP first, so nothing forks between listing and killing.
    """
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in process_tree(proc.pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


ROOT = Path(__file__).resolve().parents[2]
