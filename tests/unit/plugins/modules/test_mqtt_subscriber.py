# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""mqtt_subscriber and mqtt_subscriber_info run in-process against the real emulator: the paths a
playbook cannot easily provoke (a lost create answer, a password file that cannot be written after
the create, a failing revoke) and the 0600 password file."""
from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.isr.mqtt.plugins.module_utils import _portal
from ansible_collections.isr.mqtt.plugins.modules import mqtt_subscriber, mqtt_subscriber_info


@pytest.fixture
def run(run_module):
    """Run a module's main() with args (default: mqtt_subscriber); returns (failed, result)."""
    return lambda module=mqtt_subscriber, **args: run_module(module, **args)


def ok(emulator, result, password):
    return emulator.control.verify(result["subscriber"]["username"], password)["ok"]


def test_create_returns_password_once(run, emulator):
    failed, result = run(label="grafana")
    assert not failed and result["changed"]
    assert ok(emulator, result, result["password"])
    assert set(result["subscriber"]) == {"id", "username", "label", "subscribe_filter", "created_at", "expires_at", "expired"}
    assert "diff" not in result
    failed, again = run(label="grafana")
    assert not failed and not again["changed"] and again["actions"] == []
    assert again["password"] is None and again["subscriber"] == result["subscriber"]


def test_password_file_is_0600_replaced_atomically(run, emulator, tmp_path):
    (tmp_path / "secrets").mkdir()
    target = tmp_path / "secrets" / "pw"
    target.write_text("old")
    os.chmod(str(target), 0o644)
    old_umask = os.umask(0)  # even a permissive umask must not widen the file
    try:
        failed, result = run(label="filed", password_file=str(target))
    finally:
        os.umask(old_umask)
    assert not failed and result["password"] is None and result["password_file"] == str(target)
    assert stat.S_IMODE(os.stat(str(target)).st_mode) == 0o600
    assert ok(emulator, result, target.read_text())
    assert os.listdir(str(tmp_path / "secrets")) == ["pw"]  # no temp file left behind


def test_missing_password_file_warns_on_an_unchanged_run(run, tmp_path):
    run(label="w")
    failed, result = run(label="w", password_file=str(tmp_path / "never-written"))
    assert not failed and not result["changed"]
    warnings = json.dumps(result["warnings"])  # ansible-core 2.19 wraps each warning in a summary dict
    assert "never shows the password" in warnings and "regenerate=true" in warnings


def test_password_returned_when_the_file_cannot_be_written(run, emulator, tmp_path, monkeypatch):
    def broken(path, secret):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mqtt_subscriber, "write_secret_file", broken)
    failed, result = run(label="nospace", password_file=str(tmp_path / "pw"))
    assert failed and result["changed"]
    assert "Could not write password_file" in result["msg"] and "No space left" in result["msg"]
    assert ok(emulator, result, result["password"])


def test_lost_create_answer_fails_and_regenerate_recovers(run, emulator):
    emulator.control.set_faults(drop_after_create=1)
    failed, result = run(label="lost")
    assert failed and result["changed"]
    assert "answer was lost" in result["msg"] and "regenerate=true" in result["msg"]
    assert result["password"] is None
    lost_id = result["subscriber"]["id"]
    assert emulator.control.state()["subscribers"] == 1  # created once, not twice
    emulator.control.set_faults()
    failed, again = run(label="lost", id=lost_id, regenerate=True)
    assert not failed and again["subscriber"]["id"] != lost_id
    assert ok(emulator, again, again["password"])


def test_failing_revoke_changes_nothing(run, emulator):
    first = run(label="keep")[1]
    emulator.control.set_faults(fail_after_creates=0)  # every write answers 503
    failed, result = run(label="keep", regenerate=True)
    emulator.control.set_faults()
    assert failed and not result["changed"] and result["actions"] == []
    assert "could not revoke read-only subscriber %s" % first["subscriber"]["id"] in result["msg"]
    assert ok(emulator, first, first["password"])


def test_check_mode_predicts_without_writes_and_diff_only_in_diff_mode(run, emulator):
    first = run(label="cm")[1]
    emulator.control.reset_counters()
    failed, result = run(label="cm", regenerate=True, _ansible_check_mode=True, _ansible_diff=True)
    assert not failed and result["changed"]
    assert [a["action"] for a in result["actions"]] == ["revoke", "create"]
    assert result["diff"]["before"] == first["subscriber"]
    assert result["diff"]["after"]["id"] is None and result["diff"]["after"]["label"] == "cm"
    assert result["password"] is None
    assert emulator.control.counters()["writes"] == 0
    failed, absent = run(label="cm", state="absent", _ansible_check_mode=True)
    assert absent["changed"] and absent["subscriber"] is None and "diff" not in absent
    assert emulator.control.counters()["writes"] == 0
    assert ok(emulator, first, first["password"])


def test_invalid_input_sends_no_request(run, emulator):
    emulator.control.reset_counters()
    failed, result = run(label="x", expires_in_days=0)
    assert failed and "expires_in_days is 0; it must be between 1 and 3650" in result["msg"]
    failed, result = run(label="x", id="sub-a/b", state="absent")
    assert failed and "is not a valid subscriber id" in result["msg"]
    failed, result = run(label="dev\u0085one")
    assert failed and "label 'dev\\x85one' contains control characters" in result["msg"]
    failed, result = run(label={"a": 1})
    assert failed and "label must be a non-empty string of 1-64 characters, not dict" in result["msg"]
    failed, result = run(label="x", expires_in_days=None)  # would create a subscriber that never expires
    assert failed and "expires_in_days" in result["msg"]  # Ansible's own message (2.19) or check_not_null's
    failed, result = run(label=None)
    assert failed and "one of label or id is required" in result["msg"]
    failed, result = run(label="x", password_file="/dev/null")
    assert failed and "password_file /dev/null is not a regular file" in result["msg"]
    assert emulator.control.counters()["total"] == 0


@pytest.mark.parametrize("args, message", [
    ({"label": {"a": 1}}, "label must be a non-empty string of 1-64 characters, not dict"),
    ({"label": "x" * 65}, "label is 65 characters long"),
    ({"label": "  "}, "label must not be empty"),
    ({"id": "sub-1/../x"}, "id 'sub-1/../x' is not a valid subscriber id"),
])
def test_info_refuses_bad_filters_before_any_request(run, emulator, args, message):
    emulator.control.reset_counters()
    failed, result = run(mqtt_subscriber_info, **args)
    assert failed and message in result["msg"] and "subscribers" not in result
    assert emulator.control.counters()["total"] == 0


def test_info_filters_and_reports_expiry(run, emulator):
    a = run(label="a", expires_in_days=2)[1]
    b = run(label="b", expires_in_days=90)[1]
    emulator.control.advance_clock(3)
    failed, listed = run(mqtt_subscriber_info)
    assert not failed and not listed["changed"] and listed["count"] == 2 and listed["active"] == 1
    assert [(s["label"], s["expired"]) for s in listed["subscribers"]] == [("a", True), ("b", False)]
    by_id = run(mqtt_subscriber_info, id=b["subscriber"]["id"])[1]
    assert by_id["subscribers"] == [dict(b["subscriber"], expired=False)]
    by_label = run(mqtt_subscriber_info, label="a")[1]
    assert [s["id"] for s in by_label["subscribers"]] == [a["subscriber"]["id"]]
    assert "password" not in json.dumps(listed["subscribers"]), listed.get("warnings")


def test_password_file_checks(tmp_path):
    assert mqtt_subscriber.check_password_file(str(tmp_path / "pw")) is None
    assert "is a directory" in mqtt_subscriber.check_password_file(str(tmp_path))
    assert "does not exist; create it first" in mqtt_subscriber.check_password_file(str(tmp_path / "no" / "pw"))
    assert "not a regular file" in mqtt_subscriber.check_password_file("/dev/full")


def test_plan_limit_message_without_counts_from_the_portal():
    err = _portal.PortalError("Plan limit reached", kind="plan_limit", status=409)
    rows = [{"id": "sub-a", "expired": False}, {"id": "sub-b", "expired": True}]
    msg = mqtt_subscriber.plan_limit_message(err, rows, None)
    assert "(1 active, expired ones not counted)" in msg and "state=absent" in msg
    err.limit, err.active = 0, 0
    assert "includes no read-only subscribers" in mqtt_subscriber.plan_limit_message(err, rows, None)
