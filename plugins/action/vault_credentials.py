# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller-side store of MQTT credentials with vault-encrypted passwords.

The store is plain YAML that include_vars can read::

    isr_mqtt_credentials:
      "dev-1":
        client_id: "pub-3f9c2a71d0b4"
        username: "pub-3f9c2a71d0b4"
        password: !vault |
          $ANSIBLE_VAULT;1.2;AES256;fleet
          ...

Passwords are encrypted here with the vault secret the run was started with; unchanged
entries keep their ciphertext byte for byte (vault salts are random, re-encrypting would
rewrite the whole file on every run).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile

import yaml

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.parsing.vault import VaultLib, is_encrypted
from ansible.plugins.action import ActionBase

try:  # ansible-core >= 2.19
    from ansible.parsing.vault import EncryptedString as _EncryptedString
    AnsibleVaultEncryptedUnicode = None
except ImportError:  # ansible-core 2.17 / 2.18
    _EncryptedString = None
    from ansible.parsing.yaml.objects import AnsibleVaultEncryptedUnicode

STORE_KEY = "isr_mqtt_credentials"
FIELDS = ("client_id", "username", "publish_topic", "history_topic_prefix", "rotated_at")
HEADER = (
    "# MQTT credentials managed by isr.mqtt.vault_credentials; passwords are ansible-vault encrypted.\n"
    "# Read with ansible.builtin.include_vars (needs the vault secret). Edit with care: entries are merged by label.\n"
)
NO_SECRET_MSG = (
    "no vault secret is loaded, so the MQTT passwords cannot be encrypted and nothing was written to %s. "
    "Start the run with --vault-id LABEL@prompt or --vault-password-file FILE "
    "(in AWX: attach a Vault credential), and pass its label as vault_id (role: fleet_vault_id) if there are several."
)

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Vaulted(str):
    """Ciphertext of a `!vault` scalar as read from the store (never decrypted on load)."""


class _StoreLoader(_SafeLoader):
    pass


def _construct_vault(loader, node):
    return Vaulted(loader.construct_scalar(node))


_StoreLoader.add_constructor("!vault", _construct_vault)


def read_store(path):
    """The store's entries {label: {field: value, "password": Vaulted}}; {} when the file does not exist."""
    try:
        with open(path, "rb") as handle:
            data = yaml.load(handle, Loader=_StoreLoader)  # nosec: a SafeLoader with one extra tag
    except IOError as exc:
        if exc.errno == errno.ENOENT:
            return {}
        raise AnsibleActionFail("cannot read the credential store %s: %s" % (path, exc))
    except yaml.YAMLError as exc:
        raise AnsibleActionFail("the credential store %s is not valid YAML (%s); fix or move it away" % (path, exc))
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get(STORE_KEY, {}), dict):
        raise AnsibleActionFail(
            "the credential store %s must be a mapping with the key %s (label -> entry); "
            "it looks like another file: choose another path" % (path, STORE_KEY))
    return data.get(STORE_KEY) or {}


def _quote(value):
    """A YAML scalar: JSON strings are valid YAML double-quoted scalars; null stays null."""
    return "null" if value is None else json.dumps(to_text(value), ensure_ascii=False)


def render_store(entries):
    lines = [HEADER, STORE_KEY + ":" + (" {}" if not entries else "")]
    for label in sorted(entries):
        entry = entries[label]
        lines.append("  %s:" % _quote(label))
        for field in FIELDS:
            lines.append("    %s: %s" % (field, _quote(entry.get(field))))
        password = entry.get("password")
        if password is None:
            lines.append("    password: null")
        else:
            lines.append("    password: !vault |")
            lines.extend("      " + line for line in to_text(password).strip().splitlines())
    return "\n".join(lines) + "\n"


def write_atomic(path, text):
    """Write ``text`` to ``path`` via a 0600 temp file in the same directory, fsync, rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(to_bytes(text))
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def vault_object(ciphertext, secrets):
    """A value that templates decrypt but serialisers (fact cache, callbacks) show as ciphertext."""
    if _EncryptedString is not None:
        return _EncryptedString(ciphertext=str(to_text(ciphertext)))
    value = AnsibleVaultEncryptedUnicode(str(to_text(ciphertext)))
    value.vault = VaultLib(secrets)
    return value


def _plaintext(value):
    """The password given to us (a str, or a vault object templated from an earlier run)."""
    if value is None:
        return None
    if _EncryptedString is None and hasattr(value, "data") and hasattr(value, "vault"):
        return to_text(value.data)
    return to_text(str(value))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    argument_spec = dict(
        path=dict(type="path"),
        credentials=dict(type="dict", default={}),
        vault_id=dict(type="str"),
        remove=dict(type="list", elements="str", default=[]),
        facts_from=dict(type="dict"),
    )

    def _secret(self, vault_id, path):
        secrets = list(getattr(self._loader, "_vault", None) and self._loader._vault.secrets or [])
        if vault_id:
            for sid, secret in secrets:
                if sid == vault_id:
                    return secrets, sid, secret
            raise AnsibleActionFail(
                "vault_id %r is not among the vault secrets of this run (%s); nothing was written to %s. "
                "Start the run with --vault-id %s@prompt (or %s@FILE), or set vault_id to one of the loaded ids"
                % (vault_id, ", ".join(sid for sid, dummy in secrets) or "none loaded", path, vault_id, vault_id))
        if not secrets:
            raise AnsibleActionFail(NO_SECRET_MSG % path)
        return secrets, secrets[0][0], secrets[0][1]

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        dummy, args = self.validate_argument_spec(
            argument_spec=self.argument_spec, required_one_of=[("path", "facts_from")], mutually_exclusive=[("path", "facts_from")])
        if args["facts_from"] is not None:
            return self._facts(result, args["facts_from"])
        path, incoming, remove = args["path"], args["credentials"], set(args["remove"])

        for label, cred in incoming.items():
            if not isinstance(cred, dict):
                raise AnsibleActionFail("credentials[%r] must be a dict (client_id, username, password, ...), got %s"
                                        % (label, type(cred).__name__))
        secrets, vault_id, secret = self._secret(args["vault_id"], path)
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise AnsibleActionFail("the directory of path %s does not exist; create it first (mode 0700 is a good choice)" % path)

        vault = VaultLib(secrets)
        lock_fd = None
        if not self._task.check_mode:
            lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # Re-read under the lock: a concurrent run may have written since our caller read it.
            if lock_fd is not None:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
            entries = read_store(path)
            added, updated, removed, skipped = [], [], [], []
            for label in sorted(remove):
                if label in entries and label not in incoming:
                    del entries[label]
                    removed.append(label)
            for label in sorted(incoming):
                cred = incoming[label]
                password = _plaintext(cred.get("password"))
                if not password:
                    skipped.append(label)
                    continue
                old = entries.get(label)
                new = dict((field, None if cred.get(field) is None else to_text(cred.get(field))) for field in FIELDS)
                if new["username"] is None:
                    new["username"] = new["client_id"]
                if old is not None and all(old.get(f) == new[f] for f in FIELDS) and self._same(vault, old.get("password"), password):
                    continue
                new["password"] = Vaulted(to_text(vault.encrypt(password, secret, vault_id=vault_id)))
                entries[label] = new
                (updated if old is not None else added).append(label)

            changed = bool(added or updated or removed)
            if changed and not self._task.check_mode:
                write_atomic(path, render_store(entries))
        finally:
            if lock_fd is not None:
                os.close(lock_fd)  # releases the flock

        if skipped:
            self._display.warning("isr.mqtt.vault_credentials: no password given for %s; those entries were left as they were"
                                  % ", ".join(skipped))
        result.update(
            changed=changed, path=path, added=added, updated=updated, removed=removed,
            credentials=dict(
                (label, dict([(f, entry.get(f)) for f in FIELDS]
                             + [("password", vault_object(entry["password"], secrets) if entry.get("password") else None),
                                ("password_vault", str(entry["password"]) if entry.get("password") else None)]))
                for label, entry in entries.items()),
        )
        if self._task.diff and changed:
            result["diff"] = {
                "before_header": path, "after_header": path,
                "before": "".join("%s: password (vaulted)\n" % label for label in sorted(updated + removed)),
                "after": "".join("%s: new password (vaulted)\n" % label for label in sorted(added + updated)),
            }
        return result

    def _facts(self, result, entry):
        """Per-host facts from one entry of an earlier result's ``credentials``.

        Templating an entry decrypts its ``password``, so the vault object is rebuilt from
        ``password_vault`` (ciphertext text): the facts then hold ciphertext only.
        """
        ciphertext = entry.get("password_vault")
        if ciphertext is not None and not is_encrypted(to_bytes(ciphertext)):
            raise AnsibleActionFail("facts_from.password_vault must be vault ciphertext ($ANSIBLE_VAULT;...): "
                                    "pass an entry of the credentials returned by isr.mqtt.vault_credentials")
        secrets = list(getattr(self._loader, "_vault", None) and self._loader._vault.secrets or [])
        facts = dict(("mqtt_" + field, entry.get(field)) for field in FIELDS)
        facts["mqtt_password"] = vault_object(ciphertext, secrets) if ciphertext else None
        result.update(changed=False, ansible_facts=facts)
        return result

    @staticmethod
    def _same(vault, ciphertext, password):
        """True when the stored ciphertext decrypts to ``password`` with a secret of this run."""
        if not ciphertext or not is_encrypted(to_bytes(ciphertext)):
            return False
        try:
            return to_text(vault.decrypt(to_bytes(ciphertext))) == password
        except Exception:  # another vault secret: re-encrypt with ours
            return False
