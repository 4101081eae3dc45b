# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""mqtt_fleet's own logic, in-process, against a fake PortalClient (no HTTP).

The fake records every call with its start/end time and the number of writes in flight, so the tests
can check validation (before any request), the write bound, per-label ordering, failure half way
(passwords still returned), check mode and the diff.
"""
from __future__ import annotations

import json
import threading
import time

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.isr.mqtt.plugins.module_utils._portal import PortalError
from ansible_collections.isr.mqtt.plugins.modules import mqtt_fleet

TOKEN = "isr_mqtt_rest_unit_test_token"


def make_row(label, client_id, paused=False, allow_publish=True, allow_subscribe=False):
    prefix = "acct/%s" % client_id
    return {"client_id": client_id, "label": label, "username": client_id, "topic": prefix + "/#", "paused": paused,
            "allow_publish": allow_publish, "allow_subscribe": allow_subscribe, "history_topic_prefix": prefix,
            "publish_topic": prefix + "/", "created_at": "2026-01-01T00:00:00Z", "rotated_at": "2026-01-01T00:00:00Z"}


class FakePortal(object):
    """The PortalClient surface mqtt_fleet uses, in memory, thread-safe."""

    def __init__(self, rows=(), delay=0.0, fail_after_creates=None, fail_ops=(), lose_password=(), list_error=None,
                 fail_kind=("server", 503)):
        self.rows = dict((row["client_id"], dict(row)) for row in rows)
        self.delay = delay
        self.fail_after_creates = fail_after_creates
        self.fail_ops = set(fail_ops)
        self.lose_password = set(lose_password)
        self.list_error = list_error
        self.fail_kind = fail_kind  # (kind, status) of the injected failures
        self.lock = threading.Lock()
        self.calls = []  # dicts: op, label, client_id, start, end
        self.in_flight = 0
        self.max_in_flight = 0
        self.creates = 0
        self.create_attempts = 0
        self.requests = 0
        self.passwords = {}  # client_id -> the last password issued
        self.pool_size = None
        self._seq = 0

    @property
    def stats(self):
        with self.lock:
            return {"requests": self.requests, "retries": 0, "rate_limit_waited": 0.0}

    @property
    def writes(self):
        return len([c for c in self.calls if c["op"] != "list"])

    @staticmethod
    def scrub(text):
        return text.replace(TOKEN, "<api_token>")

    def list_clients(self):
        with self.lock:
            self.requests += 1
            self.calls.append({"op": "list", "label": None, "client_id": None, "start": time.monotonic(), "end": time.monotonic()})
        if self.list_error:
            raise self.list_error
        return [dict(row) for row in self.rows.values()]

    def _write(self, op, label, client_id, body):
        with self.lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if op == "create":
                self.create_attempts += 1
            call = {"op": op, "label": label, "client_id": client_id, "start": time.monotonic()}
        try:
            time.sleep(self.delay)
            with self.lock:
                if op in self.fail_ops or (self.fail_after_creates is not None and self.creates >= self.fail_after_creates):
                    raise PortalError("The portal failed %s (%s): try again later." % (op, self.fail_kind[0]),
                                      kind=self.fail_kind[0], status=self.fail_kind[1])
                result = body()
                call["client_id"] = call["client_id"] or result[0]["client_id"]
                return result
        finally:
            with self.lock:
                self.in_flight -= 1
                call["end"] = time.monotonic()
                self.calls.append(call)

    def create_client(self, label, allow_publish=True, allow_subscribe=False, known_client_ids=None):
        assert known_client_ids == set(), "mqtt_fleet has listed already: it must pass the known ids"

        def body():
            self._seq += 1
            self.creates += 1
            cid = "pub-%012d" % self._seq
            self.rows[cid] = make_row(label, cid, allow_publish=allow_publish, allow_subscribe=allow_subscribe)
            self.passwords[cid] = "pw-%s-%d" % (cid, self._seq)
            return dict(self.rows[cid]), None if label in self.lose_password else self.passwords[cid]
        return self._write("create", label, None, body)

    def _change(self, op, client_id, **fields):
        def body():
            self.rows[client_id].update(fields)
            return dict(self.rows[client_id]), None
        return self._write(op, self.rows[client_id]["label"], client_id, body)[0]

    def pause_client(self, client_id):
        return self._change("pause", client_id, paused=True)

    def resume_client(self, client_id):
        return self._change("resume", client_id, paused=False)

    def update_client(self, client_id, allow_publish=None, allow_subscribe=None):
        fields = dict((k, v) for k, v in (("allow_publish", allow_publish), ("allow_subscribe", allow_subscribe)) if v is not None)
        return self._change("update", client_id, **fields)

    def delete_client(self, client_id):
        label = self.rows[client_id]["label"]

        def body():
            del self.rows[client_id]
            return {"client_id": client_id}, None
        self._write("delete", label, client_id, body)

    def rotate_password(self, client_id):
        def body():
            self._seq += 1
            self.passwords[client_id] = "rotated-%s-%d" % (client_id, self._seq)
            self.rows[client_id]["rotated_at"] = "2026-02-02T00:00:%02dZ" % (self._seq % 60)
            row = self.rows[client_id]
            # like the portal: a partial answer, only some keys
            return {"client_id": client_id, "username": row["username"], "rotated_at": row["rotated_at"]}, self.passwords[client_id]
        return self._write("rotate", self.rows[client_id]["label"], client_id, body)

    def ops(self, op):
        return [c for c in self.calls if c["op"] == op]


@pytest.fixture
def run(monkeypatch, capsys):
    """run(fake, **module_args) -> (failed, result); never touches the network."""
    built = []

    def factory(module, pool_size=None, guard=False):
        assert guard, "mqtt_fleet writes: it must take the account lock and watch its run"
        built.append(pool_size)
        return run.fake

    monkeypatch.setattr(mqtt_fleet, "client_from_module", factory)
    # How AnsibleModule.warn reports depends on what else the process imported: record the calls instead.
    warnings = []
    monkeypatch.setattr(mqtt_fleet.AnsibleModule, "warn", lambda self, warning, **kwargs: warnings.append(warning))

    def run(fake, check_mode=False, diff=False, **args):
        run.fake = fake
        args = dict(dict(password_sink="result"), **dict(args, portal_url="http://127.0.0.1:9", api_token=TOKEN))
        if check_mode:
            args["_ansible_check_mode"] = True
        if diff:
            args["_ansible_diff"] = True
        with patch_module_args(args):
            with pytest.raises(SystemExit) as exit_info:
                mqtt_fleet.main()
        result = json.loads(capsys.readouterr().out)
        assert TOKEN not in json.dumps(result)
        fake.pool_size = built[-1] if built else None
        return exit_info.value.code != 0, result

    run.built = built
    run.warnings = warnings
    return run


def labels(n, prefix="dev-", **flags):
    return [dict({"label": "%s%03d" % (prefix, i)}, **flags) for i in range(n)]


# ---------------------------------------------------------------------------
# input validation: before any request, every error names clients[i].field
# ---------------------------------------------------------------------------

def test_parse_clients_names_each_bad_item():
    desired, errors = mqtt_fleet.parse_clients([
        {"label": "a"},
        "not-a-dict",
        {"label": ""},
        {"label": "b", "colour": "red"},
        {"label": "c", "paused": "maybe"},
        {"label": "a"},
        {"label": "x" * 65},
        {"label": "bad\nlabel"},
        {"allow_publish": True},
        {"label": "d", "allow_subscribe": "yes", "paused": None},
    ])
    joined = "\n".join(errors)
    assert "clients[1] must be a dict" in joined and "got str" in joined
    assert "clients[2].label must be a non-empty string" in joined
    assert "clients[3] has unknown keys colour" in joined
    assert "clients[4].paused must be a boolean" in joined
    assert "clients[5].label 'a' is also clients[0].label" in joined
    assert "clients[6].label is 65 characters long" in joined
    assert "clients[7].label" in joined and "control characters" in joined
    assert "clients[8].label must be a non-empty string" in joined
    assert len(errors) == 8
    by_label = dict((d["label"], d) for d in desired)
    assert by_label["d"] == {"label": "d", "state": "present", "allow_publish": True, "allow_subscribe": True, "paused": None}
    assert by_label["b"]["paused"] is None and by_label["b"]["allow_subscribe"] is False


def test_duplicate_labels_fail_before_any_request(run):
    fake = FakePortal()
    failed, result = run(fake, clients=[{"label": "a"}, {"label": "b"}, {"label": "a", "paused": True}])
    assert failed
    assert result["msg"].startswith("Invalid fleet: ")
    assert "clients[2].label 'a' is also clients[0].label" in result["msg"]
    assert result["errors"] == ["clients[2].label 'a' is also clients[0].label; list each label once"]
    assert run.built == [] and fake.calls == []  # no client built, nothing sent


def test_every_error_is_reported_at_once(run):
    fake = FakePortal()
    failed, result = run(fake, clients=[{"label": "a", "allow_publish": "sometimes"}, {"label": ""}],
                         parallel=0, purge_match="([", recover_missing=True, rotate=["zzz"], recover=["a", "yyy"])
    assert failed and fake.calls == []
    text = " | ".join(result["errors"])
    assert "clients[0].allow_publish must be a boolean" in text
    assert "clients[1].label must be a non-empty string" in text
    assert "parallel must be between 1 and 32, got 0" in text
    assert "purge_match '([' is not a valid regular expression" in text
    assert "recover_missing needs known_labels" in text
    assert "rotate lists labels that are not in clients: zzz" in text
    assert "recover lists labels that are not in clients: yyy" in text


@pytest.mark.parametrize("purge_match", [None, "", "   ", "\t\n"])
def test_purge_without_a_real_purge_match_is_refused_before_any_request(run, purge_match):
    fake = FakePortal(rows=[make_row("dev-old", "pub-old"), make_row("someone-elses", "pub-other")])
    args = dict(clients=labels(1), purge=True)
    if purge_match is not None:
        args["purge_match"] = purge_match
    failed, result = run(fake, **args)
    assert failed
    assert "purge is true but purge_match is empty" in result["msg"] and "'^site-alpha-'" in result["msg"]
    assert fake.calls == [] and run.built == [] and set(fake.rows) == {"pub-old", "pub-other"}


@pytest.mark.parametrize("item, field", [
    ({"label": None}, "clients[0].label must be a non-empty string of 1-64 characters, not null"),
    ({"label": "a", "allow_publish": None}, "clients[0].allow_publish is null"),
    ({"label": "a", "allow_subscribe": None}, "clients[0].allow_subscribe is null"),
    ({"label": "a\u2028b"}, "contains U+2028"),
    ({"label": "a\uffff"}, "contains U+FFFF"),
])
def test_typed_nulls_and_unstorable_labels_are_refused_before_any_request(run, item, field):
    fake = FakePortal()
    failed, result = run(fake, clients=[item])
    assert failed and field in result["msg"] and fake.calls == [] and run.built == []


def test_paused_null_means_leave_as_it_is(run):
    fake = FakePortal(rows=[make_row("a", "pub-a", paused=True)])
    failed, result = run(fake, clients=[{"label": "a", "paused": None}])
    assert not failed and fake.writes == 0 and result["counts"]["unchanged"] == 1


@pytest.mark.parametrize("option", ["rotate", "recover", "keep_labels", "purge", "parallel", "recover_missing"])
def test_null_options_are_refused_before_any_request(run, option):
    fake = FakePortal()
    failed, result = run(fake, clients=labels(1), **{option: None})
    assert failed and option in result["msg"] and fake.calls == [] and run.built == []  # ours or Ansible's message


def test_labels_held_by_several_clients_fail_before_any_write(run):
    fake = FakePortal(rows=[make_row("dup", "pub-1"), make_row("dup", "pub-2"), make_row("ok", "pub-3")])
    failed, result = run(fake, clients=[{"label": "dup"}, {"label": "ok", "paused": True}, {"label": "new"}])
    assert failed and fake.writes == 0
    assert "dup (pub-1, pub-2)" in result["msg"]
    assert result["ambiguous"] == {"dup": ["pub-1", "pub-2"]}


def test_list_failure_is_reported_with_its_kind(run):
    fake = FakePortal(list_error=PortalError("The API token was refused (401): make a new token.", kind="auth", status=401))
    failed, result = run(fake, clients=labels(2))
    assert failed and result["error"] == {"kind": "auth", "status": 401, "detail": None, "may_have_acted": False}
    assert result["requests"] == 1 and "make a new token" in result["msg"]


# ---------------------------------------------------------------------------
# execution
# ---------------------------------------------------------------------------

def test_create_returns_one_credential_per_new_client_and_rerun_is_a_noop(run):
    fake = FakePortal(rows=[make_row("dev-000", "pub-existing")])
    failed, result = run(fake, clients=labels(4) + [{"label": "sub", "allow_subscribe": True, "allow_publish": False}])
    assert not failed and result["changed"]
    assert sorted(result["credentials"]) == ["dev-001", "dev-002", "dev-003", "sub"]
    for label, cred in result["credentials"].items():
        assert cred["password"] == fake.passwords[cred["client_id"]]
        assert cred["username"] == cred["client_id"] and fake.rows[cred["client_id"]]["label"] == label
        assert cred["publish_topic"] == "acct/%s/" % cred["client_id"]
    assert fake.rows[result["credentials"]["sub"]["client_id"]]["allow_subscribe"] is True
    assert fake.rows[result["credentials"]["sub"]["client_id"]]["allow_publish"] is False
    assert result["counts"] == {"created": 4, "updated": 0, "paused": 0, "resumed": 0, "rotated": 0, "deleted": 0, "unchanged": 1}
    assert [c["label"] for c in result["clients"]] == ["dev-000", "dev-001", "dev-002", "dev-003", "sub"]
    assert not any("password" in c for c in result["clients"])
    assert result["requests"] == 1 + 4 + 1 and fake.pool_size == 8  # list, creates, the list after the writes

    again = FakePortal(rows=fake.rows.values())
    failed, result = run(again, clients=labels(4) + [{"label": "sub", "allow_subscribe": True, "allow_publish": False}])
    assert not failed and not result["changed"] and result["credentials"] == {} and result["actions"] == []
    assert again.writes == 0 and result["counts"]["unchanged"] == 5 and result["requests"] == 1


@pytest.mark.parametrize("parallel", [1, 3])
def test_writes_in_flight_never_exceed_parallel(run, parallel):
    fake = FakePortal(delay=0.03)
    failed, result = run(fake, clients=labels(15), parallel=parallel)
    assert not failed and result["counts"]["created"] == 15
    assert fake.max_in_flight == parallel  # bounded, and (for 3) really concurrent
    assert fake.pool_size == parallel  # one HTTP pool slot per worker


def test_new_paused_client_is_created_then_paused_with_the_new_id(run):
    fake = FakePortal(delay=0.02)
    failed, result = run(fake, clients=labels(10, paused=True), parallel=4)
    assert not failed
    assert fake.max_in_flight > 1
    for item in labels(10):
        create = [c for c in fake.ops("create") if c["label"] == item["label"]]
        pause = [c for c in fake.ops("pause") if c["label"] == item["label"]]
        assert len(create) == 1 and len(pause) == 1
        assert create[0]["end"] <= pause[0]["start"]  # the pause waits for its create
        assert pause[0]["client_id"] == create[0]["client_id"]
        assert fake.rows[create[0]["client_id"]]["paused"] is True
    per_label = {}
    for action in result["actions"]:
        per_label.setdefault(action["label"], []).append((action["action"], action["client_id"]))
    for label, actions in per_label.items():
        assert [a for a, dummy in actions] == ["create", "pause"]
        assert actions[0][1] == actions[1][1] == result["credentials"][label]["client_id"]
    assert result["counts"]["created"] == 10 and result["counts"]["paused"] == 10
    assert all(c["paused"] for c in result["clients"])


def test_purge_deletes_first_and_spares_unmatched_and_kept_labels(run):
    rows = [make_row("dev-old-%d" % i, "pub-old-%d" % i) for i in range(3)]
    rows += [make_row("other-1", "pub-other"), make_row("dev-kept", "pub-kept")]
    fake = FakePortal(rows=rows, delay=0.01)
    failed, result = run(fake, clients=labels(3), purge=True, purge_match="^dev-", keep_labels=["dev-kept"], parallel=4)
    assert not failed
    assert sorted(result["deleted"]) == ["dev-old-0", "dev-old-1", "dev-old-2"]
    assert sorted(r["label"] for r in fake.rows.values()) == ["dev-000", "dev-001", "dev-002", "dev-kept", "other-1"]
    assert max(c["end"] for c in fake.ops("delete")) <= min(c["start"] for c in fake.ops("create"))
    assert result["counts"]["deleted"] == 3 and result["counts"]["created"] == 3


def test_failure_half_way_still_returns_every_password(run):
    fake = FakePortal(delay=0.01, fail_after_creates=7)
    failed, result = run(fake, clients=labels(30), parallel=4)
    assert failed
    assert result["error"]["kind"] == "server" and result["error"]["status"] == 503
    assert "passwords received are in 'credentials'" in result["msg"]
    assert "7 of 30 planned actions were done" in result["msg"]
    assert len(result["credentials"]) == 7 == fake.creates == result["counts"]["created"]
    for label, cred in result["credentials"].items():
        assert fake.passwords[cred["client_id"]] == cred["password"]
        assert fake.rows[cred["client_id"]]["label"] == label
    assert sorted(c["label"] for c in result["clients"]) == sorted(result["credentials"])
    assert result["changed"] is True
    # no new label is started after the first failure: at most the writes in flight then
    assert fake.create_attempts <= 7 + 4


def test_failed_pause_after_create_keeps_the_password(run):
    fake = FakePortal(fail_ops={"pause"})
    failed, result = run(fake, clients=[{"label": "solo", "paused": True}], parallel=1)
    assert failed
    cred = result["credentials"]["solo"]
    assert cred["password"] == fake.passwords[cred["client_id"]]
    assert "while doing pause for 'solo'" in result["msg"]
    assert [a["action"] for a in result["actions"]] == ["create"]


def test_several_failures_are_counted(run):
    fake = FakePortal(rows=[make_row("r-%03d" % i, "pub-r%d" % i) for i in range(6)], delay=0.05, fail_ops={"rotate"})
    failed, result = run(fake, clients=labels(6, prefix="r-"), recover=["r-%03d" % i for i in range(6)], parallel=6)
    assert failed
    assert fake.max_in_flight == 6 and len(fake.ops("rotate")) == 6
    assert "more writes failed at the same time" in result["msg"]
    assert result["credentials"] == {} and result["actions"] == [] and result["changed"] is False


def test_lost_create_answer_is_recovered_by_rotation(run):
    fake = FakePortal(lose_password={"dev-001"})
    failed, result = run(fake, clients=labels(2))
    assert not failed
    cred = result["credentials"]["dev-001"]
    assert cred["password"].startswith("rotated-") and cred["password"] == fake.passwords[cred["client_id"]]
    assert [(a["action"], a["fields"]) for a in result["actions"] if a["label"] == "dev-001"] == [
        ("create", {"allow_publish": True, "allow_subscribe": False}), ("rotate", {"reason": "recover"})]
    assert run.warnings == ["The portal created client %s (dev-001) but its answer was lost; "
                            "rotating to recover a password." % cred["client_id"]]
    assert result["counts"]["rotated"] == 1


def test_update_resume_rotate_and_recover_missing(run):
    rows = [make_row("a", "pub-a", paused=True), make_row("b", "pub-b"), make_row("c", "pub-c"), make_row("d", "pub-d")]
    fake = FakePortal(rows=rows)
    failed, result = run(fake, clients=[{"label": "a", "paused": False}, {"label": "b", "allow_subscribe": True},
                                        {"label": "c"}, {"label": "d"}],
                         rotate=["c"], recover_missing=True, known_labels=["a", "b", "c"])
    assert not failed
    assert sorted(result["credentials"]) == ["c", "d"]  # c rotated on request, d had no stored password
    assert [a["fields"] for a in result["actions"] if a["label"] == "d"] == [{"reason": "recover"}]
    assert result["credentials"]["c"]["rotated_at"] == fake.rows["pub-c"]["rotated_at"]
    assert result["credentials"]["c"]["publish_topic"] == "acct/pub-c/"  # partial rotate answer merged with the row
    assert fake.rows["pub-a"]["paused"] is False and fake.rows["pub-b"]["allow_subscribe"] is True
    assert result["counts"] == {"created": 0, "updated": 1, "paused": 0, "resumed": 1, "rotated": 2, "deleted": 0, "unchanged": 0}


@pytest.mark.parametrize("kind, status", [("timeout", None), ("connection", None), ("server", 502), ("protocol", 200)])
def test_a_rotate_without_a_clean_answer_is_unconfirmed(run, kind, status):
    fake = FakePortal(rows=[make_row("a", "pub-a"), make_row("b", "pub-b")], fail_ops={"rotate"}, fail_kind=(kind, status))
    failed, result = run(fake, clients=[{"label": "a"}, {"label": "b"}], rotate=["b"])
    assert failed and result["unconfirmed"] == ["b"]
    assert "The password of b may have changed" in result["msg"] and "'unconfirmed'" in result["msg"]


@pytest.mark.parametrize("kind, status", [("auth", 401), ("not_found", 404), ("rate_limit", 429), ("validation", 422)])
def test_a_rotate_refused_cleanly_is_not_unconfirmed(run, kind, status):
    fake = FakePortal(rows=[make_row("a", "pub-a")], fail_ops={"rotate"}, fail_kind=(kind, status))
    failed, result = run(fake, clients=[{"label": "a"}], rotate=["a"])
    assert failed and result["unconfirmed"] == [] and "may have changed" not in result["msg"]


def test_a_failed_recovery_rotate_after_a_lost_create_answer_is_unconfirmed(run):
    # Even a clean refusal: the client exists and nobody holds a password of it.
    fake = FakePortal(lose_password={"dev-001"}, fail_ops={"rotate"}, fail_kind=("validation", 422))
    failed, result = run(fake, clients=labels(2), parallel=1)
    assert failed and result["unconfirmed"] == ["dev-001"]
    assert "dev-001" not in result["credentials"] and result["credentials"]["dev-000"]["password"]


def test_a_create_without_a_clean_answer_is_unconfirmed(run):
    fake = FakePortal(fail_after_creates=1)
    failed, result = run(fake, clients=labels(2), parallel=1)
    assert failed and result["unconfirmed"] == ["dev-001"] and sorted(result["credentials"]) == ["dev-000"]


def test_success_has_no_unconfirmed_labels(run):
    failed, result = run(FakePortal(), clients=labels(2), rotate=[])
    assert not failed and result["unconfirmed"] == []


@pytest.mark.parametrize("return_clients, expected", [("all", ["a", "b", "c"]), ("changed", ["b", "c"]), ("none", [])])
def test_return_clients_limits_the_rows_returned(run, return_clients, expected):
    fake = FakePortal(rows=[make_row("a", "pub-a"), make_row("b", "pub-b")])
    failed, result = run(fake, clients=[{"label": "a"}, {"label": "b", "paused": True}, {"label": "c"}],
                         return_clients=return_clients)
    assert not failed and [c["label"] for c in result["clients"]] == expected
    assert result["counts"]["created"] == 1 and result["counts"]["paused"] == 1  # the rest of the result as before
    failed, result = run(FakePortal(rows=fake.rows.values()), check_mode=True, clients=[{"label": "a"}, {"label": "d"}],
                         return_clients=return_clients)
    assert [c["label"] for c in result["clients"]] == {"all": ["a", "d"], "changed": ["d"], "none": []}[return_clients]


def test_absent_items_are_not_accepted_as_fleet_keys(run):
    fake = FakePortal()
    failed, result = run(fake, clients=[{"label": "a", "state": "absent"}])
    assert failed and "clients[0] has unknown keys state" in result["msg"]


# ---------------------------------------------------------------------------
# check mode and diff
# ---------------------------------------------------------------------------

def test_check_mode_sends_no_write_and_predicts(run):
    rows = [make_row("dev-000", "pub-0"), make_row("dev-001", "pub-1"), make_row("dev-stale", "pub-s")]
    fake = FakePortal(rows=rows)
    wanted = labels(4)
    wanted[1]["paused"] = True
    failed, result = run(fake, check_mode=True, diff=True, clients=wanted, purge=True, purge_match="^dev-", rotate=["dev-000"])
    assert not failed and result["changed"] is True
    assert fake.writes == 0 and [c["op"] for c in fake.calls] == ["list"]
    assert result["credentials"] == {}
    assert result["counts"] == {"created": 2, "updated": 0, "paused": 1, "resumed": 0, "rotated": 1, "deleted": 1, "unchanged": 0}
    assert result["deleted"] == ["dev-stale"]
    predicted = dict((c["label"], c) for c in result["clients"])
    assert predicted["dev-001"]["paused"] is True and predicted["dev-002"]["client_id"] is None
    assert "pub-s" in fake.rows
    # the diff shows settings and that a password changes, never a password
    assert result["diff"]["after"]["dev-000"]["password"] == "(new, not shown)"
    assert result["diff"]["before"]["dev-002"] is None
    assert result["diff"]["after"]["dev-001"]["paused"] is True
    assert result["diff"]["after"]["dev-stale"] is None


def test_diff_never_contains_a_password(run):
    fake = FakePortal()
    failed, result = run(fake, diff=True, clients=labels(3))
    assert not failed
    text = json.dumps(result["diff"])
    for cred in result["credentials"].values():
        assert cred["password"] not in text
    assert text.count("(new, not shown)") == 3


def test_credential_derives_publish_topic_from_history_prefix():
    row = make_row("x", "pub-x")
    row["publish_topic"] = None
    row["username"] = None
    cred = mqtt_fleet.credential(row, "secret")
    assert cred == {"client_id": "pub-x", "username": "pub-x", "password": "secret", "publish_topic": "acct/pub-x/",
                    "history_topic_prefix": "acct/pub-x", "rotated_at": "2026-01-01T00:00:00Z"}
    row["history_topic_prefix"] = None
    assert mqtt_fleet.credential(row, "s")["publish_topic"] is None


def test_purge_matcher_searches_and_keeps():
    matcher = mqtt_fleet.PurgeMatcher("site-a", ["x-site-a-keep"])
    assert matcher.search("x-site-a-1")
    assert not matcher.search("x-site-a-keep")
    assert not matcher.search("site-b")


def test_journal_without_the_controller_side_is_refused_before_any_request(run_module, emulator, tmp_path):
    emulator.control.reset_counters()
    failed, result = run_module(mqtt_fleet, clients=[{"label": "a"}], journal=str(tmp_path / "j"))
    assert failed and "controller side" in result["msg"]
    assert emulator.control.counters()["total"] == 0 and not (tmp_path / "j").exists()


def test_module_reconciles_in_batches_with_one_list(run_module, emulator):
    emulator.control.reset_counters()
    failed, result = run_module(mqtt_fleet, clients=[{"label": "b%d" % i} for i in range(5)], batch_size=2)
    assert not failed and result["counts"]["created"] == 5 and result["complete"] is True
    # one list for the plan, whatever the batches, and one after the writes (clients another run created at once)
    assert emulator.control.counters()["by_route"].get("GET /api/v1/subscriber/publishers") == 2


def test_an_unexpected_exception_still_returns_every_password_received(run):
    fake = FakePortal(rows=[make_row("old", "pub-old")])

    def broken_rotate(client_id):
        raise RuntimeError("library bug while talking with %s" % TOKEN)

    fake.rotate_password = broken_rotate
    failed, result = run(fake, clients=[{"label": "new"}, {"label": "old"}], rotate=["old"], parallel=1)
    assert failed and "Unexpected error (RuntimeError" in result["msg"] and TOKEN not in json.dumps(result)
    assert set(result["credentials"]) == {"new"} and result["unconfirmed"] == ["old"]
    assert result["error"]["may_have_acted"] is True


def test_a_password_rotated_elsewhere_is_recovered_and_named(run):
    fake = FakePortal(rows=[make_row("a", "pub-a"), make_row("b", "pub-b")])
    fake.rows["pub-b"]["rotated_at"] = "2026-03-01T00:00:00Z"  # rotated in the portal's UI after we stored it
    failed, result = run(fake, clients=[{"label": "a"}, {"label": "b"}], recover_missing=True, known_labels=["a", "b"],
                         known_rotated_at={"a": "2026-01-01T00:00:00Z", "b": "2026-01-01T00:00:00Z"})
    assert not failed and result["rotated_elsewhere"] == ["b"] and list(result["credentials"]) == ["b"]
    assert [(c["op"], c["label"]) for c in fake.calls if c["op"] != "list"] == [("rotate", "b")]
    assert any("rotated outside this collection" in w for w in run.warnings)
    # the stored rotated_at is the rotation's own: the next run sees nothing to do
    stored = dict((label, c["rotated_at"]) for label, c in result["credentials"].items())
    failed, again = run(fake, clients=[{"label": "a"}, {"label": "b"}], recover_missing=True, known_labels=["a", "b"],
                        known_rotated_at=dict({"a": "2026-01-01T00:00:00Z"}, **stored))
    assert not failed and again["rotated_elsewhere"] == [] and again["actions"] == []


def test_a_rotation_answer_without_rotated_at_stores_none_not_the_old_value(run):
    fake = FakePortal(rows=[make_row("a", "pub-a")])
    real = fake.rotate_password

    def without_rotated_at(client_id):
        partial, password = real(client_id)
        return dict((k, v) for k, v in partial.items() if k != "rotated_at"), password

    fake.rotate_password = without_rotated_at
    failed, result = run(fake, clients=[{"label": "a"}], rotate=["a"])
    assert not failed and result["credentials"]["a"]["rotated_at"] is None


@pytest.mark.parametrize("known", [[], ["elsewhere"]])
def test_recover_missing_refuses_a_store_that_holds_none_of_the_fleet(run, known, monkeypatch):
    monkeypatch.setattr(mqtt_fleet, "claim_labels", lambda *args: None)  # the store claims have their own tests
    fake = FakePortal(rows=[make_row("a", "pub-a"), make_row("b", "pub-b")])
    failed, result = run(fake, clients=[{"label": "a"}, {"label": "b"}], recover_missing=True, known_labels=known,
                         store="/srv/fleet/creds.yml")
    assert failed and result["missing"] == ["a", "b"]
    assert "/srv/fleet/creds.yml holds none of the 2 clients" in result["msg"] and "recover_missing: force" in result["msg"]
    assert [call["op"] for call in fake.calls] == ["list"]  # no write


def test_recover_missing_refuses_a_large_share_missing_but_recovers_a_few(run):
    labels = ["d%02d" % n for n in range(40)]
    fake = FakePortal(rows=[make_row(lb, "pub-" + lb) for lb in labels])
    clients = [{"label": lb} for lb in labels]
    failed, result = run(fake, clients=clients, recover_missing=True, known_labels=labels[11:])
    assert failed and "11 of the 40 clients of this fleet on the portal have no password in known_labels" in result["msg"]
    failed, result = run(fake, clients=clients, recover_missing=True, known_labels=labels[10:])
    assert not failed and result["counts"]["rotated"] == 10


@pytest.mark.parametrize("value", ["force", "Force"])
def test_recover_missing_force_recovers_a_lost_store(run, value):
    fake = FakePortal(rows=[make_row("a", "pub-a"), make_row("b", "pub-b")])
    failed, result = run(fake, clients=[{"label": "a"}, {"label": "b"}], recover_missing=value, known_labels=[])
    assert not failed and sorted(result["credentials"]) == ["a", "b"]


def test_recover_missing_takes_booleans_and_force_only(run):
    failed, result = run(FakePortal(rows=[]), clients=[{"label": "a"}], recover_missing="always", known_labels=[])
    assert failed and "recover_missing must be true, false or force, got 'always'" in result["msg"]
    failed, result = run(FakePortal(rows=[]), clients=[{"label": "a"}], recover_missing="yes", known_labels=[])
    assert not failed  # nothing on the portal: a first run creates, nothing is missing
