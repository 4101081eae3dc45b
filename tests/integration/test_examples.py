# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the EXAMPLES of every module (plugins/modules/*.py) with real ansible-playbook.

Each module's EXAMPLES are loaded as a task list and run, in order, as one playbook on
localhost against a fresh, empty emulator, with ISR_PORTAL_URL / ISR_PORTAL_TOKEN set
(the examples set no connection options of their own). So examples must work as a
sequence from an empty portal: create before you use, register results that later
examples need; variables an example uses must be defined in the example (task ``vars:``).
HOME is a temp dir, so an example may write to ``~/...``; a vault password is loaded
(``--vault-password-file``), so examples that vault passwords work.

Opting out: only when an example cannot run here at all, add the module's name with the
reason to SKIP below; the test then skips it visibly with that reason.
"""
import ast
from pathlib import Path

import pytest
import yaml

MODULES = Path(__file__).resolve().parents[2] / "plugins" / "modules"

SKIP = {
    # "module_name": "why its EXAMPLES cannot run against the emulator",
    "mqtt_login_check": "its EXAMPLES log in to a real MQTT broker with the fleet role's per-host facts; "
                        "the module runs against Mosquitto in tests/e2e/test_device_role.py",
}


def examples_of(path):
    """The EXAMPLES string of a module file, read without importing it."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXAMPLES" for t in node.targets):
            return ast.literal_eval(node.value)
    return None


def module_names():
    return sorted(p.stem for p in MODULES.glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("name", module_names())
def test_examples_run(name, emulator, run_playbook, tmp_path):
    if name in SKIP:
        pytest.skip(SKIP[name])
    examples = examples_of(MODULES / (name + ".py"))
    assert examples, "%s has no EXAMPLES" % name
    tasks = yaml.safe_load(examples)
    assert isinstance(tasks, list) and tasks, "EXAMPLES of %s must be a YAML list of tasks" % name
    playbook = tmp_path / "examples.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "EXAMPLES of %s" % name, "hosts": "localhost", "connection": "local",
        "gather_facts": False, "tasks": tasks}], sort_keys=False))
    home = tmp_path / "home"
    home.mkdir()
    vault_file = tmp_path / "vault-pass"
    vault_file.write_text("examples-vault-password\n")
    result = run_playbook(playbook, "--vault-password-file", str(vault_file), env=dict(emulator.env(), HOME=str(home)))
    if result.rc != 0:
        pytest.fail("EXAMPLES of %s failed:\n%r" % (name, result), pytrace=False)  # in full: no assert truncation
    assert emulator.token not in result.stdout + result.stderr
