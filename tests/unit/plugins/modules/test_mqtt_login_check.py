"""mqtt_login_check in-process against tiny TCP peers that answer like a broker would (no Mosquitto needed).

The real-broker cases (a real login, publish, subscribe, wrong password, closed port) are in
tests/e2e/test_device_role.py and benchmarks/login_check.py.
"""
import json
import socket
import threading

import pytest
from ansible.module_utils import _internal
from ansible.module_utils.testing import patch_module_args

from ansible_collections.isr.mqtt.plugins.modules import mqtt_login_check

PASSWORD = "unit-secret-password-123"


class Peer(threading.Thread):
    """Accepts connections on 127.0.0.1; to each, after the first bytes arrive, sends `answer` (None: says nothing)."""

    def __init__(self, answer=None, close=False):
        super().__init__(daemon=True)
        self.answer, self.close = answer, close
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.start()

    def run(self):
        while True:
            try:
                conn, dummy = self.sock.accept()
            except OSError:
                return
            conn.recv(4096)
            if self.answer is not None:
                conn.sendall(self.answer)
            if self.close:
                conn.close()


def connack(reason):
    return bytes([0x20, 3, 0, reason, 0])   # MQTT v5 CONNACK: flags, reason code, no properties


@pytest.fixture
def run(capsys, monkeypatch):
    monkeypatch.setattr(_internal, "is_controller", False)

    def run_(**args):
        with patch_module_args(args):
            with pytest.raises(SystemExit) as exit_info:
                mqtt_login_check.main()
        out = capsys.readouterr().out
        assert PASSWORD not in out
        return exit_info.value.code != 0, json.loads(out)

    return run_


@pytest.mark.parametrize("reason,status", [(0, "ok"), (134, "bad_credentials"), (135, "bad_credentials"),
                                           (133, "not_authorized"), (138, "not_authorized"), (136, "unreachable"),
                                           (128, "error")])
def test_connack_reason_decides_the_status(run, reason, status):
    peer = Peer(connack(reason))
    failed, result = run(host="127.0.0.1", port=peer.port, username="u", password=PASSWORD, timeout=3, fail_on_error=False)
    assert not failed
    assert [(r["status"], r["reason_code"]) for r in result["results"]] == [(status, reason)]
    assert result["counts"] == {status: 1}


def test_failures_fail_the_task_by_default_and_name_the_credential(run):
    peer = Peer(connack(135))
    failed, result = run(host="127.0.0.1", port=peer.port, timeout=3,
                         credentials=[{"username": "u1", "password": PASSWORD, "label": "sensor-1"}])
    assert failed and result["failed_labels"] == ["sensor-1"]
    assert "sensor-1: bad_credentials" in result["msg"]


def test_closed_port_is_unreachable(run):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    failed, result = run(host="127.0.0.1", port=port, username="u", password=PASSWORD, fail_on_error=False)
    assert result["results"][0]["status"] == "unreachable"
    assert "Connection refused" in result["results"][0]["msg"]


def test_silent_broker_is_unreachable_after_the_timeout(run):
    peer = Peer(None)
    failed, result = run(host="127.0.0.1", port=peer.port, username="u", password=PASSWORD, timeout=0.5, fail_on_error=False)
    assert result["results"][0]["status"] == "unreachable"
    assert "within 0.5s" in result["results"][0]["msg"]


def test_tls_against_a_plain_port_is_a_tls_error(run):
    peer = Peer(b"not tls at all\n" * 10, close=True)
    failed, result = run(host="127.0.0.1", port=peer.port, tls=True, username="u", password=PASSWORD, timeout=3,
                         fail_on_error=False)
    assert result["results"][0]["status"] == "tls_error", result


def test_many_credentials_keep_their_order(run):
    peer = Peer(connack(0))
    creds = [{"username": "u%d" % i, "password": PASSWORD, "label": "d%d" % i} for i in range(30)]
    failed, result = run(host="127.0.0.1", port=peer.port, credentials=creds, parallel=4, timeout=3)
    assert not failed
    assert [r["label"] for r in result["results"]] == ["d%d" % i for i in range(30)]
    assert all(r["client_id"].startswith("isr-check-") for r in result["results"])


@pytest.mark.parametrize("args,words", [
    (dict(action="publish", credentials=[{"username": "u", "password": PASSWORD}]), "credentials[0].topic is required"),
    (dict(action="publish", credentials=[{"username": "u", "password": PASSWORD, "topic": "a/#"}]), "has a wildcard"),
    (dict(credentials=[{"username": "", "password": PASSWORD}]), "credentials[0].username is empty"),
    (dict(credentials=[{"username": "u", "password": ""}]), "credentials[0].password is empty"),
    (dict(username="u", password=PASSWORD, parallel=0), "parallel must be between 1 and 256"),
    (dict(username="u", password=PASSWORD, timeout=0), "timeout must be more than 0"),
])
def test_bad_input_fails_before_any_connection(run, args, words):
    failed, result = run(host="127.0.0.1", port=1, **args)
    assert failed and words in result["msg"] and result["msg"].startswith("nothing was checked")


def test_check_mode_publishes_nothing(run):
    peer = Peer(connack(0))
    failed, result = run(host="127.0.0.1", port=peer.port, action="publish", username="u", password=PASSWORD,
                         topic="a/b", _ansible_check_mode=True, timeout=3)
    assert not failed and "check mode: nothing published" in result["results"][0]["msg"]
