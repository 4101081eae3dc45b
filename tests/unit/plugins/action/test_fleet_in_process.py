# -*- coding: utf-8 -*-
"""isr.mqtt.mqtt_fleet on the controller: the module's code in the worker (InProcessModule), every password
journaled vault-encrypted the moment it arrives, and isr.mqtt.vault_credentials folding the journal into the store.
Real emulator over real HTTP; only the task and connection objects are stand-ins."""
from __future__ import annotations

import json
import os
import stat
from types import SimpleNamespace

import pytest
from ansible.errors import AnsibleActionFail
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultLib

from ansible_collections.isr.mqtt.plugins.action import mqtt_fleet
from ansible_collections.isr.mqtt.plugins.modules import mqtt_fleet as fleet_module
from ansible_collections.isr.mqtt.plugins.plugin_utils._journal import Journal, fold, journal_path, read_journal

from test_vault_credentials import FLEET, Warnings, decrypt, raw_entries, run_action as run_store


def run_fleet(emulator, args, check_mode=False, transport="local", task_env=None):
    """-> (result, displayed lines). The task runs on the controller (connection local) unless ``transport`` says."""
    loader = DataLoader()
    loader.set_vault_secrets([FLEET])
    task = SimpleNamespace(args=dict(args), check_mode=check_mode, diff=False, async_val=0, no_log=False,
                           action="isr.mqtt.mqtt_fleet", resolved_action="isr.mqtt.mqtt_fleet", environment=task_env,
                           get_name=lambda: "fleet")
    connection = SimpleNamespace(transport=transport, _shell=SimpleNamespace(tmpdir=None, env_prefix=lambda **kw: ""))
    action = mqtt_fleet.ActionModule(task, connection, None, loader, SimpleNamespace(template=lambda value: value), None)
    action._display = Warnings()
    args = dict(portal_url=emulator.url, api_token=emulator.token)
    args.update(task.args)
    task.args = args
    return action.run(task_vars={}), action._display.displayed


@pytest.fixture(autouse=True)
def lock_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ISR_MQTT_LOCK_DIR", str(tmp_path / "locks"))  # account locks, checked ciphertexts


def devices(n):
    return [{"label": "dev-%03d" % i} for i in range(n)]


def test_passwords_are_journaled_as_they_arrive_ciphertext_only(emulator, tmp_path):
    journal = tmp_path / "store.yml.journal"
    seen_before_create = []
    create = fleet_module.FleetRun.step

    def step(self, action):  # what is on disk when each write starts
        seen_before_create.append(len(read_journal(str(journal))))
        return create(self, action)

    fleet_module.FleetRun.step, original = step, create
    try:
        result, displayed = run_fleet(emulator, {"clients": devices(6), "journal": str(journal), "parallel": 1,
                                                 "batch_size": 2})
    finally:
        fleet_module.FleetRun.step = original
    assert not result.get("failed"), result
    assert seen_before_create == [0, 1, 2, 3, 4, 5]  # each password was on disk before the next write started
    assert stat.S_IMODE(os.stat(journal).st_mode) == 0o600
    records = read_journal(str(journal))
    text = journal.read_text()
    for record in records:
        password = decrypt(record["password_vault"])
        assert password not in text  # ciphertext only
        cred = result["credentials"][record["label"]]
        assert record["password_vault"] == cred["password_vault"]  # encrypted once: journal and result agree
        assert emulator.control.verify(record["username"], password)["ok"]
    assert [line for line in displayed if "batch" in line] == [
        "fleet: batch %d/3: {'created': 2, 'updated': 0, 'paused': 0, 'resumed': 0, 'rotated': 0, 'deleted': 0}" % i
        for i in (1, 2, 3)]
    assert result["complete"] is True and "invocation" not in result  # nothing echoed back


@pytest.fixture
def store(tmp_path):
    (tmp_path / "store").mkdir()
    return tmp_path / "store" / "credentials.yml"


def test_vault_credentials_folds_the_journal_and_removes_it(emulator, store):
    run_fleet(emulator, {"clients": devices(3), "journal": journal_path(str(store))})
    result, dummy = run_store({"path": str(store)}, check_mode=True)
    assert result["changed"] and sorted(result["journaled"]) == ["dev-000", "dev-001", "dev-002"]
    assert os.path.exists(journal_path(str(store))) and not store.exists()  # check mode writes nothing
    result, dummy = run_store({"path": str(store)})
    assert sorted(result["journaled"]) == ["dev-000", "dev-001", "dev-002"]
    assert not os.path.exists(journal_path(str(store)))
    entries = raw_entries(store)
    for label, entry in entries.items():
        assert emulator.control.verify(entry["username"], decrypt(entry["password"]))["ok"], label
    result, dummy = run_store({"path": str(store)})
    assert not result["changed"]


def test_the_store_read_does_not_decrypt_again_what_the_run_journaled(emulator, tmp_path, monkeypatch):
    decrypts = []
    decrypt_once = VaultLib.decrypt

    def counting_decrypt(self, *args, **kwargs):
        decrypts.append(1)
        return decrypt_once(self, *args, **kwargs)

    monkeypatch.setattr(VaultLib, "decrypt", counting_decrypt)
    counts = []
    for forget in (False, True):
        store = tmp_path / ("store-%s" % forget) / "credentials.yml"
        store.parent.mkdir()
        run_fleet(emulator, {"clients": [{"label": "%s-%d" % (forget, i)} for i in range(3)], "journal": journal_path(str(store))})
        if forget:  # without what the fleet run vouched for, the read decrypts each folded entry to check it
            for name in os.listdir(str(tmp_path / "locks")):
                if name.endswith(".checked"):
                    os.unlink(str(tmp_path / "locks" / name))
        del decrypts[:]
        result, dummy = run_store({"path": str(store)})
        assert len(result["journaled"]) == 3 and result["damaged"] == {}
        counts.append(len(decrypts))
    assert counts == [0, 3]


def test_a_password_whose_journal_write_failed_is_in_the_result_and_reaches_the_store(emulator, store, monkeypatch):
    real_password = Journal.password

    def disk_full_after_one(self, label, credential, ciphertext, *sealer):
        if os.path.exists(self.path):
            raise OSError(28, "No space left on device")
        real_password(self, label, credential, ciphertext, *sealer)

    monkeypatch.setattr(Journal, "password", disk_full_after_one)
    result, dummy = run_fleet(emulator, {"clients": devices(3), "journal": journal_path(str(store)), "parallel": 1,
                                         "return_password": "ciphertext"})
    assert result["failed"] and "No space left" in result["msg"]
    assert sorted(result["credentials"]) == ["dev-000", "dev-001"]  # the second was created, then its journal write failed
    assert [r["label"] for r in read_journal(journal_path(str(store)))] == ["dev-000"]
    for cred in result["credentials"].values():
        assert cred["password"].startswith("$ANSIBLE_VAULT")  # sealed, not plaintext
    run_store({"path": str(store), "credentials": result["credentials"]})  # what the role's persist step does
    entries = raw_entries(store)
    assert sorted(entries) == ["dev-000", "dev-001"]
    for entry in entries.values():
        assert emulator.control.verify(entry["username"], decrypt(entry["password"]))["ok"]


def test_not_journaled_returns_only_what_the_journal_misses_and_the_store_gets_all(emulator, store, monkeypatch):
    real_password = Journal.password

    def disk_full_for_the_second(self, label, credential, ciphertext, *sealer):
        if label == "dev-001":
            raise OSError(28, "No space left on device")
        real_password(self, label, credential, ciphertext, *sealer)

    monkeypatch.setattr(Journal, "password", disk_full_for_the_second)
    result, dummy = run_fleet(emulator, {"clients": devices(3), "journal": journal_path(str(store)), "parallel": 1,
                                         "return_password": "ciphertext", "return_credentials": "not_journaled"})
    assert result["failed"] and "No space left" in result["msg"]
    assert sorted(result["credentials"]) == ["dev-001"]
    assert [r["label"] for r in read_journal(journal_path(str(store)))] == ["dev-000"]
    run_store({"path": str(store), "credentials": result["credentials"]})  # the role's persist step: journal + result
    entries = raw_entries(store)
    assert sorted(entries) == ["dev-000", "dev-001"]
    for entry in entries.values():
        assert emulator.control.verify(entry["username"], decrypt(entry["password"]))["ok"]


def test_not_journaled_needs_a_journal(emulator):
    result, dummy = run_fleet(emulator, {"clients": devices(1), "return_credentials": "not_journaled"})
    assert result["failed"] and "return_credentials=not_journaled needs journal" in result["msg"]
    assert emulator.control.counters()["writes"] == 0


def test_deleted_labels_are_journaled_as_removals(emulator, store):
    run_fleet(emulator, {"clients": devices(3), "journal": journal_path(str(store))})
    run_store({"path": str(store)})
    result, dummy = run_fleet(emulator, {"clients": devices(2), "purge": True, "purge_match": "^dev-",
                                         "journal": journal_path(str(store))})
    assert result["deleted"] == ["dev-002"]
    run_store({"path": str(store)})
    assert sorted(raw_entries(store)) == ["dev-000", "dev-001"]


def test_max_duration_stops_cleanly_at_a_batch_boundary_and_a_rerun_resumes(emulator, tmp_path):
    emulator.control.set_faults(latency_s=0.6)  # list + batch 1 take 1.2 s > max_duration
    result, dummy = run_fleet(emulator, {"clients": devices(6), "batch_size": 2, "parallel": 2, "max_duration": 1})
    emulator.control.set_faults()
    assert not result.get("failed") and result["complete"] is False, result
    assert result["counts"]["created"] == 2 and len(result["credentials"]) == result["counts"]["created"]
    assert any("max_duration" in warning for warning in result["warnings"])
    again, dummy = run_fleet(emulator, {"clients": devices(6)})
    assert again["complete"] is True and again["counts"]["created"] == 6 - result["counts"]["created"]
    assert emulator.control.state()["clients"] == 6


def test_check_mode_journals_nothing(emulator, tmp_path):
    journal = tmp_path / "j"
    result, dummy = run_fleet(emulator, {"clients": devices(2), "journal": str(journal)}, check_mode=True)
    assert result["counts"]["created"] == 2 and not journal.exists() and emulator.control.state()["clients"] == 0


def test_the_token_from_the_tasks_environment_is_used(emulator):
    result, dummy = run_fleet(emulator, {"clients": devices(1), "api_token": None},
                              task_env=[{"ISR_PORTAL_TOKEN": emulator.token}])
    assert result["counts"]["created"] == 1 and emulator.token not in json.dumps(result["counts"])


def test_bad_options_fail_with_the_modules_message(emulator):
    result, dummy = run_fleet(emulator, {"clients": devices(1), "parallel": 99})
    assert result["failed"] and "parallel must be between 1 and 32" in result["msg"]
    result, dummy = run_fleet(emulator, {"clients": devices(1), "unknown_option": 1})
    assert result["failed"] and "unknown_option" in result["msg"]


def test_journal_needs_the_controller(emulator, tmp_path):
    with pytest.raises(AnsibleActionFail, match="on the controller"):
        run_fleet(emulator, {"clients": devices(1), "journal": str(tmp_path / "j")}, transport="ssh")


def test_read_journal_skips_a_last_line_cut_by_a_kill_and_refuses_damage(tmp_path):
    cipher = VaultLib([FLEET]).encrypt("pw", FLEET[1], vault_id="fleet").decode()
    path = tmp_path / "j"
    journal = Journal(str(path))
    journal.password("a", {"client_id": "pub-1"}, cipher)
    journal.removed(["b"])
    journal.close()
    with open(str(path), "a") as handle:
        handle.write('{"label": "c", "password_va')  # the write a SIGKILL interrupted
    records = read_journal(str(path))
    assert [r["label"] for r in records] == ["a", "b"]
    entries = {"b": {"client_id": "pub-2", "password": cipher}}
    assert fold(entries, records) == ["a", "b"] and list(entries) == ["a"] and entries["a"]["password"] == cipher
    path.write_text('not json\n{"label": "a", "remove": true}\n')
    with pytest.raises(AnsibleActionFail, match="damaged line 1"):
        read_journal(str(path))
    path.write_text('{"label": "a", "password_vault": "plain-text-password"}\n')
    with pytest.raises(AnsibleActionFail, match="not a journal record"):
        read_journal(str(path))


def test_ciphertext_mode_returns_the_journaled_ciphertext_once_encrypted(emulator, tmp_path):
    journal = tmp_path / "j"
    result, dummy = run_fleet(emulator, {"clients": devices(2), "journal": str(journal), "return_password": "ciphertext"})
    records = dict((r["label"], r["password_vault"]) for r in read_journal(str(journal)))
    for label, cred in result["credentials"].items():
        assert cred["password"] == cred["password_vault"] == records[label]  # the same text: not encrypted twice
        assert emulator.control.verify(cred["username"], decrypt(cred["password"]))["ok"]
