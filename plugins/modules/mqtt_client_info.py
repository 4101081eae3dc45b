#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mqtt_client_info
short_description: List the MQTT clients (publisher credentials) of the iShareRadio MQTT portal
version_added: 0.1.0
description:
  - Return all MQTT clients of the account, or those matching O(label), O(client_id) and O(paused).
  - Costs one list request (plus one per further page). Never changes anything.
  - Passwords are never returned; the portal shows them only once, on create or rotate
    (see M(isr.mqtt.mqtt_client)).
author:
  - isr.mqtt maintainers (@isr-mqtt)
extends_documentation_fragment:
  - isr.mqtt.portal
  - isr.mqtt.attributes
  - isr.mqtt.attributes.action_group
  - isr.mqtt.attributes.info_module
options:
  label:
    description:
      - Only clients with exactly this label (labels are not unique on the portal).
      - A string of 1 to 64 characters without control characters, as in M(isr.mqtt.mqtt_client); anything else fails.
    type: raw
  client_id:
    description:
      - Only the client with this id, a string (C(pub-...)).
      - Ids that M(isr.mqtt.mqtt_client) refuses (V(live), V(..), ids with C(/)) fail.
    type: raw
  paused:
    description: Only paused (V(true)) or only active (V(false)) clients. All when not set.
    type: bool
notes:
  - The module talks only to the portal; run it on the controller (C(delegate_to=localhost) or C(connection=local)).
seealso:
  - module: isr.mqtt.mqtt_client
"""

EXAMPLES = r"""
- name: List all clients
  isr.mqtt.mqtt_client_info:
  register: all_clients

- name: Show how many clients there are
  ansible.builtin.debug:
    msg: "{{ all_clients.clients | length }} clients"

- name: Find the clients labelled site-alpha-sensor (there may be several)
  isr.mqtt.mqtt_client_info:
    label: site-alpha-sensor
  register: alpha

- name: List the paused clients
  isr.mqtt.mqtt_client_info:
    paused: true
  register: paused_clients

- name: Their ids
  ansible.builtin.debug:
    msg: "{{ paused_clients.clients | map(attribute='client_id') | list }}"
"""

RETURN = r"""
clients:
  description: The matching clients, in the portal's order. Never contains passwords.
  returned: always
  type: list
  elements: dict
  contains:
    client_id:
      description: Portal id of the client; also the MQTT username and the MQTT Client ID to connect with.
      type: str
      sample: pub-3f9c2a71d0b4
    label:
      description: The label.
      type: str
      sample: site-alpha-sensor
    username:
      description: MQTT username (equals RV(clients[].client_id)).
      type: str
      sample: pub-3f9c2a71d0b4
    topic:
      description: The topic filter the client may use.
      type: str
      sample: 550e8400-e29b-41d4-a716-446655440000/pub-3f9c2a71d0b4/#
    paused:
      description: Whether the client is paused.
      type: bool
    allow_publish:
      description: Whether the client may publish.
      type: bool
    allow_subscribe:
      description: Whether the client may subscribe.
      type: bool
    history_topic_prefix:
      description: Prefix of the client's stored messages in the history API.
      type: str
      sample: 550e8400-e29b-41d4-a716-446655440000/pub-3f9c2a71d0b4
    publish_topic:
      description: The topic to publish under, when the portal lists it; otherwise null.
      type: str
    created_at:
      description: Creation time (ISO 8601).
      type: str
    rotated_at:
      description: Time of the last password change (ISO 8601).
      type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.isr.mqtt.plugins.module_utils._plan import check_client_id, check_label
from ansible_collections.isr.mqtt.plugins.module_utils._portal import (
    PortalError, client_from_module, portal_argument_spec)


def matches(row, params):
    return all(params[key] is None or row[key] == params[key] for key in ("label", "client_id", "paused"))


def main(module_class=AnsibleModule):
    """The module; its action plugin runs the same code in the controller's worker with another module_class."""
    argument_spec = portal_argument_spec()
    argument_spec.update(
        label=dict(type="raw"),
        client_id=dict(type="raw"),
        paused=dict(type="bool"),
    )
    module = module_class(argument_spec=argument_spec, supports_check_mode=True)
    label, client_id = module.params["label"], module.params["client_id"]
    problem = (check_label(label) if label is not None else None) or (
        check_client_id(client_id) if client_id is not None else None)
    if problem:
        module.fail_json(msg=problem)
    client = client_from_module(module)
    try:
        rows = client.list_clients()
    except PortalError as err:
        module.fail_json(**err.to_fail_kwargs())
    module.exit_json(changed=False, clients=[row for row in rows if matches(row, module.params)])


if __name__ == "__main__":
    main()
