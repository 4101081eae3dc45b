# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Where a new password may go. A module that would receive one with nowhere safe to put it writes nothing.

The collection's action plugin in front of the module (plugins/action/<module>.py, on the controller) knows
whether the run has a vault secret, whether the task said no_log, and whether the user opted in to plaintext,
and tells the module with ``password_sink``. Without the action plugin (the module run some other way) the
option keeps its default ``none``: only ``password_file`` is a sink then.
"""

from __future__ import annotations


def sink_argument_spec():
    """The options of every module that can receive a password (documented in doc fragment isr.mqtt.password_sink)."""
    return dict(
        return_password=dict(type="str", choices=["auto", "vaulted", "ciphertext", "plaintext"], default="auto", no_log=False),
        vault_id=dict(type="str"),
        password_sink=dict(type="str", choices=["result", "none"], default="none", no_log=False),
    )


def no_sink_message(what, password_file_option=True):
    """Why nothing was done, and the ways to fix it."""
    ways = ["start the run with a vault secret (--vault-id LABEL@prompt or --vault-password-file FILE; in AWX attach a "
            "Vault credential): the password is then returned vault-encrypted"]
    if password_file_option:
        ways.append("set password_file to write it to a 0600 file")
    ways.append("put no_log: true on the task (the registered result then holds it in plain text)")
    ways.append("or, for ad-hoc use only, return_password: plaintext")
    return ("This run would receive a new password (%s), but it has nowhere safe to go, so nothing was changed on the "
            "portal. Either %s." % (what, "; ".join(ways)))


def has_sink(params):
    """True when a new password received by this run can be handed on safely."""
    return params.get("password_sink") == "result" or bool(params.get("password_file"))


def unwritten_file_message(path, error, params, rerun):
    """A new password could not be written to password_file: say truthfully where it goes instead."""
    if params.get("password_sink") == "result":
        where = "it is returned in 'password' instead (vault-encrypted with the run's vault secret, or plain under no_log)"
    else:
        where = ("with no vault secret to encrypt it, the controller writes it to a 0600 file under "
                 "~/.ansible/isr_mqtt_rescued_passwords, named in 'rescued_password_files'")
    return ("Could not write password_file %s (%s); %s - store it now, the portal will not show it again. %s"
            % (path, error, where, rerun))
