# -*- coding: utf-8 -*-
"""Test stand-in for the ansible.posix.json stdout callback (not installed here): every task result of the run,
dumped at the end with Ansible's own JSON encoder, as that callback does."""
from __future__ import annotations

import json

from ansible.module_utils.common.json import AnsibleJSONEncoder
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: json_results
type: stdout
short_description: every task result as one JSON document (test stand-in for ansible.posix.json)
description: Collects every task result and prints them as JSON at the end of the run.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "json_results"

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.results = []

    def _record(self, result, status):
        self.results.append({"task": result._task.get_name(), "host": result._host.get_name(), "status": status,
                             "result": result._result})

    def v2_runner_on_ok(self, result, **kwargs):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_playbook_on_stats(self, stats):
        self._display.display(json.dumps({"plays": self.results}, cls=AnsibleJSONEncoder, indent=4, sort_keys=True))
