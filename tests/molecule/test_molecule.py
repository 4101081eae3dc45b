"""`molecule test` of the scenario extensions/molecule/default (the role isr.mqtt.fleet against the emulator).

Runs molecule as a subprocess from the collection root, with its ephemeral directory in a pytest temp dir so
parallel runs and other checkouts do not share state. Skipped only when molecule is not installed.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _molecule_missing():
    try:
        import molecule  # noqa: F401  pylint: disable=unused-import
    except ImportError:
        return True
    return False


def _processes_mentioning(text):
    """Pids of live processes whose command line contains `text` (reads /proc only)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(_molecule_missing(), reason="molecule is not installed in this Python (pip install molecule)")
def test_molecule_default_scenario(tmp_path):
    ephemeral = tmp_path / "molecule-ephemeral"
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)  # molecule.yml sets its own
    env.update({
        "PATH": bindir + os.pathsep + env.get("PATH", ""),
        "MOLECULE_EPHEMERAL_DIRECTORY": str(ephemeral),
        "MOLECULE_NO_COLOR": "1",
        "NO_COLOR": "1",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "PY_COLORS": "0",
    })
    done = subprocess.run([os.path.join(bindir, "molecule"), "test"], cwd=str(REPO), env=env,
                          capture_output=True, text=True, timeout=1800, check=False)
    out = ANSI.sub("", done.stdout + done.stderr)
    assert done.returncode == 0, out[-12000:]
    for step in ("create", "syntax", "prepare", "converge", "idempotence", "verify", "destroy"):
        assert re.search(r"%s: Executed: Successful" % step, out), (step, out[-6000:])
    # idempotence really compared two runs, and verify really checked the store against the portal
    assert "Idempotence completed successfully" in out or "idempotence: Executed: Successful" in out
    assert "Ask the portal whether the stored password logs in" in out
    # destroy stopped the emulator and removed the vault password and the store
    assert _processes_mentioning(str(ephemeral)) == []
    assert not (ephemeral / "vault-pass").exists() and not (ephemeral / "store").exists()
