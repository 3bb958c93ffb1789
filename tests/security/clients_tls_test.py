#!/usr/bin/env python3
"""Transport security end to end, with real processes: the satlab-server
binary serving TLS + mutual TLS on both ports, and every client (the C++
CLI, Python, Node, Go) making one mTLS call with an API key.

Two servers:
  - the real satlab-server (TLS, client certificates required): each client's
    call must succeed with a good certificate and fail without one;
  - a recorder (a grpcio server in this process, TLS + mTLS with the same
    certificates) that answers ListNetworks and keeps each call's
    `authorization` metadata: each client's key must arrive there as
    `Bearer <key>`. (The real server's key check belongs to the auth layer;
    this test shows what the clients send.)

Also: the plaintext policy of the binary (non-loopback refused unless
--plaintext, exit 2 naming the flags), the HTTP port over TLS (/metrics),
and SIGHUP: the HTTP port serves a replaced certificate at once while the
gRPC port picks it up within --tls_refresh_interval_seconds, with the
process and an open connection unharmed.

Usage: clients_tls_test.py --server-bin PATH --cli-bin PATH [unittest args]
Needs: openssl; client/node/node_modules (lang.npm_setup) for the Node
case; go for the Go case (a missing tool fails its test, it is not skipped).
"""

import argparse
import concurrent.futures
import os
import pathlib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
ARGS = None
CERTS = None


def make_certs():
    global CERTS
    if CERTS is None:
        CERTS = tempfile.mkdtemp(prefix="satlab_tls_certs.")
        subprocess.run(["bash", str(HERE / "make_certs.sh"), CERTS], check=True)
    return CERTS


def cert(name):
    return os.path.join(make_certs(), name)


def python_client():
    """The satlab package from this checkout (stubs generated on demand)."""
    subprocess.run([sys.executable, str(REPO / "client/python/generate.py")], check=True,
                   stdout=subprocess.DEVNULL)
    sys.path.insert(0, str(REPO / "client/python"))
    import satlab  # noqa: E402
    return satlab


def start_server(*flags, env_extra=None):
    """Starts satlab-server; returns (proc, grpc address, http port)."""
    env = dict(os.environ, SATLAB_DATA_DIR="")
    env.update(env_extra or {})
    proc = subprocess.Popen([ARGS.server_bin, "--port=0", "--http_port=0", "--compute_threads=1",
                             *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    line = proc.stdout.readline()
    match = re.match(r"listening on (\S+):(\d+)", line)
    if not match:
        proc.kill()
        raise RuntimeError("server did not start: %r %s" % (line, proc.stderr.read()))
    http = re.match(r"http listening on \S+:(\d+)", proc.stdout.readline())
    return proc, "%s:%s" % match.groups(), int(http.group(1)) if http else -1


def stop_server(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def https_peer(port, path="/metrics", cafile=None, certfile=None, keyfile=None):
    """(common name of the server's certificate, response bytes)."""
    ctx = ssl.create_default_context(cafile=cafile or cert("ca.pem"))
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            subject = dict(x[0] for x in s.getpeercert()["subject"])
            s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                       % path).encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    return subject["commonName"], data


class Recorder:
    """A grpcio TLS + mTLS server answering ListNetworks; records metadata."""

    def __init__(self, satlab):
        import grpc
        from satlab.v1 import training_service_pb2 as pb
        self.seen = []
        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4))

        def list_networks(request, context):
            self.seen.append(dict(context.invocation_metadata()).get("authorization"))
            return pb.ListNetworksResponse()

        handler = grpc.method_handlers_generic_handler("satlab.v1.TrainingService", {
            "ListNetworks": grpc.unary_unary_rpc_method_handler(
                list_networks, request_deserializer=pb.ListNetworksRequest.FromString,
                response_serializer=pb.ListNetworksResponse.SerializeToString)})
        self.server.add_generic_rpc_handlers((handler,))
        def read(name):
            with open(cert(name), "rb") as f:
                return f.read()

        creds = grpc.ssl_server_credentials([(read("server.key"), read("server.pem"))],
                                            root_certificates=read("ca.pem"),
                                            require_client_auth=True)
        self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        self.server.start()
        self.address = "127.0.0.1:%d" % self.port

    def stop(self):
        self.server.stop(0)


NODE_SCRIPT = r"""
const { Client } = require(process.argv[1]);
const [target, ca, crt, key, apiKey] = process.argv.slice(2);
const c = new Client(target, { tlsCaFile: ca, tlsCertFile: crt || undefined,
                               tlsKeyFile: key || undefined, apiKey, deadlineMs: 10000 });
c.listNetworks({ pageSize: 10 })
  .then((r) => { console.log('ok', (r.networks || []).length); process.exit(0); })
  .catch((e) => { console.log('error', e.code, e.details); process.exit(1); });
"""


class ClientsOverTls(unittest.TestCase):
    """Each client: one mTLS call to the real server, the key at the recorder."""

    @classmethod
    def setUpClass(cls):
        cls.satlab = python_client()
        cls.proc, cls.target, cls.http_port = start_server(
            "--host=127.0.0.1", "--tls_cert_file=" + cert("server.pem"),
            "--tls_key_file=" + cert("server.key"), "--tls_client_ca_file=" + cert("ca.pem"))
        cls.recorder = Recorder(cls.satlab)

    @classmethod
    def tearDownClass(cls):
        cls.recorder.stop()
        code = stop_server(cls.proc)
        if code != 0:
            raise AssertionError("satlab-server exited with %s" % code)

    def mtls(self):
        return [cert("ca.pem"), cert("client.pem"), cert("client.key")]

    # -- the C++ CLI -----------------------------------------------------------
    def cli(self, target, files, key):
        ca, crt, k = files
        flags = ["--server", target, "--tls_ca_file", ca, "--timeout", "10"]
        if crt:
            flags += ["--tls_cert_file", crt, "--tls_key_file", k]
        env = dict(os.environ, SATLAB_API_KEY=key)
        return subprocess.run([ARGS.cli_bin, *flags, "--json", "list"], env=env,
                              capture_output=True, text=True, timeout=60)

    def test_cli(self):
        ok = self.cli(self.target, self.mtls(), "k-cli")
        self.assertEqual(ok.returncode, 0, ok.stderr)
        refused = self.cli(self.target, [cert("ca.pem"), None, None], "k-cli")
        self.assertEqual(refused.returncode, 1, refused.stdout)
        self.assertIn("UNAVAILABLE", refused.stderr)
        self.assertEqual(self.cli(self.recorder.address, self.mtls(), "k-cli").returncode, 0)
        self.assertIn("Bearer k-cli", self.recorder.seen)
        # One of cert/key alone is a usage error before any connection.
        half = subprocess.run([ARGS.cli_bin, "--server", self.target, "--tls_cert_file",
                               cert("client.pem"), "list"], capture_output=True, text=True,
                              timeout=60)
        self.assertEqual(half.returncode, 2, half.stderr)

    # -- Python ----------------------------------------------------------------
    def test_python(self):
        import grpc
        ca, crt, key = self.mtls()
        with self.satlab.Client(self.target, tls_ca_file=ca, tls_cert_file=crt,
                                tls_key_file=key, api_key="k-python", timeout=10) as c:
            net = c.create_network(1, [(1, "sigmoid")], "mse", network_id="py-tls")
            self.assertEqual(net.name, "networks/py-tls")
            self.assertEqual(c.health(), "SERVING")
        with self.satlab.Client(self.target, tls_ca_file=ca, timeout=10) as c:
            with self.assertRaises(grpc.RpcError) as e:
                list(c.list_networks())
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        with self.satlab.Client(self.target, timeout=10) as c:  # plaintext
            with self.assertRaises(grpc.RpcError) as e:
                list(c.list_networks())
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        with self.satlab.Client(self.recorder.address, tls_ca_file=ca, tls_cert_file=crt,
                                tls_key_file=key, api_key="k-python", timeout=10) as c:
            list(c.list_networks())
        self.assertIn("Bearer k-python", self.recorder.seen)

    # -- Node ------------------------------------------------------------------
    def node(self, target, files, key):
        node = shutil.which("node")
        self.assertIsNotNone(node, "node not found")
        self.assertTrue((REPO / "client/node/node_modules").is_dir(),
                        "client/node/node_modules missing: run tests/lang/npm_setup.sh")
        ca, crt, k = files
        return subprocess.run([node, "-e", NODE_SCRIPT, "--", str(REPO / "client/node/satlab.js"),
                               target, ca, crt or "", k or "", key],
                              capture_output=True, text=True, timeout=60)

    def test_node(self):
        ok = self.node(self.target, self.mtls(), "k-node")
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        refused = self.node(self.target, [cert("ca.pem"), None, None], "k-node")
        self.assertEqual(refused.returncode, 1, refused.stdout)
        self.assertIn("error 14", refused.stdout)  # UNAVAILABLE
        ok = self.node(self.recorder.address, self.mtls(), "k-node")
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        self.assertIn("Bearer k-node", self.recorder.seen)

    # -- Go --------------------------------------------------------------------
    def test_go(self):
        go = shutil.which("go")
        self.assertIsNotNone(go, "go not found (scripts/install-deps.sh test)")
        env = dict(os.environ, SATLAB_SERVER_BIN=ARGS.server_bin, SATLAB_DATA_DIR="",
                   GOCACHE=os.environ.get("GOCACHE", str(pathlib.Path(ARGS.go_cache))),
                   GOFLAGS="-mod=vendor", GOPROXY="off", GO111MODULE="on",
                   SATLAB_TLS_TARGET=self.target, SATLAB_TLS_RECORDER=self.recorder.address,
                   SATLAB_TLS_CERTS=make_certs())
        subprocess.run([str(REPO / "client/go/setup.sh")], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        run = subprocess.run([go, "test", "-count=1", "-v", "-run", "TestTLS", "."],
                             cwd=REPO / "client/go", env=env, capture_output=True, text=True,
                             timeout=600)
        self.assertEqual(run.returncode, 0, run.stdout[-4000:] + run.stderr[-4000:])
        self.assertIn("--- PASS: TestTLSAndKey", run.stdout)
        self.assertIn("Bearer k-go", self.recorder.seen)


class KeysOverTls(unittest.TestCase):
    """The real server with TLS and API keys: keys are checked, tenants kept apart."""

    KEY_A = "tenant-a-key-0123456789abcdef"
    KEY_B = "tenant-b-key-0123456789abcdef"

    @classmethod
    def setUpClass(cls):
        cls.satlab = python_client()
        cls.proc, cls.target, _ = start_server(
            "--host=127.0.0.1", "--tls_cert_file=" + cert("server.pem"),
            "--tls_key_file=" + cert("server.key"),
            env_extra={"SATLAB_API_KEYS": "a:user:%s,b:user:%s" % (cls.KEY_A, cls.KEY_B)})

    @classmethod
    def tearDownClass(cls):
        code = stop_server(cls.proc)
        if code != 0:
            raise AssertionError("satlab-server exited with %s" % code)

    def cli(self, key, *args):
        return subprocess.run([ARGS.cli_bin, "--server", self.target, "--tls_ca_file",
                               cert("ca.pem"), "--timeout", "10", *args],
                              env=dict(os.environ, SATLAB_API_KEY=key),
                              capture_output=True, text=True, timeout=60)

    def test_cli_right_key_serves_wrong_key_unauthenticated(self):
        ok = self.cli(self.KEY_A, "--json", "list")
        self.assertEqual(ok.returncode, 0, ok.stderr)
        wrong = self.cli(self.KEY_A[:-1] + "x", "--json", "list")
        self.assertEqual(wrong.returncode, 1, wrong.stdout)
        self.assertIn("UNAUTHENTICATED", wrong.stderr)

    def test_python_other_tenant_gets_not_found_as_if_absent(self):
        import grpc
        ca = cert("ca.pem")
        with self.satlab.Client(self.target, tls_ca_file=ca, api_key=self.KEY_A, timeout=10) as a:
            a.create_network(1, [(1, "sigmoid")], "mse", network_id="owned-by-a")
            self.assertEqual(a.get_network("owned-by-a").name, "networks/owned-by-a")
        with self.satlab.Client(self.target, tls_ca_file=ca, api_key=self.KEY_B, timeout=10) as b:
            codes = []
            for name in ("owned-by-a", "never-created"):
                with self.assertRaises(grpc.RpcError) as e:
                    b.get_network(name)
                codes.append((e.exception.code(), e.exception.details().replace(name, "ID")))
            self.assertEqual(codes[0], codes[1])
            self.assertEqual(codes[0][0], grpc.StatusCode.NOT_FOUND)
            self.assertEqual([n.name for n in b.list_networks()], [])


class BinaryPolicy(unittest.TestCase):
    """The binary's plaintext policy, the HTTP port over TLS, and SIGHUP."""

    def test_plaintext_on_non_loopback_refused_unless_explicit(self):
        run = subprocess.run([ARGS.server_bin, "--host=0.0.0.0", "--port=0", "--http_port=-1"],
                             capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, SATLAB_DATA_DIR=""))
        self.assertEqual(run.returncode, 2, run.stderr)
        self.assertIn("--plaintext", run.stderr)
        self.assertIn("--tls_cert_file", run.stderr)
        proc, target, _ = start_server("--host=0.0.0.0", "--plaintext")
        try:
            self.assertTrue(target.startswith("0.0.0.0:"))
        finally:
            self.assertEqual(stop_server(proc), 0)

    def test_http_tls_and_sighup_rotation(self):
        live = tempfile.mkdtemp(prefix="satlab_tls_live.")
        self.addCleanup(shutil.rmtree, live, ignore_errors=True)
        crt, key = os.path.join(live, "tls.crt"), os.path.join(live, "tls.key")
        shutil.copy(cert("server.pem"), crt)
        shutil.copy(cert("server.key"), key)
        proc, target, http_port = start_server(
            "--host=127.0.0.1", "--tls_cert_file=" + crt, "--tls_key_file=" + key,
            "--tls_refresh_interval_seconds=2")
        try:
            satlab = python_client()
            name, body = https_peer(http_port)
            self.assertEqual(name, "satlab-server")
            self.assertTrue(body.startswith(b"HTTP/1.1 200"), body[:200])
            self.assertIn(b"satlab_http_connections", body)
            with satlab.Client(target, tls_ca_file=cert("ca.pem"), timeout=10) as old:
                old.create_network(1, [(1, "sigmoid")], "mse", network_id="kept")
                # Rotation: new key and certificate, then SIGHUP.
                for src, dst in (("server2.key", key), ("server2.pem", crt)):
                    shutil.copy(cert(src), dst + ".new")
                    os.rename(dst + ".new", dst)
                proc.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 5
                while https_peer(http_port)[0] != "satlab-server-rotated":
                    self.assertLess(time.monotonic(), deadline, "HTTP did not reload on SIGHUP")
                    time.sleep(0.05)
                # gRPC: a new connection sees the new certificate within the
                # refresh interval (2 s here).
                deadline = time.monotonic() + 15
                while True:
                    pem = ssl.get_server_certificate(("127.0.0.1", int(target.split(":")[1])))
                    if "satlab-server-rotated" in subprocess.run(
                            ["openssl", "x509", "-noout", "-subject"], input=pem,
                            capture_output=True, text=True).stdout:
                        break
                    self.assertLess(time.monotonic(), deadline, "gRPC did not reload")
                    time.sleep(0.2)
                # The connection made before the rotation still works.
                self.assertEqual(old.get_network("kept").name, "networks/kept")
            self.assertIsNone(proc.poll(), "SIGHUP stopped the server")
        finally:
            self.assertEqual(stop_server(proc), 0)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", required=True)
    ap.add_argument("--cli-bin", required=True)
    ap.add_argument("--go-cache", default=str(REPO / "build/go-cache-tls"))
    ARGS, rest = ap.parse_known_args()
    ARGS.server_bin = os.path.abspath(ARGS.server_bin)
    ARGS.cli_bin = os.path.abspath(ARGS.cli_bin)
    try:
        unittest.main(argv=[sys.argv[0], "-v", *rest])
    finally:
        if CERTS:
            shutil.rmtree(CERTS, ignore_errors=True)


if __name__ == "__main__":
    main()
