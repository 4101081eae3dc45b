# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The isr.mqtt.fleet_store vars plugin on real store files (rendered by isr.mqtt.vault_credentials), with real vault
secrets; only the plugin's option lookup is a stand-in (the integration test in tests/fleet uses real config)."""
from __future__ import annotations

import json

import pytest
from ansible.errors import AnsibleParserError
from ansible.inventory.group import Group
from ansible.inventory.host import Host
from ansible.parsing.dataloader import DataLoader
from ansible.module_utils.common.text.converters import to_text
from ansible.parsing.vault import VaultLib, VaultSecret
from ansible.template import Templar

from ansible_collections.isr.mqtt.plugins.action.vault_credentials import render_store
from ansible_collections.isr.mqtt.plugins.plugin_utils._vault import Vaulted
from ansible_collections.isr.mqtt.plugins.vars import fleet_store
from ansible_collections.isr.mqtt.plugins.vars.fleet_store import VarsModule

try:  # ansible-core >= 2.19
    from ansible.parsing.vault import VaultSecretsContext
    from ansible.template import trust_as_template
except ImportError:  # 2.17 / 2.18 (scripts/matrix.sh venvs): every string is a template
    VaultSecretsContext = None

    def trust_as_template(text):
        return text

FLEET = ("fleet", VaultSecret(b"unit-fleet-vault-password"))


def cred(n, password=None):
    cid = "pub-%012d" % n
    return {"client_id": cid, "username": cid, "password": password or "secret-password-%d" % n,
            "publish_topic": "acct/%s/" % cid, "history_topic_prefix": "acct/%s" % cid, "rotated_at": "2026-01-01T00:00:00Z"}


def encrypt(password):
    return VaultLib([FLEET]).encrypt(password, FLEET[1], vault_id="fleet").decode()


def write_store(path, credentials):
    """A store as isr.mqtt.vault_credentials writes it."""
    path.write_text(render_store(dict((label, dict(entry, password=Vaulted(encrypt(entry["password"]))))
                                      for label, entry in credentials.items())))


def plaintext_of(value):
    """What a template sees of a vault object."""
    return str(value) if VaultSecretsContext is not None else to_text(value.data)


@pytest.fixture
def secrets_context(monkeypatch):
    """Let EncryptedString values decrypt (ansible-playbook sets this up once per run; 2.19+ only)."""
    if VaultSecretsContext is not None:
        monkeypatch.setattr(VaultSecretsContext, "_current", VaultSecretsContext([FLEET]))


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    monkeypatch.setattr(fleet_store, "_LOADED", {})


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "mqtt_credentials.yml"
    write_store(path, {"dev-1": cred(1), "dev-2": cred(2)})
    return path


class Warnings(object):
    def __init__(self):
        self.messages = []

    def warning(self, msg, *args, **kwargs):
        self.messages.append(msg)


def host(name, **variables):
    entity = Host(name)
    for key, value in variables.items():
        entity.set_variable(key, value)
    return entity


def get_vars(store, entities, path=None):
    plugin = VarsModule()
    plugin.get_option = lambda name: {"store": store.name}[name]
    loader = DataLoader()
    loader.set_vault_secrets([FLEET])
    return plugin.get_vars(loader, str(path or store.parent), entities)


def test_each_host_gets_the_entry_of_its_label_with_the_password_still_encrypted(store, secrets_context):
    by_name = get_vars(store, [host("dev-1")])
    by_label = get_vars(store, [host("gateway-7", fleet_label="dev-2")])
    assert by_name["mqtt_client_id"] == cred(1)["client_id"] and by_label["mqtt_client_id"] == cred(2)["client_id"]
    assert set(by_name) == {"mqtt_client_id", "mqtt_username", "mqtt_password", "mqtt_publish_topic",
                            "mqtt_history_topic_prefix", "mqtt_rotated_at"}
    assert type(by_name["mqtt_password"]).__name__ in ("EncryptedString", "AnsibleVaultEncryptedUnicode")
    assert plaintext_of(by_label["mqtt_password"]) == cred(2)["password"]
    assert get_vars(store, [host("not-a-device")]) == {}
    assert get_vars(store, [Group("devices")]) == {}


def test_no_store_gives_nothing(tmp_path):
    assert get_vars(tmp_path / "mqtt_credentials.yml", [host("dev-1")]) == {}


def test_an_absolute_store_path_is_read_whatever_the_directory(store, tmp_path):
    plugin = VarsModule()
    plugin.get_option = lambda name: str(store)
    loader = DataLoader()
    loader.set_vault_secrets([FLEET])
    assert plugin.get_vars(loader, str(tmp_path / "elsewhere"), [host("dev-1")])["mqtt_client_id"] == cred(1)["client_id"]


def test_journaled_passwords_of_a_killed_run_win_over_the_store(store, secrets_context):
    rotated = encrypt("rotated-password-1")
    journal = store.with_name(store.name + ".journal")
    journal.write_text(json.dumps(dict(cred(1), label="dev-1", password_vault=rotated, password=None)) + "\n"
                       + json.dumps({"label": "dev-2", "remove": True}) + "\n")
    assert plaintext_of(get_vars(store, [host("dev-1")])["mqtt_password"]) == "rotated-password-1"
    assert get_vars(store, [host("dev-2")]) == {}


def test_the_store_is_read_once_until_it_changes(store, monkeypatch, secrets_context):
    reads = []
    real_read = fleet_store.read_store
    monkeypatch.setattr(fleet_store, "read_store", lambda path: reads.append(path) or real_read(path))
    for dummy in range(5):
        get_vars(store, [host("dev-1")])
    assert len(reads) == 1
    write_store(store, {"dev-1": cred(1, password="new-password-1")})
    assert plaintext_of(get_vars(store, [host("dev-1")])["mqtt_password"]) == "new-password-1"
    assert len(reads) == 2


@pytest.mark.parametrize("damage, expected", [
    ("store", "is not valid YAML"),
    ("journal", "has a damaged line 1"),
])
def test_a_damaged_store_or_journal_fails_naming_the_file(store, damage, expected):
    if damage == "store":
        store.write_text("isr_mqtt_credentials: [unclosed\n")
        named = str(store)
    else:
        named = str(store) + ".journal"
        with open(named, "w") as handle:
            handle.write("{not json\n{\"label\": \"dev-1\", \"remove\": true}\n")
    with pytest.raises(AnsibleParserError) as failure:
        get_vars(store, [host("dev-1")])
    assert "isr.mqtt.fleet_store" in str(failure.value) and named in str(failure.value) and expected in str(failure.value)


def test_an_entry_without_vault_ciphertext_gives_its_host_nothing_and_warns(store, monkeypatch):
    warnings = Warnings()
    monkeypatch.setattr(fleet_store, "display", warnings)
    text = store.read_text()
    start = text.index('  "dev-2":')
    store.write_text(text[:start] + '  "dev-2":\n    client_id: "pub-2"\n    password: "plain-text-password"\n')
    assert get_vars(store, [host("dev-2")]) == {}
    assert get_vars(store, [host("dev-1")])["mqtt_client_id"] == cred(1)["client_id"]
    assert len(warnings.messages) == 1 and "dev-2" in warnings.messages[0] and "plain-text-password" not in warnings.messages[0]


def test_portal_text_from_the_store_is_never_a_template(tmp_path):
    path = tmp_path / "mqtt_credentials.yml"
    write_store(path, {"dev-1": dict(cred(1), username="{{ 6 * 7 }}")})
    variables = get_vars(path, [host("dev-1")])
    assert Templar(loader=DataLoader(), variables=variables).template(trust_as_template("{{ mqtt_username }}")) == "{{ 6 * 7 }}"


def test_a_store_that_disappears_mid_run_fails_naming_it(store):
    assert get_vars(store, [host("dev-1")])["mqtt_client_id"] == cred(1)["client_id"]
    store.unlink()
    with pytest.raises(AnsibleParserError) as failure:
        get_vars(store, [host("dev-1")])
    assert str(store) in str(failure.value) and "is gone now" in str(failure.value)


def test_a_store_that_appears_mid_run_is_served(tmp_path):
    path = tmp_path / "mqtt_credentials.yml"
    assert get_vars(path, [host("dev-1")]) == {}  # a first run: no store yet
    write_store(path, {"dev-1": cred(1)})
    assert get_vars(path, [host("dev-1")])["mqtt_client_id"] == cred(1)["client_id"]


def sealed_store(path, credentials):
    """A store as this version of isr.mqtt.vault_credentials writes it: every entry with its integrity check."""
    from ansible_collections.isr.mqtt.plugins.plugin_utils._seal import Sealer
    sealer = Sealer([FLEET], FLEET[1])
    entries = dict((label, dict(entry, password=Vaulted(encrypt(entry["password"])))) for label, entry in credentials.items())
    for label, entry in entries.items():
        entry["check"] = sealer.seal(label, entry)
    path.write_text(render_store(entries))


def test_an_entry_with_an_edited_field_gives_its_host_nothing_and_warns(tmp_path, monkeypatch):
    warnings = Warnings()
    monkeypatch.setattr(fleet_store, "display", warnings)
    path = tmp_path / "mqtt_credentials.yml"
    sealed_store(path, {"dev-1": cred(1), "dev-2": cred(2)})
    assert get_vars(path, [host("dev-2")])["mqtt_username"] == cred(2)["username"]
    path.write_text(path.read_text().replace('username: "%s"' % cred(2)["username"], 'username: "pub-999999999999"'))
    assert get_vars(path, [host("dev-2")]) == {}
    assert get_vars(path, [host("dev-1")])["mqtt_client_id"] == cred(1)["client_id"]
    assert len(warnings.messages) == 1 and "dev-2" in warnings.messages[0] and "integrity check" in warnings.messages[0]


def test_a_store_checked_with_another_secret_is_served_as_it_is(tmp_path):
    path = tmp_path / "mqtt_credentials.yml"
    sealed_store(path, {"dev-1": cred(1)})
    plugin = VarsModule()
    plugin.get_option = lambda name: path.name
    loader = DataLoader()
    loader.set_vault_secrets([("other", VaultSecret(b"not-the-stores-secret"))])
    assert plugin.get_vars(loader, str(tmp_path), [host("dev-1")])["mqtt_client_id"] == cred(1)["client_id"]
