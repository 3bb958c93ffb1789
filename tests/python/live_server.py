"""Starts a real satlab-server on 127.0.0.1 with a port chosen at run time and
stops it (by its PID, never by name) when done."""

import os
import select
import signal
import subprocess
import time


class LiveServer:
    """`with LiveServer(binary) as s:` ... s.address is "127.0.0.1:PORT"."""

    def __init__(self, binary, extra_args=(), start_timeout=30.0):
        self.binary = binary
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.proc = None
        self.address = None
        self.stderr_path = None

    def start(self):
        if not os.access(self.binary, os.X_OK):
            raise RuntimeError(f"satlab-server not executable: {self.binary}")
        self.stderr_path = f"/tmp/satlab-pytest-server-{os.getpid()}.log"
        self._stderr = open(self.stderr_path, "w")
        # The HTTP side port too is chosen at run time (the default 9464 would
        # collide with any other server on this machine).
        env = dict(os.environ, SATLAB_HTTP_PORT=os.environ.get("SATLAB_HTTP_PORT", "0"))
        self.proc = subprocess.Popen(
            [self.binary, "--host=127.0.0.1", "--port=0", *self.extra_args],
            stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"satlab-server exited with {self.proc.returncode}: {self.log()}")
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if not ready:
                continue
            line = self.proc.stdout.readline()
            if line.startswith("listening on "):
                self.address = line.split()[-1]
                return self
        self.stop()
        raise RuntimeError(f"satlab-server printed no 'listening on' line in {self.start_timeout} s: {self.log()}")

    def log(self):
        try:
            with open(self.stderr_path) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self, timeout=15.0):
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._stderr.close()
        code = self.proc.returncode
        self.proc = None
        return code

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
