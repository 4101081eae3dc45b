"""The planner's speed check (a benchmark, not a test: a loaded machine must not turn the tests red).

    python benchmarks/plan_speed.py [--devices 10000] [--repeat 5] [--limit 0.5]

Plans a fleet of --devices (all present, a third with a pause change, every fifth subscribing, 500 to
create, 500 strays to purge, half marked for recovery) with plan_fleet, --repeat times, and prints the
median and best time as one JSON line. Exits 1 when the best run is above --limit seconds, so a
planner that became quadratic shows up here (0.08 s for 10000 devices measured on the 2-core CI machine).
"""
import argparse
import importlib.util
import json
import pathlib
import statistics
import sys
import time

PLAN = pathlib.Path(__file__).resolve().parent.parent / "plugins" / "module_utils" / "_plan.py"


def load_planner():
    spec = importlib.util.spec_from_file_location("isr_mqtt_plan", PLAN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fleet(n):
    def row(label, client_id, paused=False):
        return {"client_id": client_id, "label": label, "username": client_id, "topic": "acc/%s/#" % client_id,
                "paused": paused, "allow_publish": True, "allow_subscribe": False,
                "history_topic_prefix": "acc/" + client_id, "publish_topic": None,
                "created_at": "2026-11-26T00:00:00Z", "rotated_at": "2026-11-26T00:00:00Z"}

    current = [row("dev-%05d" % i, "pub-%012x" % i, paused=i % 7 == 0) for i in range(n)]
    current += [row("stray-%d" % i, "pub-s%d" % i) for i in range(500)]
    desired = [{"label": "dev-%05d" % i, "state": "present", "allow_publish": True, "allow_subscribe": i % 5 == 0,
                "paused": False if i % 3 else None, "rotate": False} for i in range(n + 500)]
    recover = ["dev-%05d" % i for i in range(0, n, 2)]
    return desired, current, recover


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--limit", type=float, default=0.5, help="seconds allowed for the best run")
    args = parser.parse_args(argv)
    planner = load_planner()
    desired, current, recover = fleet(args.devices)
    times = []
    for dummy in range(args.repeat):
        start = time.perf_counter()
        plan = planner.plan_fleet(desired, current, purge=True, purge_match="^stray-", recover=recover)
        times.append(time.perf_counter() - start)
    if plan.counts["created"] != 500 or plan.counts["deleted"] != 500:
        sys.exit("unexpected plan: %s" % plan.counts)
    result = {"devices": args.devices, "median_s": round(statistics.median(times), 3),
              "best_s": round(min(times), 3), "limit_s": args.limit}
    print(json.dumps(result))
    return 0 if min(times) <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
