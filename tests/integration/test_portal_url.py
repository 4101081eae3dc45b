# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A portal_url with /api/v1 appended, in a real ansible-playbook run against the emulator (issue 24): refused
before any request, with the origin to give instead (the assertions are in the playbook)."""
from pathlib import Path

PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "portal_url_api_path.yml"


def test_portal_url_with_api_path_is_refused_before_any_request(emulator, run_playbook):
    emulator.control.reset_counters()
    result = run_playbook(PLAYBOOK, "-e", "portal_url=%s/api/v1" % emulator.url, env=emulator.env())
    assert result.rc == 0, result  # the assert task passed: both tasks failed as they should
    assert "failed=0" in result.stdout and "ignored=2" in result.stdout, result  # two refusals, then the assert
    assert emulator.control.counters()["total"] == 0
    assert emulator.token not in result.stdout + result.stderr
