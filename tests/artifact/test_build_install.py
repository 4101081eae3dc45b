"""The release artifact: build the collection tarball, check what it ships, install it offline and run the
demo playbook (playbooks/demo_fleet.yml, the isr.mqtt.fleet role) from the installed copy against the emulator.

ANSIBLE_COLLECTIONS_PATH points only at the install directory here (tests/conftest.py points it at the
repository for every other test), so a file missing from the tarball fails this test.
"""
import json
import re
import subprocess
import tarfile

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from support import REPO, ansible_env, bin_path


class _StoreLoader(yaml.SafeLoader):
    """Reads a credential store; a `!vault` value is returned as its ciphertext (any ansible-core version)."""


_StoreLoader.add_constructor("!vault", lambda loader, node: loader.construct_scalar(node))

# Paths (or path parts) that must never be in the tarball.
FORBIDDEN = [
    (re.compile(r"\.(sqlite3?|db)$"), "database file"),
    (re.compile(r"(^|/)\.venv(/|$)"), "virtualenv"),
    (re.compile(r"(^|/)venv(/|$)"), "virtualenv"),
    (re.compile(r"^tests/output(/|$)"), "ansible-test output"),
    (re.compile(r"^benchmarks(/|$)"), "benchmarks (need a checkout)"),
    (re.compile(r"^scripts(/|$)"), "development scripts (need a checkout)"),
    (re.compile(r"(^|/)__pycache__(/|$)"), "bytecode cache"),
    (re.compile(r"\.pyc$"), "bytecode"),
    (re.compile(r"(^|/)\.coverage$"), "coverage data"),
    (re.compile(r"(^|/)\.pytest_cache(/|$)"), "pytest cache"),
    (re.compile(r"^docs/build(/|$)"), "built docs site"),
    (re.compile(r"\.tar\.gz$"), "nested tarball"),
    (re.compile(r"(^|/)mqtt_credentials\.yml$"), "credential store"),
]
EXPECTED = [
    "MANIFEST.json", "FILES.json", "meta/runtime.yml", "meta/execution-environment.yml", "requirements.txt",
    "plugins/modules/mqtt_fleet.py", "plugins/action/vault_credentials.py", "plugins/module_utils/_portal.py",
    "roles/fleet/tasks/main.yml", "roles/fleet/meta/argument_specs.yml", "playbooks/demo_fleet.yml",
]
VAULT_PASSWORD = "artifact-test-vault-password"


def run(cmd, env, cwd, timeout=600):
    completed = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(cwd), timeout=timeout, check=False)
    assert completed.returncode == 0, "%s\nrc=%s\nSTDOUT:\n%s\nSTDERR:\n%s" % (
        " ".join(map(str, cmd)), completed.returncode, completed.stdout[-20000:], completed.stderr[-5000:])
    return completed


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(tarball, install dir): the collection built from the repository and installed offline."""
    work = tmp_path_factory.mktemp("artifact")
    install_dir = work / "installed"
    env = ansible_env({"ANSIBLE_COLLECTIONS_PATH": str(install_dir)})
    # Two tries: a file edited in the working tree while the build reads it gives a checksum mismatch on install.
    for attempt in (1, 2):
        run([bin_path("ansible-galaxy"), "collection", "build", "--force", "--output-path", str(work / "dist"),
             str(REPO)], env, work)
        tarballs = sorted((work / "dist").glob("isr-mqtt-*.tar.gz"))
        assert len(tarballs) == 1, tarballs
        install = [bin_path("ansible-galaxy"), "collection", "install", "--offline", "--force", "-p",
                   str(install_dir), str(tarballs[0])]
        if attempt == 1:
            completed = subprocess.run(install, capture_output=True, text=True, env=env, cwd=str(work), timeout=600,
                                       check=False)
            if completed.returncode == 0 or "Checksum mismatch" not in completed.stderr:
                assert completed.returncode == 0, completed.stdout + completed.stderr
                break
        else:
            run(install, env, work)
    return tarballs[0], install_dir


RUNTIME = re.compile(r"^(plugins|roles|playbooks|meta|extensions)/")
DEV_TOOLS = re.compile(r"\b(scripts|benchmarks)/")


def runtime_references_to_dev_tools(tarball):
    """Lines (not comments) of the shipped plugins, roles, playbooks, meta and extensions that name scripts/ or
    benchmarks/, which the tarball leaves out."""
    found = []
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            name = member.name[2:] if member.name.startswith("./") else member.name
            if member.isfile() and RUNTIME.match(name):
                for number, line in enumerate(tar.extractfile(member).read().decode("utf-8", "replace").splitlines(), 1):
                    if DEV_TOOLS.search(line) and not line.lstrip().startswith("#"):
                        found.append("%s:%d: %s" % (name, number, line.strip()))
    return found


def test_tarball_contents(built):
    tarball = built[0]
    with tarfile.open(tarball) as tar:
        names = [n[2:] if n.startswith("./") else n for n in tar.getnames()]
    bad = ["%s (%s)" % (n, why) for n in names for pattern, why in FORBIDDEN if pattern.search(n)]
    assert not bad, "the tarball ships files it must not:\n" + "\n".join(bad)
    missing = [n for n in EXPECTED if n not in names]
    assert not missing, "the tarball lacks: %s" % missing
    assert not runtime_references_to_dev_tools(tarball)
    manifest = json.loads(tarfile.open(tarball).extractfile("MANIFEST.json").read())
    assert manifest["collection_info"]["namespace"] == "isr"
    assert manifest["collection_info"]["name"] == "mqtt"
    assert manifest["collection_info"]["dependencies"] == {}


def test_installed_copy_is_the_one_ansible_sees(built):
    install_dir = built[1]
    env = ansible_env({"ANSIBLE_COLLECTIONS_PATH": str(install_dir)})
    listed = run([bin_path("ansible-galaxy"), "collection", "list", "isr.mqtt", "--format", "json"], env, install_dir)
    paths = list(json.loads(listed.stdout))
    assert paths == [str(install_dir / "ansible_collections")], paths
    doc = run([bin_path("ansible-doc"), "--json", "isr.mqtt.mqtt_fleet"], env, install_dir)
    assert "isr.mqtt.mqtt_fleet" in json.loads(doc.stdout)


def test_demo_playbook_from_installed_copy(built, emulator, tmp_path):
    install_dir = built[1]
    collection = install_dir / "ansible_collections" / "isr" / "mqtt"
    playbook = collection / "playbooks" / "demo_fleet.yml"
    assert playbook.is_file(), "playbooks/demo_fleet.yml is not in the installed collection"
    password_file = tmp_path / "vault-pass"
    password_file.write_text(VAULT_PASSWORD + "\n")
    password_file.chmod(0o600)
    store = tmp_path / "store" / "mqtt_credentials.yml"
    env = ansible_env(dict(emulator.env(), ANSIBLE_COLLECTIONS_PATH=str(install_dir)))
    cmd = [bin_path("ansible-playbook"), "-i", "localhost,", str(playbook), "--vault-id", "demo@%s" % password_file,
           "-e", "demo_count=5", "-e", "demo_store=%s" % store]

    first = run(cmd, env, tmp_path)
    assert emulator.control.state()["clients"] == 5
    text = store.read_text()
    assert text.count("$ANSIBLE_VAULT") == 5, text

    # The passwords in the store log in, and none of them was printed.
    vault = VaultLib([("demo", VaultSecret(VAULT_PASSWORD.encode()))])
    credentials = yaml.load(text, Loader=_StoreLoader)["isr_mqtt_credentials"]
    assert sorted(credentials) == ["demo-device-%d" % i for i in range(1, 6)]
    for label, entry in credentials.items():
        password = vault.decrypt(entry["password"]).decode()
        assert password and password not in first.stdout + first.stderr, label
        assert emulator.control.verify(entry["username"], password)["ok"], label

    # A second run changes nothing on the portal and keeps the store's ciphertext.
    second = run(cmd, env, tmp_path)
    assert emulator.control.state()["clients"] == 5
    assert store.read_text() == text, second.stdout
