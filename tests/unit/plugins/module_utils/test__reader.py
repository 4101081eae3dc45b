# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The tolerant reader, table-driven: one case per spelling it accepts and per shape it refuses (fail closed).

docs/api-contract.md lists the same spellings and rules; the client-level cases at the end prove that a
refused shape stops before any write and that a password from an unidentified create is never lost."""

from __future__ import annotations

import pytest

from ansible_collections.isr.mqtt.plugins.module_utils import _reader
from ansible_collections.isr.mqtt.plugins.module_utils._portal import PortalError
from ansible_collections.isr.mqtt.plugins.module_utils._reader import ShapeError

from test__portal import BASE, Harness, row, sub_row  # pylint: disable=import-error

URL = BASE + "/publishers?page=1&page_size=1000"
ACCOUNT = "550e8400-e29b-41d4-a716-446655440000"


def raw(**fields):
    """A client row as the portal might send it: id, label and pause spelled as given."""
    return dict({"topic": "t", "history_topic_prefix": "h"}, **fields)


# ---------------------------------------------------------------- client rows: spellings accepted

@pytest.mark.parametrize("fields, expected", [
    ({"client_id": "pub-1", "label": "a", "paused": True}, ("pub-1", "a", True)),
    ({"id": "pub-1", "label": "a", "paused": False}, ("pub-1", "a", False)),
    ({"client_id": "pub-1", "id": "pub-1", "label": "a", "paused": False}, ("pub-1", "a", False)),
    ({"client_id": "pub-1", "name": "a", "paused": False}, ("pub-1", "a", False)),
    ({"client_id": "pub-1", "label": "a", "name": "a", "paused": False}, ("pub-1", "a", False)),
    ({"client_id": "pub-1", "label": None, "paused": False}, ("pub-1", None, False)),
    ({"client_id": "pub-1", "label": "a", "is_paused": True}, ("pub-1", "a", True)),
    ({"client_id": "pub-1", "label": "a", "pause": "true"}, ("pub-1", "a", True)),
    ({"client_id": "pub-1", "label": "a", "paused": 0}, ("pub-1", "a", False)),
    ({"client_id": "pub-1", "label": "a", "paused": "yes"}, ("pub-1", "a", True)),
    ({"client_id": "pub-1", "label": "a", "enabled": True}, ("pub-1", "a", False)),
    ({"client_id": "pub-1", "label": "a", "enabled": False}, ("pub-1", "a", True)),
    ({"client_id": "pub-1", "label": "a", "active": True}, ("pub-1", "a", False)),
    ({"client_id": "pub-1", "label": "a", "active": "false"}, ("pub-1", "a", True)),
    ({"client_id": "pub-1", "label": "a", "status": "paused"}, ("pub-1", "a", True)),
    ({"client_id": "pub-1", "label": "a", "status": "Suspended"}, ("pub-1", "a", True)),
    ({"client_id": "pub-1", "label": "a", "state": "disabled"}, ("pub-1", "a", True)),
    ({"client_id": "pub-1", "label": "a", "status": "active"}, ("pub-1", "a", False)),
    ({"client_id": "pub-1", "label": "a", "state": "running"}, ("pub-1", "a", False)),
    ({"client_id": "pub-1", "label": "a", "paused": None, "status": "paused"}, ("pub-1", "a", True)),
    ({"client_id": "pub-1", "label": "a", "paused": True, "status": "online"}, ("pub-1", "a", True)),
    ({"client_id": "pub-1", "label": "a", "paused": True, "enabled": False}, ("pub-1", "a", True)),
])
def test_client_row_spellings(fields, expected):
    got = _reader.normalize_client(raw(**fields))
    assert (got["client_id"], got["label"], got["paused"]) == expected
    assert tuple(got) == _reader.CLIENT_KEYS


def test_client_row_defaults_that_stay():
    got = _reader.normalize_client({"client_id": "pub-1", "label": "a", "paused": False})
    assert got["username"] == "pub-1" and got["allow_publish"] is True and got["allow_subscribe"] is False


@pytest.mark.parametrize("fields, spelled", [
    ({"client_id": "p", "label": "a", "paused": True}, {"id": "client_id", "label": "label", "pause": "paused"}),
    ({"id": "p", "name": "a", "enabled": True}, {"id": "id", "label": "name", "pause": "enabled (inverted)"}),
    ({"id": "p", "name": "a", "status": "Paused"}, {"id": "id", "label": "name", "pause": "status=paused"}),
])
def test_client_spellings_names_the_keys_used(fields, spelled):
    assert _reader.client_spellings(fields) == spelled


# ---------------------------------------------------------------- client rows: fail closed

@pytest.mark.parametrize("fields, words", [
    ({"label": "a", "paused": False}, ["without a recognisable id", "client_id, id", "keys seen: label, paused"]),
    ({"client_id": "", "label": "a", "paused": False}, ["empty id"]),
    ({"client_id": "p", "paused": False}, ["without a recognisable label", "label, name", "keys seen: client_id, paused"]),
    ({"client_id": "p", "display_name": "a", "paused": False}, ["without a recognisable label", "display_name"]),
    ({"client_id": "p", "label": "a", "name": "b", "paused": False}, ["label is ambiguous"]),
    ({"client_id": "p", "label": 7, "paused": False}, ["label is not a string"]),
    ({"client_id": "p", "label": "a"}, ["without a recognisable pause state", "keys seen: client_id, label"]),
    ({"client_id": "p", "label": "a", "suspended_at": None}, ["without a recognisable pause state", "suspended_at"]),
    ({"client_id": "p", "label": "a", "status": "online"}, ["without a recognisable pause state", "status"]),
    ({"client_id": "p", "label": "a", "paused": "maybe"}, ["paused='maybe' is not a boolean"]),
    ({"client_id": "p", "label": "a", "enabled": 2}, ["enabled=2 is not a boolean"]),
    ({"client_id": "p", "label": "a", "paused": True, "enabled": True}, ["contradicting pause states"]),
    ({"client_id": "p", "label": "a", "paused": False, "status": "paused"}, ["contradicting pause states"]),
])
def test_client_row_fails_closed(fields, words):
    with pytest.raises(ShapeError) as info:
        _reader.normalize_client(fields)
    for word in words:
        assert word in info.value.msg


def test_client_row_that_is_not_an_object():
    with pytest.raises(ShapeError, match="not a JSON object"):
        _reader.normalize_client(["pub-1"])


# ---------------------------------------------------------------- subscriber rows

@pytest.mark.parametrize("fields, expected", [
    ({"id": "sub-1", "label": "g"}, ("sub-1", "g")),
    ({"subscriber_id": "sub-1", "label": "g"}, ("sub-1", "g")),
    ({"username": "sub-1", "label": "g"}, ("sub-1", "g")),
    ({"id": "sub-1", "name": "g"}, ("sub-1", "g")),
    ({"id": "sub-1", "label": None}, ("sub-1", None)),
])
def test_subscriber_row_spellings(fields, expected):
    got = _reader.normalize_subscriber(fields)
    assert (got["id"], got["label"]) == expected and tuple(got) == _reader.SUBSCRIBER_KEYS


@pytest.mark.parametrize("fields, words", [
    ({"label": "g"}, ["without a recognisable id", "keys seen: label"]),
    ({"id": "sub-1"}, ["without a recognisable label", "keys seen: id"]),
    ({"id": "sub-1", "label": "g", "name": "h"}, ["label is ambiguous"]),
])
def test_subscriber_row_fails_closed(fields, words):
    with pytest.raises(ShapeError) as info:
        _reader.normalize_subscriber(fields)
    for word in words:
        assert word in info.value.msg


# ---------------------------------------------------------------- list pages: continuations understood

def rows(n):
    return [row("pub-%012d" % i, "dev-%d" % i) for i in range(n)]


@pytest.mark.parametrize("body, headers, next_url, pagination", [
    (rows(2), {}, None, "none"),
    ([], {}, None, "none"),
    (rows(2), {"Link": '<%s?page=2>; rel="next"' % BASE}, BASE + "?page=2", "link_header"),
    (rows(2), {"Link": '</api/v1/subscriber/publishers?after=x>; rel="next", </x>; rel="last"'},
     BASE + "/publishers?after=x", "link_header"),
    (rows(2), {"Link": '<https://portal.test/p?2>; title="x"; rel="prev next"'}, "https://portal.test/p?2", "link_header"),
    (rows(1000), {"Link": '<https://portal.test/first>; rel="first"'}, None, "link_header"),
    ({"items": rows(2), "next": "/api/v1/subscriber/publishers?page=2"}, {}, BASE + "/publishers?page=2", "link"),
    ({"items": rows(2), "next_url": BASE + "/publishers?page=2"}, {}, BASE + "/publishers?page=2", "link"),
    ({"data": rows(2), "links": {"next": "?page=2", "self": "?page=1"}}, {}, BASE + "/publishers?page=2", "link"),
    ({"data": rows(1000), "links": {"next": None}}, {}, None, "link"),
    ({"items": rows(1000), "next": None}, {}, None, "link"),
    ({"items": rows(3), "page": 1, "page_size": 1000, "total": 3, "next": None}, {}, None, "link"),
    ({"data": rows(2), "next_cursor": "abc"}, {}, BASE + "/publishers?cursor=abc&page_size=1000", "cursor"),
    ({"data": rows(2), "cursor": "abc"}, {}, BASE + "/publishers?cursor=abc&page_size=1000", "cursor"),
    ({"data": rows(2), "next_page_token": "t"}, {}, BASE + "/publishers?page_token=t&page_size=1000", "cursor"),
    ({"data": rows(2), "page_token": "t"}, {}, BASE + "/publishers?page_token=t&page_size=1000", "cursor"),
    ({"data": rows(2), "cursor": "now", "next_cursor": "then"}, {}, BASE + "/publishers?cursor=then&page_size=1000", "cursor"),
    ({"data": rows(1000), "next_cursor": None}, {}, None, "cursor"),
    ({"data": rows(1000), "next_cursor": ""}, {}, None, "cursor"),
    ({"data": rows(2), "meta": {"next_cursor": "m"}}, {}, BASE + "/publishers?cursor=m&page_size=1000", "cursor"),
    ({"results": rows(2), "page": 1, "page_size": 2, "total": 5}, {}, BASE + "/publishers?page=2&page_size=2", "page_total"),
    ({"results": rows(2), "page": 1, "per_page": 2, "total_count": 5}, {}, BASE + "/publishers?page=2&page_size=2", "page_total"),
    ({"results": rows(1), "page": 3, "page_size": 2, "total": 5}, {}, None, "page_total"),
    ({"results": rows(2), "offset": 0, "limit": 2, "total": 5}, {}, BASE + "/publishers?offset=2&limit=2", "offset_total"),
    ({"results": rows(1), "offset": 4, "limit": 2, "total": 5}, {}, None, "offset_total"),
    ({"clients": rows(2), "pagination": {"page": 1, "page_size": 2, "total": 3}}, {}, BASE + "/publishers?page=2&page_size=2",
     "page_total"),
    ({"publishers": rows(1000), "has_more": False}, {}, None, "none"),
    ({"subscribers": rows(2), "has_more": True, "next_cursor": "c"}, {}, BASE + "/publishers?cursor=c&page_size=1000", "cursor"),
    ({"items": rows(2), "account_id": "x", "count": 2}, {}, None, "none"),
])
def test_list_page_continuations(body, headers, next_url, pagination):
    page = _reader.read_page(body, headers, URL, 1000)
    assert page.next_url == next_url
    assert page.pagination == pagination
    assert len(page.rows) == len(body if isinstance(body, list) else next(v for v in body.values() if isinstance(v, list)))


# ---------------------------------------------------------------- list pages: fail closed

@pytest.mark.parametrize("body, headers, words", [
    ({"items": rows(2), "continuation": "abc"}, {}, ["continuation", "refusing to treat 2 rows as the whole list"]),
    ({"items": rows(2), "next_page": 2}, {}, ["next_page"]),
    ({"items": rows(2), "after": "pub-2"}, {}, ["after"]),
    ({"items": rows(2), "scroll_id": "s"}, {}, ["scroll_id"]),
    ({"items": rows(2), "has_more": True}, {}, ["has_more is true"]),
    ({"items": rows(2), "meta": {"continuation_token": "x"}}, {}, ["continuation_token"]),
    (rows(1000), {}, ["is full (1000 rows)", "(bare array)"]),
    ({"items": rows(1000)}, {}, ["is full (1000 rows)", "Keys seen: (only the rows, under items)"]),
    ({"items": rows(100), "page_size": 100}, {}, ["is full (100 rows)", "page_size"]),
    ({"items": rows(100), "limit": 100, "offset": 0}, {}, ["is full (100 rows)"]),
    ({"rows": rows(2)}, {}, ["has no rows", "items, data", "keys seen: rows"]),
    ({"items": rows(2), "data": rows(2)}, {}, ["several keys"]),
    ("text", {}, ["neither a JSON array nor an object"]),
    (None, {}, ["neither a JSON array nor an object"]),
    ({"items": rows(2), "next_cursor": {"after": 2}}, {}, ["not a string"]),
])
def test_list_page_fails_closed(body, headers, words):
    with pytest.raises(ShapeError) as info:
        _reader.read_page(body, headers, URL, 1000)
    for word in words:
        assert word in info.value.msg


# ---------------------------------------------------------------- create and rotate answers

@pytest.mark.parametrize("answer, client_id, password", [
    ({"device": dict(row(), password="pw"), "publish_topic": "a/b/"}, "pub-000000000001", "pw"),
    (dict(row(), password="pw"), "pub-000000000001", "pw"),
    (dict(row(), credentials={"password": "pw"}), "pub-000000000001", "pw"),
    ({"client": {"id": "pub-2", "password": "pw"}}, "pub-2", "pw"),
    ({"device": {"client_id": "pub-3"}, "mqtt_password": "pw"}, "pub-3", "pw"),
    # exactly what the seed page documents: no id, the id read from publish_topic {account_uuid}/{client_id}/
    ({"device": {"password": "pw"}, "publish_topic": ACCOUNT + "/pub-4/"}, "pub-4", "pw"),
    ({"device": {"password": "pw"}, "publish_topic": ACCOUNT + "/pub-5"}, "pub-5", "pw"),
    # publish topics the contract does not let us read an id from: the caller must re-list
    ({"device": {"password": "pw"}, "publish_topic": "pub-6/"}, None, "pw"),
    ({"device": {"password": "pw"}, "publish_topic": ACCOUNT + "/pub-7/telemetry"}, None, "pw"),
    ({"device": {"password": "pw"}, "publish_topic": "not-a-uuid/pub-8/"}, None, "pw"),
    ({"device": {"password": "pw"}, "publish_topic": ACCOUNT + "/live/"}, None, "pw"),
    ({"device": {"password": "pw"}}, None, "pw"),
    ({"device": {"client_id": "pub-9"}}, "pub-9", None),
])
def test_created_client_answers(answer, client_id, password):
    got, secret = _reader.read_created_client(answer, "dev-1", True, False)
    assert secret == password
    if client_id is None:
        assert got is None
    else:
        assert got["client_id"] == client_id and got["label"] in ("dev-1",) and got["paused"] is False
        assert tuple(got) == _reader.CLIENT_KEYS


def test_created_client_row_takes_what_was_asked_when_the_answer_is_silent():
    got, dummy = _reader.read_created_client({"device": {"password": "pw"}, "publish_topic": ACCOUNT + "/pub-4/"},
                                             "dev-1", False, True)
    assert (got["label"], got["allow_publish"], got["allow_subscribe"], got["publish_topic"]) == (
        "dev-1", False, True, ACCOUNT + "/pub-4/")


@pytest.mark.parametrize("answer, password, partial", [
    ({"client_id": "pub-1", "username": "pub-1", "password": "pw", "rotated_at": "r"}, "pw",
     {"client_id": "pub-1", "username": "pub-1", "rotated_at": "r"}),
    ({"device": {"password": "pw"}}, "pw", {"client_id": "pub-1", "username": "pub-1"}),
    ({"new_password": "pw"}, "pw", {"client_id": "pub-1", "username": "pub-1"}),
    ({"credentials": {"password": "pw"}, "name": "dev-1", "enabled": False}, "pw",
     {"client_id": "pub-1", "username": "pub-1", "label": "dev-1", "paused": True}),
    ({"client": {"password": "pw", "id": "pub-1"}}, "pw", {"client_id": "pub-1", "username": "pub-1"}),
])
def test_rotated_answers(answer, password, partial):
    assert _reader.read_rotated(answer, "pub-1") == (partial, password)


@pytest.mark.parametrize("answer, words", [({"client_id": "pub-1"}, ["carried none", "keys seen: client_id"]),
                                           (["x"], ["not a JSON object"])])
def test_rotated_answer_without_password_fails(answer, words):
    with pytest.raises(ShapeError) as info:
        _reader.read_rotated(answer, "pub-1")
    for word in words:
        assert word in info.value.msg


@pytest.mark.parametrize("answer, expected", [
    (None, None), ({}, None), ({"ok": True}, None), ({"client_id": "pub-1"}, None),
    (row(paused=True), True), ({"device": row(paused=False)}, False),
])
def test_write_answers(answer, expected):
    got = _reader.read_write_answer(answer)
    assert (got if got is None else got["paused"]) == expected


@pytest.mark.parametrize("answer, sub_id, password", [
    (dict(sub_row(), password="pw"), "sub-000000000001", "pw"),
    ({"subscriber": sub_row(), "password": "pw"}, "sub-000000000001", "pw"),
    ({"username": "sub-2", "mqtt_password": "pw"}, "sub-2", "pw"),
    ({"password": "pw", "expires_at": None}, None, "pw"),
])
def test_created_subscriber_answers(answer, sub_id, password):
    got, secret = _reader.read_created_subscriber(answer, "grafana")
    assert secret == password
    assert (got or {}).get("id") == sub_id
    if got:
        assert got["label"] == "grafana"


# ---------------------------------------------------------------- headers

@pytest.mark.parametrize("header, target", [
    ('<https://x/p?2>; rel="next"', "https://x/p?2"),
    ('<https://x/p?2>; rel=next', "https://x/p?2"),
    ('<https://x/p?1>; rel="prev", <https://x/p?3>; rel="next"', "https://x/p?3"),
    ('<https://x/p?1>; rel="prev"', None),
    ('', None),
    (None, None),
])
def test_link_header(header, target):
    assert _reader.link_next(header) == target


@pytest.mark.parametrize("value, now, seconds", [
    (30, 1.8e9, 30), (3600, 1.8e9, 3600), (1.8e9 + 42, 1.8e9, 42), (1.8e9 - 5, 1.8e9, 0), (None, 1.8e9, None), (-3, 0, 0),
])
def test_reset_is_seconds_or_a_unix_time(value, now, seconds):
    assert _reader.reset_seconds(value, now) == seconds


# ---------------------------------------------------------------- through the client: no write, no lost password

UNKNOWN_CONTINUATION = {"items": [row()], "continuation": "abc"}
ROW_WITHOUT_LABEL = [{"client_id": "pub-1", "paused": False}]


@pytest.mark.parametrize("page", [UNKNOWN_CONTINUATION, ROW_WITHOUT_LABEL, {"items": rows(3), "total": 5, "next": None}],
                         ids=["unknown-continuation", "row-without-label", "fewer-rows-than-total"])
def test_create_after_a_list_it_cannot_trust_writes_nothing(page):
    h = Harness([(200, page)] * 2)  # a list that disagrees with its total is read a second time
    with pytest.raises(PortalError) as info:
        h.client.create_client("dev-1")  # lists first to learn the known ids
    assert info.value.kind == "protocol"
    assert set(c["method"] for c in h.calls) == {"GET"}


def test_list_through_cursor_pages_follows_them_all():
    pages = {None: {"data": rows(2), "next_cursor": "c2"}, "c2": {"data": rows(4)[2:], "next_cursor": None}}

    def script(request):
        cursor = dict(p.split("=") for p in request.url.split("?")[1].split("&")).get("cursor")
        return 200, pages[cursor]

    h = Harness(script)
    assert [r["client_id"] for r in h.client.list_clients()] == [r["client_id"] for r in rows(4)]
    assert len(h.calls) == 2


def test_create_answer_without_id_takes_it_from_publish_topic_without_a_request():
    h = Harness([(201, {"device": {"password": "pw"}, "publish_topic": ACCOUNT + "/pub-4/"})])
    got, password = h.client.create_client("dev-1", known_client_ids=set())
    assert (got["client_id"], password) == ("pub-4", "pw") and len(h.calls) == 1


def test_create_answer_without_id_relists_once_by_label():
    h = Harness([(201, {"device": {"password": "pw"}, "publish_topic": "elsewhere/"}),
                 (200, [row("pub-old", "dev-1"), row("pub-new", "dev-1"), row("pub-x", "other")])])
    got, password = h.client.create_client("dev-1", known_client_ids={"pub-old"})
    assert (got["client_id"], password) == ("pub-new", "pw")
    assert [c["method"] for c in h.calls] == ["POST", "GET"] and "re-listing identified it" in h.warnings[0]


@pytest.mark.parametrize("relist", [(200, []), (200, [row("pub-a", "dev-1"), row("pub-b", "dev-1")]),
                                    (200, UNKNOWN_CONTINUATION)], ids=["none-appeared", "two-appeared", "list-refused"])
def test_create_answer_without_id_that_cannot_be_identified_keeps_the_password(relist):
    h = Harness([(201, {"device": {"password": "pw"}}), relist])
    with pytest.raises(PortalError) as info:
        h.client.create_client("dev-1", known_client_ids=set())
    err = info.value
    assert err.password == "pw" and err.created is True and "store it now" in err.msg
    assert "pw" not in err.msg
    assert [c["method"] for c in h.calls] == ["POST", "GET"]


def test_subscriber_create_answer_without_id_relists():
    h = Harness([(201, {"password": "pw"}), (200, [sub_row("sub-9", "grafana")])])
    got, password = h.client.create_subscriber("grafana", known_ids=set())
    assert (got["id"], password) == ("sub-9", "pw")


# ---------------------------------------------------------------- issue 23: both ids, page drift, time headers

@pytest.mark.parametrize("fields, path_id, extra", [
    ({"client_id": "pub-1", "id": 17}, "pub-1", "id"),  # the portal's database key beside the documented id
    ({"client_id": "pub-1", "id": "6f1e-uuid"}, "pub-1", "id"),
    ({"client_id": "pub-1", "id": "pub-1"}, "pub-1", None),  # the same value twice: nothing extra
    ({"client_id": "pub-1", "id": None}, "pub-1", None),
    ({"id": "pub-1"}, "pub-1", None),  # only id: as before
    ({"client_id": None, "id": "pub-1"}, "pub-1", None),
])
def test_client_id_wins_over_an_id_beside_it(fields, path_id, extra):
    raw = dict({"label": "a", "paused": False}, **fields)
    assert _reader.normalize_client(raw)["client_id"] == path_id
    spellings = _reader.client_spellings(raw)
    assert spellings.get("extra_id") == extra
    assert spellings["id"] == ("client_id" if fields.get("client_id") else "id")


@pytest.mark.parametrize("fields, path_id, extra", [
    ({"subscriber_id": "sub-1", "id": 17, "username": "sub-1"}, "sub-1", "id"),
    ({"id": "sub-1", "username": "sub-1"}, "sub-1", None),
    ({"id": 17}, 17, None),  # only an id: as before
    ({"username": "sub-1"}, "sub-1", None),
])
def test_subscriber_id_wins_over_an_id_beside_it(fields, path_id, extra):
    raw = dict({"label": "grafana"}, **fields)
    assert _reader.normalize_subscriber(raw)["id"] == path_id
    assert _reader.subscriber_spellings(raw).get("extra_id") == extra


def test_a_create_answer_with_both_ids_names_the_client_id():
    answer = {"device": dict(row("pub-7"), id=42, password="pw"), "publish_topic": "x/"}
    client, password = _reader.read_created_client(answer, "dev-1", True, False)
    assert client["client_id"] == "pub-7" and password == "pw"
    sub, password = _reader.read_created_subscriber(dict(sub_row("sub-7"), subscriber_id="sub-7", id=42, password="pw"),
                                                    "grafana")
    assert sub["id"] == "sub-7" and password == "pw"


def ids(*names):
    return [{"client_id": name} for name in names]


@pytest.mark.parametrize("rows_read, totals, words", [
    (ids("a", "b", "d", "e"), [5, 4], ["different totals (5, 4)", "totals per page: 5, 4", "rows read: 4"]),
    (ids("a", "b", "c"), [5, 5], ["3 distinct rows were read against total=5"]),
    (ids("a", "b", "b", "c"), [3, 3], ["client_id b listed twice"]),
    (ids("a", "b", "b"), [None, None], ["client_id b listed twice", "totals per page: -, -"]),
    (ids("a", "b", "c"), [3, None], []),  # a page without a total does not disagree
    (ids("a", "b", "c"), [3, 3], []),
    (ids("a", "b"), [None], []),  # no totals: only a row on two pages shows drift
])
def test_list_drift(rows_read, totals, words):
    found = _reader.list_drift(rows_read, totals, "client_id")
    if not words:
        assert found is None
    for word in words:
        assert word in found


NOW = 1800000000.0  # 2027-01-15T08:00:00Z


@pytest.mark.parametrize("text, seconds", [
    ("30", 30), ("0", 0), ("-4", 0), ("2.5", 2.5),
    (str(int(NOW) + 42), 42),  # a Unix time in seconds
    (str(int(NOW + 42) * 1000), 42),  # ... in milliseconds
    ("Fri, 15 Jan 2027 08:00:42 GMT", 42),  # an HTTP date (IMF-fixdate)
    ("Friday, 15-Jan-27 08:00:42 GMT", 42),  # the obsolete RFC 850 form
    ("Fri Jan 15 08:00:42 2027", 42),  # asctime
    ("Fri, 15 Jan 2027 07:00:00 GMT", 0),  # already past
    ("soon", None), ("", None), ("nan", None), ("inf", None),
])
def test_wait_header_reads_seconds_unix_times_and_http_dates(text, seconds):
    assert _reader.wait_header({"Retry-After": text}, NOW, "Retry-After") == (
        (seconds, "Retry-After") if seconds is not None else (None, None))


@pytest.mark.parametrize("headers, remaining, reset, limit, window, names", [
    ({"RateLimit": "limit=100, remaining=50, reset=30", "RateLimit-Policy": "100;w=3600"},
     50, 30, 100, 3600, ("RateLimit remaining", "RateLimit reset")),
    ({"RateLimit": '"hour";r=0;t=12, "day";r=500;t=80000', "RateLimit-Policy": '"hour";q=100;w=3600'},
     0, 12, 100, 3600, ("RateLimit remaining", "RateLimit reset")),  # the binding policy: fewest remaining
    ({"RateLimit-Limit": "100", "RateLimit-Remaining": "3", "RateLimit-Reset": "9"},
     3, 9, 100, None, ("RateLimit-Remaining", "RateLimit-Reset")),
    ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 20), "RateLimit": "remaining=7, reset=1"},
     0, 20, None, None, ("X-RateLimit-Remaining", "X-RateLimit-Reset")),  # X-RateLimit-* win
    ({"X-RateLimit-Reset": "Fri, 15 Jan 2027 08:01:00 GMT"}, None, 60, None, None, (None, "X-RateLimit-Reset")),
    ({"RateLimit": "garbage", "RateLimit-Policy": "x"}, None, None, None, None, (None, None)),
    ({}, None, None, None, None, (None, None)),
])
def test_rate_limit_headers_x_ietf_and_combined(headers, remaining, reset, limit, window, names):
    info = _reader.rate_limit_of(headers, NOW)
    assert (info["remaining"], info["reset"], info["limit"], info["window"]) == (remaining, reset, limit, window)
    assert (info["remaining_header"], info["reset_header"]) == names
