"""The Broker driver against a real Mosquitto: every ACL and lifecycle rule seen by real MQTT clients."""
import threading
import time
import uuid

import pytest

from emulator.broker import Broker, BrokerError


def new_id(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


@pytest.fixture
def account():
    return str(uuid.uuid4())


@pytest.fixture
def device(broker, account):
    """A device that may publish but not subscribe; returns (username, password)."""
    name = new_id("pub")
    broker.add_client(name, "pw-" + name, account, name, allow_publish=True, allow_subscribe=False)
    return name, "pw-" + name


@pytest.fixture
def listener(broker, account, mqtt):
    """A read-only subscriber, connected and subscribed to the whole account."""
    name = new_id("sub")
    broker.add_subscriber(name, "pw-" + name, account)
    session = mqtt.session(broker.host, broker.port, name, "pw-" + name)
    assert session.rc == mqtt.OK
    assert session.subscribe("%s/#" % account) == 1
    return session


@pytest.fixture
def login(broker, mqtt):
    return lambda username, password: mqtt.connect(broker.host, broker.port, username, password, client_id=username)


def test_device_publishes_only_under_its_own_prefix(broker, account, device, listener, mqtt):
    name, password = device
    dev = mqtt.session(broker.host, broker.port, name, password, client_id=name)
    assert dev.rc == mqtt.OK
    assert mqtt.publish_and_check(dev, listener, "%s/%s/telemetry/temp" % (account, name)) == (0, True)
    assert mqtt.publish_and_check(dev, listener, "%s/pub-someoneelse/telemetry/temp" % account) == (mqtt.NOT_AUTHORIZED, False)
    # a longer client id that merely starts with this one is another device
    assert mqtt.publish_and_check(dev, listener, "%s/%sx/telemetry/temp" % (account, name)) == (mqtt.NOT_AUTHORIZED, False)
    assert dev.publish("%s/%s/state/x" % (uuid.uuid4(), name), b"x") == mqtt.NOT_AUTHORIZED   # another account


def test_read_only_subscriber_sees_account_and_cannot_publish(account, listener, mqtt):
    assert listener.publish("%s/anything" % account, b"x") == mqtt.NOT_AUTHORIZED
    assert listener.subscribe("%s/#" % uuid.uuid4()) == mqtt.NOT_AUTHORIZED
    assert listener.subscribe("#") == mqtt.NOT_AUTHORIZED


def test_allow_publish_false_refuses_publish(broker, account, listener, mqtt):
    name = new_id("pub")
    broker.add_client(name, "pw", account, name, allow_publish=False, allow_subscribe=False)
    dev = mqtt.session(broker.host, broker.port, name, "pw", client_id=name)
    assert dev.rc == mqtt.OK
    assert mqtt.publish_and_check(dev, listener, "%s/%s/telemetry/t" % (account, name)) == (mqtt.NOT_AUTHORIZED, False)


def test_allow_subscribe_gates_subscriptions_to_own_prefix(broker, account, device, mqtt):
    name, password = device
    own = "%s/%s/#" % (account, name)
    dev = mqtt.session(broker.host, broker.port, name, password, client_id=name)
    assert dev.subscribe(own) == mqtt.NOT_AUTHORIZED

    broker.set_permissions(name, account, name, allow_publish=True, allow_subscribe=True)
    assert dev.subscribe(own) == 1
    assert dev.subscribe("%s/%s/cmd/reboot" % (account, name)) == 1
    assert dev.subscribe("%s/#" % account) == mqtt.NOT_AUTHORIZED
    assert dev.subscribe("%s/pub-other/#" % account) == mqtt.NOT_AUTHORIZED
    assert dev.publish("%s/%s/cmd/reboot" % (account, name), b"go") == 0
    assert dev.received("%s/%s/cmd/reboot" % (account, name), b"go")

    broker.set_permissions(name, account, name, allow_publish=False, allow_subscribe=False)
    assert dev.publish("%s/%s/t" % (account, name), b"x") == mqtt.NOT_AUTHORIZED
    assert dev.subscribe(own) == mqtt.NOT_AUTHORIZED


def test_disable_kicks_and_refuses_enable_accepts(broker, device, mqtt, login):
    name, password = device
    live = mqtt.session(broker.host, broker.port, name, password, client_id=name)
    assert live.rc == mqtt.OK
    broker.set_enabled(name, False)
    assert live.disconnected.wait(5), "a disabled client's live session must be dropped"
    assert login(name, password) in mqtt.REFUSED
    broker.set_enabled(name, True)
    assert login(name, password) == mqtt.OK


def test_added_disabled_is_refused(broker, account, mqtt, login):
    name = new_id("pub")
    broker.add_client(name, "pw", account, name, True, False, enabled=False)
    assert login(name, "pw") in mqtt.REFUSED


def test_set_password_kicks_old_sessions_and_refuses_old_password(broker, device, mqtt, login):
    name, old = device
    live = mqtt.session(broker.host, broker.port, name, old, client_id=name)
    assert live.rc == mqtt.OK
    broker.set_password(name, "brand-new")
    assert live.disconnected.wait(5), "a session logged in with the old password must be dropped"
    assert login(name, old) in mqtt.REFUSED
    assert login(name, "brand-new") == mqtt.OK


def test_remove_kicks_and_refuses_and_name_is_reusable(broker, account, device, mqtt, login):
    name, password = device
    live = mqtt.session(broker.host, broker.port, name, password, client_id=name)
    broker.remove_client(name)
    assert live.disconnected.wait(5)
    assert login(name, password) in mqtt.REFUSED
    broker.add_client(name, "again", account, name, True, False)   # the role went with the client
    assert login(name, "again") == mqtt.OK


def test_remove_subscriber_refuses(broker, account, mqtt, login):
    name = new_id("sub")
    broker.add_subscriber(name, "pw", account)
    assert login(name, "pw") == mqtt.OK
    broker.remove_subscriber(name)
    assert login(name, "pw") in mqtt.REFUSED


def test_broker_errors_are_raised(broker, account, device):
    name, dummy = device
    with pytest.raises(BrokerError, match="already exists"):
        broker.add_client(name, "pw", account, name, True, False)
    with pytest.raises(BrokerError):
        broker.remove_client(new_id("pub"))
    with pytest.raises(BrokerError):
        broker.set_password(new_id("pub"), "pw")


def test_broker_error_when_broker_is_gone(tmp_path, account):
    b = Broker(tmp_path / "b").start()
    try:
        b.process.kill()
        b.process.wait()
        with pytest.raises(BrokerError):  # an error, not a hang (the broker's own timeout bounds it)
            b.add_client(new_id("pub"), "pw", account, "x", True, False)
    finally:
        b.stop()


def test_concurrent_calls_from_many_threads(broker, account, login, mqtt):
    names = [new_id("pub") for dummy in range(200)]
    errors = []

    def work(chunk):
        try:
            for n in chunk:
                broker.add_client(n, "pw-" + n, account, n, True, False)
        except Exception as exc:  # pylint: disable=broad-except
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=work, args=(names[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert not errors
    print("\nadd_client: %d calls from 8 threads in %.2fs (%.1f ms each)" % (len(names), elapsed, elapsed / len(names) * 1000))
    for n in (names[0], names[-1]):
        assert login(n, "pw-" + n) == mqtt.OK
