"""The emulated portal as an ASGI app: the Mgmt REST API under /api/v1/subscriber plus /_emulator controls.

Cross-cutting behaviour (request counters, auth, injected faults, the per-token rate limit and
its headers) lives in `EmulatorApp.__call__`, in front of FastAPI's routing, so that it applies
to every portal answer alike, including 404/405/422.
"""
import asyncio
import math
import random
import threading
import time
from collections import Counter
from typing import Optional

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Security
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match

from emulator import dialects, models
from emulator.store import TOKEN_PREFIX, BrokerUnavailable, NotFound, PlanLimit, Store

API = "/api/v1/subscriber"
PUBLIC_PATHS = {API + "/docs", API + "/openapi.json", API + "/docs/oauth2-redirect"}
CREATE_ROUTES = {("POST", API + "/publishers"), ("POST", API + "/subscriber-mqtt-passwords")}


class ApiError(Exception):
    def __init__(self, status, detail, code=None, headers=None, **extra):
        super().__init__(detail)
        self.status, self.detail, self.code, self.headers, self.extra = status, detail, code, headers, extra


def _error(status, detail, code=None, headers=None, dialect="default", **extra):
    return JSONResponse(dialects.error_body(dialect, detail, code, extra), status_code=status, headers=headers)


class RateLimiter:
    """Fixed window per token: the window opens with the token's first request."""

    def __init__(self):
        self.lock = threading.Lock()
        self.windows = {}

    def take(self, key, budget, window_seconds, consume=True):
        now = time.monotonic()
        with self.lock:
            window = self.windows.get(key)
            if window is None or now >= window[0] + window_seconds:
                window = self.windows[key] = [now, 0]
            if consume:
                window[1] += 1
            reset = max(0, math.ceil(window[0] + window_seconds - now))
            return window[1] <= budget, {"X-RateLimit-Limit": str(budget),
                                         "X-RateLimit-Remaining": str(max(0, budget - window[1])),
                                         "X-RateLimit-Reset": str(reset)}


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.by_token = {}

    def add(self, token, method, template):
        with self.lock:
            entry = self.by_token.setdefault(token, {"total": 0, "by_route": Counter(), "writes": 0})
            entry["total"] += 1
            entry["by_route"]["%s %s" % (method, template)] += 1
            entry["writes"] += method != "GET"

    def get(self, token=None):
        with self.lock:
            # No token: the totals over all tokens, including requests without a valid one (counted under None).
            if token is None:
                entries = list(self.by_token.values())
            else:
                entries = [self.by_token[token]] if token in self.by_token else []
            result = {"total": 0, "by_route": Counter(), "writes": 0}
            for entry in entries:
                result["total"] += entry["total"]
                result["writes"] += entry["writes"]
                result["by_route"].update(entry["by_route"])
            result["by_route"] = dict(result["by_route"])
            return result

    def reset(self):
        with self.lock:
            self.by_token.clear()


class FaultState:
    def __init__(self):
        self.lock = threading.Lock()
        self.config = models.Faults()
        self.unavailable_until = 0.0  # monotonic time up to which every request is answered 503
        self.unavailable_next = 0.0  # a window of this many seconds opens with the next request (unavailable_s)
        self.requests = 0  # API requests in the maintenance dialect, which opens a window every WINDOW_EVERY-th

    def set(self, config):
        with self.lock:
            self.config = config
            self.unavailable_until, self.unavailable_next = 0.0, config.unavailable_s

    def _unavailable(self, dialect):
        """A 503 with Retry-After while a window is open (under the lock); the maintenance dialect opens them."""
        now = time.monotonic()
        if self.unavailable_next:
            self.unavailable_until, self.unavailable_next = now + self.unavailable_next, 0.0
        if dialect == "maintenance":
            self.requests += 1
            if self.requests % dialects.WINDOW_EVERY == 0:
                self.unavailable_until = max(self.unavailable_until, now + dialects.WINDOW_SECONDS)
        if now >= self.unavailable_until:
            return None
        return _error(503, "the portal is unavailable (maintenance window); try again later", "unavailable",
                      {"Retry-After": dialects.retry_after(dialect, self.unavailable_until - now)}, dialect)

    def before(self, method, dialect="default", scope=None):
        """An injected answer for this request, or None."""
        with self.lock:
            cfg = self.config
            if cfg.echo_auth_500 > 0 and scope is not None:
                cfg.echo_auth_500 -= 1
                auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
                # A debugging proxy's error page: the header comes after 300 characters, where a cut would split it.
                return PlainTextResponse("Internal Server Error (injected)\n" + "." * 280 + "\nAuthorization: " + auth,
                                         status_code=500)
            unavailable = self._unavailable(dialect)
            if unavailable is not None:
                return unavailable
            if cfg.burst_429 > 0:
                cfg.burst_429 -= 1
                return _error(429, "rate limited (injected burst)", "rate_limited",
                              {"Retry-After": dialects.retry_after(dialect, 1)}, dialect)
            if cfg.error_rate and random.random() < cfg.error_rate:
                return _error(random.choice(cfg.error_statuses), "injected fault", "injected_fault", dialect=dialect)
            if method != "GET" and cfg.fail_after_creates is not None and cfg.fail_after_creates <= 0:
                return _error(503, "the portal is unavailable (injected: fail_after_creates); try again later", "unavailable",
                              dialect=dialect)
        return None

    def truncate(self, method):
        """True when this write's answer is to be cut in half (the write itself is done)."""
        with self.lock:
            if method != "GET" and self.config.truncate_writes > 0:
                self.config.truncate_writes -= 1
                return True
        return False

    def after_create(self, scope, dialect="default"):
        """None, or the answer that replaces the created row's (unavailable_after_create: the create is done)."""
        with self.lock:
            cfg = self.config
            if cfg.fail_after_creates is not None:
                cfg.fail_after_creates -= 1
            if cfg.drop_after_create > 0:
                cfg.drop_after_create -= 1
                scope["emulator.drop"][0] = True
            if cfg.unavailable_after_create > 0:
                cfg.unavailable_after_create -= 1
                self.unavailable_until = time.monotonic() + dialects.WINDOW_SECONDS
                return _error(503, "gateway timeout waiting for the portal (injected: unavailable_after_create)", "unavailable",
                              {"Retry-After": dialects.retry_after(dialect, dialects.WINDOW_SECONDS)}, dialect)
        return None


def _bearer(scope):
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, dummy, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip().startswith(TOKEN_PREFIX):
                return token.strip()
            return None
    return None


class EmulatorApp(FastAPI):
    def reset(self, db=":memory:", broker=None, record_secrets=None):
        """Fresh state (store, faults, counters, rate-limit windows); tests reuse one app this way."""
        self.store = Store(db, broker=broker, record_secrets=record_secrets)
        self.faults = FaultState()
        self.counters = Counters()
        self.limiter = RateLimiter()
        self.dialect = "default"
        self.list_reads = Counter()  # listings started per path (the drift dialects)
        return self

    @property
    def dialect(self):
        """The answer shapes served (see dialects.py); ``dialect_name`` is the dialect as set."""
        return dialects.SHAPES_OF.get(self.dialect_name, self.dialect_name)

    @dialect.setter
    def dialect(self, name):
        self.dialect_name = name

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] == "http" and path in PUBLIC_PATHS and self.dialect in dialects.NO_DOCS:
            return await Response(status_code=404)(scope, receive, send)
        if scope["type"] != "http" or not path.startswith(API + "/") or path in PUBLIC_PATHS:
            return await super().__call__(scope, receive, send)
        await self._portal_request(scope, receive, send)

    def _route(self, scope):
        """(route template, methods allowed when only the path matched, else None)."""
        partial = []
        for route in self.portal_routes:
            match, dummy = route.matches(scope)
            if match == Match.FULL:
                return route.path, None
            if match == Match.PARTIAL:
                partial.append(route)
        if partial:  # Starlette's own 405 would name only the first route's methods
            return partial[0].path, sorted(set().union(*(route.methods for route in partial)))
        return scope["path"], None

    async def _portal_request(self, scope, receive, send):
        method = scope["method"]
        token = _bearer(scope)
        template, allowed_methods = self._route(scope)
        self.counters.add(token, method, template)
        latency = self.faults.config.latency_s
        if latency:
            await asyncio.sleep(latency)
        account = await run_in_threadpool(self.store.account_for_token, token) if token else None
        dialect = self.dialect
        if account is None:
            if dialect == "link":  # a portal that sends a bad token to its login page
                response = Response(status_code=302, headers={"Location": "/login?next=" + scope["path"]})
            else:
                response = _error(401, "API token missing, malformed, unknown, revoked or expired; send "
                                  "'Authorization: Bearer isr_mqtt_rest_...' with an active token", "token_invalid",
                                  {"WWW-Authenticate": "Bearer"}, dialect)
            return await response(scope, receive, send)
        dummy, limit_headers = self.limiter.take(token, account["hourly_budget"], account["window_seconds"], consume=False)
        response = self.faults.before(method, dialect, scope)
        if response is None:
            allowed, limit_headers = self.limiter.take(token, account["hourly_budget"], account["window_seconds"])
            if not allowed:
                reset = limit_headers["X-RateLimit-Reset"]
                response = _error(429, "request budget of %s per window used up; retry after %ss"
                                  % (account["hourly_budget"], reset), "rate_limited",
                                  {"Retry-After": dialects.retry_after(dialect, int(reset))}, dialect)
            elif not account["mgmt_addon"]:
                response = _error(403, "this account lacks the Mgmt REST API add-on; enable it under Subscriptions "
                                  "in the portal", "addon_required", dialect=dialect)
            elif allowed_methods:
                response = _error(405, "Method Not Allowed", headers={"Allow": ", ".join(allowed_methods)}, dialect=dialect)
        limit_headers = dialects.rate_headers(dialect, limit_headers, account["window_seconds"])
        if response is not None:
            if dialect == "offset" and "retry-after" in response.headers:
                del response.headers["retry-after"]
            response.headers.update(limit_headers)
            return await response(scope, receive, send)

        scope["emulator.account"] = account
        drop = scope["emulator.drop"] = [False]
        truncate = self.faults.truncate(method)
        raw_send = send

        async def send_with_headers(message):
            if drop[0]:
                return  # the create was committed; the client must never hear about it
            if message["type"] == "http.response.start":
                message = dict(message, headers=list(message.get("headers", [])) + [
                    (k.lower().encode(), v.encode()) for k, v in limit_headers.items()])
            elif truncate and message["type"] == "http.response.body":
                # The write is done; its answer stops half way (Content-Length promises the whole body).
                body = message.get("body", b"")
                await raw_send({"type": "http.response.body", "body": body[:len(body) // 2], "more_body": True})
                drop[0] = True
                return
            await raw_send(message)

        await super().__call__(scope, receive, send_with_headers)
        if drop[0]:
            transport = getattr(getattr(raw_send, "__self__", None), "transport", None)
            if transport is None:
                raise RuntimeError("drop_after_create and truncate_writes need the emulator to run under uvicorn")
            transport.close()
            await asyncio.sleep(0)  # let uvicorn see the disconnect before it would answer 500


def _account(request: Request, _auth: Optional[HTTPAuthorizationCredentials] = Security(HTTPBearer(auto_error=False))):
    # The HTTPBearer dependency only documents the scheme; EmulatorApp has already checked the token.
    return request.scope["emulator.account"]


def _store(request: Request) -> Store:
    return request.app.store


def _next(path, page, page_size, total):
    return "%s%s?page=%d&page_size=%d" % (API, path, page + 1, page_size) if page * page_size < total else None


def _err(model, description):
    return {"model": model, "description": description}


COMMON = {401: _err(models.Error, "token missing or invalid (code token_invalid)"),
          403: _err(models.Error, "account lacks the Mgmt REST API add-on (code addon_required)"),
          429: _err(models.Error, "request budget used up (code rate_limited); see Retry-After")}
BODY = {400: _err(models.Error, "the body is not parseable JSON")}
WRITE = {**COMMON, 503: _err(models.Error, "the broker refused the change (code broker_unavailable); nothing changed")}
NOT_FOUND = {404: _err(models.Error, "unknown id (code not_found)")}
PLAN_LIMIT = {409: _err(models.PlanLimitError, "plan limit reached (code plan_limit)")}
PageNo = Query(1, ge=1, le=10 ** 9)  # bounded: SQLite's OFFSET is a 64-bit integer
PageSize = Query(100, ge=1, le=1000)


def portal_router():
    router = APIRouter(prefix=API)

    @router.get("/publishers", response_model=models.ClientPage, responses=COMMON, tags=["MQTT clients"])
    def list_clients(request: Request, page: int = PageNo, page_size: int = PageSize, account=Depends(_account),
                     store=Depends(_store)):
        if request.app.dialect != "default":
            return dialects.list_answer(request, request.app.dialect, lambda p, s: store.list_clients(account["id"], p, s),
                                        "/publishers", dialects.client_row)
        items, total = store.list_clients(account["id"], page, page_size)
        return {"items": items, "page": page, "page_size": page_size, "total": total,
                "next": _next("/publishers", page, page_size, total)}

    @router.post("/publishers", status_code=201, response_model=models.ClientCreated, responses={**WRITE, **PLAN_LIMIT, **BODY},
                 tags=["MQTT clients"])
    def create_client(body: models.ClientCreate, request: Request, account=Depends(_account), store=Depends(_store)):
        dialect = request.app.dialect
        if dialect == "link" and "allow_publish" in body.model_fields_set:  # only what the docs show is accepted
            raise ApiError(422, [{"loc": ["body", "allow_publish"], "msg": "Extra inputs are not permitted",
                                  "type": "extra_forbidden"}])
        row, password = store.create_client(account, dialects.stored_label(request.app.dialect_name, body.label),
                                            body.allow_publish, body.allow_subscribe)
        gate = request.app.faults.after_create(request.scope, dialect)
        if gate is not None:
            return gate
        if dialect != "default":
            return JSONResponse(dialects.created_client(dialect, row, password), status_code=201)
        return {"device": dict(row, password=password), "publish_topic": row["history_topic_prefix"] + "/"}

    @router.get("/publishers/{client_id}", response_model=models.ClientRow, responses={**COMMON, **NOT_FOUND},
                tags=["MQTT clients"])
    def get_client(client_id: str, request: Request, account=Depends(_account), store=Depends(_store)):
        row = store.get_client(account["id"], client_id)
        return row if request.app.dialect == "default" else JSONResponse(dialects.client_row(request.app.dialect, row))

    @router.patch("/publishers/{client_id}", response_model=models.ClientRow, tags=["MQTT clients"],
                  responses={**WRITE, **NOT_FOUND, **BODY, 405: _err(models.Error, "this portal offers no PATCH")})
    def update_client(client_id: str, body: models.ClientUpdate, request: Request, account=Depends(_account),
                      store=Depends(_store)):
        if not account["patch_supported"]:
            raise ApiError(405, "Method Not Allowed", headers={"Allow": "GET, DELETE"})
        row = store.update_client(account["id"], client_id, body.allow_publish, body.allow_subscribe)
        return row if request.app.dialect == "default" else dialects.write_answer(request.app.dialect, row)

    @router.delete("/publishers/{client_id}", status_code=204, response_class=Response,
                   responses={**WRITE, **NOT_FOUND}, tags=["MQTT clients"])
    def delete_client(client_id: str, account=Depends(_account), store=Depends(_store)):
        store.delete_client(account["id"], client_id)
        return Response(status_code=204)

    @router.post("/publishers/{client_id}/pause", response_model=models.ClientRow, responses={**WRITE, **NOT_FOUND},
                 tags=["MQTT clients"])
    def pause_client(client_id: str, request: Request, account=Depends(_account), store=Depends(_store)):
        row = store.set_paused(account["id"], client_id, True)
        return row if request.app.dialect == "default" else dialects.write_answer(request.app.dialect, row)

    @router.post("/publishers/{client_id}/resume", response_model=models.ClientRow, responses={**WRITE, **NOT_FOUND},
                 tags=["MQTT clients"])
    def resume_client(client_id: str, request: Request, account=Depends(_account), store=Depends(_store)):
        row = store.set_paused(account["id"], client_id, False)
        return row if request.app.dialect == "default" else dialects.write_answer(request.app.dialect, row)

    @router.post("/publishers/{client_id}/rotate-credentials", response_model=models.Rotated,
                 responses={**WRITE, **NOT_FOUND}, tags=["MQTT clients"])
    def rotate_client(client_id: str, request: Request, account=Depends(_account), store=Depends(_store)):
        row, password = store.rotate_client(account["id"], client_id)
        if request.app.dialect != "default":
            return JSONResponse(dialects.rotated(request.app.dialect, row, password))
        return {"client_id": row["client_id"], "username": row["username"], "password": password,
                "rotated_at": row["rotated_at"]}

    @router.post("/subscriber-mqtt-passwords", status_code=201, response_model=models.SubscriberCreated,
                 responses={**WRITE, **PLAN_LIMIT, **BODY}, tags=["Read-only subscribers"])
    def create_subscriber(body: models.SubscriberCreate, request: Request, account=Depends(_account), store=Depends(_store)):
        subscriber = store.create_subscriber(account, dialects.stored_label(request.app.dialect_name, body.label),
                                             body.expires_in_days)
        gate = request.app.faults.after_create(request.scope, request.app.dialect)
        if gate is not None:
            return gate
        if request.app.dialect != "default":
            return JSONResponse(dialects.subscriber_row(request.app.dialect, subscriber), status_code=201)
        return subscriber

    @router.get("/subscriber-mqtt-passwords", response_model=models.SubscriberPage, responses=COMMON,
                tags=["Read-only subscribers"])
    def list_subscribers(request: Request, page: int = PageNo, page_size: int = PageSize, account=Depends(_account),
                         store=Depends(_store)):
        if request.app.dialect != "default":
            return dialects.list_answer(request, request.app.dialect, lambda p, s: store.list_subscribers(account["id"], p, s),
                                        "/subscriber-mqtt-passwords", dialects.subscriber_row)
        items, total = store.list_subscribers(account["id"], page, page_size)
        return {"items": items, "page": page, "page_size": page_size, "total": total,
                "next": _next("/subscriber-mqtt-passwords", page, page_size, total)}

    @router.get("/subscriber-mqtt-passwords/{subscriber_id}", response_model=models.Subscriber,
                responses={**COMMON, **NOT_FOUND}, tags=["Read-only subscribers"])
    def get_subscriber(subscriber_id: str, account=Depends(_account), store=Depends(_store)):
        return store.get_subscriber(account["id"], subscriber_id)

    @router.delete("/subscriber-mqtt-passwords/{subscriber_id}", status_code=204, response_class=Response,
                   responses={**WRITE, **NOT_FOUND}, tags=["Read-only subscribers"])
    def revoke_subscriber(subscriber_id: str, account=Depends(_account), store=Depends(_store)):
        store.revoke_subscriber(account["id"], subscriber_id)
        return Response(status_code=204)

    return router


def control_router():
    router = APIRouter(prefix="/_emulator", include_in_schema=False)

    @router.post("/accounts")
    def create_account(body: models.AccountFields, store=Depends(_store)):
        account_id, token = store.create_account(**body.model_dump())
        return {"account_id": account_id, "token": token}

    @router.patch("/accounts/{account_id}")
    def set_account(account_id: str, body: models.AccountFields, store=Depends(_store)):
        return store.update_account(account_id, **body.model_dump())

    @router.post("/accounts/{account_id}/tokens")
    def create_token(account_id: str, body: models.TokenCreate, store=Depends(_store)):
        return {"token": store.create_token(account_id, body.expires_in_days)}

    @router.delete("/tokens/{token}", status_code=204)
    def revoke_token(token: str, store=Depends(_store)):
        store.revoke_token(token)
        return Response(status_code=204)

    @router.put("/faults")
    def set_faults(body: models.Faults, request: Request):
        request.app.faults.set(body)
        return body

    @router.get("/faults")
    def get_faults(request: Request):
        return request.app.faults.config

    @router.get("/counters")
    def counters(request: Request, token: Optional[str] = None):
        return request.app.counters.get(token)

    @router.delete("/counters", status_code=204)
    def reset_counters(request: Request):
        request.app.counters.reset()
        return Response(status_code=204)

    @router.post("/clock")
    def clock(body: models.Clock, store=Depends(_store)):
        return {"now": store.advance_clock(body.advance_days)}

    @router.post("/verify")
    def verify(body: models.Login, store=Depends(_store)):
        ok, reason = store.verify(body.username, body.password)
        return {"ok": ok, "reason": reason}

    @router.put("/dialect")
    def set_dialect(body: models.Dialect, request: Request):
        request.app.dialect = body.name
        return body

    @router.get("/dialect")
    def get_dialect(request: Request):
        return {"name": request.app.dialect_name}

    @router.get("/state")
    def state(store=Depends(_store), account_id: Optional[str] = None):
        return store.state(account_id)

    return router


def create_app(db=":memory:", broker=None, record_secrets=None, dialect="default"):
    """The emulator app with an empty store; `app.store.create_account()` seeds an account. ``dialect``: see dialects.py."""
    app = EmulatorApp(title="iShareRadio MQTT portal (emulator)", version="1.0",
                      description="Mgmt REST API as served by the isr.mqtt test emulator (see docs/api-contract.md).",
                      docs_url=API + "/docs", openapi_url=API + "/openapi.json", redoc_url=None)
    app.reset(db, broker=broker, record_secrets=record_secrets)
    app.dialect = dialect

    @app.exception_handler(ApiError)
    async def api_error(request, exc):
        return _error(exc.status, exc.detail, exc.code, exc.headers, request.app.dialect, **exc.extra)

    @app.exception_handler(NotFound)
    async def not_found(request, exc):
        return _error(404, str(exc), "not_found", dialect=request.app.dialect)

    @app.exception_handler(PlanLimit)
    async def plan_limit(request, exc):
        return _error(409, str(exc), "plan_limit", dialect=request.app.dialect, limit=exc.limit, active=exc.active)

    @app.exception_handler(BrokerUnavailable)
    async def broker_unavailable(request, exc):
        return _error(503, str(exc), "broker_unavailable", dialect=request.app.dialect)

    portal = portal_router()
    app.portal_routes = portal.routes  # route templates for the counters
    app.include_router(portal)
    app.include_router(control_router())
    return app
