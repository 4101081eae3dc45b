"""Hypothesis properties of the planner (plugins/module_utils/_plan.py).

- applying the plan (apply_action) to the current state yields the desired state;
- planning the desired state again yields nothing (idempotence);
- check-mode counts equal real counts: FleetPlan.counts (what check mode reports) equals the number of actions of
  each kind (what a real run counts with count_actions over the actions it did);
- plan_fleet with purge/purge_match never deletes a client whose label does not match, nor one the fleet wants.
"""
import itertools
import re
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.isr.mqtt.plugins.module_utils._plan import (
    ACTION_COUNT_KEYS, apply_action, apply_actions, plan_client, plan_fleet)
from ansible_collections.isr.mqtt.plugins.module_utils._plan import count_actions as module_count

LABELS = ["a", "b", "c", "site-1", "site-2", "site-10", "x/y", "..", "\u00fcn\u00efc\u00f8d\u00e9", "live"]
PATTERNS = [None, "^site-", "^site-1$", "a", "^(a|b)$", "\\.\\.", "zzz"]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_ids = itertools.count()


def new_id():
    return "pub-%012x" % next(_ids)


def row_strategy(label=st.sampled_from(LABELS)):
    return st.builds(lambda label, pub, sub, paused: {
        "client_id": new_id(), "label": label, "username": None, "topic": None, "paused": paused,
        "allow_publish": pub, "allow_subscribe": sub, "history_topic_prefix": None, "publish_topic": None,
        "created_at": None, "rotated_at": None}, label, st.booleans(), st.booleans(), st.booleans())


def desired_strategy(label=st.sampled_from(LABELS), absent=True):
    return st.fixed_dictionaries({
        "label": label,
        "state": st.sampled_from(["present", "absent"]) if absent else st.just("present"),
        "allow_publish": st.booleans(),
        "allow_subscribe": st.booleans(),
        "paused": st.sampled_from([None, True, False]),
        "rotate": st.booleans(),
    })


def expected_row(desired, current):
    """What the client must look like after the plan."""
    paused = desired["paused"] if desired["paused"] is not None else bool(current and current["paused"])
    return {"label": desired["label"], "allow_publish": desired["allow_publish"],
            "allow_subscribe": desired["allow_subscribe"], "paused": paused}


def view(row):
    return None if row is None else dict((k, row[k]) for k in ("label", "allow_publish", "allow_subscribe", "paused"))


def assert_counts_match(actions, counts):
    by_kind = Counter(ACTION_COUNT_KEYS[a["action"]] for a in actions)
    for key in ACTION_COUNT_KEYS.values():
        assert counts[key] == by_kind.get(key, 0), (key, counts, by_kind)


# -- plan_client -------------------------------------------------------------------------------------

@SETTINGS
@given(desired=desired_strategy(), current=st.one_of(st.none(), row_strategy()), recreate=st.booleans())
def test_plan_client_reaches_the_desired_state_and_is_then_idempotent(desired, current, recreate):
    if current is not None:
        current = dict(current, label=desired["label"])
    actions = plan_client(desired, current, recreate=recreate)
    after = apply_actions(current, actions)
    if desired["state"] == "absent":
        assert after is None
        assert plan_client(desired, after) == []
        return
    assert view(after) == expected_row(desired, current)
    # Rotation: exactly when asked for on an existing client (a create brings a password anyway); always last.
    rotates = [a for a in actions if a["action"] == "rotate"]
    kinds = [a["action"] for a in actions]
    if current is not None and desired["rotate"] and "create" not in kinds:
        assert len(rotates) == 1 and actions[-1]["action"] == "rotate"
    else:
        assert rotates == []
    # Again, with the password already rotated: nothing to do.
    assert plan_client(dict(desired, rotate=False), after) == []


@SETTINGS
@given(desired=desired_strategy(absent=False), current=row_strategy())
def test_recreate_without_patch_keeps_the_pause_state(desired, current):
    current = dict(current, label=desired["label"])
    actions = plan_client(desired, current, recreate=True)
    if any(a["action"] == "update" for a in actions):
        raise AssertionError("recreate=True must not plan an update: %r" % actions)
    assert view(apply_actions(current, actions)) == expected_row(desired, current)


# -- plan_fleet --------------------------------------------------------------------------------------

def simulate(rows, actions):
    """Apply a fleet plan's actions in order to a portal state {client_id: row}."""
    state = dict((row["client_id"], dict(row)) for row in rows)
    created = {}
    for action in actions:
        kind, cid = action["action"], action["client_id"]
        if kind == "create":
            cid = new_id()
            state[cid] = dict(apply_action(None, action), client_id=cid)
            created[action["label"]] = cid
            continue
        if cid is None:  # a pause after a create: the executor fills in the id the create returned
            cid = created[action["label"]]
        assert cid in state, "action on a client that does not exist: %r" % action
        assert state[cid]["label"] == action["label"], action
        after = apply_action(state[cid], action)
        if after is None:
            del state[cid]
        else:
            state[cid] = after
    return list(state.values())


fleet_args = dict(
    desired=st.lists(desired_strategy(), unique_by=lambda d: d["label"], max_size=len(LABELS)),
    rows=st.lists(row_strategy(), max_size=14),
    purge=st.booleans(),
    pattern=st.sampled_from(PATTERNS),
    rotate=st.lists(st.sampled_from(LABELS), max_size=3),
    recover=st.lists(st.sampled_from(LABELS), max_size=3),
)


@SETTINGS
@given(**fleet_args)
def test_plan_fleet_reaches_the_desired_state_counts_match_and_replanning_is_empty(
        desired, rows, purge, pattern, rotate, recover):
    for item in desired:
        item["rotate"] = False  # rotation comes through the rotate= list here
    plan = plan_fleet(desired, rows, purge=purge, purge_match=pattern, rotate=rotate, recover=recover)

    # Check-mode counts (plan.counts) == real counts (count_actions over the same actions, done one by one).
    assert_counts_match(plan.actions, plan.counts)
    real = module_count(plan.actions)
    assert dict((k, plan.counts[k]) for k in real) == real
    touched = set(a["label"] for a in plan.actions)
    assert plan.counts["unchanged"] == len(plan.unchanged_labels)
    assert not (set(plan.unchanged_labels) & touched)
    assert plan.changed == bool(plan.actions)
    deletes_seen = False
    for action in plan.actions:  # deletes first
        if action["action"] != "delete":
            deletes_seen = True
        else:
            assert not deletes_seen, "a delete after another action: %r" % plan.actions

    final = simulate(rows, plan.actions)
    by_label = {}
    for row in final:
        by_label.setdefault(row["label"], []).append(row)
    before = {}
    for row in rows:
        before.setdefault(row["label"], []).append(row)
    wanted = dict((d["label"], d) for d in desired)
    for label in LABELS:
        now, then = by_label.get(label, []), before.get(label, [])
        if label in plan.ambiguous:
            assert sorted(r["client_id"] for r in now) == sorted(r["client_id"] for r in then)  # untouched
            assert plan.ambiguous[label] == sorted(r["client_id"] for r in then)
        elif label in wanted and wanted[label]["state"] == "absent":
            assert now == []
        elif label in wanted:
            assert len(now) == 1
            assert view(now[0]) == expected_row(wanted[label], then[0] if then else None)
        elif purge and (pattern is None or re.search(pattern, label)):
            assert now == []
        else:
            assert now == then  # not ours: untouched
    # rotate / recover: one rotation per existing, unambiguous, present label asked for; none for new ones.
    for label in set(rotate) | set(recover):
        rotations = [a for a in plan.actions if a["action"] == "rotate" and a["label"] == label]
        existing = len(before.get(label, [])) == 1
        present = label in wanted and wanted[label]["state"] == "present"
        assert len(rotations) == (1 if existing and present else 0), (label, plan.actions)
        if rotations and label not in rotate:
            assert rotations[0]["fields"] == {"reason": "recover"}

    again = plan_fleet(desired, final, purge=purge, purge_match=pattern)
    assert again.actions == [], again.actions
    assert again.ambiguous == plan.ambiguous


@SETTINGS
@given(desired=fleet_args["desired"], rows=fleet_args["rows"], pattern=st.sampled_from([p for p in PATTERNS if p]),
       compiled=st.booleans())
def test_purge_never_deletes_a_label_that_does_not_match(desired, rows, pattern, compiled):
    plan = plan_fleet(desired, rows, purge=True, purge_match=re.compile(pattern) if compiled else pattern)
    absent = set(d["label"] for d in desired if d["state"] == "absent")
    present = set(d["label"] for d in desired if d["state"] == "present")
    for action in plan.actions:
        if action["action"] == "delete":
            assert action["label"] not in present
            assert action["label"] in absent or re.search(pattern, action["label"]), (pattern, action)
