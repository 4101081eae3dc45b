# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark helper (not part of the collection): per-task wall time, written as JSON to $BENCH_TIMINGS.

A task runs from its v2_playbook_on_task_start to the next task's start (or the play's stats), so loops
and include_tasks are timed as a whole. Durations of tasks with the same name are summed (role batches).
"""
from __future__ import annotations

DOCUMENTATION = r"""
name: bench_timer
type: aggregate
short_description: per-task wall time for benchmarks/run.py
description: Writes per-task wall time (seconds and count by task name) as JSON to the file named by $BENCH_TIMINGS.
requirements: [enable it in ANSIBLE_CALLBACKS_ENABLED]
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.loaded = time.time()
        self.first_task = None
        self.current = None
        self.tasks = {}

    def _close(self):
        now = time.time()
        if self.current is not None:
            name, started = self.current
            entry = self.tasks.setdefault(name, {"seconds": 0.0, "count": 0})
            entry["seconds"] += now - started
            entry["count"] += 1
        self.current = None
        return now

    def v2_playbook_on_task_start(self, task, is_conditional):
        now = self._close()
        if self.first_task is None:
            self.first_task = now
        self.current = (task.get_name(), now)

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def v2_playbook_on_stats(self, stats):
        end = self._close()
        path = os.environ.get("BENCH_TIMINGS")
        if path:
            with open(path, "w") as handle:
                json.dump({"callback_loaded": self.loaded, "first_task": self.first_task, "end": end,
                           "tasks": self.tasks}, handle, indent=1)
