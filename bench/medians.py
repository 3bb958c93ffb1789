"""Medians of Google Benchmark JSON outputs written as NAME.REP.json, for
the shell scripts of bench/ that interleave repetitions (speed.sh,
native_gap.sh)."""
import glob
import json
import os
import statistics


def load(out, name, field):
    """benchmark name -> median of `field` (real_time, cpu_time) over the
    repetitions of run `name` in directory `out`."""
    times = {}
    for path in glob.glob(os.path.join(out, name + ".*.json")):
        for b in json.load(open(path))["benchmarks"]:
            times.setdefault(b["name"].replace("/real_time", ""), []).append(b[field])
    return {k: statistics.median(v) for k, v in times.items()}
