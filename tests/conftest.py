"""Shared pytest fixtures: a running emulator and a playbook runner (helpers in tests/support.py)."""
import subprocess

import pytest

from support import Emulator, PlaybookResult, ansible_env, bin_path


@pytest.fixture
def emulator(tmp_path):
    emu = Emulator(tmp_path).start()
    yield emu
    emu.stop()


@pytest.fixture
def run_playbook(tmp_path):
    """Run `ansible-playbook` for real; returns a PlaybookResult (rc, stdout, stderr)."""

    def run(playbook, *args, env=None, inventory=None, timeout=900):
        cmd = [bin_path("ansible-playbook"), "-i", inventory or "localhost,", str(playbook)] + list(args)
        completed = subprocess.run(cmd, check=False, capture_output=True, text=True, env=ansible_env(env),
                                   cwd=str(tmp_path), timeout=timeout)
        return PlaybookResult(completed)

    return run
