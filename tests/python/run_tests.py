#!/usr/bin/env python3
"""Runs the Python client's tests against a live satlab-server, using the
satlab package installed into a throwaway venv (installed_package.py), not
the source tree.

Usage: run_tests.py --server-bin PATH --cli-bin PATH [unittest names...]
(--cli-bin: the C++ `satlab` CLI, which test_walkthrough.py compares with.)
Exits non-zero on any failure, on a skipped test and when no test ran;
prints 'N passed, N failed' last.
"""

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import unittest

HERE = pathlib.Path(__file__).resolve().parent


def run_suite(names):
    """Inside the venv: import checks, then the unittest suite."""
    import satlab
    if not pathlib.Path(satlab.__file__).resolve().is_relative_to(pathlib.Path(sys.prefix).resolve()):
        print(f"run_tests.py: satlab imported from {satlab.__file__}, not from the venv {sys.prefix}",
              file=sys.stderr)
        return 1
    print(f"run_tests.py: testing the installed package {satlab.__file__}")
    loader = unittest.TestLoader()
    if names:
        suite = loader.loadTestsFromNames(names)
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", default=os.environ.get("SATLAB_SERVER_BIN"))
    ap.add_argument("--cli-bin", default=os.environ.get("SATLAB_CLI_BIN"))
    ap.add_argument("--in-venv", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*")
    args = ap.parse_args()
    if args.in_venv:
        sys.path.insert(0, str(HERE))
        return run_suite(args.rest)
    if not args.server_bin:
        sys.exit("run_tests.py: --server-bin (or SATLAB_SERVER_BIN) is required")
    sys.path.insert(0, str(HERE))
    from installed_package import install_into_venv

    with tempfile.TemporaryDirectory(prefix="satlab-pytest-") as tmp:
        python = install_into_venv(tmp)
        env = dict(os.environ, SATLAB_SERVER_BIN=os.path.abspath(args.server_bin))
        if args.cli_bin:
            env["SATLAB_CLI_BIN"] = os.path.abspath(args.cli_bin)
        env.pop("PYTHONPATH", None)
        # cwd is the temp dir and sys.path[0] this directory: the source tree's
        # client/python is on no path.
        return subprocess.run([str(python), str(pathlib.Path(__file__).resolve()), "--in-venv", *args.rest],
                              env=env, cwd=tmp).returncode


if __name__ == "__main__":
    sys.exit(main())
