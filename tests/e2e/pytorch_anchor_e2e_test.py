#!/usr/bin/env python3
"""The PyTorch anchor (bench/pytorch_anchor.py --experiment) does the work
of `satlab experiment digits|glorot`: every per-epoch metric of every
variant agrees with satlab's curves (float64, relative 1e-12; measured:
at most 8.4e-15, see docs/benchmarks.md), so the timings that
bench/experiments_anchor.sh compares are of identical work.

Usage: pytorch_anchor_e2e_test.py SERVER_BINARY CLI_BINARY
Needs Debian's python3-torch (scripts/install-deps.sh installs it); fails
if it is missing. The server picks its own port and is stopped by PID.
"""
import csv
import os
import subprocess
import sys
import tempfile
import unittest

SERVER, CLI = sys.argv[1], sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))
ANCHOR = os.path.join(HERE, "..", "..", "bench", "pytorch_anchor.py")
PY = "/usr/bin/python3"  # Debian's, which has python3-torch
sys.path.insert(0, HERE)
from live_server import start_server, stop_server  # noqa: E402

# Relative tolerance of every compared value (float64 throughout). The two
# tools sum in different orders (OpenBLAS and Eigen vs torch's kernels), so
# the last bits differ and the differences grow a little with training.
RTOL = 1e-12
ATOL = 1e-14


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


class PyTorchAnchor(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server, cls.address = start_server(SERVER, "--port=0", "--http_port=-1",
                                               "--data_dir=")
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        stop_server(cls.server)
        cls.tmp.cleanup()

    def compare(self, preset):
        out = os.path.join(self.tmp.name, preset)
        result = subprocess.run(
            [CLI, "--server", self.address, "experiment", preset, "--out", out,
             "--no-figures"], capture_output=True, text=True, timeout=600)
        self.assertEqual(result.returncode, 0, result.stderr)
        torch_csv = os.path.join(self.tmp.name, preset + "-torch.csv")
        result = subprocess.run(
            [PY, ANCHOR, "--experiment", preset, "--threads=1",
             "--curves-out", torch_csv], capture_output=True, text=True, timeout=900)
        self.assertEqual(result.returncode, 0, result.stderr)
        ours = read_csv(os.path.join(out, preset + ".csv"))
        theirs = read_csv(torch_csv)
        self.assertEqual(len(ours), len(theirs))
        self.assertGreater(len(ours), 60)
        columns = [k for k in theirs[0] if k not in ("label",)]
        worst = (0.0, "")
        for a, b in zip(ours, theirs):
            where = "%s variant %s epoch %s" % (preset, a["variant"], a["epoch"])
            self.assertEqual(a["label"], b["label"], where)
            for k in columns:
                x, y = float(a[k]), float(b[k])
                diff = abs(x - y)
                self.assertLessEqual(diff, ATOL + RTOL * abs(x),
                                     "%s %s: satlab %r, torch %r" % (where, k, x, y))
                if x != 0:
                    worst = max(worst, (diff / abs(x), "%s %s" % (where, k)))
        print("%s: %d rows x %d columns agree; largest relative difference %.2g (%s)"
              % (preset, len(ours), len(columns), worst[0], worst[1]))
        # Not trivially equal: training moved the curves (glorot's deep
        # sigmoid net barely moves; that is its point).
        first = [r for r in ours if r["variant"] == "0"]
        moved = abs(float(first[-1]["loss"]) - float(first[0]["loss"]))
        self.assertGreater(moved, 1e-3 * float(first[0]["loss"]))

    def test_digits(self):
        self.compare("digits")

    def test_glorot(self):
        self.compare("glorot")


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
