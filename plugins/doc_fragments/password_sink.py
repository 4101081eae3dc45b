# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):

    # Options of the modules that receive passwords (isr.mqtt.password_sink); the action plugin acts on them.
    DOCUMENTATION = r'''
options:
  return_password:
    description:
      - How a new password is returned in the result.
      - V(auto) (the default) returns it B(vault-encrypted) with the vault secret the run was started with
        (C(--vault-id) or C(--vault-password-file); in AWX a Vault credential). The registered value is a real vaulted
        value. Templates and C(include_vars) decrypt it; callbacks, logs and fact caches only ever show ciphertext.
        On a task with C(no_log=true) the password is returned in plain text instead (existing playbooks keep working).
      - V(vaulted) always returns it vault-encrypted, also under C(no_log=true).
      - V(ciphertext) returns the vault ciphertext as plain text (C($ANSIBLE_VAULT;...)), also under C(no_log=true).
        Nothing decrypts it by accident, not even C(debug) with C(var), which on ansible-core 2.19 and later decrypts
        vaulted values; M(isr.mqtt.vault_credentials) stores it as it is. The role P(isr.mqtt.fleet#role) uses it.
      - V(plaintext) returns it in plain text without C(no_log). For ad-hoc use only; the module warns, and any
        callback, log or fact cache may then show the password.
      - When a run would receive a password and none of these can take it (no vault secret, no C(no_log), no
        C(password_file) where the module has it, no V(plaintext)), the module fails B(before any write) and says so.
    type: str
    choices: [auto, vaulted, ciphertext, plaintext]
    default: auto
  vault_id:
    description:
      - The vault id (label) of the run's vault secret to encrypt passwords with, when the run has several.
        Default is the first one loaded.
    type: str
  password_sink:
    description:
      - Set by the collection's action plugin on the controller, which knows the run's vault secret and C(no_log);
        do not set it yourself.
      - V(result) means a new password returned in the result has a safe place to go; V(none) (the default, for a
        module run without the action plugin) allows a new password only into C(password_file) where the module has it.
    type: str
    choices: [result, none]
    default: none
'''
