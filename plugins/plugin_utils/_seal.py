# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Integrity checks of the credential store's plain fields (client_id, username, topics, rotated_at).

The vault ciphertext protects the password only; an edited ``username`` or ``client_id`` next to it would be served
as it is, and the device could no longer log in. Each entry (and each journal record) therefore carries
``check: "<salt>:<mac>"``: HMAC-SHA256 over the label, the plain fields and the password's ciphertext, keyed with
PBKDF2-SHA256(vault secret, salt, 20000 rounds). Checking costs one key derivation per salt and run (~8 ms; a store
has one salt, a journal one per run) and a microsecond per entry: no decryption. The rounds are twice those of a vault
value, so the check makes the vault password no easier to guess; the salt is random, so no table of guesses serves
two stores.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

from ansible.module_utils.common.text.converters import to_bytes, to_text

from ansible_collections.isr.mqtt.plugins.plugin_utils._checked import compact
from ansible_collections.isr.mqtt.plugins.plugin_utils._store import FIELDS

SEAL_ROUNDS = 20000

EDITED = "its fields or password do not match its integrity check (edited by hand?)"
UNSEALED = "it has no integrity check although the store's other entries have one (added or edited by hand?)"


def _message(label, entry):
    values = [None if entry.get(field) is None else to_text(entry.get(field)) for field in FIELDS]
    return to_bytes(json.dumps([to_text(label), values, compact(entry.get("password"))], separators=(",", ":")))


def salt_of(check):
    """The salt (bytes) of a check value, or None when it is not one."""
    try:
        salt, mac = to_text(check).split(":")
        return bytes.fromhex(salt) if len(mac) == 64 else None
    except (ValueError, TypeError, AttributeError):
        return None


def store_salt(entries):
    """The salt of the store's checks (the first sealed entry's), None when no entry has one."""
    for label in sorted(entries, key=str):
        entry = entries[label]
        salt = salt_of(entry.get("check")) if isinstance(entry, dict) else None
        if salt:
            return salt
    return None


def has_checks(entries):
    """True when some entry carries a check: the store was written by a version that seals every entry."""
    return any(isinstance(entry, dict) and entry.get("check") is not None for entry in entries.values())


class Sealer(object):
    """Makes and verifies checks with the run's vault secrets (``secrets``: [(vault_id, VaultSecret)])."""

    def __init__(self, secrets, secret=None, salt=None):
        self.secrets = [one for dummy, one in secrets]
        self.secret = secret  # new checks are made with this one
        self.salt = salt or os.urandom(16)
        self._keys = {}

    def _key(self, secret, salt):
        cache = (id(secret), salt)
        if cache not in self._keys:
            self._keys[cache] = hashlib.pbkdf2_hmac("sha256", to_bytes(secret.bytes), salt, SEAL_ROUNDS)
        return self._keys[cache]

    def seal(self, label, entry):
        """The check value of ``entry`` (its fields as they are now) under ``label``."""
        mac = hmac.new(self._key(self.secret, self.salt), _message(label, entry), hashlib.sha256).hexdigest()
        return "%s:%s" % (self.salt.hex(), mac)

    def verify(self, label, entry):
        """True when the entry's check matches under a secret of this run; False when it does not; None without one."""
        check = entry.get("check")
        if check is None:
            return None
        salt = salt_of(check)
        if not salt:
            return False
        message = _message(label, entry)
        return any(hmac.compare_digest(to_text(check).split(":")[1],
                                       hmac.new(self._key(secret, salt), message, hashlib.sha256).hexdigest())
                   for secret in self.secrets)


def integrity_problems(sealer, entries, labels, legacy_ok):
    """{label: why} for the entries of ``labels`` whose check fails, or that have none while ``legacy_ok`` is False
    (a store some entry of which has a check: an unsealed entry there was added or stripped by hand)."""
    problems = {}
    for label in labels:
        entry = entries[label]
        if not isinstance(entry, dict):
            continue
        verdict = sealer.verify(label, entry)
        if verdict is False:
            problems[label] = EDITED
        elif verdict is None and not legacy_ok:
            problems[label] = UNSEALED
    return problems


def reseal(sealer, entries, fresh, legacy_ok, damaged=()):
    """Give every entry a check with the store's salt before the store is written.

    ``fresh``: labels whose entry this run made (sealed whatever they held); entries without a check are sealed when
    ``legacy_ok`` (a store written before checks existed: accepted once); checks with another salt (a journal's) that
    verify are renewed with the store's salt. ``damaged`` and entries whose check fails keep what they have.
    """
    prefix = sealer.salt.hex() + ":"
    for label in sorted(entries, key=str):
        entry = entries[label]
        if not isinstance(entry, dict) or label in damaged or not entry.get("password"):
            continue
        check = entry.get("check")
        if label in fresh or (check is None and legacy_ok) or (
                check is not None and not to_text(check).startswith(prefix) and sealer.verify(label, entry)):
            entries[label] = dict(entry, check=sealer.seal(label, entry))
