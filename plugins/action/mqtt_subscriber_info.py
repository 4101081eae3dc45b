# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller side of isr.mqtt.mqtt_subscriber_info: on the controller, the module's code runs in this worker, so that the API
token (when it is an option) is in no AnsiballZ file and no ANSIBLE_DEBUG line (see _in_process)."""

from __future__ import annotations

from ansible_collections.isr.mqtt.plugins.modules import mqtt_subscriber_info as module
from ansible_collections.isr.mqtt.plugins.plugin_utils._in_process import PortalInProcessAction


class ActionModule(PortalInProcessAction):

    MODULE_MAIN = staticmethod(module.main)
