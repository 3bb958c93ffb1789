#!/usr/bin/env python3
# %% [markdown]
# # Why cross-entropy keeps a saturated sigmoid learning, and MSE does not
#
# A walkthrough of docs/saturation.md from Python: the `factor`, `nielsen`
# and `digits` figures, made with the satlab Python client and matplotlib
# alone. It sends exactly what the C++ CLI's `satlab experiment PRESET`
# sends (client/cli/presets.cc), so the numbers are the CLI's; the test
# tests/python/test_walkthrough.py checks that they are equal.
#
# Run it top to bottom like a notebook (each `# %%` is a cell in editors that
# understand the "percent" format), or as a script:
#
#     satlab-server &                                      # or any running server
#     python3 client/python/examples/walkthrough.py --server 127.0.0.1:50051 --out figures
#
# It needs the satlab package (`pip install client/python`, see its README)
# and Debian's python3-matplotlib. Outputs in --out: `<preset>.csv` in the
# CLI's column layout, `<preset>_summary.txt`, and the PNG figures.

# %%
import argparse
import gzip
import math
import os
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

# Look like the CLI's gnuplot figures: curves start at epoch 0 on the axis,
# and the same line colours in the same order (gnuplot's default palette).
plt.rcParams["axes.xmargin"] = 0
plt.rcParams["axes.prop_cycle"] = matplotlib.cycler(
    color=["#9400d3", "#009e73", "#56b4e9", "#e69f00", "#f0e442", "#0072b2", "#e51e10"])
import numpy as np  # noqa: E402

try:
    import satlab  # the installed package
except ImportError:  # a checkout: client/python after generate.py
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
    import satlab
from satlab.client import activation, loss  # noqa: E402
from satlab.v1 import experiment_pb2, network_pb2  # noqa: E402

DIGITS_CSV = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"
EPOCH_LABEL = "epoch (passes over the training data)"
LAYER_FIELDS = ["mean_derivative", "saturated_fraction", "mean_activation", "dead_units",
                "weight_gradient_norm", "bias_gradient_norm"]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="satlab saturation walkthrough (factor, nielsen, digits)")
    ap.add_argument("--server", default=os.environ.get("SATLAB_SERVER", "127.0.0.1:50051"))
    ap.add_argument("--out", default="satlab-walkthrough", help="output directory")
    ap.add_argument("--digits", default=DIGITS_CSV, help="digits CSV (64 pixels 0..16 + label)")
    ap.add_argument("--presets", default="factor,nielsen,digits")
    # Inside a notebook there is no command line: take the defaults.
    return ap.parse_args(argv if argv is not None else ([] if "ipykernel" in sys.modules else None))


# %% [markdown]
# ## Helpers: one RunExperiment call → curves; files in the CLI's format

# %%
def run_curves(client, runs):
    """Runs each (spec, label suffix) through RunExperiment, as the CLI does:
    variants are numbered across runs and their labels get the suffix.
    Returns [{variant, run, label, epochs: [EpochMetrics], summary}]."""
    curves = []
    for r, (spec, suffix) in enumerate(runs):
        offset = len(curves)
        curves += [{"variant": offset + v, "run": r, "label": "", "epochs": [], "summary": None}
                   for v in range(len(spec.variants))]
        for m in client.run_experiment(spec):
            if m.HasField("epoch"):
                c = curves[offset + m.epoch.variant]
                c["label"] = m.epoch.label + suffix
                c["epochs"].append(m.epoch)
            elif m.HasField("summary"):
                for s in m.summary.variants:
                    curves[offset + s.variant]["summary"] = s
    for c in curves:
        c["epochs"].sort(key=lambda e: e.epoch)
    return curves


def num(x):
    """%.17g, the CLI's CSV format (round-trips every double)."""
    return "%.17g" % x


def curves_csv(curves, layers):
    """The CLI's `<preset>.csv`: one row per (variant, epoch)."""
    head = "variant,label,epoch,step,loss,accuracy,output_attenuation,diverged"
    head += "".join(f",layer{l}_{f}" for l in range(layers) for f in LAYER_FIELDS)
    lines = [head]
    for c in curves:
        for e in c["epochs"]:
            row = [str(c["variant"]), c["label"], str(e.epoch), str(e.step), num(e.loss), num(e.accuracy),
                   num(e.saturation.output_attenuation), "1" if e.diverged else "0"]
            for l in range(layers):
                if l >= len(e.saturation.layers):
                    row += [""] * 6
                    continue
                s = e.saturation.layers[l]
                row += [num(s.mean_derivative), num(s.saturated_fraction), num(s.mean_activation),
                        str(s.dead_units), num(s.weight_gradient_norm), num(s.bias_gradient_norm)]
            lines.append(",".join(row))
    return "\n".join(lines) + "\n"


def summary_table(curves, epochs, classification):
    """The CLI's summary table (loss at 0, epochs/6, epochs/2, epochs, ...)."""
    e1, e2 = epochs // 6, epochs // 2

    def loss_at(c, e):
        return next(("%g" % m.loss for m in c["epochs"] if m.epoch == e), "-")

    rows = [["VARIANT", "LOSS@0", f"LOSS@{e1}", f"LOSS@{e2}", f"LOSS@{epochs}", "ACCURACY",
             "EPOCHS_TO_HALF", "ATTEN@0", "MEAN_ATTEN"]]
    for c in curves:
        s = c["summary"]
        rows.append([c["label"], "%g" % s.initial_loss, loss_at(c, e1), loss_at(c, e2), "%g" % s.final_loss,
                     "%g" % s.final_accuracy if classification else "-",
                     str(s.epochs_to_half_loss) if s.epochs_to_half_loss > 0 else "never",
                     "%g" % s.initial_output_attenuation, "%g" % s.mean_output_attenuation])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
                     for r in rows) + "\n"


def series(c, y):
    """(epochs, values) of one curve; y picks a value from an EpochMetrics."""
    return [e.epoch for e in c["epochs"]], [y(e) for e in c["epochs"]]


def save(fig, out, name):
    path = out / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def curve_figures(out, name, title, curves, runs, classification, plot_output, hidden_layers):
    """The CLI's figures of one preset (CurveFigures in client/cli/experiment_figures.cc)."""
    # Learning curves: one panel per run, each comparing its losses from
    # identical parameters.
    n = len(runs)
    fig, axes = plt.subplots(1, n, figsize=(13 if n > 1 else 9.6, 5.6 if n > 1 else 6), squeeze=False)
    fig.suptitle(f"{title}: learning curves")
    for r, ax in enumerate(axes[0]):
        for c in curves:
            if c["run"] == r:
                ax.plot(*series(c, lambda e: e.loss), label=c["label"])
        ax.set(title=runs[r][0].display_name, xlabel=EPOCH_LABEL, ylabel="mean cost per sample (mse: ½(a−y)²; ce: nats)")
        ax.set_ylim(bottom=0)
        ax.legend()
    fig.tight_layout()
    save(fig, out, f"{name}_loss")

    if classification:
        fig, ax = plt.subplots(figsize=(9.6, 6))
        for c in curves:
            ax.plot(*series(c, lambda e: e.accuracy), label=c["label"])
        ax.set(title=f"{title}: accuracy", xlabel=EPOCH_LABEL,
               ylabel="training accuracy (fraction classified correctly)", ylim=(0, 1.02))
        ax.legend(loc="lower right")
        fig.tight_layout()
        save(fig, out, f"{name}_accuracy")

    fig, ax = plt.subplots(figsize=(9.6, 6))
    for c in curves:
        ax.plot(*series(c, lambda e: e.saturation.output_attenuation), label=c["label"])
    ax.set_yscale("log")
    ax.set_ylim(top=2)
    ax.set(title=f"{title}: output attenuation ‖δ‖/‖a−y‖", xlabel=EPOCH_LABEL,
           ylabel="‖δ‖ / ‖a − y‖ at the output (1 = no attenuation; log scale)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    save(fig, out, f"{name}_attenuation")

    if plot_output:
        fig, ax = plt.subplots(figsize=(9.6, 6))
        for c in curves:
            ax.plot(*series(c, lambda e: e.saturation.layers[0].mean_activation), label=c["label"])
        ax.set(title=f"{title}: output a (target 0)", xlabel=EPOCH_LABEL,
               ylabel="output activation a = σ(w·1 + b)", ylim=(0, 1))
        ax.legend()
        fig.tight_layout()
        save(fig, out, f"{name}_output")

    if hidden_layers:
        for fname, field, ylabel, ylim, what in [
                ("activations", "mean_activation", "mean sigmoid activation a over units and samples", (0, 1),
                 "mean activation per hidden layer"),
                ("saturation", "mean_derivative", "mean σ′(z) = a(1 − a) (0.25 = unsaturated; → 0 = saturated)",
                 (0, 0.26), "mean f′(z) per hidden layer")]:
            cols = min(len(curves), 3)
            fig, axes = plt.subplots(1, cols, figsize=(min(15, 5.2 * len(curves)), 5.2), squeeze=False)
            fig.suptitle(f"{title}: {what}")
            for c, ax in zip(curves, axes[0]):
                for l in range(hidden_layers):
                    top = " (top)" if l + 1 == hidden_layers else ""
                    ax.plot(*series(c, lambda e: getattr(e.saturation.layers[l], field)),
                            label=f"hidden layer {l + 1}{top}")
                ax.set(title=c["label"], xlabel=EPOCH_LABEL, ylabel=ylabel, ylim=ylim)
                ax.legend(loc="lower left" if fname == "saturation" else "upper right")
            fig.tight_layout()
            save(fig, out, f"{name}_{fname}")


def write(out, name, text):
    (out / name).write_text(text)
    print(f"wrote {out / name}")


# %% [markdown]
# ## Connect

# %%
def connect(server):
    c = satlab.Client(server, timeout=120)
    c.wait_ready(10)
    return c


# %% [markdown]
# ## `factor`: the output gradient as a function of a
#
# One ComputeGradients call on one sigmoid neuron (w = 1, b = 0) over 999
# rows whose inputs z = logit(a) put its output at a = 0.001 … 0.999, target
# 0, under MSE and, as a counterfactual loss in the same call, BCE. δ (the
# output delta) under MSE carries the factor σ′(z) = a(1 − a); under BCE it
# does not.

# %%
def factor(client, out):
    a_grid = [i / 1000.0 for i in range(1, 1000)]
    z = [math.log(a / (1 - a)) for a in a_grid]  # math.log: the same libm log as the CLI
    net = client.create_network(input_size=1, layers=[(1, "sigmoid")], loss="mse", dtype="float64",
                                parameters=[(np.array([[1.0]]), np.array([0.0]))])
    try:
        g, other = client.compute_gradients(net, np.array(z).reshape(-1, 1), np.zeros((len(z), 1)),
                                            counterfactual_losses=["bce"])
    finally:
        client.delete_network(net)
    mse, bce = g.output_delta[:, 0], other["bce"].output_delta[:, 0]
    a = np.array([1 / (1 + math.exp(-zi)) for zi in z])
    lines = ["a,sigmoid_derivative,delta_mse,delta_bce,attenuation_mse"]
    lines += [",".join(num(v) for v in (a[i], a[i] * (1 - a[i]), mse[i], bce[i], mse[i] / bce[i]))
              for i in range(len(z))]
    write(out, "factor.csv", "\n".join(lines) + "\n")

    table = ["A      A(1-A)    DELTA_MSE  DELTA_BCE  MSE/BCE"]
    for at in (0.5, 0.6, 0.8, 0.9, 0.95, 0.99, 0.999):
        i = round(at * 1000) - 1
        table.append(f"{a_grid[i]:<6g} {a_grid[i] * (1 - a_grid[i]):<9g} {mse[i]:<10g} {bce[i]:<10g} "
                     f"{mse[i] / bce[i]:g}")
    write(out, "factor_summary.txt", "\n".join(table) + "\n")
    print("\n".join(table))

    fig, ax = plt.subplots(figsize=(9.6, 6))
    ax.plot(a, bce, label="cross-entropy: δ = a − y")
    ax.plot(a, mse, label="mse: δ = (a − y)·a(1 − a)")
    ax.plot(a, a * (1 - a), "--", label="the factor σ′(z) = a(1 − a)")
    for at, text in ((0.6, "a=0.6: a(1−a) = 0.24"), (0.95, "a=0.95: a(1−a) = 0.0475")):
        ax.plot([at], [at * (1 - at)], "ko")
        ax.annotate(text, (at, at * (1 - at)), textcoords="offset points",
                    xytext=(8, -14) if at < 0.9 else (-150, 30))
    ax.set(title="Output gradient δ = ∂C/∂z of a sigmoid unit with target y = 0",
           xlabel="output a = σ(z)  (target y = 0: larger a = more wrong)", ylabel="δ = ∂C/∂z per sample",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    fig.tight_layout()
    save(fig, out, "factor")
    return {"a": a, "delta_mse": mse, "delta_bce": bce}


# %% [markdown]
# ## `nielsen`: one neuron, x = 1 → y = 0 (Nielsen, *NNDL*, ch. 3)
#
# SGD η = 0.15, 300 epochs of one step, from (w, b) = (0.6, 0.9) (a = 0.82)
# and from (2, 2) (a = 0.98), each under MSE and BCE: one RunExperiment per
# start, both losses from identical parameters. From (2, 2) MSE sits on a
# plateau for ~150 epochs; BCE halves its loss by epoch 8.

# %%
def nielsen_runs(epochs=300):
    runs = []
    for w, b in ((0.6, 0.9), (2.0, 2.0)):
        spec = experiment_pb2.ExperimentSpec(
            display_name=f"nielsen, start w={w:g} b={b:g}",
            dataset=experiment_pb2.Dataset(builtin=experiment_pb2.BuiltinDataset(
                kind=experiment_pb2.DATASET_KIND_SINGLE_SAMPLE)),
            variants=[experiment_pb2.ExperimentVariant(label="mse", output_activation=network_pb2.ACTIVATION_SIGMOID,
                                                       loss=network_pb2.LOSS_MSE),
                      experiment_pb2.ExperimentVariant(label="bce", output_activation=network_pb2.ACTIVATION_SIGMOID,
                                                       loss=network_pb2.LOSS_BCE)],
            epochs=epochs, no_shuffle=True, optimizer=satlab.sgd(0.15), dtype=network_pb2.DTYPE_FLOAT64)
        spec.init.scheme = network_pb2.INIT_SCHEME_EXPLICIT
        p = spec.init.parameters.add()
        satlab.to_tensor(np.array([[w]]), out=p.weights)
        satlab.to_tensor(np.array([b]), out=p.biases)
        runs.append((spec, f" from w={w:g} b={b:g}"))
    return runs


def nielsen(client, out):
    runs = nielsen_runs()
    curves = run_curves(client, runs)
    write(out, "nielsen.csv", curves_csv(curves, layers=1))
    table = summary_table(curves, 300, classification=False)
    write(out, "nielsen_summary.txt", table)
    print(table)
    curve_figures(out, "nielsen", "One sigmoid neuron learning x = 1 -> y = 0 (eta = 0.15)", curves, runs,
                  classification=False, plot_output=True, hidden_layers=0)
    return curves


# %% [markdown]
# ## `digits`: real data, three pairings
#
# Debian's python3-sklearn ships the UCI digits (1797 8×8 images). Pixels
# scaled to [0, 1], labels one-hot; 64-30-10 with 30 sigmoid hidden units,
# U(±1/√fan_in) init (seed 1), SGD η = 0.5, minibatches of 10, 30 epochs:
# softmax+cce vs sigmoid+mse vs softmax+mse.

# %%
def read_digits(path):
    with gzip.open(path, "rt") if str(path).endswith(".gz") else open(path) as f:
        data = np.loadtxt(f, delimiter=",", dtype=np.float64)
    inputs = data[:, :-1] * (1.0 / 16.0)  # pixels 0..16 -> [0, 1], as the CLI scales them
    labels = data[:, -1].astype(int)
    targets = np.zeros((len(labels), 10))
    targets[np.arange(len(labels)), labels] = 1.0
    return inputs, targets


def digits_runs(path, epochs=30):
    inputs, targets = read_digits(path)
    spec = experiment_pb2.ExperimentSpec(
        display_name="digits",
        hidden_layers=[network_pb2.LayerSpec(units=30, activation=network_pb2.ACTIVATION_SIGMOID)],
        init=network_pb2.Initialization(scheme=network_pb2.INIT_SCHEME_UNIFORM_FAN_IN, seed=1),
        variants=[experiment_pb2.ExperimentVariant(label=label, output_activation=activation(act), loss=loss(lo))
                  for label, act, lo in (("softmax+cce", "softmax", "cce"), ("sigmoid+mse", "sigmoid", "mse"),
                                         ("softmax+mse", "softmax", "mse"))],
        epochs=epochs, batch_size=10, shuffle_seed=1, optimizer=satlab.sgd(0.5))
    satlab.to_tensor(inputs, np.float64, out=spec.dataset.inline.inputs)
    satlab.to_tensor(targets, np.float64, out=spec.dataset.inline.targets)
    return [(spec, "")]


def digits(client, out, path=DIGITS_CSV):
    runs = digits_runs(path)
    curves = run_curves(client, runs)
    write(out, "digits.csv", curves_csv(curves, layers=2))
    table = summary_table(curves, 30, classification=True)
    write(out, "digits_summary.txt", table)
    print(table)
    curve_figures(out, "digits", "Handwritten digits (8x8, 1797 images), 64-30-10", curves, runs,
                  classification=True, plot_output=False, hidden_layers=1)
    return curves


# %% [markdown]
# ## Run everything

# %%
def main(argv=None):
    a = parse_args(argv)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    presets = a.presets.split(",")
    with connect(a.server) as client:
        if "factor" in presets:
            factor(client, out)
        if "nielsen" in presets:
            nielsen(client, out)
        if "digits" in presets:
            digits(client, out, a.digits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
