"""Request counters: without a token they are the totals over all tokens, including requests that had none."""
import requests

from emulator.app import API


def test_counters_without_token_are_totals_also_after_unauthenticated_requests(portal):
    # Counted first, under None (no or malformed bearer) and under an unknown token; both answered 401.
    assert requests.post(portal.url + API + "/publishers", json={"label": "x"}, timeout=30).status_code == 401
    assert portal.call("GET", "/publishers", token="isr_mqtt_rest_unknown").status_code == 401
    portal.create("counted")
    assert portal.call("GET", "/publishers").status_code == 200

    total = portal.control.counters()
    assert (total["total"], total["writes"]) == (4, 2)
    assert total["by_route"] == {"POST /api/v1/subscriber/publishers": 2, "GET /api/v1/subscriber/publishers": 2}
    mine = portal.control.counters(token=portal.token)
    assert (mine["total"], mine["writes"]) == (2, 1)
    assert portal.control.counters(token="isr_mqtt_rest_never_used") == {"total": 0, "by_route": {}, "writes": 0}

    portal.control.reset_counters()
    assert portal.control.counters()["total"] == 0
