# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the read-only subscriber planner (pure functions, no I/O)."""
from __future__ import annotations

import datetime

import pytest

from ansible_collections.isr.mqtt.plugins.module_utils._subscriber_plan import (
    PlanError, check_desired, check_identity, find_subscriber, format_time, is_expired, parse_time, plan_subscriber, predict,
    replacement_reason)

NOW = datetime.datetime(2026, 11, 26, 12, 0, 0, tzinfo=datetime.timezone.utc)
FILTER = "550e8400-e29b-41d4-a716-446655440000/#"


def sub(sub_id="sub-000000000001", label="grafana", expires_in=30, expired=False):
    expires = None if expires_in is None else format_time(NOW + datetime.timedelta(days=expires_in))
    return {"id": sub_id, "username": sub_id, "label": label, "subscribe_filter": FILTER,
            "created_at": "2026-11-01T00:00:00Z", "expires_at": expires, "expired": expired}


def desired(**kw):
    base = {"label": "grafana", "id": None, "state": "present", "expires_in_days": 30,
            "regenerate": False, "renew_before_days": None}
    base.update(kw)
    return base


# check_desired -------------------------------------------------------------

def test_valid_input_has_no_errors():
    assert check_desired(desired()) == []
    assert check_desired(desired(label=None, id="sub-1", renew_before_days=0)) == []


@pytest.mark.parametrize("kw, fragment", [
    ({"label": ""}, "label must not be empty"),
    ({"label": "   "}, "label must not be empty"),
    ({"label": "x" * 65}, "at most 64"),
    ({"label": "a\nb"}, "control character"),
    ({"label": "a\x7fb"}, "control character"),
    ({"label": "dev\u0085one"}, "control character"),
    ({"label": ["x"]}, "label must be a non-empty string of 1-64 characters, not list"),
    ({"label": 5}, "not int"),
    ({"label": None, "id": None}, "one of label or id is required"),
    ({"id": ""}, "is not a valid subscriber id"),
    ({"id": "sub/1"}, "is not a valid subscriber id"),
    ({"id": ".."}, "is not a valid subscriber id"),
    ({"id": "sub 1"}, "is not a valid subscriber id"),
    ({"id": {"a": 1}}, "id must be a string, not dict"),
    ({"expires_in_days": 0}, "expires_in_days is 0; it must be between 1 and 3650"),
    ({"expires_in_days": -5}, "between 1 and 3650"),
    ({"expires_in_days": 3651}, "between 1 and 3650"),
    ({"renew_before_days": -1}, "renew_before_days is -1; it must be 0 or more"),
    ({"renew_before_days": 30, "expires_in_days": 30}, "must be smaller than expires_in_days"),
])
def test_invalid_input_is_named(kw, fragment):
    errors = check_desired(desired(**kw))
    assert len(errors) == 1
    assert fragment in errors[0]


def test_check_identity_is_the_label_and_id_part_of_check_desired():
    assert check_identity() == [] and check_identity("grafana", "sub-1") == []
    assert check_identity("x" * 65, "a/b") == check_desired(desired(label="x" * 65, id="a/b"))
    assert len(check_identity("x" * 65, "a/b")) == 2


def test_label_of_64_and_edge_expiries_are_valid():
    assert check_desired(desired(label="x" * 64, expires_in_days=1)) == []
    assert check_desired(desired(expires_in_days=3650)) == []


def test_renew_not_compared_with_expiry_when_absent():
    assert check_desired(desired(state="absent", renew_before_days=40)) == []


# parse_time / is_expired ----------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("2026-12-26T00:00:00Z", datetime.datetime(2026, 12, 26, tzinfo=datetime.timezone.utc)),
    ("2026-12-26T00:00Z", datetime.datetime(2026, 12, 26, tzinfo=datetime.timezone.utc)),
    ("2026-12-26 01:00:00.123456789+01:00", datetime.datetime(2026, 12, 26, 0, 0, 0, 123456, tzinfo=datetime.timezone.utc)),
    ("2026-12-26T00:00:00.5+0000", datetime.datetime(2026, 12, 26, 0, 0, 0, 500000, tzinfo=datetime.timezone.utc)),
    ("2026-12-26T00:00:00", datetime.datetime(2026, 12, 26, tzinfo=datetime.timezone.utc)),
])
def test_parse_time_variants(text, expected):
    assert parse_time(text) == expected


def test_parse_time_none_and_garbage():
    assert parse_time(None) is None
    with pytest.raises(PlanError, match="cannot read the portal timestamp 'next tuesday'"):
        parse_time("next tuesday")


def test_is_expired_prefers_the_portal_flag():
    assert is_expired(sub(expires_in=10, expired=True), NOW)
    assert not is_expired(sub(expires_in=-1, expired=False), NOW)


def test_is_expired_computed_when_flag_missing():
    assert is_expired(sub(expires_in=-1, expired=None), NOW)
    assert not is_expired(sub(expires_in=1, expired=None), NOW)
    assert not is_expired(sub(expires_in=None, expired=None), NOW)


# find_subscriber ------------------------------------------------------------

def test_find_by_label():
    rows = [sub("sub-a", "one"), sub("sub-b", "two")]
    assert find_subscriber(rows, label="two")["id"] == "sub-b"
    assert find_subscriber(rows, label="three") is None


def test_duplicate_label_fails_listing_ids():
    rows = [sub("sub-b", "dup"), sub("sub-a", "dup")]
    with pytest.raises(PlanError) as err:
        find_subscriber(rows, label="dup")
    assert "2 read-only subscribers have the label 'dup' (ids: sub-a, sub-b); set id" in err.value.msg
    assert err.value.ids == ["sub-a", "sub-b"]


def test_id_picks_one_of_duplicates():
    rows = [sub("sub-a", "dup"), sub("sub-b", "dup")]
    assert find_subscriber(rows, label="dup", subscriber_id="sub-b")["id"] == "sub-b"
    assert find_subscriber(rows, subscriber_id="sub-a")["id"] == "sub-a"
    assert find_subscriber(rows, subscriber_id="sub-zz") is None


def test_id_found_by_username_too():
    row = sub("sub-a")
    row["id"] = "42"
    assert find_subscriber([row], subscriber_id="sub-a") is row


def test_id_with_other_label_fails():
    with pytest.raises(PlanError, match="has the label 'grafana', not 'other'"):
        find_subscriber([sub("sub-a")], label="other", subscriber_id="sub-a")


# replacement_reason ----------------------------------------------------------

def test_reasons():
    assert replacement_reason(desired(regenerate=True), sub(), NOW) == "regenerate"
    assert replacement_reason(desired(), sub(expired=True), NOW) is None  # no renew_before_days: keep
    assert replacement_reason(desired(renew_before_days=0), sub(expired=True), NOW) == "expired"
    assert replacement_reason(desired(renew_before_days=7), sub(expires_in=8), NOW) is None
    reason = replacement_reason(desired(renew_before_days=7), sub(expires_in=7), NOW)
    assert reason.startswith("expires within 7 days (at 2026-12-03T12:00:00Z)")
    assert replacement_reason(desired(renew_before_days=7), sub(expires_in=None), NOW) is None


# plan_subscriber ---------------------------------------------------------------

def test_absent_and_missing_is_nothing():
    assert plan_subscriber(desired(state="absent"), None, NOW) == []


def test_absent_revokes():
    assert plan_subscriber(desired(state="absent"), sub(), NOW) == [
        {"action": "revoke", "label": "grafana", "id": "sub-000000000001", "fields": {}, "reason": "absent"}]


def test_missing_is_created():
    assert plan_subscriber(desired(expires_in_days=90), None, NOW) == [
        {"action": "create", "label": "grafana", "id": None, "fields": {"expires_in_days": 90}, "reason": "missing"}]


def test_missing_with_id_cannot_be_created():
    with pytest.raises(PlanError, match="no read-only subscriber has the id sub-x; the portal generates ids"):
        plan_subscriber(desired(id="sub-x"), None, NOW)


def test_present_is_kept_even_with_other_expiry():
    # expires_in_days only applies when a subscriber is created
    assert plan_subscriber(desired(expires_in_days=365), sub(expires_in=3), NOW) == []


def test_replacement_revokes_then_creates_under_the_same_label():
    actions = plan_subscriber(desired(label=None, id="sub-a", regenerate=True), sub("sub-a", "kept"), NOW)
    assert [(a["action"], a["label"], a["id"], a["reason"]) for a in actions] == [
        ("revoke", "kept", "sub-a", "regenerate"), ("create", "kept", None, "regenerate")]


def test_renew_replaces_expired():
    actions = plan_subscriber(desired(renew_before_days=0), sub(expired=True), NOW)
    assert [a["action"] for a in actions] == ["revoke", "create"]
    assert actions[1]["reason"] == "expired"


# predict -----------------------------------------------------------------------

def test_predict_create_revoke_and_nothing():
    row = sub()
    assert predict(row, [], NOW) is row
    assert predict(row, plan_subscriber(desired(state="absent"), row, NOW), NOW) is None
    created = predict(None, plan_subscriber(desired(expires_in_days=10), None, NOW), NOW, FILTER)
    assert created == {"id": None, "username": None, "label": "grafana", "subscribe_filter": FILTER,
                       "created_at": "2026-11-26T12:00:00Z", "expires_at": "2026-12-06T12:00:00Z", "expired": False}


def test_predict_replacement_keeps_the_filter():
    after = predict(sub(), plan_subscriber(desired(regenerate=True), sub(), NOW), NOW)
    assert after["subscribe_filter"] == FILTER and after["id"] is None


def test_predict_without_expiry():
    action = {"action": "create", "label": "x", "id": None, "fields": {"expires_in_days": None}, "reason": "missing"}
    assert predict(None, [action], NOW)["expires_at"] is None
