"""Run a command and write {"rc", "children_maxrss_kb", "cpu_s"} to $BENCH_RUSAGE.

children_maxrss_kb = getrusage(RUSAGE_CHILDREN).ru_maxrss of this wrapper after the command: the largest
resident set of any single process in the command's tree that was waited for (ansible-playbook, its
forked workers, module processes), not their sum. cpu_s = user + system CPU seconds of the whole waited-for tree.
"""
import json
import os
import resource
import subprocess
import sys

rc = subprocess.call(sys.argv[1:])
with open(os.environ["BENCH_RUSAGE"], "w") as handle:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    json.dump({"rc": rc, "children_maxrss_kb": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime}, handle)
sys.exit(rc)
