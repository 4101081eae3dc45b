# -*- coding: utf-8 -*-
"""Issue 24: when a module's code runs in the worker (run_here), what it gets, and what a worker holding secrets
allows (no core file, not dumpable). The end-to-end proof is tests/reliability/test_secrets.py (ANSIBLE_DEBUG)."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

from ansible import constants as C
from ansible.parsing.vault import VaultLib, VaultSecret

from ansible_collections.isr.mqtt.plugins.action import mqtt_client_info
from ansible_collections.isr.mqtt.plugins.plugin_utils import _in_process
from ansible_collections.isr.mqtt.plugins.plugin_utils._vault import vault_object

SECRET = ("fleet", VaultSecret(b"unit-in-process"))


def action(transport="local", become=False):
    return SimpleNamespace(_connection=SimpleNamespace(transport=transport), _play_context=SimpleNamespace(become=become))


def test_runs_here_only_on_the_controller_as_the_same_user():
    assert _in_process.run_here(action())
    assert not _in_process.run_here(action(become=True))  # become: another user's module process, as before
    assert not _in_process.run_here(action(transport="ssh"))


def test_vaulted_arguments_reach_the_module_as_text(monkeypatch):
    try:  # ansible-core 2.19: an EncryptedString decrypts with the run's secrets
        from ansible.parsing.vault import VaultSecretsContext
        monkeypatch.setattr(VaultSecretsContext, "_current", VaultSecretsContext([SECRET]))
    except ImportError:  # pragma: no cover - 2.17/2.18: the object carries its vault
        pass
    vaulted = vault_object(VaultLib([SECRET]).encrypt("pw-1", SECRET[1], vault_id="fleet"), [SECRET])
    args = {"api_token": vaulted, "credentials": [{"username": "u", "password": vaulted}], "port": 1}
    assert _in_process.plain(args) == {"api_token": "pw-1", "credentials": [{"username": "u", "password": "pw-1"}], "port": 1}


def test_a_worker_holding_secrets_writes_no_core_and_is_not_dumpable():
    code = ("import ctypes, resource\n"
            "from ansible_collections.isr.mqtt.plugins.plugin_utils._in_process import no_dumps_here\n"
            "resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))\n"
            "no_dumps_here()\n"
            "print(resource.getrlimit(resource.RLIMIT_CORE), ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=str(__import__("support").COLLECTIONS_ROOT))
    assert done.stdout.split("\n")[0] == "(0, 0) 0", done.stdout + done.stderr  # PR_GET_DUMPABLE: 0


def test_a_module_process_under_ansible_debug_warns(monkeypatch):
    task = SimpleNamespace(args={"label": "a"}, check_mode=False, diff=False, async_val=0, no_log=False,
                           action="isr.mqtt.mqtt_client_info", resolved_action="isr.mqtt.mqtt_client_info")
    connection = SimpleNamespace(transport="ssh", has_native_async=False, _shell=SimpleNamespace(tmpdir=None))
    plugin = mqtt_client_info.ActionModule(task, connection, SimpleNamespace(remote_addr="jump-1", become=False),
                                           None, None, None)
    warnings = []
    plugin._display = SimpleNamespace(warning=warnings.append)
    plugin._execute_module = lambda task_vars=None, wrap_async=False: {"changed": False, "clients": []}
    plugin._remove_tmp_path = lambda path: None
    assert plugin.run(task_vars={})["clients"] == [] and warnings == []
    monkeypatch.setattr(C, "DEFAULT_DEBUG", True)
    plugin.run(task_vars={})
    assert len(warnings) == 1 and "ANSIBLE_DEBUG prints its arguments" in warnings[0] and "jump-1" in warnings[0]
