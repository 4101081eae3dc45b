# -*- coding: utf-8 -*-
"""The no-sink rule: a module run that would receive a password with nowhere safe to put it (password_sink none,
no password_file) fails before any write, naming the ways to fix it; runs that receive no password still work."""
from __future__ import annotations

import pytest

from ansible_collections.isr.mqtt.plugins.modules import mqtt_client, mqtt_fleet, mqtt_subscriber

WAYS = ("vault secret", "no_log: true", "return_password: plaintext")


def writes(emulator):
    return emulator.control.counters()["writes"]


@pytest.mark.parametrize("module, args", [
    (mqtt_client, {"label": "ns-create"}),
    (mqtt_subscriber, {"label": "ns-sub"}),
    (mqtt_fleet, {"clients": [{"label": "ns-f1"}, {"label": "ns-f2"}]}),
])
def test_a_create_without_a_sink_fails_before_any_write(run_module, emulator, module, args):
    emulator.control.reset_counters()
    failed, result = run_module(module, password_sink="none", **args)
    assert failed and result["changed"] is False
    assert all(way in result["msg"] for way in WAYS), result["msg"]
    assert ("password_file" in result["msg"]) == (module is not mqtt_fleet)
    assert writes(emulator) == 0 and emulator.control.state()["clients"] == 0


def test_rotate_and_recreate_without_a_sink_fail_before_any_write(run_module, emulator):
    run_module(mqtt_client, label="ns-rot", allow_subscribe=False)
    emulator.control.reset_counters()
    failed, result = run_module(mqtt_client, label="ns-rot", rotate_password=True, password_sink="none")
    assert failed and "rotate" in result["msg"] and writes(emulator) == 0
    emulator.control.set_account(emulator.account_id, patch_supported=False)
    failed, result = run_module(mqtt_client, label="ns-rot", allow_subscribe=True, recreate=True, password_sink="none")
    assert failed and "recreate" in result["msg"]
    routes = emulator.control.counters()["by_route"]  # only the PATCH the portal refused (405): nothing deleted
    assert [r for r in routes if not r.startswith("GET")] == ["PATCH /api/v1/subscriber/publishers/{client_id}"], routes
    assert result["client"]["allow_subscribe"] is False and emulator.control.state()["clients"] == 1
    emulator.control.reset_counters()
    failed, result = run_module(mqtt_fleet, clients=[{"label": "ns-rot"}], rotate=["ns-rot"], password_sink="none")
    assert failed and "1 rotation" in result["msg"] and writes(emulator) == 0


def test_runs_that_receive_no_password_need_no_sink(run_module, emulator, tmp_path):
    failed, result = run_module(mqtt_client, label="ns-ok", password_file=str(tmp_path / "pw"), password_sink="none")
    assert not failed and result["password"] is None and (tmp_path / "pw").read_text()
    for args in ({"paused": True}, {"paused": False}, {"state": "absent"}):
        failed, result = run_module(mqtt_client, label="ns-ok", password_sink="none", **args)
        assert not failed and result["changed"], (args, result)
    run_module(mqtt_fleet, clients=[{"label": "ns-f"}])
    failed, result = run_module(mqtt_fleet, clients=[{"label": "ns-f", "paused": True}], password_sink="none")
    assert not failed and result["counts"]["paused"] == 1


def test_check_mode_plans_a_create_without_a_sink(run_module, emulator):
    failed, result = run_module(mqtt_client, label="ns-check", password_sink="none", _ansible_check_mode=True)
    assert not failed and result["changed"] and writes(emulator) == 0
