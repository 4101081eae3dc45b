# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests of the shared portal client, over a fake transport (a requests adapter, no network)."""

from __future__ import annotations

import http.client
import json
import threading
from types import SimpleNamespace

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from ansible_collections.isr.mqtt.plugins.module_utils import _portal
from ansible_collections.isr.mqtt.plugins.module_utils._portal import (
    CLIENT_KEYS,
    SUBSCRIBER_KEYS,
    PortalClient,
    PortalError,
    base_url,
    client_from_module,
    portal_argument_spec,
)

TOKEN = "isr_mqtt_rest_s3cr3t-token-value"
ORIGIN = "https://portal.test"
BASE = ORIGIN + "/api/v1/subscriber"


def row(client_id="pub-000000000001", label="dev-1", **extra):
    data = {"client_id": client_id, "label": label, "username": client_id, "topic": "acc/%s/#" % client_id,
            "paused": False, "allow_publish": True, "allow_subscribe": False, "history_topic_prefix": "acc/" + client_id,
            "created_at": "2026-11-26T00:00:00Z", "rotated_at": "2026-11-26T00:00:00Z"}
    data.update(extra)
    return data


def sub_row(sub_id="sub-000000000001", label="grafana", **extra):
    data = {"id": sub_id, "username": sub_id, "label": label, "subscribe_filter": "acc/#",
            "created_at": "2026-11-26T00:00:00Z", "expires_at": "2999-01-01T00:00:00Z", "expired": False}
    data.update(extra)
    return data


def refused():
    """What requests raises when nothing listens on the port: the request was never sent."""
    return requests.exceptions.ConnectionError(MaxRetryError(None, "/", NewConnectionError(None, "Connection refused")))


def dropped():
    """What requests raises when the server closes the connection after reading the request."""
    return requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")))


class FakeTransport(BaseAdapter):
    """A requests adapter answering from a script: a list of answers, or a callable(request) -> answer.

    An answer is ``(status, body)``, ``(status, body, headers)`` or an exception instance to raise.
    """

    def __init__(self, script):
        super(FakeTransport, self).__init__()
        self.script = script
        self.calls = []
        self.lock = threading.Lock()

    def send(self, request, **kwargs):
        with self.lock:
            self.calls.append({"method": request.method, "url": request.url, "headers": dict(request.headers),
                               "body": json.loads(request.body) if request.body else None, "kwargs": kwargs})
            if callable(self.script):
                answer = self.script(request)
            else:
                assert self.script, "unexpected request %s %s" % (request.method, request.url)
                answer = self.script.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        status, body = answer[0], answer[1]
        headers = answer[2] if len(answer) > 2 else {}
        response = requests.Response()
        response.status_code = status
        if isinstance(body, (bytes, str)):
            response._content = body.encode() if isinstance(body, str) else body
        else:
            response._content = json.dumps(body).encode() if body is not None else b""
            headers = dict({"Content-Type": "application/json"}, **headers)
        response.headers = CaseInsensitiveDict(headers)
        response.url = request.url
        response.request = request
        return response

    def close(self):
        pass


class FakeResponse(object):
    def __init__(self, headers):
        self.headers = headers


class Harness(object):
    """A client wired to a FakeTransport, with a fake clock that sleeping advances."""

    def __init__(self, script, **kwargs):
        self.now = 1000.0
        self.sleeps = []
        self.warnings = []
        kwargs.setdefault("warn", self.warnings.append)
        self.client = PortalClient(kwargs.pop("portal_url", ORIGIN), kwargs.pop("api_token", TOKEN), **kwargs)
        self.client._sleep = self.sleep
        self.client._clock = lambda: self.now
        self.transport = FakeTransport(script)
        self.client.session.mount("https://", self.transport)

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    @property
    def calls(self):
        return self.transport.calls


@pytest.fixture(autouse=True)
def no_jitter(monkeypatch):
    """Make the jitter deterministic: uniform() returns its upper bound, so waits are exactly the cap."""
    monkeypatch.setattr(_portal.random, "uniform", lambda low, high: high)


def assert_no_token(error):
    assert TOKEN not in str(error)
    assert TOKEN not in repr(error.to_fail_kwargs())


# ---------------------------------------------------------------- URL and session

@pytest.mark.parametrize("given", [ORIGIN, ORIGIN + "/", ORIGIN + "/api/v1/subscriber", ORIGIN + "/api/v1/subscriber/", " %s " % ORIGIN])
def test_base_url_accepts_origin_or_api_url(given):
    assert base_url(given) == BASE


@pytest.mark.parametrize("given", ["portal.test", "ftp://portal.test", "", None, "https://"])
def test_base_url_rejects_bad_urls(given):
    with pytest.raises(PortalError) as info:
        base_url(given)
    assert info.value.kind == "validation"
    assert "portal_url" in info.value.msg


def test_session_sends_bearer_token_timeout_and_verifies_tls(monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    h = Harness([(200, [])], timeout=12)
    h.client.list_clients()
    call = h.calls[0]
    assert call["headers"]["Authorization"] == "Bearer " + TOKEN
    assert call["kwargs"]["timeout"] == 12
    assert call["kwargs"]["verify"] is True
    assert h.warnings == []


def test_ca_path_is_used_for_verification(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")  # must not win over ca_path
    h = Harness([(200, [])], ca_path="/etc/ssl/private-ca.pem")
    h.client.list_clients()
    assert h.calls[0]["kwargs"]["verify"] == "/etc/ssl/private-ca.pem"


def test_validate_certs_false_disables_verification_and_warns():
    h = Harness([(200, [])], validate_certs=False, ca_path="/ignored.pem")
    h.client.list_clients()
    assert h.calls[0]["kwargs"]["verify"] is False
    assert len(h.warnings) == 1 and "validate_certs is false" in h.warnings[0]


def test_pool_size_sets_the_adapter_pool():
    client = PortalClient(ORIGIN, TOKEN, pool_size=32)
    adapter = client.session.get_adapter(BASE)
    assert adapter._pool_maxsize == 32 and adapter._pool_connections == 32


def test_empty_token_is_refused():
    with pytest.raises(PortalError) as info:
        PortalClient(ORIGIN, "")
    assert "ISR_PORTAL_TOKEN" in info.value.msg


# ---------------------------------------------------------------- pagination and list envelopes

def test_list_asks_for_big_pages_and_normalises_rows():
    h = Harness([(200, {"items": [row(extra_field="x")], "page": 1, "page_size": 1000, "total": 1, "next": None})])
    rows = h.client.list_clients()
    assert h.calls[0]["url"] == BASE + "/publishers?page=1&page_size=1000"
    assert list(rows[0]) == list(CLIENT_KEYS)
    assert rows[0]["client_id"] == "pub-000000000001" and rows[0]["publish_topic"] is None


@pytest.mark.parametrize("key", ["items", "data", "publishers", "clients", "results"])
def test_list_rows_under_any_wrapper_key(key):
    h = Harness([(200, {key: [row()]})])
    assert [r["client_id"] for r in h.client.list_clients()] == ["pub-000000000001"]


def test_list_bare_array_is_one_page():
    h = Harness([(200, [row("pub-a"), row("pub-b")])])
    assert [r["client_id"] for r in h.client.list_clients()] == ["pub-a", "pub-b"]
    assert len(h.calls) == 1


def test_list_without_rows_is_a_protocol_error():
    h = Harness([(200, {"something": 1})])
    with pytest.raises(PortalError) as info:
        h.client.list_clients()
    assert info.value.kind == "protocol" and "items" in info.value.msg


@pytest.mark.parametrize("envelope", [
    lambda url: {"next": url},
    lambda url: {"next_url": url},
    lambda url: {"links": {"next": url}},
])
@pytest.mark.parametrize("absolute", [True, False])
def test_list_follows_next_links(envelope, absolute):
    second = "/api/v1/subscriber/publishers?page=2&page_size=1000"
    link = ORIGIN + second if absolute else second
    page1 = dict(envelope(link), items=[row("pub-a")])
    page2 = dict(envelope(None), items=[row("pub-b")])
    h = Harness([(200, page1), (200, page2)])
    assert [r["client_id"] for r in h.client.list_clients()] == ["pub-a", "pub-b"]
    assert h.calls[1]["url"] == ORIGIN + second


def test_list_computes_next_page_from_page_size_and_total():
    h = Harness([
        (200, {"data": [row("pub-a"), row("pub-b")], "page": 1, "page_size": 2, "total": 3}),
        (200, {"data": [row("pub-c")], "page": 2, "page_size": 2, "total": 3}),
    ])
    assert [r["client_id"] for r in h.client.list_clients()] == ["pub-a", "pub-b", "pub-c"]
    assert h.calls[1]["url"] == BASE + "/publishers?page=2&page_size=2"


def test_list_stops_on_empty_page_even_if_next_is_given():
    h = Harness([(200, {"items": [row()], "next": "?page=2"}), (200, {"items": [], "next": "?page=3"})])
    assert len(h.client.list_clients()) == 1
    assert len(h.calls) == 2


def test_list_detects_a_page_cycle():
    link = BASE + "/publishers?page=2&page_size=1000"
    h = Harness(lambda request: (200, {"items": [row()], "next": link}))
    with pytest.raises(PortalError) as info:
        h.client.list_clients()
    assert info.value.kind == "protocol" and "loops" in info.value.msg
    assert len(h.calls) == 2


def test_list_refuses_a_next_link_to_another_host():
    h = Harness([(200, {"items": [row()], "next": "https://evil.test/steal?page=2"})])
    with pytest.raises(PortalError) as info:
        h.client.list_clients()
    assert "another host" in info.value.msg
    assert len(h.calls) == 1


# ---------------------------------------------------------------- row variants

@pytest.mark.parametrize("fields, paused", [
    ({"paused": True}, True), ({"paused": False}, False), ({"is_paused": True}, True), ({"pause": "true"}, True),
    ({"paused": 1}, True), ({"paused": "no"}, False),
    ({"status": "paused"}, True), ({"status": "active"}, False), ({"state": "PAUSED"}, True),
    ({"paused": None, "status": "paused"}, True), ({"enabled": False}, True), ({"active": True}, False),
])
def test_pause_flag_variants(fields, paused):
    data = row()
    del data["paused"]
    data.update(fields)
    h = Harness([(200, [data])])
    assert h.client.list_clients()[0]["paused"] is paused


def test_row_defaults_and_id_variant():
    h = Harness([(200, [{"id": "pub-x", "label": "l", "paused": False}])])
    got = h.client.list_clients()[0]
    assert got["client_id"] == "pub-x" and got["username"] == "pub-x"
    assert got["allow_publish"] is True and got["allow_subscribe"] is False


@pytest.mark.parametrize("bad", [{"label": "no id"}, "not-an-object"])
def test_row_without_client_id_is_a_protocol_error(bad):
    h = Harness([(200, [bad])])
    with pytest.raises(PortalError) as info:
        h.client.list_clients()
    assert info.value.kind == "protocol"


# ---------------------------------------------------------------- create

@pytest.mark.parametrize("answer", [
    {"device": dict(row(), password="pw"), "publish_topic": "acc/pub-000000000001/"},
    dict(row(), password="pw", publish_topic="acc/pub-000000000001/"),
    dict(row(), credentials={"password": "pw"}, publish_topic="acc/pub-000000000001/"),
    {"device": row(), "mqtt_password": "pw", "publish_topic": "acc/pub-000000000001/"},
])
def test_create_client_password_and_row_variants(answer):
    h = Harness([(201, answer)])
    client, password = h.client.create_client("dev-1", allow_subscribe=True, known_client_ids=set())
    assert password == "pw"
    assert client["client_id"] == "pub-000000000001" and client["publish_topic"] == "acc/pub-000000000001/"
    assert h.calls[0]["body"] == {"label": "dev-1", "allow_subscribe": True}
    assert h.calls[0]["method"] == "POST" and h.calls[0]["url"] == BASE + "/publishers"


def test_create_client_without_password_in_answer_warns():
    h = Harness([(201, {"device": row()})])
    client, password = h.client.create_client("dev-1", known_client_ids=set())
    assert password is None
    assert "rotate" in h.warnings[0]


def test_create_client_without_known_ids_lists_first():
    h = Harness([(200, [row("pub-old")]), (201, {"device": dict(row("pub-new"), password="pw")})])
    assert h.client.create_client("dev-1")[0]["client_id"] == "pub-new"
    assert [c["method"] for c in h.calls] == ["GET", "POST"]


@pytest.mark.parametrize("failure", [requests.exceptions.ReadTimeout("read timed out"), dropped(),
                                     (502, {"detail": "bad gateway"}), (504, "gateway timeout")])
def test_ambiguous_create_adopts_the_row_that_appeared(failure):
    old = row("pub-old", "dev-1")
    new = row("pub-new", "dev-1")
    other = row("pub-other", "other-label")
    h = Harness([failure, (200, [old, new, other])])
    client, password = h.client.create_client("dev-1", known_client_ids={"pub-old"})
    assert client["client_id"] == "pub-new" and password is None
    assert [c["method"] for c in h.calls] == ["POST", "GET"]
    assert "password was lost" in h.warnings[0] and "rotate" in h.warnings[0]


def test_ambiguous_create_retries_when_nothing_appeared():
    h = Harness([dropped(), (200, [row("pub-old", "dev-1")]), (201, {"device": dict(row("pub-new"), password="pw")})])
    client, password = h.client.create_client("dev-1", known_client_ids={"pub-old"})
    assert (client["client_id"], password) == ("pub-new", "pw")
    assert [c["method"] for c in h.calls] == ["POST", "GET", "POST"]
    assert h.client.stats["retries"] == 1 and h.sleeps == [0.5]


def test_ambiguous_create_gives_up_after_max_retries():
    h = Harness(lambda request: (200, []) if request.method == "GET" else (502, {"detail": "bad gateway"}), max_retries=2)
    with pytest.raises(PortalError) as info:
        h.client.create_client("dev-1", known_client_ids=set())
    assert info.value.kind == "server" and "Nothing was created" in info.value.msg and "2 retries" in info.value.msg
    assert [c["method"] for c in h.calls] == ["POST", "GET"] * 3


def test_ambiguous_create_with_several_new_rows_is_a_conflict():
    h = Harness([dropped(), (200, [row("pub-a", "dev-1"), row("pub-b", "dev-1")])])
    with pytest.raises(PortalError) as info:
        h.client.create_client("dev-1", known_client_ids=set())
    assert info.value.kind == "conflict" and "pub-a" in info.value.msg and "pub-b" in info.value.msg


@pytest.mark.parametrize("failure", [refused(), requests.exceptions.ConnectTimeout("connect timeout"),
                                     (503, {"detail": "broker down", "code": "broker_unavailable"})])
def test_create_is_repeated_without_listing_when_nothing_happened(failure):
    h = Harness([failure, (201, {"device": dict(row(), password="pw")})])
    assert h.client.create_client("dev-1", known_client_ids=set())[1] == "pw"
    assert [c["method"] for c in h.calls] == ["POST", "POST"]


def test_create_is_not_retried_on_client_errors():
    h = Harness([(422, {"detail": [{"loc": ["body", "label"], "msg": "String should have at most 64 characters"}]})])
    with pytest.raises(PortalError) as info:
        h.client.create_client("x" * 65, known_client_ids=set())
    assert info.value.kind == "validation" and "label: String should have at most 64 characters" in info.value.msg
    assert len(h.calls) == 1


def test_plan_limit_names_limit_active_and_the_way_out():
    h = Harness([(409, {"detail": "client limit reached", "code": "plan_limit", "limit": 10, "active": 10})])
    with pytest.raises(PortalError) as info:
        h.client.create_client("dev-1", known_client_ids=set())
    err = info.value
    assert err.kind == "plan_limit" and err.status == 409
    assert "10 of 10" in err.msg and "Delete or revoke" in err.msg and "Subscriptions" in err.msg


def test_create_500_is_not_retried_but_warns_it_may_have_happened():
    h = Harness([(500, {"detail": "boom"})])
    with pytest.raises(PortalError) as info:
        h.client.create_client("dev-1", known_client_ids=set())
    assert info.value.kind == "server" and "may have created it" in info.value.msg and len(h.calls) == 1


@pytest.mark.parametrize("answer", [(204, b""), (200, b""), (200, {"ok": True})])
def test_pause_resume_and_update_answers_without_a_row_are_success(answer):
    for call in (lambda c: c.pause_client("pub-1"), lambda c: c.resume_client("pub-1"),
                 lambda c: c.update_client("pub-1", allow_subscribe=True)):
        h = Harness([answer])
        assert call(h.client) is None
        assert len(h.calls) == 1


def test_create_answer_that_is_not_an_object():
    h = Harness([(201, [1, 2])])
    with pytest.raises(PortalError) as info:
        h.client.create_client("dev-1", known_client_ids=set())
    assert info.value.kind == "protocol"


# ---------------------------------------------------------------- rotate

@pytest.mark.parametrize("answer", [
    {"client_id": "pub-1", "username": "pub-1", "password": "new", "rotated_at": "t"},
    {"device": {"client_id": "pub-1", "username": "pub-1", "password": "new", "rotated_at": "t"}},
    {"client_id": "pub-1", "new_password": "new", "rotated_at": "t"},
    {"mqtt_password": "new", "rotated_at": "t"},
])
def test_rotate_password_variants_and_partial_row(answer):
    h = Harness([(200, answer)])
    partial, password = h.client.rotate_password("pub-1")
    assert password == "new"
    assert partial == {"client_id": "pub-1", "username": "pub-1", "rotated_at": "t"}
    assert h.calls[0]["url"] == BASE + "/publishers/pub-1/rotate-credentials"


def test_rotate_full_row_answer_is_normalised():
    h = Harness([(200, dict(row("pub-1"), password="new"))])
    partial, password = h.client.rotate_password("pub-1")
    assert set(partial) == set(CLIENT_KEYS) - {"publish_topic"}


@pytest.mark.parametrize("failure", [requests.exceptions.ReadTimeout("read timed out"), dropped(),
                                     (502, {"detail": "bad gateway"}), (503, {"detail": "unavailable"})])
def test_ambiguous_rotate_is_retried_and_yields_a_known_password(failure):
    # A lost rotate answer lost its password whatever we do; the next rotate gives one we receive.
    h = Harness([failure, (200, {"client_id": "pub-1", "password": "new"})])
    assert h.client.rotate_password("pub-1")[1] == "new"
    assert len(h.calls) == 2


@pytest.mark.parametrize("failure", [requests.exceptions.ReadTimeout("read timed out"), (503, {"detail": "unavailable"})])
def test_rotate_that_keeps_failing_says_how_to_recover(failure):
    h = Harness(lambda request: failure, max_retries=2)
    with pytest.raises(PortalError) as info:
        h.client.rotate_password("pub-1")
    assert len(h.calls) == 3
    assert "may have been rotated" in info.value.msg and "recover" in info.value.msg
    assert_no_token(info.value)


@pytest.mark.parametrize("failure", [refused(), (503, {"detail": "broker down", "code": "broker_unavailable"})])
def test_rotate_is_repeated_when_nothing_happened(failure):
    h = Harness([failure, (200, {"client_id": "pub-1", "password": "new"})])
    assert h.client.rotate_password("pub-1")[1] == "new"
    assert len(h.calls) == 2


@pytest.mark.parametrize("answer", [{"client_id": "pub-1"}, ["x"]])
def test_rotate_answer_without_password_is_an_error(answer):
    h = Harness([(200, answer)])
    with pytest.raises(PortalError) as info:
        h.client.rotate_password("pub-1")
    assert info.value.kind == "protocol" and "rotate again" in info.value.msg


def test_rotate_answer_that_is_not_json():
    h = Harness([(200, "<html>oops</html>", {"Content-Type": "text/html"})])
    with pytest.raises(PortalError) as info:
        h.client.rotate_password("pub-1")
    assert info.value.kind == "protocol" and "not JSON" in info.value.msg


# ---------------------------------------------------------------- idempotent writes

def test_pause_resume_get_patch_and_delete_routes():
    h = Harness([(200, row(paused=True)), (200, row()), (200, row()), (200, row(allow_subscribe=True)), (204, None)])
    assert h.client.pause_client("pub-1")["paused"] is True
    assert h.client.resume_client("pub-1")["paused"] is False
    assert h.client.get_client("pub-1")["client_id"] == "pub-000000000001"
    assert h.client.update_client("pub-1", allow_subscribe=True)["allow_subscribe"] is True
    assert h.client.delete_client("pub-1") is None
    assert [(c["method"], c["url"][len(BASE):]) for c in h.calls] == [
        ("POST", "/publishers/pub-1/pause"), ("POST", "/publishers/pub-1/resume"), ("GET", "/publishers/pub-1"),
        ("PATCH", "/publishers/pub-1"), ("DELETE", "/publishers/pub-1")]
    assert h.calls[3]["body"] == {"allow_subscribe": True}


def test_update_sends_both_fields():
    h = Harness([(200, row())])
    h.client.update_client("pub-1", allow_publish=False, allow_subscribe=False)
    assert h.calls[0]["body"] == {"allow_publish": False, "allow_subscribe": False}


def test_update_without_patch_route_is_unsupported():
    h = Harness([(405, {"detail": "Method Not Allowed"})])
    with pytest.raises(PortalError) as info:
        h.client.update_client("pub-1", allow_publish=False)
    assert info.value.kind == "unsupported" and info.value.status == 405 and "recreating" in info.value.msg


def test_update_other_errors_pass_through():
    h = Harness([(404, {"detail": "not found"})])
    with pytest.raises(PortalError) as info:
        h.client.update_client("pub-1", allow_publish=False)
    assert info.value.kind == "not_found"


@pytest.mark.parametrize("call", [
    lambda c: c.delete_client("pub-1"),
    lambda c: c.revoke_subscriber("sub-1"),
])
def test_delete_404_means_already_gone(call):
    h = Harness([(404, {"detail": "not found", "code": "not_found"})])
    assert call(h.client) is None


@pytest.mark.parametrize("call", [
    lambda c: c.delete_client("pub-1"),
    lambda c: c.revoke_subscriber("sub-1"),
])
def test_delete_other_errors_raise(call):
    h = Harness([(403, {"detail": "add-on"})])
    with pytest.raises(PortalError) as info:
        call(h.client)
    assert info.value.kind == "addon"


@pytest.mark.parametrize("call, ok", [
    (lambda c: c.pause_client("pub-1"), (200, row())),
    (lambda c: c.resume_client("pub-1"), (200, row())),
    (lambda c: c.update_client("pub-1", allow_publish=True), (200, row())),
    (lambda c: c.delete_client("pub-1"), (204, None)),
    (lambda c: c.list_clients(), (200, [])),
])
@pytest.mark.parametrize("failure", [(502, {}), (503, {}), (504, {}), dropped(), requests.exceptions.ReadTimeout("t")])
def test_idempotent_requests_are_retried(call, ok, failure):
    h = Harness([failure, failure, ok])
    call(h.client)
    assert len(h.calls) == 3
    assert h.client.stats == {"requests": 3, "retries": 2, "rate_limit_waited": 0.0}


def test_backoff_doubles_up_to_the_cap_and_gives_up():
    h = Harness(lambda request: (503, {"detail": "unavailable"}), max_retries=6)
    with pytest.raises(PortalError) as info:
        h.client.list_clients()
    assert h.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert len(h.calls) == 7
    assert info.value.kind == "server" and info.value.status == 503 and "Gave up after 6 retries" in info.value.msg


def test_backoff_is_jittered_between_half_and_full_delay(monkeypatch):
    monkeypatch.setattr(_portal.random, "uniform", lambda low, high: low)
    h = Harness(lambda request: (502, {}))
    with pytest.raises(PortalError):
        h.client.list_clients()
    assert h.sleeps == [0.25, 0.5, 1.0, 2.0]
    assert len(h.calls) == 5  # max_retries defaults to 4


def test_no_retries_when_max_retries_is_zero():
    h = Harness(lambda request: (502, {}), max_retries=0)
    with pytest.raises(PortalError) as info:
        h.client.list_clients()
    assert len(h.calls) == 1 and "Gave up" not in info.value.msg


def test_500_is_retried_for_idempotent_requests_only():
    h = Harness([(500, {"detail": "proxy"}), (200, [])])
    assert h.client.list_clients() == [] and len(h.calls) == 2
    h = Harness([(500, {"detail": "proxy"}), (204, b"")])
    h.client.delete_client("pub-1")
    assert len(h.calls) == 2
    h = Harness([(500, {"detail": "proxy"})])
    with pytest.raises(PortalError) as info:
        h.client.create_client("dev-1", known_client_ids=set())
    assert len(h.calls) == 1 and "may have created it" in info.value.msg


def test_4xx_are_not_retried():
    for status in (400, 401, 404, 409):
        h = Harness(lambda request: (status, {"detail": "no"}))
        with pytest.raises(PortalError):
            h.client.pause_client("pub-1")
        assert len(h.calls) == 1, status


# ---------------------------------------------------------------- rate limit

def test_429_waits_retry_after_and_warns():
    h = Harness([(429, {"detail": "slow down"}, {"Retry-After": "3"}), (200, [])])
    assert h.client.list_clients() == []
    assert h.sleeps == [3.0]
    assert h.client.stats["rate_limit_waited"] == 3.0 and h.client.stats["retries"] == 0
    assert "waiting 3 s" in h.warnings[0] and "297 s of rate_limit_max_wait left" in h.warnings[0]


def test_429_without_retry_after_waits_a_minimum():
    h = Harness([(429, {}), (429, {}, {"Retry-After": "soon"}), (200, [])])
    h.client.list_clients()
    assert h.sleeps == [1.0, 2.0]
    assert "without Retry-After or a rate-limit reset header" in h.warnings[0]


def test_429_past_the_ceiling_fails_without_waiting():
    h = Harness([(429, {}, {"Retry-After": "3"}), (429, {}, {"Retry-After": "3"})], rate_limit_max_wait=5)
    with pytest.raises(PortalError) as info:
        h.client.list_clients()
    assert h.sleeps == [3.0]
    err = info.value
    assert err.kind == "rate_limit" and err.status == 429
    assert "rate_limit_max_wait" in err.msg and "2 s" in err.msg
    assert_no_token(err)


def test_429_with_zero_budget_fails_at_once():
    h = Harness([(429, {}, {"Retry-After": "1"})], rate_limit_max_wait=0)
    with pytest.raises(PortalError) as info:
        h.client.list_clients()
    assert info.value.kind == "rate_limit" and h.sleeps == []


def test_429_on_create_and_rotate_is_safe_to_repeat():
    h = Harness([(429, {}, {"Retry-After": "2"}), (201, {"device": dict(row(), password="pw")}),
                 (429, {}, {"Retry-After": "2"}), (200, {"password": "new"})])
    assert h.client.create_client("dev-1", known_client_ids=set())[1] == "pw"
    assert h.client.rotate_password("pub-1")[1] == "new"
    assert h.sleeps == [2.0, 2.0] and len(h.calls) == 4


def test_remaining_zero_waits_for_reset_before_the_next_request():
    h = Harness([(200, [], {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "7"}), (200, row())])
    h.client.list_clients()
    assert h.sleeps == []
    h.client.pause_client("pub-1")
    assert h.sleeps == [7.0] and h.client.stats["rate_limit_waited"] == 7.0
    assert "X-RateLimit-Reset" in h.warnings[0]


def test_remaining_zero_past_the_ceiling_fails_before_sending():
    h = Harness([(200, [], {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "3600"})], rate_limit_max_wait=60)
    h.client.list_clients()
    with pytest.raises(PortalError) as info:
        h.client.pause_client("pub-1")
    assert info.value.kind == "rate_limit" and info.value.status is None
    assert len(h.calls) == 1 and h.sleeps == []


def test_remaining_above_zero_does_not_pace():
    h = Harness([(200, [], {"X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "7"}), (200, row())])
    h.client.list_clients()
    h.client.pause_client("pub-1")
    assert h.sleeps == []


def test_budget_is_counted_down_and_no_refused_request_is_sent():
    """Remaining 2 after the list: two more requests go out, the third waits for the window's end first."""
    h = Harness([(200, [], {"X-RateLimit-Remaining": "2", "X-RateLimit-Reset": "30"}),
                 (200, row(), {}), (200, row(), {}),  # no headers: only the countdown knows the budget is spent
                 (200, row(), {"X-RateLimit-Remaining": "99", "X-RateLimit-Reset": "3600"})])
    h.client.list_clients()
    h.client.pause_client("pub-1")
    h.client.pause_client("pub-1")
    assert h.sleeps == [] and len(h.calls) == 3
    h.client.pause_client("pub-1")
    assert h.sleeps == [30.0] and len(h.calls) == 4
    assert h.client._budget == 99


def test_budget_counts_requests_in_flight_as_spent():
    h = Harness([(200, [], {"X-RateLimit-Remaining": "5", "X-RateLimit-Reset": "10"})])
    h.client._in_flight.update([101, 102, 103])  # three requests of other threads not answered yet
    h.client.list_clients()
    assert h.client._budget == 2


def test_an_older_answer_does_not_raise_the_budget():
    h = Harness([])
    h.client._note_rate_headers(FakeResponse({"X-RateLimit-Remaining": "5", "X-RateLimit-Reset": "10"}), 7)
    h.client._note_rate_headers(FakeResponse({"X-RateLimit-Remaining": "6", "X-RateLimit-Reset": "10"}), 6)
    assert h.client._budget == 5


def test_an_answer_overtaken_on_the_way_does_not_raise_the_budget():
    """Two threads: b reaches the portal first (remaining 3), a second (remaining 2), but a's answer is read first.
    b's count misses a, which was answered meanwhile: the budget is 2, not 3 (seen as a 429 in a paced role run)."""
    h = Harness([])
    a, b = h.client._pace(), h.client._pace()
    h.client._note_rate_headers(FakeResponse({"X-RateLimit-Remaining": "2", "X-RateLimit-Reset": "10"}), a)
    h.client._note_rate_headers(FakeResponse({"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "10"}), b)
    assert h.client._budget == 2
    c = h.client._pace()  # sent after both answers: a later answer counts only what is still unknown
    h.client._note_rate_headers(FakeResponse({"X-RateLimit-Remaining": "1", "X-RateLimit-Reset": "10"}), c)
    assert h.client._budget == 1


def test_a_request_that_failed_on_the_way_counts_as_maybe_reaching_the_portal():
    h = Harness([])
    a, b = h.client._pace(), h.client._pace()
    h.client._done(a)  # a connection error: the portal may still have counted it, after b
    h.client._note_rate_headers(FakeResponse({"X-RateLimit-Remaining": "5", "X-RateLimit-Reset": "10"}), b)
    assert h.client._budget == 4


def test_long_waits_report_progress_at_least_once_a_minute():
    h = Harness([])
    seen = []
    h.client.on_wait = seen.append
    h.client.rate_limit_max_wait = 1000
    h.client._rate_limit_wait(150, "test")
    assert seen == [150, 90, 30] and h.sleeps == [60.0, 60.0, 30.0]


def test_concurrent_waits_for_the_same_moment_count_once():
    h = Harness([])
    h.client._rate_limit_wait(10, "test")
    h.now -= 10  # a second thread that started waiting at the same moment
    h.client._rate_limit_wait(10, "test")
    assert h.client.stats["rate_limit_waited"] == 10.0


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("status, body, kind, words", [
    (401, {"detail": "token expired", "code": "token_invalid"}, "auth", ["api_token", "ISR_PORTAL_TOKEN", "token expired"]),
    (403, {"detail": "Mgmt REST API add-on required", "code": "addon_required"}, "addon", ["Mgmt REST API", "Subscriptions"]),
    (404, {"detail": "no such client"}, "not_found", ["pub-1", "no such client"]),
    (405, {"detail": "Method Not Allowed"}, "unsupported", ["405"]),
    (409, {"detail": "busy"}, "conflict", ["busy"]),
    (422, {"detail": [{"loc": ["query", "page_size"], "msg": "too big"}, {"loc": [], "msg": "bad"}, "odd"]},
     "validation", ["page_size: too big", "bad", "odd"]),
    (400, {"message": "top-level message"}, "validation", ["top-level message"]),
    (418, {"error": "teapot"}, "protocol", ["418", "teapot"]),
    (500, {"detail": {"message": "boom"}}, "server", ["500", "boom"]),
    (500, {"detail": {"other": 1}}, "server", ['{"other": 1}']),
    (500, "plain text failure", "server", ["plain text failure"]),
    (500, ["list body"], "server", ["500"]),
])
def test_error_messages(status, body, kind, words):
    h = Harness([(status, body)], max_retries=0)
    with pytest.raises(PortalError) as info:
        h.client.get_client("pub-1")
    err = info.value
    assert (err.kind, err.status) == (kind, status)
    for word in words:
        assert word in err.msg
    assert_no_token(err)


def test_401_hints_at_a_token_without_the_prefix():
    h = Harness([(401, {"detail": "bad token"})], api_token="not-a-portal-token")
    with pytest.raises(PortalError) as info:
        h.client.list_clients()
    assert "isr_mqtt_rest_" in info.value.msg and "not-a-portal-token" not in info.value.msg


@pytest.mark.parametrize("exc, kind, words", [
    (requests.exceptions.SSLError("certificate verify failed"), "tls", ["ca_path", "validate_certs"]),
    (requests.exceptions.ConnectTimeout("connect timed out"), "timeout", ["timeout=30"]),
    (requests.exceptions.ReadTimeout("read timed out"), "timeout", ["timeout option"]),
    (refused(), "connection", ["portal_url", "ISR_PORTAL_URL"]),
])
def test_network_error_messages(exc, kind, words):
    h = Harness(lambda request: exc)
    with pytest.raises(PortalError) as info:
        h.client.list_clients()
    assert info.value.kind == kind and info.value.status is None
    for word in words:
        assert word in info.value.msg
    assert len(h.calls) == (1 if kind == "tls" else 5)  # TLS failures are not retried


def test_token_is_scrubbed_from_portal_details_and_exception_texts():
    h = Harness([(422, {"detail": "bad header Bearer %s" % TOKEN})])
    with pytest.raises(PortalError) as info:
        h.client.list_clients()
    assert_no_token(info.value)
    assert "<api_token>" in info.value.msg and TOKEN not in info.value.detail
    h = Harness(lambda request: requests.exceptions.ConnectionError("refused for %s" % TOKEN))
    with pytest.raises(PortalError) as info:
        h.client.list_clients()
    assert_no_token(info.value)


def test_to_fail_kwargs():
    err = PortalError("it broke", kind="server", status=503, detail="down")
    assert err.to_fail_kwargs(changed=True) == {"msg": "it broke", "changed": True,
                                                "error": {"kind": "server", "status": 503, "detail": "down",
                                                          "may_have_acted": True}}
    assert str(err) == "it broke"
    assert PortalError("no", kind="validation").to_fail_kwargs()["error"]["may_have_acted"] is False


def truncated():
    """What requests raises when the answer stops before its Content-Length (stream=False reads it in send)."""
    return requests.exceptions.ChunkedEncodingError(ProtocolError(
        "Connection broken: IncompleteRead(10 bytes read, 12 more expected)", http.client.IncompleteRead(b"0123456789", 12)))


# Every exception of the HTTP layer besides connection errors and timeouts, each with the token in its text.
TRANSPORT_FAILURES = [
    truncated(),
    requests.exceptions.ContentDecodingError("Received response with content-encoding: gzip, but failed to decode it %s" % TOKEN),
    ProtocolError("Connection broken %s" % TOKEN),
    http.client.IncompleteRead(b"partial"),
    requests.exceptions.RequestException("something else %s" % TOKEN),
    RuntimeError("a bug in a library %s" % TOKEN),
]


@pytest.mark.parametrize("failure", TRANSPORT_FAILURES)
def test_every_transport_failure_becomes_a_scrubbed_portal_error_that_may_have_acted(failure):
    h = Harness(lambda request: failure, max_retries=1)
    with pytest.raises(PortalError) as info:
        h.client.pause_client("pub-1")
    assert info.value.kind == "connection" and info.value.may_have_acted is True and info.value.unclean
    assert "may have carried out the request" in info.value.msg and type(failure).__name__ in info.value.msg
    assert_no_token(info.value)
    assert len(h.calls) == 2  # idempotent: retried


@pytest.mark.parametrize("failure", TRANSPORT_FAILURES[:3])
def test_a_create_whose_answer_was_cut_short_is_checked_by_listing(failure):
    h = Harness([failure, (200, [row("pub-new", "dev-1")])])
    client, password = h.client.create_client("dev-1", known_client_ids=set())
    assert client["client_id"] == "pub-new" and password is None
    assert [c["method"] for c in h.calls] == ["POST", "GET"]


def test_a_rotate_whose_answers_keep_being_cut_short_says_it_may_have_rotated():
    h = Harness(lambda request: truncated(), max_retries=1)
    with pytest.raises(PortalError) as info:
        h.client.rotate_password("pub-1")
    assert info.value.may_have_acted is True and "may have been rotated" in info.value.msg and len(h.calls) == 2
    h = Harness([truncated(), (200, {"client_id": "pub-1", "password": "new"})])
    assert h.client.rotate_password("pub-1")[1] == "new"


def test_an_invalid_request_is_not_sent_and_names_the_fix_without_the_token():
    failure = requests.exceptions.InvalidHeader("Invalid leading whitespace, reserved character(s), or return character(s) "
                                                "in header value: %r" % ("Bearer %s\n" % TOKEN))
    h = Harness(lambda request: failure)
    with pytest.raises(PortalError) as info:
        h.client.create_client("dev-1", known_client_ids=set())
    assert info.value.kind == "validation" and info.value.may_have_acted is False and len(h.calls) == 1
    assert "nothing reached the portal" in info.value.msg and "api_token" in info.value.msg
    assert_no_token(info.value)


def test_a_write_answered_with_something_unreadable_may_have_acted():
    h = Harness([(200, "<html>", {"Content-Type": "text/html"})])
    with pytest.raises(PortalError) as info:
        h.client.pause_client("pub-1")
    assert info.value.may_have_acted is True
    h = Harness([(200, "<html>", {"Content-Type": "text/html"})])
    with pytest.raises(PortalError) as info:
        h.client.list_clients()
    assert info.value.may_have_acted is False


# ---------------------------------------------------------------- subscribers

def test_subscribers_list_create_and_normalise():
    h = Harness([
        (200, {"items": [sub_row(), sub_row("sub-2", expires_at="2000-01-01T00:00:00Z", expired=None),
                         {"username": "sub-3", "label": "x", "expires_at": None}], "next": None}),
        (201, dict(sub_row("sub-4", "new"), password="pw")),
        (201, {"subscriber": sub_row("sub-5", "nested"), "mqtt_password": "pw5"}),
    ])
    subs = h.client.list_subscribers()
    assert h.calls[0]["url"] == BASE + "/subscriber-mqtt-passwords?page=1&page_size=1000"
    assert [list(s) for s in subs] == [list(SUBSCRIBER_KEYS)] * 3
    assert [s["expired"] for s in subs] == [False, True, False]
    assert subs[2]["id"] == "sub-3"
    sub, password = h.client.create_subscriber("new", expires_in_days=None, known_ids=set())
    assert (sub["id"], password) == ("sub-4", "pw")
    assert h.calls[1]["body"] == {"label": "new", "expires_in_days": None}
    sub, password = h.client.create_subscriber("nested", known_ids=set())
    assert (sub["id"], sub["label"], password) == ("sub-5", "nested", "pw5")


@pytest.mark.parametrize("expires_at, expired", [("2000-01-01T00:00:00", True), ("garbage", False), (None, False)])
def test_subscriber_expiry_is_computed_when_the_flag_is_missing(expires_at, expired):
    data = sub_row(expires_at=expires_at)
    del data["expired"]
    assert _portal.normalize_subscriber(data)["expired"] is expired


def test_subscriber_without_id_or_object_is_a_protocol_error():
    for bad in ({"label": "x"}, 7):
        with pytest.raises(PortalError):
            _portal.normalize_subscriber(bad)


def test_ambiguous_subscriber_create_adopts_the_new_entry():
    h = Harness([dropped(), (200, [sub_row("sub-new", "grafana")])])
    sub, password = h.client.create_subscriber("grafana", known_ids=set())
    assert sub["id"] == "sub-new" and password is None


def test_subscriber_create_answer_variants():
    h = Harness([(201, sub_row()), (201, "[]")])
    assert h.client.create_subscriber("grafana", known_ids=set())[1] is None
    assert "revoke" in h.warnings[0]
    with pytest.raises(PortalError):
        h.client.create_subscriber("grafana", known_ids=set())


# ---------------------------------------------------------------- threads

def test_stats_are_thread_safe():
    h = Harness(lambda request: (200, []), pool_size=8)
    barrier = threading.Barrier(8)

    def work():
        barrier.wait()
        for dummy in range(50):
            h.client.list_clients()

    threads = [threading.Thread(target=work) for dummy in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert h.client.stats["requests"] == 400 and len(h.calls) == 400


# ---------------------------------------------------------------- module glue

class FailJson(Exception):
    pass


class FakeModule(object):
    def __init__(self, **params):
        self.params = dict(portal_url=ORIGIN, api_token=TOKEN, validate_certs=True, ca_path=None, timeout=30,
                           rate_limit_max_wait=300)
        self.params.update(params)
        self.warnings = []
        self.no_log_values = set()

    def warn(self, msg):
        self.warnings.append(msg)

    def fail_json(self, **kwargs):
        raise FailJson(kwargs)


def test_portal_argument_spec_shape():
    spec = portal_argument_spec()
    assert set(spec) == {"portal_url", "api_token", "validate_certs", "ca_path", "timeout", "rate_limit_max_wait", "allow_http"}
    assert spec["api_token"]["no_log"] is True
    assert spec["api_token"]["fallback"][1] == ["ISR_PORTAL_TOKEN"]
    assert spec["portal_url"]["fallback"][1] == ["ISR_PORTAL_URL"]
    assert spec["validate_certs"]["default"] is True and spec["timeout"]["default"] == 30
    assert spec["rate_limit_max_wait"]["default"] == 300
    assert not any(option.get("required") for option in spec.values())


def test_portal_argument_spec_env_fallbacks(monkeypatch):
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    monkeypatch.setenv("ISR_PORTAL_URL", ORIGIN)
    monkeypatch.setenv("ISR_PORTAL_TOKEN", TOKEN)
    result = ArgumentSpecValidator(portal_argument_spec()).validate({})
    assert result.error_messages == []
    assert result.validated_parameters["portal_url"] == ORIGIN and result.validated_parameters["api_token"] == TOKEN
    assert TOKEN in result._no_log_values


def test_client_from_module_builds_a_client_that_warns_through_the_module():
    module = FakeModule(validate_certs=False, timeout=5)
    client = client_from_module(module, pool_size=16)
    assert client.base == BASE and client.timeout == 5 and client.session.verify is False
    assert client.session.get_adapter(BASE)._pool_maxsize == 16
    assert "validate_certs" in module.warnings[0]


@pytest.mark.parametrize("params, words", [
    ({"portal_url": None}, ["portal_url", "ISR_PORTAL_URL"]),
    ({"api_token": ""}, ["api_token", "ISR_PORTAL_TOKEN"]),
    ({"timeout": 0}, ["timeout"]),
    ({"timeout": 10 ** 12}, ["timeout must be between 1 and 3600"]),
    ({"rate_limit_max_wait": 10 ** 12}, ["rate_limit_max_wait must be between 0 and 86400"]),
    ({"validate_certs": None}, ["validate_certs is null"]),
    ({"rate_limit_max_wait": -1}, ["rate_limit_max_wait"]),
    ({"portal_url": "portal.test"}, ["portal_url", "https://"]),
])
def test_client_from_module_fails_clearly(params, words):
    with pytest.raises(FailJson) as info:
        client_from_module(FakeModule(**params))
    kwargs = info.value.args[0]
    for word in words:
        assert word in kwargs["msg"]
    assert TOKEN not in repr(kwargs)


def test_client_from_module_without_requests(monkeypatch):
    monkeypatch.setattr(_portal, "HAS_REQUESTS", False)
    monkeypatch.setattr(_portal, "REQUESTS_IMPORT_ERROR", "Traceback: no module named requests")
    with pytest.raises(FailJson) as info:
        client_from_module(FakeModule())
    kwargs = info.value.args[0]
    assert "requests" in kwargs["msg"] and kwargs["exception"] == "Traceback: no module named requests"
    with pytest.raises(PortalError):
        PortalClient(ORIGIN, TOKEN)


# ---------------------------------------------------------------- secrets: token, scrubbing, plain http, core dumps

@pytest.mark.parametrize("given", [TOKEN + "\n", "  " + TOKEN + "\r\n", "\t" + TOKEN])
def test_surrounding_whitespace_of_the_token_is_stripped_and_masked(given):
    module = FakeModule(api_token=given)
    client = client_from_module(module)
    assert client.session.headers["Authorization"] == "Bearer " + TOKEN
    assert module.params["api_token"] == TOKEN and TOKEN in module.no_log_values


@pytest.mark.parametrize("given, word", [(TOKEN[:10] + " " + TOKEN[10:], "whitespace"),
                                         (TOKEN[:10] + "\n" + TOKEN[10:], "whitespace"),
                                         (TOKEN[:10] + "\x00" + TOKEN[10:], "control characters")])
def test_a_token_with_inner_whitespace_or_control_characters_is_refused(given, word):
    with pytest.raises(FailJson) as info:
        client_from_module(FakeModule(api_token=given))
    msg = info.value.args[0]["msg"]
    assert word in msg and "api_token" in msg and TOKEN[10:] not in msg


def test_a_text_error_page_is_scrubbed_before_it_is_cut():
    client = PortalClient(ORIGIN, TOKEN)
    page = "x" * 290 + " Authorization: Bearer " + TOKEN  # the token straddles the 300-character cut

    def not_json():
        raise ValueError("not JSON")
    response = SimpleNamespace(json=not_json, text=page, status_code=500, headers={})
    err = client._status_error(response, "GET", BASE, "MQTT clients")
    assert TOKEN[:8] not in repr(err.msg) + repr(err.detail)


@pytest.mark.parametrize("url, ok", [("http://127.0.0.1:8080", True), ("http://localhost", True), ("http://[::1]:80", True),
                                     ("http://portal.example", False), ("http://10.0.0.5", False), ("https://portal.example", True)])
def test_plain_http_only_to_this_machine_unless_allowed(url, ok):
    if ok:
        assert PortalClient(url, TOKEN).base.startswith(url.rstrip("/"))
        return
    with pytest.raises(PortalError) as info:
        PortalClient(url, TOKEN)
    assert "allow_http" in info.value.msg and info.value.kind == "validation"
    warnings = []
    PortalClient(url, TOKEN, allow_http=True, warn=warnings.append)
    assert "unencrypted" in warnings[0]


def test_module_processes_write_no_core_files():
    import resource
    old = resource.getrlimit(resource.RLIMIT_CORE)
    try:
        client_from_module(FakeModule())
        assert resource.getrlimit(resource.RLIMIT_CORE) == (0, 0)
    finally:
        try:
            resource.setrlimit(resource.RLIMIT_CORE, old)
        except ValueError:  # a hard limit cannot be raised again: keep 0 for this test process
            pass


def test_an_orphan_stops_during_a_rate_limit_wait_and_sends_nothing_more():
    """The module's ansible-playbook died while the module waited out a 429: it stops within a second of wait."""
    h = Harness([(429, {"detail": "slow down"}, {"Retry-After": "60"})], rate_limit_max_wait=300)
    checks = []

    def gone():
        checks.append(1)
        return "ansible-playbook (pid 4242) that started it is gone" if len(checks) > 3 else None

    h.client.should_stop = gone
    with pytest.raises(PortalError) as info:
        h.client.create_client("dev-1", known_client_ids=set())
    assert info.value.kind == "aborted" and info.value.may_have_acted is False
    assert "pid 4242" in info.value.msg and "Nothing more is sent" in info.value.msg
    assert len(h.calls) == 1 and sum(h.sleeps) <= 3  # not the 60 s the portal asked for


def test_without_a_watch_waits_are_single_sleeps():
    h = Harness([(429, {"detail": "slow down"}, {"Retry-After": "7"}), (200, [])])
    h.client.list_clients()
    assert h.sleeps == [7.0]


# ---------------------------------------------------------------- status handling for portals we have not seen

@pytest.mark.parametrize("status, location", [(302, "https://portal.test/login?next=/api"), (301, "https://other.test/"),
                                              (307, None)])
def test_redirects_are_not_followed_and_name_url_or_token(status, location):
    h = Harness([(status, "<html>login</html>", {"Location": location} if location else {})])
    with pytest.raises(PortalError) as info:
        h.client.list_clients()
    err = info.value
    assert (err.kind, err.status) == ("auth", status) and len(h.calls) == 1
    assert "portal_url is wrong" in err.msg and "API token was not accepted" in err.msg
    assert "next=" not in err.msg  # the query of a login URL is not repeated
    if location:
        assert location.split("?")[0] in err.msg


def test_session_request_is_sent_without_following_redirects(monkeypatch):
    h = Harness([(200, [])])
    seen = {}
    real = h.client.session.request

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(h.client.session, "request", spy)
    h.client.list_clients()
    assert seen["allow_redirects"] is False


@pytest.mark.parametrize("body", [
    {"detail": "too many", "code": "plan_limit", "limit": 5, "active": 5},
    {"error": {"code": "plan_limit", "message": "too many", "limit": 5, "active": 5}},
    {"detail": {"code": "plan_limit", "msg": "too many", "limit": 5, "active": 5}},
    {"detail": "plan_limit: too many (5 of 5)"},
    "plan_limit exceeded",
])
def test_plan_limit_is_recognised_wherever_the_code_sits(body):
    h = Harness([(409 if not isinstance(body, str) else 403, body)])
    with pytest.raises(PortalError) as info:
        h.client.create_client("dev-1", known_client_ids=set())
    assert info.value.kind == "plan_limit" and "Plan limit reached" in info.value.msg


def test_429_without_retry_after_waits_for_the_reset_header_and_names_it():
    h = Harness([(429, {}, {"X-RateLimit-Reset": "7"}), (200, [])])
    h.client.list_clients()
    assert h.sleeps == [7.0]
    assert "X-RateLimit-Reset: 7 (no Retry-After)" in h.warnings[0] and "Retry-After:" not in h.warnings[0]


def test_429_reset_as_unix_time():
    h = Harness([(429, {}, {"X-RateLimit-Reset": "1800000012"}), (200, [])])
    h.client._wallclock = lambda: 1800000000.0
    h.client.list_clients()
    assert h.sleeps == [12.0]


@pytest.mark.parametrize("reset", ["20", "1800000020"])
def test_remaining_zero_with_reset_as_seconds_or_unix_time(reset):
    h = Harness([(200, [], {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}), (200, [])])
    h.client._wallclock = lambda: 1800000000.0
    h.client.list_clients()
    h.client.list_clients()
    assert h.sleeps == [20.0]
    assert "X-RateLimit-Remaining is 0 until X-RateLimit-Reset" in h.warnings[0]


def test_ietf_ratelimit_headers_are_read_and_named():
    h = Harness([(200, [], {"RateLimit-Remaining": "0", "RateLimit-Reset": "5"}), (200, [])])
    h.client.list_clients()
    assert h.client.rate_headers == {"RateLimit-Remaining": "0", "RateLimit-Reset": "5"}
    h.client.list_clients()
    assert h.sleeps == [5.0] and "RateLimit-Remaining is 0 until RateLimit-Reset" in h.warnings[0]


def test_create_sends_allow_publish_only_when_false():
    h = Harness([(201, {"device": dict(row(), password="pw")}), (201, {"device": dict(row(), password="pw")})])
    h.client.create_client("dev-1", known_client_ids=set())
    h.client.create_client("dev-1", allow_publish=False, known_client_ids=set())
    assert [c["body"] for c in h.calls] == [{"label": "dev-1", "allow_subscribe": False},
                                            {"label": "dev-1", "allow_subscribe": False, "allow_publish": False}]


@pytest.mark.parametrize("call", [lambda c: c.delete_client("pub-1"), lambda c: c.revoke_subscriber("sub-1")])
def test_delete_answered_204_is_success(call):
    h = Harness([(204, b"")])
    assert call(h.client) is None and len(h.calls) == 1


# ---------------------------------------------------------------- issue 23: 503 windows, HTTP dates, drift, both ids

WALL = 1800000000.0  # 2027-01-15T08:00:00Z
IN_40_S = "Fri, 15 Jan 2027 08:00:40 GMT"


def walled(script, **kwargs):
    h = Harness(script, **kwargs)
    h.client._wallclock = lambda: WALL + (h.now - 1000.0)  # the wall clock moves with the fake clock
    return h


@pytest.mark.parametrize("retry_after, seconds", [("12", 12.0), (IN_40_S, 40.0), (str(int(WALL) + 7), 7.0)])
def test_503_with_retry_after_is_waited_out_for_a_get(retry_after, seconds):
    h = walled([(503, {"detail": "maintenance"}, {"Retry-After": retry_after}), (200, [])])
    assert h.client.list_clients() == []
    assert h.sleeps == [seconds] and len(h.calls) == 2
    assert h.client.stats["retries"] == 0 and h.client.stats["rate_limit_waited"] == seconds
    assert "Portal unavailable: waiting %d s" % seconds in h.warnings[0]
    assert "503 with Retry-After: %s" % retry_after in h.warnings[0]


def test_a_503_window_longer_than_max_retries_is_waited_out():
    h = walled([(503, {}, {"Retry-After": "1"})] * 8 + [(200, [])], max_retries=2)
    h.client.list_clients()
    assert h.sleeps == [1.0] * 8 and len(h.warnings) == 8


def test_503_retry_after_past_the_wait_budget_fails_naming_the_option():
    h = walled([(503, {"detail": "maintenance"}, {"Retry-After": "600"})], rate_limit_max_wait=60)
    with pytest.raises(PortalError) as info:
        h.client.list_clients()
    err = info.value
    assert err.kind == "server" and err.status == 503 and h.sleeps == [] and len(h.calls) == 1
    assert "unavailable" in err.msg and "rate_limit_max_wait" in err.msg and "600 s" in err.msg
    assert_no_token(err)


def test_503_without_retry_after_keeps_the_backoff():
    h = Harness([(503, {}), (200, [])])
    h.client.list_clients()
    assert h.sleeps == [0.5] and h.client.stats["retries"] == 1


def test_a_create_answered_503_with_retry_after_is_not_repeated_blindly():
    """The portal may have acted: re-list (waiting out the window), and retry only when nothing appeared."""
    h = walled([(503, {"detail": "maintenance"}, {"Retry-After": "5"}),
                (503, {"detail": "maintenance"}, {"Retry-After": IN_40_S}),
                (200, []),
                (201, {"device": dict(row("pub-9"), password="pw")})])
    client, password = h.client.create_client("dev-1", known_client_ids=set())
    assert (client["client_id"], password) == ("pub-9", "pw")
    assert [c["method"] for c in h.calls] == ["POST", "GET", "GET", "POST"]
    assert h.sleeps == [40.0, 0.5]  # the re-list waited out the window the portal named; then a short backoff


def test_a_create_answered_503_waits_the_rest_of_its_window_before_trying_again():
    h = walled([(503, {}, {"Retry-After": "30"}), (200, []), (201, {"device": dict(row("pub-9"), password="pw")})])
    assert h.client.create_client("dev-1", known_client_ids=set())[1] == "pw"
    assert [c["method"] for c in h.calls] == ["POST", "GET", "POST"] and h.sleeps == [30.0]
    assert "creating MQTT client 'dev-1' answered 503 with Retry-After" in h.warnings[0]


def test_a_create_answered_503_that_happened_is_adopted_not_repeated():
    h = walled([(503, {}, {"Retry-After": "5"}), (200, [row("pub-9", "dev-1")])])
    client, password = h.client.create_client("dev-1", known_client_ids=set())
    assert client["client_id"] == "pub-9" and password is None
    assert [c["method"] for c in h.calls] == ["POST", "GET"]


def test_a_create_whose_recheck_cannot_wait_says_it_may_have_happened():
    h = walled([(503, {}, {"Retry-After": "5"}), (503, {}, {"Retry-After": "900"})], rate_limit_max_wait=60)
    with pytest.raises(PortalError) as info:
        h.client.create_client("dev-1", known_client_ids=set())
    assert info.value.unclean and "may have" in info.value.msg and "rate_limit_max_wait" in info.value.msg
    assert [c["method"] for c in h.calls] == ["POST", "GET"]


def test_a_create_refused_by_the_broker_waits_its_retry_after_and_repeats():
    h = walled([(503, {"detail": "broker down", "code": "broker_unavailable"}, {"Retry-After": "3"}),
                (201, {"device": dict(row("pub-9"), password="pw")})])
    assert h.client.create_client("dev-1", known_client_ids=set())[1] == "pw"
    assert [c["method"] for c in h.calls] == ["POST", "POST"] and h.sleeps == [3.0]


def test_pause_and_rotate_wait_out_a_503_window():
    h = walled([(503, {}, {"Retry-After": "2"}), (200, row(paused=True)),
                (503, {}, {"Retry-After": IN_40_S}), (200, {"password": "new"})])
    h.client.pause_client("pub-1")
    assert h.client.rotate_password("pub-1")[1] == "new"
    assert h.sleeps == [2.0, 38.0]


def test_429_with_retry_after_as_http_date():
    h = walled([(429, {}, {"Retry-After": IN_40_S}), (200, [])])
    h.client.list_clients()
    assert h.sleeps == [40.0] and "429 with Retry-After: %s" % IN_40_S in h.warnings[0]


def test_combined_ietf_ratelimit_header_is_counted_down():
    h = walled([(200, [], {"RateLimit": "limit=100, remaining=0, reset=9", "RateLimit-Policy": "100;w=3600"}), (200, [])])
    h.client.list_clients()
    assert h.client.rate_headers == {"RateLimit": "limit=100, remaining=0, reset=9", "RateLimit-Policy": "100;w=3600"}
    h.client.list_clients()
    assert h.sleeps == [9.0] and "RateLimit remaining is 0 until RateLimit reset" in h.warnings[0]


def test_429_names_the_combined_header_when_it_gives_the_reset():
    h = walled([(429, {}, {"RateLimit": '"hour";r=0;t=6'}), (200, [])])
    h.client.list_clients()
    assert h.sleeps == [6.0] and "429 with RateLimit reset: \"hour\";r=0;t=6 (no Retry-After)" in h.warnings[0]


def offset_page(rows_, offset, total):
    return {"results": rows_, "offset": offset, "limit": 2, "total": total}


def test_offset_list_that_lost_a_row_between_pages_is_read_again():
    """Page 1 of 5, then another party deletes pub-a: page 2 (offset 2) skips the live pub-c, the total drops to 4."""
    a, b, c, d, e = (row("pub-" + x, "dev-" + x) for x in "abcde")
    h = Harness([(200, offset_page([a, b], 0, 5)), (200, offset_page([d, e], 2, 4)),
                 (200, offset_page([b, c], 0, 4)), (200, offset_page([d, e], 2, 4))])
    assert [r["client_id"] for r in h.client.list_clients()] == ["pub-b", "pub-c", "pub-d", "pub-e"]
    assert len(h.calls) == 4
    assert "changed while it was read" in h.warnings[0] and "different totals (5, 4)" in h.warnings[0]


def test_a_list_that_drifts_twice_stops_before_any_write():
    a, b, d, e = (row("pub-" + x, "dev-" + x) for x in "abde")
    drifting = [(200, offset_page([a, b], 0, 5)), (200, offset_page([d, e], 2, 4))]
    h = Harness(drifting * 2)
    with pytest.raises(PortalError) as info:
        h.client.create_client("dev-c")
    err = info.value
    assert err.kind == "protocol" and "twice" in err.msg and "totals per page: 5, 4" in err.msg and "rows read: 4" in err.msg
    assert [c["method"] for c in h.calls] == ["GET"] * 4


def test_rows_with_both_ids_use_client_id_in_paths():
    h = Harness([(200, [row("pub-1", id=17), row("pub-2", "dev-2", id=18)]), (200, row("pub-1", id=17, paused=True)),
                 (200, [sub_row(subscriber_id="sub-1", id=5)]), (204, None)])
    clients = h.client.list_clients()
    assert [c["client_id"] for c in clients] == ["pub-1", "pub-2"] and list(clients[0]) == list(CLIENT_KEYS)
    assert h.client.pause_client("pub-1")["client_id"] == "pub-1"
    assert [s["id"] for s in h.client.list_subscribers()] == ["sub-1"]
    h.client.revoke_subscriber("sub-1")
    assert h.calls[1]["url"].endswith("/publishers/pub-1/pause") and h.calls[3]["url"].endswith("/subscriber-mqtt-passwords/sub-1")


def test_a_create_whose_window_does_not_fit_says_nothing_was_created():
    h = walled([(503, {}, {"Retry-After": "600"}), (200, [])], rate_limit_max_wait=60)
    with pytest.raises(PortalError) as info:
        h.client.create_client("dev-1", known_client_ids=set())
    err = info.value
    assert not err.unclean and "Nothing was created (checked by listing)" in err.msg and "rate_limit_max_wait" in err.msg
    assert [c["method"] for c in h.calls] == ["POST", "GET"]
