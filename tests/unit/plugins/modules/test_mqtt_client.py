# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""mqtt_client run in-process against the real emulator: the paths a playbook cannot easily
provoke (a lost create answer, a failure after a create, password_file failures) and the
0600 password file."""
from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.isr.mqtt.plugins.module_utils import _reader, _secret_file
from ansible_collections.isr.mqtt.plugins.modules import mqtt_client, mqtt_client_info, mqtt_fleet


@pytest.fixture
def run(run_module):
    """Run a module's main() with args (default: mqtt_client); returns (failed, result)."""
    return lambda module=mqtt_client, **args: run_module(module, **args)


def verify(emulator, client_id, password):
    return emulator.control.verify(client_id, password)["ok"]


def test_create_returns_password_rerun_does_not(run, emulator):
    failed, result = run(label="unit-1")
    assert not failed and result["changed"]
    assert verify(emulator, result["client"]["client_id"], result["password"])
    assert "password" not in result["client"]
    failed, again = run(label="unit-1")
    assert not failed and not again["changed"] and again["password"] is None and again["actions"] == []


def test_password_survives_failure_after_create(run, emulator):
    emulator.control.set_faults(fail_after_creates=1)
    failed, result = run(label="unit-2", paused=True)
    assert failed
    assert [a["action"] for a in result["actions"]] == ["create"]
    assert result["changed"] is True and result["client"]["client_id"]
    assert result["error"]["kind"] == "server"
    emulator.control.set_faults()
    assert verify(emulator, result["client"]["client_id"], result["password"])


def test_lost_create_answer_is_recovered_by_rotation(run, emulator):
    emulator.control.set_faults(drop_after_create=1)
    failed, result = run(label="unit-3")
    assert not failed, result
    assert [(a["action"], a["fields"]) for a in result["actions"]] == [
        ("create", {"allow_publish": True, "allow_subscribe": False}), ("rotate", {"reason": "recover"})]
    assert emulator.control.state()["clients"] == 1
    assert verify(emulator, result["client"]["client_id"], result["password"])


def test_password_file_0600_and_not_in_result(run, emulator, tmp_path):
    target = tmp_path / "pw"
    target.write_text("old")
    os.chmod(str(target), 0o644)
    old_umask = os.umask(0)  # even a permissive umask must not widen the file
    try:
        failed, result = run(label="unit-4", password_file=str(target))
    finally:
        os.umask(old_umask)
    assert not failed and result["password"] is None
    assert stat.S_IMODE(os.stat(str(target)).st_mode) == 0o600
    assert verify(emulator, result["client"]["client_id"], target.read_text())
    assert target.read_text() not in json.dumps(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emulator.json", "emulator.log", "pw"]


def test_password_file_in_missing_directory_fails_before_any_request(run, emulator, tmp_path):
    emulator.control.reset_counters()
    failed, result = run(label="unit-5", password_file=str(tmp_path / "missing-dir" / "pw"))
    assert failed and "password_file" in result["msg"] and "missing-dir" in result["msg"]
    assert emulator.control.counters()["total"] == 0


@pytest.mark.parametrize("module, args, message", [
    (mqtt_client, {"label": ["x"]}, "label must be a non-empty string of 1-64 characters, not list"),
    (mqtt_client, {"label": 7}, "not int; quote the value in YAML"),
    (mqtt_client, {"label": "dev\u0085one"}, "label 'dev\\x85one' contains control characters"),
    (mqtt_client, {"client_id": "..", "state": "absent"}, "client_id '..' is not a valid client id"),
    (mqtt_client, {"client_id": ["pub-1"]}, "client_id must be a string, not list"),
    (mqtt_client_info, {"client_id": "live"}, "client_id 'live' is reserved"),
    (mqtt_client_info, {"client_id": "pub-1?x"}, "is not a valid client id"),
    (mqtt_client_info, {"label": "x" * 65}, "label is 65 characters long"),
    (mqtt_client_info, {"label": ["a"]}, "not list"),
    (mqtt_client_info, {"api_token": ["a", "b"]}, "api_token must be a string (the token itself, isr_mqtt_rest_...), not list"),
    (mqtt_client, {"label": None}, "label and client_id are both null"),
    # explicit nulls of typed options: refused by Ansible (2.19) or by check_not_null, never read as false
    # (allow_publish/allow_subscribe: null means "leave as is", like leaving them out: issue 24)
    (mqtt_client, {"label": "u-1", "rotate_password": None}, "rotate_password"),
    (mqtt_client, {"label": "u-1", "recreate": None}, "recreate"),
    (mqtt_client, {"label": "u-1 "}, "has leading or trailing whitespace"),
    (mqtt_client, {"label": " \t "}, "label is blank"),
    (mqtt_client, {"label": "u-1", "validate_certs": None}, "validate_certs"),
    (mqtt_client, {"label": "u-1", "timeout": 10 ** 12}, "timeout must be between 1 and 3600 seconds"),
    (mqtt_client, {"label": "u-1", "rate_limit_max_wait": 10 ** 9}, "rate_limit_max_wait must be between 0 and 86400"),
    (mqtt_client, {"label": "u\u2028x"}, "contains U+2028"),
    (mqtt_client, {"label": "u-1", "password_file": "/dev/full"}, "password_file /dev/full is not a regular file"),
    (mqtt_client_info, {"label": "u\uffff"}, "contains U+FFFF"),
])
def test_bad_input_fails_before_any_request(run, emulator, module, args, message):
    emulator.control.reset_counters()
    failed, result = run(module, **args)
    assert failed and message in result["msg"], result
    assert emulator.control.counters()["total"] == 0


def test_info_filters(run):
    cid = run(label="unit-info")[1]["client"]["client_id"]
    run(label="unit-info-2")

    def ids(**filters):
        return [row["client_id"] for row in run(mqtt_client_info, **filters)[1]["clients"]]

    assert ids(label="unit-info") == [cid] and ids(client_id=cid) == [cid]
    assert ids(label="unit-info", paused=True) == [] and len(ids()) == 2


def test_password_file_write_failure_returns_password(run, emulator, tmp_path, monkeypatch):
    def broken_write(path, secret):
        raise OSError("disk full")

    monkeypatch.setattr(mqtt_client, "write_secret_file", broken_write)
    failed, result = run(label="unit-5b", password_file=str(tmp_path / "pw"))
    assert failed and "password_file" in result["msg"]
    assert verify(emulator, result["client"]["client_id"], result["password"])


def test_recreate_when_patch_is_missing(run, emulator):
    first = run(label="unit-6", paused=True)[1]
    emulator.control.set_account(emulator.account_id, patch_supported=False)
    failed, result = run(label="unit-6", allow_subscribe=True)
    assert failed and "recreate: true" in result["msg"] and result["changed"] is False
    failed, result = run(label="unit-6", allow_subscribe=True, recreate=True)
    assert not failed
    assert [a["action"] for a in result["actions"]] == ["delete", "create", "pause"]
    row = result["client"]
    assert row["client_id"] != first["client"]["client_id"] and row["allow_subscribe"] and row["paused"]
    emulator.control.set_account(emulator.account_id, patch_supported=True)
    assert not verify(emulator, row["client_id"], result["password"])  # paused: cannot log in
    run(label="unit-6", paused=False)
    assert verify(emulator, row["client_id"], result["password"])


def test_write_secret_file_cleans_up_on_error(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(_secret_file.os, "replace", broken_replace)
    with pytest.raises(OSError):
        _secret_file.write_secret_file(str(tmp_path / "pw"), "secret")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["symlink", "fifo", "dir"])
def test_password_file_must_be_a_regular_file_or_absent(run, emulator, tmp_path, kind):
    target = tmp_path / "pw"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("keep me")
    if kind == "symlink":
        target.symlink_to(elsewhere)
    elif kind == "fifo":
        os.mkfifo(str(target))
    else:
        target.mkdir()
    emulator.control.reset_counters()
    failed, result = run(label="unit-pwfile-%s" % kind, password_file=str(target))
    assert failed and "password_file %s" % target in result["msg"], result
    assert {"symlink": "symbolic link", "fifo": "not a regular file", "dir": "directory"}[kind] in result["msg"]
    assert emulator.control.counters()["total"] == 0 and elsewhere.read_text() == "keep me"


def test_write_secret_file_refuses_a_path_that_became_a_device_or_link(tmp_path):
    link = tmp_path / "pw"
    link.symlink_to(tmp_path / "target")
    with pytest.raises(OSError, match="symbolic link"):
        _secret_file.write_secret_file(str(link), "secret")
    assert os.path.islink(str(link)) and not (tmp_path / "target").exists()
    with pytest.raises(OSError, match="not a regular file"):
        _secret_file.write_secret_file("/dev/null", "secret")


# ---------------------------------------------------------------- create answers without an id (issue 13)

@pytest.fixture
def no_id_in_create_answers(emulator, monkeypatch):
    """The emulator answers creates as the portal's docs show (no id), and publish_topic is not readable."""
    emulator.control.set_dialect("link")
    monkeypatch.setattr(_reader, "client_id_from_publish_topic", lambda topic: None)


def login_of(emulator, label):
    emulator.control.set_dialect("default")
    failed, info = mqtt_client_info_run(emulator, label)
    assert not failed and len(info["clients"]) == 1
    return info["clients"][0]["client_id"]


def mqtt_client_info_run(emulator, label):
    from ansible_collections.isr.mqtt.plugins.module_utils._portal import PortalClient
    rows = [r for r in PortalClient(emulator.url, emulator.token).list_clients() if r["label"] == label]
    return False, {"clients": rows}


def test_create_answer_without_id_is_identified_by_relisting(run, emulator, no_id_in_create_answers):
    failed, result = run(label="unit-noid-1")
    assert not failed, result
    assert "re-listing identified it" in json.dumps(result.get("warnings")), result.get("warnings")
    assert result["client"]["client_id"] == login_of(emulator, "unit-noid-1")
    assert verify(emulator, result["client"]["client_id"], result["password"])
    assert emulator.control.state()["labels"] == {"unit-noid-1": 1}


@pytest.mark.parametrize("module", [mqtt_client, mqtt_fleet])
def test_unidentified_create_still_hands_over_the_password(run, emulator, no_id_in_create_answers, monkeypatch, module):
    real = _reader.read_created_client

    def then_refuse_the_relist(*args, **kwargs):
        emulator.control.set_dialect("unknown")  # the re-list meets a continuation it must refuse
        return real(*args, **kwargs)

    monkeypatch.setattr(_reader, "read_created_client", then_refuse_the_relist)
    args = {"label": "unit-noid-2"} if module is mqtt_client else {"clients": [{"label": "unit-noid-2"}]}
    failed, result = run(module, **args)
    assert failed and "store it now" in result["msg"] and "re-listing failed" in result["msg"]
    if module is mqtt_client:
        password = result["password"]
    else:
        password = result["credentials"]["unit-noid-2"]["password"]
        assert result["credentials"]["unit-noid-2"]["client_id"] is None
        assert "unit-noid-2" not in result.get("unconfirmed", [])
    assert verify(emulator, login_of(emulator, "unit-noid-2"), password)
