# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller side of isr.mqtt.mqtt_fleet: every password in RV(credentials) leaves the run vault-encrypted.

Each credential then also carries ``password_vault`` (the ciphertext as text), which isr.mqtt.vault_credentials
stores as it is: one encryption per password, where it arrives.
"""

from __future__ import annotations

from ansible_collections.isr.mqtt.plugins.plugin_utils._password_sink import PasswordSinkAction


class ActionModule(PasswordSinkAction):

    def password_slots(self, result):
        credentials = result.get("credentials")
        if not isinstance(credentials, dict):
            return []
        slots = []
        for label in sorted(credentials):
            entry = credentials[label]
            if isinstance(entry, dict):
                entry.setdefault("password_vault", None)
                slots.append((entry, "password", "%s" % label))
        return slots
