# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: portal
short_description: The MQTT clients of the iShareRadio MQTT portal as inventory hosts
version_added: 0.1.0
description:
  - Reads every MQTT client of one portal account (one list request per 1000 clients, all pages) and makes one
    inventory host per client, with the client's settings as host variables and groups by pause state.
    Optionally adds the read-only subscribers as hosts of their own group.
  - Uses the same connection options and environment variables as the modules, so an AWX credential of the type
    in C(extensions/awx/credential_type_isr_portal.yml) (which injects E(ISR_PORTAL_URL) and E(ISR_PORTAL_TOKEN))
    is all an inventory source needs.
  - Never puts a password or the API token into host variables, the inventory cache or an error message.
    The portal's list answers carry no password.
  - "The configuration file must be named C(isr_mqtt.yml), C(isr_mqtt.yaml), C(*.isr_mqtt.yml) or C(*.isr_mqtt.yaml) and
    start with C(plugin: isr.mqtt.portal)."
  - "Host names: the label (O(hostnames=label), the default) or the client_id (O(hostnames=client_id)). Every character
    of a label that is not a letter, digit, C(_), C(.) or C(-) becomes C(_) (C(site a:1) gives host C(site_a_1));
    a client without label is named by its client_id."
  - "Labels are not unique on the portal. When several clients (or subscribers) would get the same host name, each of
    them is named C(<name>_<client_id>) (C(<name>_<id>) for a subscriber) and a warning lists them; no client is
    dropped and no host stands for two clients. The rule looks at every client of the account, also those that
    O(filters) leave out, so a host name means the same client whatever the filters."
  - "Host variables of a client: C(mqtt_client_id), C(mqtt_username), C(mqtt_label), C(mqtt_topic),
    C(mqtt_history_topic_prefix), C(mqtt_paused), C(mqtt_allow_publish), C(mqtt_allow_subscribe), C(mqtt_created_at),
    C(mqtt_rotated_at). Groups: C(mqtt_clients) (all clients), C(mqtt_paused) and C(mqtt_active)."
  - "Host variables of a read-only subscriber (O(include_subscribers=true)): C(mqtt_subscriber_id), C(mqtt_username),
    C(mqtt_label), C(mqtt_subscribe_filter), C(mqtt_created_at), C(mqtt_expires_at), C(mqtt_expired). Group:
    C(mqtt_subscribers)."
  - Values read from the portal are data, never templates (ansible-core 2.17 and 2.18 get them marked unsafe), so a label
    such as V({{ lookup(...\) }}) stays that text.
  - A portal error or a bad option fails this inventory source with the same message a module would give, and nothing
    is cached. C(ansible-inventory) and C(ansible-playbook) then only warn and go on without the source, unless
    E(ANSIBLE_INVENTORY_UNPARSED_FAILED) is V(true); set it wherever a missing inventory must stop the run.
author:
  - isr.mqtt maintainers (@isr-mqtt)
requirements:
  - requests
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
options:
  plugin:
    description: Marks the file as a configuration of this plugin.
    type: str
    required: true
    choices: [isr.mqtt.portal]
  portal_url:
    description:
      - URL of the iShareRadio MQTT SaaS portal, for example V(https://mqtt.ishareradio.com).
      - The origin is enough; a URL that already ends in C(/api/v1/subscriber) is accepted too. A URL that holds another
        part of the API path (C(/api), C(/api/v1), C(/api/v1/subscriber/publishers)) is refused before any request, since
        the API path would be appended to it.
      - Must start with C(https://). Plain C(http://) is accepted only to this machine (C(localhost), C(127.0.0.1), C(::1)),
        or with O(allow_http=true).
      - May be a template, for example V({{ lookup('ansible.builtin.env', 'MY_PORTAL_URL'\) }}).
    type: str
    env:
      - name: ISR_PORTAL_URL
  api_token:
    description:
      - Mgmt REST API token of the portal account (starts with C(isr_mqtt_rest_)), made in the portal under
        B(Settings > REST API tokens).
      - Prefer the E(ISR_PORTAL_TOKEN) environment variable (what the AWX credential type injects). In the file, give
        it as a template (V({{ lookup('ansible.builtin.env', 'MY_TOKEN'\) }})) or as a C(!vault) value (decrypted with
        the vault secrets of the run, C(--vault-id) or an AWX Vault credential); never in clear text.
    type: raw
    env:
      - name: ISR_PORTAL_TOKEN
  validate_certs:
    description:
      - Whether to verify the portal's TLS certificate. Set to V(false) only for a test portal; the plugin warns.
    type: bool
    default: true
  ca_path:
    description:
      - Path to a CA bundle (PEM) used to verify the portal's TLS certificate. Ignored when O(validate_certs=false).
    type: path
  allow_http:
    description:
      - Allow a plain C(http://) O(portal_url) to a host that is not this machine. The API token then crosses the
        network unencrypted; the plugin warns. For a test portal on a network you trust only.
    type: bool
    default: false
  timeout:
    description: Seconds to wait for the portal to answer one HTTP request.
    type: int
    default: 30
  rate_limit_max_wait:
    description:
      - Ceiling, in seconds, on the total time spent waiting for the portal's rate limit (5000 requests per hour per
        token), as for the modules. V(0) never waits.
    type: int
    default: 300
  hostnames:
    description:
      - What names the hosts. V(label) uses the client's label (made a safe host name, see the description),
        V(client_id) the portal's id of the client (for subscribers, their id).
    type: str
    choices: [label, client_id]
    default: label
  include_subscribers:
    description:
      - Also read the read-only subscribers (one more list) and add each as a host of the group C(mqtt_subscribers).
    type: bool
    default: false
  filters:
    description:
      - Which clients become hosts. Keys (all optional; every key given must match) are listed below.
      - C(label), a regular expression searched (Python C(re.search)) in the label; anchor it with C(^...$) for a
        full match. Applies to subscribers too. A client without label never matches it.
      - C(paused), a boolean; V(true) keeps only paused clients, V(false) only active ones. Subscribers have no
        pause state and are not affected.
      - An unknown key is an error, so a misspelt filter never lets everything through.
    type: dict
    default: {}
notes:
  - One list request per 1000 clients (plus the same for subscribers with O(include_subscribers=true)). With the
    inventory cache on (O(cache=true)), a run that finds the cache fresh sends no request at all.
  - The cache holds the portal's rows (no password, no token) under a key made of the configuration file's path;
    its entries also record the portal URL, and an entry of another portal is not used. Changing only the token
    (another account on the same portal) needs C(--flush-cache).
seealso:
  - module: isr.mqtt.mqtt_client_info
  - module: isr.mqtt.mqtt_client
"""

EXAMPLES = r"""
# portal.isr_mqtt.yml: the smallest configuration; ISR_PORTAL_URL and ISR_PORTAL_TOKEN come from the
# environment (or from an AWX credential of the type in extensions/awx/credential_type_isr_portal.yml).
plugin: isr.mqtt.portal

---
# fleet.isr_mqtt.yml: only the clients whose label starts with "site-", cached for 10 minutes, with groups per
# permission and a per-site group made from the label ("site-alpha-sensor-3" -> group "site_alpha").
plugin: isr.mqtt.portal
portal_url: https://mqtt.ishareradio.com
api_token: "{{ lookup('ansible.builtin.env', 'PORTAL_TOKEN_PRODUCTION') }}"
filters:
  label: "^site-"
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/isr-mqtt-inventory
cache_timeout: 600
groups:
  mqtt_publishers: mqtt_allow_publish
  mqtt_subscribers_too: mqtt_allow_subscribe
keyed_groups:
  - key: mqtt_label.split('-')[0:2] | join('_')
    separator: ""
compose:
  # The hosts are MQTT clients, not machines: run the tasks that target them on the controller.
  ansible_connection: "'local'"

---
# everything.isr_mqtt.yml: clients named by client_id, read-only subscribers too, the token vault-encrypted
# (ansible-vault encrypt_string --name api_token); run with --vault-id or an AWX Vault credential.
plugin: isr.mqtt.portal
hostnames: client_id
include_subscribers: true
api_token: !vault |
  $ANSIBLE_VAULT;1.1;AES256
  62313365396662343061393464336163383764373764613633653634306231386433626436623361
  6134333665353966363534333632666535333761666131620a663537646436643839616531643561
  63396265333966386166373632626539326166353965363262633030333630313338646335303630
  3438626666666137650a353638643435666633633964366338633066623234616432373231333331
  6564
"""

import os
import re

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.template import Templar
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.isr.mqtt.plugins.module_utils._portal import CLIENT_KEYS, SUBSCRIBER_KEYS, PortalClient, PortalError, base_url, no_core_dumps

try:
    from ansible.parsing.vault import EncryptedString as _Vaulted  # ansible-core >= 2.19
except ImportError:  # ansible-core 2.17 and 2.18
    from ansible.parsing.yaml.objects import AnsibleVaultEncryptedUnicode as _Vaulted

FILE_NAMES = ("isr_mqtt.yml", "isr_mqtt.yaml")
FILE_SUFFIXES = tuple("." + name for name in FILE_NAMES)
FILTER_KEYS = ("label", "paused")
CACHE_FORMAT = 1  # bumped when the cached shape changes: an entry of another format is read again from the portal
_HOST_UNSAFE = re.compile(r"[^\w.-]")  # \w: letters and digits of any script, and _
# ansible-core 2.19 and later never template a host variable that nobody marked trusted; before 2.19 every string
# was a template unless marked unsafe. (evaluate_expression is the documented surrogate for 2.19's templating.)
_MARK_UNSAFE = not hasattr(Templar, "evaluate_expression")


def _kind_of(value):
    """A type name for messages (2.19 wraps YAML lists and dicts in tagged subclasses)."""
    for kind in (list, dict, bool, int, float):
        if isinstance(value, kind):
            return kind.__name__
    return type(value).__name__


def safe_host_name(text):
    """A host name usable in Ansible patterns: every character but letters, digits, _ . - becomes _."""
    return _HOST_UNSAFE.sub("_", text)


def client_host_vars(row):
    return {
        "mqtt_client_id": row["client_id"],
        "mqtt_username": row["username"],
        "mqtt_label": row["label"],
        "mqtt_topic": row["topic"],
        "mqtt_history_topic_prefix": row["history_topic_prefix"],
        "mqtt_paused": row["paused"],
        "mqtt_allow_publish": row["allow_publish"],
        "mqtt_allow_subscribe": row["allow_subscribe"],
        "mqtt_created_at": row["created_at"],
        "mqtt_rotated_at": row["rotated_at"],
    }


def subscriber_host_vars(row):
    return {
        "mqtt_subscriber_id": row["id"],
        "mqtt_username": row["username"],
        "mqtt_label": row["label"],
        "mqtt_subscribe_filter": row["subscribe_filter"],
        "mqtt_created_at": row["created_at"],
        "mqtt_expires_at": row["expires_at"],
        "mqtt_expired": row["expired"],
    }


def assign_host_names(entries, hostnames):
    """Unique host names for ``entries`` (a list of ``(id, label)``), in the same order, and the collisions.

    The name is the safe form of the label (``hostnames == "label"``) or of the id. Every entry whose name is shared
    gets ``<name>_<id>``; ``collisions`` maps each shared name to the ids that had it. Ids are unique per kind, so the
    suffixed names are unique unless a label literally spells another entry's suffixed name: that is an error.
    """
    bases = []
    for entry_id, label in entries:
        use_label = hostnames == "label" and isinstance(label, str) and label != ""
        bases.append(safe_host_name(label if use_label else entry_id))
    holders = {}
    for (entry_id, dummy), base in zip(entries, bases):
        holders.setdefault(base, []).append(entry_id)
    collisions = dict((base, ids) for base, ids in holders.items() if len(ids) > 1)
    names = [("%s_%s" % (base, safe_host_name(entry_id))) if base in collisions else base
             for (entry_id, dummy), base in zip(entries, bases)]
    seen = {}
    for (entry_id, dummy), name in zip(entries, names):
        if name in seen:
            raise AnsibleParserError("isr.mqtt.portal: %s and %s both end up as host %r after the label collision rule; "
                                     "rename one of them on the portal (or use hostnames: client_id)." % (seen[name], entry_id, name))
        seen[name] = entry_id
    return names, collisions


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):

    NAME = "isr.mqtt.portal"

    def __init__(self):
        super(InventoryModule, self).__init__()
        self.client_factory = PortalClient  # unit tests hand in a client over a fake transport
        self.requests_sent = 0  # requests of the last parse (0 on a cache hit)

    def verify_file(self, path):
        name = os.path.basename(path)
        return super(InventoryModule, self).verify_file(path) and (name in FILE_NAMES or name.endswith(FILE_SUFFIXES))

    # -- options -------------------------------------------------------------

    def _fail(self, msg):
        raise AnsibleParserError("isr.mqtt.portal: %s" % msg)

    def _plain_option(self, name, secret=False):
        """An option's value as plain text: a vaulted value decrypted, a template rendered; None when unset.

        For a secret, messages never show the value nor the template that makes it.
        """
        value = self.get_option(name)
        if isinstance(value, _Vaulted):
            try:
                value = str(value)
            except Exception:  # undecryptable: which secret is missing is all we say
                self._fail("%s is vault-encrypted and cannot be decrypted with the vault secrets of this run; give them "
                           "(--vault-id, --vault-password-file, or an AWX Vault credential)." % name)
        if isinstance(value, str) and self.templar.is_template(value):
            try:
                value = self.templar.template(value)
            except Exception as exc:
                said = type(exc).__name__ if secret else str(exc)
                self._fail("%s: its template could not be rendered (%s)." % (name, said))
        if value is not None and not isinstance(value, str):
            self._fail("%s must be a string, not %s%s." % (name, _kind_of(value),
                                                           "; give the token itself (isr_mqtt_rest_...)" if secret else ""))
        return value or None

    def _connection(self):
        """(portal base URL, PortalClient), the options checked like a module checks them, before any request."""
        portal_url = self._plain_option("portal_url")
        token = self._plain_option("api_token", secret=True)
        if not portal_url:
            self._fail("portal_url is required: set portal_url in the inventory file or the ISR_PORTAL_URL environment "
                       "variable (for example https://mqtt.ishareradio.com).")
        if not token:
            self._fail("api_token is required: set the ISR_PORTAL_TOKEN environment variable (or api_token in the "
                       "inventory file, as a template or a !vault value); tokens start with isr_mqtt_rest_ and are made "
                       "under Settings -> REST API tokens in the portal.")
        timeout = self.get_option("timeout")
        if timeout is None or timeout <= 0:
            self._fail("timeout must be a positive number of seconds, got %r." % (timeout,))
        max_wait = self.get_option("rate_limit_max_wait")
        if max_wait is None or max_wait < 0:
            self._fail("rate_limit_max_wait must be 0 or more seconds, got %r." % (max_wait,))
        try:  # the client refuses a bad URL or token (and plain http:// off this machine) without a request
            base = base_url(portal_url)
            client = self.client_factory(portal_url=portal_url, api_token=token, validate_certs=self.get_option("validate_certs"),
                                         ca_path=self.get_option("ca_path"), timeout=timeout, rate_limit_max_wait=max_wait,
                                         allow_http=self.get_option("allow_http"), warn=self.display.warning)
        except PortalError as exc:
            self._fail(exc.msg)
        return base, client

    def _filters(self):
        filters = dict(self.get_option("filters") or {})
        unknown = sorted(set(filters) - set(FILTER_KEYS))
        if unknown:
            self._fail("filters: unknown key(s) %s; the keys are %s." % (", ".join(map(str, unknown)), ", ".join(FILTER_KEYS)))
        label = filters.get("label")
        if label is not None:
            if not isinstance(label, str):
                self._fail("filters.label must be a regular expression (a string), not %s." % type(label).__name__)
            try:
                filters["label"] = re.compile(label)
            except re.error as exc:
                self._fail("filters.label %r is not a valid regular expression: %s." % (label, exc))
        paused = filters.get("paused")
        if paused is not None and not isinstance(paused, bool):
            self._fail("filters.paused must be true or false, not %r." % (paused,))
        return filters

    # -- reading -------------------------------------------------------------

    def _fetch(self, base, client, include_subscribers):
        try:
            clients = client.list_clients()
            subscribers = client.list_subscribers() if include_subscribers else None
        except PortalError as exc:
            self._fail("reading the portal failed: %s" % exc.msg)
        finally:
            self.requests_sent = client.stats["requests"]
        return {"format": CACHE_FORMAT, "portal": base, "clients": clients, "subscribers": subscribers}

    @staticmethod
    def _usable(entry, portal, include_subscribers):
        """Whether a cache entry is one we wrote for this portal, with everything this run needs."""
        def rows_ok(rows, keys):
            return isinstance(rows, list) and all(isinstance(r, dict) and set(r) == set(keys) for r in rows)
        if not (isinstance(entry, dict) and entry.get("format") == CACHE_FORMAT and entry.get("portal") == portal):
            return False
        return rows_ok(entry.get("clients"), CLIENT_KEYS) and (not include_subscribers or rows_ok(entry.get("subscribers"), SUBSCRIBER_KEYS))

    def _rows(self, path, cache):
        base, client = self._connection()
        include_subscribers = self.get_option("include_subscribers")
        self.requests_sent = 0
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache")
        if use_cache and cache:
            try:
                entry = self._cache[cache_key]
            except KeyError:
                entry = None
            if self._usable(entry, base, include_subscribers):
                self.display.vvv("isr.mqtt.portal: %d clients from the inventory cache, no request" % len(entry["clients"]))
                return entry
        entry = self._fetch(base, client, include_subscribers)
        self.display.vvv("isr.mqtt.portal: %d clients read from %s in %d requests" % (len(entry["clients"]), base, self.requests_sent))
        if use_cache:
            self._cache[cache_key] = entry
        return entry

    # -- building the inventory ----------------------------------------------

    @staticmethod
    def _kept(row, filters, is_client):
        pattern = filters.get("label")
        if pattern is not None and not (isinstance(row["label"], str) and pattern.search(row["label"])):
            return False
        paused = filters.get("paused")
        return not (is_client and paused is not None and row["paused"] != paused)

    def _add_host(self, name, host_vars, groups):
        strict = self.get_option("strict")
        self.inventory.add_host(name)
        for group in groups:
            self.inventory.add_child(group, name)
        safe_vars = wrap_var(host_vars) if _MARK_UNSAFE else host_vars  # portal data is never a template
        for key, value in safe_vars.items():
            self.inventory.set_variable(name, key, value)
        self._set_composite_vars(self.get_option("compose"), safe_vars, name, strict=strict)
        self._add_host_to_composed_groups(self.get_option("groups"), safe_vars, name, strict=strict)
        self._add_host_to_keyed_groups(self.get_option("keyed_groups"), safe_vars, name, strict=strict)

    def _populate(self, entry, filters):
        clients = entry["clients"]
        subscribers = entry["subscribers"] if self.get_option("include_subscribers") else []
        entries = [(r["client_id"], r["label"]) for r in clients] + [(r["id"], r["label"]) for r in subscribers]
        names, collisions = assign_host_names(entries, self.get_option("hostnames"))
        for name, ids in sorted(collisions.items()):
            self.display.warning("isr.mqtt.portal: %d portal entries would be host %r (%s); each is named %s_<id> instead." % (
                len(ids), name, ", ".join(ids), name))
        for group in ("mqtt_clients", "mqtt_paused", "mqtt_active"):
            self.inventory.add_group(group)
        if self.get_option("include_subscribers"):
            self.inventory.add_group("mqtt_subscribers")
        for row, name in zip(clients, names):
            if self._kept(row, filters, True):
                self._add_host(name, client_host_vars(row), ("mqtt_clients", "mqtt_paused" if row["paused"] else "mqtt_active"))
        for row, name in zip(subscribers, names[len(clients):]):
            if self._kept(row, filters, False):
                self._add_host(name, subscriber_host_vars(row), ("mqtt_subscribers",))

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        no_core_dumps()  # the main ansible-playbook process holds the token from here on
        self._read_config_data(path)
        filters = self._filters()
        entry = self._rows(path, cache)
        self._populate(entry, filters)
