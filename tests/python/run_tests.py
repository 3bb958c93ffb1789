#!/usr/bin/env python3
"""Runs the Python client's tests against a live satlab-server.

Usage: run_tests.py --server-bin PATH [unittest args...]
Generates the stubs first (client/python/generate.py). Exits non-zero on any
failure and when no test ran; prints 'N passed, N failed' last.
"""

import argparse
import os
import pathlib
import sys
import unittest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "client" / "python"))
sys.path.insert(0, str(HERE))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", default=os.environ.get("SATLAB_SERVER_BIN"))
    ap.add_argument("rest", nargs="*")
    args = ap.parse_args()
    if not args.server_bin:
        sys.exit("run_tests.py: --server-bin (or SATLAB_SERVER_BIN) is required")
    os.environ["SATLAB_SERVER_BIN"] = os.path.abspath(args.server_bin)

    import generate  # client/python/generate.py
    generate.generate()

    loader = unittest.TestLoader()
    if args.rest:
        suite = loader.loadTestsFromNames(args.rest)
    else:
        suite = loader.discover(str(HERE), pattern="test_*.py", top_level_dir=str(HERE))
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    if result.testsRun == 0:
        print("run_tests.py: no test ran", file=sys.stderr)
        return 1
    # A skipped test is a check that did not run: it fails the suite.
    return 0 if failed == 0 and skipped == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
