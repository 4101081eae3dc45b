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

It also keeps secrets inside this process: no AnsiballZ file (ANSIBLE_KEEP_REMOTE_FILES keeps none), no module
arguments or module output for ANSIBLE_DEBUG to print (it prints both for a module process), so the token and
the new passwords never cross the worker's boundary in clear text. ``run_here`` says when that applies.
"""

from __future__ import annotations

import functools

from ansible import constants as C
from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

from ansible_collections.isr.mqtt.plugins.module_utils import _portal, _run_guard
from ansible_collections.isr.mqtt.plugins.module_utils._portal import no_core_dumps
from ansible_collections.isr.mqtt.plugins.plugin_utils._vault import _EncryptedString

PORTAL_ENV_FALLBACKS = (("portal_url", "ISR_PORTAL_URL"), ("api_token", "ISR_PORTAL_TOKEN"))
PR_SET_DUMPABLE = 4  # linux/prctl.h

# Imported by the action plugins, which Ansible also loads in the main ansible-playbook process (the strategy
# looks at the class): that process holds the vault secrets, decrypted vaulted variables and no_log results, so
# it writes no core file either, nor do the workers it forks after this.
no_core_dumps()


def no_dumps_here():
    """This worker holds the token and new passwords: no core file, and (Linux) no ptrace or core of any kind."""
    no_core_dumps()
    try:
        import ctypes
        ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (ImportError, OSError, AttributeError):  # not Linux: RLIMIT_CORE is all there is
        pass


def run_here(action):
    """True when the module would run on this controller as the same user: then run_main runs it in this worker."""
    return getattr(action._connection, "transport", None) == "local" and not getattr(action._play_context, "become", False)


def plain(value):
    """A value of the task's arguments as a module process would get it: vaulted values (`!vault`) decrypted."""
    if isinstance(value, dict):
        return dict((key, plain(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if _EncryptedString is not None and isinstance(value, _EncryptedString):
        return to_text(str(value))
    if not isinstance(value, str) and hasattr(value, "data") and hasattr(value, "vault"):  # 2.17/2.18
        return to_text(value.data)
    return value


def module_args(action, args, env_fallbacks=()):
    """``args`` decrypted, with the task's ``environment:`` filling options a module process would read from it."""
    args = plain(dict(args))
    environment = {}
    action._compute_environment_string(environment)
    for option, variable in env_fallbacks:
        if args.get(option) is None and environment.get(variable):
            args[option] = environment[variable]
    return args


def warn_if_exposed(action):
    """A module process under ANSIBLE_DEBUG or ANSIBLE_KEEP_REMOTE_FILES: say what they show or keep (once a task)."""
    if C.DEFAULT_DEBUG or C.DEFAULT_KEEP_REMOTE_FILES:
        action._display.warning(
            "%s runs as a module process here (not on the controller with connection local, or with become, or the "
            "controller's Python lacks its library): ANSIBLE_DEBUG prints its arguments (the API token when it is an "
            "option, the passwords of mqtt_login_check) and its output (a new password before it is vault-encrypted), "
            "and ANSIBLE_KEEP_REMOTE_FILES keeps its arguments in the AnsiballZ file on %s. Turn both off for this run, "
            "or run the task on the controller (delegate_to: localhost)." % (action._task.resolved_action, action._play_context.remote_addr))


def run_main(main, args, check_mode, diff, hooks=None):
    """Run a module's ``main(module_class)`` in this process; returns its result (the exit_json/fail_json dict)."""
    no_dumps_here()
    try:
        main(functools.partial(InProcessModule, args, check_mode, diff, hooks=hooks))
    except ModuleDone as done:
        return done.result
    finally:
        _run_guard.release_all()  # the account lock a module process would have released by ending
    raise AnsibleActionFail("the module ended without a result")  # pragma: no cover


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


class InProcessAction(ActionBase):
    """An action plugin that runs its module's code in this worker when run_here(), else as a module process.

    Subclasses set MODULE_MAIN (the module's main(module_class)), and may say when the controller's Python lacks
    what the module needs (runs_here) and which options the task's environment fills (ENV_FALLBACKS).
    """

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = True
    MODULE_MAIN = None
    ENV_FALLBACKS = ()

    def can_run_here(self):
        """False when the controller's Python lacks a library the module needs: it then runs as a process."""
        return True

    def run(self, tmp=None, task_vars=None):
        result = super(InProcessAction, self).run(tmp, task_vars)
        del tmp
        if not self._task.async_val and run_here(self) and self.can_run_here():
            args = module_args(self, self._task.args, self.ENV_FALLBACKS)
            result.update(run_main(self.MODULE_MAIN, args, self._task.check_mode, self._task.diff))
            return result
        warn_if_exposed(self)
        wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
        result.update(self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result


class PortalInProcessAction(InProcessAction):
    """InProcessAction for a module that talks to the portal (needs `requests`; ISR_PORTAL_* from the environment)."""

    ENV_FALLBACKS = PORTAL_ENV_FALLBACKS

    def can_run_here(self):
        return _portal.HAS_REQUESTS
