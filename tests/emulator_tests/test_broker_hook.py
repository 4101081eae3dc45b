"""The broker hook: a portal write succeeds only when the broker took it (fake broker in-process; real one if installed)."""
import shutil

import pytest
import requests

from support import Emulator
from emulator.broker import BrokerError


class FakeBroker:
    """Records what the portal tells the broker; refuses everything while `down` is set."""

    def __init__(self):
        self.calls = []
        self.down = False

    def __getattr__(self, name):
        def call(**kwargs):
            if self.down:
                raise BrokerError("connection refused")
            self.calls.append((name, kwargs.get("username")))
        return call


def test_writes_reach_the_broker(make_portal):
    broker = FakeBroker()
    portal = make_portal(broker=broker)
    device = portal.create()["device"]
    client_id = device["client_id"]
    for path in ("/pause", "/pause", "/resume", "/rotate-credentials"):
        assert portal.call("POST", "/publishers/" + client_id + path).status_code == 200
    portal.call("PATCH", "/publishers/" + client_id, json={"allow_subscribe": True})
    portal.call("DELETE", "/publishers/" + client_id)
    sub = portal.call("POST", "/subscriber-mqtt-passwords", json={"label": "g"}).json()
    portal.call("DELETE", "/subscriber-mqtt-passwords/" + sub["id"])
    assert [name for name, dummy in broker.calls] == [
        "add_client", "set_enabled", "set_enabled", "set_password", "set_permissions", "remove_client",  # one pause: no-op
        "add_subscriber", "remove_subscriber"]


def test_broker_refusal_is_503_and_changes_nothing(make_portal):
    broker = FakeBroker()
    portal = make_portal(broker=broker)
    device = portal.create("kept")["device"]
    broker.down = True
    for method, path, body in (("POST", "/publishers", {"label": "new"}), ("POST", "/publishers/%s/pause", None),
                               ("POST", "/publishers/%s/rotate-credentials", None), ("DELETE", "/publishers/%s", None),
                               ("POST", "/subscriber-mqtt-passwords", {"label": "g"})):
        response = portal.call(method, path.replace("%s", device["client_id"]), json=body)
        assert response.status_code == 503, path
        assert response.json()["code"] == "broker_unavailable"
    broker.down = False
    assert portal.call("GET", "/publishers/" + device["client_id"]).json()["paused"] is False
    assert portal.control.verify(device["username"], device["password"])["ok"] is True  # rotation rolled back
    assert portal.control.state() == {"clients": 1, "subscribers": 0, "labels": {"kept": 1}}


@pytest.mark.skipif(not shutil.which("mosquitto") and not shutil.which("/usr/sbin/mosquitto"), reason="mosquitto not installed")
def test_serve_with_real_broker(tmp_path):
    emu = Emulator(tmp_path, broker=True).start(timeout=60)
    try:
        assert emu.info["broker_host"] == "127.0.0.1" and emu.info["broker_port"] > 0
        headers = {"Authorization": "Bearer " + emu.token}
        api = emu.url + "/api/v1/subscriber/publishers"
        created = requests.post(api, json={"label": "real"}, headers=headers, timeout=30)
        assert created.status_code == 201, created.text
        client_id = created.json()["device"]["client_id"]
        assert requests.post(api + "/%s/pause" % client_id, headers=headers, timeout=30).status_code == 200
        assert requests.delete(api + "/" + client_id, headers=headers, timeout=30).status_code == 204
    finally:
        emu.stop()
    assert emu.process.returncode == 0
