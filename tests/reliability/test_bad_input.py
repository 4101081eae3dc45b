"""Bad input, table-driven: every module option and role variable given a wrong type, an empty, overlong,
unicode or path-clashing value. Each must be answered with a clear message naming the option, and the whole
table must cause zero write requests on the portal (emulator counters).

All cases run in ONE ansible-playbook (ignore_errors + register for modules, block/rescue around include_role
for the role); the results are dumped to JSON and judged here, case by case.

Cases where a module accepts what it should refuse are listed in ACCEPTED_BUT_SHOULD_REFUSE with the reason;
the test asserts they still behave that way (a strict xfail per case), so fixing one makes the test say so.
"""
import json

import pytest

pytestmark = pytest.mark.slow  # one playbook, ~100 tasks: 2-7 minutes on 2 busy cores

LONG = "x" * 65
C1 = "dev\u0085one"  # NEL, a C1 control character: the portal's label rule refuses \x7f-\x9f

# (case id, module, args, text the message must contain). Every valid label is prefixed "bad-input-": a write
# made by mistake is visible in the counters and the portal state.
MODULE_CASES = [
    # connection options (shared by every module)
    ("conn-url-scheme", "mqtt_client_info", {"portal_url": "ftp://portal.example"}, "portal_url"),
    ("conn-url-empty", "mqtt_client_info", {"portal_url": ""}, "portal_url"),
    ("conn-token-empty", "mqtt_client_info", {"api_token": ""}, "api_token"),
    ("conn-token-list", "mqtt_client_info", {"api_token": ["a", "b"]}, "api_token"),
    ("conn-validate-certs", "mqtt_client_info", {"validate_certs": "perhaps"}, "validate_certs"),
    ("conn-timeout-type", "mqtt_client_info", {"timeout": "soon"}, "timeout"),
    ("conn-timeout-zero", "mqtt_client", {"label": "bad-input-1", "timeout": 0}, "timeout"),
    ("conn-rlmw-type", "mqtt_client_info", {"rate_limit_max_wait": "long"}, "rate_limit_max_wait"),
    ("conn-rlmw-negative", "mqtt_client", {"label": "bad-input-2", "rate_limit_max_wait": -1}, "rate_limit_max_wait"),
    ("conn-unknown", "mqtt_client_info", {"portal": "x"}, "portal"),
    ("conn-token-dict", "mqtt_client", {"label": "bad-input-13", "api_token": {"a": 1}}, "api_token"),
    ("conn-timeout-huge", "mqtt_client", {"label": "bad-input-14", "timeout": 10 ** 12}, "timeout"),
    ("conn-rlmw-huge", "mqtt_client", {"label": "bad-input-15", "rate_limit_max_wait": 10 ** 12}, "rate_limit_max_wait"),
    ("conn-validate-certs-null", "mqtt_client", {"label": "bad-input-16", "validate_certs": None}, "validate_certs"),
    # mqtt_client
    ("client-none", "mqtt_client", {}, "label"),
    ("client-label-empty", "mqtt_client", {"label": ""}, "label"),
    ("client-label-long", "mqtt_client", {"label": LONG}, "label"),
    ("client-label-long-unicode", "mqtt_client", {"label": "\u2603" * 65}, "label"),
    ("client-label-newline", "mqtt_client", {"label": "bad\ninput"}, "label"),
    ("client-label-c1", "mqtt_client", {"label": C1}, "label"),
    ("client-label-list", "mqtt_client", {"label": ["bad-input-3"]}, "label"),
    ("client-label-dict", "mqtt_client", {"label": {"a": 1}}, "label"),
    ("client-label-int", "mqtt_client", {"label": 7}, "label"),
    ("client-label-null", "mqtt_client", {"label": None}, "label"),
    ("client-label-u2028", "mqtt_client", {"label": "bad-input\u2028x"}, "label"),
    ("client-label-uffff", "mqtt_client", {"label": "bad-input\uffffx"}, "label"),
    ("client-recreate-null", "mqtt_client", {"label": "bad-input-17", "recreate": None}, "recreate"),
    ("client-label-blank", "mqtt_client", {"label": "   "}, "label is blank"),
    ("client-label-padded", "mqtt_client", {"label": "bad-input-20 "}, "whitespace"),
    ("client-pwfile-device", "mqtt_client", {"label": "bad-input-18", "password_file": "/dev/full"}, "password_file"),
    ("client-pwfile-symlink", "mqtt_client", {"label": "bad-input-19", "password_file": "{tmp}/link"}, "password_file"),
    ("client-id-live", "mqtt_client", {"client_id": "live"}, "client_id"),
    ("client-id-live-absent", "mqtt_client", {"client_id": "live", "state": "absent"}, "client_id"),
    ("client-id-slash", "mqtt_client", {"client_id": "pub-1/../live"}, "client_id"),
    ("client-id-empty", "mqtt_client", {"client_id": ""}, "client_id"),
    ("client-id-dotdot", "mqtt_client", {"client_id": "..", "state": "absent"}, "client_id"),
    ("client-id-query", "mqtt_client", {"client_id": "pub-1?x=1", "state": "absent"}, "client_id"),
    ("client-state", "mqtt_client", {"label": "bad-input-4", "state": "gone"}, "state"),
    ("client-allow-publish", "mqtt_client", {"label": "bad-input-5", "allow_publish": "maybe"}, "allow_publish"),
    ("client-allow-subscribe", "mqtt_client", {"label": "bad-input-6", "allow_subscribe": [1]}, "allow_subscribe"),
    ("client-paused", "mqtt_client", {"label": "bad-input-7", "paused": "sometimes"}, "paused"),
    ("client-rotate", "mqtt_client", {"label": "bad-input-8", "rotate_password": "often"}, "rotate_password"),
    ("client-recreate", "mqtt_client", {"label": "bad-input-9", "recreate": "yes please"}, "recreate"),
    ("client-pwfile-nodir", "mqtt_client", {"label": "bad-input-10", "password_file": "/nonexistent-dir/pw"}, "password_file"),
    ("client-pwfile-isdir", "mqtt_client", {"label": "bad-input-11", "password_file": "{tmp}"}, "password_file"),
    ("client-unknown", "mqtt_client", {"label": "bad-input-12", "colour": "red"}, "colour"),
    # mqtt_client_info
    ("cinfo-paused", "mqtt_client_info", {"paused": "x"}, "paused"),
    ("cinfo-id-live", "mqtt_client_info", {"client_id": "live"}, "client_id"),
    ("cinfo-label-long", "mqtt_client_info", {"label": LONG}, "label"),
    ("cinfo-label-list", "mqtt_client_info", {"label": ["a"]}, "label"),
    ("cinfo-id-dotdot", "mqtt_client_info", {"client_id": ".."}, "client_id"),
    # mqtt_subscriber
    ("sub-none", "mqtt_subscriber", {}, "label"),
    ("sub-label-empty", "mqtt_subscriber", {"label": ""}, "label"),
    ("sub-label-long", "mqtt_subscriber", {"label": LONG}, "label"),
    ("sub-label-newline", "mqtt_subscriber", {"label": "bad\ninput"}, "label"),
    ("sub-label-c1", "mqtt_subscriber", {"label": C1}, "label"),
    ("sub-label-list", "mqtt_subscriber", {"label": ["bad-input-s12"]}, "label"),
    ("sub-id-slash", "mqtt_subscriber", {"id": "sub-1/../x"}, "id"),
    ("sub-id-live", "mqtt_subscriber", {"id": "live"}, "id"),
    ("sub-state", "mqtt_subscriber", {"label": "bad-input-s1", "state": "gone"}, "state"),
    ("sub-expires-zero", "mqtt_subscriber", {"label": "bad-input-s2", "expires_in_days": 0}, "expires_in_days"),
    ("sub-expires-big", "mqtt_subscriber", {"label": "bad-input-s3", "expires_in_days": 3651}, "expires_in_days"),
    ("sub-expires-type", "mqtt_subscriber", {"label": "bad-input-s4", "expires_in_days": "month"}, "expires_in_days"),
    ("sub-renew-type", "mqtt_subscriber", {"label": "bad-input-s5", "renew_before_days": "x"}, "renew_before_days"),
    ("sub-renew-ge-expiry", "mqtt_subscriber", {"label": "bad-input-s6", "expires_in_days": 5, "renew_before_days": 5},
     "renew_before_days"),
    ("sub-renew-negative", "mqtt_subscriber", {"label": "bad-input-s7", "renew_before_days": -1}, "renew_before_days"),
    ("sub-regenerate", "mqtt_subscriber", {"label": "bad-input-s8", "regenerate": "x"}, "regenerate"),
    ("sub-expires-null", "mqtt_subscriber", {"label": "bad-input-s13", "expires_in_days": None}, "expires_in_days"),
    ("sub-label-null", "mqtt_subscriber", {"label": None}, "label"),
    ("sub-label-padded", "mqtt_subscriber", {"label": "bad-input-s15 "}, "whitespace"),
    ("sub-pwfile-device", "mqtt_subscriber", {"label": "bad-input-s14", "password_file": "/dev/null"}, "password_file"),
    ("sub-pwfile-nodir", "mqtt_subscriber", {"label": "bad-input-s9", "password_file": "/nonexistent-dir/pw"}, "password_file"),
    ("sub-pwfile-isdir", "mqtt_subscriber", {"label": "bad-input-s10", "password_file": "{tmp}"}, "password_file"),
    ("sub-unknown", "mqtt_subscriber", {"label": "bad-input-s11", "expires": 3}, "expires"),
    # mqtt_subscriber_info
    ("sinfo-label-dict", "mqtt_subscriber_info", {"label": {"a": 1}}, "label"),
    ("sinfo-unknown", "mqtt_subscriber_info", {"labels": ["a"]}, "labels"),
    ("sinfo-label-long", "mqtt_subscriber_info", {"label": LONG}, "label"),
    ("sinfo-id-slash", "mqtt_subscriber_info", {"id": "sub-1/../x"}, "id"),
    # mqtt_fleet
    ("fleet-missing", "mqtt_fleet", {}, "clients"),
    ("fleet-clients-str", "mqtt_fleet", {"clients": "bad-input-f0"}, "clients"),
    ("fleet-item-str", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}, "bad-input-f2"]}, "clients"),
    ("fleet-label-missing", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}, {"allow_publish": True}]}, "clients[1].label"),
    ("fleet-label-empty", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}, {"label": ""}]}, "clients[1].label"),
    ("fleet-label-long", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}, {"label": LONG}]}, "clients[1].label"),
    ("fleet-label-int", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}, {"label": 7}]}, "clients[1].label"),
    ("fleet-label-c1", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}, {"label": C1}]}, "clients[1].label"),
    ("fleet-label-dupe", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}, {"label": "bad-input-f1"}]}, "clients[1].label"),
    ("fleet-item-bool", "mqtt_fleet", {"clients": [{"label": "bad-input-f1", "paused": "sometimes"}]}, "clients[0].paused"),
    ("fleet-item-unknown", "mqtt_fleet", {"clients": [{"label": "bad-input-f1", "colour": "red"}]}, "colour"),
    ("fleet-purge-nomatch", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}], "purge": True}, "purge_match"),
    ("fleet-purge-empty", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}], "purge": True, "purge_match": ""}, "purge_match"),
    ("fleet-purge-blank", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}], "purge": True, "purge_match": " \t"},
     "purge_match"),
    ("fleet-label-null", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}, {"label": None}]}, "clients[1].label"),
    ("fleet-label-blank", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}, {"label": " "}]}, "clients[1].label is blank"),
    ("fleet-label-padded", "mqtt_fleet", {"clients": [{"label": " bad-input-f1"}]}, "clients[0].label"),
    ("fleet-label-u2029", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}, {"label": "a\u2029b"}]}, "clients[1].label"),
    ("fleet-allow-null", "mqtt_fleet", {"clients": [{"label": "bad-input-f1", "allow_publish": None}]}, "clients[0].allow_publish"),
    ("fleet-rotate-null", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}], "rotate": None}, "rotate"),
    ("fleet-timeout-huge", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}], "timeout": 10 ** 12}, "timeout"),
    ("fleet-purge-type", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}], "purge": "all"}, "purge"),
    ("fleet-purge-regex", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}], "purge": True, "purge_match": "("}, "purge_match"),
    ("fleet-rotate-stray", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}], "rotate": ["nope"]}, "rotate"),
    ("fleet-recover-stray", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}], "recover": ["nope"]}, "recover"),
    ("fleet-recover-missing", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}], "recover_missing": True}, "known_labels"),
    ("fleet-parallel-zero", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}], "parallel": 0}, "parallel"),
    ("fleet-parallel-big", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}], "parallel": 33}, "parallel"),
    ("fleet-parallel-type", "mqtt_fleet", {"clients": [{"label": "bad-input-f1"}], "parallel": "many"}, "parallel"),
]

# (case id, role variables, text the message must contain). Valid devices are listed beside the bad value, so a
# run that skipped validation would write.
OK = [{"label": "bad-input-r1"}, {"label": "bad-input-r2"}]
ROLE_CASES = [
    ("role-devices-str", {"fleet_devices": "bad-input-r1"}, "fleet_devices"),
    ("role-devices-nolabel", {"fleet_devices": OK + [{"allow_publish": True}]}, "label"),
    ("role-devices-label-empty", {"fleet_devices": OK + [{"label": ""}]}, "label"),
    ("role-devices-label-long", {"fleet_devices": OK + [{"label": LONG}]}, "label"),
    ("role-devices-dupe", {"fleet_devices": OK + [{"label": "bad-input-r1"}]}, "r1"),
    ("role-devices-paused", {"fleet_devices": OK + [{"label": "bad-input-r3", "paused": "x"}]}, "paused"),
    ("role-devices-u2028", {"fleet_devices": OK + [{"label": "bad-input-r3\u2028"}]}, "label"),
    ("role-purge-blank", {"fleet_devices": OK, "fleet_purge": True, "fleet_purge_match": "  "}, "fleet_purge_match"),
    ("role-devices-unknown-key", {"fleet_devices": OK + [{"label": "bad-input-r3", "colour": "red"}]}, "colour"),
    ("role-store-nodir", {"fleet_devices": OK, "fleet_store": "/nonexistent-dir/creds.yml"}, "/nonexistent-dir"),
    ("role-store-isdir", {"fleet_devices": OK, "fleet_store": "{tmp}"}, "{tmp}"),
    ("role-vault-id", {"fleet_devices": OK, "fleet_vault_id": "nosuch"}, "nosuch"),
    ("role-purge-type", {"fleet_devices": OK, "fleet_purge": "all"}, "fleet_purge"),
    ("role-purge-nomatch", {"fleet_devices": OK, "fleet_purge": True}, "fleet_purge_match"),
    ("role-purge-regex", {"fleet_devices": OK, "fleet_purge": True, "fleet_purge_match": "("}, "purge_match"),
    ("role-rotate-type", {"fleet_devices": OK, "fleet_rotate": {"a": 1}}, "fleet_rotate"),
    ("role-rotate-stray", {"fleet_devices": OK, "fleet_rotate": ["nope"]}, "fleet_rotate"),
    ("role-max-age-type", {"fleet_devices": OK, "fleet_password_max_age_days": "old"}, "fleet_password_max_age_days"),
    ("role-max-age-negative", {"fleet_devices": OK, "fleet_password_max_age_days": -1}, "fleet_password_max_age_days"),
    ("role-max-age-huge", {"fleet_devices": OK, "fleet_password_max_age_days": 1e12}, "fleet_password_max_age_days"),
    ("role-devices-label-blank", {"fleet_devices": OK + [{"label": "  "}]}, "label is blank"),
    ("role-recover-type", {"fleet_devices": OK, "fleet_recover_missing": "x"}, "fleet_recover_missing"),
    ("role-batch-type", {"fleet_devices": OK, "fleet_batch_size": "big"}, "fleet_batch_size"),
    ("role-batch-negative", {"fleet_devices": OK, "fleet_batch_size": -1}, "fleet_batch_size"),
    ("role-parallel-zero", {"fleet_devices": OK, "fleet_parallel": 0}, "fleet_parallel"),
    ("role-parallel-big", {"fleet_devices": OK, "fleet_parallel": 100}, "fleet_parallel"),
    ("role-rlmw-type", {"fleet_devices": OK, "fleet_rate_limit_max_wait": "x"}, "fleet_rate_limit_max_wait"),
    ("role-validate-certs", {"fleet_devices": OK, "fleet_validate_certs": "x"}, "fleet_validate_certs"),
    ("role-url", {"fleet_devices": OK, "fleet_portal_url": "ftp://portal.example"}, "portal_url"),
    ("role-token-empty", {"fleet_devices": OK, "fleet_api_token": ""}, "api_token"),
    # last: a host variable (set_fact), the hosts being the devices
    ("role-label-hostvar-empty", {"_hostvar_fleet_label": ""}, "label"),
]

# What the collection accepts although it should refuse it (found by this test; see docs/reliability.md).
ACCEPTED_BUT_SHOULD_REFUSE = {
}


def unique(case, args):
    """The case's args with its own labels ("bad-input-..." -> "bi-<case>-..."): a write is attributable to it."""
    return json.loads(json.dumps(args).replace("bad-input-", "bi-%s-" % case))


def playbook(tmp):
    tasks = []
    for case, module, args, dummy in MODULE_CASES:
        args = unique(case, json.loads(json.dumps(args).replace("{tmp}", str(tmp))))
        tasks.append({"name": case, "isr.mqtt." + module: args, "register": "r_" + case.replace("-", "_"),
                      "ignore_errors": True, "no_log": module in ("mqtt_client", "mqtt_subscriber", "mqtt_fleet")})
    for case, role_vars, dummy in ROLE_CASES:
        role_vars = unique(case, json.loads(json.dumps(role_vars).replace("{tmp}", str(tmp))))
        var = "r_" + case.replace("-", "_")
        role_vars.setdefault("fleet_store", str(tmp / "store.yml"))
        pre = []
        if "_hostvar_fleet_label" in role_vars:
            pre = [{"name": case + " (host variable)", "ansible.builtin.set_fact": {"fleet_label": role_vars.pop("_hostvar_fleet_label")}}]
        tasks.append({"name": case, "block": pre + [
            {"name": case + " (role)", "ansible.builtin.include_role": {"name": "isr.mqtt.fleet"}, "vars": role_vars},
            {"name": case + " (no failure)", "ansible.builtin.set_fact": {var: {"failed": False, "msg": ""}}},
        ], "rescue": [
            {"name": case + " (failure)", "ansible.builtin.set_fact": {
                var: {"failed": True, "msg": "{{ ansible_failed_result.msg | default('') }}",
                      "task": "{{ ansible_failed_task.name | default('') }}"}}},
        ]})
    names = ["r_" + c[0].replace("-", "_") for c in MODULE_CASES + ROLE_CASES]
    dump = "{{ {%s} | to_json }}" % ", ".join("'%s': {'failed': %s is failed, 'changed': %s is changed, 'msg': %s.msg | default('') | string}"
                                              % (n, n, n, n) for n in names)
    tasks.append({"name": "Dump", "ansible.builtin.copy": {"content": dump, "dest": str(tmp / "results.json"), "mode": "0600"}})
    return [{"name": "Bad input", "hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": tasks}]


def labels_in(args):
    found = []
    for item in [args] + list(args.get("clients") or args.get("fleet_devices") or []) if isinstance(args, dict) else []:
        if isinstance(item, dict) and isinstance(item.get("label"), str):
            found.append(item["label"])
    return found


def judge(case, expected, result, args, portal_labels):
    """None when the case was refused clearly and nothing reached the portal, else what is wrong."""
    created = sorted(set(label for label in labels_in(unique(case, args)) if portal_labels.get(label)))
    if not result["failed"]:
        return "accepted" + (", created %s" % created if created else "")
    msg = result["msg"]
    if "HTTP 422" in msg:
        return "refused by the portal (a write was sent), not by the module: %r" % msg[:200]
    if created:
        return "refused only after a write: created %s" % created
    if "no_log: true" in msg or "output has been hidden" in msg:
        return "refused, but the message is hidden by no_log: %r" % msg[:200]
    if expected.lower() not in msg.lower():
        return "refused without naming %s: %r" % (expected, msg[:300])
    return None


def test_bad_input_is_refused_by_name_with_zero_writes(emulator, tmp_path, run_playbook):
    (tmp_path / "vault-pass").write_text("bad-input-vault\n")
    (tmp_path / "elsewhere").write_text("not a password file\n")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    path = tmp_path / "bad.yml"
    path.write_text(json.dumps(playbook(tmp_path), indent=1))
    emulator.control.reset_counters()
    done = run_playbook(path, "--vault-id", "fleet@%s" % (tmp_path / "vault-pass"), timeout=900,
                        env=dict(emulator.env(), ANSIBLE_PIPELINING="1"))
    assert (tmp_path / "results.json").exists(), done
    results = json.loads((tmp_path / "results.json").read_text())
    counters = emulator.control.counters()  # all tokens, requests without a valid token included
    state = emulator.control.state()

    problems = {}
    for case, dummy, args, expected in MODULE_CASES:
        problem = judge(case, expected, results["r_" + case.replace("-", "_")], args, state["labels"])
        if problem:
            problems[case] = problem
    for case, args, expected in ROLE_CASES:
        problem = judge(case, expected.replace("{tmp}", str(tmp_path)), results["r_" + case.replace("-", "_")], args,
                        state["labels"])
        if problem:
            problems[case] = problem
    print(json.dumps({"problems": problems, "writes": counters["writes"], "labels": state["labels"],
                      "by_route": counters["by_route"]}, indent=1))
    unexpected = dict((k, v) for k, v in problems.items() if k not in ACCEPTED_BUT_SHOULD_REFUSE)
    fixed = sorted(set(ACCEPTED_BUT_SHOULD_REFUSE) - set(problems))
    assert not unexpected, json.dumps(unexpected, indent=1)
    assert not fixed, "now refused clearly, drop from ACCEPTED_BUT_SHOULD_REFUSE: %s" % fixed
    if ACCEPTED_BUT_SHOULD_REFUSE:
        pytest.xfail("known: %s" % ", ".join(sorted(ACCEPTED_BUT_SHOULD_REFUSE)))
    assert counters["writes"] == 0, (counters["by_route"], state["labels"])
