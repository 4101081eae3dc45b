"""The emulator with --broker over HTTP: every portal write is felt by real MQTT clients at once."""
import os
import signal
from pathlib import Path

import pytest
import requests


class Api:
    def __init__(self, emu):
        self.base = emu.url + "/api/v1/subscriber"
        self.session = requests.Session()
        self.session.headers["Authorization"] = "Bearer " + emu.token

    def call(self, method, path, expect, **kwargs):
        response = self.session.request(method, self.base + path, timeout=30, **kwargs)
        assert response.status_code == expect, "%s %s -> %s %s" % (method, path, response.status_code, response.text)
        return response.json() if response.content else None


@pytest.fixture
def api(portal):
    return Api(portal)


@pytest.fixture
def broker_at(portal):
    assert "broker_port" in portal.info, "the emulator with --broker must write broker_host/broker_port to its state file"
    return portal.info["broker_host"], portal.info["broker_port"]


def create_device(api, label="dev", **fields):
    body = api.call("POST", "/publishers", 201, json=dict(label=label, **fields))
    return body["device"]["client_id"], body["device"]["password"]


def mosquitto_pid(emulator_pid):
    """The mosquitto child of the emulator process (found via /proc, so serve.py need not publish it)."""
    for task in Path("/proc/%d/task" % emulator_pid).iterdir():
        for child in (task / "children").read_text().split():
            if Path("/proc/%s/comm" % child).read_text().strip() == "mosquitto":
                return int(child)
    raise AssertionError("no mosquitto process under the emulator (pid %s)" % emulator_pid)


def test_client_lifecycle_is_enforced_by_the_broker(api, broker_at, portal, mqtt):
    host, port = broker_at
    client_id, password = create_device(api)
    assert mqtt.connect(host, port, client_id, password, client_id) == mqtt.OK

    live = mqtt.session(host, port, client_id, password, client_id)
    api.call("POST", "/publishers/%s/pause" % client_id, 200)
    assert live.disconnected.wait(5), "pause must end the device's live session"
    assert mqtt.connect(host, port, client_id, password, client_id) in mqtt.REFUSED

    api.call("POST", "/publishers/%s/resume" % client_id, 200)
    assert mqtt.connect(host, port, client_id, password, client_id) == mqtt.OK

    live = mqtt.session(host, port, client_id, password, client_id)
    new = api.call("POST", "/publishers/%s/rotate-credentials" % client_id, 200)["password"]
    assert live.disconnected.wait(5), "rotation must end sessions that used the old password"
    assert mqtt.connect(host, port, client_id, password, client_id) in mqtt.REFUSED
    assert mqtt.connect(host, port, client_id, new, client_id) == mqtt.OK

    api.call("DELETE", "/publishers/%s" % client_id, 204)
    assert mqtt.connect(host, port, client_id, new, client_id) in mqtt.REFUSED


def test_subscriber_receives_device_messages_and_cannot_publish(api, broker_at, portal, mqtt):
    host, port = broker_at
    account = portal.account_id
    client_id, password = create_device(api)
    sub = api.call("POST", "/subscriber-mqtt-passwords", 201, json={"label": "grafana"})
    listener = mqtt.session(host, port, sub["username"], sub["password"])
    assert listener.rc == mqtt.OK
    assert listener.subscribe(sub["subscribe_filter"]) == 1
    assert sub["subscribe_filter"] == "%s/#" % account

    device = mqtt.session(host, port, client_id, password, client_id)
    assert mqtt.publish_and_check(device, listener, "%s/%s/telemetry/temp" % (account, client_id)) == (0, True)
    assert mqtt.publish_and_check(listener, listener, "%s/%s/telemetry/temp" % (account, client_id)) == (mqtt.NOT_AUTHORIZED, False)

    api.call("DELETE", "/subscriber-mqtt-passwords/%s" % sub["id"], 204)
    assert mqtt.connect(host, port, sub["username"], sub["password"]) in mqtt.REFUSED


def test_allow_flags_reach_the_broker(api, broker_at, portal, mqtt):
    host, port = broker_at
    client_id, password = create_device(api, allow_publish=False, allow_subscribe=True)
    topic = "%s/%s/telemetry/t" % (portal.account_id, client_id)
    device = mqtt.session(host, port, client_id, password, client_id)
    assert device.subscribe("%s/%s/#" % (portal.account_id, client_id)) == 1
    assert device.publish(topic, b"x") == mqtt.NOT_AUTHORIZED

    api.call("PATCH", "/publishers/%s" % client_id, 200, json={"allow_publish": True, "allow_subscribe": False})
    assert device.publish(topic, b"x") == 0
    assert device.subscribe("%s/%s/cmd/#" % (portal.account_id, client_id)) == mqtt.NOT_AUTHORIZED


def test_broker_down_answers_503_and_changes_nothing(api, broker_at, portal):
    client_id, password = create_device(api)
    os.kill(mosquitto_pid(portal.process.pid), signal.SIGKILL)

    for method, path, body in (("POST", "/publishers", {"label": "never"}),
                               ("POST", "/publishers/%s/pause" % client_id, None),
                               ("POST", "/publishers/%s/rotate-credentials" % client_id, None),
                               ("DELETE", "/publishers/%s" % client_id, None),
                               ("POST", "/subscriber-mqtt-passwords", {"label": "never"})):
        answer = api.call(method, path, 503, json=body)
        assert answer["code"] == "broker_unavailable"

    rows = api.call("GET", "/publishers", 200)["items"]
    assert [(r["client_id"], r["paused"]) for r in rows] == [(client_id, False)]
    assert api.call("GET", "/subscriber-mqtt-passwords", 200)["items"] == []
    assert portal.control.verify(client_id, password)["ok"], "the failed rotation must keep the old password"


def test_expired_subscriber_is_refused_and_can_still_be_revoked(api, broker_at, portal, mqtt):
    host, port = broker_at
    body = api.call("POST", "/subscriber-mqtt-passwords", 201, json={"label": "short", "expires_in_days": 1})
    assert mqtt.connect(host, port, body["username"], body["password"]) == mqtt.OK

    portal.control.advance_clock(2)
    assert mqtt.connect(host, port, body["username"], body["password"]) in mqtt.REFUSED

    # The broker only disabled the expired login, so the revoke finds it and succeeds.
    api.call("DELETE", "/subscriber-mqtt-passwords/%s" % body["id"], 204)
    assert mqtt.connect(host, port, body["username"], body["password"]) in mqtt.REFUSED
