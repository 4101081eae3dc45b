#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Documentation only: the work is done by the action plugin plugins/action/vault_credentials.py on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: vault_credentials
short_description: Keep MQTT credentials in a YAML store with vault-encrypted passwords
version_added: 0.1.0
description:
  - Merges MQTT credentials (as returned by M(isr.mqtt.mqtt_fleet)) into a store file on the controller, readable YAML with
    one entry per label under the key C(isr_mqtt_credentials), each password an inline C(!vault) value. The file can
    be reviewed in git and read back with M(ansible.builtin.include_vars).
  - Encrypts with the vault secret the run was started with (C(--vault-id), C(--vault-password-file), or an AWX Vault
    credential). Without one it fails before writing anything.
  - Unchanged entries keep their ciphertext byte for byte, so a run that receives no new password does not rewrite the file.
  - Writes atomically (temporary file in the same directory, fsync, rename) with mode C(0600), under an exclusive lock
    (C(PATH.lock), removed again when the write is done); the store is re-read under the lock, so concurrent runs on one
    store lose nothing.
  - Returns every entry of the store in RV(credentials), passwords as vault-encrypted objects, so output at any verbosity
    and fact caches see only ciphertext; templates get the password.
  - Folds the journal C(PATH.journal) (passwords that M(isr.mqtt.mqtt_fleet) journaled vault-encrypted with its option
    C(journal), for example by a run that was killed) into the store, then removes the journal.
  - With O(facts_from), sets the facts C(mqtt_client_id), C(mqtt_username), C(mqtt_password) (vault-encrypted),
    C(mqtt_publish_topic), C(mqtt_history_topic_prefix), C(mqtt_rotated_at) from one entry of RV(credentials).
  - With O(run_lock), takes or gives back the run lock of the store instead (see O(run_lock)).
  - Reading (no O(credentials), no O(remove)) checks that every entry carries a password that decrypts with this run's
    vault secret. A damaged entry (truncated, altered, C(password) null) is named in RV(damaged), left out of
    RV(credentials) and warned about, so that M(isr.mqtt.mqtt_fleet) with C(recover_missing) rotates it. When no vaulted
    entry decrypts (the store was written with another vault password), it fails naming the vault id the store needs.
  - Each entry carries C(check), an integrity check of its label, plain fields (C(client_id), C(username), the topics,
    C(rotated_at)) and password ciphertext, keyed with the vault secret (HMAC-SHA256, key by PBKDF2 with the salt in
    the check); journal records carry one too. Reading treats an entry (or journal record) whose fields were edited as
    damaged, like a password that does not decrypt; checking costs no decryption. An entry without a check is accepted
    only in a store written by an earlier version (no entry has one), once, with a warning, and sealed in the same read.
  - Before it replaces the store, renders it, reads it back and compares; a store that would not read back as written
    is never written (the old one is kept). A failed write (disk full, read-only) names the path.
author:
  - isr.mqtt maintainers (@isr-mqtt)
extends_documentation_fragment:
  - isr.mqtt.attributes
attributes:
  action:
    support: full
    description: Runs on the controller as an action plugin.
  check_mode:
    support: full
    details: Reports what would change and writes nothing.
  diff_mode:
    support: full
    details: Lists the labels added, updated and removed; never a password.
options:
  path:
    description:
      - The store file on the controller. Its directory must exist. Created when missing.
      - One of O(path) and O(facts_from) is required; O(run_lock) needs O(path).
    type: path
  credentials:
    description:
      - Label to credential (keys C(client_id), C(username), C(password), C(publish_topic), C(history_topic_prefix),
        C(rotated_at)), for example RV(isr.mqtt.mqtt_fleet#module:credentials). Entries without a password are ignored with a warning.
      - Template it from a registered result of a task with C(no_log=true); this plugin never returns the plaintext.
    type: dict
    default: {}
  remove:
    description: Labels to drop from the store (for example RV(isr.mqtt.mqtt_fleet#module:deleted)).
    type: list
    elements: str
    default: []
  vault_id:
    description: The vault id whose secret encrypts the passwords. When not set, the first secret of the run is used.
    type: str
  facts_from:
    description:
      - One entry of RV(credentials) of an earlier run of this plugin; sets the C(mqtt_*) facts of the host instead of
        touching the store. The password is taken from the entry's C(password_vault) (ciphertext), so the
        C(password) key may be left out.
    type: dict
  run_lock:
    description:
      - Take (V(acquire)) or give back (V(release)) the run lock of the store at O(path), instead of touching the store.
        Wrap a whole provisioning run in it (acquire before the first list, release in an C(always) section) so that
        two runs of one fleet do not both find a client missing and both create it.
      - The lock is the file C(PATH.run-lock), created exclusively, holding the pid of C(ansible-playbook) and the host
        name. V(acquire) waits (polling, with a message when it starts and ends waiting) until the lock is free or
        stale (its process is gone on this host; a lock of another host is never judged stale), then takes it; a
        lock this C(ansible-playbook) already holds counts as taken. V(release) removes it only when this
        C(ansible-playbook) holds it.
      - Never reports a change. In check mode the lock is not taken.
    type: str
    choices: [acquire, release]
  lock_timeout:
    description: With O(run_lock=acquire), seconds to wait for the lock; then fail naming the holder. V(0) fails at once.
    type: int
    default: 600
  space_for:
    description:
      - When reading, check first that the store's directory can take the store plus this many new entries (a
        temporary file of that size is written, synced and removed), and fail naming the path when it cannot (disk
        full, read-only). The role passes the number of devices, so a run that could not store new passwords fails
        before any request to the portal instead of rotating passwords it would lose. V(0) skips the check.
    type: int
    default: 0
  credentials_for:
    description:
      - Return only the entries of these labels in RV(credentials) (labels without an entry are ignored); V([]) returns
        none. The store itself is read, checked and written whole either way.
      - Every registered result stays in memory for the rest of the play, so with a big store pass only the labels you
        need. Not set, every entry is returned.
    type: list
    elements: str
  return_password:
    description:
      - How the C(password) of each entry of RV(credentials) is returned.
      - V(vaulted) returns a vault-encrypted value, which templates decrypt (to write a device's file, for example).
        On ansible-core 2.19 and later M(ansible.builtin.debug) with its C(var) option is a template
        too and shows it decrypted.
      - V(ciphertext) returns the ciphertext as plain text, like its C(password_vault). No template
        decrypts it, so the registered result holds no password that M(ansible.builtin.debug) (or C(hostvars)) could show.
        O(facts_from) takes such an entry as it is. The role C(isr.mqtt.fleet) uses it.
    type: str
    choices: [vaulted, ciphertext]
    default: vaulted
notes:
  - Never copy the store or a fact with M(ansible.builtin.copy) and its default C(decrypt=true); that writes plain text.
  - "ansible-core 2.19 restores a vault-encrypted fact from a persistent fact cache (for example C(jsonfile)) as its
    ciphertext text: after such a round trip, C(mqtt_password) holds the ciphertext, not the password. Set the facts
    in the same play that uses them, or read the store with M(ansible.builtin.include_vars)."
seealso:
  - module: isr.mqtt.mqtt_fleet
"""

EXAMPLES = r"""
- name: Provision and keep the passwords out of logs
  isr.mqtt.mqtt_fleet:
    clients: "{{ devices }}"
  vars:
    devices:
      - label: site-beta-01
      - label: site-beta-02
  register: fleet
  no_log: true
  delegate_to: localhost
  run_once: true

- name: Persist every new password, vault-encrypted (vault_id picks the secret when the run has several)
  isr.mqtt.vault_credentials:
    path: "{{ playbook_dir }}/mqtt_credentials.yml"
    credentials: "{{ fleet.credentials | default({}) }}"
    remove: "{{ fleet.deleted | default([]) }}"
  register: store
  delegate_to: localhost
  run_once: true

# In a play over the device hosts the label is usually inventory_hostname; here one device's facts are set.
- name: Give a device its own facts (mqtt_password stays vaulted)
  isr.mqtt.vault_credentials:
    facts_from: "{{ store.credentials[device_label] | dict2items | rejectattr('key', 'eq', 'password') | items2dict }}"
  vars:
    device_label: site-beta-01

- name: Read the store back (needs the vault secret)
  ansible.builtin.include_vars:
    file: "{{ playbook_dir }}/mqtt_credentials.yml"
    name: store_vars
  no_log: true

# Around a whole provisioning run (as the role isr.mqtt.fleet does): a second run of the same store waits.
- name: Reconcile under the store's run lock
  block:
    - name: Take the run lock (waits up to lock_timeout seconds while another run holds it)
      isr.mqtt.vault_credentials:
        path: "{{ playbook_dir }}/mqtt_credentials.yml"
        run_lock: acquire
        lock_timeout: 600

    - name: List, create and persist here
      ansible.builtin.debug:
        msg: "{{ mqtt_client_id }} is {{ mqtt_username }}"
  always:
    - name: Release the run lock (only if this run holds it)
      isr.mqtt.vault_credentials:
        path: "{{ playbook_dir }}/mqtt_credentials.yml"
        run_lock: release
"""

RETURN = r"""
credentials:
  description:
    - Every entry of the store (after the merge), by label, or those of O(credentials_for). C(password) is a
      vault-encrypted object (with O(return_password=ciphertext) its ciphertext as text); C(password_vault) is its
      ciphertext as text.
  returned: when O(path) is set, without O(run_lock)
  type: dict
  sample:
    dev-1: {client_id: pub-3f9c2a71d0b4, username: pub-3f9c2a71d0b4, password: "<vault-encrypted>",
            password_vault: "$ANSIBLE_VAULT;1.2;AES256;fleet ...", publish_topic: "550e.../pub-3f9c2a71d0b4/",
            history_topic_prefix: "550e.../pub-3f9c2a71d0b4", rotated_at: "2026-11-26T00:00:00Z"}
added:
  description: Labels added to the store.
  returned: when O(path) is set, without O(run_lock)
  type: list
  elements: str
updated:
  description: Labels whose entry changed (new password or new details).
  returned: when O(path) is set, without O(run_lock)
  type: list
  elements: str
removed:
  description: Labels removed from the store.
  returned: when O(path) is set, without O(run_lock)
  type: list
  elements: str
journaled:
  description: Labels whose entry changed by folding the journal C(PATH.journal) into the store (added, updated or removed).
  returned: when O(path) is set, without O(run_lock)
  type: list
  elements: str
path:
  description: The store file.
  returned: when O(path) is set, without O(run_lock)
  type: str
damaged:
  description:
    - When reading (no O(credentials), no O(remove)), label to why its entry cannot be used (no password, not vault
      ciphertext, does not decrypt). Those entries are left out of RV(credentials) and RV(rotated_at).
  returned: when O(path) is set, without O(run_lock)
  type: dict
  sample: {site-alpha-07: "the password does not decrypt with this run's vault secret (damaged)"}
rotated_at:
  description: Label to the C(rotated_at) stored with its password; pass it to O(isr.mqtt.mqtt_fleet#module:known_rotated_at).
  returned: when O(path) is set, without O(run_lock)
  type: dict
  sample: {site-alpha-01: "2026-11-26T00:00:00Z"}
ansible_facts:
  description: The C(mqtt_*) facts of the host.
  returned: when O(facts_from) is set
  type: dict
run_lock:
  description: With O(run_lock), the lock file, what was done (C(acquire), C(release), or C(not held) when a release found
    the lock not ours) and the seconds waited.
  returned: when O(run_lock) is set
  type: dict
  sample: {path: /srv/fleet/mqtt_credentials.yml.run-lock, state: acquire, waited: 12.5}
"""
