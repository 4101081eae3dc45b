"""What the tests share, importable as `support` (tests/ is on sys.path): the collection on sys.path, the portal
emulator in its own process, and how to run Ansible. Fixtures built on it live in tests/conftest.py.

The repository is the collection root, but Ansible and the `ansible_collections.isr.mqtt` imports need it under
`<dir>/ansible_collections/isr/mqtt`; a symlink in a temp dir does that.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
COLLECTIONS_ROOT = Path(tempfile.mkdtemp(prefix="isr-mqtt-collections-"))
_link = COLLECTIONS_ROOT / "ansible_collections" / "isr" / "mqtt"
_link.parent.mkdir(parents=True)
_link.symlink_to(REPO)

for path in (str(COLLECTIONS_ROOT), str(TESTS)):
    if path not in sys.path:
        sys.path.insert(0, path)
os.environ["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS_ROOT)


class Emulator:
    """A portal emulator running in its own process on 127.0.0.1."""

    def __init__(self, workdir, db=":memory:", broker=False, extra_args=()):
        self.workdir = Path(workdir)
        self.state_file = self.workdir / "emulator.json"
        self.log_file = self.workdir / "emulator.log"
        self.db = db
        self.broker = broker
        self.extra_args = list(extra_args)
        self.process = None
        self.info = {}

    def start(self, timeout=30):
        if self.state_file.exists():
            self.state_file.unlink()
        args = [sys.executable, str(TESTS / "emulator" / "serve.py"), "--port", "0",
                "--db", str(self.db), "--state-file", str(self.state_file)] + self.extra_args
        if self.broker:
            args.append("--broker")
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("emulator exited early:\n" + self.log_file.read_text())
            if self.state_file.exists():
                try:
                    self.info = json.loads(self.state_file.read_text())
                    return self
                except ValueError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("emulator did not start in %ss:\n%s" % (timeout, self.log_file.read_text()))

    def stop(self, sig=signal.SIGTERM):
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def url(self):
        return self.info["portal_url"]

    @property
    def token(self):
        return self.info["token"]

    @property
    def account_id(self):
        return self.info["account_id"]

    @property
    def control(self):
        from emulator.control import EmulatorControl
        return EmulatorControl(self.info["control_url"])

    def env(self):
        """Environment variables that point the collection at this emulator."""
        return {"ISR_PORTAL_URL": self.url, "ISR_PORTAL_TOKEN": self.token}


class PlaybookResult:
    def __init__(self, completed):
        self.rc = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr

    def __repr__(self):
        return "rc=%s\nSTDOUT:\n%s\nSTDERR:\n%s" % (self.rc, self.stdout[-20000:], self.stderr[-5000:])


def ansible_env(extra=None):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS_ROOT),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
    })
    env.update(extra or {})
    return env


def bin_path(name):
    """A console script of the Python running the tests (the venv's ansible-playbook)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def seed_clients(db_path, account_id, labels, paused=()):
    """Create one MQTT client per label (and pause those in `paused`) straight in the SQLite file of a running
    emulator (started with --db PATH), through the emulator's own Store: about 20 times faster than the API, for
    tests and benchmarks that need a big portal. Returns the rows (passwords dropped)."""
    from emulator.store import Store

    store = Store(str(db_path))
    try:
        account = store.get_account(account_id)
        paused = set(paused)
        rows = []
        for label in labels:
            row = store.create_client(account, label, True, False)[0]
            if label in paused:
                store.set_paused(account_id, row["client_id"], True)
                row = store.get_client(account_id, row["client_id"])
            rows.append(row)
        return rows
    finally:
        store.db.close()
