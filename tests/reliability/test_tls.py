"""TLS: the emulator over HTTPS with a self-signed certificate (serve.py --tls-cert/--tls-key).

validate_certs: true (the default) fails with a message about the certificate; ca_path to the certificate
works; validate_certs: false works and warns. One ansible-playbook run covers every case.
"""
import shutil
import subprocess

import pytest

from support import Emulator

PLAYBOOK = """
- name: TLS cases
  hosts: localhost
  gather_facts: false
  connection: local
  module_defaults:
    group/isr.mqtt.portal:
      portal_url: "{url}"
      api_token: "{{{{ lookup('ansible.builtin.env', 'ISR_PORTAL_TOKEN') }}}}"
  tasks:
    - name: Default validate_certs against a self-signed certificate
      isr.mqtt.mqtt_client_info:
      register: default_verify
      ignore_errors: true

    - name: validate_certs true, CA bundle of another certificate
      isr.mqtt.mqtt_client_info:
        validate_certs: true
        ca_path: "{other}"
      register: wrong_ca
      ignore_errors: true

    - name: A write refused for the same reason (nothing may reach the portal)
      isr.mqtt.mqtt_client:
        label: tls-refused
      register: write_refused
      ignore_errors: true
      no_log: true

    - name: ca_path to the portal's certificate
      isr.mqtt.mqtt_client_info:
        validate_certs: true
        ca_path: "{cert}"
      register: with_ca

    - name: validate_certs false
      isr.mqtt.mqtt_client_info:
        validate_certs: false
      register: no_verify

    - name: Check the results
      ansible.builtin.assert:
        that:
          - default_verify is failed
          - "'certificate' in default_verify.msg | lower"
          - "'ca_path' in default_verify.msg"
          - default_verify.error.kind == 'tls'
          - wrong_ca is failed
          - "'certificate' in wrong_ca.msg | lower"
          - write_refused is failed
          - with_ca is succeeded
          - no_verify is succeeded
          - no_verify.warnings | default([]) | select('search', 'validate_certs') | list | length > 0
"""


def make_cert(directory, name, openssl):
    cert, key = directory / ("%s.pem" % name), directory / ("%s.key" % name)
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def tls_emulator(tmp_path):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI missing")
    cert, key = make_cert(tmp_path, "portal", openssl)
    other, dummy = make_cert(tmp_path, "other", openssl)
    emu = Emulator(tmp_path, extra_args=["--tls-cert", str(cert), "--tls-key", str(key)]).start()
    yield emu, cert, other
    emu.stop()


def test_tls_self_signed(tls_emulator, tmp_path, run_playbook):
    emu, cert, other = tls_emulator
    assert emu.url.startswith("https://"), "serve.py --tls-cert did not serve HTTPS"
    from emulator.control import EmulatorControl
    control = EmulatorControl(emu.info["control_url"])
    control.session.verify = str(cert)
    control.session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override verify
    playbook = tmp_path / "tls.yml"
    playbook.write_text(PLAYBOOK.format(url=emu.url, cert=cert, other=other))
    # The environment keeps REQUESTS_CA_BUNDLE (set on many systems, here too): ca_path must win over it.
    result = run_playbook(playbook, env={"ISR_PORTAL_TOKEN": emu.token})
    assert result.rc == 0, result
    assert "validate_certs is false" in result.stdout + result.stderr  # the warning reaches the user
    counters = control.counters()
    assert counters["writes"] == 0, counters  # the refused write never reached the portal
    # Certificate failures are not retried: 2 refused handshakes never reach the app; two reads did.
    assert counters["by_route"].get("GET /api/v1/subscriber/publishers") == 2, counters
