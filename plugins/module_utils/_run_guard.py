# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What keeps two processes from acting on one portal account at once, and a module from outliving its run.

* ``AccountLock``: an exclusive ``flock`` on a file named by a hash of the API base URL and token, in a private
  (0700) directory of the controller user. The module process that talks to the portal holds it for its whole run;
  the kernel releases it when that process ends, however it ends. So a rerun cannot list and write while a module
  of an earlier run (orphaned by a killed ``ansible-playbook``) still writes: it waits, and then sees what the other
  one did. The lock is per controller: runs on different controllers (or AWX nodes) are not serialised.
* ``ParentWatch``: the chain of processes from this module up to ``ansible-playbook`` (pid and start time, from
  /proc). When any of them is gone, the run that would receive this module's result is gone too, and the module
  stops before its next request (PortalClient checks between requests and while it waits).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import stat
import tempfile
import threading
import time

LOCK_DIR_ENV = "ISR_MQTT_LOCK_DIR"  # tests point it at a temp dir; default ~/.ansible/isr_mqtt_locks
LOCK_WAIT_S = 900  # longer than a role batch normally takes; the message names the holder
LOCK_POLL_S = 0.25
WATCH_EVERY_S = 0.5
_ANSIBLE_COMMANDS = ("ansible-playbook", "ansible", "ansible-console", "ansible-pull")

_held = {}  # lock path -> open fd: the lock is re-entrant within one process (modules run in-process in unit tests)
_held_guard = threading.Lock()


class GuardError(Exception):
    """The lock cannot be had, or the run is gone. ``msg`` is for users."""

    def __init__(self, msg):
        super(GuardError, self).__init__(msg)
        self.msg = msg


def lock_dir():
    """The private lock directory: created 0700, refused when it is not ours or others can write to it."""
    path = os.environ.get(LOCK_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".ansible", "isr_mqtt_locks")
    try:
        os.makedirs(path, mode=0o700)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise GuardError("cannot create the lock directory %s: %s" % (path, exc))
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise GuardError("the lock directory %s must be a directory owned by this user and writable only by it "
                         "(chmod 0700 %s)" % (path, path))
    return path


def account_key(base_url, token):
    """A name for the account behind ``token`` at ``base_url`` that reveals neither."""
    return hashlib.sha256(("%s\n%s" % (base_url, token)).encode("utf-8")).hexdigest()[:40]


def _process(pid):
    """(start time, argv) of a live process from /proc, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            argv = handle.read().split(b"\0")
    except (OSError, IndexError):
        return None
    # fields[0] is the state (field 3 of stat); the parent pid is fields[1], the start time fields[19] (field 22).
    return int(fields[1]), fields[19], [arg.decode("utf-8", "replace") for arg in argv if arg]


def _is_ansible(argv):
    return any(os.path.basename(arg) in _ANSIBLE_COMMANDS for arg in argv[:2])


class ParentWatch(object):
    """Is the ``ansible-playbook`` that started this process still there? (Linux /proc; elsewhere: the parent pid.)"""

    def __init__(self):
        self.parent = os.getppid()
        self.chain = []  # [(pid, start time)] from the parent up to the topmost ansible process
        pid, seen_ansible, ancestors = self.parent, False, []
        while pid > 1 and len(ancestors) < 64:
            info = _process(pid)
            if info is None:
                break
            ppid, started, argv = info
            if seen_ansible and not _is_ansible(argv):
                break  # past the top of the ansible processes (ansible-playbook, its forked workers)
            ancestors.append((pid, started))
            seen_ansible = seen_ansible or _is_ansible(argv)
            pid = ppid
        if seen_ansible:
            self.chain = ancestors
        self.ansible_pid = self.chain[-1][0] if self.chain else None
        # [pid, start time] of ansible-playbook: who claims labels for a store (StoreClaims)
        self.run = [self.chain[-1][0], self.chain[-1][1].decode("ascii", "replace")] if self.chain else None
        self._checked = 0.0
        self._gone = None

    def gone(self):
        """None while the run is there, else a message saying which process is gone (checked at most every 0.5 s)."""
        now = time.monotonic()
        if self._gone is None and now - self._checked >= WATCH_EVERY_S:
            self._checked = now
            if os.getppid() != self.parent:
                self._gone = "its parent process %d ended" % self.parent
            for pid, started in self.chain:
                info = _process(pid)
                if info is None or info[1] != started:
                    self._gone = "ansible-playbook (pid %s) that started it is gone (process %d ended)" % (self.ansible_pid, pid)
                    break
        return self._gone


class AccountLock(object):
    """The exclusive flock of one portal account (base URL + token) on this controller."""

    def __init__(self, base_url, token):
        self.path = os.path.join(lock_dir(), account_key(base_url, token) + ".lock")

    def _holder(self, fd):
        try:
            return json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self, who, stop=None, wait=LOCK_WAIT_S, sleep=time.sleep):
        """Take the lock (waiting up to ``wait`` s); returns the seconds waited and who held it ({} when nobody).

        ``stop()`` returning a message aborts the wait (the run that started us is gone).
        """
        with _held_guard:
            if self.path in _held:
                return 0.0, {}
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        start, holder = time.monotonic(), {}
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except (IOError, OSError) as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                holder = holder or self._holder(fd)
                waited = time.monotonic() - start
                reason = stop() if stop else None
                if reason:
                    raise GuardError("stopped while waiting for the portal account lock: %s" % reason)
                if waited >= wait:
                    raise GuardError(
                        "another process (pid %s, %s, since %s) has been acting on this portal account for the whole "
                        "%d s this run waited (lock %s). Wait for it to finish; if that process is stuck, end it (kill %s) "
                        "and rerun." % (holder.get("pid"), holder.get("module"), holder.get("since"), wait, self.path,
                                        holder.get("pid")))
                sleep(LOCK_POLL_S)
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "module": who,
                                  "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode("utf-8"), 0)
        with _held_guard:
            _held[self.path] = fd
        return time.monotonic() - start, holder

    def release(self):
        with _held_guard:
            fd = _held.pop(self.path, None)
        if fd is not None:
            os.close(fd)  # releases the flock


class StoreClaims(object):
    """Which credential store keeps which labels of one portal account, on this controller.

    ``<lock dir>/<account key>.stores.json``: {store path: {"labels": [...], "run": [pid, start time]}}, read and
    written only under the account lock. Two stores keeping one label cannot both hold a working password (each run
    would rotate the other's), so a fleet whose labels another store keeps is refused before any request. Another
    store keeps a label while the ansible-playbook that claimed it still runs (its store may not be written yet), and
    afterwards as long as its file has an entry for the label.
    """

    def __init__(self, base_url, token):
        self.path = os.path.join(lock_dir(), account_key(base_url, token) + ".stores.json")

    def _load(self):
        try:
            with open(self.path) as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _running(run):
        if not isinstance(run, list) or len(run) != 2 or not isinstance(run[0], int):
            return False
        info = _process(run[0])
        return info is not None and info[1].decode("ascii", "replace") == run[1]

    def claim(self, store, labels, run=None, read_labels=None):
        """Record that ``store`` keeps ``labels`` (``run``: [pid, start time] of our ansible-playbook, or None);
        returns {other store: [labels it keeps too]}, and then records nothing."""
        read_labels = read_labels or store_labels
        store = os.path.abspath(store)
        data, conflicts, labels = self._load(), {}, set(labels)
        for other, info in list(data.items()):
            if other == store or not isinstance(info, dict):
                continue
            if self._running(info.get("run")):
                overlap = labels & set(info.get("labels") or [])
            else:
                kept = read_labels(other)
                if not kept:
                    del data[other]  # a store that is gone or empty, of a run that ended, keeps nothing
                    continue
                overlap = labels & kept
            if overlap:
                conflicts[other] = sorted(overlap)
        if conflicts:
            return conflicts
        mine = data.get(store) if isinstance(data.get(store), dict) else {}
        data[store] = {"labels": sorted(labels | set(mine.get("labels") or [])), "run": run}
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self.path), prefix=".stores.")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.rename(tmp, self.path)
        return {}


_STORE_LABEL = re.compile(r"""^  ("(?:[^"\\]|\\.)*"|[^\s#"'][^:]*):\s*$""")


def store_labels(path):
    """The labels of a credential store written by isr.mqtt.vault_credentials (entry keys at two spaces), without
    YAML (module_utils cannot rely on PyYAML); an empty set when the file is missing or unreadable."""
    labels = set()
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                match = _STORE_LABEL.match(line.rstrip("\n"))
                if match:
                    key = match.group(1)
                    try:
                        labels.add(json.loads(key) if key.startswith('"') else key.strip())
                    except ValueError:
                        labels.add(key)
    except OSError:
        pass
    return labels


def release_all():
    """Give back every lock this process holds (for in-process module runs in tests; a module process just exits)."""
    with _held_guard:
        fds = list(_held.values())
        _held.clear()
    for fd in fds:
        os.close(fd)
