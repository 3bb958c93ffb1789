#!/usr/bin/env python3
"""End-to-end: `satlab export` from one satlab-server with a durable
--data_dir, `satlab import` into another (ephemeral) server, bitwise equal.

Usage: export_e2e_test.py SERVER_BINARY CLI_BINARY
Both servers pick their own ports; every process started is stopped by PID.
"""
import os
import subprocess
import sys
import tempfile
import unittest

SERVER, CLI = sys.argv[1], sys.argv[2]

from live_server import start_server, stop_server  # noqa: E402

BATCHES = [("1,2,3;0.5,0.1,-1", "1,0;0,1"), ("0,1,0;-1,-2,0.25", "0,1;1,0")]


class ExportEndToEnd(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.servers = []

    def tearDown(self):
        for proc in self.servers:
            stop_server(proc)
        self.tmp.cleanup()

    def start(self, data_dir):
        proc, address = start_server(SERVER, "--port=0", "--http_port=-1",
                                     "--data_dir=" + data_dir)
        self.servers.append(proc)
        return proc, address

    def stop(self, proc):
        self.servers.remove(proc)
        self.assertEqual(stop_server(proc), 0)

    def cli(self, address, *args, expect=0):
        cmd = [CLI, "--server", address] + list(args)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, expect,
                         "%s\nstdout: %s\nstderr: %s" % (cmd, result.stdout, result.stderr))
        return result

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    def test_export_durable_import_elsewhere_bitwise(self):
        data_dir = os.path.join(self.tmp.name, "a")
        a, addr_a = self.start(data_dir)
        self.cli(addr_a, "create", "src", "--input-size", "3", "--layers",
                 "4:tanh,2:identity", "--loss", "mse", "--optimizer", "adam", "--seed", "7")
        for x, y in BATCHES:
            self.cli(addr_a, "step", "src", "--inputs", x, "--targets", y)
        file_a = os.path.join(self.tmp.name, "src.slx")
        out = self.cli(addr_a, "export", "networks/src", file_a).stdout
        self.assertIn("exported networks/src", out)
        exported = self.read(file_a)
        self.assertEqual(exported[:4], b"SLNS")
        self.assertFalse(os.path.exists(file_a + ".tmp"))

        # The durable store gives the same bytes after a restart.
        self.stop(a)
        a, addr_a = self.start(data_dir)
        again = os.path.join(self.tmp.name, "again.slx")
        self.cli(addr_a, "export", "src", again)
        self.assertEqual(self.read(again), exported)

        # Into another server: the same state, bit for bit.
        b, addr_b = self.start("")
        out = self.cli(addr_b, "import", file_a, "--id", "copy").stdout
        self.assertIn("networks/copy", out)
        back = os.path.join(self.tmp.name, "back.slx")
        self.cli(addr_b, "export", "copy", back)
        self.assertEqual(self.read(back), exported)
        # ... and the same next step (the Adam moments moved too).
        x, y = "0.3,0.2,0.1;1,1,1", "1,1;0,0"
        step_a = self.cli(addr_a, "--json", "step", "src", "--inputs", x, "--targets", y).stdout
        step_b = self.cli(addr_b, "--json", "step", "copy", "--inputs", x, "--targets", y).stdout
        self.assertEqual(step_a, step_b)
        self.assertIn('"step"', step_a)

        # Importing again under the same id: ALREADY_EXISTS, exit 1.
        err = self.cli(addr_b, "import", file_a, "--id", "copy", expect=1).stderr
        self.assertIn("ALREADY_EXISTS", err)
        # A damaged file: DATA_LOSS, nothing created.
        damaged = bytearray(exported)
        damaged[len(damaged) // 2] ^= 0x40
        bad = os.path.join(self.tmp.name, "bad.slx")
        with open(bad, "wb") as f:
            f.write(bytes(damaged))
        err = self.cli(addr_b, "import", bad, "--id", "bad", expect=1).stderr
        self.assertIn("DATA_LOSS", err)
        self.assertIn("checksum", err)
        self.cli(addr_b, "get", "bad", expect=1)
        # A missing network cannot be exported, and leaves no file.
        missing = os.path.join(self.tmp.name, "missing.slx")
        err = self.cli(addr_a, "export", "nope", missing, expect=1).stderr
        self.assertIn("NOT_FOUND", err)
        self.assertFalse(os.path.exists(missing) or os.path.exists(missing + ".tmp"))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1])
