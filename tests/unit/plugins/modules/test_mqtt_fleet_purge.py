# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""mqtt_fleet: the purge stays inside the fleet's own naming and under purge_max (issue 23 item 1), and a run sees
clients another run created or rotated at the same time (issue 23 item 7). In memory, with test_mqtt_fleet's fake."""

from __future__ import annotations

import json

import pytest

from ansible_collections.isr.mqtt.plugins.module_utils._portal import PortalError
from ansible_collections.isr.mqtt.plugins.modules import mqtt_fleet
# run: the fixture the tests below use
from test_mqtt_fleet import FakePortal, labels, make_row, run  # noqa: F401  pylint: disable=unused-import

# Every pattern issue 23 found deleting all foreign clients, and more of the same kind.
EVERYTHING = [".*", "^", "$", ".", "(?:)", "|", r"\S*", "x?", r"[\s\S]*", r"\A", "^.*", "dev-|", "^dev-|x", "(?i)^dev-",
              "(?m)^dev-", "^[dx]ev-", "^d?ev-", "^(dev)-", "dev-", "^other-", r"\Aother", "^.dev"]


def foreign_and_fleet():
    """3 clients of the fleet (dev-), 10 of others: a purge may only ever touch dev- labels."""
    rows = [make_row("dev-%03d" % i, "pub-dev-%d" % i) for i in range(3)]
    rows += [make_row("other-%d" % i, "pub-other-%d" % i) for i in range(7)]
    rows += [make_row("x", "pub-x"), make_row("d", "pub-d"), make_row("dev", "pub-dev")]
    return rows


@pytest.mark.parametrize("pattern", EVERYTHING)
def test_a_pattern_outside_the_fleets_naming_is_refused_before_any_request(run, pattern):
    fake = FakePortal(rows=foreign_and_fleet())
    failed, result = run(fake, clients=labels(2), purge=True, purge_match=pattern)
    assert failed and fake.calls == [] and len(fake.rows) == 13
    assert "purge_match" in result["msg"] and "purge_allow_foreign: true" in result["msg"] and "fleet_purge_allow_foreign" in result["msg"]
    assert "nothing was changed" in result["msg"]


def test_the_refusal_suggests_the_prefix_the_fleet_shares(run):
    failed, result = run(FakePortal(), clients=[{"label": "site-alpha.01"}, {"label": "site-alpha.02"}], purge=True, purge_match=".*")
    assert failed and r"'^site-alpha\\.0'" in result["msg"]


@pytest.mark.parametrize("pattern, prefix", [
    ("^dev-", "dev-"), (r"\Adev-", "dev-"), (r"^dev-\d+$", "dev-"), ("^dev-0?", "dev-"), (r"^site\.a", "site.a"),
    ("^d(?:x)", "dx"), ("^[d]", "d"), ("^dev-(a|b)", "dev-"), ("(?x)^ dev -", "dev-"),
    (".*", ""), ("^", ""), ("dev-", ""), ("^[dx]", ""), ("^a|^b", ""), ("(?i)^dev", ""), ("(?m)^dev", ""), ("^d?", ""), ("(", ""),
])
def test_purge_prefix_is_the_literal_text_after_the_anchor(pattern, prefix):
    assert mqtt_fleet.purge_prefix(pattern) == prefix


@pytest.mark.parametrize("pattern", ["^dev-", r"\Adev-0", r"^dev-\d{3}$", "^dev-.*"])
def test_a_pattern_in_the_fleets_naming_purges_only_its_labels(run, pattern):
    fake = FakePortal(rows=foreign_and_fleet())
    failed, result = run(fake, clients=labels(2), purge=True, purge_match=pattern)
    assert not failed, result["msg"]
    assert result["purged"] == [{"label": "dev-002", "client_id": "pub-dev-2"}] and result["deleted"] == ["dev-002"]
    assert sorted(r["label"] for r in fake.rows.values() if not r["label"].startswith("dev-")) == \
        ["d", "dev", "other-0", "other-1", "other-2", "other-3", "other-4", "other-5", "other-6", "x"]


def test_keep_labels_count_as_the_fleets_naming(run):
    fake = FakePortal(rows=[make_row("batch2-9", "pub-9"), make_row("batch2-1", "pub-1")])
    failed, result = run(fake, clients=labels(1), purge=True, purge_match="^batch2-", keep_labels=["batch2-1"])
    assert not failed, result["msg"]
    assert result["purged"] == [{"label": "batch2-9", "client_id": "pub-9"}]


def test_purge_allow_foreign_opens_any_pattern_but_purge_max_still_holds(run):
    fake = FakePortal(rows=foreign_and_fleet() + [make_row("other-7", "pub-other-7")])
    failed, result = run(fake, clients=labels(3), purge=True, purge_match=".*", purge_allow_foreign=True)
    assert failed and fake.writes == 0 and len(fake.rows) == 14 and len(result["would_purge"]) == 11
    fake = FakePortal(rows=foreign_and_fleet())
    failed, result = run(fake, clients=labels(3), purge=True, purge_match=".*", purge_allow_foreign=True)
    assert not failed, result["msg"]
    assert len(result["purged"]) == 10  # purge_max (10) may be reached
    assert sorted(r["label"] for r in fake.rows.values()) == ["dev-000", "dev-001", "dev-002"]


def test_more_than_purge_max_fails_before_any_write_and_names_every_row(run):
    rows = [make_row("dev-old-%02d" % i, "pub-old-%d" % i) for i in range(12)]
    fake = FakePortal(rows=rows)
    failed, result = run(fake, clients=labels(2), purge=True, purge_match="^dev-")  # 2 creates wait behind it
    assert failed and fake.writes == 0 and len(fake.rows) == 12
    assert "purge would delete 12 clients, more than purge_max (10)" in result["msg"]
    assert "set purge_max to 12 (role: fleet_purge_max)" in result["msg"] and "nothing was changed" in result["msg"]
    for i in range(12):
        assert "dev-old-%02d (pub-old-%d)" % (i, i) in result["msg"]
    assert sorted(r["client_id"] for r in result["would_purge"]) == sorted("pub-old-%d" % i for i in range(12))

    failed, result = run(fake, check_mode=True, clients=labels(2), purge=True, purge_match="^dev-")
    assert failed and "purge_max" in result["msg"] and fake.writes == 0  # check mode says what the real run would do

    failed, result = run(fake, clients=labels(2), purge=True, purge_match="^dev-", purge_max=12)
    assert not failed and len(result["purged"]) == 12 and result["counts"]["created"] == 2


def test_purge_max_zero_refuses_any_delete_and_negative_is_bad_input(run):
    fake = FakePortal(rows=[make_row("dev-old", "pub-old")])
    failed, result = run(fake, clients=labels(1), purge=True, purge_match="^dev-", purge_max=0)
    assert failed and fake.writes == 0 and "dev-old (pub-old)" in result["msg"]
    failed, result = run(fake, clients=labels(1), purge=True, purge_match="^dev-", purge_max=-1)
    assert failed and fake.calls[1:] == [] and "purge_max must be 0" in result["msg"]


def test_check_mode_and_diff_show_the_rows_a_purge_would_delete(run):
    fake = FakePortal(rows=[make_row("dev-000", "pub-0"), make_row("dev-old", "pub-a"), make_row("dev-twice", "pub-b"),
                            make_row("dev-twice", "pub-c"), make_row("other", "pub-o")])
    failed, result = run(fake, check_mode=True, diff=True, clients=labels(1), purge=True, purge_match="^dev-")
    assert not failed and fake.writes == 0
    assert sorted(r["client_id"] for r in result["purged"]) == ["pub-a", "pub-b", "pub-c"]
    assert result["diff"]["before"]["dev-old"]["client_id"] == "pub-a" and result["diff"]["after"]["dev-old"] is None
    assert sorted(r["client_id"] for r in result["diff"]["before"]["dev-twice"]) == ["pub-b", "pub-c"]
    assert "other" not in result["diff"]["before"]


# ---------------------------------------------------------------------------
# another run at the same time (two stores, two lock dirs, two controllers)
# ---------------------------------------------------------------------------

class RacingPortal(FakePortal):
    """Another run works the same fleet: it creates a client of ``twin_labels`` right after ours, and rotates the
    clients of ``rotated_after`` again right after our rotation."""

    def __init__(self, twin_labels=(), rotated_after=(), relist_error=None, **kwargs):
        super(RacingPortal, self).__init__(**kwargs)
        self.twin_labels, self.rotated_after, self.relist_error = set(twin_labels), set(rotated_after), relist_error
        self.lists = 0

    def list_clients(self):
        self.lists += 1
        if self.lists > 1 and self.relist_error:
            raise self.relist_error
        return super(RacingPortal, self).list_clients()

    def create_client(self, label, **kwargs):
        answer = super(RacingPortal, self).create_client(label, **kwargs)
        if label in self.twin_labels:
            with self.lock:
                self.rows["pub-twin-" + label] = make_row(label, "pub-twin-" + label)
        return answer

    def rotate_password(self, client_id):
        answer = super(RacingPortal, self).rotate_password(client_id)
        if self.rows[client_id]["label"] in self.rotated_after:
            with self.lock:
                self.rows[client_id]["rotated_at"] = "2027-01-01T00:00:00Z"  # later than any of ours
        return answer


def test_a_client_another_run_created_at_the_same_time_fails_the_run_naming_it(run):
    fake = RacingPortal(twin_labels=["dev-001"])
    failed, result = run(fake, clients=labels(3))
    assert failed and fake.lists == 2
    ours = result["credentials"]["dev-001"]["client_id"]
    assert result["duplicates"] == {"dev-001": sorted([ours, "pub-twin-dev-001"])}
    assert "dev-001 (" in result["msg"] and "%s created by this run" % ours in result["msg"] and "pub-twin-dev-001" in result["msg"]
    assert "One fleet needs one credential store" in result["msg"]
    # nothing received is lost: every password is in the failure result, and they are the portal's
    assert sorted(result["credentials"]) == ["dev-000", "dev-001", "dev-002"]
    for cred in result["credentials"].values():
        assert cred["password"] == fake.passwords[cred["client_id"]]
    assert result["requests"] == 1 + 3 + 1 and result["counts"]["created"] == 3


def test_a_password_rotated_again_by_another_run_is_unconfirmed_and_fails_the_run(run):
    rows = [make_row("dev-000", "pub-0"), make_row("dev-001", "pub-1")]
    fake = RacingPortal(rows=rows, rotated_after=["dev-001"])
    failed, result = run(fake, clients=labels(2), rotate=["dev-000", "dev-001"])
    assert failed and result["unconfirmed"] == ["dev-001"] and result["duplicates"] == {}
    assert "dev-001 were rotated again" in result["msg"] and sorted(result["credentials"]) == ["dev-000", "dev-001"]


@pytest.mark.parametrize("error", [PortalError("The portal failed (server): try again later.", kind="server", status=503),
                                   KeyError("label")])
def test_the_list_after_the_writes_failing_only_warns(run, error):
    fake = RacingPortal(relist_error=error)
    failed, result = run(fake, clients=labels(2))
    assert not failed and sorted(result["credentials"]) == ["dev-000", "dev-001"]
    assert any("Could not list the portal again" in w for w in run.warnings)


def test_no_list_after_a_run_that_received_no_password(run):
    fake = RacingPortal(rows=[make_row("dev-000", "pub-0"), make_row("dev-old", "pub-old")])
    failed, result = run(fake, clients=labels(1), purge=True, purge_match="^dev-")
    assert not failed and fake.lists == 1 and result["purged"] == [{"label": "dev-old", "client_id": "pub-old"}]


def test_labels_held_twice_before_the_run_fail_before_any_write_naming_them(run):
    fake = FakePortal(rows=[make_row("dev-000", "pub-a"), make_row("dev-000", "pub-b")])
    failed, result = run(fake, clients=labels(2))
    assert failed and fake.writes == 0 and result["duplicates"] == {"dev-000": ["pub-a", "pub-b"]}
    assert "dev-000 (pub-a, pub-b)" in result["msg"] and "keep one store per fleet" in result["msg"]
    assert "password" not in json.dumps(result.get("credentials") or {})


def test_an_empty_fleet_is_torn_down_by_its_literal_prefix_only(run):
    fake = FakePortal(rows=foreign_and_fleet())
    failed, result = run(fake, clients=[], purge=True, purge_match=".*")
    assert failed and fake.calls == []
    failed, result = run(fake, clients=[], purge=True, purge_match="^dev-")
    assert not failed and sorted(r["label"] for r in result["purged"]) == ["dev-000", "dev-001", "dev-002"]
    assert len(fake.rows) == 10


def test_recovering_passwords_the_caller_does_not_hold_warns_that_another_store_loses_them(run):
    fake = FakePortal(rows=[make_row("dev-000", "pub-0"), make_row("dev-001", "pub-1")])
    failed, result = run(fake, clients=labels(2), recover_missing=True, known_labels=["dev-001"])
    assert not failed and sorted(result["credentials"]) == ["dev-000"]
    assert any("Rotating 1 clients whose password the caller does not hold (recover_missing): dev-000" in w
               and "another credential store" in w for w in run.warnings)
