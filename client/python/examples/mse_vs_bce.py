#!/usr/bin/env python3
"""The single-neuron comparison of Nielsen's chapter 3, against a live server.

One sigmoid neuron, input x = 1, target y = 0, starting at w = b = 2
(z = 4, a = sigmoid(4) = 0.982). Under the quadratic cost (mse) the gradient
carries the factor sigmoid'(z) = a(1 - a) = 0.0177, so

    dC/dw = (a - y) a (1 - a) x = 0.017345      (mse)
    dC/dw = (a - y) x           = 0.982014      (bce, cross-entropy)

ComputeGradients returns both in one call (bce as a counterfactual loss).
Then two networks, one per loss, train from the same start and the losses
are printed side by side: mse crawls off the plateau, bce does not stall.

Usage: mse_vs_bce.py [--server HOST:PORT] [--steps N] [--lr ETA]
"""

import argparse
import os
import pathlib
import sys
import uuid

import numpy as np

try:
    import satlab  # noqa: F401  (the installed package: pip install client/python)
except ImportError:  # a checkout: client/python after generate.py
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
import satlab  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default=os.environ.get("SATLAB_SERVER", "127.0.0.1:50051"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.15)
    args = ap.parse_args(argv)

    x = np.array([[1.0]])
    y = np.array([[0.0]])
    start = [(np.array([[2.0]]), np.array([2.0]))]   # W [1, 1], b [1]
    suffix = uuid.uuid4().hex[:8]

    with satlab.Client(args.server) as c:
        nets = {}
        for loss in ("mse", "bce"):
            nets[loss] = c.create_network(
                input_size=1, layers=[(1, "sigmoid")], loss=loss, parameters=start,
                optimizer=satlab.sgd(args.lr), dtype="float64",
                network_id=f"neuron-{loss}-{suffix}")
        try:
            g, counterfactual = c.compute_gradients(nets["mse"], x, y, counterfactual_losses=["bce"])
            bce = counterfactual["bce"]
            print("one neuron, x=1, y=0, w=b=2, a=sigmoid(4)=%.6f" % (1 / (1 + np.exp(-4))))
            print(f"{'loss':>5} {'C':>10} {'dC/dw':>10} {'dC/db':>10} {'attenuation':>12}")
            for grad in (g, bce):
                dw, db = grad.layers[0]
                print(f"{grad.loss:>5} {grad.loss_value:10.6f} {dw[0, 0]:10.6f} {db[0]:10.6f} "
                      f"{grad.saturation.output_attenuation:12.6f}")
            print(f"ratio dC/dw bce/mse = {bce.layers[0][0][0, 0] / g.layers[0][0][0, 0]:.1f}")

            print(f"\ntraining {args.steps} steps, SGD lr={args.lr}")
            print(f"{'step':>5} {'mse loss':>10} {'mse a':>8} {'bce loss':>10} {'bce a':>8}")
            report = {0, args.steps} | set(range(0, args.steps + 1, max(1, args.steps // 6)))
            for step in range(1, args.steps + 1):
                results = {loss: c.train_step(net, x, y) for loss, net in nets.items()}
                if step in report:
                    a = {loss: float(c.forward(net, x)[0, 0]) for loss, net in nets.items()}
                    print(f"{step:5d} {results['mse'].loss:10.6f} {a['mse']:8.4f} "
                          f"{results['bce'].loss:10.6f} {a['bce']:8.4f}")
        finally:
            for net in nets.values():
                c.delete_network(net)
    return 0


if __name__ == "__main__":
    sys.exit(main())
