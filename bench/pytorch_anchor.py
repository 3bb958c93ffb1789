#!/usr/bin/python3
"""PyTorch anchor: trains the bench cases (bench/bench_cases.h) with
torch.nn + torch.optim.SGD on the CPU and writes Google-Benchmark-shaped JSON,
so bench/report.py reads it like the C++ programs' output.

Usage: pytorch_anchor.py --threads=N [--openblas-threads=M] [--passive]
                         [--min-time=S] [--out=FILE] [--filter=SUBSTR]
       pytorch_anchor.py --experiment=digits|glorot [--epochs=E]
                         [--digits=CSV.gz] [--curves-out=FILE] [--threads=N]
                         [--default] [--out=FILE]

--experiment runs a preset of `satlab experiment` (client/cli/presets.cc)
doing the same work: the same data (sklearn's digits CSV, pixels / 16,
one-hot targets), the same initial parameters and minibatch order
(satlab's std::mt19937_64 draws, ported below), the same variants, SGD
steps and, after every epoch, the same evaluation over the whole data set
(loss, accuracy, full-batch gradient norms, saturation statistics). It
writes the wall time of the experiment (data loaded, torch imported) as
JSON to --out and the curves as CSV (satlab's columns) to --curves-out.
--default leaves torch's threads and OpenBLAS's environment untouched
(what a user gets).

The environment must be fixed before torch is imported, so this script sets
OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / OMP_WAIT_POLICY from its flags first
(torch.set_num_threads alone leaves OpenBLAS's own pool at the core count,
and the two pools then fight: 5-7x slower at 2 threads without PASSIVE).

A step is what a training loop does: zero_grad(set_to_none), forward, loss,
backward, optimizer.step(), loss.item().
"""
import argparse
import json
import math
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
    p.add_argument("--experiment", choices=["digits", "glorot"], default=None)
    p.add_argument("--epochs", type=int, default=0, help="0 = the preset's")
    p.add_argument("--digits", default=DIGITS)
    p.add_argument("--curves-out", default=None)
    p.add_argument("--default", action="store_true",
                   help="torch's own thread defaults, environment untouched")
    return p.parse_args()


DIGITS = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"
args = parse()
blas_threads = args.openblas_threads or args.threads
passive = args.passive or (args.threads > 1 and not args.active)
if not args.default:
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(blas_threads)
    if passive:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import torch  # noqa: E402  (after the environment is set)
import torch.nn.functional as F  # noqa: E402

if not args.default:
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


# --- whole experiments (--experiment) -------------------------------------

MASK64 = (1 << 64) - 1


class Mt19937_64:
    """std::mt19937_64, as satlab's engine::Rng draws from it (random.h)."""

    def __init__(self, seed):
        mt = [seed & MASK64]
        for i in range(1, 312):
            mt.append((6364136223846793005 * (mt[-1] ^ (mt[-1] >> 62)) + i) & MASK64)
        self.mt, self.index = mt, 312

    def _twist(self):
        mt = self.mt
        for i in range(312):
            x = (mt[i] & 0xFFFFFFFF80000000) | (mt[(i + 1) % 312] & 0x7FFFFFFF)
            xa = x >> 1
            if x & 1:
                xa ^= 0xB5026F5AA96619E9
            mt[i] = mt[(i + 156) % 312] ^ xa
        self.index = 0

    def next(self):
        if self.index >= 312:
            self._twist()
        y = self.mt[self.index]
        self.index += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000
        y ^= (y << 37) & 0xFFF7EEE000000000
        y ^= y >> 43
        return y & MASK64

    def uniform01(self):
        return (self.next() >> 11) * 2.0 ** -53

    def uniform(self, lo, hi):
        return lo + (hi - lo) * self.uniform01()

    def below(self, n):
        limit = MASK64 - MASK64 % n
        while True:
            x = self.next()
            if x < limit:
                return x % n

    def shuffle(self, items):
        for i in range(len(items), 1, -1):
            j = self.below(i)
            items[i - 1], items[j] = items[j], items[i - 1]


# (hidden units, variants (label, output activation, loss), epochs, batch,
# learning rate); init U(+-1/sqrt(fan_in)) seed 1, shuffle seed 1, float64.
PRESETS = {
    "digits": ([30], [("softmax+cce", "softmax", "cce"),
                      ("sigmoid+mse", "sigmoid", "mse"),
                      ("softmax+mse", "softmax", "mse")], 30, 10, 0.5),
    "glorot": ([100] * 4, [("softmax+cce", "softmax", "cce"),
                           ("sigmoid+mse", "sigmoid", "mse")], 40, 10, 0.1),
}
THETA = 0.1  # saturation threshold: f' < THETA * max f' (0.25 for both)


def load_digits(path):
    import gzip
    rows = [[float(v) for v in line.split(",")]
            for line in gzip.open(path, "rt") if line.strip()]
    x = torch.tensor([r[:64] for r in rows], dtype=torch.float64) * (1.0 / 16.0)
    labels = torch.tensor([int(r[64]) for r in rows])
    y = F.one_hot(labels, 10).to(torch.float64)
    return x, y, labels


def initial_parameters(sizes, seed):
    """UNIFORM_FAN_IN as engine/init.cc draws it: per layer W [fan_in, units]
    row-major, then b, from one generator."""
    rng = Mt19937_64(seed)
    params = []
    for fan_in, units in zip(sizes[:-1], sizes[1:]):
        r = 1.0 / math.sqrt(fan_in)
        w = [rng.uniform(-r, r) for _ in range(fan_in * units)]
        b = [rng.uniform(-r, r) for _ in range(units)]
        params.append((torch.tensor(w, dtype=torch.float64).reshape(fan_in, units),
                       torch.tensor(b, dtype=torch.float64)))
    return params


def build_model(sizes, params):
    """Sigmoid hidden layers; the output layer's pre-activation comes out
    (loss_of applies the variant's output activation)."""
    layers = []
    for i, (w, b) in enumerate(params):
        linear = torch.nn.Linear(sizes[i], sizes[i + 1], dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(w.t())
            linear.bias.copy_(b)
        layers.append(linear)
        if i < len(params) - 1:
            layers.append(torch.nn.Sigmoid())
    return torch.nn.Sequential(*layers)


def loss_of(z, y, labels, output, loss):
    """Mean over the batch; z = the output layer's pre-activation."""
    if loss == "cce":  # softmax + cross-entropy from logits
        return F.cross_entropy(z, labels)
    a = torch.sigmoid(z) if output == "sigmoid" else torch.softmax(z, dim=1)
    return ((a - y) ** 2).sum() * (0.5 / z.shape[0])


def evaluate(model, x, y, labels, output, loss):
    """satlab's Evaluate: loss, accuracy and per-layer statistics over the
    whole data set, with the gradient of the mean loss (no update)."""
    model.zero_grad(set_to_none=True)
    n = x.shape[0]
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    acts, a = [], x
    for i, linear in enumerate(linears):
        z = linear(a)
        if i < len(linears) - 1 or output == "sigmoid":
            a = torch.sigmoid(z)
        else:
            a = torch.softmax(z, dim=1)
        acts.append((z, a))
    z_out, a_out = acts[-1]
    z_out.retain_grad()
    value = loss_of(z_out, y, labels, output, loss)
    value.backward()
    with torch.no_grad():
        record = {"loss": value.item(),
                  "accuracy": (a_out.argmax(1) == labels).sum().item() / n}
        delta = z_out.grad * n  # per-sample dC_x/dz
        record["output_attenuation"] = (delta.norm() / (a_out - y).norm()).item()
        for l, ((z, a), linear) in enumerate(zip(acts, linears)):
            d = a * (1 - a)  # sigmoid f', softmax's diagonal
            count = d.numel()
            record[f"layer{l}_mean_derivative"] = d.sum().item() / count
            record[f"layer{l}_saturated_fraction"] = (d < THETA * 0.25).sum().item() / count
            record[f"layer{l}_mean_activation"] = a.sum().item() / count
            record[f"layer{l}_weight_gradient_norm"] = linear.weight.grad.norm().item()
            record[f"layer{l}_bias_gradient_norm"] = linear.bias.grad.norm().item()
    model.zero_grad(set_to_none=True)
    return record


def run_experiment():
    hidden, variants, epochs, batch, lr = PRESETS[args.experiment]
    epochs = args.epochs or epochs
    x, y, labels = load_digits(args.digits)
    n = x.shape[0]
    sizes = [x.shape[1]] + hidden + [y.shape[1]]
    params = initial_parameters(sizes, seed=1)
    # Minibatch order: each epoch reshuffles the previous one, one generator
    # (engine/experiment.cc), the same for every variant.
    rng, order, orders = Mt19937_64(1), list(range(n)), []
    for _ in range(epochs):
        rng.shuffle(order)
        orders.append(torch.tensor(order))
    curves = []
    start = time.perf_counter()
    cpu0 = time.process_time()
    for v, (label, output, loss) in enumerate(variants):
        model = build_model(sizes, params)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        curve = [evaluate(model, x, y, labels, output, loss)]
        for e in range(epochs):
            for s in range(0, n, batch):
                rows = orders[e][s:s + batch]
                opt.zero_grad(set_to_none=True)
                loss_of(model(x[rows]), y[rows], labels[rows], output, loss).backward()
                opt.step()
            curve.append(evaluate(model, x, y, labels, output, loss))
        for e, record in enumerate(curve):
            record.update(variant=v, label=label, epoch=e, step=e * -(-n // batch))
        curves.extend(curve)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    if args.curves_out:
        keys = ["variant", "label", "epoch", "step", "loss", "accuracy",
                "output_attenuation"]
        keys += sorted({k for r in curves for k in r if k.startswith("layer")})
        with open(args.curves_out, "w") as f:
            f.write(",".join(keys) + "\n")
            for r in curves:
                f.write(",".join(repr(r[k]) if isinstance(r[k], float) else str(r[k])
                                 for k in keys) + "\n")
    doc = {"experiment": args.experiment, "epochs": epochs, "wall_seconds": wall,
           "cpu_seconds": cpu, "torch": torch.__version__,
           "torch_threads": torch.get_num_threads(),
           "config": "default" if args.default else
           f"threads={args.threads} openblas={blas_threads} passive={passive}"}
    text = json.dumps(doc)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


def main():
    if args.experiment:
        run_experiment()
        return
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
