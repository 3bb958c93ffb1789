#!/usr/bin/env python3
"""End-to-end (issue 13, server side): the real satlab-server with API keys.

Usage: auth_e2e_test.py SERVER_BINARY
Keys made with `satlab-server --hash_api_key` (keys file) and given in
SATLAB_API_KEYS; checks UNAUTHENTICATED / NOT_FOUND isolation over gRPC from
Python, /metrics behind a key, reflection behind a key by default,
ownership across a restart, and that no plaintext key is left in the process's environment,
command line or data directory.
"""
import os
import pathlib
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.error
import urllib.request

SERVER = sys.argv.pop(1)
HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "client" / "python"))
subprocess.run([sys.executable, str(REPO / "client" / "python" / "generate.py")],
               check=True, capture_output=True)

import grpc  # noqa: E402
from live_server import start_server, stop_server  # noqa: E402
from satlab.tensor import to_tensor  # noqa: E402
from satlab.v1 import network_pb2 as npb  # noqa: E402
from satlab.v1 import training_service_pb2 as pb  # noqa: E402
from satlab.v1 import training_service_pb2_grpc as pbg  # noqa: E402


def hash_line(key, tenant, role):
    out = subprocess.run([SERVER, "--hash_api_key", "--hash_tenant=" + tenant,
                          "--hash_role=" + role], input=key + "\n",
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def spec():
    s = npb.NetworkSpec(input_size=1, loss=npb.LOSS_MSE)
    s.layers.add(units=1, activation=npb.ACTIVATION_SIGMOID)
    s.init.scheme = npb.INIT_SCHEME_GLOROT_UNIFORM
    s.init.seed = 1
    s.optimizer.sgd.learning_rate = 0.1
    return s


class AuthEndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="satlab-auth-e2e-")
        cls.alpha = secrets.token_hex(32)
        cls.beta = secrets.token_hex(32)
        cls.admin = secrets.token_hex(32)
        cls.keys = os.path.join(cls.dir, "keys")
        with open(cls.keys, "w") as f:
            f.write(hash_line(cls.alpha, "alpha", "user") + "\n")
            f.write(hash_line(cls.admin, "ops", "admin") + "\n")
        cls.start()

    @classmethod
    def start(cls):
        cls.proc, cls.address = start_server(
            SERVER, "--port=0", "--http_port=0", "--compute_threads=1",
            "--api_keys_file=" + cls.keys,
            "--data_dir=" + os.path.join(cls.dir, "data"), "--data_sync=false",
            env_extra={"SATLAB_API_KEYS": "beta:user:" + cls.beta})
        line = cls.proc.stdout.readline()
        match = re.match(r"http listening on (\S+):(\d+)", line)
        assert match, line
        cls.http = "http://127.0.0.1:%s" % match.group(2)
        cls.channel = grpc.insecure_channel(cls.address)
        cls.stub = pbg.TrainingServiceStub(cls.channel)

    @classmethod
    def stop(cls):
        cls.channel.close()
        stop_server(cls.proc)

    @classmethod
    def tearDownClass(cls):
        cls.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def call(self, method, request, key):
        md = [("authorization", "Bearer " + key)] if key else []
        try:
            return grpc.StatusCode.OK, getattr(self.stub, method)(
                request, metadata=md, timeout=20)
        except grpc.RpcError as e:
            return e.code(), e.details()

    def create(self, key, network_id):
        return self.call("CreateNetwork", pb.CreateNetworkRequest(
            network_id=network_id, network=npb.Network(spec=spec())), key)

    def test_missing_wrong_and_right_key(self):
        code, _ = self.call("ListNetworks", pb.ListNetworksRequest(), "")
        self.assertEqual(code, grpc.StatusCode.UNAUTHENTICATED)
        code, _ = self.call("ListNetworks", pb.ListNetworksRequest(),
                            secrets.token_hex(32))
        self.assertEqual(code, grpc.StatusCode.UNAUTHENTICATED)
        code, _ = self.call("ListNetworks", pb.ListNetworksRequest(), self.beta)
        self.assertEqual(code, grpc.StatusCode.OK)

    def test_other_tenant_gets_not_found_identical_to_absent(self):
        name = "networks/iso"
        step = pb.TrainStepRequest(name=name)
        step.batch.inputs.CopyFrom(to_tensor([[0.5]]))
        step.batch.targets.CopyFrom(to_tensor([[1.0]]))
        calls = [("GetNetwork", pb.GetNetworkRequest(name=name)),
                 ("TrainStep", step),
                 ("DeleteNetwork", pb.DeleteNetworkRequest(name=name))]
        absent = [self.call(m, r, self.beta) for m, r in calls]
        code, _ = self.create(self.alpha, "iso")
        self.assertEqual(code, grpc.StatusCode.OK)
        foreign = [self.call(m, r, self.beta) for m, r in calls]
        for (m, _), a, f in zip(calls, absent, foreign):
            self.assertEqual(f[0], grpc.StatusCode.NOT_FOUND, m)
            self.assertEqual(a, f, m)
        code, got = self.call("GetNetwork", pb.GetNetworkRequest(name=name),
                              self.alpha)
        self.assertEqual(code, grpc.StatusCode.OK)
        self.assertEqual(got.network.step, 0)

    def test_metrics_behind_admin_key_and_health_open(self):
        def get(path, key=None):
            req = urllib.request.Request(self.http + path)
            if key:
                req.add_header("Authorization", "Bearer " + key)
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code
        self.assertEqual(get("/metrics"), 401)
        self.assertEqual(get("/metrics", self.alpha), 403)
        self.assertEqual(get("/metrics", self.admin), 200)
        self.assertEqual(get("/api/networks", self.beta), 200)
        self.assertEqual(get("/healthz"), 200)

    def test_reflection_needs_a_key_by_default_with_keys(self):
        call = self.channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=None, response_deserializer=None)
        with self.assertRaises(grpc.RpcError) as raised:
            list(call(iter([b"\x3a\x00"]), timeout=10))
        self.assertEqual(raised.exception.code(),
                         grpc.StatusCode.UNAUTHENTICATED)
        # ServerReflectionRequest{list_services: ""} with a user key.
        answers = list(call(iter([b"\x3a\x00"]), timeout=10, metadata=(
            ("authorization", "Bearer " + self.alpha),)))
        self.assertEqual(len(answers), 1)
        self.assertIn(b"satlab.v1.TrainingService", answers[0])

    def test_z_restart_keeps_ownership_and_no_plaintext_key_anywhere(self):
        code, _ = self.create(self.beta, "kept")
        self.assertEqual(code, grpc.StatusCode.OK)
        pid = self.proc.pid
        for what in ("environ", "cmdline"):
            with open("/proc/%d/%s" % (pid, what), "rb") as f:
                blob = f.read()
            for key in (self.alpha, self.beta, self.admin):
                self.assertNotIn(key.encode(), blob, what)
        type(self).stop()
        for path in pathlib.Path(self.dir).rglob("*"):
            if path.is_file():
                blob = path.read_bytes()
                for key in (self.alpha, self.beta, self.admin):
                    self.assertNotIn(key.encode(), blob, str(path))
        type(self).start()
        code, _ = self.call("GetNetwork", pb.GetNetworkRequest(
            name="networks/kept"), self.beta)
        self.assertEqual(code, grpc.StatusCode.OK)
        code, _ = self.call("GetNetwork", pb.GetNetworkRequest(
            name="networks/kept"), self.alpha)
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND)
        code, listed = self.call("ListNetworks", pb.ListNetworksRequest(),
                                 self.admin)
        self.assertIn("networks/beta.kept",
                      [n.name for n in listed.networks])


if __name__ == "__main__":
    unittest.main()
