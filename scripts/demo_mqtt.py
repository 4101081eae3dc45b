"""Last step of the demo: a provisioned device publishes, a read-only subscriber receives.

The device's password is read from the vaulted store with the run's vault password file, in
memory only; nothing secret is printed.
"""
import argparse
import json
import sys
import threading
import uuid

import paho.mqtt.client as mqtt
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret


def read_device(store_path, vault_password_file, label):
    class VaultLoader(yaml.SafeLoader):
        pass
    # Keep the !vault payload as text; it is decrypted below with the vault secret.
    VaultLoader.add_constructor("!vault", lambda loader, node: loader.construct_scalar(node))
    with open(store_path) as handle:
        store = yaml.load(handle, Loader=VaultLoader)
    entry = store["isr_mqtt_credentials"][label]
    with open(vault_password_file, "rb") as handle:
        secret = VaultSecret(handle.read().strip())
    password = VaultLib([("default", secret)]).decrypt(entry["password"]).decode()
    return entry, password


def connect(host, port, username, password):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="demo-" + uuid.uuid4().hex[:8], protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    connected = threading.Event()
    client.on_connect = lambda c, u, flags, rc, props: connected.set() if rc == 0 else None
    client.connect(host, port)
    client.loop_start()
    if not connected.wait(5):
        sys.exit("%s could not log in to the broker" % username)
    return client


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-file", required=True, help="the emulator's state file (broker host and port)")
    parser.add_argument("--store", required=True)
    parser.add_argument("--vault-password-file", required=True)
    parser.add_argument("--label", default="demo-device-1")
    parser.add_argument("--listener-user", required=True, help="file with the read-only subscriber's username")
    parser.add_argument("--listener-password-file", required=True)
    args = parser.parse_args()

    with open(args.state_file) as handle:
        state = json.load(handle)
    host, port = state["broker_host"], state["broker_port"]
    device, device_password = read_device(args.store, args.vault_password_file, args.label)
    with open(args.listener_user) as handle:
        listener_user = handle.read().strip()
    with open(args.listener_password_file) as handle:
        listener_password = handle.read().strip()

    received = threading.Event()
    listener = connect(host, port, listener_user, listener_password)

    def on_message(client, userdata, message):
        print("read-only subscriber %s received on %s: %s" % (listener_user, message.topic, message.payload.decode()))
        received.set()

    listener.on_message = on_message
    subscribed = threading.Event()
    listener.on_subscribe = lambda c, u, mid, codes, props: subscribed.set()
    listener.subscribe(state["account_id"] + "/#", qos=1)
    subscribed.wait(5)

    sender = connect(host, port, device["username"], device_password)
    topic = "%s/telemetry/demo" % device["history_topic_prefix"]
    print("device %s (%s) publishes on %s" % (args.label, device["username"], topic))
    sender.publish(topic, '{"temperature": 21.5}', qos=1).wait_for_publish(5)
    ok = received.wait(5)
    sender.disconnect()
    listener.disconnect()
    if not ok:
        sys.exit("the read-only subscriber received nothing")


if __name__ == "__main__":
    main()
