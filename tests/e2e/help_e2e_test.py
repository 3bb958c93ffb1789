#!/usr/bin/env python3
"""End-to-end: `satlab-server --help` lists the server's own flags.

Usage: help_e2e_test.py SERVER_BINARY
Runs the real binary with --help (and --helpfull); neither starts a server.
"""
import re
import subprocess
import sys
import unittest

SERVER = sys.argv[1]


def run(*args):
    return subprocess.run([SERVER] + list(args), capture_output=True,
                          text=True, timeout=30)


class HelpEndToEnd(unittest.TestCase):
    def test_help_lists_server_flags_with_defaults_and_exits_0(self):
        result = run("--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        out = result.stdout
        self.assertNotIn("No flags matched", out)
        self.assertIn("SATLAB_<FLAG>", out)
        self.assertRegex(out, r"--port \(default: 50051\)")
        self.assertRegex(out, r"--max_message_bytes \(default: \d+\)")
        self.assertRegex(out, r"--host \(default: 127\.0\.0\.1\)")
        # Each flag comes with its help text.
        self.assertIn("gRPC port", out)
        # Only the server's flags: no library flags (those are --helpfull's).
        self.assertNotIn("--flagfile", out)
        names = re.findall(r"^  --(\w+) \(default:", out, re.MULTILINE)
        self.assertEqual(names, sorted(names))
        self.assertGreaterEqual(len(names), 10)

    def test_helpfull_still_lists_every_flag(self):
        result = run("--helpfull")
        self.assertIn("--port", result.stdout)
        self.assertIn("--flagfile", result.stdout)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]], verbosity=2)
