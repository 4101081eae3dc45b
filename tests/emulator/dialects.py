"""Alternative answer shapes ("dialects") the emulator can serve, so tests can meet portals we have not seen.

The real portal's docs leave list envelopes, pagination, field names and several answers open
(docs/api-contract.md). Each dialect picks other plausible answers to those questions; the data
behind them is the same store. Non-default dialects serve small pages (PAGE_CAP rows) so that every
list spans several pages.

- default: lists `{"items", "page", "page_size", "total", "next"}`; rows with `label`, `paused`;
  the answers of docs/api-contract.md.
- cursor: lists `{"data": [...], "next_cursor": "..."/null}` (sent back as `?cursor=`); rows with `name`, `enabled`.
- link: a bare array + `Link: <...>; rel="next"`; rows with `label`, `status`; the create answer exactly as
  the seed page shows it (`{"device": {"password"}, "publish_topic"}`, no id); rotate `{"password"}`; 204 to
  pause/resume/PATCH; create refuses fields beyond label/allow_subscribe (422); a bad token is redirected (302)
  to a login page; no OpenAPI document.
- offset: lists `{"results", "offset", "limit", "total"}` (`?offset=&limit=`); rows with `id`, `is_paused`;
  errors `{"error": {"code", "message"}}`; `X-RateLimit-Reset` a Unix time; 429 without `Retry-After`.
- unknown: lists `{"items": [...], "continuation": "..."}`: a continuation no reader should guess, so
  clients must refuse to write.
- drift: lists `{"results", "offset", "limit", "total"}` (`?offset=&limit=`) that shift under a delete by another
  party: every other listing (the 1st, 3rd, ... of a path) loses its first row after page 1 is served, so page 2
  skips a live row and reports a smaller total. The row is only hidden (the next listing shows it): a client that
  reads the list again gets it whole.
- drift_always: as drift, but every listing shifts: clients must refuse to write.
- both_ids: rows carry the documented `client_id` (subscribers: `subscriber_id`), the path id, and also an
  integer `id` (a database key, never valid in a path); lists as default with small pages.
- maintenance: a portal behind a gateway: IETF draft rate-limit headers (`RateLimit: limit=, remaining=, reset=`
  and `RateLimit-Policy: N;w=S`, no X-RateLimit-*), `Retry-After` as an HTTP date (429 and 503), and 503
  windows: every WINDOW_EVERY-th API request opens a WINDOW_SECONDS window in which every request is answered
  503 (nothing done) with `Retry-After`. Lists as default with small pages.
- normalize: the default shapes, but a create stores the label trimmed and lower-cased (as some portals do),
  answers with that label, and lists it so: a label sent as "Site-A " comes back as "site-a".

Faults (any dialect, `PUT /_emulator/faults`): `unavailable_s` answers every request 503 + `Retry-After` for that
many seconds from the next request on; `unavailable_after_create` commits the next N creates and answers them 503 + `Retry-After`
(and opens a WINDOW_SECONDS window), as a gateway that timed out after the portal acted.
"""
import base64
import email.utils
import math
import time

from fastapi.responses import JSONResponse, Response

API = "/api/v1/subscriber"
DIALECTS = ("default", "cursor", "link", "offset", "unknown", "drift", "drift_always", "both_ids", "maintenance",
            "normalize")
SHAPES_OF = {"normalize": "default"}  # dialects that change data, not answer shapes
PAGE_CAP = 2
DRIFTING = ("drift", "drift_always")
PAGED = ("both_ids", "maintenance")  # the default envelope, with small pages
WINDOW_EVERY = 15  # maintenance: every 15th API request opens a 503 window
WINDOW_SECONDS = 1.0
NO_DOCS = ("link",)


def _query_int(request, name, default, low=0):
    try:
        value = int(request.query_params.get(name, default))
    except ValueError:
        value = default
    return max(low, value)


def _cursor(offset):
    return base64.urlsafe_b64encode(("o%d" % offset).encode()).decode()


def _offset_of_cursor(cursor):
    try:
        return max(0, int(base64.urlsafe_b64decode(cursor.encode()).decode()[1:]))
    except (ValueError, UnicodeDecodeError):
        return 0


def stored_label(dialect, label):
    """The label as the portal of ``dialect`` stores it on create."""
    return label.strip().lower() if dialect == "normalize" else label


def client_row(dialect, row):
    row = dict(row)
    if dialect == "cursor":
        row["name"] = row.pop("label")
        row["enabled"] = not row.pop("paused")
    elif dialect == "link":
        row["status"] = "paused" if row.pop("paused") else "active"
    elif dialect == "offset":
        row["id"] = row.pop("client_id")
        row["is_paused"] = row.pop("paused")
    elif dialect == "both_ids":
        row["id"] = database_id(row["client_id"])
    return row


def database_id(path_id):
    """both_ids: a stable integer key from a ``pub-``/``sub-`` id (its 12 hex digits)."""
    return int(path_id.split("-", 1)[1], 16)


def subscriber_row(dialect, row):
    row = dict(row)
    if dialect == "cursor":
        row["name"] = row.pop("label")
    elif dialect == "both_ids":
        row["subscriber_id"] = row["id"]
        row["id"] = database_id(row["id"])
    return row


def retry_after(dialect, seconds):
    """A Retry-After value: whole seconds, or (maintenance) the HTTP date that many seconds from now."""
    seconds = max(1, int(math.ceil(seconds)))
    if dialect == "maintenance":
        return email.utils.formatdate(math.ceil(time.time()) + seconds, usegmt=True)
    return str(seconds)


def _drift_answer(request, dialect, fetch, path, shape):
    """An offset page; in a drifting listing, pages after the first are read as if its first row had been deleted."""
    size = max(1, min(PAGE_CAP, _query_int(request, "limit", PAGE_CAP, 1)))
    offset = _query_int(request, "offset", 0)
    reads = request.app.list_reads
    if offset == 0:
        reads[path] += 1  # a new listing of this path
    drifting = dialect == "drift_always" or reads[path] % 2 == 1
    rows, total = fetch(1, 10 ** 6)
    if offset > 0 and drifting:
        rows, total = rows[1:], total - 1
    return JSONResponse({"results": [shape(dialect, r) for r in rows[offset:offset + size]], "offset": offset,
                         "limit": size, "total": total})


def list_answer(request, dialect, fetch, path, shape):
    """One list page in the dialect; ``fetch(page, page_size) -> (rows, total)`` reads the store."""
    if dialect in DRIFTING:
        return _drift_answer(request, dialect, fetch, path, shape)
    size = min(PAGE_CAP, _query_int(request, "limit" if dialect == "offset" else "page_size", PAGE_CAP, 1))
    if dialect == "cursor":
        offset = _offset_of_cursor(request.query_params.get("cursor", ""))
    elif dialect == "offset":
        offset = _query_int(request, "offset", 0)
    else:
        offset = (_query_int(request, "page", 1, 1) - 1) * size
    size = max(1, size)
    page = offset // size + 1
    rows, total = fetch(page, size)
    rows = [shape(dialect, r) for r in rows]
    more = offset + len(rows) < total
    if dialect == "cursor":
        return JSONResponse({"data": rows, "next_cursor": _cursor(offset + size) if more else None})
    if dialect == "link":
        headers = {"Link": '<%s%s?page=%d&page_size=%d>; rel="next"' % (API, path, page + 1, size)} if more else {}
        return JSONResponse(rows, headers=headers)
    if dialect == "offset":
        return JSONResponse({"results": rows, "offset": offset, "limit": size, "total": total})
    if dialect in PAGED:
        return JSONResponse({"items": rows, "page": page, "page_size": size, "total": total,
                             "next": "%s%s?page=%d&page_size=%d" % (API, path, page + 1, size) if more else None})
    return JSONResponse({"items": rows, "continuation": "t%d" % (page + 1) if more else None})


def created_client(dialect, row, password):
    if dialect == "link":  # exactly what the seed page documents: no id in the answer
        return {"device": {"password": password}, "publish_topic": row["history_topic_prefix"] + "/"}
    return {"device": dict(client_row(dialect, row), password=password), "publish_topic": row["history_topic_prefix"] + "/"}


def rotated(dialect, row, password):
    if dialect == "link":
        return {"password": password}
    answer = {"client_id": row["client_id"], "username": row["username"], "password": password, "rotated_at": row["rotated_at"]}
    if dialect == "offset":
        answer["id"] = answer.pop("client_id")
    elif dialect == "both_ids":
        answer["id"] = database_id(answer["client_id"])
    return answer


def write_answer(dialect, row):
    """The answer to pause/resume/patch."""
    if dialect == "link":
        return Response(status_code=204)
    return JSONResponse(client_row(dialect, row))


def error_body(dialect, detail, code=None, extra=None):
    if dialect == "offset":
        error = {"message": detail}
        if code:
            error["code"] = code
        error.update(extra or {})
        return {"error": error}
    body = {"detail": detail}
    if code:
        body["code"] = code
    body.update(extra or {})
    return body


def rate_headers(dialect, headers, window_seconds=3600):
    """The offset dialect gives the reset as a Unix time and never sends Retry-After; maintenance sends the IETF
    draft's headers instead of X-RateLimit-*."""
    if dialect == "maintenance" and "X-RateLimit-Limit" in headers:
        headers = dict(headers)
        limit, remaining, reset = (headers.pop("X-RateLimit-" + name) for name in ("Limit", "Remaining", "Reset"))
        headers["RateLimit"] = "limit=%s, remaining=%s, reset=%s" % (limit, remaining, reset)
        headers["RateLimit-Policy"] = "%s;w=%d" % (limit, int(window_seconds))
        return headers
    if dialect != "offset":
        return headers
    headers = dict(headers)
    if "X-RateLimit-Reset" in headers:
        headers["X-RateLimit-Reset"] = str(int(time.time()) + int(headers["X-RateLimit-Reset"]))
    headers.pop("Retry-After", None)
    return headers
