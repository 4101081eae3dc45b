"""Scale benchmark of issue 17: the role's hosts mode against list mode and the full-job reference, a kill in the
middle of a run, and a paced run against a small budget. Not a test: nothing asserts on time.

    python benchmarks/scale.py [--sizes 100,1000] [--repeat 2] [--scenarios reference,list,hosts,hosts_once,hosts_vars,kill,budget]
                               [--large 10000] [--large-scenarios reference,list,hosts_once,hosts_vars,kill,budget] [--no-rerun]

--large sizes run once, in rep 1, with --large-scenarios (the default hosts form of 10000 hosts takes far too long).
Scenarios run interleaved (rep 1 of each, then rep 2 ...) so that load from other processes spreads over all of
them; compare ratios within a rep. Output: benchmarks/output/scale-<stamp>/results.json and a table on stdout.
- reference: benchmarks/full_job.py (requests, 8 threads, one `!vault` per password with a fresh salt, atomic store)
- list: the role with fleet_devices (localhost); hosts: the role with N inventory hosts (fleet_devices empty);
  hosts_once: the same, with run_once: true on the role (its argument validation runs once, not per host);
  hosts_vars: hosts_once with fleet_host_facts false and the isr.mqtt.fleet_store vars plugin serving the store
- kill: the role (fleet_batch_size 100, latency 0.05 s), SIGKILL of its process group at N/2 clients, then a rerun:
  the rerun's rotations are the passwords the kill lost
- budget: the role against a budget of N/2+20 requests per --budget-window seconds: POSTs sent, 429 answers, waits
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (BENCH, PLAYBOOKS, CREATE_ROUTE, Bench, Emulator, bin_path, labels, measure,  # noqa: E402
                 store_entries, verify_store)

ROTATE_ROUTE = "POST /api/v1/subscriber/publishers/{client_id}/rotate-credentials"


class Scale(Bench):
    def __init__(self, args):
        super(Scale, self).__init__(args)
        self.out.rename(self.out.with_name("scale-" + self.out.name))
        self.out = self.out.with_name("scale-" + self.out.name)
        self.vault_file = self.out / "vault-pass"

    def command(self, playbook, workdir, phase, evars, inventory="localhost,"):
        varfile = Path(workdir) / ("vars-%s.json" % phase)
        varfile.write_text(json.dumps(evars))
        return [bin_path("ansible-playbook"), "-i", inventory, str(PLAYBOOKS / playbook), "-e", "@%s" % varfile,
                "--vault-id", "bench@%s" % self.vault_file]

    def role(self, emu, workdir, phase, n, hosts, extra=None):
        store = workdir / "credentials.yml"
        evars = {"fleet_store": str(store), "fleet_rate_limit_max_wait": 3600}
        inventory = "localhost,"
        if hosts:
            inventory = str(workdir / "inventory.ini")
            Path(inventory).write_text("[devices]\n" + "".join("%s\n" % label for label in labels(n))
                                       + "[devices:vars]\nansible_connection=local\n")
        else:
            evars["fleet_devices"] = [{"label": label} for label in labels(n)]
        evars.update(extra or {})
        playbook = {"once": "fleet_hosts_once.yml", "vars": "fleet_hosts_vars.yml", True: "fleet_hosts.yml",
                    False: "fleet_role.yml"}[hosts]
        cmd = self.command(playbook, workdir, phase, evars, inventory)
        env = dict(self.ansible_env(emu, workdir), BENCH_TIMINGS=str(workdir / ("timings-%s.json" % phase)))
        if hosts == "vars":
            env.update(ANSIBLE_VARS_ENABLED="host_group_vars,isr.mqtt.fleet_store", ISR_MQTT_FLEET_STORE=str(store))
        return cmd, env

    def run_one(self, scenario, n, rep):
        workdir = self.out / ("%s-%d-r%d" % (scenario, n, rep))
        workdir.mkdir()
        budget, window = (n // 2 + 20, self.args.budget_window) if scenario == "budget" else (10 ** 9, 3600)
        record = {"scenario": scenario, "n": n, "rep": rep}
        with Emulator(workdir, budget, window) as emu:
            watch = psutil.Process(emu.process.pid)
            if scenario == "reference":
                env = dict(os.environ, ISR_PORTAL_URL=emu.info["portal_url"], ISR_PORTAL_TOKEN=emu.info["token"],
                           VAULT_PASSWORD_FILE=str(self.vault_file))
                cmd = [sys.executable, str(BENCH / "full_job.py"), "--count", str(n), "--store", str(workdir / "credentials.yml")]
                record["create"] = measure(cmd, env, workdir, workdir / "create.log", watch=watch)
            elif scenario in ("list", "hosts", "hosts_once", "hosts_vars", "budget"):
                hosts = {"hosts": True, "hosts_once": "once", "hosts_vars": "vars"}.get(scenario, False)
                cmd, env = self.role(emu, workdir, "create", n, hosts)
                record["create"] = measure(cmd, env, workdir, workdir / "create.log", watch=watch)
                timings = workdir / "timings-create.json"
                if timings.exists():
                    tasks = json.loads(timings.read_text())["tasks"]
                    record["create"]["slowest_tasks"] = sorted(tasks.items(), key=lambda kv: -kv[1]["seconds"])[:5]
                if scenario != "budget" and self.args.rerun:
                    record["create_posts"] = emu.counters()["by_route"].get(CREATE_ROUTE, 0)
                    emu.reset_counters()
                    record["rerun"] = measure(cmd, env, workdir, workdir / "rerun.log", watch=watch)
                    record["rerun"]["requests"] = emu.counters()["total"]
            elif scenario == "kill":
                record.update(self.kill(emu, workdir, n))
            counters = emu.counters()
            record["posts"] = counters["by_route"].get(CREATE_ROUTE, 0)
            record["rotations"] = counters["by_route"].get(ROTATE_ROUTE, 0)
            record["clients"] = emu.clients()
            if scenario == "budget":
                log = Path(record["create"]["log"]).read_text()
                record["refused_429"] = record["posts"] - record["clients"]
                record["wait_lines"] = log.count("rate limit: ")
                record["verify"] = verify_store(workdir / "credentials.yml", emu, labels(n))
            record["stored"] = store_entries(workdir / "credentials.yml")
        self.runs.append(record)
        self.save()
        create = record.get("create") or {}
        print("%-9s N=%-5d r%d wall %7.2fs cpu %7.2fs pss %7.1f MB posts %5d rotations %4d clients %5d stored %5d %s"
              % (scenario, n, rep, create.get("wall", 0), create.get("cpu_s", 0), create.get("tree_pss_mb", 0),
                 record["posts"], record["rotations"], record["clients"], record["stored"],
                 {k: record[k] for k in ("refused_429", "wait_lines", "lost_to_kill", "journaled_at_kill") if k in record}),
              flush=True)
        return record

    def kill(self, emu, workdir, n):
        emu.call("PUT", "/faults", json={"latency_s": 0.05})
        cmd, env = self.role(emu, workdir, "create", n, False, {"fleet_batch_size": 100, "fleet_parallel": 4})
        with open(workdir / "create.log", "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(workdir),
                                    start_new_session=True)
            while emu.clients() < n // 2 and proc.poll() is None:
                time.sleep(0.05)
            # The whole tree: the workers call setsid(), so killing the process group would leave them running.
            tree = [proc.pid] + [child.pid for child in psutil.Process(proc.pid).children(recursive=True)]
            for pid in tree:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            proc.wait()
        time.sleep(0.5)
        emu.call("PUT", "/faults", json={})
        at_kill = emu.clients()
        journal = workdir / "credentials.yml.journal"
        journaled = len(journal.read_text().splitlines()) if journal.exists() else 0
        emu.reset_counters()
        rerun = measure(cmd, env, workdir, workdir / "rerun.log")
        rotations = emu.counters()["by_route"].get(ROTATE_ROUTE, 0)
        state = emu.call("GET", "/state")
        duplicates = sum(count - 1 for count in state["labels"].values() if count > 1)
        return {"create": {"rc": proc.returncode}, "rerun": rerun, "clients_at_kill": at_kill,
                "journaled_at_kill": journaled, "lost_to_kill": rotations, "duplicates": duplicates}


def _notes(record):
    notes = []
    if "lost_to_kill" in record:
        notes.append("portal had %d at the kill, %d journaled; the rerun rotated %d, %d duplicates, %d stored"
                     % (record["clients_at_kill"], record["journaled_at_kill"], record["lost_to_kill"],
                        record["duplicates"], record["stored"]))
    if "refused_429" in record:
        notes.append("%d POSTs, %d answered 429, %d progress lines while waiting, %d of %d passwords verified"
                     % (record["posts"], record["refused_429"], record["wait_lines"], record["verify"].get("verified_ok", 0), record["n"]))
    tasks = (record.get("create") or {}).get("slowest_tasks") or []
    notes.extend("%s %.1f s" % (name.split(" : ")[-1][:40], timing["seconds"]) for name, timing in tasks[:2])
    return "; ".join(notes)


def _median(runs, n, scenario, key="cpu_s"):
    values = [r["create"][key] for r in runs if r["scenario"] == scenario and r["n"] == n and key in (r.get("create") or {})]
    return statistics.median(values) if values else None


def _per_rep(runs, n, scenario, base):
    """The CPU ratio scenario / base within each rep, as text."""
    cpu = dict(((r["scenario"], r["rep"]), r["create"]["cpu_s"]) for r in runs
               if r["n"] == n and "cpu_s" in (r.get("create") or {}))
    reps = sorted(set(rep for dummy, rep in cpu))
    return ", ".join("%.2f" % (cpu[scenario, rep] / cpu[base, rep]) for rep in reps
                     if (scenario, rep) in cpu and (base, rep) in cpu)


def report(runs):
    """A markdown table of every run (rows by size, scenario, rep), then the medians and ratios over the reps."""
    lines = ["| scenario | N | rep | wall s | CPU s | peak PSS tree MB | no-op rerun CPU s | notes |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for record in sorted(runs, key=lambda r: (r["n"], r["scenario"], r["rep"])):
        create, rerun = record.get("create") or {}, record.get("rerun") or {}
        cells = (record["scenario"], record["n"], record["rep"], create.get("wall", rerun.get("wall", 0)),
                 create.get("cpu_s", rerun.get("cpu_s", 0)), create.get("tree_pss_mb", rerun.get("tree_pss_mb", 0)),
                 rerun.get("cpu_s", 0) if "cpu_s" in create else 0, _notes(record))
        lines.append("| %s | %d | %d | %.2f | %.2f | %.1f | %.2f | %s |" % cells)
    lines.append("")
    for n in sorted(set(r["n"] for r in runs)):
        for scenario in ("reference", "list", "hosts", "hosts_once", "hosts_vars"):
            if _median(runs, n, scenario) is not None:
                lines.append("- N=%d %s: median CPU %.2f s, wall %.2f s, peak PSS %.1f MB"
                             % (n, scenario, _median(runs, n, scenario), _median(runs, n, scenario, "wall"),
                                _median(runs, n, scenario, "tree_pss_mb")))
        for scenario, base in [("list", "reference")] + [(hosts, "list") for hosts in ("hosts", "hosts_once", "hosts_vars")]:
            if _median(runs, n, scenario) and _median(runs, n, base):
                lines.append("- N=%d %s / %s, CPU: %.2f of the medians (per rep: %s)"
                             % (n, scenario, base, _median(runs, n, scenario) / _median(runs, n, base),
                                _per_rep(runs, n, scenario, base)))
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--scenarios", default="reference,list,hosts,hosts_once,hosts_vars,kill,budget")
    parser.add_argument("--large", default="", help="sizes run in rep 1 only, with --large-scenarios")
    parser.add_argument("--large-scenarios", default="reference,list,hosts_once,hosts_vars,kill,budget")
    parser.add_argument("--budget-window", type=float, default=60)
    parser.add_argument("--render", metavar="RESULTS_JSON", help="only print the report of an earlier run")
    parser.add_argument("--no-rerun", dest="rerun", action="store_false", help="skip the no-op reruns of list and hosts")
    args = parser.parse_args(argv)
    if args.render:
        print(report(json.loads(Path(args.render).read_text())["runs"]))
        return 0
    # Bench's attributes used by the helpers
    bench = Scale(args)
    plan = [(int(size), args.scenarios.split(",")) for size in args.sizes.split(",") if size]
    large = [(int(size), args.large_scenarios.split(",")) for size in args.large.split(",") if size]
    for rep in range(1, args.repeat + 1):
        for n, scenarios in plan + (large if rep == 1 else []):
            for scenario in scenarios:
                bench.run_one(scenario, n, rep)
    print("results: %s" % (bench.out / "results.json"))
    (bench.out / "results.md").write_text(report(bench.runs))
    print(report(bench.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
