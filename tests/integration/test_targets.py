"""Run every integration target (tests/integration/targets/*/tasks/main.yml) with real
ansible-playbook against a fresh emulator over HTTP. The targets assert inside Ansible."""
from pathlib import Path

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


@pytest.mark.parametrize("name", target_names())
def test_target(name, emulator, run_playbook, tmp_path):
    playbook = tmp_path / "target.yml"
    playbook.write_text(PLAYBOOK.format(
        name=name, url=emulator.url, token=emulator.token, control=emulator.info["control_url"],
        account=emulator.account_id, output_dir=tmp_path, tasks=TARGETS / name / "tasks" / "main.yml"))
    result = run_playbook(playbook, env=emulator.env())
    assert result.rc == 0, result
