"""End-to-end fixtures: a real Mosquitto broker and small paho helpers (MQTT v5, real TCP).

Without mosquitto these tests are skipped with a loud reason; with CI=true they fail instead,
so a CI image that lost mosquitto cannot pass silently.
"""
import importlib.util
import os
import queue
import threading
import uuid

import pytest

from emulator.broker import Broker, find_mosquitto, find_plugin
from support import Emulator

TIMEOUT = 5.0
CONNACK_OK = 0
NOT_AUTHORIZED = 135            # PUBACK / SUBACK / CONNACK "Not authorized"
BAD_CREDENTIALS = 134           # CONNACK "Bad user name or password"


def _missing():
    if not find_mosquitto():
        return "mosquitto binary not found"
    if not find_plugin():
        return "mosquitto_dynamic_security.so not found"
    if importlib.util.find_spec("paho") is None:
        return "paho-mqtt not installed"
    return None


@pytest.fixture(autouse=True)
def _needs_mosquitto():
    missing = _missing()
    if missing:
        msg = "END-TO-END BROKER TESTS NOT RUN: %s (apt-get install mosquitto mosquitto-clients; pip install paho-mqtt)" % missing
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


class Session:
    """One MQTT v5 connection. `rc` is the CONNACK reason code (0 = accepted), None when no answer."""

    def __init__(self, host, port, username, password, client_id=None):
        import paho.mqtt.client as mqtt
        self._mqtt = mqtt
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "t-" + uuid.uuid4().hex[:10],
                                  protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        self.client.username_pw_set(username, password)
        self.rc = None
        self.disconnected = threading.Event()
        self.messages = queue.Queue()
        self._connack = threading.Event()
        self._acks = {}             # mid -> reason code (PUBACK / SUBACK), set in the network thread
        self._acked = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_ack
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        self._connack.wait(TIMEOUT)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.rc = reason_code.value
        self._connack.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnected.set()

    def _on_ack(self, client, userdata, mid, reason_code, properties):
        with self._acked:
            self._acks[mid] = reason_code.value
            self._acked.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self._on_ack(client, userdata, mid, reason_codes[0], properties)

    def _wait_ack(self, mid):
        with self._acked:
            if not self._acked.wait_for(lambda: mid in self._acks, TIMEOUT):
                raise AssertionError("no acknowledgement from the broker within %ss" % TIMEOUT)
            return self._acks.pop(mid)

    def publish(self, topic, payload, qos=1):
        """PUBACK reason code: 0 accepted (16: accepted, nobody subscribed), 135 not authorized (MQTT v5, QoS 1)."""
        info = self.client.publish(topic, payload, qos=qos)
        if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError("publish not sent: %s" % self._mqtt.error_string(info.rc))
        return self._wait_ack(info.mid)

    def subscribe(self, topic_filter, qos=1):
        """SUBACK reason code: the granted QoS (0-2) when accepted, 135 not authorized."""
        result, mid = self.client.subscribe(topic_filter, qos=qos)
        if result != self._mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError("subscribe not sent: %s" % self._mqtt.error_string(result))
        return self._wait_ack(mid)

    def received(self, topic, payload, timeout=TIMEOUT):
        """True when a message with this topic and payload arrives within timeout."""
        try:
            while True:
                msg = self.messages.get(timeout=timeout)
                if msg.topic == topic and msg.payload == payload:
                    return True
        except queue.Empty:
            return False

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


class Mqtt:
    """The paho helpers as one fixture object, so test modules never import conftest."""

    OK = CONNACK_OK
    NOT_AUTHORIZED = NOT_AUTHORIZED
    REFUSED = (BAD_CREDENTIALS, NOT_AUTHORIZED)   # what a refused login answers
    PUBLISHED = (0, 16)                            # PUBACK success, "no matching subscribers"

    def __init__(self):
        self.sessions = []

    def session(self, host, port, username, password, client_id=None):
        """A connected (or refused: look at .rc) session, closed at teardown."""
        self.sessions.append(Session(host, port, username, password, client_id))
        return self.sessions[-1]

    @staticmethod
    def connect(host, port, username, password, client_id=None):
        """CONNACK reason code of a fresh login (0 = accepted); the session is closed again."""
        s = Session(host, port, username, password, client_id)
        s.close()
        return s.rc

    @staticmethod
    def publish_and_check(publisher, listener, topic, payload=None):
        """Publish once at QoS 1; return (PUBACK reason code, whether the listener got it)."""
        payload = payload or uuid.uuid4().hex.encode()
        rc = publisher.publish(topic, payload)
        # A refused publish never reaches anyone; a short wait is enough to be sure.
        return rc, listener.received(topic, payload, timeout=TIMEOUT if rc == 0 else 0.5)

    def close(self):
        for s in self.sessions:
            s.close()


@pytest.fixture
def mqtt():
    helper = Mqtt()
    yield helper
    helper.close()


@pytest.fixture
def portal(tmp_path):
    """The emulator with --broker; `.info` carries broker_host / broker_port."""
    emu = Emulator(tmp_path, broker=True).start()
    yield emu
    emu.stop()
