# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The account lock (a kernel flock another process really holds) and the parent watch (real processes)."""
from __future__ import annotations

import json

import os
import stat
import subprocess
import sys

import pytest
from support import COLLECTIONS_ROOT

from ansible_collections.isr.mqtt.plugins.module_utils import _run_guard
from ansible_collections.isr.mqtt.plugins.module_utils._run_guard import AccountLock, GuardError, ParentWatch, account_key

URL, TOKEN = "http://127.0.0.1:1/api/v1/subscriber", "isr_mqtt_rest_guard_token"


@pytest.fixture(autouse=True)
def lock_dir(tmp_path, monkeypatch):
    path = tmp_path / "locks"
    monkeypatch.setenv(_run_guard.LOCK_DIR_ENV, str(path))
    yield path
    _run_guard.release_all()


def hold_in_another_process(path, seconds):
    """A child that holds the flock of ``path`` (prints 'held' once it does)."""
    code = ("import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nos.write(fd, b'{\"pid\": %d, \"module\": \"isr.mqtt.mqtt_fleet\", \"since\": \"then\"}' "
            "% os.getpid())\nprint('held', flush=True)\ntime.sleep(float(sys.argv[2]))\n")
    child = subprocess.Popen([sys.executable, "-c", code, path, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_the_lock_file_names_neither_url_nor_token_and_lives_in_a_private_directory(lock_dir):
    lock = AccountLock(URL, TOKEN)
    assert os.path.basename(lock.path) == account_key(URL, TOKEN) + ".lock" and TOKEN not in lock.path
    assert account_key(URL, TOKEN) != account_key(URL, TOKEN + "x") != account_key(URL + "x", TOKEN)
    assert stat.S_IMODE(os.stat(str(lock_dir)).st_mode) == 0o700


def test_a_shared_lock_directory_is_refused(lock_dir):
    lock_dir.mkdir(mode=0o777)
    os.chmod(str(lock_dir), 0o777)
    with pytest.raises(GuardError, match="chmod 0700"):
        AccountLock(URL, TOKEN)


def test_a_lock_held_by_a_live_process_is_waited_for_and_named(lock_dir):
    lock = AccountLock(URL, TOKEN)
    child = hold_in_another_process(lock.path, 30)
    try:
        with pytest.raises(GuardError) as info:
            lock.acquire("isr.mqtt.mqtt_fleet", wait=0.6)
        assert "pid %d" % child.pid in info.value.msg and "kill %d" % child.pid in info.value.msg
        with pytest.raises(GuardError, match="stopped while waiting.*gone"):
            lock.acquire("isr.mqtt.mqtt_fleet", stop=lambda: "ansible-playbook (pid 1) that started it is gone")
    finally:
        child.kill()
        child.wait()
    # The kernel released the lock with the process: no pid to judge, no stale file to remove.
    dummy, holder = lock.acquire("isr.mqtt.mqtt_fleet", wait=60)
    assert holder == {}


def test_the_lock_is_waited_for_until_its_holder_ends(lock_dir):
    lock = AccountLock(URL, TOKEN)
    child = hold_in_another_process(lock.path, 1.0)
    dummy, holder = lock.acquire("isr.mqtt.mqtt_client", wait=60)
    assert holder["pid"] == child.pid and child.wait() == 0
    again = AccountLock(URL, TOKEN).acquire("isr.mqtt.mqtt_client", wait=0)  # re-entrant in one process
    assert again == (0.0, {})


def test_parent_watch_reports_a_process_of_the_chain_that_ended():
    watch = ParentWatch()
    assert watch.gone() is None  # pytest is not started by ansible: only the parent pid is watched
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    watch.chain = [(os.getppid(), _run_guard._process(os.getppid())[1]), (dead.pid, b"1")]
    watch.ansible_pid = dead.pid
    watch._checked = 0.0
    assert "ansible-playbook (pid %d) that started it is gone" % dead.pid in watch.gone()


def test_parent_watch_finds_the_ansible_processes_above_a_module(tmp_path):
    """A process started as 'ansible-playbook' -> sh -> python: the watch holds the chain up to ansible-playbook."""
    fake = tmp_path / "ansible-playbook"
    fake.write_text("import subprocess, sys\nsubprocess.run(['/bin/sh', '-c', sys.argv[1]])\n")
    probe = ("import json, sys; sys.path[:0] = %r; from ansible_collections.isr.mqtt.plugins.module_utils._run_guard "
             "import ParentWatch; w = ParentWatch(); print(json.dumps([w.ansible_pid, len(w.chain)]))" % ([str(COLLECTIONS_ROOT)],))
    script = "%s -c \"$PROBE\"" % sys.executable
    done = subprocess.run([sys.executable, str(fake), script], capture_output=True, text=True, check=True,
                          env=dict(os.environ, PROBE=probe))
    assert done.stdout.strip(), done.stderr
    ansible_pid, chain = json.loads(done.stdout)
    assert ansible_pid is not None and chain == 2  # sh, then 'ansible-playbook'


def write_store(path, labels):
    entry = '  %s:\n    client_id: "x"\n    password: null\n'
    path.write_text("isr_mqtt_credentials:\n" + "".join(entry % json.dumps(label) for label in labels))


def test_store_labels_reads_the_entry_keys_without_yaml(tmp_path):
    store = tmp_path / "s.yml"
    write_store(store, ["a", 'b "quoted"', "c: colon"])
    store.write_text(store.read_text() + "  bare-key:\n    client_id: x\n")
    assert _run_guard.store_labels(str(store)) == {"a", 'b "quoted"', "c: colon", "bare-key"}
    assert _run_guard.store_labels(str(tmp_path / "missing.yml")) == set()


def test_a_label_kept_by_another_store_is_refused_until_that_store_lets_it_go(tmp_path):
    first, second = tmp_path / "first.yml", tmp_path / "second.yml"
    claims = _run_guard.StoreClaims(URL, TOKEN)
    live_run = [os.getpid(), _run_guard._process(os.getpid())[1].decode()]
    assert claims.claim(str(first), ["a", "b"], run=live_run) == {}
    # the first run still runs (its store not written yet): its labels are kept
    assert claims.claim(str(second), ["b", "c"]) == {str(first): ["b"]}
    assert claims.claim(str(second), ["c"]) == {}  # other labels: fine
    # the first run ended; its store keeps "b" in its file: still refused
    write_store(first, ["a", "b"])
    data = json.loads(open(claims.path).read())
    data[str(first)]["run"] = [999999999, "0"]
    open(claims.path, "w").write(json.dumps(data))
    assert claims.claim(str(second), ["b"]) == {str(first): ["b"]}
    # the user removed the old store: the label is free
    first.unlink()
    assert claims.claim(str(second), ["b"]) == {} and str(first) not in json.loads(open(claims.path).read())
    assert stat.S_IMODE(os.stat(claims.path).st_mode) == 0o600
