# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Reading the credential store (shared by isr.mqtt.vault_credentials, which writes it, and the fleet_store vars plugin)."""

from __future__ import annotations

import errno

import yaml

from ansible.errors import AnsibleActionFail

from ansible_collections.isr.mqtt.plugins.plugin_utils._vault import Vaulted

STORE_KEY = "isr_mqtt_credentials"
FIELDS = ("client_id", "username", "publish_topic", "history_topic_prefix", "rotated_at")

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
