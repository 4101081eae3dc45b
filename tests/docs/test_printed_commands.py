"""Every command that scripts/demo.sh, the README and the quickstart print works when pasted into a new shell.

Each runs in `bash -c` in a copy of the repository, with a clean environment: the venv is not on PATH and no
ANSIBLE_* / ISR_* variable is set, exactly as in a new terminal. Only ISR_VENV names the existing venv, so that
the scripts do not install a second one (scripts/venv.sh would create .venv otherwise). Commands that say
`source demo/env.sh` get the venv, the collection and the emulator from there, and from nowhere else.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO

# Blocks of the docs that this test does not run, by a line they hold, and why. Each must still be in the docs.
NOT_RUN = {
    "ansible localhost -m isr.mqtt.portal_info": "probes the real portal: needs its URL, a token and the network",
    "ansible-playbook site.yml --vault-id mqtt@prompt": "the reader's own playbook against the real portal, with a prompt",
    "bash scripts/test.sh": "the test command itself (this test is part of it)",
    "bash benchmarks/run.sh": "the benchmark: 30-40 minutes",
    "ansible-playbook -i inventory.yml fleet.yml --vault-id fleet@prompt": "needs the real portal, the reader's inventory and a prompt",
}
SOURCE = "source demo/env.sh"
STOP = "bash scripts/demo.sh stop"
# The quickstart's ways to install the collection from the checkout: each runs in a new shell of its own
# (test_quickstart_install_from_a_checkout), not in the emulator's walk-through.
INSTALL = ("ansible-galaxy collection build", "ln -s ")


def bash_blocks(markdown):
    return [m.group(1).strip() for m in re.finditer(r"```bash\n(.*?)```", markdown, re.S)]


def not_run(block):
    lines = [line.strip() for line in block.splitlines()]
    return next((reason for key, reason in NOT_RUN.items() if any(line.startswith(key) for line in lines)), None)


def installs(block):
    return any(line.strip().startswith(INSTALL) for line in block.splitlines())


PYTHON_WARNING = re.compile(r"^\S+:\d+: \w+Warning: ")  # then the source line, indented by two spaces


def printed_blocks(output):
    """The commands the demo suggests: groups of lines indented by two spaces after 'Try it in a new shell'.

    A Python warning on stderr (for example cryptography's DSA deprecation, printed by ansible-core) is no suggestion.
    """
    blocks, current = [], []
    lines = output.split("Try it in a new shell", 1)[1].splitlines()[1:]
    lines = [line for i, line in enumerate(lines) if not (PYTHON_WARNING.match(line) or (i and PYTHON_WARNING.match(lines[i - 1])))]
    for line in lines:
        if line.startswith("  "):
            current.append(line.strip())
        elif current:
            blocks.append(current)
            current = []
    return blocks + ([current] if current else [])


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A copy of what git would ship (tracked plus new, not ignored, files): no demo/ or .venv from this one."""
    dest = tmp_path_factory.mktemp("checkout")
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=str(REPO),
                           capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = REPO / os.fsdecode(name)
        if source.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            target.chmod(source.stat().st_mode & 0o777)
    return dest


@pytest.fixture(scope="module")
def shell(checkout, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ANSIBLE_", "ISR_", "DEMO_", "VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p and p != venv_bin)
    env.update(ISR_VENV=sys.prefix)  # HOME stays the real one (Ansible's async jobs live under it)

    def run(script, expect_rc=0, **extra):
        done = subprocess.run(["bash", "-c", script], cwd=str(checkout), env=dict(env, **extra), capture_output=True,
                              text=True, timeout=900, stdin=subprocess.DEVNULL, check=False)
        out = done.stdout + done.stderr
        run.stdout = done.stdout  # the printed suggestions, without Python warnings that stderr may add after them
        assert done.returncode == expect_rc, "%s\n--- rc=%s\n%s" % (script, done.returncode, out[-6000:])
        return out

    run.home = home
    return run


def token_of(checkout):
    return json.loads((checkout / "demo" / "emulator.json").read_text())["token"]


def check_demo_suggestions(shell, checkout, output):
    blocks = printed_blocks(output)
    assert blocks, output[-3000:]
    assert token_of(checkout) not in output
    for block in blocks:
        if block == [STOP]:
            continue
        assert block[0] == SOURCE, block  # every suggestion starts by sourcing the env file
        out = shell("\n".join(block))
        if "password" in block[-1]:
            assert "VARIABLE IS NOT DEFINED" not in out and '.password": "' in out, out
    return blocks


def test_readme_commands(shell, checkout):
    blocks = bash_blocks((checkout / "README.md").read_text())
    assert blocks[0] == "bash scripts/demo.sh"
    shell(blocks[0], DEMO_DEVICES="2")  # the README's command; a small fleet keeps it quick
    for name in ("emulator.json", "emulator.log"):  # both hold the API token (issue 24)
        assert oct((checkout / "demo" / name).stat().st_mode & 0o777) == oct(0o600), name
    check_demo_suggestions(shell, checkout, shell.stdout)
    assert not (checkout / ".venv").exists()
    for block in blocks[1:]:
        if not_run(block) is None:
            shell(block)


def test_quickstart_and_demo_keep(shell, checkout):
    blocks = bash_blocks((checkout / "docs" / "quickstart.md").read_text())
    runnable = [b for b in blocks if not_run(b) is None and not installs(b)]
    assert runnable[0].startswith("DEMO_KEEP=1") and runnable[1] == SOURCE
    shell(runnable[0])
    suggested = check_demo_suggestions(shell, checkout, shell.stdout)
    assert [STOP] in suggested
    pid = json.loads((checkout / "demo" / "emulator.json").read_text())["pid"]

    # A second DEMO_KEEP=1 run refuses to start over the running emulator, and says how to stop it.
    refused = shell(runnable[0], expect_rc=1)
    assert STOP in refused and str(pid) in refused
    os.kill(pid, 0)  # still running, its database intact

    # The rest of the quickstart, in one shell as a reader would type it; it ends by stopping the emulator.
    stop_at = next(i for i, b in enumerate(runnable) if STOP in b)
    files = re.findall(r"```yaml\n# (\S+\.yml)\n(.*?)```", (checkout / "docs" / "quickstart.md").read_text(), re.S)
    work = shell.home / "isr-quickstart"
    work.mkdir()
    for name, text in files:  # the playbooks the reader saves
        (work / name).write_text(text)
    out = shell("set -e\n" + "\n".join(runnable[1:stop_at + 1]), HOME=str(shell.home))  # ~/isr-quickstart in a temp home
    assert "site-alpha-sensor" in out and "failed=1" not in out
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    store = (work / "mqtt_credentials.yml").read_text()
    assert "site-alpha-01" in store and "demo-device" not in store  # its own store, not the demo's
    assert "site-alpha" not in (checkout / "demo" / "mqtt_credentials.yml").read_text()
    assert token_of(checkout) not in out
    for block in runnable[stop_at + 1:]:  # after the emulator: the real portal's settings
        shell(block)


def test_quickstart_install_from_a_checkout(shell, checkout, tmp_path_factory):
    """Each way to install, pasted into a new shell of a controller that has ansible-core (the venv's, on PATH) and
    a home of its own: afterwards Ansible finds the collection there, with no ANSIBLE_COLLECTIONS_PATH."""
    blocks = [b for b in bash_blocks((checkout / "docs" / "quickstart.md").read_text()) if installs(b)]
    assert len(blocks) == 2, blocks  # build + install of the tarball; the symlink
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    for block in blocks:
        home = tmp_path_factory.mktemp("install-home")
        shell(block, HOME=str(home), PATH=path)
        listed = shell("set -o pipefail\nansible-galaxy collection list isr.mqtt\nansible-doc --json isr.mqtt.mqtt_client | "
                       "python3 -c 'import json, sys; print(\"documented:\", *json.load(sys.stdin))'", HOME=str(home), PATH=path)
        installed = home / ".ansible" / "collections" / "ansible_collections" / "isr" / "mqtt"
        assert "%s/.ansible/collections/ansible_collections" % home in listed, listed
        assert "documented: isr.mqtt.mqtt_client" in listed, listed
        assert (installed / "MANIFEST.json").is_file() or installed.resolve() == checkout.resolve(), block


def test_not_run_blocks_are_still_in_the_docs():
    text = (REPO / "README.md").read_text() + (REPO / "docs" / "quickstart.md").read_text()
    for first in NOT_RUN:
        assert first in text, "%s is no longer in the docs: drop it from NOT_RUN" % first


def run_guide(shell, checkout, name, home):
    """Every bash block of a guide, in order, in one new shell (set -e), as a reader pastes them; the emulator is
    stopped again even when a block fails."""
    blocks = bash_blocks((checkout / "docs" / name).read_text())
    assert blocks[0].startswith("DEMO_KEEP=1") and blocks[-1] == STOP, blocks
    home.mkdir()
    try:
        out = shell(blocks[0])  # the demo keeps the real HOME (its async listener job lives under it)
        out += shell("set -e\n" + "\n".join(blocks[1:]), HOME=str(home))  # ~/isr-... in a temp home
    finally:
        shell(STOP)
    assert "no demo emulator is running" not in out  # the guide's own STOP found it running
    assert "Starting the emulator portal" in out or "starting over with a new, empty emulator portal" in out
    assert token_of(checkout) not in out
    assert "Run the handlers now" not in out
    work = next(home.glob("isr-*"))
    assert not list(work.rglob("*.lock")) and not list(work.rglob("*.masked"))  # nothing left beside store or files
    assert not (checkout / "demo" / "mqtt_credentials.yml.lock").exists()
    return out


def test_rotation_guide(shell, checkout):
    home = shell.home / "rotation"
    out = run_guide(shell, checkout, "rotation.md", home)
    assert "rotated 0; 0 of 3 devices fail to log in" in out and "rotated 2; 0 of 3 devices fail to log in" in out, out[-5000:]
    files = sorted((home / "isr-rotation" / "devices").glob("*/mqtt.env"))
    assert [f.parent.name for f in files] == ["sensor-01", "sensor-02", "sensor-03"]
    assert "sensor-0" in (home / "isr-rotation" / "mqtt_credentials.yml").read_text()


def test_device_role_guide(shell, checkout):
    home = shell.home / "device-role"
    out = run_guide(shell, checkout, "device-role.md", home)
    assert "published" in out and "sensor-01" in out
    recaps = re.findall(r"^sensor-0\d .*$", out, re.M)
    assert len(recaps) == 4 and all("failed=0" in r for r in recaps), recaps   # two runs, two devices
    assert all("changed=0" in r for r in recaps[2:]), recaps                     # the check-mode rerun
    assert sorted(f.parent.name for f in (home / "isr-devices" / "devices").glob("*/mqtt.env")) == ["sensor-01", "sensor-02"]
