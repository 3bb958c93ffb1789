#!/usr/bin/env bash
# Issue 15, items 3 and 5: whole experiments as a user runs them.
# `satlab experiment digits|glorot` (server + CLI) against the same
# experiments written in PyTorch (bench/pytorch_anchor.py --experiment:
# same data, initial parameters, batch order and per-epoch metrics; the
# test e2e.pytorch_anchor checks the curves agree), at 1 and 2 cores, each
# tool in its default and in its best configuration. Prints markdown for
# docs/benchmarks.md ("Whole experiments against PyTorch").
#
#   bench/experiments_anchor.sh                 # builds build-anchor/ first
#   SKIP_BUILD=1 REPS=5 bench/experiments_anchor.sh
#
# Cores: every process of a measurement (server, CLI, python) runs under
# `taskset -c 0` or `taskset -c 0,1`; satlab-server plans its threads from
# that affinity mask (engine/cpu.h), torch's default from the CPU count it
# sees. Each repetition runs every (cores, tool, configuration, preset) once,
# in rotating order; the tables show medians.
#
# Timed: satlab = the wall time of the whole `satlab experiment --no-figures`
# process (client start, reading the CSV, gRPC, training, writing curves) on
# a server already running; "server" = the experiment's own elapsed time
# from its summary. PyTorch = the experiment inside the script (after
# `import torch` and loading the data: 1-2 s more as a process).
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
PY=/usr/bin/python3 # Debian's python3, which has python3-torch
B=${BUILD_DIR:-build-anchor}
DIGITS=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz

need=()
$PY -c 'import torch' 2>/dev/null || need+=(python3-torch)
[ -f "$DIGITS" ] || need+=(python3-sklearn)
if ((${#need[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if [ -z "${SKIP_BUILD:-}" ]; then
  # Release, portable (SATLAB_NATIVE=OFF): the binary CI and the image build.
  cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSATLAB_NATIVE=OFF \
    -DSATLAB_BUILD_TESTS=OFF -DSATLAB_BUILD_BENCH=OFF >/dev/null
  cmake --build "$B" -j2 --target satlab-server satlab >/dev/null
fi

exec $PY - "$B" "$REPS" <<'EOF'
import json, os, re, resource, shutil, statistics, subprocess, sys, tempfile, time

B, REPS = sys.argv[1], int(sys.argv[2])
SERVER, CLI = f"{B}/server/satlab-server", f"{B}/client/cli/satlab"
PY, ANCHOR = "/usr/bin/python3", "bench/pytorch_anchor.py"
PRESETS = ["digits", "glorot"]
CPUS = {1: "0", 2: "0,1"}
# satlab: the server's defaults (durable SQLite store, threads planned from
# the cores), the in-memory store, and one compute thread whose large
# products OpenBLAS splits over both cores.
SATLAB = {1: {"default": [], "memory": ["--data_dir="]},
          2: {"default": [], "memory": ["--data_dir="],
              "compute1_blas2": ["--data_dir=", "--compute_threads=1", "--blas_threads=2"]}}
# PyTorch: its defaults, and the thread layouts of bench/run_all.sh.
TORCH = {1: {"default": ["--default"], "t1": ["--threads=1"]},
         2: {"default": ["--default"], "t1": ["--threads=1"],
             "t2": ["--threads=2", "--passive"],
             "t1blas2": ["--threads=1", "--openblas-threads=2"]}}
tmp = tempfile.mkdtemp(prefix="satlab-anchor.")
times = {}  # (tool, cores, config, preset) -> [seconds]
server_times = {}

server_busy = {}  # server CPU seconds / wall seconds during the CLI's run
server_cpu = {}  # server CPU seconds (all threads) per experiment
cpu_times = {}  # (tool, cores, config, preset) -> CPU seconds (satlab: server + CLI)
TICK = os.sysconf("SC_CLK_TCK")

def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime

def thread_cpu(pid):
    """tid -> CPU seconds of each of the server's threads."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = open(f"/proc/{pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[tid] = (int(fields[11]) + int(fields[12])) / TICK
    return out

# Load-independent view of the split: the busiest server thread's share of
# the server's CPU time during a run. total / busiest bounds the speedup
# the split allows (waits are not CPU time), whatever else runs.
split = {}

def start_server(cores, flags, data):
    args = ["taskset", "-c", CPUS[cores], SERVER, "--port=0", "--http_port=-1",
            f"--data_dir={data}"] + flags
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    m = re.match(r"listening on (\S+):(\d+)", proc.stdout.readline())
    if not m:
        proc.kill()
        sys.exit(f"satlab-server did not start: {args}")
    return proc, f"{m.group(1)}:{m.group(2)}"

def run_satlab(cores, config, r):
    data = os.path.join(tmp, f"data-{cores}-{config}-{r}")
    proc, address = start_server(cores, SATLAB[cores][config], data)
    try:
        for preset in PRESETS:
            out = os.path.join(tmp, f"out-{cores}-{config}-{preset}")
            c0, th0 = cpu_seconds(proc.pid), thread_cpu(proc.pid)
            k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(["taskset", "-c", CPUS[cores], CLI, "--server", address,
                            "experiment", preset, "--out", out, "--no-figures"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall = time.perf_counter() - t0
            cpu = cpu_seconds(proc.pid) - c0
            k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cli = (k1.ru_utime - k0.ru_utime) + (k1.ru_stime - k0.ru_stime)
            cpu_times.setdefault(("satlab", cores, config, preset), []).append(cpu + cli)
            th1 = thread_cpu(proc.pid)
            per = [th1[t] - th0.get(t, 0) for t in th1]
            if max(per) > 0:
                split.setdefault((cores, config, preset), []).append(sum(per) / max(per))
            times.setdefault(("satlab", cores, config, preset), []).append(wall)
            server_busy.setdefault((cores, config, preset), []).append(cpu / wall)
            server_cpu.setdefault((cores, config, preset), []).append(cpu)
            doc = json.load(open(os.path.join(out, preset + ".json")))
            elapsed = [run["summary"]["elapsedSeconds"] for run in doc["runs"]]
            server_times.setdefault((cores, config, preset), []).append(sum(elapsed))
            shutil.rmtree(out)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)

def run_torch(cores, config):
    for preset in PRESETS:
        res = subprocess.run(["taskset", "-c", CPUS[cores], PY, ANCHOR, "--experiment", preset]
                             + TORCH[cores][config], check=True, capture_output=True, text=True)
        doc = json.loads(res.stdout.strip().splitlines()[-1])
        times.setdefault(("pytorch", cores, config, preset), []).append(doc["wall_seconds"])
        cpu_times.setdefault(("pytorch", cores, config, preset), []).append(doc["cpu_seconds"])

jobs = [(c, "satlab", k) for c in (1, 2) for k in SATLAB[c]] + \
       [(c, "pytorch", k) for c in (1, 2) for k in TORCH[c]]
load_start = open("/proc/loadavg").read().split()[:3]
t_start = time.time()
for r in range(REPS):
    print(f"repetition {r + 1}/{REPS}", file=sys.stderr)
    shift = r % len(jobs)
    for cores, tool, config in jobs[shift:] + jobs[:shift]:
        if tool == "satlab":
            run_satlab(cores, config, r)
        else:
            run_torch(cores, config)
load_end = open("/proc/loadavg").read().split()[:3]
shutil.rmtree(tmp, ignore_errors=True)

med = lambda v: statistics.median(v)
def best(tool, cores, preset):
    configs = SATLAB[cores] if tool == "satlab" else TORCH[cores]
    return min((med(times[(tool, cores, k, preset)]), k) for k in configs)

cpu = subprocess.run("lscpu | sed -n 's/^Model name: *//p'", shell=True, capture_output=True,
                     text=True).stdout.strip()
family = subprocess.run("lscpu | sed -n 's/^CPU family: *//p'", shell=True, capture_output=True,
                        text=True).stdout.strip()
torch_version = subprocess.run([PY, "-c", "import torch; print(torch.__version__)"],
                               capture_output=True, text=True).stdout.strip()
print(f"CPU: {cpu} (family {family}), {os.cpu_count()} cores; torch {torch_version} (Debian); "
      f"load average {' '.join(load_start)} at the start, {' '.join(load_end)} at the end; "
      f"medians of {REPS} interleaved repetitions ({time.time() - t_start:.0f} s).\n")
print("| experiment | cores | satlab default (s) | satlab best (s) | PyTorch default (s) | "
      "PyTorch best (s) | PyTorch best / satlab best | PyTorch default / satlab default |")
print("|---|---|---|---|---|---|---|---|")
for preset in PRESETS:
    for cores in (1, 2):
        sd = med(times[("satlab", cores, "default", preset)])
        sb, sk = best("satlab", cores, preset)
        td = med(times[("pytorch", cores, "default", preset)])
        tb, tk = best("pytorch", cores, preset)
        print(f"| {preset} | {cores} | {sd:.3f} | {sb:.3f} [{sk}] | {td:.3f} | {tb:.3f} [{tk}] | "
              f"**{tb / sb:.1f}×** | {td / sd:.1f}× |")
print()
print("By CPU time instead of wall time (load-independent; 1 core, satlab = server + CLI, "
      "PyTorch = the experiment): "
      + ", ".join(f"{p} PyTorch t1 {med(cpu_times[('pytorch', 1, 't1', p)]):.2f} s / satlab default "
                  f"{med(cpu_times[('satlab', 1, 'default', p)]):.2f} s = "
                  f"**{med(cpu_times[('pytorch', 1, 't1', p)]) / med(cpu_times[('satlab', 1, 'default', p)]):.1f}×**"
                  for p in PRESETS) + ".")
print()
print("| experiment | satlab default: 1 core → 2 (end to end) | satlab best: 1 → 2 | "
      "satlab server-side (default): 1 → 2 | server CPU s (default): 1 → 2 cores | "
      "server cores busy (CPU s / wall s), default, 2 cores | PyTorch best: 1 → 2 |")
print("|---|---|---|---|---|---|---|")
for preset in PRESETS:
    s1 = med(times[("satlab", 1, "default", preset)])
    s2 = med(times[("satlab", 2, "default", preset)])
    b1, _ = best("satlab", 1, preset)
    b2, _ = best("satlab", 2, preset)
    v1 = med(server_times[(1, "default", preset)])
    v2 = med(server_times[(2, "default", preset)])
    t1, _ = best("pytorch", 1, preset)
    t2, _ = best("pytorch", 2, preset)
    busy = med(server_busy[(2, "default", preset)])
    print(f"| {preset} | {s1:.3f} → {s2:.3f} s = **{s1 / s2:.2f}×** | {b1:.3f} → {b2:.3f} s = "
          f"{b1 / b2:.2f}× | {v1:.3f} → {v2:.3f} s = {v1 / v2:.2f}× | "
          f"{med(server_cpu[(1, 'default', preset)]):.2f} → {med(server_cpu[(2, 'default', preset)]):.2f} | {busy:.2f} | "
          f"{t1:.2f} → {t2:.2f} s = {t1 / t2:.2f}× |")
print()
print("Split of the server's work at 2 cores (default): server CPU time / its busiest thread's "
      "(the speedup the split allows on idle cores; CPU times do not count waiting for a core): "
      + ", ".join(f"{p} {med(split[(2, 'default', p)]):.2f}×" for p in PRESETS)
      + "; at 1 core: " + ", ".join(f"{p} {med(split[(1, 'default', p)]):.2f}×" for p in PRESETS) + ".")
print()
print("Every configuration (median seconds):\n")
for key in sorted(times):
    tool, cores, config, preset = key
    print(f"- {tool} {preset} {cores} core(s) {config}: {med(times[key]):.3f}"
          + (f" (server {med(server_times[(cores, config, preset)]):.3f})" if tool == "satlab" else ""))
EOF
