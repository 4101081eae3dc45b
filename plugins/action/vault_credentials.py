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

``run_lock: acquire|release`` is a separate mode: a lock around a whole role run (list,
create, persist), so that two runs of one fleet never both see a client missing and both
create it. The lock file ``<path>.run-lock`` holds the pid of ansible-playbook (the worker's
parent) and the host name; it is created with O_EXCL and inspected under the flock of
``<path>.lock``, so a stale lock (its pid dead on this host) is replaced by exactly one run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import yaml

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.parsing.vault import VaultLib, is_encrypted
from ansible.plugins.action import ActionBase

from ansible_collections.isr.mqtt.plugins.module_utils._plan import type_name
from ansible_collections.isr.mqtt.plugins.plugin_utils._checked import CheckedCiphertexts, compact as _compact
from ansible_collections.isr.mqtt.plugins.plugin_utils._in_process import no_dumps_here
from ansible_collections.isr.mqtt.plugins.plugin_utils._journal import fold, journal_path, read_journal
from ansible_collections.isr.mqtt.plugins.plugin_utils._seal import Sealer, has_checks, integrity_problems, reseal, store_salt
from ansible_collections.isr.mqtt.plugins.plugin_utils._store import FIELDS, STORE_KEY, _StoreLoader, read_store
from ansible_collections.isr.mqtt.plugins.plugin_utils._vault import (
    PARALLEL_ENCRYPT_MIN, Vaulted, _EncryptedString, ciphertext_of, encrypt_many, loaded_secrets, pick_secret, vault_id_of,
    vault_object)

HEADER = (
    "# MQTT credentials managed by isr.mqtt.vault_credentials; passwords are ansible-vault encrypted.\n"
    "# Read with ansible.builtin.include_vars (needs the vault secret). Edit with care: entries are merged by label.\n"
)

LOCK_POLL_S = 0.5
ROUND_TRIP_CHUNK = 500  # entries rendered and read back at a time


def _quote(value):
    """A YAML scalar: JSON strings are valid YAML double-quoted scalars; null stays null."""
    return "null" if value is None else json.dumps(to_text(value), ensure_ascii=False)


def _store_head(empty):
    return HEADER + "\n" + STORE_KEY + ":" + (" {}" if empty else "") + "\n"


def _store_body(entries, labels):
    lines = []
    for label in labels:
        entry = entries[label]
        lines.append("  %s:" % _quote(label))
        for field in FIELDS:
            lines.append("    %s: %s" % (field, _quote(entry.get(field))))
        if entry.get("check") is not None:
            lines.append("    check: %s" % _quote(entry["check"]))
        password = entry.get("password")
        if password is None:
            lines.append("    password: null")
        else:
            lines.append("    password: !vault |")
            lines.extend("      " + line for line in to_text(password).strip().splitlines())
    return "".join(line + "\n" for line in lines)


def render_store(entries):
    return _store_head(not entries) + _store_body(entries, sorted(entries))


def check_round_trip(text, entries):
    """Labels whose entry would not read back from ``text`` as written (empty when the store is sound)."""
    try:
        parsed = yaml.load(text, Loader=_StoreLoader)[STORE_KEY] or {}  # nosec: a SafeLoader with one extra tag
    except (yaml.YAMLError, TypeError, KeyError):
        if len(entries) <= 1:
            return sorted(entries) or ["(the empty store)"]
        # Find the culprits: each entry alone (rare, so the cost does not matter).
        return [label for label in sorted(entries) if check_round_trip(render_store({label: entries[label]}), {label: entries[label]})]
    bad = sorted(set(entries) ^ set(parsed), key=repr)
    for label in set(entries) & set(parsed):
        want, got = entries[label], parsed[label] or {}
        if any(got.get(f) != (None if want.get(f) is None else to_text(want.get(f))) for f in FIELDS + ("check",)) or \
                _compact(got.get("password")) != _compact(want.get("password")):
            bad.append(label)
    return bad


def write_store(path, entries):
    """Render, read back and compare, then replace ``path`` atomically; a store that would not read back as written
    (or a failed write) leaves the old file as it was and fails naming the path."""
    # Rendered and read back in chunks: parsing the whole YAML of 10000 entries at once took ~100 MB.
    labels = sorted(entries)
    bodies = []
    bad = [] if labels else check_round_trip(_store_head(True), {})
    for start in range(0, len(labels), ROUND_TRIP_CHUNK):
        chunk = dict((label, entries[label]) for label in labels[start:start + ROUND_TRIP_CHUNK])
        bodies.append(_store_body(chunk, labels[start:start + ROUND_TRIP_CHUNK]))
        bad.extend(check_round_trip(_store_head(False) + bodies[-1], chunk))
    if bad:
        raise AnsibleActionFail(
            "the credential store %s was not replaced: the entries of %s would not read back as written (a label or "
            "field the YAML store cannot hold). The old store is unchanged; rename those labels." % (path, ", ".join(map(repr, bad))))
    try:
        write_atomic(path, [_store_head(not labels)] + bodies)
    except OSError as exc:
        raise AnsibleActionFail(
            "cannot write the credential store %s: %s. The old store is unchanged. Free space or make the directory "
            "writable, then rerun: passwords this run received and could not store are recovered by rotation "
            "(fleet_recover_missing)." % (path, exc.strerror or exc))


def probe_writable(path, size):
    """Fail naming ``path`` when its directory cannot take a store of ``size`` bytes (full disk, read-only).

    Called before any request to the portal: a run that could not store its passwords must not rotate them.
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".probe", dir=directory)
        with os.fdopen(fd, "wb") as handle:
            block = b"\0" * 65536
            left = size
            while left > 0:
                handle.write(block[:min(left, len(block))])
                left -= len(block)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise AnsibleActionFail(
            "the credential store %s cannot be written (%s, tested with %d bytes before any request to the portal); "
            "nothing was sent to the portal. Free space or make %s writable, then rerun." % (path, exc.strerror or exc, size, directory))
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)


def write_atomic(path, text):
    """Write ``text`` (a string, or a list of strings written one after the other) to ``path`` via a 0600 temp
    file in the same directory, fsync, rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            for piece in [text] if isinstance(text, str) else text:
                handle.write(to_bytes(piece))
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


def _vault_ids(entries):
    """The vault ids named in the ciphertext headers of the store ($ANSIBLE_VAULT;1.2;AES256;<id>)."""
    ids = set()
    for entry in entries.values():
        header = to_text((entry or {}).get("password") or "").strip().split("\n", 1)[0].split(";")
        if len(header) >= 4 and header[0] == "$ANSIBLE_VAULT":
            ids.add(header[3].strip())
    return sorted(ids)


def inspect_entries(vault, entries, labels=None, checked=None):
    """{label: why it is unusable} for the entries of ``labels`` (default all): no password, not vault ciphertext,
    or it does not decrypt with this run's secrets (truncated, bit-flipped, another vault password).
    ``checked``: a CheckedCiphertexts whose known-good ciphertexts are not decrypted again."""
    def why(label):
        password = (entries[label] or {}).get("password") if isinstance(entries[label], dict) else None
        if not password:
            return "no password"
        if not is_encrypted(to_bytes(to_text(password).strip())):
            return "the password is not vault ciphertext"
        if checked is not None and checked.digest(password) in checked.digests:
            return None
        try:
            vault.decrypt(to_bytes(to_text(password).strip()))
        except Exception:  # AnsibleVaultError, AnsibleError, binascii/ValueError on a damaged envelope
            return "the password does not decrypt with this run's vault secret (damaged)"
        return None

    labels = sorted(entries) if labels is None else labels
    workers = os.cpu_count() or 1
    if len(labels) <= PARALLEL_ENCRYPT_MIN or workers < 2:
        verdicts = [why(label) for label in labels]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:  # PBKDF2 runs in OpenSSL without the GIL
            verdicts = list(pool.map(why, labels))
    return dict((label, verdict) for label, verdict in zip(labels, verdicts) if verdict)


def _vaulted_labels(entries):
    """Labels whose password is vault ciphertext (a null or hand-edited clear-text password is not)."""
    return [label for label in sorted(entries) if isinstance(entries[label], dict) and entries[label].get("password") and (
            is_encrypted(to_bytes(to_text(entries[label]["password"]).strip())))]


def refuse_foreign_store(path, entries, damaged, vault_id):
    """Fail before anything else when no vaulted entry of the store decrypts with this run's secret."""
    vaulted = _vaulted_labels(entries)
    if vaulted and all(label in damaged for label in vaulted):
        needs = _vault_ids(entries)
        raise AnsibleActionFail(
            "none of the %d vaulted entries of the credential store %s decrypts with the vault secret of this run (vault id %r); "
            "nothing was sent to the portal and nothing was written. The store was written with vault id %s: start the "
            "run with --vault-id %s@prompt (or @FILE) and, if several secrets are loaded, set vault_id (role: fleet_vault_id)."
            % (len(vaulted), path, vault_id, " or ".join(repr(i) for i in needs) or "(none named in its headers)",
               needs[0] if needs else "ID"))


@contextlib.contextmanager
def flocked(path):
    """Hold an exclusive flock on ``path`` (created 0600 when missing), removed again before it is unlocked.

    So no empty lock file stays beside the store. A waiter whose flock was granted on a file removed meanwhile
    (its path now names another file, or none) tries again on the current one.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)  # releases the flock


def lock_owner():
    """Who holds a run lock: ansible-playbook (the parent of this forked worker) on this host."""
    return {"pid": os.getppid(), "host": socket.gethostname()}


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


class RunLock(object):
    """``<store>.run-lock``: one role run at a time per store. Inspected and changed only under the store's flock."""

    def __init__(self, store, owner=None):
        self.path = store + ".run-lock"
        self.guard = store + ".lock"
        self.owner = owner or lock_owner()

    def holder(self):
        """The holder {pid, host, since}; None when free; {} when unreadable (a crash between create and write)."""
        try:
            with open(self.path) as handle:
                text = handle.read()
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(text)
        except ValueError:
            return {}
        return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else {}

    def mine(self, holder):
        return bool(holder) and holder.get("pid") == self.owner["pid"] and holder.get("host") == self.owner["host"]

    def stale(self, holder):
        """Unreadable, or its process is gone; a holder on another host is never judged from here."""
        return not holder or (holder.get("host") == self.owner["host"] and not pid_alive(holder["pid"]))

    def try_acquire(self):
        """One attempt; returns (acquired, holder found: None, ours, stale or the live one we wait for)."""
        with flocked(self.guard):
            holder = self.holder()
            if self.mine(holder):
                return True, holder  # re-entrant: the role included twice in one playbook
            if holder is not None:
                if not self.stale(holder):
                    return False, holder
                os.unlink(self.path)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w") as handle:
                    json.dump(dict(self.owner, since=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())), handle)
            except OSError:
                os.unlink(self.path)  # not half a lock (a full disk)
                raise
            return True, holder

    def acquire(self, timeout, say):
        """Wait (polling) until the lock is ours; returns (seconds waited, stale holder replaced or None)."""
        start = time.monotonic()
        waiting_for = None
        while True:
            acquired, holder = self.try_acquire()
            waited = time.monotonic() - start
            if acquired:
                if waiting_for is not None:
                    say("isr.mqtt.vault_credentials: got the run lock %s after waiting %.0f s" % (self.path, waited))
                return waited, (holder if holder is not None and not self.mine(holder) else None)
            if waited >= timeout:
                raise AnsibleActionFail(
                    "another run (pid %s on %s, since %s) holds the run lock %s; waited %.0f s (lock_timeout). Wait for it "
                    "to finish, or remove the lock file if that process is gone."
                    % (holder["pid"], holder.get("host"), holder.get("since"), self.path, waited))
            if holder != waiting_for:
                waiting_for = holder
                say("isr.mqtt.vault_credentials: waiting up to %d s for the run lock %s held by pid %s on %s (another run "
                    "of this store)" % (timeout, self.path, holder["pid"], holder.get("host")))
            time.sleep(min(LOCK_POLL_S, max(timeout - waited, 0.01)))

    def release(self):
        """Remove the lock if it is ours; returns the holder found."""
        with flocked(self.guard):
            holder = self.holder()
            if self.mine(holder):
                os.unlink(self.path)
            return holder


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
        run_lock=dict(type="str", choices=["acquire", "release"]),
        lock_timeout=dict(type="int", default=600),
        space_for=dict(type="int", default=0),
        credentials_for=dict(type="list", elements="str"),
        return_password=dict(type="str", choices=["vaulted", "ciphertext"], default="vaulted"),
    )

    def _secret(self, vault_id, path):
        secrets = loaded_secrets(self._loader)
        sid, secret = pick_secret(secrets, vault_id, path)
        return secrets, sid, secret

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        no_dumps_here()  # this worker decrypts and encrypts passwords
        dummy, args = self.validate_argument_spec(
            argument_spec=self.argument_spec, required_one_of=[("path", "facts_from")], mutually_exclusive=[("path", "facts_from")])
        if args["facts_from"] is not None:
            return self._facts(result, args["facts_from"])
        if args["run_lock"] is not None:
            return self._run_lock(result, args)
        path, incoming, remove = args["path"], args["credentials"], set(args["remove"])
        wanted = None if args["credentials_for"] is None else set(args["credentials_for"])
        # ciphertext: the text only, which no template (not even debug: var=) decrypts
        returned = str if args["return_password"] == "ciphertext" else (lambda ciphertext: vault_object(ciphertext, secrets))

        for label, cred in incoming.items():
            if not isinstance(cred, dict):
                raise AnsibleActionFail("credentials[%r] must be a dict (client_id, username, password, ...), got %s"
                                        % (label, type_name(cred)))
        if not 0 <= args["space_for"] <= 1000000:
            raise AnsibleActionFail("space_for must be between 0 and 1000000 entries, got %d" % args["space_for"])
        secrets, vault_id, secret = self._secret(args["vault_id"], path)
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise AnsibleActionFail("the directory of path %s does not exist; create it first (mode 0700 is a good choice)" % path)

        vault = VaultLib(secrets)
        if not incoming and not remove and not self._task.check_mode and args["space_for"]:
            probe_writable(path, (os.path.getsize(path) if os.path.isfile(path) else 0) * 2 + 65536 + 1024 * args["space_for"])
        # Re-read under the lock: a concurrent run may have written since our caller read it.
        with (contextlib.nullcontext() if self._task.check_mode else flocked(path + ".lock")):
            entries = read_store(path)
            # A store written before entries had integrity checks (none has one): its entries are accepted once and
            # sealed when it is written. In a store that has checks, an entry without one was added by hand.
            legacy_ok = not has_checks(entries)
            sealer = Sealer(secrets, secret, store_salt(entries))
            # Passwords journaled by mqtt_fleet as they arrived (a run that was killed, or this run's): folded in
            # first, then checked like every other entry.
            journal = journal_path(path)
            records = read_journal(journal)
            folded = fold(entries, records)
            journal_read = bool(records)
            del records  # the entries hold them now; 10000 records are ~16 MB
            if incoming or remove:
                # Merging: one entry that decrypts shows the store is ours (the full check is the read's, once a run).
                tried = {}
                for label in _vaulted_labels(entries):
                    tried.update(inspect_entries(vault, entries, [label]))
                    if label not in tried:
                        break
                refuse_foreign_store(path, entries, tried, vault_id)
                damaged, unsealed = {}, []
            else:
                checked = CheckedCiphertexts(path, secret)
                damaged = inspect_entries(vault, entries, checked=checked)
                refuse_foreign_store(path, entries, damaged, vault_id)
                if not self._task.check_mode:
                    checked.save(entries[label]["password"] for label in _vaulted_labels(entries) if label not in damaged)
                # An edited username, client_id, topic or rotated_at (or a record of the journal) is damaged like a
                # password that does not decrypt: left out, so that the fleet role rotates it.
                damaged.update(integrity_problems(sealer, entries, [label for label in sorted(entries) if label not in damaged], legacy_ok))
                unsealed = [label for label in sorted(entries) if label not in damaged and entries[label].get("check") is None]
            added, updated, removed, skipped, pending = [], [], [], [], []
            for label in sorted(remove):
                if label in entries and label not in incoming:
                    del entries[label]
                    removed.append(label)
            for label in sorted(incoming):
                cred = incoming[label]
                old = entries.get(label)
                new = dict((field, None if cred.get(field) is None else to_text(cred.get(field))) for field in FIELDS)
                if new["username"] is None:
                    new["username"] = new["client_id"]
                # Vaulted by the modules' action plugin with this run's secret: stored as it is, never decrypted.
                ciphertext = ciphertext_of(cred.get("password_vault")) or ciphertext_of(cred.get("password"))
                if ciphertext and vault_id_of(ciphertext) == vault_id:
                    if old is None or old.get("password") != ciphertext or any(old.get(f) != new[f] for f in FIELDS):
                        entries[label] = dict(new, password=Vaulted(ciphertext))
                        (updated if old is not None else added).append(label)
                    continue
                password = to_text(vault.decrypt(to_bytes(ciphertext))) if ciphertext else _plaintext(cred.get("password"))
                if not password:
                    skipped.append(label)
                    continue
                if old is not None and all(old.get(f) == new[f] for f in FIELDS) and self._same(vault, old.get("password"), password):
                    continue
                pending.append((label, new, password))
                (updated if old is not None else added).append(label)
            ciphertexts = encrypt_many(secrets, vault_id, secret, [password for dummy, dummy2, password in pending])
            for (label, new, dummy), ciphertext in zip(pending, ciphertexts):
                entries[label] = dict(new, password=ciphertext)

            changed = bool(added or updated or removed or folded or unsealed)
            if changed and not self._task.check_mode:
                reseal(sealer, entries, set(added + updated), legacy_ok, damaged)
                write_store(path, entries)
            if journal_read and not self._task.check_mode:
                os.unlink(journal)  # only once the store holds every record

        if damaged:
            self._display.warning(
                "isr.mqtt.vault_credentials: %d entries of %s cannot be used and are left out of 'credentials' (the fleet "
                "role recovers them by rotation when fleet_recover_missing is on): %s"
                % (len(damaged), path, "; ".join("%s: %s" % (label, why) for label, why in sorted(damaged.items()))))
        if unsealed:
            self._display.warning(
                "isr.mqtt.vault_credentials: %d entries of %s have no integrity check (written by an older version of "
                "isr.mqtt); accepted this once, and %s" % (len(unsealed), path, "would be sealed (check mode)"
                                                           if self._task.check_mode else "sealed now"))
        if skipped:
            self._display.warning("isr.mqtt.vault_credentials: no password given for %s; those entries were left as they were"
                                  % ", ".join(skipped))
        result.update(
            changed=changed, path=path, added=added, updated=updated, removed=removed, journaled=folded, damaged=damaged,
            rotated_at=dict((label, entry.get("rotated_at")) for label, entry in entries.items() if label not in damaged),
            credentials=dict(
                (label, dict([(f, entry.get(f)) for f in FIELDS],
                             password=returned(entry["password"]) if entry.get("password") else None,
                             password_vault=str(entry["password"]) if entry.get("password") else None))
                for label, entry in entries.items() if label not in damaged and (wanted is None or label in wanted)),
        )
        if self._task.diff and changed:
            result["diff"] = {
                "before_header": path, "after_header": path,
                "before": "".join("%s: password (vaulted)\n" % label for label in sorted(updated + removed)),
                "after": "".join("%s: new password (vaulted)\n" % label for label in sorted(added + updated)),
            }
        return result

    def _run_lock(self, result, args):
        """Take or give back the run lock of the store (never a change: it is gone when the run ends)."""
        path = args["path"]
        if path is None or args["credentials"] or args["remove"]:
            raise AnsibleActionFail("run_lock needs path and takes neither credentials nor remove: persist in another task")
        if not 0 <= args["lock_timeout"] <= 86400:
            raise AnsibleActionFail("lock_timeout must be between 0 and 86400 seconds, got %d" % args["lock_timeout"])
        if os.path.isdir(path):
            raise AnsibleActionFail("path %s is a directory; name the store file in it" % path)
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise AnsibleActionFail("the directory of path %s does not exist; create it first (mode 0700 is a good choice)" % path)
        lock = RunLock(path)
        result.update(changed=False, run_lock={"path": lock.path, "state": args["run_lock"], "waited": 0.0})
        if self._task.check_mode:
            result["msg"] = "check mode: the run lock is not taken"
            return result
        if args["run_lock"] == "release":
            holder = lock.release()
            if not lock.mine(holder):
                result["run_lock"]["state"] = "not held"  # a failed acquire, or taken over as stale
            return result
        try:
            waited, stale = lock.acquire(args["lock_timeout"], self._display.display)
        except OSError as exc:
            raise AnsibleActionFail("cannot take the run lock %s: %s; nothing was sent to the portal. Free space or make "
                                    "the directory writable, then rerun." % (lock.path, exc.strerror or exc))
        result["run_lock"]["waited"] = round(waited, 1)
        if stale is not None:
            self._display.warning("isr.mqtt.vault_credentials: took over the run lock %s of a run that is gone (%s)"
                                  % (lock.path, "pid %s on %s" % (stale["pid"], stale["host"]) if stale else "unreadable"))
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
        secrets = loaded_secrets(self._loader)
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
