"""Starts and stops a real satlab-server for the end-to-end tests."""
import os
import re
import signal
import subprocess


def start_server(binary, *flags, env_extra=None):
    """Starts `binary` with `flags`; returns (process, "host:port") once it
    prints its listening line. The gRPC port is chosen by the server."""
    env = dict(os.environ)
    env.update(env_extra or {})
    proc = subprocess.Popen([binary, *flags], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    match = re.match(r"listening on (\S+):(\d+)", line)
    if not match:
        proc.kill()
        raise RuntimeError("server did not start: %r %s" % (line, proc.stderr.read()))
    return proc, "%s:%s" % (match.group(1), match.group(2))


def stop_server(proc, timeout=20):
    """SIGTERM, wait, kill if it hangs; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
