"""Run every integration target with real ansible-playbook against a fresh emulator over HTTP, as ansible-test
integration would (scripts/integration.sh runs them with ansible-test itself): tasks/main.yml targets in a generated
play, runme.sh targets (those that need their own vault secret) as scripts. The targets assert inside Ansible."""
import os
import subprocess
import sys
from pathlib import Path

import yaml

from support import ansible_env

import pytest

TARGETS = Path(__file__).resolve().parent / "targets"
PLAYBOOK = """
- name: Integration target {name}
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    portal_url: "{url}"
    api_token: "{token}"
    control_url: "{control}"
    account_id: "{account}"
    output_dir: "{output_dir}"
  tasks:
    - name: Run the target's tasks
      ansible.builtin.include_tasks: "{tasks}"
"""


def target_names():
    return sorted(p.parent.parent.name for p in TARGETS.glob("*/tasks/main.yml"))


def script_target_names():
    return sorted(p.parent.name for p in TARGETS.glob("*/runme.sh"))


@pytest.mark.parametrize("name", target_names())
def test_target(name, emulator, run_playbook, tmp_path):
    playbook = tmp_path / "target.yml"
    playbook.write_text(PLAYBOOK.format(
        name=name, url=emulator.url, token=emulator.token, control=emulator.info["control_url"],
        account=emulator.account_id, output_dir=tmp_path, tasks=TARGETS / name / "tasks" / "main.yml"))
    result = run_playbook(playbook, env=emulator.env())
    assert result.rc == 0, result


@pytest.mark.parametrize("name", script_target_names())
def test_script_target(name, emulator, tmp_path):
    config = tmp_path / "integration_config.yml"
    config.write_text(yaml.safe_dump({"portal_url": emulator.url, "api_token": emulator.token,
                                      "control_url": emulator.info["control_url"], "account_id": emulator.account_id}))
    config.chmod(0o600)
    output_dir = tmp_path / "output"
    output_dir.mkdir()
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])  # this venv's ansible-playbook
    done = subprocess.run(["bash", "runme.sh"], cwd=str(TARGETS / name), capture_output=True, text=True, timeout=900, check=False,
                          env=ansible_env({"ISR_INTEGRATION_CONFIG": str(config), "OUTPUT_DIR": str(output_dir), "PATH": path}))
    assert done.returncode == 0, (done.stdout + done.stderr)[-8000:]
