# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The password journal: every password a fleet run receives, vault-encrypted, on disk the moment it arrives.

isr.mqtt.mqtt_fleet (controller side, option ``journal``) appends one JSON line per received password to
``<store>.journal`` (0600, fsync after each line), so that a lost or truncated result, an OOM kill or a SIGKILL
of the worker loses no password that a rerun would have to rotate. isr.mqtt.vault_credentials folds the journal
into the store at ``<store>`` (the next run's read, or the persist step), then removes it. The journal only ever
holds ciphertext.
"""

from __future__ import annotations

import json
import os
import threading

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.parsing.vault import is_encrypted

from ansible_collections.isr.mqtt.plugins.plugin_utils._store import FIELDS
from ansible_collections.isr.mqtt.plugins.plugin_utils._vault import Vaulted

JOURNAL_SUFFIX = ".journal"


def journal_path(store_path):
    """The journal that belongs to the store at ``store_path``."""
    return store_path + JOURNAL_SUFFIX


class Journal(object):
    """Append-only, thread-safe: one line per record, each on disk (fsync) before append() returns."""

    def __init__(self, path):
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise AnsibleActionFail("the directory of journal %s does not exist; create it first" % path)
        self.path = path
        self._lock = threading.Lock()
        self._fd = None  # opened by the first record: a run that receives nothing leaves no file

    def append(self, record):
        line = to_bytes(json.dumps(record, sort_keys=True) + "\n")
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                os.fchmod(self._fd, 0o600)  # an older file with a wider mode
            os.write(self._fd, line)
            os.fsync(self._fd)

    def password(self, label, credential, ciphertext, sealer=None):
        """Journal one received password (``ciphertext``: its vault envelope) with the credential's fields;
        ``sealer`` (a _seal.Sealer) adds the integrity check that the entry folded from the record will carry."""
        record = dict((field, credential.get(field)) for field in FIELDS)
        record.update(label=label, password_vault=to_text(ciphertext))
        if sealer is not None:
            record["check"] = sealer.seal(label, dict(record, password=record["password_vault"]))
        self.append(record)

    def removed(self, labels):
        """Labels whose stored password no longer works (deleted, or a rotation whose answer was lost)."""
        for label in labels:
            self.append({"label": label, "remove": True})

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_journal(path):
    """The records of the journal at ``path`` in order ([] when there is none).

    A last line cut short by a kill is skipped (it was never acknowledged); any other bad line fails, naming it.
    """
    try:
        with open(path, "rb") as handle:
            lines = handle.read().split(b"\n")
    except IOError:
        if not os.path.exists(path):
            return []
        raise
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(to_text(line))
        except ValueError:
            if number == len(lines):  # no newline after it: the write was interrupted
                continue
            raise AnsibleActionFail("the password journal %s has a damaged line %d; move it away after checking it "
                                    "(it holds only vault ciphertext)" % (path, number))
        ciphertext = record.get("password_vault")
        if not isinstance(record.get("label"), str) or not (
                record.get("remove") is True or (isinstance(ciphertext, str) and is_encrypted(to_bytes(ciphertext)))):
            raise AnsibleActionFail("the password journal %s line %d is not a journal record; move it away" % (path, number))
        records.append(record)
    return records


def fold(entries, records):
    """Apply journal ``records`` to store ``entries`` {label: entry}, later records winning; returns changed labels."""
    changed = []
    for record in records:
        label = record["label"]
        if record.get("remove"):
            if entries.pop(label, None) is not None:
                changed.append(label)
            continue
        entry = dict((field, None if record.get(field) is None else to_text(record[field])) for field in FIELDS)
        entry["password"] = Vaulted(record["password_vault"])
        if record.get("check") is not None:
            entry["check"] = to_text(record["check"])  # verified with the store's entries (see _seal)
        if entries.get(label) != entry:
            entries[label] = entry
            changed.append(label)
    return changed
