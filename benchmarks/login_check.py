"""Benchmark (not a test): wall time of isr.mqtt.mqtt_login_check for N credentials against a local Mosquitto.

    python benchmarks/login_check.py [--count 1000] [--parallel 16,64] [--action connect,publish] [--repeat 1]

The N logins are written straight into Mosquitto's dynamic-security file before the broker starts (the emulator's
broker sync rewrites that file on every change, ~0.1 s per client at 1000 clients), with the same ACLs as the
emulator gives devices. Each measurement is one real `ansible-playbook` run of one mqtt_login_check task with the
N credentials (read from a 0600 vars file in a temp directory, deleted at the end); the task's own wall time comes
from the benchmark timer callback, the playbook's from the clock. Prints one JSON line per run.
"""
import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

from support import ansible_env, bin_path  # noqa: E402  (puts the collection on the path)
from emulator.broker import Broker, _device_acls, _hashed, _role  # noqa: E402

ACCOUNT = "bench-account"
PLAYBOOK = """
- name: Check N logins
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: mqtt_login_check
      isr.mqtt.mqtt_login_check:
        host: 127.0.0.1
        port: "{{ port }}"
        action: "{{ action }}"
        parallel: "{{ parallel }}"
        timeout: 10
        credentials: "{{ creds }}"
      register: checked
    - name: Counts
      ansible.builtin.debug:
        msg: "COUNTS {{ checked.counts | to_json }}"
"""


class SeededBroker(Broker):
    """A broker whose dynamic-security file already holds the benchmark's logins."""

    def __init__(self, workdir, logins):
        super(SeededBroker, self).__init__(workdir)
        self.logins = logins

    def _initial_dynsec(self):
        data = super(SeededBroker, self)._initial_dynsec()
        for username, password in self.logins:
            data["clients"].append(dict({"username": username, "roles": [{"rolename": _role(username)}]}, **_hashed(password)))
            data["roles"].append({"rolename": _role(username), "acls": _device_acls(ACCOUNT, username, True, False)})
        return data


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--parallel", default="16,64")
    parser.add_argument("--action", default="connect,publish")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="isr-login-bench-"))
    os.chmod(work, 0o700)
    logins = [("bench-%05d" % i, secrets.token_urlsafe(24)) for i in range(args.count)]
    broker = SeededBroker(work / "broker", logins).start()
    try:
        creds = [{"label": u, "username": u, "password": p, "topic": "%s/%s/bench" % (ACCOUNT, u)} for u, p in logins]
        varfile = work / "creds.json"
        fd = os.open(str(varfile), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"creds": creds}, handle)
        (work / "check.yml").write_text(PLAYBOOK)
        for action in args.action.split(","):
            for parallel in (int(p) for p in args.parallel.split(",")):
                for dummy in range(args.repeat):
                    timings = work / "timings.json"
                    env = ansible_env({"ANSIBLE_CALLBACKS_ENABLED": "bench_timer",
                                       "ANSIBLE_CALLBACK_PLUGINS": str(BENCH / "callback_plugins"),
                                       "BENCH_TIMINGS": str(timings)})
                    cmd = [bin_path("ansible-playbook"), "-i", "localhost,", str(work / "check.yml"), "-e", "@%s" % varfile,
                           "-e", json.dumps({"port": broker.port, "action": action, "parallel": parallel})]
                    started = time.monotonic()
                    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=1800)
                    wall = time.monotonic() - started
                    counts = next((line.split("COUNTS ", 1)[1].rstrip('"') for line in done.stdout.splitlines()
                                   if "COUNTS " in line), None)
                    task = json.loads(timings.read_text())["tasks"].get("mqtt_login_check", {}) if timings.exists() else {}
                    print(json.dumps({"credentials": args.count, "action": action, "parallel": parallel, "rc": done.returncode,
                                      "task_s": round(task.get("seconds", 0), 2), "playbook_s": round(wall, 1),
                                      "counts": counts and json.loads(counts.replace('\\"', '"')),
                                      "load1": round(os.getloadavg()[0], 1)}), flush=True)
                    if done.returncode:
                        print(done.stdout[-3000:] + done.stderr[-2000:], file=sys.stderr)
    finally:
        broker.stop()
        for path in sorted(work.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        work.rmdir()


if __name__ == "__main__":
    main()
