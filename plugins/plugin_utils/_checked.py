# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which ciphertexts of a credential store are known to open with the run's vault secret (see CheckedCiphertexts)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

from ansible.module_utils.common.text.converters import to_bytes, to_text

from ansible_collections.isr.mqtt.plugins.module_utils._run_guard import lock_dir


def compact(value):
    """A ciphertext without its line breaks and spaces (how the store's YAML may have re-wrapped it)."""
    return None if value is None else "".join(to_text(value).split())


class CheckedCiphertexts(object):
    """Ciphertexts that decrypted with the run's secret before, so a rerun need not pay PBKDF2 (~4 ms) per entry again.

    Kept in the private lock directory (0600), per store: a key derived from the secret with PBKDF2 (20000
    rounds, random salt: twice the rounds of a vault value, so it makes the password no easier to guess), and
    SHA-256(key + ciphertext) of every ciphertext seen to decrypt. Another secret derives another key (nothing counts as
    checked); a changed ciphertext (truncated, a flipped bit) has another digest and is decrypted again.
    """

    def __init__(self, store, secret):
        self.path = os.path.join(lock_dir(), "store-%s.checked" % hashlib.sha256(to_bytes(os.path.abspath(store))).hexdigest()[:40])
        try:
            with open(self.path) as handle:
                data = json.load(handle)
            salt, proof, digests = bytes.fromhex(data["salt"]), data["proof"], set(data["digests"])
        except (OSError, ValueError, KeyError, TypeError):
            salt, proof, digests = os.urandom(16), None, set()
        self.key = hashlib.pbkdf2_hmac("sha256", to_bytes(secret.bytes), salt, 20000)
        self.salt = salt
        self.digests = digests if proof == hashlib.sha256(self.key).hexdigest() else set()

    def digest(self, ciphertext):
        return hashlib.sha256(self.key + to_bytes(compact(ciphertext))).hexdigest()

    def save(self, ciphertexts):
        """Keep the digests of ``ciphertexts`` (the store's current good entries) only."""
        keep = set(self.digest(c) for c in ciphertexts)
        if keep != self.digests:
            self._write(keep)

    def vouch(self, ciphertexts):
        """Add ``ciphertexts`` that this run encrypted itself (mqtt_fleet's journal): the store's next read need not
        decrypt them to know they open with this secret."""
        self._write(self.digests | set(self.digest(c) for c in ciphertexts))

    def _write(self, keep):
        self.digests = keep
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self.path), prefix=".checked.")
        with os.fdopen(fd, "w") as handle:
            json.dump({"salt": self.salt.hex(), "proof": hashlib.sha256(self.key).hexdigest(), "digests": sorted(keep)}, handle)
        os.rename(tmp, self.path)
