#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mqtt_subscriber_info
short_description: List read-only MQTT subscribers of the iShareRadio MQTT SaaS portal
version_added: 0.1.0
description:
  - Lists the read-only subscribers (broker logins C(sub-...) that may only subscribe to C({account_id}/#)) of the
    account, all of them or those with a given O(label) or O(id), with their expiry and whether they have expired.
  - Expired subscribers stay listed until they are revoked; they cannot log in, and they do not count against
    the plan's C(max_subscribers).
  - Reads only; never changes anything. Passwords are never listed (the portal shows them only at creation).
author:
  - isr.mqtt maintainers (@isr-mqtt)
extends_documentation_fragment:
  - isr.mqtt.portal
  - isr.mqtt.attributes
  - isr.mqtt.attributes.action_group
  - isr.mqtt.attributes.info_module
attributes:
  platform:
    platforms: all
    details:
      - Runs on the controller or any host that reaches the portal; needs the Python library C(requests) there.
options:
  label:
    description:
      - Only list subscribers with exactly this label. Labels are not unique, so several may be returned.
      - A string of 1 to 64 characters without control characters, as in M(isr.mqtt.mqtt_subscriber); anything else
        fails.
    type: raw
  id:
    description:
      - Only list the subscriber with this id, a string equal to its user name (C(sub-...)).
      - With O(label), both must match.
    type: raw
    aliases: [username]
seealso:
  - module: isr.mqtt.mqtt_subscriber
"""

EXAMPLES = r"""
- name: List all read-only subscribers
  isr.mqtt.mqtt_subscriber_info:
  register: all_subscribers

- name: Show the expired ones (they still need to be revoked)
  ansible.builtin.debug:
    msg: "{{ all_subscribers.subscribers | selectattr('expired') | map(attribute='id') | list }}"

- name: Look up the subscribers labelled grafana
  isr.mqtt.mqtt_subscriber_info:
    label: grafana
  register: grafana

- name: Look up one subscriber by id, connection settings given explicitly
  isr.mqtt.mqtt_subscriber_info:
    id: sub-7d41e0c2a9f3
    portal_url: "{{ lookup('ansible.builtin.env', 'ISR_PORTAL_URL') }}"
    api_token: "{{ lookup('ansible.builtin.env', 'ISR_PORTAL_TOKEN') }}"
"""

RETURN = r"""
subscribers:
  description: The matching read-only subscribers, in the portal's order; empty when none match.
  returned: always
  type: list
  elements: dict
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
      description: Whether the login has expired and can no longer log in.
      type: bool
      sample: false
count:
  description: The number of subscribers returned.
  returned: always
  type: int
  sample: 1
active:
  description: How many of the returned subscribers have not expired (these count against C(max_subscribers)).
  returned: always
  type: int
  sample: 1
"""

import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.isr.mqtt.plugins.module_utils._portal import PortalError, client_from_module, portal_argument_spec
from ansible_collections.isr.mqtt.plugins.module_utils._subscriber_plan import PlanError, check_identity, is_expired

PUBLIC_FIELDS = ("id", "username", "label", "subscribe_filter", "created_at", "expires_at", "expired")


def public(row, now):
    """Only known, non-secret fields; expired as a bool even if the portal left it out."""
    result = dict((key, row.get(key)) for key in PUBLIC_FIELDS)
    result["expired"] = is_expired(row, now)
    return result


def select(subscribers, label=None, subscriber_id=None):
    return [s for s in subscribers
            if (label is None or s.get("label") == label) and (
                subscriber_id is None or subscriber_id in (s.get("id"), s.get("username")))]


def main(module_class=AnsibleModule):
    """The module; its action plugin runs the same code in the controller's worker with another module_class."""
    argument_spec = portal_argument_spec()
    argument_spec.update(
        label=dict(type="raw"),
        id=dict(type="raw", aliases=["username"]),
    )
    module = module_class(argument_spec=argument_spec, supports_check_mode=True)
    errors = check_identity(module.params["label"], module.params["id"])
    if errors:
        module.fail_json(msg="; ".join(errors), changed=False)
    client = client_from_module(module)
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        rows = select(client.list_subscribers(), module.params["label"], module.params["id"])
        subscribers = [public(row, now) for row in rows]
    except PortalError as err:
        module.fail_json(**err.to_fail_kwargs(changed=False))
    except PlanError as err:
        module.fail_json(msg=err.msg, changed=False)
    module.exit_json(changed=False, subscribers=subscribers, count=len(subscribers),
                     active=len([s for s in subscribers if not s["expired"]]))


if __name__ == "__main__":
    main()
