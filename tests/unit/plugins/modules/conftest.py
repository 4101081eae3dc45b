"""Run a module's main() in-process against the real emulator (fixture `run_module`)."""
import json

import pytest
from ansible.module_utils import _internal
from ansible.module_utils.testing import patch_module_args

from ansible_collections.isr.mqtt.plugins.module_utils import _portal, _run_guard


@pytest.fixture
def run_module(emulator, capsys, monkeypatch):
    """run_module(module, **args) -> (failed, result); connection options default to the emulator's."""
    monkeypatch.setattr(_portal, "BACKOFF_BASE", 0.01)
    monkeypatch.setattr(_portal, "BACKOFF_CAP", 0.02)
    # Controller-side tests in the same process (the action plugin's) flip this flag; a module's warnings must
    # then still land in its result, as they do in a real module process.
    monkeypatch.setattr(_internal, "is_controller", False)

    def run(module, **args):
        # password_sink: what the action plugin sets when the run has a vault secret (or no_log); "none" tests the rule.
        defaults = dict(portal_url=emulator.url, api_token=emulator.token)
        if module.__name__.rsplit(".", 1)[-1] in ("mqtt_client", "mqtt_subscriber", "mqtt_fleet"):
            defaults["password_sink"] = "result"
        args = dict(defaults, **args)
        with patch_module_args(args):
            try:
                with pytest.raises(SystemExit) as exit_info:
                    module.main()
            finally:
                _run_guard.release_all()  # a module process would end here, and the kernel would release its locks
        result = json.loads(capsys.readouterr().out)
        assert emulator.token not in json.dumps(result)
        return exit_info.value.code != 0, result

    return run
