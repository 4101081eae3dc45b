"""SQLite state of the emulated portal: accounts, API tokens, MQTT clients, read-only subscribers.

One connection guarded by one lock: the emulator is a test double, and a single writer keeps it
simple and fast (WAL on file databases, schema created once at start-up). Passwords and tokens are
stored only as hashes; `record_secrets` (tests only) appends every issued secret to a file.
"""
import hashlib
import hmac
import secrets
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

# Deliberately cheap: benchmarks create 10000 clients and a test double needs no brute-force resistance.
PBKDF2_ITERATIONS = 1000
TOKEN_PREFIX = "isr_mqtt_rest_"

ACCOUNT_DEFAULTS = {
    "mgmt_addon": True,
    "max_clients": 100000,
    "max_subscribers": 10,
    "hourly_budget": 5000,
    "window_seconds": 3600.0,
    "patch_supported": True,
}
BOOL_FIELDS = ("mgmt_addon", "patch_supported")

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY, mgmt_addon INTEGER NOT NULL, max_clients INTEGER NOT NULL,
    max_subscribers INTEGER NOT NULL, hourly_budget INTEGER NOT NULL, window_seconds REAL NOT NULL,
    patch_supported INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY, account_id TEXT NOT NULL, expires_at TEXT, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS clients (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, client_id TEXT NOT NULL UNIQUE, account_id TEXT NOT NULL,
    label TEXT NOT NULL, paused INTEGER NOT NULL, allow_publish INTEGER NOT NULL, allow_subscribe INTEGER NOT NULL,
    pw_salt TEXT NOT NULL, pw_hash TEXT NOT NULL, created_at TEXT NOT NULL, rotated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS clients_account ON clients (account_id, seq);
CREATE TABLE IF NOT EXISTS subscribers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, account_id TEXT NOT NULL, label TEXT NOT NULL,
    pw_salt TEXT NOT NULL, pw_hash TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT);
CREATE INDEX IF NOT EXISTS subscribers_account ON subscribers (account_id, seq);
"""


class NotFound(Exception):
    pass


class PlanLimit(Exception):
    def __init__(self, what, limit, active):
        super().__init__("%s limit of the plan reached (%d of %d active); delete or revoke one, or raise the plan limit"
                         % (what, active, limit))
        self.limit = limit
        self.active = active


class BrokerUnavailable(Exception):
    pass


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def new_password():
    return secrets.token_urlsafe(24)


def hash_password(password, salt=None):
    salt = salt or secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), PBKDF2_ITERATIONS).hex()
    return salt, digest


def token_hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


def _new_id(prefix):
    return prefix + secrets.token_hex(6)  # 12 hex digits: never "live"


class Store:
    def __init__(self, path=":memory:", broker=None, record_secrets=None):
        self.lock = threading.RLock()
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        if str(path) != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.clock_offset = timedelta(0)
        self.broker = broker
        self.broker_error = None
        if broker is not None:
            from emulator.broker import BrokerError  # only with --broker
            self.broker_error = BrokerError
        self.record_secrets = record_secrets

    # -- helpers ---------------------------------------------------------------------------------
    def now(self):
        return datetime.now(timezone.utc).replace(microsecond=0) + self.clock_offset

    def _record(self, secret):
        if self.record_secrets:
            with self.lock, open(self.record_secrets, "a") as handle:
                handle.write(secret + "\n")

    @contextmanager
    def transaction(self):
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _query(self, sql, args=()):
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    def _broker(self, method, **kwargs):
        """Tell the broker; a refusal aborts the surrounding transaction (nothing changes)."""
        if self.broker is None:
            return
        try:
            getattr(self.broker, method)(**kwargs)
        except self.broker_error as exc:
            raise BrokerUnavailable("the MQTT broker refused the change (%s); nothing was changed, try again" % exc)

    # -- accounts and tokens ---------------------------------------------------------------------
    def create_account(self, **fields):
        values = dict(ACCOUNT_DEFAULTS, **{k: v for k, v in fields.items() if v is not None})
        account_id = str(uuid.uuid4())
        with self.transaction() as db:
            db.execute("INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (account_id, int(values["mgmt_addon"]), values["max_clients"], values["max_subscribers"],
                        values["hourly_budget"], float(values["window_seconds"]), int(values["patch_supported"])))
        return account_id, self.create_token(account_id)

    def update_account(self, account_id, **fields):
        fields = {k: (int(v) if k in BOOL_FIELDS else v) for k, v in fields.items() if v is not None}
        with self.transaction() as db:
            if not db.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone():
                raise NotFound("account %s" % account_id)
            for key, value in fields.items():
                db.execute("UPDATE accounts SET %s = ? WHERE id = ?" % key, (value, account_id))
        return self.get_account(account_id)

    def get_account(self, account_id):
        rows = self._query("SELECT * FROM accounts WHERE id = ?", (account_id,))
        if not rows:
            raise NotFound("account %s" % account_id)
        account = dict(rows[0])
        for key in BOOL_FIELDS:
            account[key] = bool(account[key])
        return account

    def create_token(self, account_id, expires_in_days=None):
        self.get_account(account_id)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires = iso(self.now() + timedelta(days=expires_in_days)) if expires_in_days else None
        with self.transaction() as db:
            db.execute("INSERT INTO tokens (hash, account_id, expires_at) VALUES (?, ?, ?)",
                       (token_hash(token), account_id, expires))
        self._record(token)
        return token

    def revoke_token(self, token):
        with self.transaction() as db:
            if db.execute("UPDATE tokens SET revoked = 1 WHERE hash = ?", (token_hash(token),)).rowcount == 0:
                raise NotFound("token")

    def account_for_token(self, token):
        """The token's account, or None when the token is unknown, revoked or expired."""
        rows = self._query("SELECT a.*, t.expires_at AS token_expires, t.revoked FROM tokens t "
                           "JOIN accounts a ON a.id = t.account_id WHERE t.hash = ?", (token_hash(token),))
        if not rows or rows[0]["revoked"]:
            return None
        account = dict(rows[0])
        if account["token_expires"] and account["token_expires"] <= iso(self.now()):
            return None
        for key in BOOL_FIELDS:
            account[key] = bool(account[key])
        return account

    # -- MQTT clients ----------------------------------------------------------------------------
    def _client_row(self, row):
        prefix = "%s/%s" % (row["account_id"], row["client_id"])
        return {"client_id": row["client_id"], "label": row["label"], "username": row["client_id"],
                "topic": prefix + "/#", "paused": bool(row["paused"]), "allow_publish": bool(row["allow_publish"]),
                "allow_subscribe": bool(row["allow_subscribe"]), "history_topic_prefix": prefix,
                "created_at": row["created_at"], "rotated_at": row["rotated_at"]}

    def list_clients(self, account_id, page, page_size):
        with self.lock:
            total = self.db.execute("SELECT COUNT(*) FROM clients WHERE account_id = ?", (account_id,)).fetchone()[0]
            rows = self.db.execute("SELECT * FROM clients WHERE account_id = ? ORDER BY seq LIMIT ? OFFSET ?",
                                   (account_id, page_size, (page - 1) * page_size)).fetchall()
        return [self._client_row(r) for r in rows], total

    def _get_client(self, db, account_id, client_id):
        row = db.execute("SELECT * FROM clients WHERE account_id = ? AND client_id = ?", (account_id, client_id)).fetchone()
        if row is None:
            raise NotFound("no MQTT client with client_id %r in this account" % client_id)
        return row

    def get_client(self, account_id, client_id):
        with self.lock:
            return self._client_row(self._get_client(self.db, account_id, client_id))

    def create_client(self, account, label, allow_publish, allow_subscribe):
        password = new_password()
        salt, digest = hash_password(password)
        client_id = _new_id("pub-")
        now = iso(self.now())
        with self.transaction() as db:
            active = db.execute("SELECT COUNT(*) FROM clients WHERE account_id = ?", (account["id"],)).fetchone()[0]
            if active >= account["max_clients"]:
                raise PlanLimit("MQTT client", account["max_clients"], active)
            db.execute("INSERT INTO clients (client_id, account_id, label, paused, allow_publish, allow_subscribe, "
                       "pw_salt, pw_hash, created_at, rotated_at) VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?)",
                       (client_id, account["id"], label, int(allow_publish), int(allow_subscribe), salt, digest, now, now))
            self._broker("add_client", username=client_id, password=password, account_id=account["id"],
                         client_id=client_id, allow_publish=allow_publish, allow_subscribe=allow_subscribe, enabled=True)
            row = self._get_client(db, account["id"], client_id)
        self._record(password)
        return self._client_row(row), password

    def set_paused(self, account_id, client_id, paused):
        with self.transaction() as db:
            row = self._get_client(db, account_id, client_id)
            if bool(row["paused"]) != paused:  # repeating a pause/resume is not an error, and changes nothing
                db.execute("UPDATE clients SET paused = ? WHERE seq = ?", (int(paused), row["seq"]))
                self._broker("set_enabled", username=client_id, enabled=not paused)
                row = self._get_client(db, account_id, client_id)
        return self._client_row(row)

    def update_client(self, account_id, client_id, allow_publish=None, allow_subscribe=None):
        with self.transaction() as db:
            row = self._get_client(db, account_id, client_id)
            publish = bool(row["allow_publish"]) if allow_publish is None else allow_publish
            subscribe = bool(row["allow_subscribe"]) if allow_subscribe is None else allow_subscribe
            if (publish, subscribe) != (bool(row["allow_publish"]), bool(row["allow_subscribe"])):
                db.execute("UPDATE clients SET allow_publish = ?, allow_subscribe = ? WHERE seq = ?",
                           (int(publish), int(subscribe), row["seq"]))
                self._broker("set_permissions", username=client_id, account_id=account_id, client_id=client_id,
                             allow_publish=publish, allow_subscribe=subscribe)
                row = self._get_client(db, account_id, client_id)
        return self._client_row(row)

    def delete_client(self, account_id, client_id):
        with self.transaction() as db:
            row = self._get_client(db, account_id, client_id)
            db.execute("DELETE FROM clients WHERE seq = ?", (row["seq"],))
            self._broker("remove_client", username=client_id)

    def rotate_client(self, account_id, client_id):
        password = new_password()
        salt, digest = hash_password(password)
        with self.transaction() as db:
            row = self._get_client(db, account_id, client_id)
            db.execute("UPDATE clients SET pw_salt = ?, pw_hash = ?, rotated_at = ? WHERE seq = ?",
                       (salt, digest, iso(self.now()), row["seq"]))
            self._broker("set_password", username=client_id, password=password)
            row = self._get_client(db, account_id, client_id)
        self._record(password)
        return self._client_row(row), password

    # -- read-only subscribers -------------------------------------------------------------------
    def _subscriber_row(self, row, now):
        return {"id": row["id"], "username": row["id"], "label": row["label"],
                "subscribe_filter": row["account_id"] + "/#", "created_at": row["created_at"],
                "expires_at": row["expires_at"], "expired": bool(row["expires_at"] and row["expires_at"] <= now)}

    def list_subscribers(self, account_id, page, page_size):
        now = iso(self.now())
        with self.lock:
            total = self.db.execute("SELECT COUNT(*) FROM subscribers WHERE account_id = ?", (account_id,)).fetchone()[0]
            rows = self.db.execute("SELECT * FROM subscribers WHERE account_id = ? ORDER BY seq LIMIT ? OFFSET ?",
                                   (account_id, page_size, (page - 1) * page_size)).fetchall()
        return [self._subscriber_row(r, now) for r in rows], total

    def _get_subscriber(self, db, account_id, subscriber_id):
        row = db.execute("SELECT * FROM subscribers WHERE account_id = ? AND id = ?", (account_id, subscriber_id)).fetchone()
        if row is None:
            raise NotFound("no subscriber password with id %r in this account" % subscriber_id)
        return row

    def get_subscriber(self, account_id, subscriber_id):
        with self.lock:
            return self._subscriber_row(self._get_subscriber(self.db, account_id, subscriber_id), iso(self.now()))

    def create_subscriber(self, account, label, expires_in_days):
        password = new_password()
        salt, digest = hash_password(password)
        subscriber_id = _new_id("sub-")
        now = self.now()
        expires = iso(now + timedelta(days=expires_in_days)) if expires_in_days is not None else None
        with self.transaction() as db:
            active = db.execute("SELECT COUNT(*) FROM subscribers WHERE account_id = ? AND "
                                "(expires_at IS NULL OR expires_at > ?)", (account["id"], iso(now))).fetchone()[0]
            if active >= account["max_subscribers"]:
                raise PlanLimit("Subscriber password", account["max_subscribers"], active)
            db.execute("INSERT INTO subscribers (id, account_id, label, pw_salt, pw_hash, created_at, expires_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", (subscriber_id, account["id"], label, salt, digest, iso(now), expires))
            self._broker("add_subscriber", username=subscriber_id, password=password, account_id=account["id"])
            row = self._get_subscriber(db, account["id"], subscriber_id)
        self._record(password)
        return dict(self._subscriber_row(row, iso(now)), password=password)

    def revoke_subscriber(self, account_id, subscriber_id):
        with self.transaction() as db:
            self._get_subscriber(db, account_id, subscriber_id)
            db.execute("DELETE FROM subscribers WHERE id = ?", (subscriber_id,))
            self._broker("remove_subscriber", username=subscriber_id)

    # -- control surface -------------------------------------------------------------------------
    def advance_clock(self, days):
        before = iso(self.now())
        self.clock_offset += timedelta(days=days)
        after = iso(self.now())
        if self.broker is not None:  # the broker knows no expiry: disable those that just expired (a revoke still removes them)
            for row in self._query("SELECT id FROM subscribers WHERE expires_at > ? AND expires_at <= ?", (before, after)):
                try:
                    self.broker.set_enabled(username=row["id"], enabled=False)
                except self.broker_error:
                    pass
        return after

    def verify(self, username, password):
        """Would the broker let this login in? -> (ok, reason)."""
        with self.lock:
            row = self.db.execute("SELECT pw_salt, pw_hash, paused, NULL AS expires_at FROM clients WHERE client_id = ? "
                                  "UNION ALL SELECT pw_salt, pw_hash, 0, expires_at FROM subscribers WHERE id = ?",
                                  (username, username)).fetchone()
        if row is None:
            return False, "unknown username"
        if not hmac.compare_digest(hash_password(password, row["pw_salt"])[1], row["pw_hash"]):
            return False, "wrong password"
        if row["paused"]:
            return False, "client is paused"
        if row["expires_at"] and row["expires_at"] <= iso(self.now()):
            return False, "subscriber password expired"
        return True, "ok"

    def state(self, account_id=None):
        where, args = ("WHERE account_id = ?", (account_id,)) if account_id else ("", ())
        with self.lock:
            clients = self.db.execute("SELECT COUNT(*) FROM clients " + where, args).fetchone()[0]
            subscribers = self.db.execute("SELECT COUNT(*) FROM subscribers " + where, args).fetchone()[0]
            labels = dict(self.db.execute("SELECT label, COUNT(*) FROM clients %s GROUP BY label" % where, args).fetchall())
        return {"clients": clients, "subscribers": subscribers, "labels": labels}
