#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mqtt_subscriber
short_description: Manage read-only MQTT subscribers of the iShareRadio MQTT SaaS portal
version_added: 0.1.0
description:
  - Creates, renews, regenerates and revokes a read-only subscriber of the iShareRadio MQTT SaaS portal
    through its Mgmt REST API.
  - A read-only subscriber is a broker login (user name C(sub-...)) that may only subscribe to C({account_id}/#).
    It is not a REST token.
  - The subscriber is identified by O(label), or by O(id) when it is known. Labels are not unique on the portal;
    when several subscribers share the label the module fails and lists their ids, and O(id) picks one.
  - The portal shows a subscriber's password only once, when the subscriber is created. The module returns it
    in RV(password), or writes it to O(password_file) and leaves it out of the result.
  - A subscriber cannot be changed in place. A replacement (O(regenerate), O(renew_before_days)) revokes the old
    login first and then creates a new one with the same label; revoking first frees the slot the new login
    needs when the plan's C(max_subscribers) is reached. If the create fails after the revoke, the failure
    message says that no subscriber with this label exists any more; rerun the task to create one.
  - The number of active (not expired) subscribers is capped by the plan's C(max_subscribers), which is 0 on the
    smallest plan. Creating beyond it fails with a message that says how many are active, what the plan allows,
    and how to free one.
  - All input is checked before the first request to the portal.
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
    details:
      - Reads the portal and returns the plan (RV(actions)) and the predicted subscriber; sends no write request
        and writes no O(password_file).
  diff_mode:
    support: full
    details:
      - The diff shows the subscriber before and after; it never contains a password.
  platform:
    platforms: all
    details:
      - Runs on the controller or any host that reaches the portal; needs the Python library C(requests) there.
options:
  label:
    description:
      - The subscriber's label, a string of 1 to 64 characters without control characters. Any other type (a number,
        a list) is refused; quote a numeric label.
      - Identifies the subscriber unless O(id) is given. Required to create a subscriber unless O(id) is given
        for a replacement, which keeps the old label.
    type: raw
  id:
    description:
      - The subscriber's id (a string equal to its user name, C(sub-...)), as returned in RV(subscriber.id) or by
        M(isr.mqtt.mqtt_subscriber_info).
      - Selects one subscriber among several with the same O(label). When O(label) is also given it must match the
        subscriber's label.
      - The portal generates ids; with O(state=present) a subscriber with an unknown id cannot be created and the
        module fails.
    type: raw
    aliases: [username]
  state:
    description:
      - V(present) makes sure the subscriber exists, creating (or replacing) it when needed.
      - V(absent) revokes it. Revoking one that does not exist is not a change.
    type: str
    choices: [present, absent]
    default: present
  expires_in_days:
    description:
      - Lifetime of a subscriber created by this task, in days, from 1 to 3650.
      - Only used when a subscriber is created. An existing subscriber keeps its expiry; use O(renew_before_days)
        or O(regenerate) to replace it.
    type: int
    default: 30
  regenerate:
    description:
      - Replace the subscriber with a new login (new id, user name and password) even if it exists.
      - Always reported as a change, so a task with O(regenerate=true) is not idempotent.
    type: bool
    default: false
  renew_before_days:
    description:
      - Replace a present subscriber that expires within this many days, or has already expired.
      - V(0) replaces only expired subscribers. Must be smaller than O(expires_in_days).
      - When not set, an existing subscriber is kept even after it expired (the module warns).
    type: int
  password_file:
    description:
      - Write the password of a newly created subscriber to this file instead of returning it in RV(password).
      - The file is created with mode C(0600) from the start and replaced atomically. Its directory must exist.
      - Nothing is written when no subscriber was created, or in check mode.
    type: path
notes:
  - Expiry is judged by the portal's C(expired) flag and by comparing C(expires_at) with the clock of the host
    that runs the module.
seealso:
  - module: isr.mqtt.mqtt_subscriber_info
  - module: isr.mqtt.mqtt_client
"""

EXAMPLES = r"""
- name: Make sure a read-only login for Grafana exists, password stored in a 0600 file
  isr.mqtt.mqtt_subscriber:
    label: grafana
    expires_in_days: 90
    password_file: /tmp/grafana-mqtt.password
  register: grafana

- name: Show the login (never contains the password)
  ansible.builtin.debug:
    msg: "{{ grafana.subscriber.username }} may subscribe to {{ grafana.subscriber.subscribe_filter }}"

- name: Renew the login when it expires within 14 days (or has expired)
  isr.mqtt.mqtt_subscriber:
    label: grafana
    expires_in_days: 90
    renew_before_days: 14
    password_file: /tmp/grafana-mqtt.password

# Run with a vault secret (ansible-playbook --vault-id mqtt@prompt): debug_login.password is vault-encrypted.
- name: Create a short-lived login; its password comes back vault-encrypted in the result
  isr.mqtt.mqtt_subscriber:
    label: debugging-session
    expires_in_days: 1
  register: debug_login

- name: Hand it to the debugging tool (the template decrypts it)
  ansible.builtin.copy:
    content: "{{ debug_login.password }}"
    dest: ~/mqtt-debug.password
    mode: "0600"
  no_log: true

- name: Replace the Grafana login with a new one (new user name and password)
  isr.mqtt.mqtt_subscriber:
    label: grafana
    regenerate: true
    password_file: /tmp/grafana-mqtt.password

- name: Revoke the debugging login by its id
  isr.mqtt.mqtt_subscriber:
    id: "{{ debug_login.subscriber.id }}"
    state: absent

- name: Revoke the Grafana login, connection settings given explicitly
  isr.mqtt.mqtt_subscriber:
    label: grafana
    state: absent
    portal_url: "{{ lookup('ansible.builtin.env', 'ISR_PORTAL_URL') }}"
    api_token: "{{ lookup('ansible.builtin.env', 'ISR_PORTAL_TOKEN') }}"
"""

RETURN = r"""
subscriber:
  description:
    - The subscriber after the task; V(null) when it is absent.
    - In check mode, a subscriber that would be created has V(null) as RV(subscriber.id) and RV(subscriber.username),
      and a predicted RV(subscriber.expires_at).
    - Never contains a password.
  returned: always
  type: dict
  contains:
    id:
      description: The subscriber's id, used to revoke it; equal to its user name.
      type: str
      sample: sub-7d41e0c2a9f3
    username:
      description: The MQTT user name of the login.
      type: str
      sample: sub-7d41e0c2a9f3
    label:
      description: The subscriber's label.
      type: str
      sample: grafana
    subscribe_filter:
      description: The only topic filter the login may subscribe to.
      type: str
      sample: 550e8400-e29b-41d4-a716-446655440000/#
    created_at:
      description: When the subscriber was created (ISO 8601, UTC).
      type: str
      sample: "2026-11-26T00:00:00Z"
    expires_at:
      description: When the login stops working (ISO 8601, UTC); V(null) when it never expires.
      type: str
      sample: "2026-12-26T00:00:00Z"
    expired:
      description: Whether the login has expired (it stays listed until revoked, but cannot log in).
      type: bool
      sample: false
password:
  description:
    - The MQTT password of the subscriber created by this run. The portal never shows it again.
    - Vault-encrypted with the run's vault secret (templates decrypt it), in plain text only under C(no_log=true) or
      with O(return_password=plaintext). See O(return_password).
    - V(null) when no subscriber was created, or when O(password_file) received the password.
    - Also returned in a failure result when a step after the creation failed, so that it is not lost.
  returned: always
  type: str
  sample: 8Jx2q0w9kY1vTz3a
password_file:
  description: The file the new password was written to.
  returned: when a subscriber was created and O(password_file) is set
  type: str
  sample: /tmp/grafana-mqtt.password
ids:
  description: The ids of the subscribers that share O(label), when the label is ambiguous (the module fails).
  returned: on failure, when several subscribers have the label
  type: list
  elements: str
  sample: [sub-7d41e0c2a9f3, sub-0a1b2c3d4e5f]
actions:
  description:
    - The actions taken, in order; in check mode, the planned ones (what a real run would do).
    - A replacement is a V(revoke) followed by a V(create).
  returned: always
  type: list
  elements: dict
  contains:
    action:
      description: V(create) or V(revoke).
      type: str
      sample: create
    label:
      description: The label of the subscriber acted on.
      type: str
      sample: grafana
    id:
      description: The id of the revoked or created subscriber; V(null) for a V(create) planned in check mode.
      type: str
      sample: sub-7d41e0c2a9f3
    fields:
      description: For V(create), the C(expires_in_days) sent to the portal; empty for V(revoke).
      type: dict
      sample: {"expires_in_days": 30}
    reason:
      description: >-
        Why: V(missing), V(absent), V(regenerate), V(expired), or C(expires within N days (at ...)).
      type: str
      sample: missing
"""

import datetime
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.isr.mqtt.plugins.module_utils._plan import (
    check_not_null, echo_mismatch_message, near_label_message, near_label_rows)
from ansible_collections.isr.mqtt.plugins.module_utils._secret_file import check_password_file, write_secret_file
from ansible_collections.isr.mqtt.plugins.module_utils._sink import (
    has_sink, no_sink_message, sink_argument_spec, unwritten_file_message)
from ansible_collections.isr.mqtt.plugins.module_utils._portal import PortalError, client_from_module, portal_argument_spec
from ansible_collections.isr.mqtt.plugins.module_utils._subscriber_plan import (
    PlanError, check_desired, find_subscriber, is_expired, plan_subscriber, predict)

PUBLIC_FIELDS = ("id", "username", "label", "subscribe_filter", "created_at", "expires_at", "expired")


def public(row):
    """The subscriber as reported: only known, non-secret fields."""
    return None if row is None else dict((key, row.get(key)) for key in PUBLIC_FIELDS)


def plan_limit_message(err, subscribers, now):
    """Say how many are active, what the plan allows and how to free one."""
    active = getattr(err, "active", None)
    if active is None:
        active = len([s for s in subscribers if not is_expired(s, now)])
    limit = getattr(err, "limit", None)
    if limit == 0:
        return ("the portal plan includes no read-only subscribers (max_subscribers is 0, as on the smallest plan); "
                "choose a plan with read-only subscribers under Subscriptions in the portal")
    allows = "" if limit is None else ", the plan allows %s" % limit
    return ("the portal plan's limit of read-only subscribers is reached (%s active, expired ones not counted%s). "
            "Free one by revoking a subscriber you no longer need (isr.mqtt.mqtt_subscriber with state=absent; "
            "isr.mqtt.mqtt_subscriber_info lists them), or choose a plan with a higher max_subscribers" % (active, allows))


class Runner(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.result = {"changed": False, "actions": [], "password": None}

    def fail(self, msg, err=None, **extra):
        self.result.update(extra)
        if isinstance(err, PortalError):
            self.result["error"] = {"kind": err.kind, "status": err.status, "detail": err.detail}
        self.module.fail_json(msg=msg, **self.result)

    def run(self):
        params = self.params
        desired = dict((key, params[key]) for key in
                       ("label", "id", "state", "expires_in_days", "regenerate", "renew_before_days"))
        errors = check_not_null(params, ("state", "expires_in_days", "regenerate")) + check_desired(desired)
        if params["password_file"] and params["state"] == "present":
            errors.append(check_password_file(params["password_file"]))
        errors = [e for e in errors if e]
        if errors:
            self.fail("; ".join(errors))

        now = datetime.datetime.now(datetime.timezone.utc)
        client = client_from_module(self.module, guard=True)
        try:
            subscribers = client.list_subscribers()
            current = find_subscriber(subscribers, label=params["label"], subscriber_id=params["id"])
            near = near_label_rows(subscribers, params["label"]) if current is None and params["id"] is None else []
            if near:
                self.fail(near_label_message(params["label"], near, id_key="id", pick=", or pick the subscriber by its id"),
                          ids=[row.get("id") for row in near])
            actions = plan_subscriber(desired, current, now)
        except PortalError as err:
            self.fail(err.msg, err)
        except PlanError as err:
            self.fail(err.msg, ids=err.ids)

        if current is not None and not actions and params["state"] == "present" and is_expired(current, now):
            self.module.warn("read-only subscriber %s (label %r) has expired and cannot log in; set renew_before_days "
                             "(0 replaces only expired ones) or regenerate=true to replace it" % (current["id"], current["label"]))
        if not actions and params["password_file"] and params["state"] == "present" and not os.path.exists(params["password_file"]):
            self.module.warn("password_file %s does not exist and the portal never shows the password of subscriber %s "
                             "again; use regenerate=true to get a new login with a new password" % (params["password_file"], current["id"]))

        if any(a["action"] == "create" for a in actions) and not self.module.check_mode and not has_sink(params):
            self.fail(no_sink_message("create of read-only subscriber %r" % (params["label"] or params["id"])))

        known_filter = next((s.get("subscribe_filter") for s in subscribers if s.get("subscribe_filter")), None)
        after = predict(current, actions, now, known_filter)
        self.result.update(changed=bool(actions), actions=actions)
        if not self.module.check_mode:
            self.result.update(changed=False, actions=[])  # from here on: what was done
            after = self.execute(client, actions, current, subscribers, now)
        self.result["subscriber"] = public(after)
        if self.module._diff:
            self.result["diff"] = {"before": public(current) or {}, "after": public(after) or {}}
        self.module.exit_json(**self.result)

    def done(self, action):
        self.result["actions"].append(action)
        self.result["changed"] = True

    def execute(self, client, actions, current, subscribers, now):
        """Run the plan in order; returns the subscriber after it (None when revoked)."""
        row = current
        revoked = None
        for action in actions:
            if action["action"] == "revoke":
                try:
                    client.revoke_subscriber(action["id"])
                except PortalError as err:
                    self.fail("could not revoke read-only subscriber %s (label %r): %s" % (action["id"], action["label"], err.msg), err)
                self.done(action)
                revoked, row = action, None
            else:
                row = self.create(client, action, revoked, subscribers, now)
        return row

    def create(self, client, action, revoked, subscribers, now):
        # The ids already listed under this label, so an ambiguous create can be checked without another list.
        known = [s["id"] for s in subscribers if s.get("label") == action["label"]]
        try:
            row, password = client.create_subscriber(action["label"], action["fields"]["expires_in_days"], known_ids=known)
        except PortalError as err:
            msg = plan_limit_message(err, subscribers, now) if err.kind == "plan_limit" else err.msg
            if getattr(err, "password", None) is not None:  # created, but not identified: the password still goes out
                self.fail("created read-only subscriber %r: %s" % (action["label"], msg), err, password=err.password)
            if revoked is not None:
                self.fail("revoked read-only subscriber %s (label %r, reason: %s), but creating its replacement failed, "
                          "so no subscriber with this label exists now; fix the cause and rerun the task to create one. "
                          "Error: %s" % (revoked["id"], revoked["label"], revoked["reason"], msg), err, subscriber=None)
            self.fail("could not create read-only subscriber %r: %s" % (action["label"], msg), err)
        self.done(dict(action, id=row["id"]))
        self.result["subscriber"] = public(row)
        if password is None:
            self.fail("created read-only subscriber %s (label %r), but the portal's answer was lost, and with it the "
                      "password; rerun with regenerate=true (and id=%s) to replace it with a login whose password is known"
                      % (row["id"], action["label"], row["id"]))
        path = self.params["password_file"]
        if path:
            try:
                write_secret_file(path, password)
            except (IOError, OSError) as err:
                # The portal will not show this password again: hand it back rather than lose it.
                self.fail("created read-only subscriber %s. %s" % (row.get("id"), unwritten_file_message(
                    path, to_native(err), self.params, "If it is lost, rerun with regenerate: true to replace the "
                    "subscriber by one whose password is known.")), password=password)
            self.result["password_file"] = path
        else:
            self.result["password"] = password
        if row.get("label") != action["label"]:  # the password is kept: stop before matching on a label the portal changed
            kept = "was written to password_file %s" % path if path else "is in this result ('password')"
            self.fail(echo_mismatch_message("read-only subscriber", action["label"], row.get("label"), row.get("id"), kept),
                      password=self.result["password"])
        return row


def main(module_class=AnsibleModule):
    """The module; its action plugin runs the same code in the controller's worker with another module_class."""
    argument_spec = portal_argument_spec()
    argument_spec.update(
        label=dict(type="raw"),
        id=dict(type="raw", aliases=["username"]),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        expires_in_days=dict(type="int", default=30),
        regenerate=dict(type="bool", default=False),
        renew_before_days=dict(type="int"),
        password_file=dict(type="path", no_log=False),
    )
    argument_spec.update(sink_argument_spec())
    module = module_class(argument_spec=argument_spec, required_one_of=[("label", "id")], supports_check_mode=True)
    Runner(module).run()


if __name__ == "__main__":
    main()
