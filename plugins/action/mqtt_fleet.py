# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller side of isr.mqtt.mqtt_fleet: every password in RV(credentials) leaves the run vault-encrypted.

Each credential then also carries ``password_vault`` (the ciphertext as text), which isr.mqtt.vault_credentials
stores as it is: one encryption per password, where it arrives.

On the controller (connection local, e.g. delegate_to: localhost) the module's code runs here, in the worker,
instead of in a module process: its result cannot be lost or cut on the way back, and with ``journal`` every
password is vault-encrypted and written to the journal (0600, fsync) the moment the portal answers, so that a
kill of the run loses none (isr.mqtt.vault_credentials folds the journal into the store).
"""

from __future__ import annotations

import functools
import threading
import time

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.parsing.vault import VaultLib

from ansible_collections.isr.mqtt.plugins.module_utils import _run_guard
from ansible_collections.isr.mqtt.plugins.module_utils._plan import count_actions
from ansible_collections.isr.mqtt.plugins.modules import mqtt_fleet as fleet_module
from ansible_collections.isr.mqtt.plugins.plugin_utils._checked import CheckedCiphertexts
from ansible_collections.isr.mqtt.plugins.plugin_utils._in_process import InProcessModule, ModuleDone
from ansible_collections.isr.mqtt.plugins.plugin_utils._journal import JOURNAL_SUFFIX, Journal
from ansible_collections.isr.mqtt.plugins.plugin_utils._password_sink import PasswordSinkAction
from ansible_collections.isr.mqtt.plugins.plugin_utils._seal import Sealer
from ansible_collections.isr.mqtt.plugins.plugin_utils._vault import _EncryptedString, pick_secret, vault_object

WAIT_LINE_EVERY = 50.0  # seconds between two rate-limit progress lines (at least one a minute)
ENV_FALLBACKS = (("portal_url", "ISR_PORTAL_URL"), ("api_token", "ISR_PORTAL_TOKEN"))


def _plain(value):
    """A vaulted option value (a `!vault` literal in the task) as the text a module process would get."""
    if _EncryptedString is not None and isinstance(value, _EncryptedString):
        return to_text(str(value))
    if not isinstance(value, str) and hasattr(value, "data") and hasattr(value, "vault"):
        return to_text(value.data)
    return value


class ActionModule(PasswordSinkAction):

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        purged = result.get("purged")
        if purged and isinstance(purged, list) and not self._task.no_log:
            # Deleting other clients is the one irreversible thing the module does: always say which (no secret here).
            self._display.display("%s: purge %s %d clients: %s" % (
                self._task.get_name(), "would delete" if self._task.check_mode else "deleted", len(purged),
                ", ".join("%s (%s)" % (row.get("label"), row.get("client_id")) for row in purged if isinstance(row, dict))))
        return result

    def password_slots(self, result):
        credentials = result.get("credentials")
        if not isinstance(credentials, dict):
            return []
        slots = []
        for label in sorted(credentials):
            entry = credentials[label]
            if not isinstance(entry, dict):
                continue
            password = entry.get("password")
            if isinstance(password, str) and entry.get("password_vault") and password == entry["password_vault"]:
                continue  # journaled (below) and returned as ciphertext text: sealed already
            entry.setdefault("password_vault", None)
            slots.append((entry, "password", "%s" % label))
        return slots

    def run_module(self, args, task_vars, vault):
        path = args.get("journal")
        if getattr(self._connection, "transport", None) != "local":
            if path:
                raise AnsibleActionFail("journal needs the task to run on the controller (delegate_to: localhost or "
                                        "connection: local): the journal is written where the store is")
            return super(ActionModule, self).run_module(args, task_vars, vault)
        if path and vault is None:
            raise AnsibleActionFail("journal needs passwords vault-encrypted (it holds only ciphertext): start the run "
                                    "with a vault secret and leave return_password and no_log at their defaults")
        args = dict(args)
        environment = {}
        self._compute_environment_string(environment)  # the task's environment: keyword, as a module would see it
        for option, variable in ENV_FALLBACKS:
            if args.get(option) is None and environment.get(variable):
                args[option] = environment[variable]
        if args.get("api_token") is not None:
            args["api_token"] = _plain(args["api_token"])
        journal = Journal(path) if path and not self._task.check_mode else None
        hooks = {"progress": self._progress, "waiting": self._waiting}
        self._started, self._pace, self._last_wait_line = time.monotonic(), None, 0.0
        self._wait_lock = threading.Lock()
        journaled = {}  # label -> ciphertext of its last password: encrypted once, for the journal and the result
        if journal:
            hooks["keep_password"] = self._journaling(journal, vault, journaled)
        module_class = functools.partial(InProcessModule, args, self._task.check_mode, self._task.diff, hooks=hooks)
        try:
            fleet_module.main(module_class)
            raise AnsibleActionFail("isr.mqtt.mqtt_fleet ended without a result")  # pragma: no cover
        except ModuleDone as done:
            result = done.result
            as_text = args.get("return_password") == "ciphertext"
            for label, ciphertext in journaled.items():
                credential = (result.get("credentials") or {}).get(label)
                if isinstance(credential, dict) and credential.get("password"):
                    credential.update(password=ciphertext if as_text else vault_object(ciphertext, vault[0]),
                                      password_vault=ciphertext)
            if journal:
                journal.removed(sorted(set(result.get("deleted") or []) | set(result.get("unconfirmed") or [])))
            if args.get("return_credentials") == "not_journaled" and isinstance(result.get("credentials"), dict):
                # The journal (on disk, fsynced) holds the others; a password whose record failed stays here.
                result["credentials"] = dict((label, credential) for label, credential in result["credentials"].items()
                                             if label not in journaled)
        finally:
            _run_guard.release_all()  # the account lock a module process would have released by ending
            if journal:
                journal.close()
        if journaled and path.endswith(JOURNAL_SUFFIX):
            # Encrypted here with the run's secret: the store's read that folds the journal need not decrypt them again.
            CheckedCiphertexts(path[:-len(JOURNAL_SUFFIX)], pick_secret(vault[0], vault[1], path)[1]).vouch(journaled.values())
        return result

    def _progress(self, number, batches, done):
        """One line per batch done, while the run goes on (the task's result comes only at its end)."""
        self._display.display("%s: batch %d/%d: %s" % (self._task.get_name(), number, batches, count_actions(done)))

    def _waiting(self, seconds, done, total):
        """A line with counts and an ETA while the rate limit holds the run (each waiting thread calls this)."""
        now = time.monotonic()
        with self._wait_lock:
            if now - self._last_wait_line < WAIT_LINE_EVERY:
                return
            self._last_wait_line = now
            if self._pace is None:  # seconds per action before the first wait
                self._pace = (now - self._started) / max(done, 1)
        finish = time.time() + seconds + (total - done) * self._pace
        self._display.display(
            "%s: rate limit: %d of %d actions done, waiting %.0f s for the portal's next budget window; ETA %s "
            "(at the pace before the wait, if the rest fits the next window)"
            % (self._task.get_name(), done, total, seconds, time.strftime("%H:%M:%S UTC", time.gmtime(finish))))

    @staticmethod
    def _journaling(journal, vault, journaled):
        """keep_password hook: vault-encrypt the password in the writer's thread and journal it before going on."""
        secrets, vault_id = vault
        sid, secret = pick_secret(secrets, vault_id, journal.path)
        vaultlib = VaultLib(secrets)
        sealer = Sealer(secrets, secret)  # the integrity check of each record's fields (a salt of its own per run)

        def keep_password(label, credential):
            ciphertext = to_text(vaultlib.encrypt(to_text(credential["password"]), secret, vault_id=sid))
            journal.password(label, credential, ciphertext, sealer)
            journaled[label] = ciphertext  # the module's result keeps the plaintext until run_module seals it
        return keep_password
