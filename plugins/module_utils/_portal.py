# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""PortalClient: the only code that knows HTTP and the portal's JSON.

Private to the collection. One ``requests.Session`` per client, bearer auth, TLS options,
retries with jittered backoff, 429 / rate-limit pacing within a wait budget, pagination.
Every guess about response shapes lives in ``_reader.py`` (the tolerant reader, see
``docs/api-contract.md``); its ShapeError becomes a PortalError of kind ``protocol`` here.
Redirects are never followed (the token would go along): a 3xx is an error.

Retry policy (why each write is treated the way it is):

* GET, PATCH, pause, resume, delete are idempotent: network errors and 500/502/503/504 are
  retried up to ``max_retries`` times with jittered exponential backoff.
* Rotate is retried like them: if the first rotate happened and its answer was lost, its
  password is lost whatever we do, and a second rotate is the way to get one we know.
* A 503 with ``Retry-After`` (seconds, a Unix time or an HTTP date) is a window the portal names: a request that
  is safe to repeat waits it out (counted against ``rate_limit_max_wait``, like a 429, not against ``max_retries``).
* Create is not idempotent. It is retried only when the portal certainly did nothing: the
  connection was never made (refused, connect timeout), a 429, or a 503 whose body carries
  ``code: broker_unavailable`` (the contract says "nothing changed"). Any other failure
  (read timeout, dropped connection, a bare 502/503/504 that a proxy may have produced after
  the portal acted) is *ambiguous*: create re-lists once and adopts a new row with its label
  (password lost, see ``create_client``); if none appeared it retries the create.
"""

from __future__ import annotations

import ipaddress
import json
import random
import threading
import time
import traceback
from urllib.parse import urlencode, urlsplit

from ansible.module_utils.basic import env_fallback, missing_required_lib

from ansible_collections.isr.mqtt.plugins.module_utils._plan import label_key
from ansible_collections.isr.mqtt.plugins.module_utils._run_guard import AccountLock, GuardError, ParentWatch
from ansible_collections.isr.mqtt.plugins.module_utils import _reader
from ansible_collections.isr.mqtt.plugins.module_utils._reader import (  # noqa: F401 pylint: disable=unused-import
    CLIENT_KEYS, SUBSCRIBER_KEYS, ShapeError)

REQUESTS_IMPORT_ERROR = None
try:
    import requests
    from requests.adapters import HTTPAdapter
except ImportError:
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_REQUESTS = True

API_PATH = "/api/v1/subscriber"
PAGE_SIZE = 1000  # the portal's maximum: fewer requests against the hourly budget
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
MIN_RATE_LIMIT_WAIT = 1.0  # a 429 without a usable Retry-After still waits this long
MAX_TIMEOUT = 3600  # larger values overflow the socket layer ("timestamp too large") and hang a run for hours
MAX_RATE_LIMIT_WAIT = 86400
REMAINING_HEADERS = _reader.REMAINING_HEADERS
RESET_HEADERS = _reader.RESET_HEADERS
RATE_HEADERS = _reader.RATE_HEADERS

_RETRYABLE_STATUS = (500, 502, 503, 504)  # 500 only for idempotent requests: a create may have happened


class PortalError(Exception):
    """Any failure talking to the portal. ``msg`` says what happened and what to do.

    ``kind`` is one of: auth, addon, not_found, validation, conflict, plan_limit, rate_limit,
    unsupported, tls, connection, timeout, server, protocol, aborted (the run that started the module is gone).
    ``status`` is the HTTP status
    (None for network errors), ``detail`` the portal's own error detail (rendered text).
    """

    def __init__(self, msg, kind="protocol", status=None, detail=None, may_have_acted=None):
        super(PortalError, self).__init__(msg)
        self.msg = msg
        self.kind = kind
        self.status = status
        self.detail = detail
        # True: the request may have been carried out although its answer failed (a write must then be checked or
        # recovered); False: the portal certainly did nothing; None: not said (read it from the kind).
        self.may_have_acted = may_have_acted

    @property
    def unclean(self):
        """True when a write that failed this way may have changed the portal (lost answer, 5xx, unreadable answer)."""
        if self.may_have_acted is not None:
            return self.may_have_acted
        return self.kind in ("connection", "timeout", "server", "protocol")

    def to_fail_kwargs(self, **extra):
        """Keyword arguments for ``module.fail_json``, so every module reports errors alike."""
        result = dict(extra)
        result["msg"] = self.msg
        result["error"] = {"kind": self.kind, "status": self.status, "detail": self.detail,
                           "may_have_acted": self.unclean}
        return result


def _append(error, text):
    error.msg = "%s %s" % (error.msg, text)
    error.args = (error.msg,)


class _Ambiguous(Exception):
    """A non-idempotent request failed in a way that leaves open whether the portal acted."""

    def __init__(self, error, resume_at=None):
        super(_Ambiguous, self).__init__(error.msg)
        self.error = error
        self.resume_at = resume_at  # clock time a 503's Retry-After named (None: not said)


# ---------------------------------------------------------------------------
# The tolerant reader lives in _reader.py; these wrap its ShapeError as a PortalError.
# ---------------------------------------------------------------------------

def _shape_error(exc):
    return PortalError(exc.msg, kind="protocol")


def normalize_client(row, publish_topic=None):
    """A portal row reduced to exactly CLIENT_KEYS (PortalError kind=protocol when not understood)."""
    try:
        return _reader.normalize_client(row, publish_topic=publish_topic)
    except ShapeError as exc:
        raise _shape_error(exc)


def normalize_subscriber(row):
    """A portal read-only subscriber reduced to exactly SUBSCRIBER_KEYS (PortalError kind=protocol when not understood)."""
    try:
        return _reader.normalize_subscriber(row)
    except ShapeError as exc:
        raise _shape_error(exc)


def _detail_of(response, scrub=None):
    """The portal's error detail as readable text (FastAPI string, list or object).

    ``scrub`` masks the token in a text page before it is cut: a cut could split the token and defeat the mask.
    """
    try:
        body = response.json()
    except ValueError:
        text = (response.text or "").strip()
        if scrub is not None:
            text = scrub(text)
        return text[:300] or None, {}
    if not isinstance(body, dict):
        return None, {}
    detail = body.get("detail")
    if detail is None:
        detail = body.get("message") or body.get("error")
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = [str(p) for p in item.get("loc") or [] if p not in ("body", "query", "path")]
                msg = item.get("msg") or item.get("message") or ""
                parts.append("%s: %s" % (".".join(loc), msg) if loc else str(msg))
            else:
                parts.append(str(item))
        detail = "; ".join(parts)
    elif isinstance(detail, dict):
        detail = detail.get("message") or detail.get("msg") or json.dumps(detail, sort_keys=True)
    return (str(detail) if detail is not None else None), body


def _plan_limit_of(body, text):
    """The plan_limit error wherever the portal puts its code: ``code``, ``error.code``, ``detail.code``, or the text."""
    if isinstance(body, dict):
        for holder in (body, body.get("error"), body.get("detail")):
            if isinstance(holder, dict) and holder.get("code") == "plan_limit":
                return holder
    if "plan_limit" in (text or ""):
        return body if isinstance(body, dict) else {}
    return None


def _never_sent(exc):
    """True when the request certainly did not reach the portal (safe to repeat any request)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return type(reason).__name__ == "NewConnectionError"


def _nothing_changed(response, body):
    """The contract's 503 broker_unavailable promises that nothing changed."""
    return response.status_code == 503 and isinstance(body, dict) and body.get("code") == "broker_unavailable"


def base_url(portal_url):
    """The API base URL from an origin (or an origin with /api/v1/subscriber already appended)."""
    url = (portal_url or "").strip()
    if not url.lower().startswith(("https://", "http://")):
        raise PortalError("portal_url must start with https:// (or http:// for a local test portal), got %r; "
                          "example: https://mqtt.ishareradio.com" % (url,), kind="validation")
    split = urlsplit(url)
    if not split.hostname:
        raise PortalError("portal_url %r has no host name; example: https://mqtt.ishareradio.com" % (url,), kind="validation")
    problem = api_path_problem(split.path)
    if problem:
        raise PortalError("portal_url %s %s; give the portal's origin only, for example %s://%s (the collection adds %s "
                          "itself)." % (url, problem, split.scheme, split.netloc.rpartition("@")[2], API_PATH), kind="validation")
    url = url.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    if not url.endswith(API_PATH):
        url += API_PATH
    return url


def api_path_problem(path):
    """What is wrong with a portal_url path that holds part of the API path, or None.

    The origin gets API_PATH appended, and a path that is exactly API_PATH is kept, but a partial one (``/api``,
    ``/api/v1``) would be doubled and every request would answer 404 "not found"; anything after API_PATH too.
    """
    segments = [s for s in path.split("/") if s]
    lowered = [s.lower() for s in segments]
    if "api" not in lowered:
        return None
    from_api = "/" + "/".join(segments[lowered.index("api"):])
    if from_api == API_PATH:
        return None
    if (API_PATH + "/").startswith(from_api.lower() + "/"):
        return "ends in %s, a part of the API path: %s would be appended to it" % (from_api, API_PATH)
    return "holds an API path (%s) rather than the portal's address" % from_api


def is_loopback(host):
    """True for localhost and loopback addresses (127.0.0.0/8, ::1): plain HTTP never leaves the machine."""
    if (host or "").lower() in ("localhost", "localhost.localdomain") or (host or "").lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalize_token(token):
    """The token without surrounding whitespace (a trailing newline from a file or encrypt_string is common).

    Returns (token, problem): inner whitespace or control characters are refused (the text never shows the token).
    """
    token = token.strip()
    bad = [ch for ch in token if ch.isspace() or ord(ch) < 32 or ord(ch) == 127]
    if bad:
        return token, ("api_token contains %s inside it; a portal token is one word (isr_mqtt_rest_...). Check how it "
                       "is read: copy it again from Settings -> REST API tokens, without line breaks or spaces"
                       % ("whitespace" if all(ch.isspace() for ch in bad) else "control characters"))
    return token, None


class PortalClient(object):
    """A client for the portal's Mgmt REST API. Safe to share between threads."""

    def __init__(self, portal_url, api_token, validate_certs=True, ca_path=None, timeout=30,
                 rate_limit_max_wait=300, max_retries=4, warn=None, pool_size=10, allow_http=False):
        if not HAS_REQUESTS:
            raise PortalError(missing_required_lib("requests"), kind="protocol")
        api_token, problem = normalize_token(api_token or "")
        if problem:
            raise PortalError(problem, kind="validation")
        if not api_token:
            raise PortalError("api_token is required: set the api_token option or the ISR_PORTAL_TOKEN environment variable", kind="validation")
        self.base = base_url(portal_url)
        host = urlsplit(self.base).hostname
        if self.base.lower().startswith("http://") and not is_loopback(host):
            if not allow_http:
                raise PortalError(
                    "portal_url %s uses plain http:// to %s, which is not this machine: the API token would cross the network "
                    "unencrypted. Use https://, or set allow_http: true for a test portal on a network you trust."
                    % (self.base, host), kind="validation")
            (warn or (lambda msg: None))(
                "allow_http is true: the API token is sent unencrypted to %s over plain http://." % host)
        self._origin = urlsplit(self.base)[:2]
        self._token = api_token
        self.timeout = timeout
        self.rate_limit_max_wait = max(0, rate_limit_max_wait or 0)
        self.max_retries = max(0, max_retries)
        self._warn = warn or (lambda msg: None)
        self._sleep = time.sleep  # replaced in unit tests
        self.should_stop = None  # callable -> None, or why no more request may be sent (ParentWatch.gone)
        self.run_identity = None  # [pid, start time] of the ansible-playbook that started the module (ParentWatch.run)
        self._clock = time.monotonic

        self._lock = threading.Lock()
        self._stats = {"requests": 0, "retries": 0, "rate_limit_waited": 0.0}
        self._wallclock = time.time  # X-RateLimit-Reset may be a Unix time
        self._paced_until = 0.0  # clock time up to which a rate-limit wait is already counted
        self._resume_at = 0.0  # clock time before which the budget is known to be spent
        # The budget counted down here, so that no request is sent that the portal would refuse with 429:
        self._budget = None  # requests the window still allows, net of those in flight (None: not known yet)
        self._window_end = 0.0  # clock time the portal's window ends (X-RateLimit-Reset)
        self._sent = 0  # sequence number of the last request sent
        self._noted = 0  # sequence number of the newest request whose rate-limit headers were read
        self._in_flight = set()
        self._answered = 0  # requests answered (or failed) so far
        self._answered_at_send = {}  # request number -> self._answered when it was sent
        self.on_wait = None  # called with the seconds left, at least once a minute while waiting for the rate limit
        self._resume_reason = ""
        self.rate_headers = {}  # the rate-limit headers of the last answer (for the probe)

        self.session = requests.Session()
        self.session.headers.update({"Authorization": "Bearer %s" % api_token, "Accept": "application/json"})
        # Passed on every request: a session-level verify loses to REQUESTS_CA_BUNDLE (requests issue 3829).
        self._verify = (ca_path or True) if validate_certs else False
        self.session.verify = self._verify
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        if not validate_certs:
            self._warn("validate_certs is false: the portal's TLS certificate is not checked, so the API token could be "
                       "sent to an impostor. Prefer ca_path with the CA that signed the portal's certificate.")
            try:
                import urllib3
                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # we warned once, above
            except Exception:  # pragma: no cover - urllib3 always ships with requests
                pass

    # -- bookkeeping -------------------------------------------------------

    @property
    def stats(self):
        """A snapshot: requests sent, retries made, seconds waited for the rate limit."""
        with self._lock:
            snapshot = dict(self._stats)
        snapshot["rate_limit_waited"] = round(snapshot["rate_limit_waited"], 3)
        return snapshot

    def _count(self, key, amount=1):
        with self._lock:
            self._stats[key] += amount

    def _scrub(self, text):
        """``text`` without the token, also in the escaped form an exception's repr gives it (a newline as \\n)."""
        if not text or not self._token:
            return text
        for form in (self._token, repr(self._token)[1:-1], json.dumps(self._token)[1:-1]):
            text = text.replace(form, "<api_token>")
        return text

    def token_for_lock(self):
        """The token, only to name the account's lock file (hashed there, never written)."""
        return self._token

    def scrub(self, text):
        """Public for the modules: any text they report about a failure, without the API token."""
        return self._scrub(text)

    def _error(self, msg, kind, status=None, detail=None, may_have_acted=None):
        return PortalError(self._scrub(msg), kind=kind, status=status, detail=self._scrub(detail), may_have_acted=may_have_acted)

    # -- rate limit --------------------------------------------------------

    def _rate_limit_wait(self, seconds, reason, unavailable=False):
        """Wait ``seconds`` if the rate_limit_max_wait budget allows, else raise kind=rate_limit
        (kind=server for a 503 window: ``unavailable``).

        Concurrent threads waiting for the same moment count that stretch of time once.
        """
        now = self._clock()
        until = now + seconds
        with self._lock:
            added = max(0.0, until - max(now, self._paced_until))
            left = self.rate_limit_max_wait - self._stats["rate_limit_waited"]
            if added > left + 1e-9 and unavailable:
                raise self._error(
                    "The portal is unavailable: %s asks to wait %.0f s, but only %.0f s of rate_limit_max_wait (%s s) are left. "
                    "Rerun when the portal is back, or raise rate_limit_max_wait to wait such windows out."
                    % (reason, seconds, max(left, 0), self.rate_limit_max_wait), kind="server", status=503)
            if added > left + 1e-9:
                raise self._error(
                    "Portal rate limit exhausted: %s asks to wait %.0f s, but only %.0f s of rate_limit_max_wait (%s s) are left. "
                    "The budget is 5000 requests per hour per token: rerun later, raise rate_limit_max_wait, or use mqtt_fleet "
                    "to reconcile many clients with fewer requests." % (reason, seconds, max(left, 0), self.rate_limit_max_wait),
                    kind="rate_limit", status=429 if reason.startswith("429") else None)
            self._stats["rate_limit_waited"] += added
            self._paced_until = max(self._paced_until, until)
            left -= added
        self._warn("Portal %s: waiting %.0f s (%s); %.0f s of rate_limit_max_wait left."
                   % ("unavailable" if unavailable else "rate limit", seconds, reason, max(left, 0)))
        while seconds > 0:  # in steps of a minute at most, each with a progress report
            if self.on_wait is not None:
                self.on_wait(seconds)
            step = min(seconds, 60.0)
            self._wait(step)
            seconds -= step

    def _check_stop(self, method, url):
        reason = self.should_stop() if self.should_stop else None
        if reason:
            raise self._error("Stopped before %s %s: %s, so nobody would receive the result. Nothing more is sent; a "
                              "rerun waits until this process has ended and then continues." % (method, url, reason),
                              kind="aborted", may_have_acted=False)

    def _wait(self, seconds, method="the next request", url=""):
        """Sleep ``seconds``; with a stop check, in steps of at most a second (an orphan must not sleep for minutes)."""
        if not self.should_stop:
            self._sleep(seconds)
            return
        end = self._clock() + seconds
        while True:
            self._check_stop(method, url)
            left = end - self._clock()
            if left <= 0:
                return
            self._sleep(min(left, 1.0))

    def _pace(self):
        """Wait while the window's budget is known to be spent, then take one request of it; returns its number."""
        while True:
            with self._lock:
                now = self._clock()
                wait, reason = self._resume_at - now, self._resume_reason
                if wait <= 0 and self._budget is not None and self._budget <= 0:
                    if now < self._window_end:
                        wait = self._window_end - now
                        reason = "the X-RateLimit-Remaining budget (counted down here) is used up until X-RateLimit-Reset"
                    else:
                        self._budget = None  # a new window: its first answer tells the budget
                if wait <= 0:
                    if self._budget is not None:
                        self._budget -= 1
                    self._sent += 1
                    self._in_flight.add(self._sent)
                    self._answered_at_send[self._sent] = self._answered
                    return self._sent
            self._rate_limit_wait(wait, reason)

    def _send(self, number, method, url, **kwargs):
        try:
            return self.session.request(method, url, **kwargs)
        except BaseException:
            with self._lock:
                self._done(number)  # it may still have reached the portal
            raise

    def _done(self, number):
        """Mark request ``number`` answered (under the lock); returns how many others were answered since it was sent."""
        self._in_flight.discard(number)
        since = self._answered - self._answered_at_send.pop(number, self._answered)
        self._answered += 1
        return since

    def _limits_of(self, response):
        """What the answer's rate-limit headers say (see _reader.rate_limit_of): resets as seconds, Unix times or dates."""
        return _reader.rate_limit_of(response.headers, self._wallclock())

    def _note_rate_headers(self, response, number=None):
        self.rate_headers = dict((name, response.headers[name]) for name in RATE_HEADERS if name in response.headers)
        limits = self._limits_of(response)
        remaining, remaining_name = limits["remaining"], limits["remaining_header"]
        reset, reset_name = limits["reset"], limits["reset_header"]
        with self._lock:
            answered_since = self._done(number)
            if number is not None and number < self._noted:
                return  # an answer older than one already read: its count is stale
            self._noted = number or self._noted
            now = self._clock()
            if reset is not None and reset > 0:
                self._window_end = now + reset
            if remaining is not None:
                # The portal counted the requests that reached it before this one. Threads overtake each other, so
                # those still in flight and those answered since this one was sent may have reached it later:
                # count them as spent (at worst a few requests of a window unused, never one refused).
                self._budget = remaining - len(self._in_flight) - answered_since
                if remaining <= 0 and reset is not None and reset > 0 and now + reset > self._resume_at:
                    self._resume_at = now + reset
                    self._resume_reason = "%s is 0 until %s" % (remaining_name, reset_name)

    def _retry_after(self, response):
        """Seconds the answer's Retry-After asks to wait (seconds, a Unix time or an HTTP date), else None."""
        return _reader.wait_header(response.headers, self._wallclock(), "Retry-After")[0]

    def _wait_after_429(self, response, attempt):
        """Wait as the 429 asks: Retry-After, else the rate-limit reset, else a growing minimum; the reason names the header."""
        retry_after = self._retry_after(response)
        if retry_after is not None:
            seconds, reason = retry_after, "429 with Retry-After: %s" % response.headers["Retry-After"]
        else:
            limits = self._limits_of(response)
            seconds, name = limits["reset"], limits["reset_header"]
            if seconds is not None:
                reason = "429 with %s: %s (no Retry-After)" % (name, limits["reset_text"])
            else:
                seconds, reason = MIN_RATE_LIMIT_WAIT * (2 ** min(attempt, 6)), "429 without Retry-After or a rate-limit reset header"
        self._rate_limit_wait(max(seconds, MIN_RATE_LIMIT_WAIT), reason)

    # -- requests ----------------------------------------------------------

    def _backoff(self, attempt):
        """Jittered exponential backoff: between half and all of min(cap, base * 2**attempt)."""
        delay = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** attempt))
        return delay / 2 + random.uniform(0, delay / 2)

    def _url(self, path_or_url):
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.base + path_or_url

    def _transport_error(self, exc, method, url):
        """(PortalError, portal certainly did nothing) for any exception of the HTTP layer other than
        connection errors and timeouts: an answer cut short or undecodable, an invalid request, anything else."""
        name = type(exc).__name__
        if isinstance(exc, (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL,
                            requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                            requests.exceptions.URLRequired)):
            return self._error(
                "The request %s %s could not be sent (%s: %s); nothing reached the portal. Check portal_url and that "
                "api_token is the token alone, without spaces or line breaks." % (method, url, name, exc),
                kind="validation", may_have_acted=False), True
        if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)) or \
                name in ("IncompleteRead", "ProtocolError", "DecodeError"):
            what = "was cut short" if not isinstance(exc, requests.exceptions.ContentDecodingError) else "could not be decoded"
            return self._error(
                "The portal's answer to %s %s %s (%s: %s). The portal may have carried out the request; a create is "
                "checked by listing, a rotation must be repeated to get a password that is known."
                % (method, url, what, name, exc), kind="connection", may_have_acted=True), False
        return self._error(
            "Talking to the portal for %s %s failed (%s: %s). The portal may have carried out the request."
            % (method, url, name, exc), kind="connection", may_have_acted=True), False

    def _network_error(self, exc, method, url):
        if isinstance(exc, requests.exceptions.SSLError):
            return self._error(
                "TLS verification failed for %s: %s. Set ca_path to the CA bundle that signed the portal's certificate "
                "(or validate_certs: false for a test portal only)." % (self.base, exc), kind="tls")
        if isinstance(exc, requests.exceptions.Timeout):
            return self._error(
                "The portal did not answer %s %s within timeout=%s s. Raise the timeout option if the portal is slow, "
                "or check the network path to portal_url." % (method, url, self.timeout), kind="timeout")
        return self._error(
            "Cannot reach the portal for %s %s: %s. Check portal_url (ISR_PORTAL_URL) and that the host is reachable "
            "from the controller." % (method, url, exc), kind="connection")

    def _status_error(self, response, method, url, what):
        status = response.status_code
        detail, body = _detail_of(response, self._scrub)
        said = (": %s" % detail) if detail else ""
        if 300 <= status < 400:
            location = (response.headers.get("Location") or "").split("?", 1)[0]
            return self._error(
                "The portal answered %s %s with a redirect (HTTP %s%s) instead of an API answer: portal_url is wrong "
                "(give the origin, e.g. https://mqtt.ishareradio.com, with the right scheme) or the API token was not "
                "accepted (a redirect to a login page). The redirect was not followed, so the token went nowhere else."
                % (method, url, status, " to %s" % location if location else ""), kind="auth", status=status, detail=detail)
        limited = _plan_limit_of(body, json.dumps(body) if body else detail)
        if limited is not None:
            limit, active = limited.get("limit", body.get("limit")), limited.get("active", body.get("active"))
            count = (" (%s of %s in use)" % (active, limit)) if limit is not None else ""
            err = self._error(
                "Plan limit reached creating %s%s%s. Delete or revoke one you no longer need (or upgrade the plan under "
                "Subscriptions in the portal) and rerun." % (what, count, said), kind="plan_limit", status=status, detail=detail)
            err.limit, err.active = limit, active  # for callers that explain the limit in their own words
            return err
        if status == 401:
            hint = "" if self._token.startswith("isr_mqtt_rest_") else " (the token does not start with isr_mqtt_rest_)"
            return self._error(
                "The portal rejected the API token (HTTP 401%s)%s: it is wrong, revoked or expired. Check api_token / "
                "ISR_PORTAL_TOKEN; tokens are made under Settings -> REST API tokens." % (said, hint),
                kind="auth", status=status, detail=detail)
        if status == 403:
            return self._error(
                "The portal refused %s %s (HTTP 403%s): the account lacks the Mgmt REST API add-on. Enable it under "
                "Subscriptions in the portal." % (method, url, said), kind="addon", status=status, detail=detail)
        if status == 404:
            return self._error("%s not found on the portal (HTTP 404%s); it may have been deleted meanwhile." % (what, said),
                               kind="not_found", status=status, detail=detail)
        if status == 405:
            return self._error(
                "The portal does not offer %s %s (HTTP 405 Method Not Allowed)." % (method, url),
                kind="unsupported", status=status, detail=detail)
        if status == 409:
            return self._error("The portal refused %s %s because of a conflict (HTTP 409%s)." % (method, url, said),
                               kind="conflict", status=status, detail=detail)
        if status in (400, 422):
            return self._error("The portal rejected the request %s %s as invalid (HTTP %s%s)." % (method, url, status, said),
                               kind="validation", status=status, detail=detail)
        if status >= 500:
            return self._error("The portal failed on %s %s (HTTP %s%s)." % (method, url, status, said),
                               kind="server", status=status, detail=detail)
        return self._error("Unexpected answer to %s %s: HTTP %s%s." % (method, url, status, said),
                           kind="protocol", status=status, detail=detail)

    def _request(self, method, path, json_body=None, params=None, idempotent=True, what="resource"):
        """Send one logical request; returns the response (2xx) or raises PortalError / _Ambiguous."""
        url = self._url(path)
        attempt = attempt429 = 0
        while True:
            self._check_stop(method, url)
            number = self._pace()
            self._count("requests")
            error = retry_after = None
            try:
                response = self._send(number, method, url, json=json_body, params=params, timeout=self.timeout,
                                      verify=self._verify, allow_redirects=False)
            except requests.exceptions.SSLError as exc:
                raise self._network_error(exc, method, url)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                error = self._network_error(exc, method, url)
                error.may_have_acted = not _never_sent(exc)
                safe = idempotent or _never_sent(exc)
            except Exception as exc:  # every other failure of the HTTP layer: a known kind, scrubbed
                error, never_sent = self._transport_error(exc, method, url)
                if never_sent:
                    raise error  # repeating it cannot help: the request itself is wrong
                safe = idempotent
            else:
                self._note_rate_headers(response, number)
                if response.status_code < 300:
                    return response
                if response.status_code == 429:
                    self._wait_after_429(response, attempt429)
                    attempt429 += 1
                    continue
                error = self._status_error(response, method, url, what)
                if response.status_code not in _RETRYABLE_STATUS or (response.status_code == 500 and not idempotent):
                    raise error
                safe = idempotent or _nothing_changed(response, _detail_of(response, self._scrub)[1])
                if response.status_code == 503:
                    retry_after = self._retry_after(response)
            if not safe:
                raise _Ambiguous(error, None if retry_after is None else self._clock() + retry_after)
            if retry_after is not None:  # the portal named its window: wait it out within rate_limit_max_wait
                self._rate_limit_wait(max(retry_after, MIN_RATE_LIMIT_WAIT), "%s %s answered 503 with Retry-After: %s"
                                      % (method, urlsplit(url).path, response.headers["Retry-After"]), unavailable=True)
                continue
            if attempt >= self.max_retries:
                if self.max_retries:
                    _append(error, "Gave up after %d retries." % self.max_retries)
                raise error
            self._count("retries")
            self._wait(self._backoff(attempt))
            attempt += 1

    def _json(self, response, method, url):
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise self._error("The portal's answer to %s %s is not JSON (HTTP %s, Content-Type %s)."
                              % (method, url, response.status_code, response.headers.get("Content-Type")), kind="protocol",
                              status=response.status_code, may_have_acted=method != "GET")

    def _shape(self, func, *args, **kwargs):
        """Call a _reader function; its ShapeError becomes PortalError(kind=protocol)."""
        try:
            return func(*args, **kwargs)
        except ShapeError as exc:
            raise self._error(exc.msg, kind="protocol")

    def list_page(self, path, what):
        """The first list page as read: ``(response, body, page)``; page is a _reader.Page (ShapeError not caught)."""
        url = self._url(path) + "?" + urlencode({"page": 1, "page_size": PAGE_SIZE})
        response = self._request("GET", url, what=what)
        body = self._json(response, "GET", url)
        return response, body, _reader.read_page(body, response.headers, url, PAGE_SIZE)

    def get_json(self, path, what):
        """GET a path under the API base: ``(response, decoded JSON or None when the body is not JSON)``."""
        response = self._request("GET", path, what=what)
        try:
            return response, response.json()
        except ValueError:
            return response, None

    def _list(self, path, what, normalize, id_key):
        """All rows of a paginated list, normalised; fails closed (see _reader.read_page).

        A list that changed while it was read (pages disagreeing on the total, distinct rows not matching it, a row on
        two pages: _reader.list_drift) is read once more from the start; drifting again is an error before any write."""
        seen = []
        for dummy in range(2):
            raw, totals = self._pages(path, what)
            rows = [self._shape(normalize, r) for r in raw]
            drift = _reader.list_drift(rows, totals, id_key)
            if drift is None:
                return rows
            seen.append(drift)
            if len(seen) == 1:
                self._warn("The portal's list of %s changed while it was read: %s. Reading it again." % (what, drift))
        raise self._error(
            "The portal's list of %s changed while it was read, twice: %s; then %s. Acting on it could create duplicates or "
            "miss entries, so nothing was changed. Rerun when nobody else is changing the portal's %s; if this persists, "
            "run isr.mqtt.portal_info and report its output." % (what, seen[0], seen[1], what), kind="protocol")

    def _pages(self, path, what):
        """The raw rows of every page, following the next page to the end, and the total each page reported."""
        url = self._url(path) + "?" + urlencode({"page": 1, "page_size": PAGE_SIZE})
        seen = set()
        rows = []
        totals = []
        while url:
            if url in seen:
                raise self._error("The portal's pagination for %s loops (page %s was already read); refusing to continue." % (what, url),
                                  kind="protocol")
            seen.add(url)
            if urlsplit(url)[:2] != self._origin:
                raise self._error("The portal's next-page link %s points to another host; refusing to send the API token there." % url,
                                  kind="protocol")
            response = self._request("GET", url, what=what)
            page = self._shape(_reader.read_page, self._json(response, "GET", url), response.headers, url, PAGE_SIZE)
            rows.extend(page.rows)
            totals.append(page.total)
            if not page.rows:
                break
            url = page.next_url
        return rows, totals

    def _create(self, path, body, label, known_ids, lister, id_key, what, parse):
        """POST a create without ever creating twice; see create_client for the contract."""
        if known_ids is None:
            known_ids = set(r[id_key] for r in lister() if r["label"] == label)
        known_ids = set(known_ids)
        attempt = 0
        while True:
            try:
                response = self._request("POST", path, json_body=body, idempotent=False, what=what)
            except PortalError as exc:
                if exc.kind == "server":  # a 500 may come after the commit
                    _append(exc, "The portal may have created it anyway: rerun; a new entry labelled %r without a known password "
                                 "must then be given a new one (rotate for an MQTT client)." % (label,))
                raise
            except _Ambiguous as amb:
                appeared = self._appeared(lister, label, known_ids, id_key, what, amb.error)
                if len(appeared) == 1:
                    self._warn("Creating %s: %s The portal now lists %s %s with that label, taken as the result of this create; "
                               "its password was lost: rotate it to get a new one." % (what, amb.error.msg, id_key, appeared[0][id_key]))
                    return appeared[0], None
                if appeared:
                    ids = ", ".join(r[id_key] for r in appeared)
                    raise self._error(
                        "Creating %s: %s Since then %d new entries labelled %r appeared (%s); which one is ours is unknown. "
                        "Delete the extra ones in the portal and rerun." % (what, amb.error.msg, len(appeared), label, ids),
                        kind="conflict", status=amb.error.status)
                if attempt >= self.max_retries:
                    raise self._error("Creating %s failed: %s Nothing was created (checked by listing). Gave up after %d retries."
                                      % (what, amb.error.msg, self.max_retries), kind=amb.error.kind, status=amb.error.status,
                                      detail=amb.error.detail)
                self._count("retries")
                left = (amb.resume_at - self._clock()) if amb.resume_at is not None else 0
                if left > 0:  # nothing was created: wait what is left of the window the 503 named
                    try:
                        self._rate_limit_wait(max(left, MIN_RATE_LIMIT_WAIT), "creating %s answered 503 with Retry-After"
                                              % what, unavailable=True)
                    except PortalError as exc:
                        _append(exc, "Nothing was created (checked by listing).")
                        exc.may_have_acted = False
                        raise
                else:
                    self._wait(self._backoff(attempt))
                attempt += 1
                continue
            row, password = self._shape(parse, self._json(response, "POST", self._url(path)))
            if row is None:
                row = self._identify(label, known_ids, lister, id_key, what, password)
            return row, password

    def _appeared(self, lister, label, known_ids, id_key, what, error):
        """The rows with ``label`` that are new since the create; a failed re-list says the create may have happened."""
        try:
            listed = lister()
        except PortalError as exc:
            _append(exc, "This list was to check whether creating %s happened after: %s So it may have: rerun; a new entry "
                         "labelled %r without a known password must then be given a new one (rotate for an MQTT client)."
                         % (what, error.msg, label))
            exc.may_have_acted = True
            raise
        appeared = [r for r in listed if r["label"] == label and r[id_key] not in known_ids]
        # None verbatim, but a new entry under the label trimmed or in another case: this create, by a portal that
        # normalizes labels. Retrying would make a duplicate, so stop (its password is lost: rotate it).
        normalized = [] if appeared else [r for r in listed if r[id_key] not in known_ids and label_key(r["label"]) == label_key(label)]
        if normalized:
            raise self._error(
                "Creating %s: %s The portal now lists %s under the label %r: most likely this create, with the label "
                "normalized by the portal. Nothing was retried, so that no duplicate is made; its password was lost. Use "
                "the portal's form of the label (%r) from now on and give it a new password (rotate_password, or recover "
                "in isr.mqtt.mqtt_fleet)." % (what, error.msg, ", ".join(r[id_key] for r in normalized),
                                              normalized[0]["label"], normalized[0]["label"]),
                kind="conflict", status=error.status, may_have_acted=True)
        return appeared

    def _identify(self, label, known_ids, lister, id_key, what, password):
        """The row a create made, when its answer did not say: re-list once and take the one new row with the label.

        Failing that, the PortalError carries ``password`` (and ``created=True``), so the caller still hands it on."""
        found = "an answer without an id"
        try:
            appeared = [r for r in lister() if r["label"] == label and r[id_key] not in known_ids]
        except PortalError as exc:
            appeared, found = [], "an answer without an id, and re-listing failed: %s" % exc.msg
        if len(appeared) == 1:
            self._warn("The portal created %s with an answer that did not name its %s; re-listing identified it as %s."
                       % (what, id_key, appeared[0][id_key]))
            return appeared[0]
        if appeared:
            found = "an answer without an id, and %d new entries with that label appeared (%s)" % (
                len(appeared), ", ".join(r[id_key] for r in appeared))
        elif found == "an answer without an id":
            found += ", and no new entry with that label appeared when re-listing"
        err = self._error(
            "The portal created %s with %s, so which entry it is is unknown. Its password is in this result %s: store it now. "
            "Find the entry in the portal and delete the extra ones; isr.mqtt.portal_info shows the answer's shape."
            % (what, found, "(password / credentials)" if password is not None else "- no, the answer carried none either"),
            kind="protocol")
        err.password = password
        err.created = True
        raise err

    # -- MQTT clients --------------------------------------------------------

    def list_clients(self):
        """Every MQTT client (all pages), as normalised rows."""
        return self._list("/publishers", "MQTT clients", _reader.normalize_client, "client_id")

    def create_client(self, label, allow_publish=True, allow_subscribe=False, known_client_ids=None):
        """Create an MQTT client; returns ``(row, password)``.

        ``known_client_ids``: the client_ids the caller already saw with this ``label``
        (an empty set when none). When None, the client lists once first to learn them.

        When the create fails ambiguously (timeout, dropped connection, 502/503/504) the
        client lists once: if exactly one new row with this label appeared, it is the
        result of this create and ``(row, None)`` is returned. ``password is None`` means
        "created, but the password was lost": the caller must rotate that client to get
        a password. If nothing appeared the create is retried (up to max_retries).
        """
        # Only what the docs show: label and allow_subscribe; allow_publish only when it is not the default (true).
        body = {"label": label, "allow_subscribe": bool(allow_subscribe)}
        if not allow_publish:
            body["allow_publish"] = False

        def parse(answer):
            client, password = _reader.read_created_client(answer, label, bool(allow_publish), bool(allow_subscribe))
            if password is None:
                self._warn("The portal created MQTT client %s but its answer carried no password: rotate it to get one."
                           % (client or {}).get("client_id", repr(label)))
            return client, password

        return self._create("/publishers", body, label, known_client_ids, self.list_clients, "client_id",
                            "MQTT client %r" % label, parse)

    def get_client(self, client_id):
        """One MQTT client by client_id; PortalError(kind='not_found') when unknown."""
        what = "MQTT client %s" % client_id
        return self._shape(_reader.normalize_client, self._json(self._request("GET", "/publishers/%s" % client_id, what=what),
                                                                "GET", client_id))

    def update_client(self, client_id, allow_publish=None, allow_subscribe=None):
        """PATCH allow_publish / allow_subscribe; returns the row, or None when the answer holds none (204).

        kind='unsupported' when the portal has no PATCH route."""
        body = {}
        if allow_publish is not None:
            body["allow_publish"] = bool(allow_publish)
        if allow_subscribe is not None:
            body["allow_subscribe"] = bool(allow_subscribe)
        what = "MQTT client %s" % client_id
        try:
            response = self._request("PATCH", "/publishers/%s" % client_id, json_body=body, what=what)
        except PortalError as exc:
            if exc.kind == "unsupported":
                _append(exc, "This portal cannot change allow_publish/allow_subscribe in place; deleting and "
                             "recreating the client (new client_id and password) is the only way.")
            raise
        return _reader.read_write_answer(self._json(response, "PATCH", client_id))

    def _pause_resume(self, client_id, verb):
        what = "MQTT client %s" % client_id
        return _reader.read_write_answer(self._json(self._request("POST", "/publishers/%s/%s" % (client_id, verb), what=what),
                                                    "POST", client_id))

    def pause_client(self, client_id):
        """Pause (repeating it is harmless); returns the row, or None when the answer holds none (204): success."""
        return self._pause_resume(client_id, "pause")

    def resume_client(self, client_id):
        """Resume (repeating it is harmless); returns the row, or None when the answer holds none (204): success."""
        return self._pause_resume(client_id, "resume")

    def delete_client(self, client_id):
        """Delete; a 404 means already gone and is not an error."""
        try:
            self._request("DELETE", "/publishers/%s" % client_id, what="MQTT client %s" % client_id)
        except PortalError as exc:
            if exc.kind != "not_found":
                raise

    def rotate_password(self, client_id):
        """Rotate the MQTT password; returns ``(row_or_partial, password)``.

        Retried on network errors and 502/503/504 like an idempotent call: a rotate whose
        answer was lost has lost its password anyway, and the next rotate yields one we
        receive. When the retries run out, the error says the old password may be dead and
        how to recover (rotate again). The row holds only the keys the portal sent (at least
        client_id and username).
        """
        path = "/publishers/%s/rotate-credentials" % client_id
        what = "MQTT client %s" % client_id
        try:
            response = self._request("POST", path, idempotent=True, what=what)
        except PortalError as err:
            if err.kind not in ("connection", "timeout", "server"):
                raise
            raise self._error(
                "Rotating the password of %s: %s The password may have been rotated without the new one reaching us, "
                "so the old password may no longer work. Recover by rotating again (mqtt_client rotate_password: true, or "
                "list the label under recover in mqtt_fleet)." % (what, err.msg), kind=err.kind, status=err.status, detail=err.detail,
                may_have_acted=True)
        return self._shape(_reader.read_rotated, self._json(response, "POST", path), client_id)

    # -- read-only subscribers --------------------------------------------------

    def list_subscribers(self):
        """Every read-only subscriber password entry (all pages), normalised."""
        return self._list("/subscriber-mqtt-passwords", "read-only subscribers", _reader.normalize_subscriber, "id")

    def create_subscriber(self, label, expires_in_days=30, known_ids=None):
        """Create a read-only subscriber; returns ``(subscriber, password)``.

        ``expires_in_days=None`` means never expires. Ambiguous failures are handled as in
        create_client (``known_ids``: ids already seen with this label; password None = lost,
        revoke and recreate to recover).
        """
        body = {"label": label, "expires_in_days": expires_in_days}

        def parse(answer):
            sub, password = _reader.read_created_subscriber(answer, label)
            if password is None:
                self._warn("The portal created subscriber %s but its answer carried no password: revoke it and create again."
                           % (sub or {}).get("id", repr(label)))
            return sub, password

        return self._create("/subscriber-mqtt-passwords", body, label, known_ids, self.list_subscribers, "id",
                            "read-only subscriber %r" % label, parse)

    def revoke_subscriber(self, subscriber_id):
        """Revoke (delete); a 404 means already gone and is not an error."""
        try:
            self._request("DELETE", "/subscriber-mqtt-passwords/%s" % subscriber_id, what="subscriber %s" % subscriber_id)
        except PortalError as exc:
            if exc.kind != "not_found":
                raise


# ---------------------------------------------------------------------------
# Module glue
# ---------------------------------------------------------------------------

def portal_argument_spec():
    """The connection options every module accepts (documented in doc fragment isr.mqtt.portal)."""
    return dict(
        portal_url=dict(type="str", fallback=(env_fallback, ["ISR_PORTAL_URL"])),
        api_token=dict(type="raw", no_log=True, fallback=(env_fallback, ["ISR_PORTAL_TOKEN"])),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        timeout=dict(type="int", default=30),
        rate_limit_max_wait=dict(type="int", default=300),
        allow_http=dict(type="bool", default=False),
    )


def no_core_dumps():
    """A core file of a module process would hold the token and passwords: this process writes none."""
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):  # not on this platform: nothing to disable
        pass


def client_from_module(module, pool_size=None, guard=False):
    """A PortalClient from the module's options; fails the module with a clear message on bad options."""
    no_core_dumps()
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"), exception=REQUESTS_IMPORT_ERROR)
    params = module.params
    token = params.get("api_token")
    if isinstance(token, str):
        # Mask the stripped token too: "tok\n" as a no_log value does not match "tok" in a message.
        token, problem = normalize_token(token)
        if token:
            module.no_log_values.add(token)
        params["api_token"] = token
        if problem:
            module.fail_json(msg=problem)
    if token is not None and not isinstance(token, str):
        # Its parts became no_log values, which would mask every "a" of the message. Forget them and the value
        # (so that the echoed parameters hold nothing of it either): the message does not show it.
        params["api_token"] = None
        module.no_log_values.difference_update([value for value in module.no_log_values if value in repr(token)])
        module.fail_json(msg="api_token must be a string (the token itself, isr_mqtt_rest_...), not %s; "
                             "give a single quoted string" % type(token).__name__)
    if not params.get("portal_url"):
        module.fail_json(msg="portal_url is required: set the portal_url option or the ISR_PORTAL_URL environment variable "
                             "(for example https://mqtt.ishareradio.com).")
    if not params.get("api_token"):
        module.fail_json(msg="api_token is required: set the api_token option or the ISR_PORTAL_TOKEN environment variable "
                             "(a token starting with isr_mqtt_rest_, made under Settings -> REST API tokens in the portal).")
    timeout = params.get("timeout")
    if timeout is None or not 1 <= timeout <= MAX_TIMEOUT:
        module.fail_json(msg="timeout must be between 1 and %d seconds (one HTTP request), got %r." % (MAX_TIMEOUT, timeout))
    max_wait = params.get("rate_limit_max_wait")
    if max_wait is None or not 0 <= max_wait <= MAX_RATE_LIMIT_WAIT:
        module.fail_json(msg="rate_limit_max_wait must be between 0 and %d seconds (a day), got %r."
                             % (MAX_RATE_LIMIT_WAIT, max_wait))
    if params.get("validate_certs") is None:  # an explicit null would switch TLS verification off
        module.fail_json(msg="validate_certs is null; set true (the default: leave it out) or false.")
    try:
        client = PortalClient(params["portal_url"], params["api_token"], validate_certs=params.get("validate_certs", True),
                              ca_path=params.get("ca_path"), timeout=timeout, rate_limit_max_wait=max_wait,
                              warn=module.warn, pool_size=pool_size or 10,
                              allow_http=params.get("allow_http", False))
    except PortalError as exc:
        module.fail_json(**exc.to_fail_kwargs())
    if guard:
        _guard(module, client)
    return client


def _guard(module, client):
    watch = ParentWatch()
    client.should_stop, client.run_identity = watch.gone, watch.run
    try:
        waited, holder = AccountLock(client.base, client.token_for_lock()).acquire(
            "isr.mqtt.%s" % getattr(module, "_name", "module"), stop=watch.gone)
    except GuardError as exc:
        module.fail_json(msg=client.scrub(exc.msg), error={"kind": "aborted", "status": None, "detail": None,
                                                           "may_have_acted": False})
    if holder:
        module.warn("Waited %.0f s for another process acting on this portal account (pid %s, %s, since %s) - for "
                    "example a module of an earlier run whose ansible-playbook ended - before listing."
                    % (waited, holder.get("pid"), holder.get("module"), holder.get("since")))
