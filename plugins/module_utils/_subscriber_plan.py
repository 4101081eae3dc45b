# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Pure planning for read-only subscribers: desired + current -> actions. No I/O.

Check mode returns the plan; normal mode executes the same plan, action by action.
An action is a dict: {"action": "create"|"revoke", "label", "id" (None for create),
"fields": {"expires_in_days": n} for create, {} for revoke, "reason"}.
"""

from __future__ import annotations

import datetime
import re

from ansible_collections.isr.mqtt.plugins.module_utils._plan import LABEL_MAX, check_id, check_label

EXPIRES_MIN = 1
EXPIRES_MAX = 3650


class PlanError(ValueError):
    """The desired state cannot be planned (ambiguous or unknown identity). ``msg`` is for users."""

    def __init__(self, msg, ids=None):
        super(PlanError, self).__init__(msg)
        self.msg = msg
        self.ids = ids or []


def check_identity(label=None, sub_id=None):
    """The input errors of ``label`` and ``id`` (None: not given); shared with mqtt_subscriber_info's filters."""
    errors = []
    if label is not None:
        if isinstance(label, str) and not label.strip():
            errors.append("label must not be empty; give the subscriber a name of 1 to %d characters" % LABEL_MAX)
        else:
            errors.append(check_label(label))
    if sub_id is not None:
        errors.append(check_id(sub_id, "id", "subscriber", "use the id shown by isr.mqtt.mqtt_subscriber_info (sub-...), "
                               "or leave it out to identify the subscriber by label"))
    return [error for error in errors if error]


def check_desired(desired):
    """Return the list of input errors (empty when valid). Runs before any request."""
    label = desired.get("label")
    sub_id = desired.get("id")
    errors = check_identity(label, sub_id)
    if label is None and sub_id is None:
        errors.append("one of label or id is required to identify the subscriber")
    days = desired.get("expires_in_days")
    if days is not None and not EXPIRES_MIN <= days <= EXPIRES_MAX:
        errors.append("expires_in_days is %d; it must be between %d and %d" % (days, EXPIRES_MIN, EXPIRES_MAX))
    renew = desired.get("renew_before_days")
    if renew is not None:
        if renew < 0:
            errors.append("renew_before_days is %d; it must be 0 or more (0 replaces only expired subscribers)" % renew)
        elif days is not None and renew >= days and desired.get("state", "present") == "present":
            errors.append("renew_before_days (%d) must be smaller than expires_in_days (%d), "
                          "otherwise every run would replace the new subscriber again" % (renew, days))
    return errors


def parse_time(value):
    """An ISO 8601 timestamp as an aware UTC datetime; None for None. PlanError when unreadable."""
    if value is None:
        return None
    text = str(value).strip()
    match = re.match(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$", text)
    if not match:
        raise PlanError("cannot read the portal timestamp %r (expected ISO 8601, e.g. 2026-12-26T00:00:00Z)" % (text,))
    date, clock, fraction, zone = match.groups()
    if len(clock) == 5:
        clock += ":00"
    micro = (fraction or ".0")[1:7].ljust(6, "0")
    zone = "+00:00" if zone in (None, "Z") else zone
    if ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    return datetime.datetime.fromisoformat("%sT%s.%s%s" % (date, clock, micro, zone)).astimezone(datetime.timezone.utc)


def format_time(when):
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_expired(row, now):
    """The portal's expired flag; computed from expires_at when the portal left it out."""
    if row.get("expired") is not None:
        return bool(row["expired"])
    expires = parse_time(row.get("expires_at"))
    return expires is not None and expires <= now


def find_subscriber(subscribers, label=None, subscriber_id=None):
    """The one subscriber the task means, or None. PlanError when ambiguous or id and label disagree."""
    if subscriber_id is not None:
        matches = [s for s in subscribers if subscriber_id in (s.get("id"), s.get("username"))]
        if not matches:
            return None
        row = matches[0]
        if label is not None and row.get("label") != label:
            raise PlanError("subscriber %s has the label %r, not %r; labels cannot be changed on the portal: "
                            "fix label, or leave it out to select by id only" % (subscriber_id, row.get("label"), label), [subscriber_id])
        return row
    matches = [s for s in subscribers if s.get("label") == label]
    if len(matches) > 1:
        ids = sorted(str(s.get("id")) for s in matches)
        raise PlanError("%d read-only subscribers have the label %r (ids: %s); set id to pick one, "
                        "or revoke the extra ones" % (len(matches), label, ", ".join(ids)), ids)
    return matches[0] if matches else None


def replacement_reason(desired, current, now):
    """Why a present subscriber must be replaced, or None to keep it."""
    if desired.get("regenerate"):
        return "regenerate"
    renew = desired.get("renew_before_days")
    if renew is None:
        return None
    if is_expired(current, now):
        return "expired"
    expires = parse_time(current.get("expires_at"))
    if expires is not None and expires <= now + datetime.timedelta(days=renew):
        return "expires within %d days (at %s)" % (renew, format_time(expires))
    return None


def plan_subscriber(desired, current, now):
    """Actions that bring `current` (a subscriber row or None) to `desired`.

    A replacement revokes first, then creates: with max_subscribers reached a create-first
    would always fail, and revoking first frees the slot the new login needs.
    """
    label = desired.get("label") or (current or {}).get("label")
    if desired.get("state", "present") == "absent":
        if current is None:
            return []
        return [_revoke(current, "absent")]
    if current is None:
        if desired.get("id") is not None:
            raise PlanError("no read-only subscriber has the id %s; the portal generates ids, so one cannot be created "
                            "with a given id: leave id out to create a new subscriber labelled by label" % desired["id"])
        return [_create(label, desired, "missing")]
    reason = replacement_reason(desired, current, now)
    if reason is None:
        return []
    return [_revoke(current, reason), _create(label, desired, reason)]


def _create(label, desired, reason):
    return {"action": "create", "label": label, "id": None,
            "fields": {"expires_in_days": desired.get("expires_in_days")}, "reason": reason}


def _revoke(row, reason):
    return {"action": "revoke", "label": row.get("label"), "id": row.get("id"), "fields": {}, "reason": reason}


def apply_action(row, action, now, subscribe_filter=None):
    """The predicted subscriber after `action` (check mode, diff). A new one has no id yet (None)."""
    if action["action"] == "revoke":
        return None
    days = action["fields"].get("expires_in_days")
    return {"id": None, "username": None, "label": action["label"],
            "subscribe_filter": (row or {}).get("subscribe_filter") or subscribe_filter,
            "created_at": format_time(now),
            "expires_at": None if days is None else format_time(now + datetime.timedelta(days=days)),
            "expired": False}


def predict(row, actions, now, subscribe_filter=None):
    """The predicted subscriber after all actions; every subscriber of an account has the same filter."""
    subscribe_filter = (row or {}).get("subscribe_filter") or subscribe_filter
    for action in actions:
        row = apply_action(row, action, now, subscribe_filter)
    return row
