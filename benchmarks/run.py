"""Fleet benchmark: N new devices against the emulator on 127.0.0.1, five ways, plus each no-op rerun.

    python benchmarks/run.py [--sizes 100,1000,10000] [--repeat 3] [--slow-repeat 1]
                             [--scenarios plain,mqtt_fleet,role,mqtt_client,uri,ratelimit] [--update-doc]

Not a test: nothing asserts on wall time. Every run gets a fresh emulator (SQLite file DB in its run
directory, hourly budget 10^9 unless the scenario says otherwise). Output: benchmarks/output/<run-id>/
(logs, emulator DBs, stores), results.json (every run) and results.md (the table); --update-doc puts the
table into docs/performance.md between its markers. See docs/performance.md for what each column means.
"""
import argparse
import datetime
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests
import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PLAYBOOKS = BENCH / "playbooks"
OUTPUT = BENCH / "output"
VAULT_PASSWORD = "benchmark-vault-password"
HIGH_BUDGET = 10 ** 9
PER_DEVICE_GET = "GET /api/v1/subscriber/publishers/{client_id}"
CREATE_ROUTE = "POST /api/v1/subscriber/publishers"
LIST_ROUTE = "GET /api/v1/subscriber/publishers"
DOC = REPO / "docs" / "performance.md"
DOC_BEGIN, DOC_END = "<!-- benchmark:begin -->", "<!-- benchmark:end -->"

# name -> (title, largest N it runs at (None: all), its repeat is --slow-repeat from this N on)
SCENARIOS = {
    "uri": ("1. ansible.builtin.uri loop", 1000, 1000),
    "mqtt_client": ("2. isr.mqtt.mqtt_client loop", 1000, 1000),
    "role": ("3a. role isr.mqtt.fleet", None, None),
    "mqtt_fleet": ("3b. isr.mqtt.mqtt_fleet alone", None, None),
    "plain": ("4. plain Python (8 threads)", None, None),
}
ORDER = ["plain", "mqtt_fleet", "role", "mqtt_client", "uri"]


def labels(count):
    return ["bench-%05d" % i for i in range(count)]  # same labels as plain_python.py


def bin_path(name):
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


class Emulator:
    """tests/emulator/serve.py in its own process (same start-up as tests/conftest.py's Emulator)."""

    def __init__(self, workdir, hourly_budget=HIGH_BUDGET, window_seconds=3600):
        self.workdir = Path(workdir)
        self.args = ["--db", str(self.workdir / "emulator.sqlite"), "--hourly-budget", str(hourly_budget),
                     "--window-seconds", str(window_seconds)]
        self.state_file = self.workdir / "emulator.json"
        self.process = None

    def __enter__(self):
        log = open(self.workdir / "emulator.log", "ab")
        self.process = subprocess.Popen([sys.executable, str(REPO / "tests" / "emulator" / "serve.py"), "--port", "0",
                                         "--state-file", str(self.state_file)] + self.args,
                                        stdout=log, stderr=subprocess.STDOUT, cwd=str(self.workdir))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("emulator exited early: %s" % (self.workdir / "emulator.log").read_text())
            if self.state_file.exists():
                try:
                    self.info = json.loads(self.state_file.read_text())
                    self.control = requests.Session()
                    return self
                except ValueError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("emulator did not start")

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def call(self, method, path, **kwargs):
        answer = self.control.request(method, self.info["control_url"] + path, timeout=60, **kwargs)
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def counters(self):
        return self.call("GET", "/counters", params={"token": self.info["token"]})

    def reset_counters(self):
        self.call("DELETE", "/counters")

    def clients(self):
        return self.call("GET", "/state")["clients"]


def _poll(proc, wrapper, poll):
    peak_rss = peak_pss = peak_single = 0
    while proc.poll() is None:
        rss = pss = 0
        try:
            for child in wrapper.children(recursive=True):
                try:
                    info = child.memory_full_info()
                except psutil.Error:
                    continue
                rss += info.rss
                pss += info.pss
                peak_single = max(peak_single, info.rss)
        except psutil.Error:
            pass
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(poll)
    return peak_rss, peak_pss, peak_single


def measure(cmd, env, cwd, log_path, poll=0.1, watch=None):
    """Run cmd; wall time, CPU time and peak memory of its process tree, CPU time of `watch` (the emulator).

    Memory: tree_pss_mb = peak of the summed PSS (proportional set size: pages shared between the forked
    ansible processes counted once) polled every `poll` s; tree_rss_mb = the same for summed RSS (an upper
    bound: shared pages counted in every process); max_process_rss_mb = getrusage(RUSAGE_CHILDREN).ru_maxrss
    (the largest single process of the tree, exact).
    """
    rusage_file = Path(cwd) / ".rusage.json"
    env = dict(env, BENCH_RUSAGE=str(rusage_file))
    peak_rss = peak_pss = peak_single = 0
    emu_cpu = sum(watch.cpu_times()[:2]) if watch is not None else 0.0
    with open(log_path, "w") as log:
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, str(BENCH / "_rusage.py")] + cmd, stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=str(cwd), start_new_session=True)
        wrapper = psutil.Process(proc.pid)
        try:
            peak_rss, peak_pss, peak_single = _poll(proc, wrapper, poll)
        except BaseException:  # interrupted: take the command's whole process group down with us
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise
        wall = time.monotonic() - started
    usage = json.loads(rusage_file.read_text()) if rusage_file.exists() else {}
    result = {"rc": proc.returncode, "wall": round(wall, 3), "cpu_s": round(usage.get("cpu_s", 0.0), 2),
              "tree_pss_mb": round(peak_pss / 2 ** 20, 1), "tree_rss_mb": round(peak_rss / 2 ** 20, 1),
              "max_process_rss_mb": round(max(usage.get("children_maxrss_kb", 0) / 1024.0, peak_single / 2 ** 20), 1),
              "log": str(log_path)}
    if watch is not None:
        result["emulator_cpu_s"] = round(sum(watch.cpu_times()[:2]) - emu_cpu, 2)
    return result


class Bench:
    def __init__(self, args):
        self.args = args
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.out = OUTPUT / stamp
        self.out.mkdir(parents=True)
        self.collections = Path(tempfile.mkdtemp(prefix="isr-mqtt-bench-"))
        link = self.collections / "ansible_collections" / "isr" / "mqtt"
        link.parent.mkdir(parents=True)
        link.symlink_to(REPO)
        self.vault_file = self.out / "vault-pass"
        self.vault_file.write_text(VAULT_PASSWORD + "\n")
        self.runs = []

    # -- environment --------------------------------------------------------------------------
    def ansible_env(self, emu, workdir):
        env = dict(os.environ)
        env.update({
            "ANSIBLE_COLLECTIONS_PATH": str(self.collections),
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_HOST_KEY_CHECKING": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_LOCALHOST_WARNING": "0",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0", "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
            "ANSIBLE_CALLBACK_PLUGINS": str(BENCH / "callback_plugins"), "ANSIBLE_CALLBACKS_ENABLED": "bench_timer",
            "ANSIBLE_LOCAL_TEMP": str(Path(workdir) / "ansible-tmp"),
        })
        if emu is not None:
            env.update({"ISR_PORTAL_URL": emu.info["portal_url"], "ISR_PORTAL_TOKEN": emu.info["token"]})
        return env

    def playbook(self, name, emu, workdir, phase, extra_vars):
        varfile = Path(workdir) / ("vars-%s.json" % phase)
        varfile.write_text(json.dumps(extra_vars))
        timings = Path(workdir) / ("timings-%s.json" % phase)
        env = dict(self.ansible_env(emu, workdir), BENCH_TIMINGS=str(timings))
        cmd = [bin_path("ansible-playbook"), "-i", "localhost,", str(PLAYBOOKS / name), "-e", "@%s" % varfile,
               "--vault-id", "bench@%s" % self.vault_file]
        result = measure(cmd, env, workdir, Path(workdir) / ("%s.log" % phase),
                         watch=psutil.Process(emu.process.pid) if emu is not None else None)
        result["tasks"] = json.loads(timings.read_text())["tasks"] if timings.exists() else {}
        return result

    # -- one run of one scenario ---------------------------------------------------------------
    def run_once(self, scenario, n, rep):
        workdir = self.out / ("%s-%d-r%d" % (scenario, n, rep))
        workdir.mkdir()
        budget, window = (600, self.args.ratelimit_window) if scenario == "ratelimit" else (HIGH_BUDGET, 3600)
        devices = labels(n)
        store = workdir / "credentials.yml"
        evars = {"devices": devices, "fleet_devices": [{"label": label} for label in devices],
                 "fleet_store": str(store), "rate_limit_max_wait": self.args.max_wait,
                 "fleet_rate_limit_max_wait": self.args.max_wait}
        record = {"scenario": scenario, "n": n, "rep": rep, "dir": str(workdir)}
        with Emulator(workdir, budget, window) as emu:
            evars.update(portal_url=emu.info["portal_url"], api_token=emu.info["token"])
            for phase in ("create", "rerun"):
                if scenario == "ratelimit" and phase == "rerun":
                    break
                emu.reset_counters()
                if scenario == "plain":
                    cmd = [sys.executable, str(BENCH / "plain_python.py"), "--url", emu.info["portal_url"],
                           "--count", str(n), "--workers", "8"]
                    result = measure(cmd, dict(os.environ, ISR_PORTAL_TOKEN=emu.info["token"]), workdir, workdir / ("%s.log" % phase),
                                     watch=psutil.Process(emu.process.pid))
                else:
                    name = {"uri": "uri_create.yml" if phase == "create" else "uri_rerun.yml",
                            "mqtt_client": "mqtt_client_loop.yml", "mqtt_fleet": "mqtt_fleet.yml",
                            "role": "fleet_role.yml", "ratelimit": "fleet_role.yml"}[scenario]
                    result = self.playbook(name, emu, workdir, phase, evars)
                counters = emu.counters()
                result.update(requests=counters["total"], writes=counters["writes"], by_route=counters["by_route"],
                              clients_after=emu.clients())
                result["waited"] = rate_limit_waited(result["log"])
                if scenario in ("role", "ratelimit"):
                    result["store_entries"] = store_entries(store)
                record[phase] = result
                print("  %-11s N=%-5d r%d %-6s rc=%s %7.2fs (cpu %6.1fs, emulator cpu %5.1fs) %6d req %6d writes  "
                      "pss %6.1f MB rss-sum %6.1f MB  clients=%d"
                      % (scenario, n, rep, phase, result["rc"], result["wall"], result["cpu_s"], result["emulator_cpu_s"],
                         result["requests"], result["writes"], result["tree_pss_mb"], result["tree_rss_mb"],
                         result["clients_after"]), flush=True)
            if scenario == "ratelimit":
                record["verify"] = verify_store(store, emu, devices)
                print("  ratelimit verify: %s" % record["verify"], flush=True)
        if not self.args.keep:
            for junk in ("emulator.sqlite", "emulator.sqlite-wal", "emulator.sqlite-shm"):
                if (workdir / junk).exists():
                    (workdir / junk).unlink()
            shutil.rmtree(workdir / "ansible-tmp", ignore_errors=True)
        self.runs.append(record)
        self.save()
        return record

    def startup(self, rep):
        workdir = self.out / ("startup-r%d" % rep)
        workdir.mkdir()
        result = self.playbook("empty.yml", None, workdir, "empty", {})
        self.runs.append({"scenario": "startup", "n": 0, "rep": rep, "create": result})
        print("  startup     r%d %.2fs (cpu %.1fs) pss %.1f MB" % (rep, result["wall"], result["cpu_s"], result["tree_pss_mb"]),
              flush=True)

    def save(self):
        results = {"machine": machine(), "args": vars(self.args), "runs": self.runs}
        (self.out / "results.json").write_text(json.dumps(results, indent=1))


def rate_limit_waited(log_path):
    """Seconds of rate-limit wait reported by mqtt_fleet / the role's progress lines (0 when none)."""
    total = 0.0
    try:
        text = Path(log_path).read_text()
    except OSError:
        return 0.0
    import re
    for match in re.finditer(r"([0-9.]+)s rate-limit wait", text):
        total += float(match.group(1))
    return round(total, 1)


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    pass


_Loader.add_constructor("!vault", lambda loader, node: loader.construct_scalar(node))


def load_store(path):
    if not Path(path).exists():
        return {}
    with open(path) as handle:
        return (yaml.load(handle, Loader=_Loader) or {}).get("isr_mqtt_credentials") or {}  # nosec - SafeLoader


def store_entries(path):
    return sum(1 for entry in load_store(path).values() if entry.get("password"))


def verify_store(path, emu, devices):
    """Every device has an entry with a password; decrypt each and ask the emulator whether it logs in."""
    from ansible.parsing.vault import VaultLib, VaultSecret
    vault = VaultLib([("bench", VaultSecret(VAULT_PASSWORD.encode()))])
    entries = load_store(path)
    missing = [label for label in devices if not (entries.get(label) or {}).get("password")]
    ok = bad = 0
    for label in devices:
        entry = entries.get(label)
        if not entry or not entry.get("password"):
            continue
        password = vault.decrypt(entry["password"].encode()).decode()
        answer = emu.call("POST", "/verify", json={"username": entry["username"], "password": password})
        ok, bad = (ok + 1, bad) if answer["ok"] else (ok, bad + 1)
    return {"entries": len(entries), "missing": len(missing), "verified_ok": ok, "verified_bad": bad}


def machine():
    model = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from ansible.release import __version__ as ansible_version
    except ImportError:
        ansible_version = "?"
    return {"cores": os.cpu_count(), "cpu": model, "memory_gb": round(psutil.virtual_memory().total / 2 ** 30, 1),
            "python": platform.python_version(), "ansible_core": ansible_version, "platform": platform.platform(),
            "load_at_start": [round(x, 2) for x in os.getloadavg()],
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


# -- report ----------------------------------------------------------------------------------------

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def module_time(record):
    """Seconds of the task(s) that reconcile, in the rerun (from the bench_timer callback)."""
    tasks = record["rerun"].get("tasks") or {}
    name = {"mqtt_fleet": "Reconcile the fleet", "role": "Reconcile the MQTT clients of the batch",
            "mqtt_client": "One MQTT client per device"}.get(record["scenario"])
    if name is None:
        return None
    return sum(v["seconds"] for k, v in tasks.items() if k.endswith(name))


def summarise(runs):
    rows = {}
    startup = med([r["create"]["wall"] for r in runs if r["scenario"] == "startup"])
    for r in runs:
        if r["scenario"] in ("startup", "ratelimit"):
            continue
        rows.setdefault((r["scenario"], r["n"]), []).append(r)
    table = []
    for scenario in ORDER:
        for (name, n), group in sorted(rows.items(), key=lambda kv: kv[0][1]):
            if name != scenario:
                continue
            c = [g["create"] for g in group]
            rr = [g["rerun"] for g in group]
            ok = all(x["rc"] == 0 for x in c + rr)
            posts = med([x["by_route"].get(CREATE_ROUTE, 0) for x in c])
            per_device_gets = max(x["by_route"].get(PER_DEVICE_GET, 0) for x in c + rr)
            dupes = max(x["clients_after"] for x in rr) != n
            table.append({
                "scenario": name, "n": n, "runs": len(group), "ok": ok,
                "create_s": med([x["wall"] for x in c]), "create_min": min(x["wall"] for x in c),
                "create_max": max(x["wall"] for x in c),
                "create_req": med([x["requests"] for x in c]), "create_posts": posts,
                "create_lists": med([x["by_route"].get(LIST_ROUTE, 0) for x in c]),
                "rerun_s": med([x["wall"] for x in rr]), "rerun_req": med([x["requests"] for x in rr]),
                "rerun_writes": max(x["writes"] for x in rr),
                "rerun_module_s": med([module_time(g) for g in group]),
                "tree_mb": max(x["tree_pss_mb"] for x in c + rr), "rss_sum_mb": max(x["tree_rss_mb"] for x in c + rr),
                "create_cpu": med([x["cpu_s"] for x in c]), "create_emu_cpu": med([x.get("emulator_cpu_s") for x in c]),
                "proc_mb": max(x["max_process_rss_mb"] for x in c + rr),
                "per_device_gets": per_device_gets, "duplicates": dupes,
                "store": med([x.get("store_entries") for x in c]) if name == "role" else None,
            })
    return table, startup


def extrapolate(table, sizes):
    """10000-device rows for the loops, from their 100 and 1000 medians (linear in N; requests exact)."""
    rows = []
    big = max(sizes)
    for name in ("mqtt_client", "uri"):
        have = dict((row["n"], row) for row in table if row["scenario"] == name)
        if big in have or 1000 not in have or 100 not in have:
            continue
        slope_c = (have[1000]["create_s"] - have[100]["create_s"]) / 900.0
        slope_r = (have[1000]["rerun_s"] - have[100]["rerun_s"]) / 900.0

        def pages(k):  # list pages with k rows
            return max(1, math.ceil(k / 1000.0))

        if name == "uri":
            create_req, rerun_req = big, pages(big)
        else:  # every item lists all pages, then creates
            create_req, rerun_req = big + sum(pages(k) for k in range(big)), big * pages(big)
        rows.append({"scenario": name, "n": big, "extrapolated": True,
                     "create_s": have[1000]["create_s"] + slope_c * (big - 1000),
                     "rerun_s": have[1000]["rerun_s"] + slope_r * (big - 1000),
                     "create_req": create_req, "rerun_req": rerun_req})
    return rows


def fmt(value, digits=1):
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return ("%%.%df" % digits) % value
    return "%d" % value


def render(data):
    runs, args, mach = data["runs"], data["args"], data["machine"]
    table, startup = summarise(runs)
    extra = extrapolate(table, [int(s) for s in str(args["sizes"]).split(",")])
    sources = data.get("sources")
    lines = [
        ("Merged from %d runs of the command (%s). " % (len(sources), ", ".join(Path(p).parent.name for p in sources))
         if sources else "") +
        "Measured %s on %d cores (%s), %s GB RAM, Python %s, ansible-core %s; load average at start %s. "
        "Median of `runs`; `--repeat %s --slow-repeat %s`. ansible-playbook start-up (empty play): %s s."
        % (mach["date"], mach["cores"], mach["cpu"], mach["memory_gb"], mach["python"], mach["ansible_core"],
           " / ".join(str(x) for x in mach["load_at_start"]), args["repeat"], args["slow_repeat"], fmt(startup, 2)),
        "",
        "| scenario | N | runs | create s | s/device | create CPU s (emulator) | requests (per device) | rerun s "
        "| rerun requests | rerun writes | rerun module s | peak PSS tree MB | peak RSS-sum MB | max process MB | checks |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in table:
        checks = []
        if not row["ok"]:
            checks.append("FAILED rc")
        if row["create_posts"] != row["n"]:
            checks.append("%s POSTs" % fmt(row["create_posts"]))
        if row["per_device_gets"]:
            checks.append("per-device GETs!")
        if row["duplicates"]:
            checks.append("duplicates after rerun!")
        if row["store"] is not None:
            checks.append("store %s entries" % fmt(row["store"]))
        lines.append("| %s | %d | %d | %s | %s | %s (%s) | %s (%s) | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            SCENARIOS[row["scenario"]][0], row["n"], row["runs"], fmt(row["create_s"], 2),
            fmt(row["create_s"] / row["n"], 4), fmt(row["create_cpu"]), fmt(row["create_emu_cpu"]),
            fmt(row["create_req"]), fmt(row["create_req"] / row["n"], 3),
            fmt(row["rerun_s"], 2), fmt(row["rerun_req"]), fmt(row["rerun_writes"]), fmt(row["rerun_module_s"], 2),
            fmt(row["tree_mb"]), fmt(row["rss_sum_mb"]), fmt(row["proc_mb"]), "; ".join(checks) or "ok"))
    for row in extra:
        lines.append("| %s | %d | – | ~%s (extrapolated) | %s | – | %s (%s) | ~%s (extrapolated) | %s | 0 | – | – | – | – | not run |" % (
            SCENARIOS[row["scenario"]][0], row["n"], fmt(row["create_s"], 0), fmt(row["create_s"] / row["n"], 4),
            fmt(row["create_req"]), fmt(row["create_req"] / float(row["n"]), 2), fmt(row["rerun_s"], 0),
            fmt(row["rerun_req"])))
    lines += ["", targets(table, startup, runs)]
    return "\n".join(lines) + "\n"


def targets(table, startup, runs):
    get = dict(((row["scenario"], row["n"]), row) for row in table)
    out = ["Targets:", ""]

    def line(ok, text):
        out.append("- %s %s" % ("MET" if ok else ("MISSED" if ok is not None else "n/a"), text))

    role, uri, plain = get.get(("role", 1000)), get.get(("uri", 1000)), get.get(("plain", 1000))
    if role and uri:
        line(uri["create_s"] / role["create_s"] >= 30, "1000 via role %.1f s vs uri loop %.1f s: %.1f× faster (target ≥ 30×)"
             % (role["create_s"], uri["create_s"], uri["create_s"] / role["create_s"]))
    if role and plain and startup:
        limit = 2 * (plain["create_s"] + startup)
        line(role["create_s"] <= limit, "1000 via role %.1f s vs 2 × (plain %.2f s + start-up %.2f s) = %.1f s"
             % (role["create_s"], plain["create_s"], startup, limit))
    for name in ("mqtt_fleet", "role"):
        row = get.get((name, 1000))
        if row:
            line(row["rerun_module_s"] is not None and row["rerun_module_s"] < 3 and row["rerun_writes"] == 0,
                 "no-op rerun of 1000 via %s: module time %s s (target < 3 s), %s requests (%s list pages), %s writes"
                 % (name, fmt(row["rerun_module_s"], 2), fmt(row["rerun_req"]), fmt(row["rerun_req"]), fmt(row["rerun_writes"])))
    for name in ("mqtt_fleet", "role", "plain"):
        small, big = get.get((name, 1000)), get.get((name, 10000))
        if small and big:
            ratio = big["create_s"] / small["create_s"]
            line(ratio <= 12 and big["tree_mb"] < 200,
                 "10000 via %s: %.1f s = %.1f× the 1000 case (target ≤ 12×), peak PSS of the tree %s MB (RSS summed %s MB, "
                 "largest process %s MB; target < 200 MB)"
                 % (name, big["create_s"], ratio, fmt(big["tree_mb"]), fmt(big["rss_sum_mb"]), fmt(big["proc_mb"])))
    posts_ok = all(row["create_posts"] == row["n"] for row in table)
    gets_ok = not any(row["per_device_gets"] for row in table)
    line(posts_ok and gets_ok, "exactly one POST per created device in every scenario: %s; per-device GETs anywhere: %s"
         % ("yes" if posts_ok else "NO", "none" if gets_ok else "SOME"))
    for r in runs:
        if r["scenario"] == "ratelimit":
            c, v = r["create"], r.get("verify", {})
            bit = c.get("waited", 0) > 0 or c["requests"] > c["by_route"].get(CREATE_ROUTE, 0) + c["by_route"].get(LIST_ROUTE, 0)
            line((c["rc"] == 0 and v.get("missing") == 0 and v.get("verified_bad") == 0 and v.get("verified_ok") == r["n"])
                 if bit else None,
                 "rate limit (emulator budget 600 requests per %s s window, i.e. the hour compressed to %s s; "
                 "fleet_rate_limit_max_wait %s): %d devices via role in %.1f s, rc %s, %d requests (%d POSTs for %d clients created: "
                 "the others were answered 429 and created nothing; %d lists), "
                 "%.1f s waited for the rate limit%s, store %s entries, %s passwords verified ok by the emulator, %s bad"
                 % (r.get("window", "?"), r.get("window", "?"), r.get("max_wait", "?"), r["n"], c["wall"], c["rc"],
                    c["requests"], c["by_route"].get(CREATE_ROUTE, 0), c["clients_after"], c["by_route"].get(LIST_ROUTE, 0),
                    c.get("waited", 0),
                    "" if bit else " (the budget never ran out: the window is too short for this machine's pace)",
                    v.get("entries"), v.get("verified_ok"), v.get("verified_bad")))
    return "\n".join(out)


def update_doc(markdown):
    text = DOC.read_text() if DOC.exists() else ""
    if DOC_BEGIN in text and DOC_END in text:
        head, rest = text.split(DOC_BEGIN, 1)
        tail = rest.split(DOC_END, 1)[1]
        DOC.write_text(head + DOC_BEGIN + "\n" + markdown + DOC_END + tail)
    else:
        DOC.write_text(text + "\n" + DOC_BEGIN + "\n" + markdown + DOC_END + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario and size (median reported)")
    parser.add_argument("--slow-repeat", type=int, default=1,
                        help="runs of the uri and mqtt_client loops at N >= 1000 (each takes minutes)")
    parser.add_argument("--scenarios", default="plain,mqtt_fleet,role,mqtt_client,uri,ratelimit")
    parser.add_argument("--ratelimit-n", type=int, default=1000)
    parser.add_argument("--ratelimit-window", type=float, default=120,
                        help="the emulator's rate-limit window for the ratelimit scenario (budget 600 per window): the "
                             "hour compressed; long enough that the role's batches cannot outlast it (20 s did not bite "
                             "on a loaded machine)")
    parser.add_argument("--max-wait", type=int, default=900, help="rate_limit_max_wait for the fleet module/role")
    parser.add_argument("--keep", action="store_true", help="keep the emulator databases")
    parser.add_argument("--update-doc", action="store_true", help="write the table into docs/performance.md")
    parser.add_argument("--render", metavar="RESULTS_JSON[,...]",
                        help="only render earlier results.json files (several: their runs are merged, machine of the first)")
    args = parser.parse_args(argv)

    if args.render:
        parts = [json.loads(Path(path).read_text()) for path in args.render.split(",")]
        merged = dict(parts[0], runs=[run for part in parts for run in part["runs"]])
        merged["args"] = dict(merged["args"], sizes=",".join(sorted(set(
            size for part in parts for size in str(part["args"]["sizes"]).split(",")), key=int)))
        merged["sources"] = args.render.split(",")
        markdown = render(merged)
        print(markdown)
        if args.update_doc:
            update_doc(markdown)
        return 0

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # run the cleanups below
    sizes = [int(s) for s in args.sizes.split(",")]
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    bench = Bench(args)
    print("benchmark output: %s" % bench.out, flush=True)
    print("machine: %s" % json.dumps(machine()), flush=True)
    try:
        for rep in range(args.repeat):
            bench.startup(rep)
        for scenario in [s for s in ORDER if s in chosen]:
            title, largest, slow_from = SCENARIOS[scenario]
            for n in sizes:
                if largest is not None and n > largest:
                    print("  %-11s N=%d skipped (extrapolated in the table)" % (scenario, n), flush=True)
                    continue
                repeat = args.slow_repeat if slow_from is not None and n >= slow_from else args.repeat
                for rep in range(repeat):
                    bench.run_once(scenario, n, rep)
        if "ratelimit" in chosen:
            record = bench.run_once("ratelimit", args.ratelimit_n, 0)
            record.update(max_wait=args.max_wait, window=args.ratelimit_window)
            bench.save()
    finally:
        shutil.rmtree(bench.collections, ignore_errors=True)
        bench.save()
    markdown = render(json.loads((bench.out / "results.json").read_text()))
    (bench.out / "results.md").write_text(markdown)
    print(markdown)
    if args.update_doc:
        update_doc(markdown)
        print("updated %s" % DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main())
