#!/usr/bin/env python3
"""End-to-end: the real satlab-server says which kernels it computes with,
in its log and on /metrics (issue 15, item 1), and its OpenBLAS guard
replaces a generic core on a CPU with AVX2/AVX-512.

Usage: kernels_e2e_test.py SERVER_BINARY [native-engines|no-native-engines]
The second argument says whether the build made the native engines
(libsatlab_engine_<level>.so next to the server; not in sanitizer builds).
A "bad" OpenBLAS detection is simulated with OPENBLAS_CORETYPE=Prescott
(what OpenBLAS 0.3.21 picks on AVX-512 Xeons it does not know). Every
server it starts is stopped by PID before the test returns.
"""
import re
import signal
import subprocess
import sys
import unittest
import urllib.request

SERVER = sys.argv[1]
NATIVE_ENGINES = (sys.argv[2] if len(sys.argv) > 2 else "native-engines") == "native-engines"

from live_server import start_server  # noqa: E402

INFO = re.compile(r'^satlab_kernels_info\{engine="(\w+)",blas_core="(\w+)",'
                  r'blas_detected="(\w+)",blas_forced="(true|false)",'
                  r'network_engine="([\w-]+)"\} 1$', re.M)


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def best_engine(flags):
    if {"avx512f", "avx512dq"} <= flags:
        return "avx512"
    return "avx2" if "avx2" in flags else "baseline"


def cpu_level(flags):
    """The x86-64 level a native engine is built for that this CPU runs."""
    v3 = {"avx2", "fma", "bmi1", "bmi2"} <= flags
    v4 = v3 and {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"} <= flags
    return "x86-64-v4" if v4 else "x86-64-v3" if v3 else ""


def run(*flags, env=None):
    """Starts the server, reads /metrics once, stops it: (info match, log)."""
    proc, _ = start_server(SERVER, "--port", "0", "--http_port", "0", *flags,
                           env_extra=env)
    try:
        http = re.match(r"http listening on (\S+:\d+)", proc.stdout.readline())
        if http is None:
            raise AssertionError("no http listening line")
        with urllib.request.urlopen("http://%s/metrics" % http.group(1),
                                    timeout=10) as r:
            metrics = r.read().decode()
    finally:
        _, log = stop_keep_log(proc)
    match = INFO.search(metrics)
    if match is None:
        raise AssertionError("no satlab_kernels_info sample in:\n" + metrics)
    return match, log


def stop_keep_log(proc):
    """live_server.stop_server, returning (exit code, the log on stderr)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out[1]


class Kernels(unittest.TestCase):
    flags = cpu_flags()

    def test_default_reports_best_engine_kernels(self):
        info, log = run()
        self.assertEqual(info.group(1), best_engine(self.flags))
        self.assertIn("kernels: engine %s (cpu: sse2" % info.group(1), log)
        self.assertIn("BLAS core %s" % info.group(2), log)
        if info.group(4) == "true":  # e.g. Haswell -> SkylakeX on Zen 4/5
            self.assertIn("forced over %s" % info.group(3), log)
        else:
            self.assertEqual(info.group(2), info.group(3))

    def test_generic_blas_core_is_replaced_after_self_check(self):
        info, log = run(env={"OPENBLAS_CORETYPE": "Prescott"})
        self.assertEqual(info.group(3), "Prescott")
        if {"avx2", "fma"} <= self.flags:
            self.assertIn(info.group(2), ("Haswell", "SkylakeX"))
            self.assertEqual(info.group(4), "true")
            self.assertIn("forced over Prescott (replaced Prescott, "
                          "self-check passed)", log)
        else:
            self.assertEqual(info.group(2), "Prescott")
            self.assertEqual(info.group(4), "false")

    def test_guard_off_keeps_generic_core(self):
        info, log = run("--blas_core_guard=false",
                        env={"OPENBLAS_CORETYPE": "Prescott"})
        self.assertEqual(info.group(2), "Prescott")
        self.assertEqual(info.group(4), "false")
        self.assertIn("(guard off)", log)

    def test_kernels_flag_selects_baseline(self):
        info, log = run("--kernels=baseline")
        self.assertEqual(info.group(1), "baseline")
        self.assertIn("kernels: engine baseline", log)

    def test_portable_network_engine_by_default(self):
        info, log = run()
        self.assertEqual(info.group(5), "portable")
        self.assertIn("network engine portable", log)

    def test_native_network_engine_for_this_cpu_level(self):
        level = cpu_level(self.flags)
        self.assertNotEqual(level, "", "the fleet's CPUs are x86-64-v3 or better")
        if not NATIVE_ENGINES:  # this build has none: the server must say so
            proc = subprocess.run([SERVER, "--port", "0", "--http_port", "-1",
                                   "--engine=native"], capture_output=True,
                                  text=True, timeout=30)
            self.assertEqual(proc.returncode, 2, proc.stderr)
            self.assertIn("no native engine for this CPU (%s)" % level, proc.stderr)
            return
        info, log = run("--engine=native")
        self.assertEqual(info.group(5), level)
        self.assertIn("network engine %s" % level, log)

    def test_native_engine_missing_or_unknown_engine_is_rejected(self):
        for flag, message in (
                ("--engine_dir=/nonexistent", "/nonexistent/libsatlab_engine_"),
                ("--engine=fast", '--engine: expected portable or native, got "fast"')):
            args = [SERVER, "--port", "0", "--http_port", "-1", flag]
            if flag.startswith("--engine_dir"):
                args.append("--engine=native")
            proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
            self.assertEqual(proc.returncode, 2, proc.stderr)
            self.assertIn(message, proc.stderr)

    def test_kernels_flag_unknown_is_rejected(self):
        proc = subprocess.run([SERVER, "--port", "0", "--http_port", "-1",
                               "--kernels=sse9"], capture_output=True,
                              text=True, timeout=30)
        self.assertEqual(proc.returncode, 2)
        self.assertIn('--kernels: kernels: expected one of baseline, avx2, '
                      'avx512, got "sse9"', proc.stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
