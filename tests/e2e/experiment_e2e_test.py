#!/usr/bin/env python3
"""End-to-end: `satlab experiment nielsen|factor --out DIR` against a real
satlab-server writes its table, curves (CSV, JSON) and figures (PNG, SVG).

Usage: experiment_e2e_test.py SERVER_BINARY CLI_BINARY
The server picks its own port (--port=0) and is stopped by PID.
"""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

SERVER, CLI = sys.argv[1], sys.argv[2]

from live_server import start_server, stop_server  # noqa: E402
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ExperimentEndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server, cls.address = start_server(SERVER, "--port=0", "--http_port=-1")
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        stop_server(cls.server)
        cls.tmp.cleanup()

    def run_cli(self, *args):
        cmd = [CLI, "--server", self.address] + list(args)
        start = time.monotonic()
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        elapsed = time.monotonic() - start
        self.assertEqual(result.returncode, 0, "%s\nstdout: %s\nstderr: %s" %
                         (cmd, result.stdout, result.stderr))
        return result, elapsed

    def assert_figure(self, out, stem):
        with open(os.path.join(out, stem + ".png"), "rb") as f:
            self.assertEqual(f.read(8), PNG_MAGIC, stem)
        with open(os.path.join(out, stem + ".svg")) as f:
            svg = f.read()
        self.assertIn("<svg", svg)
        self.assertIn("epoch" if stem != "factor" else "output a", svg)

    def test_nielsen_writes_table_curves_and_figures(self):
        out = os.path.join(self.tmp.name, "nielsen")
        result, elapsed = self.run_cli("experiment", "nielsen", "--out", out)
        self.assertLess(elapsed, 30, "nielsen should take seconds")
        self.assertIn("mse from w=2 b=2", result.stdout)
        self.assertIn("LOSS@150", result.stdout)
        # The progress line's last word: the server's compute time and the
        # wall time of the calls around it, which is never less.
        done = re.search(r"done in ([0-9.]+) s of server compute, ([0-9.]+) s of calls",
                         result.stderr)
        self.assertIsNotNone(done, result.stderr)
        compute, calls = float(done.group(1)), float(done.group(2))
        self.assertGreater(compute, 0)
        self.assertGreaterEqual(calls, compute)
        self.assertLess(calls, elapsed)
        with open(os.path.join(out, "nielsen.csv")) as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(len(rows), 4 * 301)
        curves = {}
        for r in rows:
            curves.setdefault(r["label"], {})[int(r["epoch"])] = float(r["loss"])
        mse, bce = curves["mse from w=2 b=2"], curves["bce from w=2 b=2"]
        # The literature's picture: mse barely moves for ~150 epochs, bce falls.
        self.assertGreater(mse[150], 0.5 * mse[0])
        self.assertLess(bce[50], 0.25 * bce[0])
        with open(os.path.join(out, "nielsen.json")) as f:
            data = json.load(f)
        self.assertEqual(len(data["curves"]), 4)
        self.assertEqual(len(data["curves"][0]["epochs"]), 301)
        for stem in ("nielsen_loss", "nielsen_attenuation", "nielsen_output"):
            self.assert_figure(out, stem)

    def test_factor_writes_the_a_one_minus_a_curve(self):
        out = os.path.join(self.tmp.name, "factor")
        result, _ = self.run_cli("experiment", "factor", "--out", out)
        self.assertIn("0.24", result.stdout)
        self.assertIn("0.0475", result.stdout)
        with open(os.path.join(out, "factor.csv")) as f:
            rows = list(csv.DictReader(f))
        at = {round(float(r["a"]), 3): r for r in rows}
        self.assertAlmostEqual(float(at[0.6]["attenuation_mse"]), 0.24, places=9)
        self.assertAlmostEqual(float(at[0.95]["attenuation_mse"]), 0.0475, places=9)
        self.assert_figure(out, "factor")

    def test_bad_spec_file_names_the_field(self):
        spec = os.path.join(self.tmp.name, "bad.json")
        with open(spec, "w") as f:
            json.dump({"dataset": {"builtin": {"kind": "DATASET_KIND_XOR"}},
                       "variants": [{"outputActivation": "ACTIVATION_SIGMOID",
                                     "loss": "LOSS_BCE"}],
                       "epochs": 0}, f)
        cmd = [CLI, "--server", self.address, "experiment", spec, "--out",
               os.path.join(self.tmp.name, "bad")]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("spec.epochs: expected >= 1, got 0", result.stderr)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]], verbosity=2)
