# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The tolerant reader: every guess about the portal's response shapes, in one place.

Pure functions over decoded JSON and response headers, no I/O. The portal's docs leave the
shapes open (docs/api-contract.md lists every spelling accepted here). The reader accepts
the plausible, unambiguous spellings and **fails closed** on anything else: a list whose
completeness it cannot prove, or a row without a recognisable id, label or pause state,
raises ``ShapeError`` (the client turns it into a PortalError before any write). A default
that made a module create a client again or skip a pause would do real harm.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import re
from collections import Counter
from urllib.parse import urlencode, urljoin, urlsplit

CLIENT_KEYS = ("client_id", "label", "username", "topic", "paused", "allow_publish", "allow_subscribe",
               "history_topic_prefix", "publish_topic", "created_at", "rotated_at")
SUBSCRIBER_KEYS = ("id", "username", "label", "subscribe_filter", "created_at", "expires_at", "expired")

LIST_KEYS = ("items", "data", "publishers", "clients", "subscribers", "results")
META_KEYS = ("meta", "pagination", "paging")  # objects beside the rows that may hold the pagination fields
NEXT_LINK_KEYS = ("next", "next_url", "links.next")
# A cursor in the answer -> the query parameter that sends it back. A ``next_*`` key wins over its bare
# twin, which some APIs use for the *current* position (a repeat of it is caught as a page cycle).
CURSOR_KEYS = (("next_cursor", "cursor"), ("next_page_token", "page_token"), ("cursor", "cursor"),
               ("page_token", "page_token"))
PAGE_SIZE_KEYS = ("page_size", "per_page", "limit")
TOTAL_KEYS = ("total", "total_count")
# Fields beside the rows that carry no continuation: understood, so they do not make a page suspect.
QUIET_KEYS = frozenset(("page", "offset", "count", "has_more", "links", "self", "prev", "previous", "first", "last",
                        "prev_cursor", "previous_cursor") + PAGE_SIZE_KEYS + TOTAL_KEYS + META_KEYS)
# A field whose name has one of these words may be a continuation we do not understand.
SUSPECT_WORDS = ("next", "cursor", "token", "continu", "more", "after", "offset", "page", "link", "scroll", "marker")

ID_KEYS = ("client_id", "id")  # client_id, when present, is the path id; an ``id`` beside it is the portal's own
LABEL_KEYS = ("label", "name")
# (key, inverted): ``enabled: true`` means not paused.
PAUSE_FLAGS = (("paused", False), ("is_paused", False), ("pause", False), ("enabled", True), ("active", True))
STATUS_KEYS = ("status", "state")
PAUSED_WORDS = ("paused", "suspended", "disabled", "inactive")
ACTIVE_WORDS = ("active", "running", "enabled", "resumed")
SUBSCRIBER_ID_KEYS = ("subscriber_id", "id", "username")  # the first one present is the path id
CLIENT_PASSWORD_PATHS = ("device.password", "password", "credentials.password", "mqtt_password", "client.password")
ROTATE_PASSWORD_PATHS = ("password", "device.password", "new_password", "mqtt_password", "credentials.password",
                         "client.password")
SUBSCRIBER_PASSWORD_PATHS = ("password", "mqtt_password", "credentials.password", "subscriber.password", "device.password")
ROW_WRAPPERS = ("device", "client", "publisher", "subscriber")

# publish_topic is ``{account_id}/{client_id}/`` (contract); the account id is the tenant UUID.
_PUBLISH_TOPIC = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}/(?P<client_id>[A-Za-z0-9][A-Za-z0-9._:-]*)/?$")
_LINK_PART = re.compile(r'<([^>]*)>((?:\s*;\s*[^;,]+)*)')
_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")
# A rate-limit reset above this is a Unix time, not a number of seconds (a year of seconds is far beyond any window).
_EPOCH_THRESHOLD = 365 * 86400
_MS_EPOCH_THRESHOLD = 1e11  # above: a Unix time in milliseconds (1e11 seconds is the year 5138)


class ShapeError(Exception):
    """A portal answer the reader does not understand; ``msg`` names what it saw."""

    def __init__(self, msg):
        super(ShapeError, self).__init__(msg)
        self.msg = msg


def _keys(value):
    return ", ".join(sorted(str(k) for k in value)) if isinstance(value, dict) else type(value).__name__


def dig(body, *paths):
    """The first value found under any of the dotted ``paths`` of a JSON object."""
    for path in paths:
        value = body
        for part in path.split("."):
            if not isinstance(value, dict) or part not in value:
                value = None
                break
            value = value[part]
        if value is not None:
            return value
    return None


def as_bool(value):
    """A JSON boolean or its plain spellings; None when it is none of them."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    return None


def _bool_or(value, default):
    found = as_bool(value)
    return default if found is None else found


# ---------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------

def _one_of(row, keys, what, kind):
    """``(key, value)`` of the single spelling present in ``row``; ShapeError if none or two that disagree."""
    present = [(key, row[key]) for key in keys if key in row]
    if not present:
        raise ShapeError("The portal returned %s without a recognisable %s (expected one of %s; keys seen: %s)."
                         % (what, kind, ", ".join(keys), _keys(row)))
    values = set(repr(value) for dummy, value in present if value is not None)
    if len(values) > 1:
        raise ShapeError("The portal returned %s whose %s is ambiguous: %s (keys seen: %s)."
                         % (what, kind, ", ".join("%s=%r" % p for p in present), _keys(row)))
    return next(((key, value) for key, value in present if value is not None), present[0])


def _label_of(row, what):
    key, value = _one_of(row, LABEL_KEYS, what, "label")
    if value is not None and not isinstance(value, str):
        raise ShapeError("The portal returned %s whose %s is not a string but %s." % (what, key, type(value).__name__))
    return key, value


def pause_of(row, what="an MQTT client"):
    """``(paused, key)`` from the first understood pause spelling; ShapeError when none or they contradict."""
    readings = []
    for key, inverted in PAUSE_FLAGS:
        if row.get(key) is None:
            continue
        value = as_bool(row[key])
        if value is None:
            raise ShapeError("The portal returned %s whose pause field %s=%r is not a boolean (keys seen: %s)."
                             % (what, key, row[key], _keys(row)))
        readings.append((value != inverted, key))
    for key in STATUS_KEYS:
        word = row.get(key)
        if isinstance(word, str) and word.strip().lower() in PAUSED_WORDS + ACTIVE_WORDS:
            readings.append((word.strip().lower() in PAUSED_WORDS, "%s=%s" % (key, word.strip().lower())))
    if not readings:
        raise ShapeError("The portal returned %s without a recognisable pause state (expected one of %s, or %s with one of "
                         "%s; keys seen: %s)." % (what, ", ".join(k for k, dummy in PAUSE_FLAGS), "/".join(STATUS_KEYS),
                                                  ", ".join(PAUSED_WORDS + ACTIVE_WORDS), _keys(row)))
    if len(set(paused for paused, dummy in readings)) > 1:
        raise ShapeError("The portal returned %s with contradicting pause states: %s."
                         % (what, ", ".join("%s says %s" % (key, "paused" if p else "active") for p, key in readings)))
    return readings[0]


def _client_id_of(row, what):
    """``(key, value, extra_key)``: ``client_id`` when present and not empty (the documented path id), else ``id``.

    A row with both keeps ``id`` as extra data (``extra_key``), never in a path: some portals add their database
    key (an integer) beside the documented ``client_id``."""
    if row.get("client_id") not in (None, ""):
        return "client_id", row["client_id"], ("id" if row.get("id") not in (None, "", row["client_id"]) else None)
    key, value = _one_of(row, ID_KEYS, what, "id")
    return key, value, None


def client_spellings(row):
    """Which key gave the id, label and pause state of a raw client row (for the probe); ShapeError as normalize_client.

    ``extra_id`` (only when present) names an id kept beside ``client_id`` and not used in paths."""
    what = "an MQTT client"
    if not isinstance(row, dict):
        raise ShapeError("The portal returned an MQTT client that is not a JSON object: %s." % type(row).__name__)
    id_key, client_id, extra_key = _client_id_of(row, what)
    if not client_id:
        raise ShapeError("The portal returned an MQTT client with an empty id (%s; keys seen: %s)." % (id_key, _keys(row)))
    label_key = _label_of(row, what)[0]
    inverted = dict(PAUSE_FLAGS)
    pause_key = pause_of(row)[1]
    spellings = {"id": id_key, "label": label_key, "pause": pause_key + (" (inverted)" if inverted.get(pause_key) else "")}
    if extra_key:
        spellings["extra_id"] = extra_key
    return spellings


def normalize_client(row, publish_topic=None):
    """A portal row reduced to exactly CLIENT_KEYS; ShapeError without a recognisable id, label or pause state."""
    client_spellings(row)
    client_id = _client_id_of(row, "an MQTT client")[1]
    return {
        "client_id": client_id,
        "label": _label_of(row, "an MQTT client")[1],
        "username": row.get("username") or client_id,
        "topic": row.get("topic"),
        "paused": pause_of(row)[0],
        "allow_publish": _bool_or(row.get("allow_publish"), True),
        "allow_subscribe": _bool_or(row.get("allow_subscribe"), False),
        "history_topic_prefix": row.get("history_topic_prefix"),
        "publish_topic": publish_topic if publish_topic is not None else row.get("publish_topic"),
        "created_at": row.get("created_at"),
        "rotated_at": row.get("rotated_at"),
    }


def _expired_from(expires_at):
    if not isinstance(expires_at, str):
        return False
    try:
        moment = datetime.datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment <= datetime.datetime.now(datetime.timezone.utc)


def subscriber_spellings(row):
    """Which key gave the id and label of a raw subscriber row (for the probe); ShapeError as normalize_subscriber.

    The first of SUBSCRIBER_ID_KEYS present is the path id: ``subscriber_id`` wins over an ``id`` beside it (which is
    then named as ``extra_id``, kept out of paths)."""
    what = "a read-only subscriber"
    if not isinstance(row, dict):
        raise ShapeError("The portal returned a subscriber that is not a JSON object: %s." % type(row).__name__)
    id_key = next((key for key in SUBSCRIBER_ID_KEYS if row.get(key)), None)
    if id_key is None:
        raise ShapeError("The portal returned %s without a recognisable id (expected one of %s; keys seen: %s)."
                         % (what, ", ".join(SUBSCRIBER_ID_KEYS), _keys(row)))
    spellings = {"id": id_key, "label": _label_of(row, what)[0]}
    if id_key == "subscriber_id" and row.get("id") not in (None, "", row[id_key]):
        spellings["extra_id"] = "id"
    return spellings


def normalize_subscriber(row):
    """A portal read-only subscriber reduced to exactly SUBSCRIBER_KEYS; ShapeError without an id or label."""
    what = "a read-only subscriber"
    if not isinstance(row, dict):
        raise ShapeError("The portal returned a subscriber that is not a JSON object: %s." % type(row).__name__)
    sub_id = row[subscriber_spellings(row)["id"]]
    expires_at = row.get("expires_at")
    expired = row.get("expired")
    return {
        "id": sub_id,
        "username": row.get("username") or sub_id,
        "label": _label_of(row, what)[1],
        "subscribe_filter": row.get("subscribe_filter") or row.get("filter") or row.get("acl"),
        "created_at": row.get("created_at"),
        "expires_at": expires_at,
        "expired": _bool_or(expired, False) if expired is not None else _expired_from(expires_at),
    }


def _merged_row(answer):
    """Top-level fields of a write answer, overlaid with the row under a wrapper key (``device``, ...)."""
    merged = dict((k, v) for k, v in answer.items() if not isinstance(v, (dict, list)))
    for key in ROW_WRAPPERS:
        if isinstance(answer.get(key), dict):
            merged.update(answer[key])
    merged.pop("password", None)
    return merged


def client_id_from_publish_topic(publish_topic):
    """The client id in ``{account_uuid}/{client_id}/`` (the contract's publish topic), else None."""
    match = _PUBLISH_TOPIC.match(publish_topic) if isinstance(publish_topic, str) else None
    return match.group("client_id") if match and match.group("client_id") != "live" else None


def read_created_client(answer, label, allow_publish, allow_subscribe):
    """``(row_or_None, password)`` from a create answer. The row is None when the answer does not identify the
    client (no id, and a publish_topic the contract does not let us read one from): the caller re-lists."""
    if not isinstance(answer, dict):
        raise ShapeError("The portal's answer to creating MQTT client %r is not a JSON object but %s."
                         % (label, type(answer).__name__))
    password = dig(answer, *CLIENT_PASSWORD_PATHS)
    source = _merged_row(answer)
    publish_topic = answer.get("publish_topic") or source.get("publish_topic")
    client_id = source.get("client_id") or source.get("id") or client_id_from_publish_topic(publish_topic)
    if not client_id:
        return None, password
    try:
        paused = pause_of(source)[0]
    except ShapeError:
        paused = False  # a client just created was never paused
    found_label = next((source[key] for key in LABEL_KEYS if isinstance(source.get(key), str)), label)
    row = normalize_client(dict(source, client_id=client_id, label=found_label, paused=paused,
                                allow_publish=_bool_or(source.get("allow_publish"), allow_publish),
                                allow_subscribe=_bool_or(source.get("allow_subscribe"), allow_subscribe)),
                           publish_topic=publish_topic)
    return row, password


def read_rotated(answer, client_id):
    """``(partial_row, password)`` from a rotate answer: the partial row holds only the CLIENT_KEYS the portal
    sent (at least client_id and username). ShapeError when no password can be found."""
    if not isinstance(answer, dict):
        raise ShapeError("The portal's answer to rotating MQTT client %s is not a JSON object but %s; the password was "
                         "rotated but lost: rotate again." % (client_id, type(answer).__name__))
    password = dig(answer, *ROTATE_PASSWORD_PATHS)
    if password is None:
        raise ShapeError("The portal rotated the password of MQTT client %s but its answer carried none (expected one of %s; "
                         "keys seen: %s); rotate again." % (client_id, ", ".join(ROTATE_PASSWORD_PATHS), _keys(answer)))
    source = _merged_row(answer)
    partial = {"client_id": source.get("client_id") or source.get("id") or client_id}
    partial["username"] = source.get("username") or partial["client_id"]
    label = next((source[key] for key in LABEL_KEYS if isinstance(source.get(key), str)), None)
    if label is not None:
        partial["label"] = label
    try:
        partial["paused"] = pause_of(source)[0]
    except ShapeError:
        pass  # a rotate answer need not carry the pause state; the caller keeps the one it knows
    for key in ("topic", "history_topic_prefix", "publish_topic", "created_at", "rotated_at"):
        if key in source:
            partial[key] = source[key]
    for key in ("allow_publish", "allow_subscribe"):
        if as_bool(source.get(key)) is not None:
            partial[key] = as_bool(source[key])
    return partial, password


def read_write_answer(answer):
    """The row in a pause/resume/update answer, or None when the answer has none we can read (204, ``{"ok": true}``):
    the write succeeded (2xx) and the caller predicts the row from the action."""
    if not isinstance(answer, dict):
        return None
    source = _merged_row(answer)
    try:
        return normalize_client(source)
    except ShapeError:
        return None


def read_created_subscriber(answer, label):
    """``(subscriber_or_None, password)`` from a subscriber create answer (None: the answer has no id)."""
    if not isinstance(answer, dict):
        raise ShapeError("The portal's answer to creating subscriber %r is not a JSON object but %s."
                         % (label, type(answer).__name__))
    password = dig(answer, *SUBSCRIBER_PASSWORD_PATHS)
    source = _merged_row(answer)
    if not any(source.get(key) for key in SUBSCRIBER_ID_KEYS):
        return None, password
    if not any(key in source for key in LABEL_KEYS):
        source["label"] = label
    return normalize_subscriber(source), password


# ---------------------------------------------------------------------------
# List pages
# ---------------------------------------------------------------------------

class Page(object):
    """One list page as read: ``rows``, ``next_url`` (None on the last page), ``total`` (None when not said),
    ``pagination`` (how the next page is found: link, link_header, cursor, page_total, offset_total, none)."""

    def __init__(self, rows, next_url, total, pagination, envelope):
        self.rows = rows
        self.next_url = next_url
        self.total = total
        self.pagination = pagination
        self.envelope = envelope


def link_next(header):
    """The target of ``rel="next"`` in an RFC 8288 Link header, else None."""
    for match in _LINK_PART.finditer(header or ""):
        for param in match.group(2).split(";"):
            name, dummy, value = param.strip().partition("=")
            if name.strip().lower() == "rel" and "next" in value.strip().strip('"').lower().split():
                return match.group(1).strip()
    return None


def _int(value):
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _with_query(url, **params):
    split = urlsplit(url)
    return "%s://%s%s?%s" % (split.scheme, split.netloc, split.path, urlencode(params))


def _fields_of(body, rows_key):
    """The pagination fields of an object envelope: top level (without the rows) plus any META_KEYS object."""
    fields = dict((k, v) for k, v in body.items() if k != rows_key)
    for key in META_KEYS:
        if isinstance(body.get(key), dict):
            fields.update(body[key])
    return fields


def _rows_key(body):
    found = [key for key in LIST_KEYS if isinstance(body.get(key), list)]
    if not found:
        raise ShapeError("The portal's list answer has no rows: expected a JSON array or an object with one of %s "
                         "(keys seen: %s)." % (", ".join(LIST_KEYS), _keys(body)))
    if len(found) > 1:
        raise ShapeError("The portal's list answer has rows under several keys (%s); which is the list is unknown."
                         % ", ".join(found))
    return found[0]


def read_page(body, headers, url, asked_size):
    """Read one list page; ShapeError unless the page says how to reach the next one or proves it is the last."""
    link_header = (headers or {}).get("Link")
    header_next = link_next(link_header)
    if isinstance(body, list):
        rows, fields, envelope = body, {}, "array"
    elif isinstance(body, dict):
        envelope = _rows_key(body)
        rows, fields = body[envelope], _fields_of(body, envelope)
    else:
        raise ShapeError("The portal's list answer is neither a JSON array nor an object but %s." % type(body).__name__)

    ended = link_header is not None and header_next is None  # a Link header without rel="next": the last page
    nxt = None
    kind = "link_header" if link_header is not None else None  # the mechanism the page offers, even on the last page
    for key in NEXT_LINK_KEYS:
        value = dig(fields, key)
        if isinstance(value, str) and value:
            nxt, kind = urljoin(url, value), "link"
            break
        if key in fields or (key == "links.next" and isinstance(fields.get("links"), dict) and "next" in fields["links"]):
            ended, kind = True, "link"  # explicitly null or empty: the last page
    if nxt is None and header_next:
        nxt, kind = urljoin(url, header_next), "link_header"
    cursor_keys = [key for key, dummy in CURSOR_KEYS if key in fields]
    if nxt is None and cursor_keys:
        key = cursor_keys[0]
        param = dict(CURSOR_KEYS)[key]
        value = fields[key]
        if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
            nxt, kind = _with_query(url, **{param: value, "page_size": asked_size}), "cursor"
        elif value in (None, ""):
            ended, kind = True, kind or "cursor"
        else:
            raise ShapeError("The portal's list page has a cursor %s that is not a string: %r." % (key, value))
    total = next((_int(fields[key]) for key in TOTAL_KEYS if _int(fields.get(key)) is not None), None)
    size = next((_int(fields[key]) for key in PAGE_SIZE_KEYS if _int(fields.get(key)) is not None), None)
    page, offset = _int(fields.get("page")), _int(fields.get("offset"))
    if nxt is None and total is not None and size:
        if offset is not None and "limit" in fields:
            kind = kind or "offset_total"
            if not ended and offset + len(rows) < total and rows:
                nxt = _with_query(url, offset=offset + len(rows), limit=size)
        elif page is not None:
            kind = kind or "page_total"
            if not ended and page * size < total:
                nxt = _with_query(url, page=page + 1, page_size=size)
    has_more = as_bool(fields.get("has_more"))
    if has_more is False:
        ended = True

    seen = _keys(fields) if fields else ("(bare array)" if envelope == "array" else "(only the rows, under %s)" % envelope)
    suspects = sorted(key for key in fields if key not in QUIET_KEYS and key not in dict(CURSOR_KEYS) and (
                      key not in ("next", "next_url") and any(word in key.lower() for word in SUSPECT_WORDS)))
    if nxt is None and (suspects or has_more):
        raise ShapeError("The portal's list page may continue in a way the reader does not understand (%s); refusing to "
                         "treat %d rows as the whole list. Keys seen: %s. Run isr.mqtt.portal_info and report its output."
                         % (", ".join(suspects) or "has_more is true", len(rows), seen))
    if nxt is None and not ended and total is None and len(rows) >= (size or asked_size):
        raise ShapeError("The portal's list page is full (%d rows) but says neither how to reach the next page nor how many "
                         "rows there are; refusing to treat it as the whole list. Keys seen: %s%s."
                         % (len(rows), seen, "; Link header: %s" % link_header if link_header else ""))
    return Page(rows, nxt, total, kind or "none", envelope)


def list_drift(rows, totals, key):
    """What shows that a list changed while its pages were read, else None.

    ``totals``: the total each page reported (None where a page gave none). Every total given must be the same, and
    the distinct rows read (by ``key``) must number exactly that total; the same row on two pages is drift too. An
    offset list that lost a row between two pages skips a live row, and its last page reports the smaller total: the
    last total alone would match the rows read."""
    given = [total for total in totals if total is not None]
    counts = Counter(repr(row[key]) for row in rows)
    shown = dict((repr(row[key]), str(row[key])) for row in rows)
    distinct = len(counts)
    problems = []
    if len(set(given)) > 1:
        problems.append("the pages reported different totals (%s)" % ", ".join(str(t) for t in totals if t is not None))
    if given and distinct != given[-1]:
        problems.append("%d distinct rows were read against total=%d" % (distinct, given[-1]))
    if distinct != len(rows):
        twice = sorted(shown[value] for value, count in counts.items() if count > 1)
        problems.append("%s %s listed twice" % (key, ", ".join(twice[:5]) + (", ..." if len(twice) > 5 else "")))
    if not problems:
        return None
    return "%s (totals per page: %s; rows read: %d)" % (
        "; ".join(problems), ", ".join("-" if t is None else str(t) for t in totals), len(rows))


# ---------------------------------------------------------------------------
# Rate-limit headers
# ---------------------------------------------------------------------------

REMAINING_HEADERS = ("X-RateLimit-Remaining", "RateLimit-Remaining")
RESET_HEADERS = ("X-RateLimit-Reset", "RateLimit-Reset")
LIMIT_HEADERS = ("X-RateLimit-Limit", "RateLimit-Limit")
# The IETF draft (draft-ietf-httpapi-ratelimit-headers) in one header: ``limit=100, remaining=50, reset=30`` (draft 07)
# or ``"default";r=50;t=30`` (later drafts), with ``RateLimit-Policy: 100;w=3600`` / ``"default";q=100;w=3600``.
COMBINED_HEADER = "RateLimit"
POLICY_HEADER = "RateLimit-Policy"
RATE_HEADERS = LIMIT_HEADERS + REMAINING_HEADERS + RESET_HEADERS + (COMBINED_HEADER, POLICY_HEADER, "Retry-After")


def header_number(headers, *names):
    """``(value, name)`` of the first header among ``names`` holding a finite number, else ``(None, None)``."""
    for name in names:
        try:
            value = float((headers or {}).get(name))
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            return value, name
    return None, None


def reset_seconds(value, now):
    """Seconds until a moment given as seconds from now or as a Unix time in seconds or milliseconds (``now``: the
    wall clock)."""
    if value is None:
        return None
    if value > _MS_EPOCH_THRESHOLD:
        value /= 1000.0
    if value > _EPOCH_THRESHOLD:
        return max(0.0, value - now)
    return max(0.0, value)


def http_date_seconds(text, now):
    """Seconds until an HTTP date (RFC 9110: ``Sun, 06 Nov 1994 08:49:37 GMT`` and the obsolete forms), else None."""
    try:
        moment = email.utils.parsedate_to_datetime((text or "").strip())
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, moment.timestamp() - now)


def wait_header(headers, now, *names):
    """``(seconds, name)`` from the first of ``names`` holding seconds, a Unix time or an HTTP date, else (None, None)."""
    for name in names:
        text = (headers or {}).get(name)
        if text is None:
            continue
        value, dummy = header_number({name: text}, name)
        seconds = reset_seconds(value, now) if value is not None else http_date_seconds(text, now)
        if seconds is not None:
            return seconds, name
    return None, None


def _members(text):
    """The members of a structured-field list or dictionary: ``[(item, {param: value})]`` (quotes stripped)."""
    members = []
    for part in (text or "").split(","):
        pieces = [piece.strip() for piece in part.split(";")]
        if not pieces[0]:
            continue
        params = {}
        for piece in pieces[1:]:
            name, dummy, value = piece.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        members.append((pieces[0].strip('"'), params))
    return members


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def combined_rate_limit(text):
    """``{"limit", "remaining", "reset"}`` (numbers or None) from an IETF ``RateLimit`` header.

    Draft 07 sends a dictionary (``limit=100, remaining=50, reset=30``); later drafts one item per policy
    (``"hour";r=50;t=30``): the policy with the fewest requests remaining binds."""
    found = {"limit": None, "remaining": None, "reset": None}
    policies = []
    for item, params in _members(text):
        key, equals, value = item.partition("=")
        if equals and key.strip().lower() in found:
            found[key.strip().lower()] = _number(value.strip().strip('"'))
        elif _number(params.get("r")) is not None:
            policies.append((_number(params.get("r")), _number(params.get("t"))))
    if found["remaining"] is None and policies:
        found["remaining"], found["reset"] = min(policies, key=lambda policy: policy[0])
    return found


def rate_limit_policy(text):
    """``{"limit", "window"}`` from an IETF ``RateLimit-Policy`` header (``100;w=3600`` or ``"hour";q=100;w=3600``)."""
    for item, params in _members(text):
        limit = _number(params.get("q")) if "q" in params else _number(item)
        return {"limit": limit, "window": _number(params.get("w"))}
    return {"limit": None, "window": None}


def rate_limit_of(headers, now):
    """What the rate-limit headers say: ``remaining``, ``reset`` (seconds from now), ``limit``, ``window`` (from
    RateLimit-Policy), and the header (``*_header``) and its text (``*_text``) each came from; None where not said.

    X-RateLimit-* win over the IETF RateLimit-* headers, which win over the combined IETF ``RateLimit`` header."""
    headers = headers or {}
    info = {}
    remaining, info["remaining_header"] = header_number(headers, *REMAINING_HEADERS)
    reset, info["reset_header"] = wait_header(headers, now, *RESET_HEADERS)
    limit, dummy = header_number(headers, *LIMIT_HEADERS)
    combined = combined_rate_limit(headers.get(COMBINED_HEADER))
    if remaining is None and combined["remaining"] is not None:
        remaining, info["remaining_header"] = combined["remaining"], "RateLimit remaining"
    if reset is None and combined["reset"] is not None:
        reset, info["reset_header"] = reset_seconds(combined["reset"], now), "RateLimit reset"
    policy = rate_limit_policy(headers.get(POLICY_HEADER))
    limit = next((value for value in (limit, combined["limit"], policy["limit"]) if value is not None), None)
    info.update(remaining=remaining, reset=reset, limit=limit, window=policy["window"])
    for role in ("remaining", "reset"):
        name = info[role + "_header"]
        info[role + "_text"] = headers.get(COMBINED_HEADER if name and name.startswith("RateLimit ") else name) if name else None
    return info
