"""Labels a portal changes, odd values, options left out, a password_file on a full disk: real ansible-playbook against
the emulator over real HTTP.

The emulator's dialect `normalize` stores labels trimmed and lower-cased on create (tests/emulator/dialects.py). Against
it every module and the fleet role must make 0 duplicates and lose 0 passwords: the create whose answer names another
label fails with the password kept, and a rerun refuses before any write. Bad labels and odd values are refused by
name before any request (the emulator's counters).
"""
import json
import os
import subprocess

import pytest
import yaml
from ansible.release import __version__ as ansible_core_version

from fleet.test_fleet_role import Fleet
from support import Emulator

CORE_BEFORE_2_19 = tuple(int(part) for part in ansible_core_version.split(".")[:2]) < (2, 19)

VAULT_PASSWORD = "labels-test-vault"
PORTAL = {"portal_url": "{{ lookup('ansible.builtin.env', 'ISR_PORTAL_URL') }}",
          "api_token": "{{ lookup('ansible.builtin.env', 'ISR_PORTAL_TOKEN') }}"}


@pytest.fixture
def normalizing(tmp_path):
    emu = Emulator(tmp_path, extra_args=["--dialect", "normalize"]).start()
    yield emu
    emu.stop()


def task(name, module, args, **extra):
    """A module task that may fail; its result (passwords in plain text under no_log) is dumped for the test."""
    return dict({"name": name, "isr.mqtt." + module: dict(args), "register": name, "ignore_errors": True, "no_log": True},
                **extra)


def run_tasks(run_playbook, tmp_path, emu, tasks, vault=True, env=None):
    """Run ``tasks`` in one play; returns {task name: result} (failed, changed, msg and the module's keys)."""
    dump = "{{ {%s} | to_json }}" % ", ".join("'%s': %s | combine({'failed': %s is failed, 'changed': %s is changed})"
                                              % (t["name"], t["name"], t["name"], t["name"]) for t in tasks)
    out = tmp_path / "results.json"
    play = [{"name": "labels", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "module_defaults": {"group/isr.mqtt.portal": PORTAL},
             "tasks": tasks + [{"name": "dump", "ansible.builtin.copy": {"content": dump, "dest": str(out), "mode": "0600"}}]}]
    path = tmp_path / "labels.yml"
    path.write_text(yaml.safe_dump(play))
    args = []
    if vault:
        (tmp_path / "vault-pass").write_text(VAULT_PASSWORD + "\n")
        args = ["--vault-id", "test@%s" % (tmp_path / "vault-pass")]
    done = run_playbook(path, *args, env=dict(emu.env(), **(env or {})))
    assert out.exists(), done.stdout[-4000:] + done.stderr[-2000:]
    results = json.loads(out.read_text())
    out.unlink()
    return results


def works(emu, username, password):
    return emu.control.verify(username, password)["ok"]


# ------------------------------------------------------------------------------------------- item 2: normalization

def test_mqtt_client_on_a_normalizing_portal_makes_no_duplicate_and_keeps_the_password(normalizing, run_playbook, tmp_path):
    emu = normalizing
    first = run_tasks(run_playbook, tmp_path, emu, [task("create", "mqtt_client", {"label": "Acc-Mixed-1"})], vault=False)
    created = first["create"]
    assert created["failed"] and created["changed"], created
    assert "'acc-mixed-1'" in created["msg"] and "'Acc-Mixed-1'" in created["msg"] and "normalizes" in created["msg"]
    assert created["client"]["label"] == "acc-mixed-1"
    assert works(emu, created["client"]["client_id"], created["password"])  # kept, and it works

    emu.control.reset_counters()
    again = run_tasks(run_playbook, tmp_path, emu, [
        task("rerun", "mqtt_client", {"label": "Acc-Mixed-1"}),
        task("absent", "mqtt_client", {"label": "Acc-Mixed-1", "state": "absent"}),
        task("paused", "mqtt_client", {"label": "ACC-MIXED-1", "paused": True}),
    ], vault=False)
    for name in ("rerun", "absent", "paused"):
        assert again[name]["failed"] and not again[name]["changed"], again[name]
        assert "differs only in letter case" in again[name]["msg"] and "'acc-mixed-1'" in again[name]["msg"], again[name]
        assert again[name]["client_ids"] == [created["client"]["client_id"]]
    counters = emu.control.counters()
    assert counters["writes"] == 0, counters
    assert emu.control.state()["labels"] == {"acc-mixed-1": 1}

    fixed = run_tasks(run_playbook, tmp_path, emu, [task("portal_form", "mqtt_client", {"label": "acc-mixed-1", "paused": True})],
                      vault=False)
    assert fixed["portal_form"]["changed"] and not fixed["portal_form"]["failed"], fixed
    assert emu.control.state()["labels"] == {"acc-mixed-1": 1}


def test_mqtt_fleet_and_subscriber_on_a_normalizing_portal(normalizing, run_playbook, tmp_path):
    emu = normalizing
    first = run_tasks(run_playbook, tmp_path, emu, [
        task("fleet", "mqtt_fleet", {"clients": [{"label": "Site-A"}, {"label": "site-b"}], "parallel": 1}),
        task("reader", "mqtt_subscriber", {"label": "Reader-1"}),
    ], vault=False)
    fleet, reader = first["fleet"], first["reader"]
    assert fleet["failed"] and "'site-a'" in fleet["msg"] and "normalizes" in fleet["msg"], fleet
    credential = fleet["credentials"]["Site-A"]  # kept under the label sent, with the real client_id
    assert works(emu, credential["username"], credential["password"])
    assert reader["failed"] and "'reader-1'" in reader["msg"] and reader["password"], reader
    assert works(emu, reader["subscriber"]["username"], reader["password"])

    emu.control.reset_counters()
    again = run_tasks(run_playbook, tmp_path, emu, [
        task("fleet", "mqtt_fleet", {"clients": [{"label": "Site-A"}, {"label": "site-b"}]}),
        task("reader", "mqtt_subscriber", {"label": "Reader-1"}),
        task("reader_absent", "mqtt_subscriber", {"label": "Reader-1", "state": "absent"}),
    ], vault=False)
    for name in ("fleet", "reader", "reader_absent"):
        assert again[name]["failed"] and "differs only in letter case" in again[name]["msg"], again[name]
    assert emu.control.counters()["writes"] == 0
    state = emu.control.state()
    assert state["labels"] == {"site-a": 1} and state["subscribers"] == 1, state  # parallel 1: the run stopped at Site-A


def test_fleet_role_on_a_normalizing_portal_keeps_the_password_and_never_duplicates(normalizing, tmp_path):
    fleet = Fleet(tmp_path, normalizing)
    wanted = [{"label": "Dev-A"}, {"label": "dev-b"}]
    out = fleet.run(wanted, expect_rc=2, extra={"fleet_parallel": 1})
    assert "'dev-a'" in out and "normalizes" in out, out[-4000:]
    entries = fleet.entries()
    assert works(normalizing, entries["Dev-A"]["username"], entries["Dev-A"]["password"])  # stored under the label sent

    normalizing.control.reset_counters()
    out = fleet.run(wanted, expect_rc=2)
    assert "differs only in letter case" in out, out[-4000:]
    assert normalizing.control.counters()["writes"] == 0
    labels = normalizing.control.state()["labels"]
    assert labels.get("dev-a") == 1 and sum(labels.values()) <= 2, labels

    # The user takes the portal's form. The store holds dev-a's password under "Dev-A" only, so for the store
    # guard the fleet's one client on the portal has no password: refused before any write (fail closed) ...
    renamed = [{"label": "dev-a"}, {"label": "dev-b"}]
    normalizing.control.reset_counters()
    out = fleet.run(renamed, expect_rc=2)
    assert "holds none of the 1 clients" in out and "fleet_recover_missing: force" in out, out[-4000:]
    assert normalizing.control.counters()["writes"] == 0
    # ... and the explicit opt-in gives it a new password: no duplicate, the store works under the portal's form.
    fleet.run(renamed, extra={"fleet_recover_missing": "force"})
    assert normalizing.control.state()["labels"] == {"dev-a": 1, "dev-b": 1}
    fleet.assert_store_matches_portal(["dev-a", "dev-b"])


def test_a_lost_create_answer_on_a_normalizing_portal_is_not_retried(normalizing, run_playbook, tmp_path):
    emu = normalizing
    emu.control.set_faults(drop_after_create=2)
    first = run_tasks(run_playbook, tmp_path, emu, [
        task("client", "mqtt_client", {"label": "Drop-1"}),
        task("fleet", "mqtt_fleet", {"clients": [{"label": "Drop-2"}]}),
    ])
    for name in ("client", "fleet"):
        assert first[name]["failed"] and "Nothing was retried" in first[name]["msg"], first[name]
    assert first["fleet"]["unconfirmed"] == ["Drop-2"]
    assert emu.control.state()["labels"] == {"drop-1": 1, "drop-2": 1}  # one create each, no retry
    emu.control.set_faults()
    recovered = run_tasks(run_playbook, tmp_path, emu, [
        task("client", "mqtt_client", {"label": "drop-1", "rotate_password": True}),
        task("fleet", "mqtt_fleet", {"clients": [{"label": "drop-2"}], "recover": ["drop-2"]}),
    ])
    client, fleet = recovered["client"], recovered["fleet"]["credentials"]["drop-2"]
    assert works(emu, client["client"]["client_id"], client["password"]) and works(emu, fleet["username"], fleet["password"])
    assert emu.control.state()["labels"] == {"drop-1": 1, "drop-2": 1}


def test_blank_and_padded_labels_are_refused_before_any_request(normalizing, run_playbook, tmp_path):
    emu = normalizing
    emu.control.reset_counters()
    results = run_tasks(run_playbook, tmp_path, emu, [
        task("client_padded", "mqtt_client", {"label": "Acc-Mixed-1 "}),
        task("client_blank", "mqtt_client", {"label": "   "}),
        task("client_leading", "mqtt_client", {"label": "  acc"}),
        task("fleet_blank", "mqtt_fleet", {"clients": [{"label": "ok-1"}, {"label": "  "}]}),
        task("fleet_padded", "mqtt_fleet", {"clients": [{"label": " ok-2"}]}),
        task("sub_blank", "mqtt_subscriber", {"label": " "}),
        task("sub_padded", "mqtt_subscriber", {"label": "reader "}),
    ] + ([] if CORE_BEFORE_2_19 else [  # before 2.19 templating turns {{ 7 }} into the string "7", a valid label
        task("client_label_int", "mqtt_client", {"label": "{{ 7 }}"}),
        task("fleet_item_int", "mqtt_fleet", {"clients": ["{{ 7 }}"]}),
    ]))
    expected = {"client_padded": ("whitespace", "'Acc-Mixed-1'"), "client_blank": ("blank", "label"),
                "client_leading": ("whitespace", "'acc'"), "fleet_blank": ("blank", "clients[1].label"),
                "fleet_padded": ("whitespace", "clients[0].label"), "sub_blank": ("label", "empty"),
                "sub_padded": ("whitespace", "'reader'")}
    if not CORE_BEFORE_2_19:
        expected.update({"client_label_int": ("not int", "quote"), "fleet_item_int": ("'clients'", "'int'")})
    for name, words in expected.items():
        result = results[name]
        assert result["failed"] and not result["changed"], (name, result)
        for word in words:
            assert word in result["msg"], (name, word, result["msg"])
        assert "_Ansible" not in result["msg"], result["msg"]
    counters = emu.control.counters()
    assert counters["total"] == 0, counters
    assert emu.control.state()["labels"] == {}


# --------------------------------------------------------------------------- issue 24: options left out

def test_options_left_out_leave_an_existing_client_as_it_is(emulator, run_playbook, tmp_path):
    results = run_tasks(run_playbook, tmp_path, emulator, [
        task("create", "mqtt_client", {"label": "keep-1", "allow_subscribe": True}),
        task("pause_check", "mqtt_client", {"label": "keep-1", "paused": True}, check_mode=True),
        task("pause", "mqtt_client", {"label": "keep-1", "paused": True}),
        task("pause_again", "mqtt_client", {"label": "keep-1", "paused": True}),
        task("no_subscribe", "mqtt_client", {"label": "keep-1", "allow_subscribe": False}),
        task("create_defaults", "mqtt_client", {"label": "keep-2"}),
    ])
    assert results["pause_check"]["actions"] == [{"action": "pause", "label": "keep-1", "client_id": results["create"]["client"]["client_id"],
                                                  "fields": {}}], results["pause_check"]
    pause = results["pause"]
    assert [a["action"] for a in pause["actions"]] == ["pause"], pause
    assert pause["client"]["allow_subscribe"] is True and pause["client"]["allow_publish"] is True
    assert not results["pause_again"]["changed"]
    assert [a["fields"] for a in results["no_subscribe"]["actions"]] == [{"allow_subscribe": False}]  # the example now does it
    assert results["create_defaults"]["client"]["allow_publish"] is True
    assert results["create_defaults"]["client"]["allow_subscribe"] is False


# --------------------------------------------------------------------------- item 11: odd role values

def test_fleet_role_refuses_an_absurd_max_age_by_name_before_any_request(emulator, tmp_path):
    fleet = Fleet(tmp_path, emulator)
    emulator.control.reset_counters()
    for value in (1e12, 10 ** 12, 36501, -1, "1e12"):
        out = fleet.run([{"label": "age-1"}], expect_rc=2, extra={"fleet_password_max_age_days": value})
        # Before 2.19 the role's argument spec (type int) refuses a float or "1e12" first, naming the variable too.
        core_refused = CORE_BEFORE_2_19 and "argument 'fleet_password_max_age_days' is of type" in out
        assert "fleet_password_max_age_days must be a whole number of days from 0" in out or core_refused, out[-3000:]
        assert "OverflowError" not in out and "Traceback" not in out
    assert emulator.control.counters()["total"] == 0


# --------------------------------------------------------------------------- item 9: password_file on a full disk

@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs filled up; yields (mount, free) where free() makes room again."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % done.stderr.strip())
    filler = mount / "filler"
    try:
        fd = os.open(str(filler), os.O_WRONLY | os.O_CREAT, 0o600)  # unbuffered: nothing left to flush on close
        try:
            while True:
                os.write(fd, b"\0" * 1024)
        except OSError:
            pass
        finally:
            os.close(fd)
        yield mount, filler.unlink
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("rescue_fits", [True, False], ids=["rescued", "rescue-also-full"])
def test_password_file_on_a_full_disk_without_vault_secret(emulator, run_playbook, tmp_path, full_disk, rescue_fits):
    mount, free = full_disk
    home = tmp_path / "ansible-home" if rescue_fits else mount / "home"
    if rescue_fits:
        home.mkdir()
    target = mount / "pw"
    # Only the rescue directory lives under ANSIBLE_HOME; Ansible's own temp files stay on a disk with room.
    env = {"ANSIBLE_HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "local-tmp"),
           "ANSIBLE_REMOTE_TEMP": str(tmp_path / "remote-tmp")}
    args = {"label": "disk-1", "password_file": str(target)}
    first = run_tasks(run_playbook, tmp_path, emulator, [task("create", "mqtt_client", args, no_log=False)], vault=False, env=env)["create"]
    assert first["failed"] and first["password"] is None, first
    assert "is returned in 'password'" not in first["msg"] and "No space left on device" in first["msg"], first["msg"]
    if rescue_fits:
        rescued = first["rescued_password_files"]
        assert len(rescued) == 1 and "0600 files instead" in first["msg"]
        assert works(emulator, first["client"]["client_id"], open(rescued[0]).read())
    else:
        assert "is lost" in first["msg"] and "rerun" in first["msg"], first["msg"]

    free()
    again = run_tasks(run_playbook, tmp_path, emulator, [task("rerun", "mqtt_client", args, no_log=False)], vault=False, env=env)["rerun"]
    assert again["changed"] and not again["failed"], again
    assert [(a["action"], a["fields"]) for a in again["actions"]] == [("rotate", {"reason": "recover"})]
    assert works(emulator, first["client"]["client_id"], target.read_text())
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert emulator.control.state()["labels"] == {"disk-1": 1}
