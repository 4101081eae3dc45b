"""Rate limit, counters and every injected fault kind, over real HTTP."""
import threading
import time

import pytest
import requests


def test_rate_limit_headers_and_429(make_portal):
    portal = make_portal(hourly_budget=3, window_seconds=2)
    remaining = []
    for dummy in range(3):
        response = portal.call("GET", "/publishers")
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert 0 <= int(response.headers["X-RateLimit-Reset"]) <= 2
        remaining.append(response.headers["X-RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    over = portal.call("GET", "/publishers")
    assert over.status_code == 429 and over.json()["code"] == "rate_limited"
    assert 1 <= int(over.headers["Retry-After"]) <= 2 and over.headers["X-RateLimit-Remaining"] == "0"
    time.sleep(int(over.headers["Retry-After"]) + 0.1)  # fixed window: a new one opens
    again = portal.call("GET", "/publishers")
    assert again.status_code == 200 and again.headers["X-RateLimit-Remaining"] == "2"


def test_budget_is_per_token(make_portal):
    portal = make_portal(hourly_budget=1)
    second = portal.control.create_token(portal.account_id)
    assert portal.call("GET", "/publishers").status_code == 200
    assert portal.call("GET", "/publishers").status_code == 429
    assert portal.call("GET", "/publishers", token=second).status_code == 200


def test_errors_carry_rate_limit_headers(portal):
    for response in (portal.call("GET", "/publishers/pub-000000000000"), portal.call("POST", "/publishers", json={})):
        assert response.status_code in (404, 422)
        assert "X-RateLimit-Remaining" in response.headers


def test_counters_by_token_and_route_template(portal):
    other = portal.as_account()
    client_id = portal.create()["device"]["client_id"]
    portal.call("POST", "/publishers/%s/pause" % client_id)
    portal.call("GET", "/publishers")
    other.call("GET", "/publishers")
    portal.control.state()  # control requests are not counted
    mine = portal.control.counters(token=portal.token)
    assert mine == {"total": 3, "writes": 2, "by_route": {
        "POST /api/v1/subscriber/publishers": 1, "GET /api/v1/subscriber/publishers": 1,
        "POST /api/v1/subscriber/publishers/{client_id}/pause": 1}}
    assert portal.control.counters()["total"] == 4
    portal.control.reset_counters()
    assert portal.control.counters()["total"] == 0


def test_burst_429(portal):
    portal.control.set_faults(burst_429=2)
    answers = [portal.call("GET", "/publishers") for dummy in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "1"


def test_error_rate(portal):
    portal.control.set_faults(error_rate=1.0, error_statuses=[502])
    response = portal.call("POST", "/publishers", json={"label": "x"})
    assert response.status_code == 502
    portal.control.set_faults(error_rate=0.5, error_statuses=[500, 503])
    statuses = {portal.call("GET", "/publishers").status_code for dummy in range(60)}
    assert statuses == {200, 500, 503}
    portal.control.set_faults()
    assert portal.control.state()["clients"] == 0  # answered before doing anything


def test_latency_overlaps_between_concurrent_requests(portal):
    # Order of events, not a time limit: all 8 requests are inside the emulator (counted, then delayed)
    # before the first answer leaves it, so the latency delays them side by side, not one after the other.
    portal.control.set_faults(latency_s=3)
    answers = []

    def get():
        answers.append(requests.get(portal.url + "/api/v1/subscriber/publishers", timeout=60,
                                    headers={"Authorization": "Bearer " + portal.token}).status_code)

    threads = [threading.Thread(target=get) for dummy in range(8)]
    for thread in threads:
        thread.start()
    while portal.control.counters()["total"] < 8 and not answers:
        time.sleep(0.05)
    answered_while_all_inside = len(answers)
    for thread in threads:
        thread.join()
    assert answers == [200] * 8
    assert answered_while_all_inside == 0


def test_drop_after_create_commits_then_drops_the_connection(portal):
    portal.control.set_faults(drop_after_create=1)
    with pytest.raises(requests.ConnectionError):
        portal.call("POST", "/publishers", json={"label": "lost"})
    rows = portal.call("GET", "/publishers").json()["items"]
    assert [row["label"] for row in rows] == ["lost"]  # created although the client never heard
    assert portal.call("POST", "/publishers", json={"label": "next"}).status_code == 201


def test_fail_after_creates(portal):
    portal.control.set_faults(fail_after_creates=2)
    client_id = portal.create("a")["device"]["client_id"]
    assert portal.call("POST", "/publishers/%s/pause" % client_id).status_code == 200  # not a create
    portal.create("b")
    assert portal.call("POST", "/publishers", json={"label": "c"}).status_code == 503
    assert portal.call("DELETE", "/publishers/" + client_id).status_code == 503
    assert portal.call("GET", "/publishers").json()["total"] == 2  # reads still work
    portal.control.set_faults()
    assert portal.call("DELETE", "/publishers/" + client_id).status_code == 204


def test_unavailable_window_opens_with_the_next_request(portal):
    portal.control.set_faults(unavailable_s=30)
    first = portal.call("GET", "/publishers")
    assert first.status_code == 503 and first.json()["code"] == "unavailable"
    assert 29 <= int(first.headers["Retry-After"]) <= 30 and "X-RateLimit-Remaining" in first.headers
    assert portal.call("POST", "/publishers", json={"label": "a"}).status_code == 503
    portal.control.set_faults()
    assert portal.call("GET", "/publishers").json()["total"] == 0  # nothing was created in the window


def test_unavailable_after_create_is_done_then_answered_503(portal):
    portal.control.set_faults(unavailable_after_create=1)
    answer = portal.call("POST", "/publishers", json={"label": "done"})
    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) >= 1
    time.sleep(1.1)  # the window it opened
    assert [row["label"] for row in portal.call("GET", "/publishers").json()["items"]] == ["done"]


def test_maintenance_dialect_sends_ietf_headers_http_dates_and_windows(portal):
    import email.utils
    portal.control.set_dialect("maintenance")
    statuses = []
    for dummy in range(15):
        response = portal.call("GET", "/publishers")
        statuses.append(response.status_code)
        assert "X-RateLimit-Remaining" not in response.headers
        assert response.headers["RateLimit"].startswith("limit=5000, remaining=")
        assert response.headers["RateLimit-Policy"] == "5000;w=3600"
    assert statuses == [200] * 14 + [503]
    assert email.utils.parsedate_to_datetime(response.headers["Retry-After"]).tzinfo is not None


def test_drift_dialects_lose_a_row_between_pages(portal):
    for label in "abcde":
        portal.create(label)

    def listing():
        first = portal.call("GET", "/publishers", params={"offset": 0, "limit": 2}).json()
        second = portal.call("GET", "/publishers", params={"offset": 2, "limit": 2}).json()
        return [first["total"], second["total"]], [r["label"] for r in first["results"] + second["results"]]

    portal.control.set_dialect("drift")
    assert listing() == ([5, 4], ["a", "b", "d", "e"])  # c is live but skipped
    assert listing() == ([5, 5], ["a", "b", "c", "d"])  # every other listing is whole
    portal.control.set_dialect("drift_always")
    assert listing() == ([5, 4], ["a", "b", "d", "e"])
    assert listing() == ([5, 4], ["a", "b", "d", "e"])


def test_both_ids_dialect_adds_an_integer_id(portal):
    client_id = portal.create("a")["device"]["client_id"]
    portal.control.set_dialect("both_ids")
    row = portal.call("GET", "/publishers").json()["items"][0]
    assert row["client_id"] == client_id and row["id"] == int(client_id[4:], 16)
    sub = portal.call("POST", "/subscriber-mqtt-passwords", json={"label": "g"}).json()
    assert sub["subscriber_id"].startswith("sub-") and isinstance(sub["id"], int)
    assert portal.call("DELETE", "/subscriber-mqtt-passwords/%s" % sub["id"]).status_code == 404
    assert portal.call("DELETE", "/subscriber-mqtt-passwords/" + sub["subscriber_id"]).status_code == 204
