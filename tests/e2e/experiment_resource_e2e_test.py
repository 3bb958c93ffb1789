#!/usr/bin/env python3
"""End-to-end (issue 12): experiments are kept across a server restart.

`satlab experiment nielsen --id ID` against a real satlab-server with
--data_dir; the server is stopped and started again on the same directory;
then the same command with the same --id fetches the kept run (no training:
the same elapsed time comes back) and writes byte-identical CSV and JSON,
and `satlab experiments get` shows the same curves and summary.
(WatchMetrics replay after a restart: tests/service/experiment_resource_test.)

Usage: experiment_resource_e2e_test.py SERVER_BINARY CLI_BINARY
Each server picks its own port (--port=0) and is stopped by PID.
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

SERVER, CLI = sys.argv[1], sys.argv[2]

from live_server import start_server, stop_server  # noqa: E402


class ExperimentResourceEndToEnd(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.data = os.path.join(self.tmp.name, "data")
        self.server = None

    def tearDown(self):
        if self.server is not None:
            stop_server(self.server)
        self.tmp.cleanup()

    def start(self):
        self.server, self.address = start_server(
            SERVER, "--port=0", "--http_port=-1", "--data_dir=" + self.data)

    def restart(self):
        self.assertEqual(stop_server(self.server), 0)
        self.server = None
        self.start()

    def cli(self, *args):
        cmd = [CLI, "--server", self.address, "--quiet"] + list(args)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, "%s\nstdout: %s\nstderr: %s" %
                         (cmd, result.stdout, result.stderr))
        return result.stdout

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    def test_FetchAfterRestart_WritesTheSameFiles(self):
        self.start()
        first = os.path.join(self.tmp.name, "first")
        again = os.path.join(self.tmp.name, "again")
        self.cli("experiment", "nielsen", "--epochs", "40", "--id", "nielsen-e2e",
                 "--out", first, "--no-figures")
        kept = json.loads(self.cli("--json", "experiments", "get", "experiments/nielsen-e2e-2"))
        self.restart()
        self.cli("experiment", "nielsen", "--epochs", "40", "--id", "nielsen-e2e",
                 "--out", again, "--no-figures")
        for name in ("nielsen.csv", "nielsen.json", "nielsen_summary.txt"):
            self.assertEqual(self.read(os.path.join(first, name)),
                             self.read(os.path.join(again, name)), name)
        after = json.loads(self.cli("--json", "experiments", "get", "experiments/nielsen-e2e-2"))
        self.assertEqual(after["state"], "EXPERIMENT_STATE_SUCCEEDED")
        self.assertEqual(after["curves"], kept["curves"])
        self.assertEqual(after["summary"], kept["summary"])
        self.assertEqual(len(after["curves"]), 2 * 41)
        listed = self.cli("experiments", "list")
        # The preset makes two runs: ID-1 and ID-2.
        self.assertIn("experiments/nielsen-e2e-1", listed)
        self.assertIn("experiments/nielsen-e2e-2", listed)
        self.cli("experiments", "delete", "experiments/nielsen-e2e-2")
        result = subprocess.run([CLI, "--server", self.address, "experiments", "get",
                                 "experiments/nielsen-e2e-2"],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 1)
        self.assertIn("NOT_FOUND: experiments/nielsen-e2e-2", result.stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
