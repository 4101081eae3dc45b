"""A real Mosquitto broker behind the emulator, driven through its dynamic-security plugin.

The broker runs as a child process on 127.0.0.1. Every change goes over ONE persistent
admin MQTT connection as a command batch on `$CONTROL/dynamic-security/v1`; the reply on
`.../response` is matched by `correlationData`. `mosquitto_ctrl` is not used because it
exits 0 even when a command fails.

ACLs follow the portal's documented rules:
  device      publishClientSend {account_id}/{client_id}/# only with allow_publish,
              subscribePattern  {account_id}/{client_id}/# only with allow_subscribe;
  subscriber  subscribePattern  {account_id}/# and nothing else.
Everything not allowed by a role is denied (defaultACLAccess).
"""
import base64
import ctypes
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

try:
    import paho.mqtt.client as mqtt
except ImportError:   # the emulator runs without a broker when paho is missing
    mqtt = None

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
PLUGIN_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
)
ADMIN_USER = "dynsec-admin"


class BrokerError(Exception):
    """The broker did not answer in time, or answered an error."""


def find_mosquitto():
    """Path of the mosquitto binary, or None (Debian puts it in /usr/sbin, often not on PATH)."""
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)


def find_plugin():
    return os.environ.get("MOSQUITTO_DYNSEC_PLUGIN") or next((p for p in PLUGIN_CANDIDATES if os.path.exists(p)), None)


def _die_with_parent():
    """Runs in the child before exec: SIGTERM mosquitto when its parent dies, so no broker outlives a killed emulator."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)   # 1 = PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


def _free_port(host):
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _hashed(password):
    """Password fields as the dynsec plugin stores them: PBKDF2-SHA512, base64."""
    salt = secrets.token_bytes(12)
    iterations = 101
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return {"password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(), "iterations": iterations}


def _role(username):
    return "role-" + username


def _device_acls(account_id, client_id, allow_publish, allow_subscribe):
    # Both entries are always present (allow true/false) so a permission change is remove+add without errors.
    prefix = "%s/%s/#" % (account_id, client_id)
    return [
        {"acltype": "publishClientSend", "topic": prefix, "allow": bool(allow_publish)},
        {"acltype": "subscribePattern", "topic": prefix, "allow": bool(allow_subscribe)},
    ]


class Broker:
    def __init__(self, workdir, host="127.0.0.1", port=0, timeout=5.0):
        self.workdir = Path(workdir)
        self.host = host
        self.port = port
        self.timeout = timeout
        self.process = None
        self._admin_password = secrets.token_urlsafe(24)
        self._client = None
        self._lock = threading.Lock()
        self._pending = {}      # correlationData -> [threading.Event, responses or None]
        self._ready = threading.Event()   # connected AND subscribed to the response topic

    @property
    def pid(self):
        return self.process.pid if self.process else None

    @property
    def log_file(self):
        return self.workdir / "mosquitto.log"

    # -- lifecycle -------------------------------------------------------------------

    def start(self):
        binary, plugin = find_mosquitto(), find_plugin()
        if mqtt is None:
            raise BrokerError("paho-mqtt is not installed (pip install paho-mqtt)")
        if not binary or not plugin:
            raise BrokerError("mosquitto or its dynamic-security plugin is not installed (apt-get install mosquitto)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = _free_port(self.host)
        dynsec_file = self.workdir / "dynamic-security.json"
        dynsec_file.write_text(json.dumps(self._initial_dynsec(), indent=1))
        conf = [
            "per_listener_settings false",
            "allow_anonymous false",
            "persistence false",
            "set_tcp_nodelay true",   # without it each reply waits ~40 ms for Nagle/delayed ACK
            "log_dest file %s" % self.log_file,
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "listener %d %s" % (self.port, self.host),
            "plugin %s" % plugin,
            "plugin_opt_config_file %s" % dynsec_file,
        ]
        if os.geteuid() == 0:
            conf.insert(0, "user root")   # otherwise mosquitto drops to user `mosquitto`, which cannot write the workdir
        conf_file = self.workdir / "mosquitto.conf"
        conf_file.write_text("\n".join(conf) + "\n")
        self.process = subprocess.Popen([binary, "-c", str(conf_file)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, cwd=str(self.workdir), preexec_fn=_die_with_parent)
        try:
            self._connect_admin()
        except Exception:
            self.stop()
            raise
        return self

    def stop(self):
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _initial_dynsec(self):
        admin = {"username": ADMIN_USER, "textName": "emulator admin", "roles": [{"rolename": "admin"}]}
        admin.update(_hashed(self._admin_password))
        return {
            "clients": [admin],
            "roles": [{"rolename": "admin", "acls": [
                {"acltype": "publishClientSend", "topic": "$CONTROL/dynamic-security/#", "allow": True},
                {"acltype": "publishClientReceive", "topic": "$CONTROL/dynamic-security/#", "allow": True},
                {"acltype": "subscribePattern", "topic": "$CONTROL/dynamic-security/#", "allow": True},
            ]}],
            "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": True,
                                 "subscribe": False, "unsubscribe": True},
        }

    def _connect_admin(self):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="emulator-admin-%s" % uuid.uuid4().hex[:8])
        client.username_pw_set(ADMIN_USER, self._admin_password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(0.1, 1)
        deadline = time.monotonic() + 10
        while True:   # the listener needs a moment after the process starts
            if self.process.poll() is not None:
                raise BrokerError("mosquitto exited with %s:\n%s" % (self.process.returncode, self._log_tail()))
            try:
                client.connect(self.host, self.port, keepalive=30)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BrokerError("mosquitto did not accept connections on %s:%s:\n%s" % (self.host, self.port, self._log_tail()))
                time.sleep(0.05)
        self._client = client
        client.loop_start()
        if not self._ready.wait(self.timeout):
            raise BrokerError("admin login to mosquitto failed:\n" + self._log_tail())

    def _log_tail(self):
        try:
            return "\n".join(self.log_file.read_text().splitlines()[-20:])
        except OSError:
            return "(no log)"

    # -- paho callbacks (network thread) ---------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if not any(rc.is_failure for rc in reason_codes):
            self._ready.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._ready.clear()
        with self._lock:   # fail fast: nobody waits 5 s for a reply that cannot come
            for waiter in self._pending.values():
                waiter[0].set()

    def _on_message(self, client, userdata, msg):
        try:
            responses = json.loads(msg.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            return
        by_id = {}
        for response in responses:
            by_id.setdefault(response.get("correlationData"), []).append(response)
        with self._lock:
            for corr, found in by_id.items():
                waiter = self._pending.get(corr)
                if waiter:
                    waiter[1] = found
                    waiter[0].set()

    # -- command round trip ----------------------------------------------------------

    def _call(self, *commands):
        """Send commands as one batch; wait for all their replies; raise on any error."""
        if self._client is None or not self._ready.is_set():
            raise BrokerError("broker not connected (%s:%s)" % (self.host, self.port))
        corr = uuid.uuid4().hex
        waiter = [threading.Event(), None]
        with self._lock:
            self._pending[corr] = waiter
        try:
            payload = {"commands": [dict(cmd, correlationData=corr) for cmd in commands]}
            info = self._client.publish(CONTROL_TOPIC, json.dumps(payload), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise BrokerError("broker publish failed: %s" % mqtt.error_string(info.rc))
            if not waiter[0].wait(self.timeout) or waiter[1] is None:
                raise BrokerError("broker did not answer %s within %ss" % ([c["command"] for c in commands], self.timeout))
        finally:
            with self._lock:
                self._pending.pop(corr, None)
        errors = ["%s: %s" % (r.get("command"), r["error"]) for r in waiter[1] if r.get("error")]
        if errors:
            raise BrokerError("broker refused: " + "; ".join(errors))
        if len(waiter[1]) != len(commands):
            raise BrokerError("broker answered %d of %d commands" % (len(waiter[1]), len(commands)))
        return waiter[1]

    # -- portal operations -----------------------------------------------------------

    def add_client(self, username, password, account_id, client_id, allow_publish, allow_subscribe, enabled=True):
        commands = [
            {"command": "createRole", "rolename": _role(username),
             "acls": _device_acls(account_id, client_id, allow_publish, allow_subscribe)},
            {"command": "createClient", "username": username, "password": password,
             "roles": [{"rolename": _role(username)}]},
        ]
        if not enabled:
            commands.append({"command": "disableClient", "username": username})
        self._call(*commands)

    def set_enabled(self, username, enabled):
        # disableClient also disconnects the client's live sessions.
        self._call({"command": "enableClient" if enabled else "disableClient", "username": username})

    def set_password(self, username, password):
        # setClientPassword also disconnects live sessions (checked on 2.0.11), so the old password is dead at once.
        self._call({"command": "setClientPassword", "username": username, "password": password})

    def set_permissions(self, username, account_id, client_id, allow_publish, allow_subscribe):
        commands = []
        for acl in _device_acls(account_id, client_id, allow_publish, allow_subscribe):
            commands.append({"command": "removeRoleACL", "rolename": _role(username), "acltype": acl["acltype"], "topic": acl["topic"]})
            commands.append(dict(acl, command="addRoleACL", rolename=_role(username)))
        self._call(*commands)

    def remove_client(self, username):
        # deleteClient disconnects the client; its role goes with it.
        self._call({"command": "deleteClient", "username": username}, {"command": "deleteRole", "rolename": _role(username)})

    def add_subscriber(self, username, password, account_id):
        self._call(
            {"command": "createRole", "rolename": _role(username),
             "acls": [{"acltype": "subscribePattern", "topic": "%s/#" % account_id, "allow": True}]},
            {"command": "createClient", "username": username, "password": password, "roles": [{"rolename": _role(username)}]},
        )

    def remove_subscriber(self, username):
        self.remove_client(username)
