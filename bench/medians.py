"""What the shell scripts of bench/ that interleave repetitions (speed.sh,
native_gap.sh) share when they print their tables: the medians of the
Google Benchmark JSON outputs they wrote as NAME.REP.json, the cases' short
names and the machine line."""
import glob
import json
import os
import statistics
import subprocess


def load(out, name, field, reduce=statistics.median):
    """benchmark name -> median (or `reduce`, e.g. min) of `field`
    (real_time, cpu_time) over the repetitions of run `name` in directory
    `out`."""
    times = {}
    for path in glob.glob(os.path.join(out, name + ".*.json")):
        for b in json.load(open(path))["benchmarks"]:
            times.setdefault(b["name"].replace("/real_time", ""), []).append(b[field])
    return {k: reduce(v) for k, v in times.items()}


def short(name):
    """engine_train/2-16-16-1_b32_mse/f32 -> 2-16-16-1_b32 mse/f32"""
    return name.replace("engine_train/", "").replace("_mse", " mse").replace("_cce", " cce")


def machine():
    """'CPU: <model>, N cores (<SIMD flags>); load average at the end a b c'"""
    cpu = subprocess.run("lscpu | sed -n 's/^Model name: *//p'", shell=True,
                         capture_output=True, text=True).stdout.strip()
    flags = open("/proc/cpuinfo").read()
    simd = " ".join(f for f in ["avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl"]
                    if " " + f + " " in flags)
    load_avg = " ".join(open("/proc/loadavg").read().split()[:3])
    return f"CPU: {cpu}, {os.cpu_count()} cores ({simd}); load average at the end {load_avg}"
