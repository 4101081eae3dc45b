# -*- coding: utf-8 -*-
"""The action plugins in front of mqtt_client, mqtt_subscriber and mqtt_fleet: which sink the module is told
about, and that every password of a result (also a failed one) leaves vault-encrypted, in plain text only under
no_log or the plaintext opt-in, and with no vault secret in a 0600 rescue file - never printed."""
from __future__ import annotations

import os
import stat
from types import SimpleNamespace

import pytest
from ansible.module_utils.common.text.converters import to_text
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultLib, VaultSecret

from ansible_collections.isr.mqtt.plugins.action import mqtt_client, mqtt_fleet, mqtt_subscriber, vault_credentials
from ansible_collections.isr.mqtt.plugins.plugin_utils import _password_sink

FLEET = ("fleet", VaultSecret(b"unit-fleet-vault-password"))
OTHER = ("other", VaultSecret(b"another-vault-password"))


class Display(object):
    def __init__(self):
        self.messages = []

    def warning(self, msg, *args, **kwargs):
        self.messages.append(msg)

    def display(self, msg, *args, **kwargs):
        pass


def run_action(plugin, args, module_result, secrets=(FLEET,), no_log=False, check_mode=False):
    """-> (result, args the module got, warnings)."""
    loader = DataLoader()
    loader.set_vault_secrets(list(secrets))
    task = SimpleNamespace(args=dict(args), check_mode=check_mode, diff=False, async_val=0, no_log=no_log,
                           action="isr.mqtt.x", resolved_action="isr.mqtt.x")
    connection = SimpleNamespace(_shell=SimpleNamespace(tmpdir=None))
    action = plugin.ActionModule(task, connection, None, loader, None, None)
    action._display = Display()
    seen = {}

    def execute_module(module_args=None, task_vars=None, **kwargs):
        seen.update(module_args)
        return dict(module_result)
    action._execute_module = execute_module
    action._remove_tmp_path = lambda path: None
    return action.run(task_vars={}), seen, action._display.messages


def ciphertext(value):
    return to_text(value._ciphertext)  # bytes before 2.19, str since


def decrypt(value):
    return VaultLib([FLEET, OTHER]).decrypt(ciphertext(value)).decode()


def test_a_new_password_is_returned_vaulted_with_the_runs_secret():
    result, seen, warnings = run_action(mqtt_client, {"label": "a"}, {"changed": True, "password": "s3cret-pw", "client": {"label": "a"}})
    assert seen["password_sink"] == "result" and warnings == []
    assert "s3cret-pw" not in repr(result)
    assert ciphertext(result["password"]).startswith("$ANSIBLE_VAULT;1.2;AES256;fleet")
    assert decrypt(result["password"]) == "s3cret-pw"


def test_the_named_vault_id_is_used():
    result, dummy, dummy2 = run_action(mqtt_subscriber, {"label": "a", "vault_id": "other"}, {"password": "pw-1"},
                                       secrets=(FLEET, OTHER))
    assert ciphertext(result["password"]).startswith("$ANSIBLE_VAULT;1.2;AES256;other")


def test_a_failed_result_is_sealed_too():
    result, dummy, dummy2 = run_action(mqtt_client, {"label": "a", "paused": True},
                                       {"failed": True, "msg": "pause failed", "password": "after-create-pw"})
    assert result["failed"] and "after-create-pw" not in repr(result) and decrypt(result["password"]) == "after-create-pw"


def test_no_log_keeps_plain_text_and_vaulted_overrides_it():
    result, seen, dummy = run_action(mqtt_client, {"label": "a"}, {"password": "pw-nolog"}, no_log=True)
    assert result["password"] == "pw-nolog" and seen["password_sink"] == "result"
    result, seen, dummy = run_action(mqtt_client, {"label": "a", "return_password": "vaulted"}, {"password": "pw-v"}, no_log=True)
    assert decrypt(result["password"]) == "pw-v"


def test_plaintext_opt_in_warns_and_works_without_a_vault():
    result, seen, warnings = run_action(mqtt_client, {"label": "a", "return_password": "plaintext"}, {"password": "pw-p"}, secrets=())
    assert result["password"] == "pw-p" and seen["password_sink"] == "result"
    assert "plaintext" in warnings[0] and "clear text" in warnings[0]


def test_without_a_secret_the_module_is_told_there_is_no_sink():
    dummy, seen, dummy2 = run_action(mqtt_client, {"label": "a"}, {"changed": False, "password": None}, secrets=())
    assert seen["password_sink"] == "none"


def test_a_password_that_reached_no_sink_goes_to_a_0600_file_never_to_the_output(tmp_path, monkeypatch):
    monkeypatch.setattr(_password_sink, "rescue_dir", lambda: str(tmp_path / "rescue"))
    result, dummy, dummy2 = run_action(mqtt_client, {"label": "a/b", "password_file": "/x/pw"},
                                       {"failed": True, "msg": "Could not write password_file", "password": "pw-lost?"},
                                       secrets=())
    assert "pw-lost?" not in repr(result) and result["failed"] and result["password"] is None
    path = result["rescued_password_files"][0]
    assert path in result["msg"] and open(path).read() == "pw-lost?"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(tmp_path / "rescue").st_mode) == 0o700


def test_fleet_credentials_carry_the_ciphertext_that_vault_credentials_stores_as_it_is(tmp_path):
    credentials = {"dev-%d" % n: {"client_id": "pub-%d" % n, "username": "pub-%d" % n, "password": "fleet-pw-%d" % n,
                                  "publish_topic": None, "history_topic_prefix": None, "rotated_at": None} for n in range(3)}
    result, dummy, dummy2 = run_action(mqtt_fleet, {"clients": []}, {"changed": True, "credentials": credentials})
    assert "fleet-pw-" not in repr(result)
    for label, entry in result["credentials"].items():
        assert entry["password_vault"].startswith("$ANSIBLE_VAULT;1.2;AES256;fleet")
        assert decrypt(entry["password"]) == "fleet-pw-%s" % label[-1]
    store = tmp_path / "store.yml"
    loader = DataLoader()
    loader.set_vault_secrets([FLEET])
    task = SimpleNamespace(args={"path": str(store), "credentials": result["credentials"]}, check_mode=False, diff=False,
                           async_val=0, action="isr.mqtt.vault_credentials")
    action = vault_credentials.ActionModule(task, SimpleNamespace(_shell=SimpleNamespace(tmpdir=None)), None, loader, None, None)
    action._display = Display()
    stored = action.run(task_vars={})
    assert stored["added"] == ["dev-0", "dev-1", "dev-2"]
    text = store.read_text()
    for entry in result["credentials"].values():  # byte for byte: no second encryption
        assert "\n".join("      " + line for line in entry["password_vault"].splitlines()) in text


@pytest.mark.parametrize("plugin", [mqtt_client, mqtt_subscriber, mqtt_fleet])
def test_async_is_refused(plugin):
    assert plugin.ActionModule._supports_async is False


def test_ciphertext_mode_returns_text_that_nothing_decrypts_and_the_store_keeps_it(tmp_path):
    credentials = {"dev-1": {"client_id": "pub-1", "username": "pub-1", "password": "ct-pw-1"}}
    result, dummy, dummy2 = run_action(mqtt_fleet, {"clients": [], "return_password": "ciphertext"},
                                       {"credentials": credentials}, no_log=True)
    entry = result["credentials"]["dev-1"]
    assert entry["password"].__class__ is str and entry["password"] == entry["password_vault"]  # text, no vault object
    assert entry["password"].startswith("$ANSIBLE_VAULT;1.2;AES256;fleet")
    assert VaultLib([FLEET]).decrypt(entry["password"]).decode() == "ct-pw-1"
