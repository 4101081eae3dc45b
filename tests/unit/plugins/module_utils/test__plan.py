# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the pure planner: every branch, plus the fleet's speed."""
from __future__ import annotations

import re

import pytest

from ansible_collections.isr.mqtt.plugins.module_utils import _plan
from ansible_collections.isr.mqtt.plugins.module_utils._plan import (
    PlanError, apply_action, apply_actions, check_client_id, check_label, check_not_null, find_client, rotated_elsewhere, plan_client, plan_fleet)


def row(label="dev-1", client_id="pub-000000000001", paused=False, allow_publish=True, allow_subscribe=False):
    return {"client_id": client_id, "label": label, "username": client_id, "topic": "acc/%s/#" % client_id,
            "paused": paused, "allow_publish": allow_publish, "allow_subscribe": allow_subscribe,
            "history_topic_prefix": "acc/" + client_id, "publish_topic": None,
            "created_at": "2026-11-26T00:00:00Z", "rotated_at": "2026-11-26T00:00:00Z"}


def want(label="dev-1", **kw):
    desired = {"label": label, "state": "present", "allow_publish": True, "allow_subscribe": False,
               "paused": None, "rotate": False}
    desired.update(kw)
    return desired


def kinds(actions):
    return [a["action"] for a in actions]


# --- check_label / check_client_id -------------------------------------------------------------

@pytest.mark.parametrize("label", ["a", "x" * 64, "site alpha / sensor-1", "é", "\U0001f600", "\ufffd", "a\ufeff"])
def test_check_label_ok(label):
    assert check_label(label) is None


@pytest.mark.parametrize("label, fragment", [
    ("", "non-empty"), (None, "non-empty"), (5, "non-empty"),
    ("x" * 65, "65 characters"), ("a\nb", "control characters"), ("a\x7f", "control characters"),
    ("dev\u0085one", "control characters"), ("a\x9f", "control characters"),
    (["x"], "not list"), ({"a": 1}, "not dict"), (7, "not int"), (None, "not null"),
    ("a\u2028b", "U+2028"), ("a\u2029", "U+2029"), ("\ufffe", "U+FFFE"), ("a\uffff", "U+FFFF"),
    ("a\ufdd0", "U+FDD0"), ("a\U0001fffe", "U+1FFFE"), ("a\U0010ffff", "U+10FFFF"), ("a\ud800", "U+D800"),
])
def test_check_label_bad(label, fragment):
    msg = check_label(label, field="devices[3].label")
    assert fragment in msg and "devices[3].label" in msg


def test_check_not_null_names_each_explicit_null_only():
    assert check_not_null({"a": None, "b": 0, "c": False, "d": None}, ("a", "b", "c", "e")) == [
        "a is null; give a value, or leave the option out to get its default"]


def test_rotated_elsewhere_compares_the_portal_with_the_store():
    rows = [{"label": "a", "rotated_at": "2026-11-26T10:00:05Z"}, {"label": "b", "rotated_at": "2026-11-26T10:00:00Z"},
            {"label": "c", "rotated_at": "2026-11-26T11:00:00+01:00"}, {"label": "d", "rotated_at": None},
            {"label": "e", "rotated_at": "yesterday"}, {"label": "f", "rotated_at": "2026-11-27T00:00:00"}]
    stored = {"a": "2026-11-26T10:00:00Z", "b": "2026-11-26T10:00:00Z", "c": "2026-11-26T10:00:00Z",
              "d": "2026-11-26T10:00:00Z", "e": "2026-11-26T10:00:00Z", "f": None}
    assert rotated_elsewhere(rows, stored) == ["a"]  # c: the same moment in another zone; d-f: nothing to compare


def test_check_client_id():
    assert check_client_id("pub-3f9c2a71d0b4") is None
    assert "reserved" in check_client_id("live") and "/publishers/live" in check_client_id("live")
    for bad in ("", ".", "..", "a/b", "a\tb", "a b", "a?b", "a#b", "pub-%2E", "a\u0085b", "a\x7f"):
        assert "client_id %r is not a valid client id" % bad in check_client_id(bad)
    assert "client_id must be a string, not list" in check_client_id(["pub-1"])
    assert check_client_id("pub-3f9c.2a71") is None  # a dot inside an id is fine


# --- find_client -----------------------------------------------------------------------------------

def test_find_client_by_label_and_id():
    rows = [row("a", "pub-1"), row("b", "pub-2"), row("b", "pub-3")]
    assert find_client(rows, label="a")["client_id"] == "pub-1"
    assert find_client(rows, label="zzz") is None
    assert find_client(rows, client_id="pub-3")["client_id"] == "pub-3"
    assert find_client(rows, label="b", client_id="pub-2")["client_id"] == "pub-2"
    assert find_client(rows, client_id="pub-9") is None


def test_find_client_ambiguous_lists_ids():
    rows = [row("b", "pub-3"), row("b", "pub-2")]
    with pytest.raises(PlanError) as err:
        find_client(rows, label="b")
    assert err.value.client_ids == ["pub-2", "pub-3"]
    assert "pub-2, pub-3" in err.value.msg and "client_id" in err.value.msg


def test_find_client_label_mismatch():
    with pytest.raises(PlanError, match="cannot rename"):
        find_client([row("a", "pub-1")], label="b", client_id="pub-1")


# --- plan_client -----------------------------------------------------------------------------------

def test_absent():
    assert plan_client(want(state="absent"), None) == []
    actions = plan_client(want(state="absent"), row())
    assert actions == [{"action": "delete", "label": "dev-1", "client_id": "pub-000000000001", "fields": {}}]


def test_create_plain_and_paused():
    assert plan_client(want(allow_subscribe=True), None) == [
        {"action": "create", "label": "dev-1", "client_id": None,
         "fields": {"allow_publish": True, "allow_subscribe": True}}]
    assert kinds(plan_client(want(paused=True), None)) == ["create", "pause"]
    # a rotate on create would be a wasted write: the create returns a password
    assert kinds(plan_client(want(rotate=True, paused=False), None)) == ["create"]


def test_create_defaults_when_fields_missing():
    actions = plan_client({"label": "x"}, None)
    assert actions[0]["fields"] == {"allow_publish": True, "allow_subscribe": False}


def test_unchanged():
    assert plan_client(want(), row()) == []
    assert plan_client(want(paused=True), row(paused=True)) == []
    assert plan_client(want(paused=False), row()) == []
    # None means "leave as it is"
    assert plan_client(want(allow_publish=None, allow_subscribe=None), row(allow_subscribe=True, paused=True)) == []


def test_update_only_changed_fields_then_pause_then_rotate():
    actions = plan_client(want(allow_subscribe=True, paused=True, rotate=True), row())
    assert kinds(actions) == ["update", "pause", "rotate"]
    assert actions[0]["fields"] == {"allow_subscribe": True}
    assert all(a["client_id"] == "pub-000000000001" for a in actions)


def test_resume():
    assert kinds(plan_client(want(paused=False), row(paused=True))) == ["resume"]


def test_recreate_replaces_update():
    actions = plan_client(want(allow_subscribe=True), row(), recreate=True)
    assert kinds(actions) == ["delete", "create"]
    assert actions[1]["fields"] == {"allow_publish": True, "allow_subscribe": True}


def test_recreate_keeps_pause_and_unset_fields():
    current = row(paused=True, allow_publish=False)
    actions = plan_client(want(allow_publish=None, allow_subscribe=True), current, recreate=True)
    assert kinds(actions) == ["delete", "create", "pause"]
    assert actions[1]["fields"] == {"allow_publish": False, "allow_subscribe": True}
    # paused: false wins over the carried-over pause; rotate is implied by the create
    assert kinds(plan_client(want(allow_subscribe=True, paused=False, rotate=True), current, recreate=True)) == [
        "delete", "create"]


def test_recreate_without_changes_is_a_normal_plan():
    assert kinds(plan_client(want(paused=True), row(), recreate=True)) == ["pause"]


# --- apply_action -----------------------------------------------------------------------------------

def test_apply_actions_predicts_rows():
    current = row()
    after = apply_actions(current, plan_client(want(allow_subscribe=True, paused=True, rotate=True), current))
    assert after["allow_subscribe"] is True and after["paused"] is True
    assert current["paused"] is False, "input row must not be mutated"
    assert after["client_id"] == current["client_id"]
    assert apply_action(after, {"action": "resume", "label": "dev-1", "client_id": "x", "fields": {}})["paused"] is False


def test_apply_create_and_delete():
    created = apply_actions(None, plan_client(want(paused=True), None))
    assert created["label"] == "dev-1" and created["paused"] is True and created["client_id"] is None
    assert set(created) == set(row())
    assert apply_actions(row(), plan_client(want(state="absent"), row())) is None


# --- plan_fleet -------------------------------------------------------------------------------------

def test_fleet_mixed():
    current = [row("keep", "pub-1"), row("upd", "pub-2"), row("gone", "pub-3"), row("stray", "pub-4"),
               row("rot", "pub-5"), row("rec", "pub-6")]
    desired = [want("keep"), want("upd", allow_subscribe=True), want("gone", state="absent"),
               want("new", paused=True), want("rot"), want("rec"), want("absent-already", state="absent")]
    plan = plan_fleet(desired, current, rotate=["rot"], recover=["rec", "new"])
    assert [(a["action"], a["label"]) for a in plan.actions] == [
        ("delete", "gone"), ("update", "upd"), ("create", "new"), ("pause", "new"),
        ("rotate", "rot"), ("rotate", "rec")]
    assert plan.actions[-1]["fields"] == {"reason": "recover"}
    assert plan.actions[-2]["fields"] == {}
    assert plan.unchanged_labels == ["keep", "absent-already"]
    assert plan.counts == {"created": 1, "updated": 1, "paused": 1, "resumed": 0, "rotated": 2,
                           "deleted": 1, "unchanged": 2}
    assert plan.changed and plan.ambiguous == {}


def test_fleet_recover_and_rotate_rotate_once():
    plan = plan_fleet([want("a", rotate=True)], [row("a", "pub-1")], recover=["a"])
    assert kinds(plan.actions) == ["rotate"]


def test_fleet_no_changes():
    plan = plan_fleet([want("a")], [row("a", "pub-1")])
    assert not plan.changed and plan.unchanged_labels == ["a"]


def test_fleet_ambiguous_and_absent_duplicates():
    current = [row("dup", "pub-2"), row("dup", "pub-1"), row("old", "pub-3"), row("old", "pub-4")]
    plan = plan_fleet([want("dup"), want("old", state="absent")], current)
    assert plan.ambiguous == {"dup": ["pub-1", "pub-2"]}
    assert [a["client_id"] for a in plan.actions] == ["pub-3", "pub-4"]


def test_fleet_duplicate_desired_labels():
    with pytest.raises(PlanError, match="more than once.*a, b"):
        plan_fleet([want("a"), want("b"), want("a"), want("b")], [])


def test_fleet_purge():
    current = [row("a", "pub-1"), row("lab-x", "pub-2"), row("lab-y", "pub-3"), row("prod-lab", "pub-4")]
    assert plan_fleet([want("a")], current).actions == []
    purged = plan_fleet([want("a")], current, purge=True)
    assert sorted(a["client_id"] for a in purged.actions) == ["pub-2", "pub-3", "pub-4"]
    # re.search: "lab" matches anywhere; anchor it to mean a prefix
    searched = plan_fleet([want("a")], current, purge=True, purge_match="lab")
    assert sorted(a["client_id"] for a in searched.actions) == ["pub-2", "pub-3", "pub-4"]
    anchored = plan_fleet([want("a")], current, purge=True, purge_match=re.compile(r"^lab-"))
    assert sorted(a["client_id"] for a in anchored.actions) == ["pub-2", "pub-3"]
    # purge_match alone does nothing; a desired label is never purged
    assert plan_fleet([want("lab-x")], current, purge_match="lab").actions == []
    assert "lab-x" not in [a["label"] for a in plan_fleet([want("lab-x")], current, purge=True).actions]


def test_fleet_of_ten_thousand():
    # Correctness at size only; its speed is measured by benchmarks/plan_speed.py, not asserted here.
    n = 10000
    current = [row("dev-%05d" % i, "pub-%012x" % i, paused=i % 7 == 0) for i in range(n)]
    desired = [want("dev-%05d" % i, paused=False if i % 3 else None, allow_subscribe=i % 5 == 0)
               for i in range(0, n + 500)]
    plan = plan_fleet(desired, current + [row("stray-%d" % i, "pub-s%d" % i) for i in range(500)],
                      purge=True, purge_match="^stray-", recover=["dev-%05d" % i for i in range(0, n, 2)])
    assert plan.counts["created"] == 500 and plan.counts["deleted"] == 500


def test_count_keys_cover_all_actions():
    assert set(_plan.ACTION_COUNT_KEYS) == {"create", "update", "pause", "resume", "rotate", "delete"}


# -- issue 23/24: labels a portal normalizes, plain type names, options left out ------------------------------------

@pytest.mark.parametrize("label, fragment", [
    ("   ", "is blank"), ("\t", "is blank"), ("a\tb ", "control characters"), ("a ", "use 'a'"), (" a", "leading or trailing whitespace"),
    ("a\u00a0", "leading or trailing whitespace"),
])
def test_check_label_blank_and_padded(label, fragment):
    msg = check_label(label, field="clients[0].label")
    assert fragment in msg and "clients[0].label" in msg


def test_type_names_are_plain_for_subclasses():
    class _AnsibleTaggedInt(int):
        pass
    assert _plan.type_name(_AnsibleTaggedInt(7)) == "int" and _plan.type_name(True) == "bool" and _plan.type_name(None) == "null"
    assert "not int" in check_label(_AnsibleTaggedInt(7))
    text = "unable to convert to dict: <class 'ansible.module_utils._internal._datatag._AnsibleTaggedInt'> cannot be"
    assert _plan.plain_type_names(text) == "unable to convert to dict: 'int' cannot be"


def test_near_labels_differ_only_in_case_or_surrounding_whitespace():
    rows = [row("acc-mixed-1", "pub-1"), row("other", "pub-2"), row("Exact", "pub-3"), row("exact", "pub-4")]
    assert _plan.near_label_rows(rows, "Acc-Mixed-1") == [rows[0]]
    assert _plan.near_label_rows(rows, "acc-mixed-1") == []
    assert _plan.near_label_conflicts(["Acc-Mixed-1", "other", "Exact", "new"], rows) == {"Acc-Mixed-1": [rows[0]]}
    msg = _plan.near_label_message("Acc-Mixed-1", [rows[0]])
    assert "'acc-mixed-1' (pub-1)" in msg and "Nothing was changed" in msg


def test_options_left_out_leave_a_client_as_it_is_and_take_the_create_defaults():
    existing = row(allow_publish=False, allow_subscribe=True)
    assert plan_client(want(allow_publish=None, allow_subscribe=None, paused=True), existing) == [
        {"action": "pause", "label": "dev-1", "client_id": existing["client_id"], "fields": {}}]
    created = plan_client(want(allow_publish=None, allow_subscribe=None), None)
    assert created[0]["fields"] == {"allow_publish": True, "allow_subscribe": False}
