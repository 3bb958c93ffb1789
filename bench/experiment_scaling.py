#!/usr/bin/env python3
"""Issue 15 item 3: `satlab experiment PRESET` at 1 and 2 cores, A/B.

Each configuration NAME=SERVER[@CLI][:flag...] is a satlab-server binary
(optionally its own CLI binary, and server flags); every repetition starts
each (configuration, cores) once, in rotating order, runs the experiment
once to warm up and twice timed, and prints medians:

  wall          the whole CLI process (start, reading the CSV, gRPC,
                training, writing the curves), as bench/experiments_anchor.sh
  calls         the RunExperiment calls as the CLI saw them (sending the
                data, the server's checks and durable record, the compute,
                the stream): the CLI's "done in ... s of calls"
  server-side   the experiment's own elapsed time from its summary
  server CPU    all server threads (/proc/PID/task/*/schedstat, ns)

  bench/experiment_scaling.py --reps 5 \\
      old=build-old/server/satlab-server@build-old/client/cli/satlab \\
      new=build-anchor/server/satlab-server@build-anchor/client/cli/satlab

On a machine shared with other work, run it under `chrt -f 10` (root):
SCHED_FIFO lets the measured processes preempt the others, which is the
closest a busy 2-core machine comes to a quiet one (the load average is
printed either way).
"""
import argparse, json, os, re, shutil, statistics, subprocess, tempfile, time

p = argparse.ArgumentParser()
p.add_argument("--reps", type=int, default=5)
p.add_argument("--preset", default="digits")
p.add_argument("--cli", default="build-anchor/client/cli/satlab")
p.add_argument("configs", nargs="+")
args = p.parse_args()
configs = []
for c in args.configs:
    name, rest = c.split("=", 1)
    parts = rest.split(":")
    server, _, cli = parts[0].partition("@")
    configs.append((name, server, cli or args.cli, parts[1:]))
CORES = {1: "0", 2: "0,1"}

def server_cpu(pid):
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            out[t] = int(open(f"/proc/{pid}/task/{t}/schedstat").read().split()[0]) / 1e9
        except OSError:
            pass
    return out

res = {}
tmp = tempfile.mkdtemp(prefix="satlab-scaling.")
loads = [open("/proc/loadavg").read().split()[0]]
jobs = [(c, n) for c in configs for n in (1, 2)]
for r in range(args.reps):
    for (name, server, cli, flags), n in jobs[r % len(jobs):] + jobs[:r % len(jobs)]:
        data = os.path.join(tmp, f"data-{r}-{name}-{n}")
        proc = subprocess.Popen(["taskset", "-c", CORES[n], server, "--port=0", "--http_port=-1",
                                 f"--data_dir={data}"] + flags,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        m = re.match(r"listening on (\S+):(\d+)", proc.stdout.readline())
        if not m:
            proc.kill()
            raise SystemExit(f"{server} did not start")
        address = f"{m.group(1)}:{m.group(2)}"
        try:
            for i in range(3):
                out = os.path.join(tmp, "out")
                c0 = server_cpu(proc.pid)
                t0 = time.perf_counter()
                cli_run = subprocess.run(["taskset", "-c", CORES[n], cli, "--server", address,
                                          "experiment", args.preset, "--out", out,
                                          "--no-figures"],
                                         check=True, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, text=True)
                wall = time.perf_counter() - t0
                calls = float(re.search(r"s of server compute, ([0-9.]+) s of calls",
                                        cli_run.stderr).group(1))
                c1 = server_cpu(proc.pid)
                doc = json.load(open(os.path.join(out, args.preset + ".json")))
                shutil.rmtree(out)
                if i == 0:
                    continue  # warm-up
                d = res.setdefault((name, n), {"wall": [], "calls": [], "server": [], "cpu": []})
                d["wall"].append(wall)
                d["calls"].append(calls)
                d["server"].append(sum(run["summary"]["elapsedSeconds"] for run in doc["runs"]))
                d["cpu"].append(sum(c1[t] - c0.get(t, 0) for t in c1))
        finally:
            proc.terminate()
            proc.wait()
            shutil.rmtree(data, ignore_errors=True)
    loads.append(open("/proc/loadavg").read().split()[0])
shutil.rmtree(tmp)

med = statistics.median
print(f"{args.preset}, {args.reps} repetitions x 2 timed runs; 1-minute load average "
      f"after each repetition: {' '.join(loads)}")
print()
print("| configuration | cores | wall (s) | calls (s) | server-side (s) | server CPU (s) |")
print("|---|---|---|---|---|---|")
for (name, _, _, _), n in jobs:
    d = res[(name, n)]
    print(f"| {name} | {n} | {med(d['wall']):.3f} | {med(d['calls']):.3f} | {med(d['server']):.3f} "
          f"| {med(d['cpu']):.3f} |")
print()
for name, _, _, _ in configs:
    a, b = res[(name, 1)], res[(name, 2)]
    print(f"- {name}: 1 -> 2 cores {med(a['wall']) / med(b['wall']):.2f}x end to end, "
          f"{med(a['calls']) / med(b['calls']):.2f}x calls, "
          f"{med(a['server']) / med(b['server']):.2f}x server-side")
