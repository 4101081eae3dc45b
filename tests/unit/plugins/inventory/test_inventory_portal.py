# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests of the isr.mqtt.portal inventory plugin: real plugin loading, option parsing and inventory data,
with the portal behind a fake transport (requests counted per test)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from ansible import constants as C
from ansible.errors import AnsibleError, AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultLib, VaultSecret
from ansible.plugins.doc_fragments import constructed, inventory_cache

from ansible_collections.isr.mqtt.plugins.inventory import portal as portal_inventory
from ansible_collections.isr.mqtt.plugins.module_utils._portal import PortalClient
from ansible_collections.isr.mqtt.tests.unit.plugins.module_utils.test__portal import FakeTransport

try:  # ansible-core >= 2.19
    from ansible.parsing.vault import VaultSecretsContext
except ImportError:  # 2.17 / 2.18
    VaultSecretsContext = None

TOKEN = "isr_mqtt_rest_inventory-unit-token"
ORIGIN = "https://portal.test"
API = "/api/v1/subscriber"
HOST_VARS = {"mqtt_client_id", "mqtt_username", "mqtt_label", "mqtt_topic", "mqtt_history_topic_prefix", "mqtt_paused",
             "mqtt_allow_publish", "mqtt_allow_subscribe", "mqtt_created_at", "mqtt_rotated_at"}


def client(n, label="dev-n", paused=False, **extra):
    cid = "pub-%012d" % n
    row = {"client_id": cid, "label": "dev-%d" % n if label == "dev-n" else label, "username": cid, "topic": "acc/%s/#" % cid,
           "paused": paused, "allow_publish": True, "allow_subscribe": n % 2 == 0, "history_topic_prefix": "acc/" + cid,
           "created_at": "2026-11-26T00:00:00Z", "rotated_at": "2026-11-27T00:00:00Z"}
    row.update(extra)
    return row


def subscriber(n, label="grafana", expired=False):
    sid = "sub-%012d" % n
    return {"id": sid, "username": sid, "label": label, "subscribe_filter": "acc/#", "created_at": "2026-11-26T00:00:00Z",
            "expires_at": "2026-01-01T00:00:00Z" if expired else "2999-01-01T00:00:00Z", "expired": expired}


class FakePortal(object):
    """Answers the two list routes from in-memory rows, in pages with `next` links like the emulator."""

    def __init__(self, clients=(), subscribers=(), status=200):
        self.clients = list(clients)
        self.subscribers = list(subscribers)
        self.status = status
        self.transport = FakeTransport(self.answer)

    def answer(self, request):
        url = urlsplit(request.url)
        if self.status != 200:
            return self.status, {"detail": "refused"}
        query = parse_qs(url.query)
        page, size = int(query["page"][0]), int(query["page_size"][0])
        rows = {API + "/publishers": self.clients, API + "/subscriber-mqtt-passwords": self.subscribers}[url.path]
        more = page * size < len(rows)
        nxt = "%s?page=%d&page_size=%d" % (url.path, page + 1, size) if more else None
        return 200, {"items": rows[(page - 1) * size:page * size], "page": page, "page_size": size, "total": len(rows), "next": nxt}

    @property
    def requests(self):
        return len(self.transport.calls)

    def factory(self, **kwargs):
        """What the plugin calls instead of PortalClient: a real client whose session talks to this fake."""
        made = PortalClient(**kwargs)
        made.session.mount("https://", self.transport)
        made.session.mount("http://", self.transport)
        return made


class Display(object):
    def __init__(self):
        self.warnings = []

    def warning(self, msg, *args, **kwargs):
        self.warnings.append(msg)

    def vvv(self, msg, *args, **kwargs):
        pass

    debug = vvvv = vvv


@pytest.fixture(scope="module", autouse=True)
def option_definitions():
    """Register the plugin's options as the plugin loader would (it cannot load this collection's plugins here:
    the tests import ansible_collections from sys.path, before any collection loader exists)."""
    options = {}
    for doc in (constructed.ModuleDocFragment.DOCUMENTATION, inventory_cache.ModuleDocFragment.DOCUMENTATION,
                portal_inventory.DOCUMENTATION):
        options.update(yaml.safe_load(doc)["options"])
    C.config.initialize_plugin_configuration_definitions("inventory", portal_inventory.InventoryModule.NAME, options)


def new_plugin():
    plugin = portal_inventory.InventoryModule()
    plugin._load_name = plugin.NAME
    return plugin


@pytest.fixture(autouse=True)
def portal_env(monkeypatch):
    """What the AWX credential type injects; tests that need something else change it."""
    monkeypatch.setenv("ISR_PORTAL_URL", ORIGIN)
    monkeypatch.setenv("ISR_PORTAL_TOKEN", TOKEN)


class Run(object):
    """One parse of a configuration file: the inventory, the warnings, the requests the portal saw."""

    def __init__(self, tmp_path, portal, config, cache=True, loader=None):
        path = tmp_path / "test.isr_mqtt.yml"
        path.write_text(config if isinstance(config, str) else json.dumps(dict({"plugin": "isr.mqtt.portal"}, **config)))
        self.plugin = new_plugin()
        self.plugin.client_factory = portal.factory
        self.display = self.plugin.display = Display()
        self.inventory = InventoryData()
        assert self.plugin.verify_file(str(path))
        before = portal.requests
        self.plugin.parse(self.inventory, loader or DataLoader(), str(path), cache=cache)
        if hasattr(self.plugin, "_cache"):  # what the inventory manager does after a parse
            self.plugin.update_cache_if_changed()
        self.requests = portal.requests - before

    def hosts(self, group=None):
        if group is None:
            return sorted(self.inventory.hosts)
        return sorted(h.name for h in self.inventory.groups[group].get_hosts())

    def vars(self, host):
        """The variables the plugin set on the host (without the magic ones InventoryData adds)."""
        return dict((k, v) for k, v in self.inventory.get_host(host).vars.items() if k not in ("inventory_file", "inventory_dir"))


def parse(tmp_path, portal, config=None, **kwargs):
    return Run(tmp_path, portal, config or {}, **kwargs)


def parse_error(tmp_path, portal, config):
    with pytest.raises(AnsibleError) as info:  # AnsibleOptionsError for an option's type or choice
        parse(tmp_path, portal, config)
    message = str(info.value)
    assert TOKEN not in message
    return message


# ---------------------------------------------------------------- hosts, variables, groups

def test_one_host_per_client_with_its_variables_and_pause_groups(tmp_path):
    portal = FakePortal([client(1), client(2, paused=True), client(3)])
    run = parse(tmp_path, portal)
    assert run.requests == 1
    assert run.hosts("mqtt_clients") == ["dev-1", "dev-2", "dev-3"]
    assert run.hosts("mqtt_paused") == ["dev-2"]
    assert run.hosts("mqtt_active") == ["dev-1", "dev-3"]
    host_vars = run.vars("dev-2")
    assert set(host_vars) == HOST_VARS
    assert host_vars["mqtt_client_id"] == "pub-000000000002" and host_vars["mqtt_paused"] is True
    assert host_vars["mqtt_allow_subscribe"] is True and host_vars["mqtt_rotated_at"] == "2026-11-27T00:00:00Z"
    assert "mqtt_subscribers" not in run.inventory.groups
    assert run.display.warnings == []


def test_extra_portal_fields_never_reach_the_inventory(tmp_path):
    run = parse(tmp_path, FakePortal([client(1, password="p4ssw0rd-from-portal", secret="x")]))
    assert "p4ssw0rd-from-portal" not in json.dumps(run.vars("dev-1"), default=str)


def test_all_pages_are_followed(tmp_path):
    portal = FakePortal([client(n) for n in range(2500)])
    run = parse(tmp_path, portal)
    assert run.requests == 3  # pages of 1000
    assert len(run.hosts("mqtt_clients")) == 2500
    assert [c["url"].split("?")[1] for c in portal.transport.calls] == [
        "page=1&page_size=1000", "page=2&page_size=1000", "page=3&page_size=1000"]


def test_hostnames_client_id(tmp_path):
    run = parse(tmp_path, FakePortal([client(1), client(2, label="dev-1")]), {"hostnames": "client_id"})
    assert run.hosts() == ["pub-000000000001", "pub-000000000002"]
    assert run.display.warnings == []


def test_subscribers_are_their_own_group(tmp_path):
    portal = FakePortal([client(1)], [subscriber(1), subscriber(2, label="old-dashboard", expired=True)])
    run = parse(tmp_path, portal, {"include_subscribers": True})
    assert run.requests == 2
    assert run.hosts("mqtt_subscribers") == ["grafana", "old-dashboard"]
    assert run.hosts("mqtt_clients") == ["dev-1"]
    old = run.vars("old-dashboard")
    assert old["mqtt_expired"] is True and old["mqtt_expires_at"] == "2026-01-01T00:00:00Z"
    assert old["mqtt_subscriber_id"] == "sub-000000000002" and old["mqtt_subscribe_filter"] == "acc/#"
    assert run.vars("grafana")["mqtt_expired"] is False


# ---------------------------------------------------------------- host names: collisions and unsafe labels

def test_shared_label_names_every_holder_by_label_and_id_and_warns(tmp_path):
    portal = FakePortal([client(1, label="pump"), client(2, label="pump"), client(3, label="valve")])
    run = parse(tmp_path, portal)
    assert run.hosts("mqtt_clients") == ["pump_pub-000000000001", "pump_pub-000000000002", "valve"]
    assert run.vars("pump_pub-000000000002")["mqtt_label"] == "pump"
    assert len(run.display.warnings) == 1
    assert "'pump'" in run.display.warnings[0] and "pub-000000000001, pub-000000000002" in run.display.warnings[0]


def test_label_is_made_a_safe_host_name(tmp_path):
    portal = FakePortal([client(1, label="site a:1"), client(2, label="Küche/Ofen"), client(3, label=""), client(4, label=None)])
    run = parse(tmp_path, portal)
    assert run.hosts() == ["Küche_Ofen", "pub-000000000003", "pub-000000000004", "site_a_1"]
    assert run.vars("site_a_1")["mqtt_label"] == "site a:1"


def test_labels_that_become_the_same_host_name_collide(tmp_path):
    run = parse(tmp_path, FakePortal([client(1, label="a b"), client(2, label="a_b")]))
    assert run.hosts() == ["a_b_pub-000000000001", "a_b_pub-000000000002"]
    assert len(run.display.warnings) == 1


def test_a_subscriber_and_a_client_with_one_label_collide(tmp_path):
    run = parse(tmp_path, FakePortal([client(1, label="grafana")], [subscriber(7)]), {"include_subscribers": True})
    assert run.hosts("mqtt_clients") == ["grafana_pub-000000000001"]
    assert run.hosts("mqtt_subscribers") == ["grafana_sub-000000000007"]


def test_a_label_spelling_another_clients_suffixed_name_fails_closed(tmp_path):
    portal = FakePortal([client(1, label="x"), client(2, label="x"), client(3, label="x_pub-000000000001")])
    message = parse_error(tmp_path, portal, {})
    assert "pub-000000000001" in message and "pub-000000000003" in message and "x_pub-000000000001" in message


# ---------------------------------------------------------------- filters

def test_filters_by_label_regex_and_pause_state(tmp_path):
    portal = FakePortal([client(1, label="site-a-1"), client(2, label="site-a-2", paused=True), client(3, label="lab-1"),
                         client(4, label=None)])
    assert parse(tmp_path, portal, {"filters": {"label": "^site-"}}).hosts() == ["site-a-1", "site-a-2"]
    assert parse(tmp_path, portal, {"filters": {"paused": True}}).hosts() == ["site-a-2"]
    assert parse(tmp_path, portal, {"filters": {"label": "^site-", "paused": False}}).hosts() == ["site-a-1"]


def test_filters_do_not_change_host_names(tmp_path):
    portal = FakePortal([client(1, label="pump"), client(2, label="pump", paused=True)])
    run = parse(tmp_path, portal, {"filters": {"paused": True}})
    assert run.hosts() == ["pump_pub-000000000002"]


def test_label_filter_applies_to_subscribers_and_paused_does_not(tmp_path):
    portal = FakePortal([client(1, label="g-1")], [subscriber(1, label="g-sub"), subscriber(2, label="other")])
    run = parse(tmp_path, portal, {"include_subscribers": True, "filters": {"label": "^g-", "paused": False}})
    assert run.hosts() == ["g-1", "g-sub"]


@pytest.mark.parametrize("filters, expected", [
    ({"lable": "x"}, "filters: unknown key(s) lable"),
    ({"label": "("}, "filters.label '(' is not a valid regular expression"),
    ({"label": 5}, "filters.label must be a regular expression"),
    ({"paused": "yes"}, "filters.paused must be true or false"),
])
def test_bad_filters_fail_before_any_request(tmp_path, filters, expected):
    portal = FakePortal([client(1)])
    assert expected in parse_error(tmp_path, portal, {"filters": filters})
    assert portal.requests == 0


# ---------------------------------------------------------------- constructed: compose, groups, keyed_groups, strict

def test_compose_groups_and_keyed_groups(tmp_path):
    portal = FakePortal([client(1, label="site-a-1"), client(2, label="site-b-1", paused=True), client(3, label="site-a-2")])
    run = parse(tmp_path, portal, {
        "compose": {"ansible_connection": "'local'", "site": "mqtt_label.split('-')[1]"},
        "groups": {"can_subscribe": "mqtt_allow_subscribe"},
        "keyed_groups": [{"key": "site", "prefix": "site"}, {"key": "mqtt_paused | string", "prefix": "paused"}],
    })
    assert run.vars("site-a-1")["ansible_connection"] == "local"
    assert run.hosts("site_a") == ["site-a-1", "site-a-2"]
    assert run.hosts("site_b") == ["site-b-1"]
    assert run.hosts("can_subscribe") == ["site-b-1"]
    assert run.hosts("paused_True") == ["site-b-1"]


def test_strict_makes_a_missing_variable_an_error(tmp_path):
    portal = FakePortal([client(1)])
    keyed = {"keyed_groups": [{"key": "mqtt_no_such_var", "prefix": "x"}]}
    assert parse(tmp_path, portal, keyed).hosts() == ["dev-1"]
    with pytest.raises(AnsibleParserError, match="mqtt_no_such_var"):
        parse(tmp_path, portal, dict(keyed, strict=True))


# ---------------------------------------------------------------- the inventory cache

def cache_config(tmp_path, **extra):
    return dict({"cache": True, "cache_plugin": "jsonfile", "cache_connection": str(tmp_path / "cache")}, **extra)


def test_cache_hit_sends_no_request_and_gives_the_same_inventory(tmp_path):
    portal = FakePortal([client(n, paused=n % 3 == 0) for n in range(2500)], [subscriber(1)])
    config = cache_config(tmp_path, include_subscribers=True)
    first = parse(tmp_path, portal, config)
    assert first.requests == 4
    second = parse(tmp_path, portal, config)
    assert second.requests == 0
    assert second.hosts("mqtt_paused") == first.hosts("mqtt_paused") and len(second.hosts()) == 2501
    assert second.vars("dev-3") == first.vars("dev-3")
    cached = "".join(p.read_text() for p in (tmp_path / "cache").iterdir())
    assert "pub-000000000003" in cached and TOKEN not in cached and ORIGIN in cached


def test_flush_cache_reads_the_portal_again(tmp_path):
    portal = FakePortal([client(1)])
    parse(tmp_path, portal, cache_config(tmp_path))
    portal.clients.append(client(2))
    flushed = parse(tmp_path, portal, cache_config(tmp_path), cache=False)  # what --flush-cache passes
    assert flushed.requests == 1 and flushed.hosts() == ["dev-1", "dev-2"]
    assert parse(tmp_path, portal, cache_config(tmp_path)).requests == 0  # the fresh answer was cached


def test_cache_of_another_portal_or_without_subscribers_is_not_used(tmp_path, monkeypatch):
    portal = FakePortal([client(1)], [subscriber(1)])
    parse(tmp_path, portal, cache_config(tmp_path))
    assert parse(tmp_path, portal, cache_config(tmp_path, include_subscribers=True)).requests == 2
    monkeypatch.setenv("ISR_PORTAL_URL", "https://other-portal.test")
    other = FakePortal([client(9)])
    run = parse(tmp_path, other, cache_config(tmp_path))
    assert run.requests == 1 and run.hosts() == ["dev-9"]


def test_a_damaged_cache_entry_is_read_again_from_the_portal(tmp_path):
    portal = FakePortal([client(1)])
    parse(tmp_path, portal, cache_config(tmp_path))
    (entry,) = list((tmp_path / "cache").iterdir())
    entry.write_text(entry.read_text().replace("label", "lable"))  # rows without a label key: not what we wrote
    run = parse(tmp_path, portal, cache_config(tmp_path))
    assert run.requests == 1 and run.hosts() == ["dev-1"]


def test_without_cache_every_parse_reads_the_portal(tmp_path):
    portal = FakePortal([client(1)])
    assert parse(tmp_path, portal).requests == 1
    assert parse(tmp_path, portal).requests == 1


# ---------------------------------------------------------------- errors and connection options

def test_portal_error_is_a_clear_parser_error_and_nothing_is_cached(tmp_path):
    portal = FakePortal([client(1)], status=401)
    message = parse_error(tmp_path, portal, cache_config(tmp_path))
    assert "rejected the API token" in message and "ISR_PORTAL_TOKEN" in message
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_a_list_answer_the_reader_does_not_understand_fails_closed(tmp_path):
    portal = FakePortal()
    portal.transport.script = lambda request: (200, {"unexpected": "shape"})
    message = parse_error(tmp_path, portal, {})
    assert "reading the portal failed" in message


@pytest.mark.parametrize("unset, expected", [("ISR_PORTAL_URL", "portal_url is required"),
                                             ("ISR_PORTAL_TOKEN", "api_token is required")])
def test_missing_connection_options_name_the_env_var(tmp_path, monkeypatch, unset, expected):
    monkeypatch.delenv(unset)
    portal = FakePortal([client(1)])
    message = parse_error(tmp_path, portal, {})
    assert expected in message and unset in message
    assert portal.requests == 0


@pytest.mark.parametrize("config, expected", [
    ({"portal_url": "portal.test"}, "portal_url must start with https://"),
    ({"portal_url": ORIGIN + "/api/v1/"}, "give the portal's origin only, for example %s " % ORIGIN),
    ({"portal_url": ORIGIN + "/api"}, "a part of the API path: /api/v1/subscriber would be appended"),
    ({"portal_url": "http://portal.test"}, "set allow_http: true"),
    ({"timeout": 0}, "timeout must be a positive number"),
    ({"rate_limit_max_wait": -1}, "rate_limit_max_wait must be 0 or more"),
    ({"api_token": [TOKEN]}, "api_token must be a string, not list"),
    ({"hostnames": "name"}, "Invalid value 'name' for config 'hostnames'"),
])
def test_bad_options_fail_before_any_request(tmp_path, config, expected):
    portal = FakePortal([client(1)])
    assert expected in parse_error(tmp_path, portal, config)
    assert portal.requests == 0


def test_options_in_the_file_win_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ISR_PORTAL_URL", "https://unused.test")
    monkeypatch.setenv("ISR_PORTAL_TOKEN", "isr_mqtt_rest_unused")
    portal = FakePortal([client(1)])
    parse(tmp_path, portal, {"portal_url": ORIGIN + "/api/v1/subscriber/", "api_token": TOKEN, "timeout": 7})
    call = portal.transport.calls[0]
    assert call["url"].startswith(ORIGIN + API + "/publishers?")
    assert call["headers"]["Authorization"] == "Bearer " + TOKEN and call["kwargs"]["timeout"] == 7


def test_token_from_a_template_in_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("ISR_PORTAL_TOKEN")
    monkeypatch.setenv("MY_PORTAL_TOKEN", TOKEN)
    portal = FakePortal([client(1)])
    parse(tmp_path, portal, {"api_token": "{{ lookup('env', 'MY_PORTAL_TOKEN') }}"})
    assert portal.transport.calls[0]["headers"]["Authorization"] == "Bearer " + TOKEN


def test_a_template_that_fails_is_reported_without_its_text(tmp_path, monkeypatch):
    monkeypatch.delenv("ISR_PORTAL_TOKEN")
    message = parse_error(tmp_path, FakePortal(), {"api_token": "{{ no_such_variable_%s }}" % "tokenish"})
    assert "api_token: its template could not be rendered" in message and "tokenish" not in message


VAULT_SECRET = ("default", VaultSecret(b"inventory-unit-vault-password"))


def vaulted_config(secret):
    ciphertext = VaultLib([secret]).encrypt(TOKEN.encode()).decode()
    return "plugin: isr.mqtt.portal\napi_token: !vault |\n" + "".join("  %s\n" % line for line in ciphertext.splitlines())


def test_token_as_a_vault_value_in_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("ISR_PORTAL_TOKEN")
    if VaultSecretsContext is not None:
        monkeypatch.setattr(VaultSecretsContext, "_current", VaultSecretsContext([VAULT_SECRET]))
    loader = DataLoader()
    loader.set_vault_secrets([VAULT_SECRET])
    portal = FakePortal([client(1)])
    run = Run(tmp_path, portal, vaulted_config(VAULT_SECRET), loader=loader)
    assert run.hosts() == ["dev-1"]
    assert portal.transport.calls[0]["headers"]["Authorization"] == "Bearer " + TOKEN


def test_a_vault_value_without_its_secret_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("ISR_PORTAL_TOKEN")
    if VaultSecretsContext is not None:
        monkeypatch.setattr(VaultSecretsContext, "_current", VaultSecretsContext([]))
    portal = FakePortal([client(1)])
    with pytest.raises(AnsibleParserError) as info:
        Run(tmp_path, portal, vaulted_config(VAULT_SECRET))
    assert "api_token is vault-encrypted and cannot be decrypted" in str(info.value)
    assert portal.requests == 0


def test_allow_http_reads_a_plain_http_portal_and_warns(tmp_path):
    portal = FakePortal([client(1)])
    run = parse(tmp_path, portal, {"portal_url": "http://portal.test", "allow_http": True})
    assert run.hosts() == ["dev-1"]
    assert portal.transport.calls[0]["url"].startswith("http://portal.test" + API + "/publishers?")
    assert any("allow_http is true" in w for w in run.display.warnings), run.display.warnings


def test_only_files_named_isr_mqtt_yml_or_yaml_are_taken(tmp_path):
    plugin = new_plugin()
    for name, taken in (("a.isr_mqtt.yml", True), ("a.isr_mqtt.yaml", True), ("isr_mqtt.yml", True),
                        ("isr_mqtt.yaml", True), ("myisr_mqtt.yml", False), ("isr_mqtt.yml.bak", False),
                        ("a.yml", False), ("aws_ec2.yml", False)):
        (tmp_path / name).write_text("plugin: isr.mqtt.portal\n")
        assert plugin.verify_file(str(tmp_path / name)) is taken
    assert plugin.verify_file(str(tmp_path / "missing.isr_mqtt.yml")) is False


def test_assign_host_names_is_independent_of_order():
    entries = [("pub-1", "a"), ("pub-2", "b"), ("pub-3", "a")]
    names, collisions = portal_inventory.assign_host_names(entries, "label")
    back, dummy = portal_inventory.assign_host_names(entries[::-1], "label")
    assert names == back[::-1] == ["a_pub-1", "b", "a_pub-3"]
    assert collisions == {"a": ["pub-1", "pub-3"]}


def test_the_examples_work(tmp_path):
    """Each EXAMPLES document, with the connection pointed at the fake portal (their own token sources are
    covered above)."""
    documents = portal_inventory.EXAMPLES.split("\n---\n")
    assert len(documents) == 3
    portal = FakePortal([client(1, label="site-alpha-sensor-1"), client(2, label="site-alpha-sensor-2", paused=True),
                         client(3, label="lab-1")], [subscriber(1)])
    runs = []
    for document in documents:
        config = yaml.load(document, Loader=_VaultAsText)
        config.update(portal_url=ORIGIN, api_token=TOKEN)
        if config.get("cache"):  # the short name: no collection loader here to resolve ansible.builtin.jsonfile
            config.update(cache_plugin="jsonfile", cache_connection=str(tmp_path / "cache"))
        runs.append(parse(tmp_path, portal, config))
    assert runs[0].hosts() == ["lab-1", "site-alpha-sensor-1", "site-alpha-sensor-2"]
    assert runs[1].hosts("site_alpha") == ["site-alpha-sensor-1", "site-alpha-sensor-2"]
    assert runs[1].hosts("mqtt_subscribers_too") == ["site-alpha-sensor-2"]
    assert runs[1].vars("site-alpha-sensor-1")["ansible_connection"] == "local"
    assert runs[2].hosts() == ["pub-000000000001", "pub-000000000002", "pub-000000000003", "sub-000000000001"]


class _VaultAsText(yaml.SafeLoader):
    pass


_VaultAsText.add_constructor("!vault", lambda loader, node: loader.construct_scalar(node))
