#!/usr/bin/env python3
"""Peak and settled RSS of a real satlab-server under two hostile loads
from issue 10 (figures in docs/reliability/compute.md).

Usage: hostile_rss.py SERVER_BINARY CLI_BINARY [--budget BYTES] [--case forward|networks]

  forward   1 -> 65536 (sigmoid) -> 1 float32; Forward with inputs
            [1000000, 1] (found item 2: ~1 TB of scratch in one pass, an
            abort on main). The client gives up after --seconds; the server
            must cancel the compute.
  networks  fifteen 4000 -> 10000 -> 1 float32 networks plus one TrainStep
            (64 rows) each, then five more networks (found item 3).

RSS is sampled from /proc/PID/status (VmRSS) every 0.1 s; VmHWM is the
kernel's peak. Only processes started here are stopped, by PID.
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
from live_server import start_server, stop_server  # noqa: E402


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, False

    def run(self):
        while not self.stop:
            try:
                self.peak = max(self.peak, status_kb(self.pid, "VmRSS"))
            except OSError:
                return
            time.sleep(0.1)


def mib(kb):
    return "%.0f MiB" % (kb / 1024)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("server")
    p.add_argument("cli")
    p.add_argument("--budget", default="0")
    p.add_argument("--case", default="forward", choices=["forward", "networks"])
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--flag", action="append", default=[],
                   help="extra server flag, e.g. --flag=--max_call_scratch_bytes=268435456")
    a = p.parse_args()
    # Without --budget the flag is left out, so the script also runs against
    # servers that predate it (main before issue 10).
    budget = ["--memory_budget_bytes", a.budget] if a.budget != "0" else []
    server, address = start_server(a.server, "--port", "0", "--http_port", "-1",
                                   *budget, *a.flag)
    sampler = Sampler(server.pid)
    sampler.start()

    def cli(*args, timeout=600):
        r = subprocess.run([a.cli, "--server", address] + list(args),
                           capture_output=True, text=True, timeout=timeout)
        return r.returncode, (r.stdout + r.stderr).strip().splitlines()[-1:] or [""]

    try:
        print("start: RSS", mib(status_kb(server.pid, "VmRSS")))
        with tempfile.TemporaryDirectory() as tmp:
            if a.case == "forward":
                print(cli("create", "wide", "--input-size", "1", "--layers",
                          "65536:sigmoid,1:sigmoid", "--dtype", "float32", "--loss", "mse"))
                x = os.path.join(tmp, "x.csv")
                with open(x, "w") as f:
                    f.write("0.5\n" * 1000000)
                client = subprocess.Popen([a.cli, "--server", address, "forward", "wide",
                                           "--inputs", "@" + x],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          text=True)
                try:
                    client.wait(timeout=a.seconds)
                    print("forward finished:", client.returncode, client.stderr.read()[-300:])
                except subprocess.TimeoutExpired:
                    client.send_signal(signal.SIGINT)
                    client.wait()
                    print("client cancelled the Forward after %.0f s" % a.seconds)
                print("during: peak RSS", mib(sampler.peak))
                time.sleep(3)
                print("after: get ->", cli("get", "wide"))
            else:
                x = os.path.join(tmp, "x.csv")
                y = os.path.join(tmp, "y.csv")
                with open(x, "w") as f:
                    f.write(("," .join(["0.1"] * 4000) + "\n") * 64)
                with open(y, "w") as f:
                    f.write("1\n" * 64)
                for i in range(20):
                    name = "n%02d" % i
                    code, out = cli("create", name, "--input-size", "4000", "--layers",
                                    "10000:sigmoid,1:sigmoid", "--dtype", "float32", "--loss", "mse")
                    step = cli("step", name, "--inputs", "@" + x, "--targets", "@" + y) \
                        if code == 0 else (None, [""])
                    print(name, "create", code, out[0][:150], "| step", step[0], step[1][0][:150])
                    print("   RSS", mib(status_kb(server.pid, "VmRSS")), "peak", mib(sampler.peak))
                for i in range(20):
                    cli("delete", "n%02d" % i)
                time.sleep(2)
                print("after deleting all: RSS", mib(status_kb(server.pid, "VmRSS")))
        print("peak RSS (sampled)", mib(sampler.peak), "VmHWM", mib(status_kb(server.pid, "VmHWM")))
    finally:
        sampler.stop = True
        code = stop_server(server)
        print("server exit code", code)


if __name__ == "__main__":
    main()
