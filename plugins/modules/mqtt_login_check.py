#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mqtt_login_check
short_description: Check that MQTT credentials log in to the broker (and may publish or subscribe)
version_added: 0.1.0
description:
  - Connects to the MQTT broker with each credential (MQTT v5, one connection per credential) and reports per
    credential whether the login works, and why not.
  - Optionally publishes one message (QoS 1) to a topic of the credential, or subscribes to a topic filter
    (read-only), and reports whether the broker allowed it.
  - Checks a whole fleet in one task, O(parallel) logins at a time, each bounded by O(timeout).
  - Never returns or prints a password. The module does not talk to the portal.
  - The role C(isr.mqtt.device) calls it with C(device_verify=true) to check every delivered credential.
  - By default the connection uses a random MQTT client id (C(isr-check-...)), so that a check never
    disconnects a device that is online with its own client id (the broker drops the older of two sessions
    with one client id). Set O(credentials[].client_id) when the broker requires a particular one.
author:
  - isr.mqtt maintainers (@isr-mqtt)
requirements:
  - paho-mqtt >= 2.0 (Python library, on the host that runs the module)
extends_documentation_fragment:
  - isr.mqtt.attributes
attributes:
  check_mode:
    support: full
    details:
      - Logs in as in normal mode (a login changes nothing); with O(action=publish) no message is published in
        check mode (the login is still checked).
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
  platform:
    platforms: posix
    details:
      - Runs where the broker is reachable, normally the controller (C(delegate_to=localhost)). It checks the
        broker from there, not from the device's network.
options:
  host:
    description: Host name or address of the MQTT broker.
    type: str
    required: true
  port:
    description: TCP port of the broker. Defaults to V(8883) with O(tls), V(1883) without.
    type: int
  tls:
    description: Connect with TLS.
    type: bool
    default: false
  ca_path:
    description: CA certificate file (PEM) to check the broker's certificate with; the system's CAs when not set.
    type: path
  validate_certs:
    description: Check the broker's TLS certificate and host name. Only V(false) for tests.
    type: bool
    default: true
  username:
    description: The MQTT user name to check (one credential). Use O(credentials) for several.
    type: str
  password:
    description: The password of O(username); a vault-encrypted value works as it is.
    type: str
  client_id:
    description: MQTT client id for the O(username) login; a random C(isr-check-...) id when not set.
    type: str
  topic:
    description: The topic (O(action=publish)) or topic filter (O(action=subscribe)) for the O(username) login.
    type: str
  credentials:
    description:
      - Several credentials, checked O(parallel) at a time. Mutually exclusive with O(username).
    type: list
    elements: dict
    suboptions:
      username:
        description: MQTT user name.
        type: str
        required: true
      password:
        description: Its password.
        type: str
        required: true
      client_id:
        description: MQTT client id; a random C(isr-check-...) id when not set.
        type: str
      label:
        description: A name for the result (for example the device's label); defaults to O(credentials[].username).
        type: str
      topic:
        description: The topic to publish to (O(action=publish), no wildcards) or the filter to subscribe to (O(action=subscribe)).
        type: str
  action:
    description:
      - V(connect) only logs in.
      - V(publish) also publishes O(payload) once at QoS 1 to the credential's topic and waits for the broker's acknowledgement.
      - V(subscribe) also subscribes to the credential's topic filter at QoS 1 and reads the granted QoS; nothing is published.
    type: str
    choices: [connect, publish, subscribe]
    default: connect
  payload:
    description: The message that O(action=publish) sends.
    type: str
    default: isr.mqtt login check
  timeout:
    description: Seconds allowed for one credential (TCP and TLS connect, login, publish or subscribe). More than 0.
    type: float
    default: 10
  parallel:
    description: How many logins run at once, from 1 to 256.
    type: int
    default: 16
  fail_on_error:
    description:
      - Fail the task when any credential's status is not V(ok). The results are returned either way.
      - Set V(false) to decide yourself from RV(results) (the role R(isr.mqtt.device,ansible_collections.isr.mqtt.device_role) does so per host).
    type: bool
    default: true
notes:
  - MQTT v5 only; the reason codes of the broker's answers (CONNACK, PUBACK, SUBACK) decide the status.
  - A status is one of V(ok); V(bad_credentials), the broker refused the login (CONNACK 134 or 135; Mosquitto answers
    135 both for a wrong password and for a paused client); V(not_authorized), the client id refused or the client
    banned at login, or the publish or subscribe refused by the broker's ACL; V(unreachable), no TCP connection, no
    answer within O(timeout), the connection closed before the broker answered, or the broker unavailable;
    V(tls_error), the TLS handshake or the certificate check failed; V(error), any other refusal (the broker's reason
    is in RV(results[].msg)).
"""

EXAMPLES = r"""
- name: Check one device's stored credential (the password stays vaulted until the module gets it)
  isr.mqtt.mqtt_login_check:
    host: mqtt.example.com
    tls: true
    username: "{{ mqtt_username }}"
    password: "{{ mqtt_password }}"
  delegate_to: localhost

- name: Check every device of the play, publishing one message each, 32 at a time
  isr.mqtt.mqtt_login_check:
    host: mqtt.example.com
    tls: true
    action: publish
    parallel: 32
    timeout: 5
    fail_on_error: false
    credentials: >-
      {%- set out = [] -%}
      {%- for h in ansible_play_hosts -%}
      {%-   set _ = out.append({'label': h, 'username': hostvars[h].mqtt_username, 'password': hostvars[h].mqtt_password,
                                'topic': hostvars[h].mqtt_publish_topic ~ 'login-check'}) -%}
      {%- endfor -%}
      {{ out }}
  delegate_to: localhost
  run_once: true
  register: fleet_check

- name: Fail the devices whose login failed
  ansible.builtin.fail:
    msg: "{{ item.status }}: {{ item.msg }}"
  loop: "{{ fleet_check.results | selectattr('label', 'eq', inventory_hostname) | rejectattr('status', 'eq', 'ok') }}"

- name: Check a read-only subscriber login (subscribe only, publish nothing)
  isr.mqtt.mqtt_login_check:
    host: mqtt.example.com
    tls: true
    action: subscribe
    credentials:
      - username: "{{ listener_username }}"
        password: "{{ listener_password }}"
        topic: "{{ account_id }}/#"
  delegate_to: localhost
  register: listener_check

- name: Show the result (never contains a password)
  ansible.builtin.debug:
    msg: "{{ listener_check.results[0].status }}: {{ listener_check.results[0].msg }}"
"""

RETURN = r"""
results:
  description: One entry per credential, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    label:
      description: O(credentials[].label), or the user name.
      type: str
      sample: site-alpha-sensor
    username:
      description: The user name checked.
      type: str
      sample: pub-3f9c2a71d0b4
    client_id:
      description: The MQTT client id used for the connection.
      type: str
      sample: isr-check-1a2b3c4d5e6f
    status:
      description: V(ok), V(bad_credentials), V(not_authorized), V(unreachable), V(tls_error) or V(error).
      type: str
      sample: ok
    reason_code:
      description: The broker's MQTT v5 reason code (CONNACK, or PUBACK/SUBACK), null when the broker did not answer.
      type: int
      sample: 0
    msg:
      description: What happened, in words.
      type: str
      sample: logged in and published to acct/pub-3f9c2a71d0b4/login-check
    elapsed:
      description: Seconds this credential took.
      type: float
      sample: 0.012
counts:
  description: How many credentials ended with each status (only statuses that occurred).
  returned: always
  type: dict
  sample: {ok: 998, bad_credentials: 2}
failed_labels:
  description: Labels of the credentials whose status is not V(ok).
  returned: always
  type: list
  elements: str
  sample: [site-alpha-sensor]
"""

import socket
import ssl
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

PAHO_IMPORT_ERROR = None
try:
    import paho.mqtt.client as mqtt
    if not hasattr(mqtt, "CallbackAPIVersion"):
        raise ImportError("paho-mqtt %s is too old" % getattr(mqtt, "__version__", "1.x"))
except ImportError:
    mqtt = None
    PAHO_IMPORT_ERROR = traceback.format_exc()

# MQTT v5 reason codes. Mosquitto answers a wrong password with CONNACK 135 "Not authorized", not 134, and a
# disabled (paused) client the same way, so a refused login is bad_credentials either way; 135 in a PUBACK or
# SUBACK (a login that works, an action the ACL refuses) is not_authorized.
REFUSED_LOGIN = (134, 135)       # bad user name or password; not authorized
NOT_AUTHORIZED = (133, 135, 138)  # client id not valid, not authorized, banned
UNAVAILABLE = (136, 137)         # server unavailable, server busy
TLS_BROKEN = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)  # peer hung up mid-handshake
POLL_S = 0.02


def status_of(code, login=False):
    if code < 128:
        return "ok"
    if login and code in REFUSED_LOGIN:
        return "bad_credentials"
    if code in NOT_AUTHORIZED:
        return "not_authorized"
    if code in UNAVAILABLE:
        return "unreachable"
    return "error"


class Login(object):
    """One MQTT connection driven by hand (client.loop) in the calling thread, so a pool bounds the concurrency."""

    def __init__(self, cred, opts):
        self.cred, self.opts = cred, opts
        self.client_id = cred.get("client_id") or "isr-check-" + uuid.uuid4().hex[:12]
        self.connack = None
        self.ack = None      # PUBACK / SUBACK reason code
        self.closed = False
        self.deadline = None

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack = reason_code.value

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self.ack = reason_code.value

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self.ack = reason_codes[0].value

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.closed = True

    def _wait(self, client, done):
        while not done() and not self.closed and time.monotonic() < self.deadline:
            if client.loop(timeout=POLL_S) != mqtt.MQTT_ERR_SUCCESS:
                self.closed = True
        return done()

    def run(self):
        started = time.monotonic()
        self.deadline = started + self.opts["timeout"]
        status, code, msg = self._run()
        return dict(label=self.cred.get("label") or self.cred["username"], username=self.cred["username"],
                    client_id=self.client_id, status=status, reason_code=code, msg=msg,
                    elapsed=round(time.monotonic() - started, 3))

    def _client(self):
        opts = self.opts
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5,
                             reconnect_on_failure=False)
        client.username_pw_set(self.cred["username"], self.cred["password"])
        client.connect_timeout = opts["timeout"]
        if opts["tls"]:
            client.tls_set(ca_certs=opts["ca_path"], cert_reqs=ssl.CERT_REQUIRED if opts["validate_certs"] else ssl.CERT_NONE)
            client.tls_insecure_set(not opts["validate_certs"])
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_publish, client.on_subscribe = self._on_publish, self._on_subscribe
        return client

    def _run(self):
        opts, where = self.opts, "%s:%s" % (self.opts["host"], self.opts["port"])
        client = self._client()
        try:
            client.connect(opts["host"], opts["port"], keepalive=max(10, int(opts["timeout"]) * 2))
        except ssl.SSLError as exc:  # before OSError: SSLError is one
            return "tls_error", None, "TLS handshake with %s failed: %s" % (where, exc)
        except ssl.CertificateError as exc:
            return "tls_error", None, "the certificate of %s does not match: %s" % (where, exc)
        except TLS_BROKEN as exc:
            if opts["tls"]:
                return "tls_error", None, "%s hung up during the TLS handshake (not a TLS port?): %s" % (where, exc)
            return "unreachable", None, "cannot connect to %s: %s" % (where, exc)
        except (OSError, socket.timeout) as exc:
            return "unreachable", None, "cannot connect to %s: %s" % (where, exc)
        try:
            if not self._wait(client, lambda: self.connack is not None):
                if self.closed:
                    return "unreachable", None, ("%s closed the connection before answering the login (a TLS port "
                                                 "reached without tls: true?)" % where)
                return "unreachable", None, "no answer to the login from %s within %ss" % (where, opts["timeout"])
            if self.connack != 0:
                return status_of(self.connack, login=True), self.connack, "login refused: %s" % mqtt.ReasonCode(
                    mqtt.PacketTypes.CONNACK, identifier=self.connack)
            return self._act(client)
        finally:
            client.disconnect()
            client.loop(timeout=POLL_S)
            client.socket() and client.socket().close()

    def _act(self, client):
        opts, topic = self.opts, self.cred.get("topic")
        if opts["action"] == "connect" or (opts["action"] == "publish" and opts["check_mode"]):
            return "ok", 0, "logged in" + (" (check mode: nothing published)" if opts["action"] == "publish" else "")
        if opts["action"] == "publish":
            info = client.publish(topic, opts["payload"], qos=1)
            verb, packet = "published to", mqtt.PacketTypes.PUBACK
        else:
            dummy, info = client.subscribe(topic, qos=1)
            verb, packet = "subscribed to", mqtt.PacketTypes.SUBACK
        if not self._wait(client, lambda: self.ack is not None):
            return "unreachable", None, "logged in, but no acknowledgement within %ss for %s %s" % (
                opts["timeout"], verb.split()[0], topic)
        if status_of(self.ack) != "ok":
            return status_of(self.ack), self.ack, "logged in, but the broker refused: %s %s (%s)" % (
                verb, topic, mqtt.ReasonCode(packet, identifier=self.ack))
        return "ok", self.ack, "logged in and %s %s" % (verb, topic)


def problems(creds, action):
    """Input errors, each naming the field; checked before any connection."""
    found = []
    for index, cred in enumerate(creds):
        where = "credentials[%d]" % index
        if not cred.get("username"):
            found.append("%s.username is empty" % where)
        if not cred.get("password"):
            found.append("%s.password is empty (for %s)" % (where, cred.get("label") or cred.get("username")))
        topic = cred.get("topic")
        if action in ("publish", "subscribe") and not topic:
            found.append("%s.topic is required with action=%s (the topic to %s)" % (where, action, action))
        elif action == "publish" and ("+" in topic or "#" in topic):
            found.append("%s.topic %r has a wildcard; publish needs a plain topic" % (where, topic))
    return found


def main(module_class=AnsibleModule):
    """The module; its action plugin runs the same code in the controller's worker with another module_class."""
    cred_spec = dict(username=dict(type="str", required=True), password=dict(type="str", required=True, no_log=True),
                     client_id=dict(type="str"), label=dict(type="str"), topic=dict(type="str"))
    module = module_class(
        argument_spec=dict(
            host=dict(type="str", required=True),
            port=dict(type="int"),
            tls=dict(type="bool", default=False),
            ca_path=dict(type="path"),
            validate_certs=dict(type="bool", default=True),
            username=dict(type="str"),
            password=dict(type="str", no_log=True),
            client_id=dict(type="str"),
            topic=dict(type="str"),
            credentials=dict(type="list", elements="dict", options=cred_spec),
            action=dict(type="str", choices=["connect", "publish", "subscribe"], default="connect"),
            payload=dict(type="str", default="isr.mqtt login check"),
            timeout=dict(type="float", default=10),
            parallel=dict(type="int", default=16),
            fail_on_error=dict(type="bool", default=True),
        ),
        mutually_exclusive=[("credentials", "username")],
        required_one_of=[("credentials", "username")],
        required_together=[("username", "password")],
        supports_check_mode=True,
    )
    if mqtt is None:
        module.fail_json(msg=missing_required_lib("paho-mqtt >= 2.0"), exception=PAHO_IMPORT_ERROR)
    params = module.params
    creds = params["credentials"]
    if creds is None:
        creds = [dict(username=params["username"], password=params["password"], client_id=params["client_id"],
                      topic=params["topic"], label=None)]
    found = problems(creds, params["action"])
    if not 1 <= params["parallel"] <= 256:
        found.append("parallel must be between 1 and 256, got %d" % params["parallel"])
    if params["timeout"] <= 0:
        found.append("timeout must be more than 0 seconds, got %s" % params["timeout"])
    if found:
        module.fail_json(msg="nothing was checked: " + "; ".join(found))

    opts = dict((key, params[key]) for key in ("host", "tls", "ca_path", "validate_certs", "action", "payload", "timeout"))
    opts["port"] = params["port"] or (8883 if params["tls"] else 1883)
    opts["check_mode"] = module.check_mode
    with ThreadPoolExecutor(max_workers=min(params["parallel"], len(creds)) or 1) as pool:
        results = list(pool.map(lambda cred: Login(cred, opts).run(), creds))

    counts = {}
    for entry in results:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    failed = [entry["label"] for entry in results if entry["status"] != "ok"]
    outcome = dict(changed=False, results=results, counts=counts, failed_labels=failed)
    if failed and params["fail_on_error"]:
        first = next(entry for entry in results if entry["status"] != "ok")
        module.fail_json(msg="%d of %d logins failed (%s); first: %s: %s: %s" % (
            len(failed), len(results), counts, first["label"], first["status"], first["msg"]), **outcome)
    module.exit_json(msg="%d of %d logins ok" % (len(results) - len(failed), len(results)), **outcome)


if __name__ == "__main__":
    main()
