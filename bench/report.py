#!/usr/bin/python3
"""Reads the JSON files bench/run_all.sh collected (Google Benchmark's
--benchmark_out format, which bench/pytorch_anchor.py imitates), takes the
median of each measurement over the repetitions, and writes
docs/benchmarks.md.

File names: <program>[-<config>]_t<threads>_r<rep>.json, e.g.
engine_t2_r3.json, libtorch-blas2_t2_r1.json. Benchmark names:
<kind>/<case>/<dtype>[/...]; every time is the wall-clock (real) time.

Usage: report.py RESULTS_DIR OUT.md [--machine FILE] [--elapsed SECONDS]
"""
import argparse
import collections
import glob
import json
import os
import re
import statistics
import subprocess

CASES = ["1-1_b1_mse", "2-16-16-1_b32_mse", "784-256-256-10_b128_cce",
         "784-256-256-10_b128_mse"]
TINY = CASES[:2]
BIG = CASES[2:]
DTYPES = ["f32", "f64"]
THREADS = ["1", "2"]

UNIT_TO_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}


def load(results_dir):
    """Returns ({(kind, config, case, dtype, threads): [us, ...]},
                {(kind, case, dtype, threads, counter): [value, ...]},
                {program: context})."""
    times = collections.defaultdict(list)
    cpu_times = collections.defaultdict(list)
    counters = collections.defaultdict(list)
    contexts = {}
    pat = re.compile(r"^(?P<prog>[a-z_]+)(?:-(?P<cfg>[a-z0-9_]+))?_t(?P<t>\d+)_r(?P<r>\d+)\.json$")
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        m = pat.match(os.path.basename(path))
        if not m:
            continue
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, json.JSONDecodeError):
            continue
        threads, cfg = m["t"], m["cfg"] or ""
        contexts.setdefault(m["prog"] + ("-" + cfg if cfg else ""), doc.get("context", {}))
        for b in doc.get("benchmarks", []):
            if b.get("run_type", "iteration") != "iteration" or b.get("error_occurred"):
                continue
            parts = b["name"].split("/")
            if len(parts) < 3:
                continue
            kind, case, dtype = parts[0], parts[1], parts[2]
            rest = [p for p in parts[3:] if p not in ("real_time",)
                    and not p.startswith(("iterations:", "min_time:"))]
            if rest:  # e.g. engine_bytes/.../sgd
                case_key = case + "/" + "/".join(rest)
            else:
                case_key = case
            t = b["real_time"] * UNIT_TO_US[b.get("time_unit", "ns")]
            times[(kind, cfg, case_key, dtype, threads)].append(t)
            if "cpu_time" in b:
                cpu_times[(kind, cfg, case_key, dtype, threads)].append(
                    b["cpu_time"] * UNIT_TO_US[b.get("time_unit", "ns")])
            for k, v in b.items():
                if isinstance(v, (int, float)) and k not in (
                        "real_time", "cpu_time", "iterations", "repetitions",
                        "repetition_index", "threads", "family_index",
                        "per_family_instance_index"):
                    counters[(kind, case_key, dtype, threads, k)].append(v)
    return times, cpu_times, counters, contexts


def med(xs):
    return statistics.median(xs) if xs else None


class Results:
    def __init__(self, times, cpu_times, counters):
        self.times, self.cpu_times, self.counters = times, cpu_times, counters

    def cpu(self, kind, case, dtype, threads, cfg=""):
        return med(self.cpu_times.get((kind, cfg, case, dtype, threads), []))

    def configs(self, kind):
        return sorted({k[1] for k in self.times if k[0] == kind})

    def time(self, kind, case, dtype, threads, cfg=None):
        """Median µs; with cfg None, the best (lowest median) config.
        Returns (median, config, samples)."""
        best = (None, None, [])
        for c in ([cfg] if cfg is not None else self.configs(kind)):
            xs = self.times.get((kind, c, case, dtype, threads), [])
            m = med(xs)
            if m is not None and (best[0] is None or m < best[0]):
                best = (m, c, xs)
        return best

    def best_upto(self, kind, case, dtype, threads):
        """The best configuration allowed `threads` cores: any config
        measured at that thread count or fewer (using one core of two is
        a configuration too). Returns (median, label, samples); the label
        names the config and, when fewer threads won, the count."""
        best = (None, None, [])
        for t in THREADS:
            if int(t) > int(threads):
                continue
            for c in self.configs(kind):
                xs = self.times.get((kind, c, case, dtype, t), [])
                m = med(xs)
                if m is not None and (best[0] is None or m < best[0]):
                    label = c or ""
                    if t != threads and not c:
                        label = f"{t} thread"
                    best = (m, label, xs)
        return best

    def counter(self, kind, case, dtype, threads, name):
        return med(self.counters.get((kind, case, dtype, threads, name), []))


def fmt_us(x):
    if x is None:
        return "—"
    if x >= 1000:
        return f"{x / 1000:.2f} ms"
    if x >= 10:
        return f"{x:.0f} µs"
    return f"{x:.2f} µs"


def fmt_ratio(x, target=None, higher_is_better=True):
    if x is None:
        return "—"
    s = f"{x:.2f}×" if x < 100 else f"{x:.0f}×"
    if target is not None:
        ok = x >= target if higher_is_better else x <= target
        s += " ✅" if ok else " ❌"
    return s


def fmt_bytes(x):
    if x is None:
        return "—"
    if x >= 1 << 20:
        return f"{x / (1 << 20):.2f} MiB"
    if x >= 1 << 10:
        return f"{x / 1024:.1f} KiB"
    return f"{x:.0f} B"


def spread(xs):
    if len(xs) < 2:
        return ""
    m = statistics.median(xs)
    return f" (±{100 * (max(xs) - min(xs)) / 2 / m:.0f}%)" if m else ""


def main_table(r, out, verdicts, figure_rows):
    out.append("| shape | dtype | threads | ours (engine TrainStep) | GEMM floor | PyTorch (best config) | LibTorch (best config) "
               "| ours / floor (≤ 1.15) | PyTorch / ours | LibTorch / ours | by CPU time (1 thread): ours / floor, PyTorch / ours, LibTorch / ours |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for case in CASES:
        big = case in BIG
        for dtype in DTYPES:
            for t in THREADS:
                ours, ours_cfg, ours_xs = r.best_upto("engine_train", case, dtype, t)
                floor, floor_cfg, _ = r.best_upto("gemm_floor", case, dtype, t)
                pt, pt_cfg, _ = r.best_upto("pytorch", case, dtype, t)
                lt, lt_cfg, _ = r.best_upto("libtorch", case, dtype, t)
                vs_floor = ours / floor if ours and floor else None
                cpu_ours = r.cpu("engine_train", case, dtype, t)
                cpu_floor = r.cpu("gemm_floor", case, dtype, t)
                vs_floor_cpu = (cpu_ours / cpu_floor if t == "1" and cpu_ours and cpu_floor
                                else None)
                cpu_pt = r.cpu("pytorch", case, dtype, t, "t1")
                cpu_lt = r.cpu("libtorch", case, dtype, t, "t1")
                pt_cpu = cpu_pt / cpu_ours if t == "1" and cpu_pt and cpu_ours else None
                lt_cpu = cpu_lt / cpu_ours if t == "1" and cpu_lt and cpu_ours else None
                cpu_cell = ("—" if t != "1" else
                            f"{fmt_ratio(vs_floor_cpu)} / {fmt_ratio(pt_cpu)} / {fmt_ratio(lt_cpu)}")
                vs_pt = pt / ours if ours and pt else None
                vs_lt = lt / ours if ours and lt else None
                figure_rows.append((case, dtype, t, ours, floor, pt, lt))
                if big:
                    tf, tp, tl = 1.15, 1.3, 1.3
                else:
                    tf, tp, tl = None, 100, 10
                for name, val, tgt, hib in (("floor", vs_floor, tf, False),
                                            ("pytorch", vs_pt, tp, True),
                                            ("libtorch", vs_lt, tl, True)):
                    if tgt is not None and val is not None:
                        verdicts.append((case, dtype, t, name, val, tgt,
                                         val >= tgt if hib else val <= tgt))
                out.append(
                    f"| {case} | {dtype} | {t} | {fmt_us(ours)}{spread(ours_xs)}"
                    f"{' [' + ours_cfg + ']' if ours_cfg else ''} "
                    f"| {fmt_us(floor)}{' [' + floor_cfg + ']' if floor_cfg else ''} "
                    f"| {fmt_us(pt)}{' [' + pt_cfg + ']' if pt_cfg else ''} "
                    f"| {fmt_us(lt)}{' [' + lt_cfg + ']' if lt_cfg else ''} "
                    f"| {fmt_ratio(vs_floor, tf, False) if big else fmt_ratio(vs_floor)} "
                    f"| {fmt_ratio(vs_pt, tp)} | {fmt_ratio(vs_lt, tl)} "
                    f"| {cpu_cell} |")


def ops_table(r, out):
    out.append("| shape | dtype | threads | TrainStep | Forward | ComputeGradients | ValidateBatch |")
    out.append("|---|---|---|---|---|---|---|")
    for case in CASES:
        for dtype in DTYPES:
            for t in THREADS:
                cells = [fmt_us(r.time(k, case, dtype, t, "")[0]) for k in
                         ("engine_train", "engine_forward", "engine_gradients",
                          "engine_validate")]
                out.append(f"| {case} | {dtype} | {t} | " + " | ".join(cells) + " |")


def grpc_tables(r, out, verdicts):
    rows = []
    for case in TINY:
        for dtype in DTYPES:
            for t in THREADS:
                step = r.counter("grpc_unary_pair", case, dtype, t, "train_step_us")
                echo = r.counter("grpc_unary_pair", case, dtype, t, "echo_us")
                if step is None and echo is None:
                    continue
                ratio = step / echo if step and echo else None
                if ratio is not None:
                    verdicts.append((case, dtype, t, "grpc_vs_echo", ratio, 1.2, ratio <= 1.2))
                rows.append(f"| {case} | {dtype} | {t} | {fmt_us(step)} | {fmt_us(echo)} "
                            f"| {fmt_ratio(ratio, 1.2, False)} |")
    if rows:
        out.append("TrainStep over loopback next to a bare echo RPC of the same request and "
                   "response sizes, served by the same server (unary, one call at a time, "
                   "echo and TrainStep alternating call by call; medians of the per-call "
                   "latencies):")
        out.append("")
        out.append("| shape | dtype | threads | TrainStep RPC | echo RPC | TrainStep / echo (≤ 1.2) |")
        out.append("|---|---|---|---|---|---|")
        out.extend(rows)
        out.append("")
    rows = []
    for case in CASES:
        for dtype in DTYPES:
            for t in THREADS:
                stream, _, _ = r.time("grpc_stream", case, dtype, t, "")
                local, _, _ = r.time("grpc_in_process", case, dtype, t, "")
                if stream is None:
                    continue
                frac = local / stream if local and stream else None
                if frac is not None and case in BIG:
                    verdicts.append((case, dtype, t, "stream_vs_in_process", frac, 0.85, frac >= 0.85))
                rows.append(f"| {case} | {dtype} | {t} | {1e6 / stream:,.0f} | "
                            f"{(1e6 / local) if local else 0:,.0f} | "
                            f"{(100 * frac) if frac else 0:.0f}%"
                            f"{(' ✅' if frac >= 0.85 else ' ❌') if frac is not None and case in BIG else ''} |")
    if rows:
        out.append("Train stream (client streams minibatches, server streams a StepResult per step) "
                   "against the same steps in process, same program, same run:")
        out.append("")
        out.append("| shape | dtype | threads | stream steps/s | in-process steps/s | stream / in-process (≥ 85% for 784-256-256-10) |")
        out.append("|---|---|---|---|---|---|")
        out.extend(rows)
        out.append("")


def memory_tables(r, out, verdicts):
    rows = []
    for case in CASES:
        for dtype in DTYPES:
            for opt in ("sgd", "momentum"):
                key = f"{case}/{opt}"
                create = r.counter("engine_bytes", key, dtype, "1", "bytes_after_create")
                if create is None:
                    continue
                step = r.counter("engine_bytes", key, dtype, "1", "bytes_after_step")
                need = r.counter("engine_bytes", key, dtype, "1", "param_optimizer_bytes")
                budget = r.counter("engine_bytes", key, dtype, "1", "budget_bytes")
                ok_c = create <= budget
                ok_s = step <= budget
                verdicts.append((case, dtype, opt, "bytes_at_rest", create / budget, 1.0, ok_c))
                verdicts.append((case, dtype, opt, "bytes_after_step", step / budget, 1.0, ok_s))
                rows.append(f"| {case} | {dtype} | {opt} | {fmt_bytes(need)} | {fmt_bytes(budget)} "
                            f"| {fmt_bytes(create)} {'✅' if ok_c else '❌'} "
                            f"| {fmt_bytes(step)} {'✅' if ok_s else '❌'} |")
    if rows:
        out.append("Heap bytes per network (glibc in-use bytes over many networks), at rest after "
                   "CreateNetwork and after one TrainStep each, against the parameter + optimizer-state "
                   "bytes (SGD: none; momentum: one velocity per parameter). Budget = 1.1 × that + 4 KiB. "
                   "The engine's scratch space (activations, deltas, gradients) belongs to the compute "
                   "thread and is shared by every network it trains, so one untimed step sizes it "
                   "before the count starts.")
        out.append("")
        out.append("| shape | dtype | optimizer | params + optimizer state | budget | after create | after one step |")
        out.append("|---|---|---|---|---|---|---|")
        out.extend(rows)
        out.append("")
    rss = []
    for key in sorted({k[1] for k in r.counters if k[0] == "server_rss"}):
        for dtype in DTYPES:
            base = r.counter("server_rss", key, dtype, "1", "rss_before_bytes")
            after = r.counter("server_rss", key, dtype, "1", "rss_after_bytes")
            stepped = r.counter("server_rss", key, dtype, "1", "rss_after_step_bytes")
            n = r.counter("server_rss", key, dtype, "1", "networks")
            if after is None:
                continue
            limit = 100 * (1 << 20)
            verdicts.append((key, dtype, "-", "RSS MiB, 10k networks created",
                             after / (1 << 20), 100, after < limit))
            if stepped is not None:
                verdicts.append((key, dtype, "-", "RSS MiB, 10k networks after a step each",
                                 stepped / (1 << 20), 100, stepped < limit))
            rss.append(f"| {key} | {dtype} | {n:,.0f} | {fmt_bytes(base)} "
                       f"| {fmt_bytes(after)} {'✅' if after < limit else '❌'} "
                       f"| {fmt_bytes(stepped)} {'✅' if stepped is not None and stepped < limit else '❌'} "
                       f"| {fmt_bytes((after - base) / n) if n else '—'} "
                       f"| {fmt_bytes((stepped - base) / n) if n and stepped else '—'} |")
    if rss:
        out.append("RSS of a real `satlab-server` process (VmRSS) idle, after creating the networks "
                   "through the C++ client, and after one TrainStep on each (target: < 100 MiB for "
                   "10,000 tiny networks):")
        out.append("")
        out.append("| networks of | dtype | count | RSS idle | after create | after one step each "
                   "| per network (created) | per network (stepped) |")
        out.append("|---|---|---|---|---|---|---|---|")
        out.extend(rss)
        out.append("")


FIGURE_GP = """# Generated by bench/report.py; rerun with: gnuplot benchmarks_step.gp
set encoding utf8
set terminal pngcairo size 1280,720 font 'DejaVu Sans,11' noenhanced
set output 'benchmarks_step.png'
reset
set datafile separator ','
set title 'One SGD training step: time relative to its GEMM floor (the same matrix products alone, OpenBLAS)'
set ylabel 'step time / GEMM floor (log scale; lower is faster)'
set logscale y
set yrange [0.5:*]
set grid ytics back lc rgb '#dddddd'
set key top left box opaque
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by -45 nomirror
set bmargin 9
set rmargin 12
set tics nomirror
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead lc rgb '#444444' dt 2
plot 'benchmarks_step.csv' skip 1 using ($5/$6):xtic(1) title 'satlab engine' lc rgb '#1f77b4', \\
     '' skip 1 using ($7/$6) title 'PyTorch (best config)' lc rgb '#ff7f0e', \\
     '' skip 1 using ($8/$6) title 'LibTorch (best config)' lc rgb '#2ca02c'
unset output
set terminal svg size 1280,720 dynamic font 'DejaVu Sans,11' noenhanced background rgb 'white'
set output 'benchmarks_step.svg'
replot
unset output
"""


def write_figure(figure_rows, figures_dir):
    """benchmarks_step.{csv,gp,png,svg} in figures_dir: every training-step row
    of the main table as times relative to its GEMM floor. Returns True when
    gnuplot drew the PNG and SVG."""
    os.makedirs(figures_dir, exist_ok=True)
    with open(os.path.join(figures_dir, "benchmarks_step.csv"), "w") as f:
        f.write("label,shape,dtype,threads,ours_us,floor_us,pytorch_us,libtorch_us\n")
        for case, dtype, t, ours, floor, pt, lt in figure_rows:
            if None in (ours, floor, pt, lt):
                continue
            parts = case.split("_")  # e.g. 784-256-256-10, b128, cce
            label = f"{parts[0]} {parts[-1]} {dtype} {t}t"
            f.write(f"{label},{case},{dtype},{t},{ours:.4f},{floor:.4f},{pt:.4f},"
                    f"{lt:.4f}\n")
    with open(os.path.join(figures_dir, "benchmarks_step.gp"), "w") as f:
        f.write(FIGURE_GP)
    done = subprocess.run(["gnuplot", "benchmarks_step.gp"], cwd=figures_dir,
                          capture_output=True, text=True)
    if done.returncode != 0:
        print("gnuplot failed:", done.stderr)
    return done.returncode == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("out")
    ap.add_argument("--machine", default=None)
    ap.add_argument("--elapsed", default=None)
    ap.add_argument("--reps", default=None)
    ap.add_argument("--notes", default=None, help="markdown appended verbatim")
    a = ap.parse_args()
    times, cpu_times, counters, contexts = load(a.results)
    r = Results(times, cpu_times, counters)
    out, verdicts = [], []
    out.append("# Benchmarks")
    out.append("")
    out.append("Generated by `bench/run_all.sh` (do not edit the tables by hand; the notes at "
               "the end come from `bench/notes.md`). Every number is the **median over "
               f"{a.reps or 'several'} interleaved repetitions** of one run: each repetition runs every "
               "program once per thread count, in rotating order, so all ratios compare "
               "measurements taken minutes apart on the same machine. Times are wall-clock per "
               "step. These machines are shared and noisy (±25% between runs); the ± after our "
               "time is half the min–max range over the repetitions.")
    out.append("")
    out.append("Rerun everything (build included, installs python3-torch/libtorch-dev if missing):")
    out.append("")
    out.append("    bench/run_all.sh            # REPS=4 by default; writes this file")
    out.append("")
    if a.elapsed:
        out.append(f"This run took {a.elapsed} (build excluded).")
        out.append("")
    out.append("## Machine")
    out.append("")
    if a.machine and os.path.exists(a.machine):
        out.append("```")
        with open(a.machine) as f:
            out.append(f.read().rstrip())
        out.append("```")
        out.append("")
    out.append("## Training step: ours vs the GEMM floor, PyTorch and LibTorch")
    out.append("")
    out.append("Same networks, batch, data (a ring of 4 random minibatches) and optimizer (plain SGD, lr 0.01) everywhere (initialization: each library's own, which does not change the work per step); "
               "sigmoid hidden layers; `_mse` = sigmoid output + MSE (½Σ(a−y)² per sample, mean over "
               "the batch), `_cce` = softmax + cross-entropy from logits. *threads* is the core count "
               "each contender may use, each in its best configuration for it (see below). "
               "Ratios > 1 in the PyTorch/LibTorch columns mean we are faster "
               "(their step time / ours = our steps/s / theirs). Targets: 784-256-256-10 ≤ 1.15× the "
               "floor and ≥ 1.3× both frameworks; tiny nets ≥ 100× PyTorch and ≥ 10× LibTorch. "
               "The last column divides CPU times instead of wall times (1-thread rows only): on a "
               "loaded machine it shows the ratios without the scheduler's share in them.")
    out.append("")
    figure_rows = []
    main_table(r, out, verdicts, figure_rows)
    out.append("")
    if write_figure(figure_rows, os.path.join(os.path.dirname(os.path.abspath(a.out)),
                                               "figures")):
        out.append("![Step time relative to the GEMM floor, per row of the table]"
                   "(figures/benchmarks_step.png)")
        out.append("")
        out.append("The same rows as a figure (figures/benchmarks_step.svg; the numbers are in "
                   "figures/benchmarks_step.csv): each contender's step time divided by the "
                   "row's GEMM floor, on a log scale; the dashed line is the floor itself.")
        out.append("")
    out.append("Configurations (chosen per row: the lowest median wins): "
               "`t1` = 1 torch thread, OpenBLAS 1 thread; `t2` = 2 torch (OpenMP) threads, OpenBLAS "
               "2 threads, `OMP_WAIT_POLICY=PASSIVE`; `t1blas2` = 1 torch thread, OpenBLAS 2 threads. "
               "Without PASSIVE, 2+2 threads run 5–7× slower (the pools spin against each other). "
               "A 2-thread row takes, for every contender alike (ours and the floor included), the "
               "best configuration measured with at most 2 threads, so `[1 thread]` or `[t1]` there "
               "means one core beat two on this shared machine. "
               "The GEMM floor uses OpenBLAS with `openblas_set_num_threads(threads)`; the engine "
               "gets `OMP_NUM_THREADS`/`OPENBLAS_NUM_THREADS`/`Eigen::setNbThreads` = threads.")
    out.append("")
    for prog, ctx in sorted(contexts.items()):
        keep = {k: v for k, v in ctx.items() if k in (
            "threads", "openblas_threads", "omp_wait_policy", "eigen_threads",
            "openblas_config", "torch")}
        if keep:
            out.append(f"- `{prog}`: " + ", ".join(f"{k}={v}" for k, v in sorted(keep.items())))
    out.append("")
    out.append("## Engine calls in process")
    out.append("")
    ops_table(r, out)
    out.append("")
    out.append("## Over gRPC (loopback)")
    out.append("")
    before = len(out)
    grpc_tables(r, out, verdicts)
    if len(out) == before:
        out.append("(not measured in this run)")
        out.append("")
    out.append("## Memory")
    out.append("")
    before = len(out)
    memory_tables(r, out, verdicts)
    if len(out) == before:
        out.append("(not measured in this run)")
        out.append("")
    out.append("## Targets")
    out.append("")
    met = sum(1 for v in verdicts if v[6])
    out.append(f"{met} of {len(verdicts)} checks met in this run.")
    out.append("")
    missed = [v for v in verdicts if not v[6]]
    if missed:
        out.append("Missed:")
        out.append("")
        for case, dtype, t, what, val, tgt, _ in missed:
            out.append(f"- {case} {dtype} threads/opt={t}: {what} = {val:.2f} (target {tgt})")
        out.append("")
    if a.notes and os.path.exists(a.notes):
        with open(a.notes) as f:
            out.append(f.read().rstrip())
        out.append("")
    with open(a.out, "w") as f:
        f.write("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
