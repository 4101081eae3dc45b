# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run a module's main() inside the controller's worker: the same code, without a module process.

A module written against AnsibleModule takes ``module_class`` (default AnsibleModule) and gets an
InProcessModule instead: the same options checked by the same argument spec, ``exit_json``/``fail_json`` hand
the result back to the action plugin (by raising ModuleDone) instead of printing JSON and exiting. Nothing
travels through a pipe, so nothing can be lost or cut on the way, and hooks (attributes the module looks for,
e.g. ``keep_password``) see each password the moment it arrives.
"""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values


class ModuleDone(Exception):
    """exit_json/fail_json of an in-process module run: ``result`` is what the module returned."""

    def __init__(self, result):
        super(ModuleDone, self).__init__("module finished")
        self.result = result


class InProcessModule(object):
    """The part of AnsibleModule a collection module uses: params, check_mode, _diff, warn, exit/fail_json."""

    def __init__(self, args, check_mode, diff, argument_spec, supports_check_mode=False, hooks=None, **constraints):
        self.check_mode = bool(check_mode and supports_check_mode)
        self._diff = bool(diff)
        for name, hook in (hooks or {}).items():  # e.g. keep_password(label, credential), progress(...)
            setattr(self, name, hook)
        self._warnings = []
        validator = ArgumentSpecValidator(argument_spec, **constraints)
        validated = validator.validate(args)
        self.no_log_values = set(validated._no_log_values)
        self.params = validated.validated_parameters
        if validated.error_messages:
            self.fail_json(msg="; ".join(validated.error_messages))

    def warn(self, warning):
        self._warnings.append(warning)

    def exit_json(self, **result):
        result.setdefault("changed", False)
        self._done(result)

    def fail_json(self, msg, **result):
        result.update(failed=True, msg=msg)
        self._done(result)

    def _done(self, result):
        if self._warnings:
            result["warnings"] = list(self._warnings)
        raise ModuleDone(remove_values(result, self.no_log_values))
