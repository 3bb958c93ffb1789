#!/usr/bin/env python3
"""The cost of TLS, in one run: the real satlab-server three times (loopback
plaintext, TLS, mutual TLS; certificates from tests/security/make_certs.sh)
and the Python client measuring
  - connect: a new channel's first call (TCP + TLS handshake + Health/Check),
    median of --connects;
  - TrainStep: median latency on a warm channel (a 16-row batch of a
    16-32-4 network), --steps calls;
  - Train stream: steps/s over --stream_steps minibatches of 64 x 784
    (float32, ~200 KB each; TLS encrypts every byte).
The three servers run at once and the measurements alternate between them
for --rounds rounds; each cell is the median over rounds. Prints one table
with ratios against plaintext. The Python client adds its
own per-call cost, the same in all three columns, so the ratios understate
what TLS adds to a C++ client's latency.

Usage: bench/tls_overhead.py --server-bin build/server/satlab-server
"""

import argparse
import os
import pathlib
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent


def start(binary, flags):
    proc = subprocess.Popen([binary, "--host=127.0.0.1", "--port=0", "--http_port=-1",
                             "--compute_threads=1", *flags], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, SATLAB_DATA_DIR=""))
    match = re.match(r"listening on (\S+)", proc.stdout.readline())
    if not match:
        proc.kill()
        sys.exit("satlab-server did not start")
    return proc, match.group(1)


def connect_and_step(satlab, np, target, kwargs, args):
    """(median connect + first call in ms, median TrainStep in µs)."""
    connects = []
    for _ in range(args.connects):
        t = time.perf_counter()
        with satlab.Client(target, options=[("grpc.use_local_subchannel_pool", 1)],
                           **kwargs) as c:
            c.health()
            connects.append(time.perf_counter() - t)
    with satlab.Client(target, **kwargs) as c:
        net = c.create_network(16, [(32, "tanh"), (4, "sigmoid")], "mse", seed=1)
        x = np.random.default_rng(0).standard_normal((16, 16))
        y = np.zeros((16, 4))
        for _ in range(20):
            c.train_step(net, x, y)
        steps = []
        for _ in range(args.steps):
            t = time.perf_counter()
            c.train_step(net, x, y)
            steps.append(time.perf_counter() - t)
    return statistics.median(connects) * 1e3, statistics.median(steps) * 1e6


def stream_rate(satlab, np, target, kwargs, args):
    """Train stream steps/s over args.stream_steps minibatches of 64 x 784."""
    with satlab.Client(target, **kwargs) as c:
        big = c.create_network(784, [(32, "tanh"), (10, "softmax")], "cce", seed=1,
                               dtype="float32")
        bx = np.random.default_rng(1).standard_normal((64, 784)).astype(np.float32)
        by = np.eye(10, dtype=np.float32)[np.arange(64) % 10]
        t = time.perf_counter()
        last = None
        for last in c.train(big, ((bx, by) for _ in range(args.stream_steps)), report_every=100):
            pass
        elapsed = time.perf_counter() - t
        if last is None or last.result.step != args.stream_steps:
            sys.exit("stream ended early: %s" % last)
    return args.stream_steps / elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", required=True)
    ap.add_argument("--connects", type=int, default=50)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--stream_steps", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5,
                    help="alternating rounds; the table shows each column's median")
    args = ap.parse_args()
    subprocess.run([sys.executable, str(REPO / "client/python/generate.py")], check=True,
                   stdout=subprocess.DEVNULL)
    sys.path.insert(0, str(REPO / "client/python"))
    import numpy as np
    import satlab

    certs = tempfile.mkdtemp(prefix="satlab_tls_bench.")
    try:
        subprocess.run(["bash", str(REPO / "tests/security/make_certs.sh"), certs], check=True)
        c = lambda n: os.path.join(certs, n)  # noqa: E731
        tls = ["--tls_cert_file=" + c("server.pem"), "--tls_key_file=" + c("server.key")]
        configs = [
            ("plaintext", [], {}),
            ("TLS", tls, {"tls_ca_file": c("ca.pem")}),
            ("mTLS", tls + ["--tls_client_ca_file=" + c("ca.pem")],
             {"tls_ca_file": c("ca.pem"), "tls_cert_file": c("client.pem"),
              "tls_key_file": c("client.key")}),
        ]
        # All three servers at once; the measurements alternate between them
        # (rounds), so that a burst of load elsewhere hits every column.
        servers = []
        try:
            for name, flags, kwargs in configs:
                proc, target = start(args.server_bin, flags)
                servers.append((name, proc, target, kwargs))
            results = {name: ([], [], []) for name, _, _, _ in servers}
            for _ in range(args.rounds):
                for name, _, target, kwargs in servers:
                    conn, step = connect_and_step(satlab, np, target, kwargs, args)
                    results[name][0].append(conn)
                    results[name][1].append(step)
                    results[name][2].append(stream_rate(satlab, np, target, kwargs, args))
        finally:
            for _, proc, _, _ in servers:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
        rows = [(name, tuple(statistics.median(v) for v in results[name]))
                for name, _, _, _ in servers]
        for name, _, _, _ in servers:
            print("%s stream steps/s by round: %s" % (
                name, " ".join("%.0f" % r for r in results[name][2])), file=sys.stderr)
        base = rows[0][1]
        print("| transport | connect + first call (ms, median) | TrainStep 16x16 (µs, median) "
              "| Train stream 64x784 f32 (steps/s) |")
        print("|---|---|---|---|")
        for name, (conn, step, rate) in rows:
            print("| %s | %.2f (%.2fx) | %.0f (%.2fx) | %.0f (%.2fx) |" % (
                name, conn, conn / base[0], step, step / base[1], rate, rate / base[2]))
    finally:
        shutil.rmtree(certs, ignore_errors=True)


if __name__ == "__main__":
    main()
