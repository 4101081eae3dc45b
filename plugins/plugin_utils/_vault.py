# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller-side vault helpers: encrypt a password with the run's vault secret into a real vaulted value.

Shared by the action plugins that put a vault in front of the modules (mqtt_client, mqtt_subscriber, mqtt_fleet)
and by isr.mqtt.vault_credentials, so that a password is encrypted once, where it arrives, and stored as it is.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.parsing.vault import VaultLib, is_encrypted, parse_vaulttext_envelope

try:  # ansible-core >= 2.19
    from ansible.parsing.vault import EncryptedString as _EncryptedString
    AnsibleVaultEncryptedUnicode = None
except ImportError:  # ansible-core 2.17 / 2.18
    _EncryptedString = None
    from ansible.parsing.yaml.objects import AnsibleVaultEncryptedUnicode

PARALLEL_ENCRYPT_MIN = 50  # below this, starting threads is not worth it

NO_SECRET_HINT = ("start the run with --vault-id LABEL@prompt or --vault-password-file FILE "
                  "(in AWX: attach a Vault credential)")


class Vaulted(str):
    """Ciphertext of a `!vault` scalar (never decrypted on load)."""


def loaded_secrets(loader):
    """The vault secrets this run was started with: [(vault_id, secret)], maybe empty."""
    vault = getattr(loader, "_vault", None)
    return list(vault.secrets or []) if vault is not None else []


def pick_secret(secrets, vault_id, where):
    """(vault_id, secret) to encrypt with: the one named ``vault_id``, else the first loaded one.

    Raises AnsibleActionFail naming ``where`` (what was not written) when there is none.
    """
    if vault_id:
        for sid, secret in secrets:
            if sid == vault_id:
                return sid, secret
        raise AnsibleActionFail(
            "vault_id %r is not among the vault secrets of this run (%s); nothing was written to %s. "
            "Start the run with --vault-id %s@prompt (or %s@FILE), or set vault_id to one of the loaded ids"
            % (vault_id, ", ".join(sid for sid, dummy in secrets) or "none loaded", where, vault_id, vault_id))
    if not secrets:
        raise AnsibleActionFail("no vault secret is loaded, so the MQTT passwords cannot be encrypted and nothing was "
                                "written to %s. To fix it, %s, and pass its label as vault_id (role: fleet_vault_id) "
                                "if there are several." % (where, NO_SECRET_HINT))
    return secrets[0]


def encrypt_many(secrets, vault_id, secret, passwords):
    """Vault-encrypt each password, each with its own random salt (never a fixed one: AES-CTR would repeat).

    PBKDF2 (~4 ms CPU per value) runs in OpenSSL without the GIL, so threads on every core help: 1000 passwords on
    2 cores took 3.8-4.0 s serially, 1.9-2.3 s in 2 threads (a fork process pool: the same, with more risk).
    """
    vault = VaultLib(secrets)

    def one(password):
        return Vaulted(to_text(vault.encrypt(to_text(password), secret, vault_id=vault_id)))

    workers = os.cpu_count() or 1
    if len(passwords) <= PARALLEL_ENCRYPT_MIN or workers < 2:
        return [one(password) for password in passwords]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, passwords))


def vault_object(ciphertext, secrets):
    """A value that templates decrypt but serialisers (fact cache, callbacks) show as ciphertext."""
    if _EncryptedString is not None:
        return _EncryptedString(ciphertext=str(to_text(ciphertext)))
    value = AnsibleVaultEncryptedUnicode(str(to_text(ciphertext)))
    value.vault = VaultLib(secrets)
    return value


def ciphertext_of(value):
    """The vault ciphertext (text) of a vault object or of ciphertext text; None for anything else (plaintext)."""
    raw = getattr(value, "_ciphertext", None)
    if raw is None and isinstance(value, str) and is_encrypted(to_bytes(value)):
        raw = value
    return to_text(raw) if raw is not None else None


def vault_id_of(ciphertext):
    """The vault id in a ciphertext's header ($ANSIBLE_VAULT;1.2;AES256;<id>), or None (1.1 headers have none)."""
    try:
        return parse_vaulttext_envelope(to_bytes(ciphertext))[3]
    except Exception:  # not a vault envelope
        return None
