# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The isr.mqtt.vault_credentials action plugin, in-process: a real DataLoader with real vault secrets,
real files in a temp dir; only the task object is a stand-in."""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
import yaml
from ansible.errors import AnsibleActionFail
from ansible.parsing.dataloader import DataLoader
from ansible.module_utils.common.text.converters import to_text
from ansible.parsing.vault import VaultLib, VaultSecret, is_encrypted

from ansible_collections.isr.mqtt.plugins.action import vault_credentials
from ansible_collections.isr.mqtt.plugins.action.vault_credentials import ActionModule
from ansible_collections.isr.mqtt.plugins.plugin_utils import _vault

try:  # ansible-core >= 2.19
    from ansible.parsing.vault import EncryptedString as VaultObject, VaultSecretsContext
except ImportError:  # 2.17 / 2.18 (scripts/matrix.sh venvs)
    from ansible.parsing.yaml.objects import AnsibleVaultEncryptedUnicode as VaultObject
    VaultSecretsContext = None

FLEET = ("fleet", VaultSecret(b"unit-fleet-vault-password"))
OTHER = ("other", VaultSecret(b"another-vault-password"))


def cred(n, password=None, **extra):
    cid = "pub-%012d" % n
    entry = {"client_id": cid, "username": cid, "password": password or "secret-password-%d" % n,
             "publish_topic": "acct/%s/" % cid, "history_topic_prefix": "acct/%s" % cid, "rotated_at": "2026-01-0%dT00:00:00Z" % (n % 9 + 1)}
    entry.update(extra)
    return entry


class Warnings(object):
    """Stands in for Display: warnings (returned by run_action) and plain messages (``displayed``)."""

    def __init__(self):
        self.messages = []
        self.displayed = []

    def warning(self, msg, *args, **kwargs):
        self.messages.append(msg)

    def display(self, msg, *args, **kwargs):
        self.displayed.append(msg)


@pytest.fixture
def secrets_context(monkeypatch):
    """Let EncryptedString values decrypt (ansible-playbook sets this up once per run; 2.19+ only)."""
    if VaultSecretsContext is not None:
        monkeypatch.setattr(VaultSecretsContext, "_current", VaultSecretsContext([FLEET]))


def plaintext_of(value):
    """What a template sees of a vault object."""
    return str(value) if VaultSecretsContext is not None else to_text(value.data)


def ciphertext_of(value):
    return to_text(value._ciphertext)


def run_action(args, secrets=(FLEET,), check_mode=False, diff=False, display=None):
    """-> (result, warnings); raises what the plugin raises. ``display``: a Warnings to record into."""
    loader = DataLoader()
    loader.set_vault_secrets(list(secrets))
    task = SimpleNamespace(args=dict(args), check_mode=check_mode, diff=diff, async_val=0, action="isr.mqtt.vault_credentials")
    connection = SimpleNamespace(_shell=SimpleNamespace(tmpdir=None))
    action = ActionModule(task, connection, None, loader, None, None)
    action._display = display or Warnings()
    return action.run(task_vars={}), action._display.messages


def raw_entries(path):
    """The store's entries with the ciphertext text of each password (no decryption)."""
    class Loader(yaml.SafeLoader):
        pass
    Loader.add_constructor("!vault", lambda loader, node: "VAULT:" + loader.construct_scalar(node))
    return yaml.load(path.read_text(), Loader=Loader)["isr_mqtt_credentials"]  # nosec: SafeLoader + !vault


def decrypt(ciphertext, secrets=(FLEET,)):
    return VaultLib(list(secrets)).decrypt(ciphertext.replace("VAULT:", "", 1)).decode()


@pytest.fixture
def store(tmp_path):
    return tmp_path / "store" / "credentials.yml"


@pytest.fixture(autouse=True)
def store_dir(tmp_path, monkeypatch):
    (tmp_path / "store").mkdir()
    monkeypatch.setenv("ISR_MQTT_LOCK_DIR", str(tmp_path / "locks"))  # where reads remember checked ciphertexts


def test_credentials_for_limits_the_returned_entries_not_the_store(store):
    result, dummy = run_action({"path": str(store), "credentials": {"dev-1": cred(1), "dev-2": cred(2), "dev-3": cred(3)},
                                "credentials_for": ["dev-2", "not-stored"]})
    assert sorted(result["credentials"]) == ["dev-2"] and sorted(result["added"]) == ["dev-1", "dev-2", "dev-3"]
    assert sorted(raw_entries(store)) == ["dev-1", "dev-2", "dev-3"]
    read, dummy = run_action({"path": str(store), "credentials_for": []})
    assert read["credentials"] == {} and sorted(read["rotated_at"]) == ["dev-1", "dev-2", "dev-3"]
    read_all, dummy = run_action({"path": str(store)})
    assert sorted(read_all["credentials"]) == ["dev-1", "dev-2", "dev-3"]


def test_return_password_ciphertext_returns_text_no_template_decrypts(store):
    """Issue 24: the fleet role registers its store results so; debug: var= then shows ciphertext only."""
    result, dummy = run_action({"path": str(store), "credentials": {"dev-1": cred(1)}, "return_password": "ciphertext"})
    entry = result["credentials"]["dev-1"]
    assert entry["password"].__class__ is str and entry["password"] == entry["password_vault"]  # not a vaulted str subclass
    assert entry["password"].startswith("$ANSIBLE_VAULT;1.2;AES256;fleet") and decrypt(entry["password"]) == cred(1)["password"]
    vaulted, dummy = run_action({"path": str(store)})  # the default stays a vaulted value
    assert vaulted["credentials"]["dev-1"]["password"].__class__ is not str


def test_first_write_encrypts_every_password_and_is_private(store):
    old_umask = os.umask(0)  # a permissive umask must not widen the store
    try:
        result, warnings = run_action({"path": str(store), "credentials": {"dev-1": cred(1), "dev-2": cred(2)}})
    finally:
        os.umask(old_umask)
    assert result["changed"] is True and result["added"] == ["dev-1", "dev-2"] and result["updated"] == []
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    text = store.read_text()
    assert "secret-password-1" not in text and "secret-password-2" not in text
    assert text.count("$ANSIBLE_VAULT;1.2;AES256;fleet") == 2
    entries = raw_entries(store)
    assert decrypt(entries["dev-1"]["password"]) == "secret-password-1"
    assert entries["dev-2"]["publish_topic"] == "acct/pub-000000000002/"
    assert sorted(os.listdir(str(store.parent))) == ["credentials.yml"]  # no temp file left
    assert warnings == []


def test_store_is_readable_by_ansibles_own_loader(store, secrets_context):
    run_action({"path": str(store), "credentials": {"dev-1": cred(1)}})
    loader = DataLoader()
    loader.set_vault_secrets([FLEET])
    data = loader.load_from_file(str(store))  # what include_vars does
    password = data["isr_mqtt_credentials"]["dev-1"]["password"]
    assert isinstance(password, VaultObject) and plaintext_of(password) == "secret-password-1"


def test_unchanged_entries_keep_their_ciphertext_byte_for_byte(store):
    run_action({"path": str(store), "credentials": {"dev-1": cred(1), "dev-2": cred(2)}})
    before = store.read_bytes()
    mtime = store.stat().st_mtime_ns
    time.sleep(0.01)
    result, dummy = run_action({"path": str(store), "credentials": {"dev-1": cred(1), "dev-2": cred(2)}})
    assert result["changed"] is False and result["added"] == result["updated"] == result["removed"] == []
    assert store.read_bytes() == before and store.stat().st_mtime_ns == mtime  # not even rewritten

    old = raw_entries(store)
    result, dummy = run_action({"path": str(store), "credentials": {"dev-3": cred(3), "dev-2": cred(2, password="new-pw")}})
    assert result["added"] == ["dev-3"] and result["updated"] == ["dev-2"]
    new = raw_entries(store)
    assert new["dev-1"]["password"] == old["dev-1"]["password"]  # untouched entry: same ciphertext
    assert new["dev-2"]["password"] != old["dev-2"]["password"] and decrypt(new["dev-2"]["password"]) == "new-pw"
    assert decrypt(new["dev-3"]["password"]) == "secret-password-3"


def test_changed_details_with_the_same_password_update_the_entry(store):
    run_action({"path": str(store), "credentials": {"dev-1": cred(1)}})
    result, dummy = run_action({"path": str(store), "credentials": {"dev-1": cred(1, rotated_at="2027-01-01T00:00:00Z")}})
    assert result["updated"] == ["dev-1"] and raw_entries(store)["dev-1"]["rotated_at"] == "2027-01-01T00:00:00Z"


def test_entry_encrypted_with_another_secret_is_re_encrypted_with_ours(store):
    run_action({"path": str(store), "credentials": {"dev-1": cred(1), "dev-2": cred(2)}}, secrets=(FLEET,))
    run_action({"path": str(store), "credentials": {"dev-1": cred(1, password="other-1")}}, secrets=(OTHER, FLEET))
    assert "AES256;other" in store.read_text()  # dev-1 under the other secret, dev-2 under ours
    result, dummy = run_action({"path": str(store), "credentials": {"dev-1": cred(1, password="other-1")}}, secrets=(FLEET,))
    assert result["updated"] == ["dev-1"]
    assert "AES256;fleet" in store.read_text() and "AES256;other" not in store.read_text()


@pytest.mark.parametrize("args", [{}, {"credentials": {"dev-3": cred(3)}}, {"remove": ["dev-1"]}])
def test_a_store_no_entry_of_which_decrypts_is_refused_naming_its_vault_id(store, args):
    run_action({"path": str(store), "credentials": {"dev-1": cred(1), "dev-2": cred(2)}}, secrets=(OTHER,))
    before = store.read_bytes()
    with pytest.raises(AnsibleActionFail) as info:
        run_action(dict(args, path=str(store)), secrets=(FLEET,))
    msg = str(info.value)
    assert "none of the 2 vaulted entries" in msg and "vault id 'other'" in msg and "--vault-id other@prompt" in msg
    assert store.read_bytes() == before


def test_merge_keeps_entries_not_given_and_removal_drops_them(store):
    run_action({"path": str(store), "credentials": {"dev-1": cred(1), "dev-2": cred(2), "dev-3": cred(3)}})
    result, dummy = run_action({"path": str(store), "credentials": {"dev-4": cred(4)}, "remove": ["dev-2", "dev-9"]})
    assert result["removed"] == ["dev-2"] and result["added"] == ["dev-4"]
    assert sorted(raw_entries(store)) == ["dev-1", "dev-3", "dev-4"]
    assert sorted(result["credentials"]) == ["dev-1", "dev-3", "dev-4"]
    # a label both removed and given (deleted, then re-created in one run) is kept with the new password
    result, dummy = run_action({"path": str(store), "credentials": {"dev-1": cred(1, password="again")}, "remove": ["dev-1"]})
    assert result["removed"] == [] and result["updated"] == ["dev-1"]
    assert decrypt(raw_entries(store)["dev-1"]["password"]) == "again"
    # removing everything leaves a valid, empty store
    run_action({"path": str(store), "remove": ["dev-1", "dev-3", "dev-4"]})
    assert yaml.safe_load(store.read_text()) == {"isr_mqtt_credentials": {}}


def test_returned_passwords_are_encrypted_objects(store, secrets_context):
    result, dummy = run_action({"path": str(store), "credentials": {"dev-1": cred(1)}})
    entry = result["credentials"]["dev-1"]
    assert isinstance(entry["password"], VaultObject)
    assert ciphertext_of(entry["password"]) == entry["password_vault"]
    assert is_encrypted(entry["password_vault"].encode())
    assert "secret-password-1" not in entry["password_vault"]
    assert plaintext_of(entry["password"]) == "secret-password-1"  # a template gets the password
    assert entry["client_id"] == "pub-000000000001" and entry["username"] == "pub-000000000001"
    assert "password" not in repr({k: v for k, v in entry.items() if k != "password"}).replace("password_vault", "")


def test_vault_object_from_an_earlier_run_is_accepted_without_rewrite(store, secrets_context):
    first, dummy = run_action({"path": str(store), "credentials": {"dev-1": cred(1)}})
    before = store.read_bytes()
    again = dict(cred(1), password=first["credentials"]["dev-1"]["password"])  # a vault object
    result, dummy = run_action({"path": str(store), "credentials": {"dev-1": again}})
    assert result["changed"] is False and store.read_bytes() == before


def test_no_vault_secret_fails_before_writing(store):
    with pytest.raises(AnsibleActionFail) as err:
        run_action({"path": str(store), "credentials": {"dev-1": cred(1)}}, secrets=())
    assert "no vault secret is loaded" in str(err.value) and "--vault-id" in str(err.value)
    assert str(store) in str(err.value)
    assert os.listdir(str(store.parent)) == []  # no store, no lock file, no temp file


def test_unknown_vault_id_fails_before_writing(store):
    with pytest.raises(AnsibleActionFail) as err:
        run_action({"path": str(store), "credentials": {"dev-1": cred(1)}, "vault_id": "prod"}, secrets=(FLEET, OTHER))
    assert "vault_id 'prod' is not among the vault secrets of this run (fleet, other)" in str(err.value)
    assert os.listdir(str(store.parent)) == []


def test_vault_id_picks_the_secret(store):
    run_action({"path": str(store), "credentials": {"dev-1": cred(1)}, "vault_id": "other"}, secrets=(FLEET, OTHER))
    assert "AES256;other" in store.read_text()
    assert decrypt(raw_entries(store)["dev-1"]["password"], secrets=(OTHER,)) == "secret-password-1"


def test_failed_write_leaves_the_old_store_and_no_temp_file(store, monkeypatch):
    run_action({"path": str(store), "credentials": {"dev-1": cred(1)}})
    before = store.read_bytes()

    def broken_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vault_credentials.os, "rename", broken_rename)
    with pytest.raises(AnsibleActionFail) as info:
        run_action({"path": str(store), "credentials": {"dev-2": cred(2)}})
    assert "cannot write the credential store %s: No space left on device" % store in str(info.value)
    assert store.read_bytes() == before
    assert sorted(os.listdir(str(store.parent))) == ["credentials.yml"]


def test_write_atomic_replaces_a_world_readable_file_with_a_0600_one(tmp_path):
    target = tmp_path / "f.yml"
    target.write_text("old")
    os.chmod(str(target), 0o644)
    vault_credentials.write_atomic(str(target), "new\n")
    assert target.read_text() == "new\n" and stat.S_IMODE(target.stat().st_mode) == 0o600


def test_the_store_is_re_read_under_an_exclusive_lock(store):
    run_action({"path": str(store), "credentials": {"dev-1": cred(1)}})
    outcome = {}
    with vault_credentials.flocked(str(store) + ".lock"):  # another run holds the lock
        worker = threading.Thread(target=lambda: outcome.update(
            result=run_action({"path": str(store), "credentials": {"dev-2": cred(2)}})[0]))
        worker.start()
        time.sleep(0.5)
        assert worker.is_alive(), "the plugin must wait for the lock"
        assert "dev-2" not in store.read_text()
        # meanwhile the other run writes its entry
        run_other = vault_credentials.render_store(dict(vault_credentials.read_store(str(store)), **{
            "other-1": dict(client_id="pub-o", username="pub-o", password=vault_credentials.Vaulted(
                VaultLib([FLEET]).encrypt("other-pw", FLEET[1], vault_id="fleet").decode()))}))
        vault_credentials.write_atomic(str(store), run_other)
    worker.join(10)
    assert not worker.is_alive()
    assert sorted(raw_entries(store)) == ["dev-1", "dev-2", "other-1"]  # nothing lost
    assert outcome["result"]["added"] == ["dev-2"]


def test_the_lock_file_is_removed_and_waiters_retry_on_the_new_one(tmp_path):
    """Each holder removes the lock file before unlocking; a waiter granted the removed file locks the new one."""
    (tmp_path / "locks").mkdir()
    lock = str(tmp_path / "locks" / "store.yml.lock")
    inside, overlaps = [], []

    def hold(name):
        with vault_credentials.flocked(lock):
            overlaps.append(len(inside))
            inside.append(name)
            time.sleep(0.05)
            inside.remove(name)

    workers = [threading.Thread(target=hold, args=(n,)) for n in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    assert overlaps == [0] * 6  # never two holders at once
    assert os.listdir(str(tmp_path / "locks")) == []


def test_check_mode_reports_and_writes_nothing(store):
    run_action({"path": str(store), "credentials": {"dev-1": cred(1)}})
    before = store.read_bytes()
    result, dummy = run_action({"path": str(store), "credentials": {"dev-2": cred(2)}, "remove": ["dev-1"]},
                               check_mode=True, diff=True)
    assert result["changed"] is True and result["added"] == ["dev-2"] and result["removed"] == ["dev-1"]
    assert store.read_bytes() == before
    assert "secret" not in result["diff"]["before"] + result["diff"]["after"]
    assert result["diff"]["after"] == "dev-2: new password (vaulted)\n"
    assert result["diff"]["before"] == "dev-1: password (vaulted)\n"
    fresh = store.parent / "fresh.yml"
    run_action({"path": str(fresh), "credentials": {"dev-2": cred(2)}}, check_mode=True)
    assert not fresh.exists() and not (store.parent / "fresh.yml.lock").exists()


def test_entries_without_password_are_skipped_with_a_warning(store):
    run_action({"path": str(store), "credentials": {"dev-1": cred(1)}})
    before = store.read_bytes()
    result, warnings = run_action({"path": str(store), "credentials": {"dev-1": dict(cred(1), password=None),
                                                                       "dev-2": dict(cred(2), password="")}})
    assert result["changed"] is False and store.read_bytes() == before
    assert warnings == ["isr.mqtt.vault_credentials: no password given for dev-1, dev-2; those entries were left as they were"]


def test_username_defaults_to_client_id(store):
    run_action({"path": str(store), "credentials": {"dev-1": dict(cred(1), username=None)}})
    assert raw_entries(store)["dev-1"]["username"] == "pub-000000000001"


@pytest.mark.parametrize("content, message", [
    ("- a\n- b\n", "must be a mapping with the key isr_mqtt_credentials"),
    ("isr_mqtt_credentials: [1]\n", "must be a mapping with the key isr_mqtt_credentials"),
    ("isr_mqtt_credentials: {a: [\n", "is not valid YAML"),
])
def test_a_foreign_or_broken_store_is_refused(store, content, message):
    store.write_text(content)
    with pytest.raises(AnsibleActionFail) as err:
        run_action({"path": str(store), "credentials": {"dev-1": cred(1)}})
    assert message in str(err.value)
    assert store.read_text() == content


def test_empty_store_file_is_an_empty_store(store):
    store.write_text("")
    result, dummy = run_action({"path": str(store), "credentials": {"dev-1": cred(1)}})
    assert result["added"] == ["dev-1"]


def test_bad_arguments(store, tmp_path):
    with pytest.raises(AnsibleActionFail) as err:
        run_action({"path": str(store), "credentials": {"dev-1": "just-a-password"}})
    assert "credentials['dev-1'] must be a dict" in str(err.value)
    with pytest.raises(AnsibleActionFail) as err:
        run_action({"path": str(tmp_path / "missing" / "s.yml"), "credentials": {"dev-1": cred(1)}})
    assert "the directory of path" in str(err.value) and "does not exist" in str(err.value)
    with pytest.raises(AnsibleActionFail) as err:
        run_action({"path": str(store), "facts_from": {"client_id": "x"}})
    assert "mutually exclusive: path|facts_from" in str(err.value)
    with pytest.raises(AnsibleActionFail) as err:
        run_action({})
    assert "one of the following is required: path, facts_from" in str(err.value)
    assert os.listdir(str(store.parent)) == []


def test_unreadable_store_is_reported(store):
    store.mkdir()  # a directory where the file should be
    with pytest.raises(AnsibleActionFail) as err:
        run_action({"path": str(store), "credentials": {"dev-1": cred(1)}})
    assert "cannot read the credential store" in str(err.value)


def test_facts_from_an_entry_hold_ciphertext_only(store, secrets_context):
    result, dummy = run_action({"path": str(store), "credentials": {"dev-1": cred(1)}})
    entry = dict((k, v) for k, v in result["credentials"]["dev-1"].items() if k != "password")
    facts, dummy = run_action({"facts_from": entry})
    assert facts["changed"] is False
    values = facts["ansible_facts"]
    assert values["mqtt_client_id"] == values["mqtt_username"] == "pub-000000000001"
    assert values["mqtt_publish_topic"] == "acct/pub-000000000001/"
    assert isinstance(values["mqtt_password"], VaultObject)
    assert ciphertext_of(values["mqtt_password"]) == entry["password_vault"]
    assert plaintext_of(values["mqtt_password"]) == "secret-password-1"
    none, dummy = run_action({"facts_from": {"client_id": "pub-x"}})
    assert none["ansible_facts"]["mqtt_password"] is None
    with pytest.raises(AnsibleActionFail) as err:
        run_action({"facts_from": {"client_id": "pub-x", "password_vault": "plain-text-password"}})
    assert "must be vault ciphertext" in str(err.value)


def test_a_hand_edited_clear_text_password_is_encrypted_and_a_null_one_kept(store):
    fields = dict((k, v) for k, v in cred(1).items() if k != "password")  # same details: only the password differs
    store.write_text(yaml.safe_dump({"isr_mqtt_credentials": {
        "dev-1": dict(fields, password="secret-password-1"),
        "dev-2": {"client_id": "pub-000000000002", "password": None}}}))
    result, dummy = run_action({"path": str(store), "credentials": {"dev-1": cred(1)}})
    assert result["updated"] == ["dev-1"]
    text = store.read_text()
    assert "secret-password-1" not in text
    entries = raw_entries(store)
    assert decrypt(entries["dev-1"]["password"]) == "secret-password-1"
    assert entries["dev-2"]["password"] is None and entries["dev-2"]["client_id"] == "pub-000000000002"
    assert result["credentials"]["dev-2"]["password"] is None and result["credentials"]["dev-2"]["password_vault"] is None


# ---------------------------------------------------------------------------
# run_lock: one role run per store at a time
# ---------------------------------------------------------------------------

def lock_of(store):
    return vault_credentials.RunLock(str(store))


def hold_lock(store, pid, host=None, text=None):
    """Write a lock file as another run would have."""
    path = str(store) + ".run-lock"
    with open(path, "w") as handle:
        handle.write(text if text is not None else json.dumps({"pid": pid, "host": host or socket.gethostname(), "since": "x"}))
    return path


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_run_lock_acquire_holds_the_playbook_pid_and_release_removes_it(store):
    result, warnings = run_action({"path": str(store), "run_lock": "acquire"})
    assert result["changed"] is False and result["run_lock"]["state"] == "acquire" and warnings == []
    holder = json.loads(open(str(store) + ".run-lock").read())
    assert holder["pid"] == os.getppid() and holder["host"] == socket.gethostname()  # the worker's parent: ansible-playbook
    assert stat.S_IMODE(os.stat(str(store) + ".run-lock").st_mode) == 0o600
    again, dummy = run_action({"path": str(store), "run_lock": "acquire", "lock_timeout": 0})  # re-entrant, no wait
    assert again["run_lock"]["waited"] < 1
    result, dummy = run_action({"path": str(store), "run_lock": "release"})
    assert result["run_lock"]["state"] == "release" and not os.path.exists(str(store) + ".run-lock")
    assert not store.exists()  # the lock never touches the store


def test_run_lock_waits_for_a_live_holder_then_takes_it(store):
    path = hold_lock(store, os.getpid())  # alive, and not the plugin's owner (our parent)
    display = Warnings()
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(
        result=run_action({"path": str(store), "run_lock": "acquire", "lock_timeout": 30}, display=display)[0]))
    worker.start()
    time.sleep(1.2)
    assert worker.is_alive(), "acquire must wait while the holder lives"
    assert json.loads(open(path).read())["pid"] == os.getpid()
    vault_credentials.RunLock(str(store), owner={"pid": os.getpid(), "host": socket.gethostname()}).release()
    worker.join(10)
    assert not worker.is_alive()
    assert outcome["result"]["run_lock"]["waited"] >= 1
    assert json.loads(open(path).read())["pid"] == os.getppid()
    assert "waiting up to 30 s" in display.displayed[0] and "pid %d" % os.getpid() in display.displayed[0]
    assert display.displayed[-1].startswith("isr.mqtt.vault_credentials: got the run lock")


def test_run_lock_times_out_naming_the_holder(store):
    hold_lock(store, os.getpid())
    with pytest.raises(AnsibleActionFail) as info:
        run_action({"path": str(store), "run_lock": "acquire", "lock_timeout": 0})
    assert "another run (pid %d on %s" % (os.getpid(), socket.gethostname()) in str(info.value)
    assert "remove the lock file if that process is gone" in str(info.value)


@pytest.mark.parametrize("text", [None, "", "{not json"])
def test_a_stale_lock_is_taken_over_with_a_warning(store, text):
    path = hold_lock(store, dead_pid(), text=text)
    result, warnings = run_action({"path": str(store), "run_lock": "acquire", "lock_timeout": 0})
    assert json.loads(open(path).read())["pid"] == os.getppid()
    assert len(warnings) == 1 and "took over the run lock" in warnings[0]


def test_a_lock_of_another_host_is_never_judged_stale(store):
    hold_lock(store, dead_pid(), host="another-controller")
    with pytest.raises(AnsibleActionFail, match="on another-controller"):
        run_action({"path": str(store), "run_lock": "acquire", "lock_timeout": 1})


def test_release_leaves_a_lock_that_is_not_ours(store):
    path = hold_lock(store, os.getpid())
    result, dummy = run_action({"path": str(store), "run_lock": "release"})
    assert result["run_lock"]["state"] == "not held" and os.path.exists(path)
    os.unlink(path)
    result, dummy = run_action({"path": str(store), "run_lock": "release"})  # nothing held: harmless
    assert result["run_lock"]["state"] == "not held"


def test_run_lock_in_check_mode_and_bad_arguments(store, tmp_path):
    result, dummy = run_action({"path": str(store), "run_lock": "acquire"}, check_mode=True)
    assert "not taken" in result["msg"] and not os.path.exists(str(store) + ".run-lock")
    for args, message in [
        ({"path": str(store), "run_lock": "acquire", "credentials": {"dev-1": cred(1)}}, "neither credentials nor remove"),
        ({"path": str(store), "run_lock": "acquire", "lock_timeout": -1}, "lock_timeout must be between 0 and 86400"),
        ({"path": str(store), "run_lock": "acquire", "lock_timeout": 10 ** 12}, "lock_timeout must be between 0 and 86400"),
        ({"path": str(tmp_path), "run_lock": "acquire"}, "is a directory"),
        ({"path": "/nonexistent-dir/creds.yml", "run_lock": "acquire"}, "/nonexistent-dir/creds.yml does not exist"),
        ({"path": str(store), "run_lock": "hold"}, "run_lock"),
    ]:
        with pytest.raises(AnsibleActionFail, match=message):
            run_action(args)


def test_many_passwords_are_encrypted_in_threads_each_with_its_own_salt(store, monkeypatch):
    monkeypatch.setattr(_vault.os, "cpu_count", lambda: 2)
    used = []
    real = _vault.ThreadPoolExecutor
    monkeypatch.setattr(_vault, "ThreadPoolExecutor", lambda max_workers: used.append(max_workers) or real(max_workers))
    incoming = dict(("dev-%d" % n, cred(n, password="same-password")) for n in range(60))
    result, dummy = run_action({"path": str(store), "credentials": incoming})
    assert used == [2] and len(result["added"]) == 60
    entries = raw_entries(store)
    assert len(set(entry["password"] for entry in entries.values())) == 60  # random salts: no two alike
    assert all(decrypt(entry["password"]) == "same-password" for entry in entries.values())
    used[:] = []
    run_action({"path": str(store), "credentials": {"dev-x": cred(99)}})
    assert used == []  # a few passwords: no threads


# ---------------------------------------------------------------------------
# a store that cannot break silently
# ---------------------------------------------------------------------------

def flip_one_byte(text, label):
    """The store text with one hex digit of ``label``'s ciphertext changed."""
    lines = text.splitlines(True)
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(json.dumps(label)))
    index = next(i for i in range(start, len(lines)) if lines[i].startswith("      ") and not lines[i].strip().startswith("$"))
    line = lines[index]
    col = len(line) - len(line.lstrip()) + 5
    lines[index] = line[:col] + ("0" if line[col] != "0" else "1") + line[col + 1:]
    return "".join(lines)


def truncate_entry(text, label):
    lines = text.splitlines(True)
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(json.dumps(label)))
    vault_line = next(i for i in range(start, len(lines)) if "$ANSIBLE_VAULT" in lines[i])
    end = next((i for i in range(vault_line + 1, len(lines)) if not lines[i].startswith("      ")), len(lines))
    return "".join(lines[:vault_line + 2] + lines[end:])  # keep one line of the ciphertext


@pytest.mark.parametrize("damage, reason", [
    (flip_one_byte, "does not decrypt"),
    (truncate_entry, "does not decrypt"),
    (lambda text, label: text.replace(text[text.index(json.dumps(label)):].split("password:", 1)[0] + "password: !vault |",
                                      text[text.index(json.dumps(label)):].split("password:", 1)[0] + "password: null\n    x: |"),
     "no password"),
])
def test_a_damaged_entry_is_named_and_left_out_on_read(store, damage, reason):
    run_action({"path": str(store), "credentials": dict(("dev-%d" % n, cred(n)) for n in (1, 2, 3))})
    store.write_text(damage(store.read_text(), "dev-2"))
    display = Warnings()
    result, warnings = run_action({"path": str(store)}, display=display)
    assert list(result["damaged"]) == ["dev-2"] and reason in result["damaged"]["dev-2"], result["damaged"]
    assert sorted(result["credentials"]) == ["dev-1", "dev-3"] and sorted(result["rotated_at"]) == ["dev-1", "dev-3"]
    assert any("dev-2: " in w and "recovers them by rotation" in w for w in warnings)
    # the rotation's new password replaces the damaged entry
    result, dummy = run_action({"path": str(store), "credentials": {"dev-2": cred(2, password="new-2")}})
    assert decrypt(raw_entries(store)["dev-2"]["password"]) == "new-2"
    assert run_action({"path": str(store)})[0]["damaged"] == {}


def test_a_store_that_would_not_read_back_is_not_written(store):
    run_action({"path": str(store), "credentials": {"dev-1": cred(1)}})
    before = store.read_bytes()
    with pytest.raises(AnsibleActionFail) as info:
        run_action({"path": str(store), "credentials": {"bad\u2028label": cred(2), "dev-3": cred(3)}})
    assert "would not read back as written" in str(info.value) and "'bad\\u2028label'" in str(info.value)
    assert store.read_bytes() == before and run_action({"path": str(store)})[0]["damaged"] == {}


def test_the_read_probes_for_space_before_any_request(store, monkeypatch):
    run_action({"path": str(store), "credentials": {"dev-1": cred(1)}})
    real_fdopen = os.fdopen

    def full_disk(fd, *args, **kwargs):
        handle = real_fdopen(fd, *args, **kwargs)
        if os.readlink("/proc/self/fd/%d" % fd).endswith(".probe"):
            def write(data):
                raise OSError(28, "No space left on device")
            handle.write = write
        return handle

    monkeypatch.setattr(vault_credentials.os, "fdopen", full_disk)
    with pytest.raises(AnsibleActionFail) as info:
        run_action({"path": str(store), "space_for": 500})
    assert "%s cannot be written (No space left on device" % store in str(info.value)
    assert "nothing was sent to the portal" in str(info.value)
    assert sorted(os.listdir(str(store.parent))) == ["credentials.yml"]
    run_action({"path": str(store)})  # without space_for (a module user's read): no probe


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/bin/mount"), reason="mounting a tmpfs needs root")
def test_a_full_tmpfs_fails_naming_the_path_and_keeps_the_old_store(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (%s): the full-disk case is covered by the fault-injection tests above"
                    % done.stderr.strip())
    try:
        path = mount / "credentials.yml"
        run_action({"path": str(path), "credentials": {"dev-1": cred(1)}})
        before = path.read_bytes()
        with pytest.raises(AnsibleActionFail) as info:  # the read step of a run of 500 devices
            run_action({"path": str(path), "space_for": 500})
        assert str(path) in str(info.value) and "No space left on device" in str(info.value)
        with pytest.raises(AnsibleActionFail) as info:  # a merge that does not fit
            run_action({"path": str(path), "credentials": dict(("dev-%d" % n, cred(n)) for n in range(2, 200))})
        assert "cannot write the credential store %s" % path in str(info.value)
        assert path.read_bytes() == before
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_rerun_does_not_decrypt_checked_entries_again_but_sees_any_change(store, monkeypatch):
    run_action({"path": str(store), "credentials": dict(("dev-%d" % n, cred(n)) for n in (1, 2, 3))})
    decrypts = []
    real = VaultLib.decrypt

    def counting(self, *args, **kwargs):
        decrypts.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(VaultLib, "decrypt", counting)
    assert run_action({"path": str(store)})[0]["damaged"] == {} and len(decrypts) == 3
    del decrypts[:]
    assert run_action({"path": str(store)})[0]["damaged"] == {} and decrypts == []  # remembered
    store.write_text(flip_one_byte(store.read_text(), "dev-3"))
    assert list(run_action({"path": str(store)})[0]["damaged"]) == ["dev-3"] and len(decrypts) == 1
    with pytest.raises(AnsibleActionFail, match="none of the 3 vaulted entries"):  # another secret: nothing remembered
        run_action({"path": str(store)}, secrets=(OTHER,))
    checked = [p for p in os.listdir(os.environ["ISR_MQTT_LOCK_DIR"]) if p.endswith(".checked")]
    assert len(checked) == 1 and stat.S_IMODE(os.stat(os.path.join(os.environ["ISR_MQTT_LOCK_DIR"], checked[0])).st_mode) == 0o600


def edit_field(text, label, field, value):
    """The store text with ``field`` of ``label``'s entry set to ``value`` (a plain YAML scalar)."""
    start = text.index(json.dumps(label) + ":")
    line_start = text.index("    %s: " % field, start)
    line_end = text.index("\n", line_start)
    return text[:line_start] + "    %s: %s" % (field, value) + text[line_end:]


@pytest.mark.parametrize("field, value", [
    ("username", '"pub-999999999999"'), ("client_id", '"pub-000000000003"'), ("history_topic_prefix", '"acct/x"'),
    ("publish_topic", "null"), ("rotated_at", '"2099-01-01T00:00:00Z"'), ("check", '"00:00"'),
])
def test_an_edited_plain_field_is_damaged_like_a_bad_password(store, field, value):
    run_action({"path": str(store), "credentials": dict(("dev-%d" % n, cred(n)) for n in (1, 2, 3))})
    assert all(entry["check"] for entry in raw_entries(store).values())
    store.write_text(edit_field(store.read_text(), "dev-2", field, value))
    result, warnings = run_action({"path": str(store), "credentials_for": []})
    assert list(result["damaged"]) == ["dev-2"] and "integrity check" in result["damaged"]["dev-2"], result["damaged"]
    assert sorted(result["rotated_at"]) == ["dev-1", "dev-3"] and not result["changed"]
    assert any("dev-2: " in w and "recovers them by rotation" in w for w in warnings)
    # the rotation's new password (and the portal's fields) replace the entry, sealed again
    run_action({"path": str(store), "credentials": {"dev-2": cred(2, password="new-2")}})
    assert run_action({"path": str(store)})[0]["damaged"] == {}


def test_an_entry_stripped_of_its_check_in_a_sealed_store_is_damaged(store):
    run_action({"path": str(store), "credentials": dict(("dev-%d" % n, cred(n)) for n in (1, 2))})
    text = store.read_text()
    start = text.index('"dev-2":')
    line = text.index("    check: ", start)
    store.write_text(text[:line] + text[text.index("\n", line) + 1:])
    result, dummy = run_action({"path": str(store)})
    assert list(result["damaged"]) == ["dev-2"] and "no integrity check" in result["damaged"]["dev-2"]


def test_a_store_of_the_previous_version_is_accepted_once_and_sealed(store):
    entries = dict(("dev-%d" % n, dict(cred(n), password=vault_credentials.Vaulted(
        VaultLib([FLEET]).encrypt(cred(n)["password"], FLEET[1], vault_id="fleet").decode()))) for n in (1, 2, 3))
    store.write_text(vault_credentials.render_store(entries))  # no check: written before checks existed
    before = raw_entries(store)
    result, warnings = run_action({"path": str(store), "credentials_for": []}, check_mode=True)
    assert result["damaged"] == {} and result["changed"] and raw_entries(store) == before
    result, warnings = run_action({"path": str(store), "credentials_for": []})
    assert result["damaged"] == {} and result["changed"] and sorted(result["rotated_at"]) == ["dev-1", "dev-2", "dev-3"]
    assert [w for w in warnings if "3 entries" in w and "no integrity check" in w and "sealed now" in w], warnings
    after = raw_entries(store)
    assert all(after[label]["check"] and after[label]["password"] == before[label]["password"] for label in after)  # not rotated
    result, warnings = run_action({"path": str(store), "credentials_for": []})
    assert not result["changed"] and result["damaged"] == {} and not warnings


def journal_record(n, **changes):
    from ansible_collections.isr.mqtt.plugins.plugin_utils._seal import Sealer
    ciphertext = VaultLib([FLEET]).encrypt("journaled-%d" % n, FLEET[1], vault_id="fleet").decode()
    record = dict((field, value) for field, value in cred(n).items() if field != "password")
    record.update(label="dev-%d" % n, password_vault=ciphertext)
    record["check"] = Sealer([FLEET], FLEET[1], b"journal-salt-123").seal(record["label"], dict(record, password=ciphertext))
    record.update(changes)
    return json.dumps(record, sort_keys=True) + "\n"


def test_journal_records_are_checked_then_sealed_with_the_store_salt(store):
    run_action({"path": str(store), "credentials": dict(("dev-%d" % n, cred(n)) for n in (1, 2, 3))})
    store_salt = raw_entries(store)["dev-1"]["check"].split(":")[0]
    journal = store.with_name(store.name + ".journal")
    journal.write_text(journal_record(1) + journal_record(2, client_id="pub-000000000012"))  # a flipped digit
    result, warnings = run_action({"path": str(store), "credentials_for": []})
    assert list(result["damaged"]) == ["dev-2"] and "integrity check" in result["damaged"]["dev-2"], result["damaged"]
    assert sorted(result["journaled"]) == ["dev-1", "dev-2"] and not journal.exists()
    entries = raw_entries(store)
    assert decrypt(entries["dev-1"]["password"]) == "journaled-1" and entries["dev-1"]["check"].startswith(store_salt + ":")
    assert run_action({"path": str(store)})[0]["damaged"] == {"dev-2": result["damaged"]["dev-2"]}  # still damaged
