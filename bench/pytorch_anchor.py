#!/usr/bin/python3
"""PyTorch anchor: trains the bench cases (bench/bench_cases.h) with
torch.nn + torch.optim.SGD on the CPU and writes Google-Benchmark-shaped JSON,
so bench/report.py reads it like the C++ programs' output.

Usage: pytorch_anchor.py --threads=N [--openblas-threads=M] [--passive]
                         [--min-time=S] [--out=FILE] [--filter=SUBSTR]

The environment must be fixed before torch is imported, so this script sets
OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / OMP_WAIT_POLICY from its flags first
(torch.set_num_threads alone leaves OpenBLAS's own pool at the core count,
and the two pools then fight: 5-7x slower at 2 threads without PASSIVE).

A step is what a training loop does: zero_grad(set_to_none), forward, loss,
backward, optimizer.step(), loss.item().
"""
import argparse
import json
import os
import sys
import time

CASES = [  # keep in sync with bench/bench_cases.h
    ("1-1_b1_mse", [1, 1], 1, "mse"),
    ("2-16-16-1_b32_mse", [2, 16, 16, 1], 32, "mse"),
    ("784-256-256-10_b128_cce", [784, 256, 256, 10], 128, "cce"),
    ("784-256-256-10_b128_mse", [784, 256, 256, 10], 128, "mse"),
]
LEARNING_RATE = 0.01
MINIBATCH_RING = 4


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--openblas-threads", type=int, default=None,
                   help="OpenBLAS pool size (default: --threads)")
    p.add_argument("--passive", action="store_true",
                   help="OMP_WAIT_POLICY=PASSIVE (default on when threads > 1)")
    p.add_argument("--active", action="store_true")
    p.add_argument("--min-time", type=float, default=0.5)
    p.add_argument("--out", default=None)
    p.add_argument("--filter", default="")
    p.add_argument("--name", default="pytorch")
    return p.parse_args()


args = parse()
blas_threads = args.openblas_threads or args.threads
passive = args.passive or (args.threads > 1 and not args.active)
os.environ["OMP_NUM_THREADS"] = str(args.threads)
os.environ["OPENBLAS_NUM_THREADS"] = str(blas_threads)
if passive:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import torch  # noqa: E402  (after the environment is set)
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(args.threads)
torch.set_num_interop_threads(1)


def build(sizes, loss, dtype):
    layers = []
    for i in range(1, len(sizes)):
        layers.append(torch.nn.Linear(sizes[i - 1], sizes[i], dtype=dtype))
        if i < len(sizes) - 1 or loss == "mse":
            layers.append(torch.nn.Sigmoid())
    return torch.nn.Sequential(*layers)


def run_case(name, sizes, batch, loss, dtype, min_time):
    gen = torch.Generator().manual_seed(42)
    model = build(sizes, loss, dtype)
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, foreach=True)
    xs = [torch.rand(batch, sizes[0], generator=gen, dtype=dtype) - 0.5
          for _ in range(MINIBATCH_RING)]
    if loss == "cce":
        ys = [torch.randint(0, sizes[-1], (batch,), generator=gen)
              for _ in range(MINIBATCH_RING)]
    else:
        ys = [torch.rand(batch, sizes[-1], generator=gen, dtype=dtype)
              for _ in range(MINIBATCH_RING)]

    def step(i):
        x, y = xs[i % MINIBATCH_RING], ys[i % MINIBATCH_RING]
        opt.zero_grad(set_to_none=True)
        out = model(x)
        if loss == "cce":
            l = F.cross_entropy(out, y)
        else:  # per sample ½Σ(a−y)², mean over the batch
            l = F.mse_loss(out, y, reduction="sum") * (0.5 / batch)
        l.backward()
        opt.step()
        return l.item()

    # Warm up, then size the timed run like Google Benchmark: grow the
    # iteration count until one run lasts min_time, report its mean.
    for i in range(5):
        step(i)
    iters = 1
    while True:
        t0 = time.perf_counter()
        c0 = time.process_time()
        for i in range(iters):
            step(i)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        if wall >= min_time or iters >= 1_000_000:
            break
        iters = max(iters + 1, int(iters * min(10.0, 1.4 * min_time / max(wall, 1e-9))))
    return {
        "name": f"{args.name}/{name}/{'f32' if dtype == torch.float32 else 'f64'}",
        "run_type": "iteration",
        "iterations": iters,
        "real_time": wall / iters * 1e6,
        "cpu_time": cpu / iters * 1e6,
        "time_unit": "us",
    }


def main():
    results = []
    for name, sizes, batch, loss in CASES:
        for dtype in (torch.float32, torch.float64):
            full = f"{args.name}/{name}/{'f32' if dtype == torch.float32 else 'f64'}"
            if args.filter and args.filter not in full:
                continue
            r = run_case(name, sizes, batch, loss, dtype, args.min_time)
            results.append(r)
            print(f"{r['name']:<50} {r['real_time']:12.2f} us {r['cpu_time']:12.2f} us cpu"
                  f" {r['iterations']:>9}", file=sys.stderr)
    doc = {
        "context": {
            "executable": "pytorch_anchor.py",
            "torch": torch.__version__,
            "threads": str(args.threads),
            "openblas_threads": str(blas_threads),
            "omp_wait_policy": "PASSIVE" if passive else "default",
        },
        "benchmarks": results,
    }
    text = json.dumps(doc, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
