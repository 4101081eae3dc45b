"""The Mgmt REST API of the emulator over real HTTP: every route, status code and shape of docs/api-contract.md."""
import re

import pytest

from emulator.app import API

CLIENT_FIELDS = {"client_id", "label", "username", "topic", "paused", "allow_publish", "allow_subscribe",
                 "history_topic_prefix", "created_at", "rotated_at"}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_create_returns_row_password_and_topic(portal):
    body = portal.create("site-alpha-sensor", allow_subscribe=True)
    device = body["device"]
    assert set(device) == CLIENT_FIELDS | {"password"}
    assert re.match(r"^pub-[0-9a-f]{12}$", device["client_id"])
    assert device["username"] == device["client_id"]
    assert device["allow_publish"] is True and device["allow_subscribe"] is True and device["paused"] is False
    prefix = "%s/%s" % (portal.account_id, device["client_id"])
    assert device["history_topic_prefix"] == prefix and device["topic"] == prefix + "/#"
    assert body["publish_topic"] == prefix + "/"
    assert ISO.match(device["created_at"]) and ISO.match(device["rotated_at"])
    assert len(device["password"]) >= 24
    assert portal.control.verify(device["username"], device["password"]) == {"ok": True, "reason": "ok"}


def test_defaults_and_duplicate_labels(portal):
    first = portal.create("same")["device"]
    second = portal.create("same")["device"]
    assert first["client_id"] != second["client_id"]
    assert first["allow_publish"] is True and first["allow_subscribe"] is False
    assert portal.control.state()["labels"] == {"same": 2}


def test_get_list_and_password_never_in_rows(portal):
    device = portal.create("one")["device"]
    got = portal.call("GET", "/publishers/" + device["client_id"])
    assert got.status_code == 200
    assert got.json() == {k: v for k, v in device.items() if k != "password"}
    listed_response = portal.call("GET", "/publishers")
    listed = listed_response.json()
    assert listed["items"] == [got.json()]
    assert (listed["page"], listed["page_size"], listed["total"], listed["next"]) == (1, 100, 1, None)
    assert device["password"] not in got.text + listed_response.text


@pytest.mark.parametrize("method,path", [
    ("GET", "/publishers/pub-000000000000"), ("PATCH", "/publishers/pub-000000000000"),
    ("DELETE", "/publishers/pub-000000000000"), ("POST", "/publishers/pub-000000000000/pause"),
    ("POST", "/publishers/pub-000000000000/resume"), ("POST", "/publishers/pub-000000000000/rotate-credentials"),
    ("GET", "/publishers/live"), ("GET", "/subscriber-mqtt-passwords/sub-000000000000"),
    ("DELETE", "/subscriber-mqtt-passwords/sub-000000000000")])
def test_unknown_ids_are_404(portal, method, path):
    response = portal.call(method, path, json={} if method == "PATCH" else None)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_pause_resume_are_idempotent(portal):
    client_id = portal.create()["device"]["client_id"]
    for action, paused in (("pause", True), ("pause", True), ("resume", False), ("resume", False)):
        response = portal.call("POST", "/publishers/%s/%s" % (client_id, action))  # no body, no Content-Type
        assert response.status_code == 200 and response.json()["paused"] is paused
    assert portal.call("GET", "/publishers/" + client_id).json()["paused"] is False


def test_paused_client_cannot_log_in(portal):
    device = portal.create()["device"]
    portal.call("POST", "/publishers/%s/pause" % device["client_id"])
    assert portal.control.verify(device["username"], device["password"]) == {"ok": False, "reason": "client is paused"}


def test_rotate_replaces_password_at_once(portal):
    device = portal.create()["device"]
    response = portal.call("POST", "/publishers/%s/rotate-credentials" % device["client_id"])
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"client_id", "username", "password", "rotated_at"}
    assert body["password"] != device["password"]
    assert portal.control.verify(device["username"], device["password"])["ok"] is False
    assert portal.control.verify(device["username"], body["password"])["ok"] is True


def test_delete_then_404(portal):
    client_id = portal.create()["device"]["client_id"]
    first = portal.call("DELETE", "/publishers/" + client_id)
    assert first.status_code == 204 and first.content == b""
    assert portal.call("DELETE", "/publishers/" + client_id).status_code == 404
    assert portal.call("GET", "/publishers/" + client_id).status_code == 404


def test_patch_updates_and_can_be_switched_off(portal):
    client_id = portal.create()["device"]["client_id"]
    response = portal.call("PATCH", "/publishers/" + client_id, json={"allow_subscribe": True, "allow_publish": False})
    assert response.status_code == 200
    assert (response.json()["allow_publish"], response.json()["allow_subscribe"]) == (False, True)
    portal.control.set_account(portal.account_id, patch_supported=False)
    refused = portal.call("PATCH", "/publishers/" + client_id, json={"allow_publish": True})
    assert refused.status_code == 405
    assert portal.call("GET", "/publishers/" + client_id).json()["allow_publish"] is False


@pytest.mark.parametrize("body", [
    {}, {"label": ""}, {"label": "x" * 65}, {"label": "bad\nlabel"}, {"label": "tab\there"}, {"label": 5},
    {"label": "ok", "allow_subscribe": "yes"}, {"label": "ok", "allow_publish": 1}, {"label": "ok", "unknown": 1},
    {"label": None}])
def test_invalid_client_bodies_are_422(portal, body):
    response = portal.call("POST", "/publishers", json=body)
    assert response.status_code == 422, body
    assert isinstance(response.json()["detail"], list)
    assert portal.control.state()["clients"] == 0


def test_label_of_64_characters_is_fine(portal):
    assert portal.create("é" * 64)["device"]["label"] == "é" * 64


@pytest.mark.parametrize("query", ["page=0", "page_size=0", "page_size=1001", "page=x"])
def test_invalid_list_query_is_422(portal, query):
    assert portal.call("GET", "/publishers?" + query).status_code == 422


def test_pagination_follows_next(portal):
    created = [portal.create("dev-%03d" % i)["device"]["client_id"] for i in range(250)]
    seen, url, pages = [], API + "/publishers?page_size=100", 0
    while url:
        page = portal.session.get(portal.url + url, timeout=30).json()
        assert page["total"] == 250 and page["page_size"] == 100
        seen += [row["client_id"] for row in page["items"]]
        url, pages = page["next"], pages + 1
    assert pages == 3 and seen == created
    beyond = portal.call("GET", "/publishers?page=4&page_size=100").json()
    assert beyond["items"] == [] and beyond["next"] is None
    assert len(portal.call("GET", "/publishers?page_size=1000").json()["items"]) == 250


def test_client_plan_limit_is_409(make_portal):
    portal = make_portal(max_clients=2)
    portal.create()
    portal.create()
    response = portal.call("POST", "/publishers", json={"label": "third"})
    assert response.status_code == 409
    assert response.json()["code"] == "plan_limit" and (response.json()["limit"], response.json()["active"]) == (2, 2)


def test_accounts_are_isolated(portal):
    client_id = portal.create()["device"]["client_id"]
    other = portal.as_account()
    assert other.call("GET", "/publishers/" + client_id).status_code == 404
    assert other.call("GET", "/publishers").json()["total"] == 0


# -- auth and add-on ------------------------------------------------------------------------------
@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic isr_mqtt_rest_x", "Bearer isr_mqtt_rest_unknown"])
def test_bad_tokens_are_401(portal, header):
    headers = {"Authorization": header} if header else {}
    response = portal.session.request("GET", portal.url + API + "/publishers", timeout=10,
                                      headers=headers if header else {"Authorization": None})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["code"] == "token_invalid"


def test_revoked_and_expired_tokens_are_401(portal):
    token = portal.control.create_token(portal.account_id, expires_in_days=1)
    assert portal.call("GET", "/publishers", token=token).status_code == 200
    portal.control.advance_clock(2)
    assert portal.call("GET", "/publishers", token=token).status_code == 401
    portal.control.revoke_token(portal.token)
    assert portal.call("GET", "/publishers").status_code == 401


def test_account_without_addon_is_403(portal):
    portal.control.set_account(portal.account_id, mgmt_addon=False)
    response = portal.call("GET", "/publishers")
    assert response.status_code == 403 and response.json()["code"] == "addon_required"


def test_docs_and_openapi_need_no_token(portal):
    assert portal.call("GET", "/docs", token="").status_code == 200
    schema = portal.call("GET", "/openapi.json", token="").json()
    assert "/api/v1/subscriber/publishers/{client_id}/rotate-credentials" in schema["paths"]
    assert not any(path.startswith("/_emulator") for path in schema["paths"])


# -- read-only subscribers ------------------------------------------------------------------------
def test_subscriber_lifecycle(portal):
    response = portal.call("POST", "/subscriber-mqtt-passwords", json={"label": "grafana", "expires_in_days": 30})
    assert response.status_code == 201
    sub = response.json()
    assert re.match(r"^sub-[0-9a-f]{12}$", sub["id"]) and sub["username"] == sub["id"]
    assert sub["subscribe_filter"] == portal.account_id + "/#" and sub["expired"] is False
    assert portal.control.verify(sub["username"], sub["password"])["ok"] is True
    row = {k: v for k, v in sub.items() if k != "password"}
    assert portal.call("GET", "/subscriber-mqtt-passwords/" + sub["id"]).json() == row
    assert portal.call("GET", "/subscriber-mqtt-passwords").json()["items"] == [row]
    assert portal.call("DELETE", "/subscriber-mqtt-passwords/" + sub["id"]).status_code == 204
    assert portal.call("DELETE", "/subscriber-mqtt-passwords/" + sub["id"]).status_code == 404
    assert portal.call("GET", "/subscriber-mqtt-passwords").json()["items"] == []
    assert portal.control.verify(sub["username"], sub["password"])["ok"] is False


def test_subscriber_defaults_and_never_expiring(portal):
    default = portal.call("POST", "/subscriber-mqtt-passwords", json={"label": "a"}).json()
    never = portal.call("POST", "/subscriber-mqtt-passwords", json={"label": "b", "expires_in_days": None}).json()
    assert never["expires_at"] is None
    assert default["expires_at"][:10] > default["created_at"][:10]


@pytest.mark.parametrize("body", [{"label": "x", "expires_in_days": 0}, {"label": "x", "expires_in_days": 3651},
                                  {"label": "x", "expires_in_days": "30"}, {"label": "x", "expires_in_days": 1.5},
                                  {"expires_in_days": 30}, {"label": ""}, {"label": "x" * 65}])
def test_invalid_subscriber_bodies_are_422(portal, body):
    assert portal.call("POST", "/subscriber-mqtt-passwords", json=body).status_code == 422


def test_expiry_follows_the_emulator_clock_and_frees_the_plan(make_portal):
    portal = make_portal(max_subscribers=2)
    short = portal.call("POST", "/subscriber-mqtt-passwords", json={"label": "short", "expires_in_days": 1}).json()
    portal.call("POST", "/subscriber-mqtt-passwords", json={"label": "long", "expires_in_days": 3650})
    full = portal.call("POST", "/subscriber-mqtt-passwords", json={"label": "third"})
    assert full.status_code == 409
    assert full.json()["code"] == "plan_limit" and (full.json()["limit"], full.json()["active"]) == (2, 2)
    portal.control.advance_clock(1.5)
    listed = {row["label"]: row["expired"] for row in portal.call("GET", "/subscriber-mqtt-passwords").json()["items"]}
    assert listed == {"short": True, "long": False}  # expired entries stay listed
    assert portal.control.verify(short["username"], short["password"]) == {"ok": False, "reason": "subscriber password expired"}
    assert portal.call("POST", "/subscriber-mqtt-passwords", json={"label": "third"}).status_code == 201


def test_zero_subscribers_plan_rejects_every_create(make_portal):
    portal = make_portal(max_subscribers=0)
    response = portal.call("POST", "/subscriber-mqtt-passwords", json={"label": "x"})
    assert response.status_code == 409 and response.json()["limit"] == 0


@pytest.mark.parametrize("method,path,allow", [
    ("PUT", "/publishers", "GET, POST"), ("POST", "/publishers/pub-000000000000", "DELETE, GET, PATCH"),
    ("PUT", "/subscriber-mqtt-passwords/sub-000000000000", "DELETE, GET")])
def test_wrong_method_is_405_listing_all_methods(portal, method, path, allow):
    response = portal.call(method, path)
    assert response.status_code == 405 and response.headers["Allow"] == allow


def test_json_integral_float_is_an_integer(portal):
    response = portal.call("POST", "/subscriber-mqtt-passwords", json={"label": "x", "expires_in_days": 7.0})
    assert response.status_code == 201
