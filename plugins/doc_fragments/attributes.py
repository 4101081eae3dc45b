# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):

    # Common attributes: isr.mqtt.attributes
    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
'''

    # isr.mqtt.attributes.action_group
    ACTION_GROUP = r'''
options: {}
attributes:
  action_group:
    description: Use C(group/isr.mqtt.portal) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - isr.mqtt.portal
'''

    # isr.mqtt.attributes.info_module: a read-only module behaves the same in check mode and has no diff.
    INFO_MODULE = r'''
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
'''
