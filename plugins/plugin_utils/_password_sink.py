# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The action plugin in front of every module that receives MQTT passwords.

A password leaves a module run vault-encrypted, into a 0600 file, or to a task that said no_log; if none of these
sinks exists, the module creates nothing. This runs on the controller: it tells the module whether a password
returned in the result has somewhere to go (option ``password_sink``), runs it, and vault-encrypts every password
of the result (also of a failed result) with the run's vault secret before Ansible - callbacks, logs, fact
caches, registered variables - ever sees it.

On the controller (connection local, no become) the module's code runs in this worker instead of a module
process (see _in_process): the token and the new passwords then never cross the worker's boundary in clear text,
which ANSIBLE_DEBUG (it prints module arguments and output) and ANSIBLE_KEEP_REMOTE_FILES (it keeps the AnsiballZ
file with the arguments) would otherwise show. Elsewhere the module runs as a process, as any module does.
"""

from __future__ import annotations

import os
import re
import time

from ansible import constants as C
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.isr.mqtt.plugins.module_utils import _portal
from ansible_collections.isr.mqtt.plugins.module_utils._plan import plain_type_names
from ansible_collections.isr.mqtt.plugins.plugin_utils._in_process import (
    PORTAL_ENV_FALLBACKS, module_args, run_here, run_main, warn_if_exposed)
from ansible_collections.isr.mqtt.plugins.plugin_utils._vault import (
    encrypt_many, loaded_secrets, pick_secret, vault_object)

PLAINTEXT_WARNING = ("%s: return_password is plaintext, so a new password is returned in clear text: callbacks, logs "
                     "and fact caches may show it. Prefer the default (vault-encrypted with the run's vault secret) or "
                     "no_log: true on the task.")


def rescue_dir():
    """Where a password that reached no sink is kept (0700 directory, 0600 files) rather than printed or lost."""
    try:
        home = C.config.get_config_value("ANSIBLE_HOME")
    except Exception:  # pragma: no cover - ANSIBLE_HOME exists from ansible-core 2.14
        home = "~/.ansible"
    return os.path.join(os.path.expanduser(home), "isr_mqtt_rescued_passwords")


def rescue(name, password):
    """Write one password to a new 0600 file under rescue_dir(); returns its path."""
    directory = rescue_dir()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64].lstrip(".") or "password"
    path = os.path.join(directory, "%s-%s-%d.password" % (safe, time.strftime("%Y%m%dT%H%M%S"), os.getpid()))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password)
    return path


class PasswordSinkAction(ActionBase):
    """Run the module, then hand every password of its result to a sink. Subclasses say where passwords are."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False  # the result must pass through here
    MODULE_MAIN = None  # the module's main(module_class): run in this worker when run_here() (see _in_process)

    def password_slots(self, result):
        """[(container, key, name)]: result[...] containers holding a password under key, name for messages."""
        raise NotImplementedError

    def run(self, tmp=None, task_vars=None):
        result = super(PasswordSinkAction, self).run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        mode = args.get("return_password") or "auto"
        if mode not in ("auto", "vaulted", "ciphertext", "plaintext"):
            raise AnsibleActionFail("return_password must be one of auto, vaulted, ciphertext, plaintext, got %r" % (mode,))
        secrets = loaded_secrets(self._loader)
        plain = mode == "plaintext" or (mode == "auto" and self._task.no_log)
        if mode == "plaintext":
            self._display.warning(PLAINTEXT_WARNING % self._task.resolved_action)
        # Vaulted needs a secret; without one only password_file (checked by the module) can take a password.
        args["password_sink"] = "result" if plain or secrets else "none"
        if not plain and secrets:
            pick_secret(secrets, args.get("vault_id"), "the result")  # a wrong vault_id fails before any request
        parent = os.getppid()
        result.update(self.run_module(args, task_vars, None if plain or not secrets else (secrets, args.get("vault_id"))))
        if "msg" in result:  # ansible-core's own option checks name internal classes (_AnsibleTaggedInt)
            result["msg"] = plain_type_names(result["msg"])
        if os.getppid() != parent:
            # ansible-playbook is gone: nobody will read this result, and writing it to the results queue would
            # block this orphaned worker for good, holding the passwords in memory.
            os._exit(1)
        if not plain:
            self.seal(result, secrets, args.get("vault_id"), as_text=mode == "ciphertext")
        return result

    def run_module(self, args, task_vars, vault):
        """The module's result. ``vault``: (secrets, vault_id) when passwords will be vaulted, else None."""
        del vault
        if self.MODULE_MAIN is not None and _portal.HAS_REQUESTS and run_here(self):
            return run_main(self.MODULE_MAIN, module_args(self, args, PORTAL_ENV_FALLBACKS), self._task.check_mode, self._task.diff)
        # Another host (or become, or no `requests` in the controller's Python): a module process, whose arguments
        # (the token, when it is an option) and output (a new password) ANSIBLE_DEBUG prints.
        warn_if_exposed(self)
        result = self._execute_module(module_args=args, task_vars=task_vars)
        self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def seal(self, result, secrets, vault_id, as_text=False):
        """Replace every password in ``result`` by a vaulted value (or, with no secret, a 0600 rescue file)."""
        slots = [(box, key, name) for box, key, name in self.password_slots(result)
                 if isinstance(box, dict) and isinstance(box.get(key), str) and box.get(key)]
        if not slots:
            return
        if not secrets:  # only after a failed password_file write: the password must be neither printed nor lost
            paths, lost = [], []
            for box, key, name in slots:
                try:
                    paths.append(rescue(name, box[key]))
                except OSError as exc:  # a full disk: never print it instead
                    lost.append("%s (%s)" % (name, exc))
                box[key] = None
            result["rescued_password_files"] = paths
            if paths:
                result["msg"] = "%s The new password(s) were written to 0600 files instead: %s" % (
                    result.get("msg", ""), ", ".join(paths))
            if lost:
                result["msg"] = ("%s The new password of %s could not be written anywhere either and is lost; free some disk "
                                 "space and rerun (isr.mqtt.mqtt_client rotates a password whose password_file does not exist; "
                                 "for a read-only subscriber set regenerate: true)." % (result.get("msg", ""), ", ".join(lost)))
            result["failed"] = True
            return
        sid, secret = pick_secret(secrets, vault_id, "the result")
        ciphertexts = encrypt_many(secrets, sid, secret, [box[key] for box, key, dummy in slots])
        for (box, key, dummy), ciphertext in zip(slots, ciphertexts):
            # ciphertext: the text only, which no template (not even debug: var=) decrypts
            box[key] = str(ciphertext) if as_text else vault_object(ciphertext, secrets)
            if key == "password" and "password_vault" in box:
                box["password_vault"] = str(ciphertext)
