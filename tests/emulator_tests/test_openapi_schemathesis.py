"""Schemathesis fuzzes the portal's OpenAPI: no 5xx, no answer that breaks the schema, all of its checks."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import Emulator

ST = Path(sys.executable).parent / "st"


@pytest.mark.skipif(not (ST.exists() or shutil.which("st")), reason="schemathesis CLI not installed")
def test_schemathesis_finds_nothing(tmp_path):
    # A separate process: an in-thread server would share this process's GIL and run several times slower.
    portal = Emulator(tmp_path, extra_args=["--hourly-budget", "1000000", "--max-subscribers", "100000"]).start()
    cmd = [str(ST) if ST.exists() else "st", "run", portal.url + "/api/v1/subscriber/openapi.json",
           "--header", "Authorization: Bearer " + portal.token, "--checks", "all", "--max-examples", "25",
           "--seed", "20261126", "--no-shrink"]
    try:
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=240, cwd=str(tmp_path))
    finally:
        portal.stop()
    output = done.stdout + done.stderr
    assert portal.token not in output  # schemathesis filters the Authorization header
    assert done.returncode == 0, output[-8000:]
    assert "12 selected" in output
