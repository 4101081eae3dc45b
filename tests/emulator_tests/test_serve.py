"""serve.py as a real process: CLI, state file, seed curl commands, SQLite file contents, SIGTERM."""
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from support import Emulator

SERVE = Path(__file__).resolve().parent.parent / "emulator" / "serve.py"


def test_state_file_and_seeded_account(emulator):
    info = json.loads(emulator.state_file.read_text())
    assert set(info) == {"portal_url", "control_url", "account_id", "token", "pid"}
    assert info["portal_url"].startswith("http://127.0.0.1:") and info["control_url"] == info["portal_url"] + "/_emulator"
    assert info["token"].startswith("isr_mqtt_rest_") and info["pid"] == emulator.process.pid
    assert oct(emulator.state_file.stat().st_mode & 0o777) == oct(0o600)  # it holds the token (issue 24)
    output = emulator.log_file.read_text()
    assert info["portal_url"] in output and info["account_id"] in output and info["token"] in output
    response = requests.get(emulator.url + "/api/v1/subscriber/publishers", timeout=10,
                            headers={"Authorization": "Bearer " + emulator.token})
    assert response.status_code == 200 and response.json()["total"] == 0


def test_sigterm_shuts_down_cleanly(emulator):
    emulator.process.send_signal(signal.SIGTERM)
    assert emulator.process.wait(timeout=15) == 0


def test_runs_from_any_cwd_and_defaults_to_a_file_db(tmp_path):
    state = tmp_path / "state.json"
    proc = subprocess.Popen([sys.executable, str(SERVE), "--state-file", str(state)], cwd=str(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state.exists(), proc.stderr.read() if proc.poll() is not None else "no state file"
        assert (tmp_path / "emulator.sqlite").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.skipif(not shutil.which("curl"), reason="curl not installed")
def test_seed_curl_commands_work_verbatim(emulator):
    env = {"PORTAL_ORIGIN": emulator.url, "TOKEN": emulator.token, "PATH": "/usr/bin:/bin"}

    def curl(command):
        done = subprocess.run(["sh", "-c", command + ' -w "\\n%{http_code}"'], capture_output=True, text=True, env=env, timeout=30, check=False)
        body, dummy, status = done.stdout.rpartition("\n")
        return int(status), body

    status, body = curl('curl -sS -X POST "${PORTAL_ORIGIN}/api/v1/subscriber/publishers" -H "Authorization: Bearer ${TOKEN}" '
                        '-H "Content-Type: application/json" -d \'{"label":"site-alpha-sensor","allow_subscribe":true}\'')
    assert status == 201
    client_id = json.loads(body)["device"]["client_id"]
    env["CLIENT_ID"] = client_id
    base = 'curl -sS -X POST "${PORTAL_ORIGIN}/api/v1/subscriber/publishers/${CLIENT_ID}/%s" -H "Authorization: Bearer ${TOKEN}"'
    for action, key, value in (("pause", "paused", True), ("resume", "paused", False), ("rotate-credentials", "client_id", client_id)):
        status, body = curl(base % action)
        assert status == 200 and json.loads(body)[key] == value, body
    status, body = curl('curl -sS -X POST "${PORTAL_ORIGIN}/api/v1/subscriber/subscriber-mqtt-passwords" '
                        '-H "Authorization: Bearer ${TOKEN}" -H "Content-Type: application/json" '
                        '-d \'{"label":"automation","expires_in_days":30}\'')
    assert status == 201 and json.loads(body)["id"].startswith("sub-")
    assert curl('curl -sS -X DELETE "${PORTAL_ORIGIN}/api/v1/subscriber/publishers/${CLIENT_ID}" '
                '-H "Authorization: Bearer ${TOKEN}"') == (204, "")


def test_sqlite_file_holds_no_plaintext_secrets(tmp_path):
    secrets_file = tmp_path / "secrets.txt"
    emu = Emulator(tmp_path, db=tmp_path / "portal.sqlite", extra_args=["--record-secrets", str(secrets_file)]).start()
    try:
        session = requests.Session()
        session.headers["Authorization"] = "Bearer " + emu.token
        api = emu.url + "/api/v1/subscriber"
        client_id = session.post(api + "/publishers", json={"label": "a"}, timeout=10).json()["device"]["client_id"]
        session.post(api + "/publishers/%s/rotate-credentials" % client_id, timeout=10)
        session.post(api + "/subscriber-mqtt-passwords", json={"label": "g"}, timeout=10)
        emu.control.create_token(emu.account_id)
    finally:
        emu.stop()
    issued = secrets_file.read_text().split()
    assert len(issued) == 5 and emu.token in issued  # seed token, 2 client passwords, 1 subscriber, 1 token
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("portal.sqlite*"))
    dump = "\n".join(sqlite3.connect(str(tmp_path / "portal.sqlite")).iterdump())
    for secret in issued:
        assert secret.encode() not in blob and secret not in dump
    assert "pub-" in dump  # the file does hold the data


def test_cli_limits_reach_the_seeded_account(tmp_path):
    emu = Emulator(tmp_path, extra_args=["--max-clients", "1", "--hourly-budget", "2", "--no-mgmt-addon"]).start()
    try:
        headers = {"Authorization": "Bearer " + emu.token}
        for dummy in range(2):
            assert requests.get(emu.url + "/api/v1/subscriber/publishers", headers=headers, timeout=10).status_code == 403
        emu.control.set_account(emu.account_id, mgmt_addon=True)
        api = emu.url + "/api/v1/subscriber/publishers"
        assert requests.post(api, json={"label": "a"}, headers=headers, timeout=10).status_code == 429  # budget 2 spent
        fresh = {"Authorization": "Bearer " + emu.control.create_token(emu.account_id)}
        assert requests.post(api, json={"label": "a"}, headers=fresh, timeout=10).status_code == 201
        assert requests.post(api, json={"label": "b"}, headers=fresh, timeout=10).status_code == 409
    finally:
        emu.stop()


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
def test_tls_passthrough(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    emu = Emulator(tmp_path, extra_args=["--tls-cert", str(cert), "--tls-key", str(key)]).start()
    try:
        assert emu.url.startswith("https://127.0.0.1:")
        headers = {"Authorization": "Bearer " + emu.token}
        response = requests.get(emu.url + "/api/v1/subscriber/publishers", headers=headers, verify=str(cert), timeout=10)
        assert response.status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(emu.url + "/api/v1/subscriber/publishers", headers=headers, timeout=10)  # system CAs: untrusted
    finally:
        emu.stop()
