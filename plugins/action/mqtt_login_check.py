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

from ansible_collections.isr.mqtt.plugins.modules import mqtt_login_check as module
from ansible_collections.isr.mqtt.plugins.plugin_utils._in_process import InProcessAction


class ActionModule(InProcessAction):

    MODULE_MAIN = staticmethod(module.main)

    def can_run_here(self):
        return module.mqtt is not None
