# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller side of isr.mqtt.mqtt_login_check: on the controller, the check runs in this worker.

The passwords to check are module arguments. A module process would get them in its AnsiballZ file (which
ANSIBLE_KEEP_REMOTE_FILES keeps) and ANSIBLE_DEBUG would print them with the module's arguments. With connection
local (the role isr.mqtt.device delegates the check to localhost) and paho-mqtt in the controller's Python, the
module's code runs here instead (see _in_process), so no file and no debug line holds them. Elsewhere the module
runs as a process, as any module does.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.isr.mqtt.plugins.modules import mqtt_login_check as module
from ansible_collections.isr.mqtt.plugins.plugin_utils._in_process import module_args, run_here, run_main


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        if module.mqtt is not None and run_here(self) and not self._task.async_val:
            result.update(run_main(module.main, module_args(self, self._task.args), self._task.check_mode, self._task.diff))
            return result
        wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
        result.update(self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
