"""Inventory benchmark: `ansible-inventory --list` with the isr.mqtt.portal plugin against an emulator holding N
MQTT clients, without the inventory cache, and with it (the run that fills the cache, then a cache hit).

    python benchmarks/inventory.py [--sizes 10000] [--repeat 3]

Not a test: nothing asserts on wall time. Each size gets a fresh emulator (SQLite file in the run directory, hourly
budget 10^9), seeded through the emulator's own store (tests/support.py seed_clients). Requests are the emulator's
counters for the run. "baseline" is `ansible-inventory -i localhost, --list`: what Ansible costs with no plugin.
Output: benchmarks/output/inventory-<time>/results.json and results.md (the table, also printed).
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

from support import Emulator, ansible_env, bin_path, seed_clients  # noqa: E402  pylint: disable=wrong-import-position

CASES = (
    ("baseline", "no plugin (`-i localhost,`)"),
    ("no_cache", "plugin, no cache"),
    ("cache_fill", "plugin, cache on, cache empty (fills it)"),
    ("cache_hit", "plugin, cache on, cache fresh"),
)


def timed_inventory(emulator, source, extra=()):
    """Run ansible-inventory --list once: (seconds, requests the portal saw, hosts listed)."""
    emulator.control.reset_counters()
    started = time.monotonic()
    completed = subprocess.run([bin_path("ansible-inventory"), "-i", source, "--list"] + list(extra), capture_output=True,
                               text=True, env=ansible_env(emulator.env()), check=False, timeout=1800)
    seconds = time.monotonic() - started
    if completed.returncode != 0:
        raise SystemExit("ansible-inventory failed:\n%s" % completed.stderr[-3000:])
    hosts = len(json.loads(completed.stdout)["_meta"]["hostvars"])
    return seconds, emulator.control.counters()["total"], hosts


def measure(size, repeat, workdir):
    workdir.mkdir(parents=True)
    emulator = Emulator(workdir, db=workdir / "portal.sqlite", extra_args=["--hourly-budget", str(10 ** 9)]).start()
    try:
        started = time.monotonic()
        seed_clients(emulator.db, emulator.account_id, ["bench-%05d" % n for n in range(size)],
                     paused=["bench-%05d" % n for n in range(0, size, 10)])
        print("size %d: seeded in %.1f s" % (size, time.monotonic() - started), flush=True)
        plain = workdir / "plain.isr_mqtt.yml"
        plain.write_text("plugin: isr.mqtt.portal\n")
        cached = workdir / "cached.isr_mqtt.yml"
        cached.write_text("plugin: isr.mqtt.portal\ncache: true\ncache_plugin: ansible.builtin.jsonfile\n"
                          "cache_connection: %s\ncache_timeout: 3600\n" % (workdir / "cache"))
        runs = dict((case, []) for case, dummy in CASES)
        for dummy in range(repeat):
            runs["baseline"].append(timed_inventory(emulator, "localhost,"))
            runs["no_cache"].append(timed_inventory(emulator, str(plain)))
            runs["cache_fill"].append(timed_inventory(emulator, str(cached), ["--flush-cache"]))
            runs["cache_hit"].append(timed_inventory(emulator, str(cached)))
        return runs
    finally:
        emulator.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--sizes", default="10000", help="comma-separated client counts")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    out = BENCH / "output" / ("inventory-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    results = {"cpus": os.cpu_count(), "load_before": os.getloadavg()[0], "sizes": {}}
    lines = ["| clients | case | requests | hosts | wall s (median of %d) | min s | max s |" % args.repeat,
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for size in [int(s) for s in args.sizes.split(",")]:
        runs = measure(size, args.repeat, out / str(size))
        results["sizes"][size] = runs
        for case, title in CASES:
            seconds = [r[0] for r in runs[case]]
            requests = sorted(set(r[1] for r in runs[case]))
            hosts = sorted(set(r[2] for r in runs[case]))
            lines.append("| %d | %s | %s | %s | %.2f | %.2f | %.2f |" % (
                size, title, "/".join(map(str, requests)), "/".join(map(str, hosts)), statistics.median(seconds),
                min(seconds), max(seconds)))
    results["load_after"] = os.getloadavg()[0]
    table = "\n".join(lines)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(table + "\n")
    print(table)
    print("load average before %.1f, after %.1f, on %d CPUs; output in %s" % (
        results["load_before"], results["load_after"], results["cpus"], out))


if __name__ == "__main__":
    main()
