#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mqtt_fleet
short_description: Reconcile a whole fleet of MQTT clients on the iShareRadio MQTT portal in one run
version_added: 0.1.0
description:
  - Brings many MQTT clients (I(Single device) publisher credentials) in line with a list, in one module run.
    One list request for the portal's state (all pages), one shared plan, then only the necessary writes,
    several at a time over one HTTP session.
  - Clients are matched by label. Labels must be unique in O(clients); a label held by several portal clients
    fails the run before any write, naming their client_ids.
  - Every password the run receives (create, rotate, recovery) is returned in RV(credentials), also when the run
    fails half way, so nothing is lost. The passwords are B(vault-encrypted) with the run's vault secret (see
    O(return_password)); store them with M(isr.mqtt.vault_credentials), which keeps that ciphertext as it is. The role
    P(isr.mqtt.fleet#role) does both.
author:
  - isr.mqtt maintainers (@isr-mqtt)
extends_documentation_fragment:
  - isr.mqtt.portal
  - isr.mqtt.attributes
  - isr.mqtt.attributes.action_group
  - isr.mqtt.password_sink
attributes:
  check_mode:
    support: full
    details: Check mode lists the portal, makes the same plan as a real run and returns its RV(counts), RV(actions) and
      RV(purged) (the rows a purge would delete); it sends no write. A purge over O(purge_max) fails in check mode too.
  diff_mode:
    support: full
    details: The diff lists, per changed label, the settings before and after and whether the password is rotated (a purged
      client as its row before and null after); never a password.
options:
  clients:
    description:
      - The fleet. Each item is a dict with the keys C(label) (required, 1 to 64 characters, no control characters),
        C(allow_publish) (bool, default V(true)), C(allow_subscribe) (bool, default V(false)) and C(paused)
        (bool; when not set or null, an existing client keeps its pause state and a new client is active).
      - An explicit null for C(label), C(allow_publish) or C(allow_subscribe) is refused before any request.
      - Errors name the item, for example C(clients[3].label).
    type: list
    elements: dict
    required: true
  purge:
    description:
      - Delete portal clients whose label is not in O(clients), but only those whose label matches O(purge_match),
        so that clients managed by others are never touched.
    type: bool
    default: false
  purge_match:
    description:
      - Python regular expression (searched, anchor it with C(^...$) for a full match) that a label must match
        for O(purge) to delete its client. Required when O(purge=true), and then it must not be empty or blank
        (an empty pattern matches every label).
      - The fleet's own naming. Unless O(purge_allow_foreign=true), it must begin with C(^) (or C(\A)) followed by
        literal text that a label of O(clients) or O(keep_labels) also begins with (when there is any; an empty O(clients)
        deletes by the literal prefix alone), for example C(^site-alpha-) for C(site-alpha-01); so a purge can only delete
        labels that begin with the fleet's own prefix. Patterns such as
        C(.*), C(^), C(.), C(x?), C(^[a-z]) or C(^a|b), and C((?i)) or C((?m)) flags, are refused before any request.
    type: str
  purge_allow_foreign:
    description:
      - Let O(purge_match) be any regular expression (except an empty or blank one), also one that matches labels
        outside the fleet's own naming (see O(purge_match)), for example to clean up clients another tool made.
        O(purge_max) still applies.
    type: bool
    default: false
  purge_max:
    description:
      - The most clients one run may delete by O(purge). When the purge would delete more, the run fails before any
        write (creates included), naming every label and client_id it would delete; raise it to allow them.
      - V(0) refuses any delete.
    type: int
    default: 10
  rotate:
    description: Labels (in O(clients)) whose password is rotated. A rotation is always a change.
    type: list
    elements: str
    default: []
  recover:
    description:
      - Labels whose password was lost. An existing client is rotated to get a new password; a client that is
        created gets one anyway.
    type: list
    elements: str
    default: []
  recover_missing:
    description:
      - V(true) recovers (rotates) every existing client in O(clients) whose label is not in O(known_labels), that is,
        whose password the caller does not hold. Requires O(known_labels).
      - A lost store must not rotate the whole fleet (every delivered password would stop working), so V(true) fails
        before any write when the portal holds clients of O(clients) and O(known_labels) holds none of them (an
        emptied, deleted or C({}) store), or when more than 10 of them and more than 10% are missing.
      - V(force) recovers them anyway (a store that is lost for good); V(false) recovers none.
    type: raw
    default: false
  known_labels:
    description:
      - Labels whose password the caller holds (for example the labels of a credential store). Used only with
        O(recover_missing=true); no extra request is made to find the others.
    type: list
    elements: str
  known_rotated_at:
    description:
      - Label to the C(rotated_at) stored with its password (for example RV(isr.mqtt.vault_credentials#module:rotated_at)).
        With O(recover_missing=true), a client whose C(rotated_at) on the portal is later had its password rotated
        outside this collection (portal UI, another tool); the stored password no longer works, so it is recovered
        (rotated) too and named in RV(rotated_elsewhere).
      - Labels without a stored C(rotated_at), or with one that is not an ISO 8601 timestamp, are not compared.
    type: dict
    default: {}
  keep_labels:
    description:
      - With O(purge), labels that are never deleted although they are not in O(clients).
      - Lets a caller reconcile a big fleet in batches (the role P(isr.mqtt.fleet#role) purges in its first batch and
        keeps the labels of the other batches).
    type: list
    elements: str
    default: []
  store:
    description:
      - The credential store (a path on the controller) that keeps the passwords of this fleet; the role
        P(isr.mqtt.fleet#role) sets it to its C(fleet_store).
      - When set, the labels of O(clients) are recorded for that store (in C(~/.ansible/isr_mqtt_locks), per portal account),
        and a fleet whose labels another store on this controller keeps is refused before any request to the portal,
        because two stores cannot both hold a working password for one client (each run would rotate the other's), and two runs
        into two stores at once used to create duplicates.
    type: path
  parallel:
    description: How many write requests run at the same time (1 to 32), over one HTTP session.
    type: int
    default: 8
  return_clients:
    description:
      - Which clients RV(clients) lists. V(all) lists every client of O(clients); V(changed) only those with an action
        in RV(actions); V(none) none. For big fleets V(none) or V(changed) keeps the result (and the controller's
        memory) small; the role P(isr.mqtt.fleet#role) uses V(none).
    type: str
    choices: [all, changed, none]
    default: all
  return_credentials:
    description:
      - Which passwords RV(credentials) holds. V(all) every password this run received; V(not_journaled), with
        O(journal), only those whose journal record could not be written (a full disk, for example), because the
        journal holds the others. For big fleets V(not_journaled) keeps the result (and the controller's memory)
        small; the role P(isr.mqtt.fleet#role) uses it and stores what the journal misses from RV(credentials).
    type: str
    choices: [all, not_journaled]
    default: all
  batch_size:
    description:
      - Labels with something to do per batch; V(0) means one batch. The fleet is listed and planned once; between
        batches a line of progress is printed (when the task runs on the controller) and O(max_duration) is checked.
    type: int
    default: 0
  max_duration:
    description:
      - Seconds after which no new batch is started; the run then ends without failing, with RV(complete=false), every
        password received returned, and a warning. A rerun continues with the rest. V(0) means no limit.
    type: int
    default: 0
  journal:
    description:
      - A file on the controller to which every password received is written, vault-encrypted with the run's vault secret,
        the moment the portal answers (one JSON line each, mode C(0600), fsync), so that a run killed half way loses none.
      - M(isr.mqtt.vault_credentials) folds C(PATH.journal) into the store at C(PATH) and removes it; the role
        P(isr.mqtt.fleet#role) uses C(<fleet_store>.journal). Needs a vault secret and the task on the controller
        (C(delegate_to=localhost) or C(connection=local)).
    type: path
notes:
  - Requests sent = list pages + one per necessary write (+ one rotation for each create whose answer was lost).
  - Writes for one label run in order (create before pause; rotate last). Deletes run before creates, freeing plan slots.
  - After a run that received passwords (creates, rotations), the portal is listed once more (one list request, all pages).
    A label of the fleet now held by several clients (another run, for example into another credential store or from
    another controller, created it at the same time), or a password rotated again after this run received it, fails
    the run naming them, with every password received returned. Before any write, a label of the fleet held by several
    clients fails the run too.
  - After the first failed write no new label is started; the failure result carries RV(credentials), RV(counts)
    and RV(clients) for what was done, and RV(unconfirmed) for labels whose password may have changed unseen.
  - Runs on the controller (C(delegate_to=localhost) or C(connection=local)). There its action plugin runs the module's
    code in the controller's worker process (no module process), so the result cannot be lost on the way back, and the
    client waits for the portal's rate-limit window rather than send a request it knows would be refused
    (it counts C(X-RateLimit-Remaining) down itself), printing a line with counts and an ETA at least once a minute.
seealso:
  - module: isr.mqtt.mqtt_client
  - module: isr.mqtt.vault_credentials
"""

EXAMPLES = r"""
# Run with a vault secret (ansible-playbook --vault-id fleet@prompt): every password comes back vault-encrypted.
- name: Provision three devices
  isr.mqtt.mqtt_fleet:
    clients:
      - label: site-alpha-01
      - label: site-alpha-02
        allow_subscribe: true
      - label: site-alpha-03
        paused: true
  delegate_to: localhost
  run_once: true
  register: fleet

- name: Store the new passwords (the ciphertext is stored as it is)
  isr.mqtt.vault_credentials:
    path: "{{ playbook_dir }}/credentials.yml"
    credentials: "{{ fleet.credentials }}"
  delegate_to: localhost
  run_once: true
  register: store

- name: Remove site-alpha clients that are no longer listed, rotate one password
  isr.mqtt.mqtt_fleet:
    clients: "{{ devices }}"
    purge: true
    purge_match: "^site-alpha-"
    rotate: [site-alpha-02]
    return_clients: changed  # big fleets: only the clients this run changed
  vars:
    devices:
      - label: site-alpha-01
      - label: site-alpha-02
        allow_subscribe: true
  register: fleet

- name: Store the rotated password, drop the deleted client and any unconfirmed rotation
  isr.mqtt.vault_credentials:
    path: "{{ playbook_dir }}/credentials.yml"
    credentials: "{{ fleet.credentials | default({}) }}"
    remove: "{{ fleet.deleted | default([]) + fleet.unconfirmed | default([]) }}"
  register: store

- name: Recover the passwords missing from the store (rotates clients it has no entry for)
  isr.mqtt.mqtt_fleet:
    clients: "{{ devices }}"
    recover_missing: true
    known_labels: "{{ store.credentials.keys() | list }}"
  vars:
    devices:
      - label: site-alpha-01
      - label: site-alpha-02
        allow_subscribe: true
  register: fleet
"""

RETURN = r"""
counts:
  description: What was done (in check mode, what would be done). C(unchanged) counts labels needing nothing.
  returned: always
  type: dict
  sample: {created: 2, paused: 1, resumed: 0, updated: 0, rotated: 0, deleted: 0, unchanged: 997}
clients:
  description:
    - The clients of O(clients) (all, changed or none, see O(return_clients)) as the portal has them after the run (in
      check mode, as predicted; fields the portal generates are null for clients still to be created). No passwords.
  returned: always
  type: list
  elements: dict
  sample:
    - {client_id: pub-3f9c2a71d0b4, label: site-alpha-01, username: pub-3f9c2a71d0b4, paused: false,
       allow_publish: true, allow_subscribe: false, topic: "550e.../pub-3f9c2a71d0b4/#",
       history_topic_prefix: "550e.../pub-3f9c2a71d0b4", publish_topic: "550e.../pub-3f9c2a71d0b4/",
       created_at: "2026-11-26T00:00:00Z", rotated_at: "2026-11-26T00:00:00Z"}
credentials:
  description:
    - Label to credential, for every password this run received (also in a failure result), or only those the journal
      misses with O(return_credentials=not_journaled). Empty in check mode.
    - C(password) is vault-encrypted with the run's vault secret and C(password_vault) is the same ciphertext as text
      (plain text only under C(no_log=true) or with O(return_password=plaintext), and then without C(password_vault)).
      Store them with M(isr.mqtt.vault_credentials).
  returned: always
  type: dict
  sample:
    site-alpha-01: {client_id: pub-3f9c2a71d0b4, username: pub-3f9c2a71d0b4, password: "<secret>",
                    publish_topic: "550e.../pub-3f9c2a71d0b4/", history_topic_prefix: "550e.../pub-3f9c2a71d0b4",
                    rotated_at: "2026-11-26T00:00:00Z"}
actions:
  description: "The actions done (check mode, planned), in order per label; C(fields) of a recovery rotate is C({reason: recover})."
  returned: always
  type: list
  elements: dict
  sample: [{action: create, label: site-alpha-01, client_id: pub-3f9c2a71d0b4, fields: {allow_publish: true, allow_subscribe: false}}]
deleted:
  description: Labels whose clients were deleted (by O(purge)); drop them from a credential store.
  returned: always
  type: list
  elements: str
purged:
  description:
    - The rows O(purge) deleted (in check mode, would delete), C(label) and C(client_id) each.
    - When the purge would delete more than O(purge_max), the run fails before any write and the rows are in C(would_purge).
  returned: always
  type: list
  elements: dict
  sample: [{label: site-alpha-09, client_id: pub-5e1d0c3b7a22}]
duplicates:
  description:
    - In a failure result, labels of the fleet held by several portal clients (label to their client_ids), found before
      any write or by the list after the writes (another run created them at the same time).
  returned: on failure
  type: dict
  sample: {site-alpha-02: [pub-3f9c2a71d0b4, pub-8a0e4d2c1f33]}
unconfirmed:
  description:
    - Labels whose rotation (or create) failed without a clean answer (connection lost, timeout, 5xx, unreadable answer),
      and labels created whose recovery rotation failed, all in a failure result. Their password may have changed
      without the new one reaching this run, so a stored password may no longer work.
    - Also labels whose password was rotated again (by another run) after this run received it, seen by the list after
      the writes (see the notes); the run fails naming them.
    - Drop them from a credential store (O(isr.mqtt.vault_credentials#module:remove) of M(isr.mqtt.vault_credentials)),
      so that the next run with O(recover_missing=true) rotates them to a known password.
  returned: always
  type: list
  elements: str
  sample: [site-alpha-02]
rotated_elsewhere:
  description: Labels whose password the portal rotated after the stored one (see O(known_rotated_at)); recovered by rotation.
  returned: always
  type: list
  elements: str
  sample: [site-alpha-03]
missing:
  description:
    - Labels of the fleet's clients on the portal that O(known_labels) lacks, when O(recover_missing=true) refused to
      rotate them because the store looks lost (nothing was changed).
  returned: when O(recover_missing) refused a lost store
  type: list
  elements: str
  sample: [site-alpha-01, site-alpha-02]
requests:
  description: HTTP requests sent to the portal by this run (list pages included).
  returned: always
  type: int
  sample: 3
complete:
  description: Whether every planned action was done; V(false) when O(max_duration) stopped the run, or a write failed.
  returned: always
  type: bool
  sample: true
rate_limit_waited:
  description: Seconds spent waiting for the portal's rate limit.
  returned: always
  type: float
  sample: 0.0
"""

import os.path
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

try:
    from re import _parser as _regex_parser  # Python 3.11+
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse as _regex_parser

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.isr.mqtt.plugins.module_utils._plan import (
    PlanError, apply_action, apply_actions, check_label, check_not_null, count_actions, echo_mismatch_message,
    near_label_conflicts, near_label_message, plan_fleet, rotated_elsewhere, type_name)
from ansible_collections.isr.mqtt.plugins.module_utils._portal import (
    PortalError, client_from_module, portal_argument_spec)
from ansible_collections.isr.mqtt.plugins.module_utils._sink import has_sink, no_sink_message, sink_argument_spec
from ansible_collections.isr.mqtt.plugins.module_utils._run_guard import GuardError, StoreClaims

ITEM_KEYS = ("label", "allow_publish", "allow_subscribe", "paused")
MAX_PARALLEL = 32
LOST_MIN = 10  # recover_missing: more missing clients than this (and than 10% of the fleet's) look like a lost store


def parse_clients(items):
    """Validate the fleet list; returns (desired_list, errors). Every error names clients[i].field."""
    desired, errors, seen = [], [], {}
    for index, item in enumerate(items):
        where = "clients[%d]" % index
        if not isinstance(item, dict):
            errors.append("%s must be a dict with at least a label, got %s" % (where, type_name(item)))
            continue
        unknown = sorted(set(item) - set(ITEM_KEYS))
        if unknown:
            errors.append("%s has unknown keys %s; allowed: %s" % (where, ", ".join(unknown), ", ".join(ITEM_KEYS)))
        problem = check_label(item.get("label"), field=where + ".label")
        if problem:
            errors.append(problem)
            continue
        entry = {"label": item["label"], "state": "present", "allow_publish": True, "allow_subscribe": False, "paused": None}
        for key in ("allow_publish", "allow_subscribe", "paused"):
            if item.get(key) is None:
                if key in item and key != "paused":  # paused: null means "leave as it is" (documented)
                    errors.append("%s.%s is null; give true or false, or leave the key out for its default" % (where, key))
                continue
            try:
                entry[key] = boolean(item[key], strict=True)
            except TypeError:
                errors.append("%s.%s must be a boolean (true/false), got %r" % (where, key, item[key]))
        if entry["label"] in seen:
            errors.append("%s.label %r is also clients[%d].label; list each label once" % (where, entry["label"], seen[entry["label"]]))
        seen.setdefault(entry["label"], index)
        desired.append(entry)
    return desired, errors


def claim_labels(module, client, store, labels):
    """Refuse a fleet whose labels another credential store keeps (see the option store); called under the account lock."""
    try:
        conflicts = StoreClaims(client.base, client.token_for_lock()).claim(store, labels, run=client.run_identity)
    except (OSError, GuardError) as exc:
        module.fail_json(msg="cannot record the labels of store %s: %s" % (store, getattr(exc, "msg", exc)))
    if conflicts:
        module.fail_json(
            msg="Nothing was changed: %s. One label can have only one credential store, or each run would rotate the "
                "passwords the other store keeps. Run with that store (fleet_store), or remove these labels from it "
                "(or delete it if it is no longer used), then rerun."
                % "; ".join("another credential store, %s, keeps %d of these labels (%s)"
                            % (other, len(found), ", ".join(found[:5]) + (", ..." if len(found) > 5 else ""))
                            for other, found in sorted(conflicts.items())),
            conflicts=conflicts)


def credential(row, password):
    publish_topic = row.get("publish_topic")
    if publish_topic is None and row.get("history_topic_prefix"):
        publish_topic = row["history_topic_prefix"] + "/"  # the portal's publish topic is the prefix with a slash
    return {"client_id": row["client_id"], "username": row.get("username") or row["client_id"], "password": password,
            "publish_topic": publish_topic, "history_topic_prefix": row.get("history_topic_prefix"),
            "rotated_at": row.get("rotated_at")}


class FleetRun(object):
    """Runs the plan's actions: labels in parallel, each label's actions in order. Thread-safe bookkeeping."""

    def __init__(self, module, client, rows_by_label, deadline=None):
        self.module = module
        self.deadline = deadline  # time.monotonic() after which no new batch is started (max_duration)
        self.out_of_time = False
        self.client = client
        self.rows = rows_by_label  # label -> current row (None once deleted)
        self.credentials = {}
        self.unconfirmed = set()  # labels whose password may have changed without reaching us
        self.done = []
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def run_chain(self, chain):
        """All actions of one label; stops at the first failure of any label."""
        for action in chain:
            if self._stop.is_set():
                return
            kept_before = self.credentials.get(action["label"])
            try:
                self.step(action)
            except Exception as exc:  # a bug must not lose the passwords received so far: fail with them
                err = exc if isinstance(exc, PortalError) else PortalError(
                    "Unexpected error (%s: %s); the portal may have carried out the request."
                    % (type(exc).__name__, self.client.scrub(str(exc))), kind="protocol", may_have_acted=True)
                with self._lock:
                    self.errors.append((action, err))
                    # A create whose answer held the password but no id is kept (credentials), not unconfirmed.
                    # Not when this action's password arrived and is kept (it failed later, e.g. writing the journal).
                    if action["action"] in ("create", "rotate") and err.unclean and getattr(err, "password", None) is None \
                            and self.credentials.get(action["label"]) is kept_before:
                        self.unconfirmed.add(action["label"])
                self._stop.set()
                return

    def step(self, action):
        kind, label = action["action"], action["label"]
        row = self.rows.get(label)
        cid = action["client_id"] or (row or {}).get("client_id")
        if kind == "create":
            # The plan creates only labels absent from the list we just read: no re-list needed.
            try:
                row, password = self.client.create_client(label, known_client_ids=set(), **action["fields"])
            except PortalError as err:
                if getattr(err, "created", False):  # created, but not identified: the password still goes out
                    self._record(label, None, action)
                    if err.password is not None:
                        self._keep(label, {"client_id": None}, err.password)
                raise
            self._record(label, row, dict(action, client_id=row["client_id"]))
            if password is None:
                self.module.warn("The portal created client %s (%s) but its answer was lost; rotating to recover a password."
                                 % (row["client_id"], label))
                try:
                    self.rotate(label, row["client_id"], dict(action, action="rotate", client_id=row["client_id"],
                                                              fields={"reason": "recover"}))
                except PortalError:
                    with self._lock:
                        self.unconfirmed.add(label)  # created, and no password at all: any failure counts
                    raise
            else:
                self._keep(label, row, password)
            if row["label"] != label:  # kept under the label sent; stop before anything matches on the portal's form
                raise PortalError(echo_mismatch_message("MQTT client", label, row["label"], row["client_id"],
                                                        "is kept under %r in 'credentials' (and the journal)" % label))
        elif kind == "rotate":
            self.rotate(label, cid, action)
        elif kind == "delete":
            self.client.delete_client(cid)
            self._record(label, None, action)
        else:
            call = {"update": self.client.update_client, "pause": self.client.pause_client, "resume": self.client.resume_client}[kind]
            action = dict(action, client_id=cid)
            # An answer without a row (204) is success: the row is what the action makes of it.
            self._record(label, call(cid, **action["fields"]) or apply_action(row, action), action)

    def rotate(self, label, cid, action):
        partial, password = self.client.rotate_password(cid)
        row = dict(self.rows.get(label) or {"client_id": cid})
        row.update((k, v) for k, v in partial.items() if v is not None)
        if partial.get("rotated_at") is None:
            row["rotated_at"] = None  # unknown: the old value would make the next run see a rotation from elsewhere
        self._record(label, row, action)
        self._keep(label, row, password)

    def _record(self, label, row, action):
        with self._lock:
            if action["action"] == "delete":
                # Deletes of several duplicates share a label: keep any row not deleted.
                if (self.rows.get(label) or {}).get("client_id") == action["client_id"]:
                    self.rows[label] = None
            else:
                self.rows[label] = row
            self.done.append(action)

    def _keep(self, label, row, password):
        entry = credential(row, password)
        with self._lock:
            self.credentials[label] = entry  # first: if journaling fails, the result still carries the password
        keep_password = getattr(self.module, "keep_password", None)  # controller side: journal it right now
        if keep_password is not None:
            keep_password(label, entry)

    def execute(self, actions, parallel, batch_size=0):
        """Deletes first (they free plan slots for creates), then the other labels in batches of ``batch_size``.

        Between batches: a progress report (module.progress, when the caller has one) and the max_duration check,
        so that a long run stops cleanly at a batch boundary with everything received kept.
        """
        chains = {}
        for action in actions:
            chains.setdefault((action["action"] == "delete", action["label"]), []).append(action)
        deletes = [[a] for (is_delete, dummy), chain in chains.items() if is_delete for a in chain]
        others = [chain for (is_delete, dummy), chain in chains.items() if not is_delete]
        size = batch_size if batch_size > 0 else max(len(others), 1)
        batches = [others[i:i + size] for i in range(0, len(others), size)] or ([[]] if deletes else [])
        progress = getattr(self.module, "progress", None)
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            list(pool.map(self.run_chain, deletes))
            start = 0
            for index, batch in enumerate(batches):
                if self._stop.is_set():
                    break
                if index and self.deadline is not None and time.monotonic() >= self.deadline:
                    self.out_of_time = True
                    break
                list(pool.map(self.run_chain, batch))
                if progress is not None:
                    progress(index + 1, len(batches), self.done[start:])
                start = len(self.done)


class PurgeMatcher(object):
    """The planner's purge filter: the regex must match and the label must not be kept."""

    def __init__(self, pattern, keep):
        self.regex = re.compile(pattern)
        self.keep = frozenset(keep)

    def search(self, label):
        return label not in self.keep and self.regex.search(label)


_REGEX_SPECIAL = re.compile(r"([.^$*+?{}\[\]\\|()])")
_ANCHORS = ((_regex_parser.AT, _regex_parser.AT_BEGINNING), (_regex_parser.AT, _regex_parser.AT_BEGINNING_STRING))


def purge_prefix(pattern):
    """The literal text every label that ``pattern`` matches begins with: '' unless the pattern begins with ^ (or \\A)
    and literal characters (a quantifier, class, group or alternation ends them); none with the i or m flag."""
    try:
        parsed = _regex_parser.parse(pattern)
    except re.error:
        return ""
    if parsed.state.flags & (re.IGNORECASE | re.MULTILINE) or not len(parsed) or parsed[0] not in _ANCHORS:
        return ""
    prefix = []
    for index in range(1, len(parsed)):
        op, value = parsed[index]
        if op != _regex_parser.LITERAL:
            break
        prefix.append(chr(value))
    return "".join(prefix)


def purge_match_problem(pattern, fleet_labels):
    """None when ``pattern`` can only delete labels of the fleet's own naming (it begins with ^ and literal text that a
    label of the fleet begins with, when the fleet has labels: an empty one is torn down by prefix), else a message
    naming purge_match and the fix."""
    shared = _REGEX_SPECIAL.sub(r"\\\1", os.path.commonprefix(list(fleet_labels)))
    fix = ("set purge_match to '^' and the beginning your fleet's labels share (for example %r), or set "
           "purge_allow_foreign: true (role: fleet_purge_allow_foreign) to delete clients outside the fleet's naming; "
           "nothing was changed" % ("^" + shared if shared else "^site-alpha-"))
    if re.search(pattern, ""):
        return "purge_match %r matches an empty label, so it matches every label of the account: %s" % (pattern, fix)
    prefix = purge_prefix(pattern)
    if not prefix:
        return ("purge_match %r does not begin with ^ and literal text (no wildcard, class, group, alternation or i/m "
                "flag), so it can match labels outside the fleet's own naming: %s" % (pattern, fix))
    if fleet_labels and not any(label.startswith(prefix) for label in fleet_labels):
        return ("purge_match %r deletes labels beginning with %r, and no label of clients or keep_labels begins with it, "
                "so they are not the fleet's own naming: %s" % (pattern, prefix, fix))
    return None


def purge_rows(actions):
    """[{label, client_id}] of the deletes among ``actions`` (mqtt_fleet deletes only by purge)."""
    return [{"label": a["label"], "client_id": a["client_id"]} for a in actions if a["action"] == "delete"]


def check_after_writes(client, labels, credentials):
    """One more list after the writes: ({label: [client_ids]} of fleet labels now held by several clients, [labels
    whose password was rotated again after the one in ``credentials``]). Both mean another run acted at the same time."""
    by_label = {}
    for row in client.list_clients():
        if row["label"] in labels:
            by_label.setdefault(row["label"], []).append(row)
    duplicates = dict((label, sorted(row["client_id"] for row in found)) for label, found in by_label.items() if len(found) > 1)
    ours = [row for label, found in by_label.items() for row in found
            if row["client_id"] is not None and (credentials.get(label) or {}).get("client_id") == row["client_id"]]
    stale = rotated_elsewhere(ours, dict((label, entry.get("rotated_at")) for label, entry in credentials.items()))
    return duplicates, stale


def concurrent_message(duplicates, stale, credentials):
    """What another run did at the same time, and how to get out of it."""
    parts = []
    if duplicates:
        def named(label, cid):
            return cid + (" created by this run" if (credentials.get(label) or {}).get("client_id") == cid else "")

        parts.append("labels of the fleet are now held by several portal clients: %s" % "; ".join(
            "%s (%s)" % (label, ", ".join(named(label, cid) for cid in ids)) for label, ids in sorted(duplicates.items())))
    if stale:
        parts.append("the passwords this run received for %s were rotated again after it (they are in 'unconfirmed': drop "
                     "them from this run's store; the next run with recover_missing rotates them)" % ", ".join(stale))
    return ("Another run changed this fleet at the same time (another credential store, lock directory or controller): %s. "
            "Every password this run received is in 'credentials'. One fleet needs one credential store: keep one, delete "
            "the clients whose password it does not hold (isr.mqtt.mqtt_client with client_id and state: absent) and rerun "
            "with that store only." % "; ".join(parts))


def public(action):
    return dict(action, fields=dict(action.get("fields") or {}))


def recover_missing_mode(value):
    """(False | True | "force", error) of the recover_missing option (a bool, a bool string, or "force")."""
    if isinstance(value, str) and value.strip().lower() == "force":
        return "force", None
    try:
        return boolean(value, strict=True), None
    except TypeError:
        return False, "recover_missing must be true, false or force, got %r" % (value,)


def refuse_lost_store(module, store, existing, missing, known):
    """Fail before any write when recovering ``missing`` (labels on the portal without a stored password) looks like
    a lost store rather than a few lost entries: each rotation stops a delivered password from working."""
    if not missing or (len(missing) < existing and len(missing) <= max(LOST_MIN, existing // 10)):
        return
    where = "the credential store %s" % store if store else "known_labels"
    if len(missing) == existing:
        seen = "%s holds none of the %d clients of this fleet on the portal (%d labels known)" % (where, existing, known)
    else:
        seen = "%d of the %d clients of this fleet on the portal have no password in %s" % (len(missing), existing, where)
    module.fail_json(
        msg="%s: recovering them would rotate every one and stop each delivered password from working, so nothing was "
            "changed. If the store was moved, emptied or deleted by mistake, restore it and rerun; if those passwords are "
            "lost for good, rerun with recover_missing: force (role: fleet_recover_missing: force) to rotate them. "
            "Missing: %s" % (seen, ", ".join(sorted(missing)[:20]) + (" ..." if len(missing) > 20 else "")),
        missing=sorted(missing), changed=False)


def main(module_class=AnsibleModule):
    """The module; the action plugin runs the same code in the controller's worker with another module_class."""
    argument_spec = portal_argument_spec()
    argument_spec.update(
        clients=dict(type="list", elements="dict", required=True),
        purge=dict(type="bool", default=False),
        purge_match=dict(type="str"),
        purge_allow_foreign=dict(type="bool", default=False),
        purge_max=dict(type="int", default=10),
        rotate=dict(type="list", elements="str", default=[]),
        recover=dict(type="list", elements="str", default=[]),
        recover_missing=dict(type="raw", default=False),
        known_labels=dict(type="list", elements="str", no_log=False),
        known_rotated_at=dict(type="dict", default={}),
        keep_labels=dict(type="list", elements="str", default=[], no_log=False),
        store=dict(type="path"),
        parallel=dict(type="int", default=8),
        return_clients=dict(type="str", choices=["all", "changed", "none"], default="all"),
        return_credentials=dict(type="str", choices=["all", "not_journaled"], default="all"),
        batch_size=dict(type="int", default=0),
        journal=dict(type="path"),
        max_duration=dict(type="int", default=0),
    )
    argument_spec.update(sink_argument_spec())
    module = module_class(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    if params["journal"] and not module.check_mode and getattr(module, "keep_password", None) is None:
        module.fail_json(msg="journal is written by the controller side of isr.mqtt.mqtt_fleet (its action plugin, "
                             "run on the controller): call the module by that name with delegate_to: localhost")

    if params["return_credentials"] == "not_journaled" and not params["journal"]:
        module.fail_json(msg="return_credentials=not_journaled needs journal (the file that holds the other passwords); "
                             "set journal or use return_credentials=all")
    errors = check_not_null(params, ("clients", "purge", "rotate", "recover", "recover_missing", "keep_labels",
                                     "parallel", "return_clients", "purge_allow_foreign", "purge_max"))
    if errors:
        module.fail_json(msg="Invalid fleet: " + "; ".join(errors), errors=errors)
    desired, errors = parse_clients(params["clients"])
    if params["batch_size"] < 0:
        errors.append("batch_size must be 0 (one batch) or more, got %d" % params["batch_size"])
    if params["max_duration"] < 0:
        errors.append("max_duration must be 0 (no limit) or more seconds, got %d" % params["max_duration"])
    if not 1 <= params["parallel"] <= MAX_PARALLEL:
        errors.append("parallel must be between 1 and %d, got %d" % (MAX_PARALLEL, params["parallel"]))
    if params["purge"] and not (params["purge_match"] or "").strip():
        # An empty pattern matches every label: it would delete every other client of the account.
        errors.append("purge is true but purge_match is empty: set purge_match to a regular expression that only your "
                      "fleet's labels match (for example '^site-alpha-'), so that clients managed by others are never deleted")
    elif params["purge_match"] is not None:
        try:
            re.compile(params["purge_match"])
        except re.error as exc:
            errors.append("purge_match %r is not a valid regular expression: %s" % (params["purge_match"], exc))
        else:
            if params["purge"] and not params["purge_allow_foreign"]:
                problem = purge_match_problem(params["purge_match"], [item["label"] for item in desired] + params["keep_labels"])
                if problem:
                    errors.append(problem)
    if params["purge_max"] < 0:
        errors.append("purge_max must be 0 (delete nothing) or more, got %d" % params["purge_max"])
    recover_missing, error = recover_missing_mode(params["recover_missing"])
    if error:
        errors.append(error)
    if recover_missing and params["known_labels"] is None:
        errors.append("recover_missing needs known_labels: the labels whose password you hold (may be an empty list)")
    labels = set(item["label"] for item in desired)
    for option in ("rotate", "recover"):
        stray = sorted(set(params[option]) - labels)
        if stray:
            errors.append("%s lists labels that are not in clients: %s; add them to clients or remove them" % (option, ", ".join(stray)))
    if errors:
        module.fail_json(msg="Invalid fleet: " + "; ".join(errors), errors=errors)

    started = time.monotonic()
    client = client_from_module(module, pool_size=params["parallel"], guard=True)
    if params["store"]:
        claim_labels(module, client, params["store"], [item["label"] for item in desired])
    try:
        rows = client.list_clients()
    except PortalError as err:
        module.fail_json(**err.to_fail_kwargs(requests=client.stats["requests"]))

    near = near_label_conflicts(labels, rows)
    if near:
        shown = sorted(near.items())[:5]
        module.fail_json(msg="Invalid fleet: %s%s" % (" ".join(near_label_message(label, found) for label, found in shown),
                                                      " (and %d more such labels)" % (len(near) - 5) if len(near) > 5 else ""),
                         client_ids=sorted(row["client_id"] for found in near.values() for row in found))

    recover, elsewhere = set(params["recover"]), []
    if recover_missing:
        known = set(params["known_labels"])
        missing = sorted(set(row["label"] for row in rows if row["label"] in labels and row["label"] not in known))
        if recover_missing != "force":
            refuse_lost_store(module, params["store"], len([row for row in rows if row["label"] in labels]), missing, len(known))
        if missing:
            module.warn("Rotating %d clients whose password the caller does not hold (recover_missing): %s. If another "
                        "credential store (another controller or lock directory) holds them, its passwords stop working: "
                        "one fleet needs one store." % (len(missing), ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")))
        recover.update(missing)
        elsewhere = rotated_elsewhere([row for row in rows if row["label"] in labels and row["label"] in known],
                                      params["known_rotated_at"] or {})
        if elsewhere:
            module.warn("The portal rotated the password of %d clients after the stored one was received (rotated outside "
                        "this collection, or by a run into another credential store); rotating them again to get a password "
                        "that is known: %s"
                        % (len(elsewhere), ", ".join(elsewhere)))
            recover.update(elsewhere)
    try:
        matcher = PurgeMatcher(params["purge_match"], params["keep_labels"]) if params["purge"] else None
        plan = plan_fleet(desired, rows, purge=params["purge"], purge_match=matcher,
                          rotate=params["rotate"], recover=sorted(recover))
    except PlanError as err:
        module.fail_json(msg=err.msg, client_ids=err.client_ids)
    if plan.ambiguous:
        module.fail_json(
            msg="Labels held by several portal clients, nothing was changed: %s. Delete the extra clients "
                "(isr.mqtt.mqtt_client with client_id and state: absent) and rerun. Two runs into two credential stores "
                "(or from two controllers) at once create such duplicates: keep one store per fleet."
                % "; ".join("%s (%s)" % (label, ", ".join(ids)) for label, ids in sorted(plan.ambiguous.items())),
            ambiguous=plan.ambiguous, duplicates=plan.ambiguous)
    purging = purge_rows(plan.actions)
    if len(purging) > params["purge_max"]:
        module.fail_json(
            msg="purge would delete %d clients, more than purge_max (%d); nothing was changed. It would delete: %s. If "
                "they should go, set purge_max to %d (role: fleet_purge_max); otherwise narrow purge_match."
                % (len(purging), params["purge_max"], ", ".join("%s (%s)" % (r["label"], r["client_id"]) for r in purging),
                   len(purging)),
            would_purge=purging, changed=False, requests=client.stats["requests"])

    receiving = count_actions([a for a in plan.actions if a["action"] in ("create", "rotate")])
    if (receiving["created"] or receiving["rotated"]) and not module.check_mode and not has_sink(params):
        module.fail_json(msg=no_sink_message("%d create(s) and %d rotation(s)" % (receiving["created"], receiving["rotated"]),
                                             password_file_option=False),
                         changed=False, credentials={}, unconfirmed=[], counts=count_actions([]), actions=[], clients=[],
                         deleted=[], requests=client.stats["requests"], rate_limit_waited=client.stats["rate_limit_waited"])

    current = dict((row["label"], row) for row in rows if row["label"] in labels)
    by_label = {}
    for action in plan.actions:
        by_label.setdefault(action["label"], []).append(action)

    result = dict(changed=plan.changed, credentials={}, unconfirmed=[], requests=0, rate_limit_waited=0.0,
                  rotated_elsewhere=elsewhere, complete=True)
    duplicates, stale = {}, []  # what another run did at the same time, seen by the list after the writes
    if module.check_mode:
        done, final = plan.actions, dict((lb, apply_actions(current.get(lb), by_label.get(lb, []))) for lb in labels)
        failure = None
    else:
        run = FleetRun(module, client, dict(current),
                       deadline=started + params["max_duration"] if params["max_duration"] > 0 else None)
        waiting = getattr(module, "waiting", None)  # controller side: a progress line while the rate limit holds us
        if waiting is not None:
            client.on_wait = lambda seconds: waiting(seconds, len(run.done), len(plan.actions))
        run.execute(plan.actions, params["parallel"], params["batch_size"])
        done, final, failure = run.done, run.rows, run.errors
        if run.credentials and not failure:
            # Another run (another store, lock directory or controller) may have listed before our writes: look once.
            try:
                duplicates, stale = check_after_writes(client, labels, run.credentials)
            except Exception as exc:  # whatever it is, the passwords received must still reach the result
                module.warn("Could not list the portal again to check for clients another run created at the same time "
                            "(%s); the next run checks before any write." % client.scrub(getattr(exc, "msg", None) or str(exc)))
            run.unconfirmed.update(stale)
        result.update(changed=bool(done), credentials=run.credentials, unconfirmed=sorted(run.unconfirmed),
                      complete=not failure and not run.out_of_time)
        if run.out_of_time and not failure:
            module.warn("max_duration (%d s) reached: %d of %d planned actions were done and every password received "
                        "is returned; a rerun continues with the rest." % (params["max_duration"], len(done), len(plan.actions)))

    counts = count_actions(done)
    counts["unchanged"] = len(plan.unchanged_labels)
    stats = client.stats
    shown = {"all": labels, "changed": set(a["label"] for a in done), "none": ()}[params["return_clients"]]
    result.update(counts=counts, actions=[public(a) for a in done], requests=stats["requests"],
                  rate_limit_waited=stats["rate_limit_waited"],
                  clients=[final[item["label"]] for item in desired if item["label"] in shown and final.get(item["label"])],
                  deleted=sorted(set(a["label"] for a in done if a["action"] == "delete")), purged=purge_rows(done))
    if module._diff:
        result["diff"] = diff_summary(current, final, by_label, rows)
    if failure:
        action, err = failure[0]
        msg = ("%s (while doing %s for %r). %d of %d planned actions were done; the passwords received are in 'credentials' "
               "- store them before rerunning. A rerun continues where this run stopped."
               % (err.msg, action["action"], action["label"], len(done), len(plan.actions)))
        if len(failure) > 1:
            msg += " %d more writes failed at the same time." % (len(failure) - 1)
        if result["unconfirmed"]:
            msg += (" The password of %s may have changed without the new one reaching us ('unconfirmed'): drop them from "
                    "the store so that recover_missing rotates them." % ", ".join(result["unconfirmed"]))
        err.msg = msg
        module.fail_json(**err.to_fail_kwargs(**result))
    if duplicates or stale:
        module.fail_json(msg=concurrent_message(duplicates, stale, result["credentials"]), duplicates=duplicates, **result)
    module.exit_json(**result)


def diff_summary(current, final, by_label, rows=()):
    """Per changed label: settings before/after and whether the password changes. Never a password.

    A purged label (not in ``current``) shows the portal row it had in ``rows`` (a list when it had several)."""
    def view(row):
        if not row:
            return None
        return dict((k, row.get(k)) for k in ("client_id", "allow_publish", "allow_subscribe", "paused"))

    purged = {}
    for row in rows:
        if row["label"] in by_label and row["label"] not in current:
            purged.setdefault(row["label"], []).append(view(row))
    before, after = {}, {}
    for label in sorted(by_label):
        found = purged.get(label) or [view(current.get(label))]
        before[label] = found[0] if len(found) == 1 else found
        after[label] = view(final.get(label))
        if after[label] is not None and any(a["action"] in ("create", "rotate") for a in by_label[label]):
            after[label]["password"] = "(new, not shown)"
    return {"before": before, "after": after}


if __name__ == "__main__":
    main()
