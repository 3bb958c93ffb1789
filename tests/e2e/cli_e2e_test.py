#!/usr/bin/env python3
"""End-to-end: the real satlab-server binary driven by the real satlab CLI.

Usage: cli_e2e_test.py SERVER_BINARY CLI_BINARY
Starts the server on 127.0.0.1 with a port it picks itself, runs the CLI
against it, and stops the server with SIGTERM (checking the graceful exit).
Every process it starts is stopped by PID before it returns.
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest

SERVER, CLI = sys.argv[1], sys.argv[2]

from live_server import start_server, stop_server  # noqa: E402


class CliEndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Port 0 through the environment: every flag has a SATLAB_* twin.
        cls.server, cls.address = start_server(SERVER, env_extra={
            "SATLAB_PORT": "0", "SATLAB_HTTP_PORT": "-1", "SATLAB_LOG_FORMAT": "json"})
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        stop_server(cls.server)
        cls.tmp.cleanup()

    def cli(self, *args, expect=0, json_out=False):
        cmd = [CLI, "--server", self.address] + (["--json"] if json_out else []) + list(args)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, expect,
                         "%s\nstdout: %s\nstderr: %s" % (cmd, result.stdout, result.stderr))
        if json_out and expect == 0:
            return json.loads(result.stdout)
        return result

    def test_seed_neuron_mse_versus_bce(self):
        self.cli("create", "neuron", "--input-size", "1", "--layers", "1:sigmoid",
                 "--loss", "mse", "--params", '{"layers":[{"weights":[[2]],"biases":[2]}]}')
        text = self.cli("grad", "neuron", "--inputs", "1", "--targets", "0",
                        "--counterfactual", "bce").stdout
        self.assertIn("0.017345", text)
        self.assertIn("0.982014", text)
        out = self.cli("grad", "neuron", "--inputs", "1", "--targets", "0",
                       "--counterfactual", "bce", json_out=True)
        mse = out["gradients"]
        bce = out["counterfactuals"][0]
        self.assertAlmostEqual(mse["layers"][0]["weights"]["doubleValues"][0], 0.017345, places=6)
        self.assertAlmostEqual(bce["layers"][0]["weights"]["doubleValues"][0], 0.982014, places=6)
        a = 1 / (1 + 2.718281828459045 ** -4)
        self.assertAlmostEqual(mse["saturation"]["outputAttenuation"], a * (1 - a), places=9)
        self.assertAlmostEqual(bce["saturation"]["outputAttenuation"], 1.0, places=12)

    def test_params_round_trip_and_step(self):
        self.cli("create", "pr", "--input-size", "2", "--layers", "3:tanh,1:sigmoid",
                 "--loss", "bce", "--seed", "4")
        params = json.loads(self.cli("params", "get", "pr").stdout)
        params["layers"][1]["biases"] = [0.25]
        path = os.path.join(self.tmp.name, "params.json")
        with open(path, "w") as f:
            json.dump(params, f)
        self.cli("params", "set", "pr", "@" + path)
        again = json.loads(self.cli("params", "get", "pr").stdout)
        self.assertEqual(again["layers"], params["layers"])
        step = self.cli("step", "pr", "--inputs", "1,2;3,4", "--targets", "0;1", json_out=True)
        self.assertEqual(int(step["step"]), 1)
        self.assertEqual(int(step["batchSize"]), 2)

    def test_train_on_csv_with_progress_then_eval(self):
        path = os.path.join(self.tmp.name, "xor.csv")
        with open(path, "w") as f:
            f.write("x1,x2,y\n")
            for _ in range(16):
                f.write("0,0,0\n0,1,1\n1,0,1\n1,1,0\n")
        self.cli("create", "xor", "--input-size", "2", "--layers", "8:tanh,1:sigmoid",
                 "--loss", "bce", "--lr", "0.5", "--seed", "3")
        out = self.cli("train", "xor", "--data", path, "--epochs", "60",
                       "--batch-size", "8", json_out=True)
        losses = [e["loss"] for e in out["epochs"]]
        self.assertEqual(len(losses), 60)
        self.assertLess(losses[-1], 0.5 * losses[0])
        text = self.cli("train", "xor", "--data", path, "--epochs", "2")
        self.assertIn("[", text.stderr)  # the progress bar
        self.assertIn("EPOCH", text.stdout)
        ev = self.cli("eval", "xor", "--data", path, json_out=True)
        self.assertEqual(int(ev["samples"]), 64)
        self.assertGreater(ev["accuracy"], 0.7)

    def test_bad_input_clear_error_and_nothing_changed(self):
        self.cli("create", "strict", "--input-size", "1", "--layers", "1:sigmoid", "--loss", "mse")
        before = self.cli("params", "get", "strict").stdout
        err = self.cli("step", "strict", "--inputs", "1,2", "--targets", "0", expect=1).stderr
        self.assertIn("INVALID_ARGUMENT", err)
        self.assertIn("batch.inputs: expected 1 columns, got 2", err)
        err = self.cli("create", "bad", "--input-size", "1", "--layers", "1:relu",
                       "--loss", "bce", expect=1).stderr
        self.assertIn("network.spec.loss", err)
        self.assertIn("relu", err)
        self.assertEqual(self.cli("params", "get", "strict").stdout, before)
        err = self.cli("get", "ghost", expect=1).stderr
        self.assertIn("NOT_FOUND", err)

    def test_list_and_delete(self):
        self.cli("create", "listed", "--input-size", "1", "--layers", "1:sigmoid", "--loss", "mse")
        names = [n["name"] for n in self.cli("list", json_out=True)["networks"]]
        self.assertIn("networks/listed", names)
        self.cli("delete", "listed")
        names = [n["name"] for n in self.cli("list", json_out=True).get("networks", [])]
        self.assertNotIn("networks/listed", names)

    def test_every_subcommand_has_help(self):
        top = subprocess.run([CLI, "--help"], capture_output=True, text=True)
        self.assertEqual(top.returncode, 0)
        commands = re.findall(r"^  (\w+) ", top.stdout, re.M)
        self.assertGreaterEqual(len(commands), 12)
        for command in commands:
            r = subprocess.run([CLI, command, "--help"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, command)
            self.assertIn("usage: satlab " + command, r.stdout)

    def test_health(self):
        self.assertIn("SERVING", self.cli("health").stdout)
        self.assertEqual(self.cli("health", "", json_out=True)["status"], "SERVING")


class BlasThreadsFlag(unittest.TestCase):
    def test_pool_size_applied_and_logged(self):
        server, _ = start_server(SERVER, "--port=0", "--http_port=-1", "--blas_threads=1")
        try:
            server.send_signal(signal.SIGTERM)
            self.assertEqual(server.wait(timeout=30), 0)
            self.assertIn("1 BLAS threads per product", server.stderr.read())
        finally:
            stop_server(server)

    def test_negative_rejected_before_listening(self):
        r = subprocess.run([SERVER, "--port=0", "--http_port=-1", "--blas_threads=-1"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("blas_threads: expected >= 0, got -1", r.stderr)
        self.assertNotIn("listening", r.stdout)


class GracefulShutdown(unittest.TestCase):
    def test_sigterm_right_after_start_exits_zero(self):
        # OpenBLAS starts its threads before main() can block signals; a
        # SIGTERM landing on one of them used to kill the server with the
        # default action (7 of 40 runs) instead of a drain and exit 0.
        for _ in range(15):
            server, _ = start_server(SERVER, "--port=0", "--http_port=-1")
            try:
                server.send_signal(signal.SIGTERM)
                self.assertEqual(server.wait(timeout=30), 0)
            finally:
                stop_server(server)

    def test_sigterm_drains_in_flight_training_and_exits_zero(self):
        server, address = start_server(SERVER, "--port=0", "--http_port=-1", "--shutdown_grace_seconds=5")
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "data.csv")
                with open(path, "w") as f:
                    for i in range(4000):
                        f.write("%f,%f,%d\n" % (i % 7 / 7, i % 5 / 5, i % 2))
                subprocess.run([CLI, "--server", address, "create", "long", "--input-size", "2",
                                "--layers", "64:sigmoid,1:sigmoid", "--loss", "mse"],
                               check=True, capture_output=True)
                trainer = subprocess.Popen(
                    [CLI, "--server", address, "--quiet", "train", "long", "--data", path,
                     "--epochs", "1", "--batch-size", "1"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                # Wait until training is under way.
                for _ in range(200):
                    r = subprocess.run([CLI, "--server", address, "--json", "get", "long"],
                                       capture_output=True, text=True)
                    if r.returncode == 0 and int(json.loads(r.stdout)["step"]) > 10:
                        break
                    time.sleep(0.05)
                else:
                    self.fail("training never started")
                start = time.monotonic()
                server.send_signal(signal.SIGTERM)
                code = server.wait(timeout=30)
                elapsed = time.monotonic() - start
                self.assertEqual(code, 0)
                self.assertLess(elapsed, 15)
                trainer.communicate(timeout=30)
                stderr = server.stderr.read()
                self.assertIn("draining", stderr)
                # After exit nothing listens any more.
                r = subprocess.run([CLI, "--server", address, "--timeout", "2", "health"],
                                   capture_output=True, text=True)
                self.assertNotEqual(r.returncode, 0)
        finally:
            stop_server(server)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
