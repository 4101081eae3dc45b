# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: fleet_store
short_description: Give each device host its MQTT credential from the fleet's vault-encrypted store
version_added: 0.1.0
description:
  - Gives every inventory host that has an entry in the credential store of the R(isr.mqtt.fleet role,ansible_collections.isr.mqtt.fleet_role)
    the variables C(mqtt_client_id), C(mqtt_username), C(mqtt_password) (still vault-encrypted),
    C(mqtt_publish_topic), C(mqtt_history_topic_prefix) and C(mqtt_rotated_at), the same names as the role's facts,
    without a task per host. For fleets of thousands of hosts this is much faster than setting facts.
  - A host's entry is the one of its label, the inventory variable C(fleet_label) of the host (set in the inventory
    source itself, not in a C(host_vars) file), else the host name; this is the role's rule.
  - Passwords journaled by a run that was killed before it wrote the store are included, later records winning,
    as the role's next run will fold them.
  - The store is read again whenever it or its journal changes, so tasks after the role see the passwords it
    received. The password is decrypted only where a template uses it.
  - A store or journal that cannot be read fails the run with the path and the fix; an entry whose password is not
    vault ciphertext, or whose fields do not match its integrity check (a C(username), C(client_id) or topic edited
    by hand), gives its host no variables (a warning names it).
  - No store (and no journal) gives no variables, so that a first run of the role, which creates the store, works.
    A store that served variables earlier in the run and is gone later (deleted or moved away mid-run) fails the run,
    naming the store, since its hosts would otherwise silently lose their credentials.
  - Like every vars plugin of a collection it must be enabled, for example in C(ansible.cfg)
    C([defaults] vars_plugins_enabled = host_group_vars,isr.mqtt.fleet_store).
options:
  store:
    description:
      - The store's file name, or path. A relative one is looked up next to each inventory source and next to the
        playbook, as C(host_vars) is; the default matches the role's default C(fleet_store).
    type: str
    default: mqtt_credentials.yml
    ini:
      - section: isr_mqtt
        key: fleet_store
    env:
      - name: ISR_MQTT_FLEET_STORE
extends_documentation_fragment:
  - ansible.builtin.vars_plugin_staging
notes:
  - Run the role P(isr.mqtt.fleet#role) with C(fleet_host_facts=false) when this plugin serves its store, so that
    it skips setting the same values as facts.
"""

EXAMPLES = r"""
# ansible.cfg
# [defaults]
# vars_plugins_enabled = host_group_vars,isr.mqtt.fleet_store
# [isr_mqtt]
# fleet_store = /srv/fleet/mqtt_credentials.yml

# A later playbook (no role run) renders each device's configuration from the store:
# - name: Deliver the MQTT credentials
#   hosts: devices
#   tasks:
#     - name: Write the broker login
#       ansible.builtin.template:
#         src: mqtt.conf.j2
#         dest: /etc/device/mqtt.conf
#         mode: "0600"
#       no_log: true
"""

import os

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.inventory.host import Host
from ansible.module_utils.common.text.converters import to_bytes
from ansible.parsing.vault import VaultLib, is_encrypted
from ansible.plugins.vars import BaseVarsPlugin
from ansible.template import Templar
from ansible.utils.display import Display
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.isr.mqtt.plugins.module_utils._portal import no_core_dumps
from ansible_collections.isr.mqtt.plugins.plugin_utils._journal import fold, journal_path, read_journal
from ansible_collections.isr.mqtt.plugins.plugin_utils._seal import Sealer, has_checks, integrity_problems
from ansible_collections.isr.mqtt.plugins.plugin_utils._store import FIELDS, read_store
from ansible_collections.isr.mqtt.plugins.plugin_utils._vault import loaded_secrets, vault_object

display = Display()

# Before ansible-core 2.19 a plain string from a vars plugin is a template; the store holds portal data, never one.
_MARK_UNSAFE = not hasattr(Templar, "evaluate_expression")

# Store path -> (signature of store and journal, {label: host variables}); vars plugins run once per host and task.
_LOADED = {}


def _signature(path):
    """What changes when the store or its journal is rewritten or appended to."""
    def one(name):
        try:
            st = os.stat(name)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)
    return one(path), one(journal_path(path))


def edited_entries(entries, secrets, legacy_ok):
    """{label: why} of the entries whose integrity check fails with this run's vault secrets (see _seal)."""
    if not secrets:
        return {}  # nothing can be checked (nor decrypted)
    labels = [label for label, entry in entries.items() if isinstance(entry, dict) and entry.get("password")]
    problems = integrity_problems(Sealer(secrets), entries, labels, legacy_ok)
    if problems and len(problems) == len(labels):
        # Every check fails: edited, or another vault secret than the store's? One decryption tells.
        try:
            VaultLib(secrets).decrypt(to_bytes(entries[labels[0]]["password"]))
        except Exception:  # another secret: the passwords will not decrypt either, and say so where they are used
            return {}
    return problems


def host_variables(entries, secrets, path, legacy_ok=True):
    """{label: {mqtt_<field>: value, mqtt_password: vault object}} for the usable entries of a folded store."""
    out, unusable = {}, []
    edited = edited_entries(entries, secrets, legacy_ok)
    for label, entry in entries.items():
        password = entry.get("password") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or (password is not None and not is_encrypted(to_bytes(password))) or label in edited:
            unusable.append(str(label))
            continue
        variables = dict(("mqtt_" + field, entry.get(field)) for field in FIELDS)
        variables = wrap_var(variables) if _MARK_UNSAFE else variables
        variables["mqtt_password"] = vault_object(password, secrets) if password is not None else None
        out[str(label)] = variables
    if unusable:
        display.warning("isr.mqtt.fleet_store: the entries %s of %s have no vault-encrypted password or do not match their "
                        "integrity check (edited by hand?); their hosts get no mqtt_* variables (a run of the isr.mqtt.fleet "
                        "role recovers them)" % (", ".join(sorted(unusable)), path))
    return out


def load(path, secrets):
    """The host variables of the store at ``path`` with its journal folded in; {} when there is no store."""
    signature = _signature(path)
    cached = _LOADED.get(path)
    if cached is not None and cached[0] == signature:
        return cached[1]
    if signature[0] is None and cached is not None and cached[0][0] is not None:
        raise AnsibleParserError(
            "isr.mqtt.fleet_store: the credential store %s served the hosts' mqtt_* variables earlier in this run and "
            "is gone now (deleted or moved away); its hosts would get no credentials. Restore the store (from a backup; "
            "if it is lost for good, run the isr.mqtt.fleet role with fleet_recover_missing: force) and run again." % path)
    if signature == (None, None):
        variables = {}
    else:
        try:
            entries = read_store(path)
            legacy_ok = not has_checks(entries)  # as isr.mqtt.vault_credentials judges it
            fold(entries, read_journal(journal_path(path)))
        except AnsibleError as exc:
            raise AnsibleParserError("isr.mqtt.fleet_store: %s" % exc.message)
        variables = host_variables(entries, secrets, path, legacy_ok)
    _LOADED[path] = (signature, variables)
    return variables


class VarsModule(BaseVarsPlugin):

    is_stateless = True  # the state is the module's cache of each store, keyed by what is on disk

    def get_vars(self, loader, path, entities, cache=True):
        super(VarsModule, self).get_vars(loader, path, entities)
        no_core_dumps()  # this runs in the main ansible-playbook process, which then holds decrypted passwords
        hosts = [entity for entity in (entities if isinstance(entities, list) else [entities]) if isinstance(entity, Host)]
        if not hosts:
            return {}
        store = os.path.join(self._basedir, os.path.expanduser(self.get_option("store")))
        by_label = load(os.path.abspath(store), loaded_secrets(loader))
        data = {}
        for host in hosts:
            data.update(by_label.get(str(host.vars.get("fleet_label", host.name)), {}))
        return data
