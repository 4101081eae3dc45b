# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Answers cut short (the emulator's truncate_writes fault: the write is done, half the body arrives, the
connection closes) against mqtt_fleet and mqtt_client, in-process over real HTTP.

Expected: never a raw exception; a create is checked by listing (no duplicate) and recovered by rotation; a
rotation whose answers keep being cut is reported unconfirmed; every password that arrived works."""
from __future__ import annotations

from ansible_collections.isr.mqtt.plugins.modules import mqtt_client, mqtt_fleet


def works(emulator, credentials):
    return dict((label, emulator.control.verify(c["username"], c["password"])["ok"]) for label, c in credentials.items())


def test_cut_create_answers_are_listed_and_recovered_without_duplicates(run_module, emulator):
    emulator.control.set_faults(truncate_writes=2)  # the first create and its recovery rotation are cut
    failed, result = run_module(mqtt_fleet, clients=[{"label": "cut-1"}, {"label": "cut-2"}], parallel=1)
    assert not failed, result["msg"]
    assert emulator.control.state()["labels"] == {"cut-1": 1, "cut-2": 1}
    assert set(result["credentials"]) == {"cut-1", "cut-2"} and all(works(emulator, result["credentials"]).values())
    assert [a["action"] for a in result["actions"] if a["label"] == "cut-1"] == ["create", "rotate"]


def test_a_rotation_whose_answers_stay_cut_is_unconfirmed_and_recovered_next_run(run_module, emulator):
    created = run_module(mqtt_fleet, clients=[{"label": "rot-1"}, {"label": "rot-2"}], parallel=1)[1]["credentials"]
    emulator.control.set_faults(truncate_writes=100)
    failed, result = run_module(mqtt_fleet, clients=[{"label": "rot-1"}, {"label": "rot-2"}], rotate=["rot-1"], parallel=1)
    assert failed and result["unconfirmed"] == ["rot-1"] and result["error"]["may_have_acted"] is True
    assert "was cut short" in result["msg"] and "Traceback" not in result["msg"] and result["credentials"] == {}
    assert not works(emulator, created)["rot-1"]  # rotated five times, every new password lost: the stored one is dead
    emulator.control.set_faults()
    failed, result = run_module(mqtt_fleet, clients=[{"label": "rot-1"}, {"label": "rot-2"}],
                                recover_missing=True, known_labels=["rot-2"])
    assert not failed and works(emulator, result["credentials"]) == {"rot-1": True}
    assert emulator.control.state()["labels"] == {"rot-1": 1, "rot-2": 1}


def test_mqtt_client_create_with_a_cut_answer_keeps_one_client_and_a_working_password(run_module, emulator):
    emulator.control.set_faults(truncate_writes=1)
    failed, result = run_module(mqtt_client, label="cut-client")
    assert not failed, result["msg"]
    assert emulator.control.state()["labels"] == {"cut-client": 1}
    assert emulator.control.verify(result["client"]["username"], result["password"])["ok"]
