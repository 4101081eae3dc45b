# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller side of isr.mqtt.mqtt_client: the new password leaves the run vault-encrypted (see _password_sink)."""

from __future__ import annotations

from ansible_collections.isr.mqtt.plugins.modules import mqtt_client as module
from ansible_collections.isr.mqtt.plugins.plugin_utils._password_sink import PasswordSinkAction


class ActionModule(PasswordSinkAction):

    MODULE_MAIN = staticmethod(module.main)

    def password_slots(self, result):
        label = (result.get("client") or {}).get("label") or self._task.args.get("label") or "mqtt_client"
        return [(result, "password", "%s" % label)]
