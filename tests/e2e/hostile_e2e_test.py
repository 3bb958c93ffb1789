#!/usr/bin/env python3
"""End-to-end: issue 10's found items, replayed by a hostile client against
the real satlab-server binary (the fixes as merged, not the in-process test
servers), plus further abuse.

Usage: hostile_e2e_test.py SERVER_BINARY
Every server it starts listens on 127.0.0.1 with ports chosen at run time
and is stopped by PID. Each check asserts the code (and where it matters the
message, the timing or the process's RSS) and that the server still serves.
Set HOSTILE_VERBOSE=1 to print the measured figures.
"""
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

SERVER = sys.argv.pop(1)
HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "client" / "python"))
subprocess.run([sys.executable, str(REPO / "client" / "python" / "generate.py")],
               check=True, capture_output=True)

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from live_server import start_server, stop_server  # noqa: E402
from satlab.client import Client  # noqa: E402
from satlab.tensor import to_tensor  # noqa: E402
from satlab.v1 import experiment_pb2 as ex  # noqa: E402
from satlab.v1 import network_pb2 as npb  # noqa: E402
from satlab.v1 import training_service_pb2 as pb  # noqa: E402

VERBOSE = os.environ.get("HOSTILE_VERBOSE") == "1"
SERVICE = "/satlab.v1.TrainingService/"
BIG_MSG = [("grpc.max_send_message_length", 512 << 20),
           ("grpc.max_receive_message_length", 512 << 20)]


def note(*args):
    if VERBOSE:
        print("  [figure]", *args, file=sys.stderr, flush=True)


def rss_mib(proc):
    """(VmRSS, VmHWM) of the process in MiB."""
    fields = {}
    with open("/proc/%d/status" % proc.pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value
    return (int(fields["VmRSS"].split()[0]) // 1024,
            int(fields["VmHWM"].split()[0]) // 1024)


class Server:
    """A real satlab-server with `flags`, and a Client on it."""

    def __init__(self, *flags):
        self.proc, self.address = start_server(
            SERVER, "--port", "0", "--http_port", "-1", "--log_level", "warn", *flags)
        self.client = Client(self.address, timeout=60, options=BIG_MSG)
        self.client.wait_ready(10)

    def alive(self):
        return self.proc.poll() is None and self.client.health() == "SERVING"

    def stop(self):
        self.client.close()
        return stop_server(self.proc)


def code_of(fn):
    """The gRPC code (and details) that fn() ends with; OK if it returns."""
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


def train_req(inputs=None, targets=None, name="", report_every=0):
    req = pb.TrainRequest(name=name, report_every=report_every)
    if inputs is not None:
        to_tensor(np.atleast_2d(inputs), "float32", out=req.batch.inputs)
        to_tensor(np.atleast_2d(targets), "float32", out=req.batch.targets)
    return req


def slow_network(c, network_id):
    """1 -> 3000 -> 3000 -> 1 float32: much compute per row for little
    scratch, so a TrainStep of seconds stays within the per-call scratch
    bound (Hostile.rows rows take about a second)."""
    c.create_network(1, [(3000, "tanh"), (3000, "tanh"), (1, "sigmoid")],
                     network_id=network_id, dtype="float32", seed=1)


class Hostile(unittest.TestCase):
    rows = None  # rows of a ~1 s TrainStep on slow_network, calibrated once

    @classmethod
    def setUpClass(cls):
        s = Server("--compute_threads", "1")
        try:
            slow_network(s.client, "cal")
            x = np.linspace(0, 1, 1000, dtype=np.float32).reshape(-1, 1)
            s.client.train_step("cal", x, np.zeros_like(x))  # warm up
            took = []
            for _ in range(3):
                t = time.monotonic()
                s.client.train_step("cal", x, np.zeros_like(x))
                took.append(time.monotonic() - t)
            # The fastest of three: the machine may be loaded by others now
            # and idle later, and a "1 s" step must not turn into 0.2 s.
            cls.rows = int(min(4000, max(300, 1000 / max(min(took), 1e-3))))
            note("calibration: 1000 rows took %.3f s -> %d rows a second"
                 % (min(took), cls.rows))
        finally:
            s.stop()

    def batch(self, rows=None):
        x = np.linspace(0, 1, rows or self.rows, dtype=np.float32).reshape(-1, 1)
        return x, np.zeros_like(x)

    # -- item 1 ---------------------------------------------------------------
    def test_item01_burst_two_names_and_cancel_with_queued_step(self):
        s = Server("--compute_threads", "1")
        try:
            c = s.client
            for n in ("a", "b"):
                c.create_network(1, [(4, "tanh"), (1, "sigmoid")], network_id=n,
                                 dtype="float32")
            x, y = self.batch(2)
            for i in range(60):
                stream = c.stub.Train(iter([train_req(x, y, "networks/a"),
                                            train_req(x, y, "networks/b")]), timeout=10)
                code, msg = code_of(lambda: list(stream))
                self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, (i, msg))
            self.assertTrue(s.alive())
            # compute_threads=1: a ~1 s TrainStep on A, a Train stream on B
            # with one minibatch queued behind it, cancel B; then A finishes.
            slow_network(c, "big-a")
            slow_network(c, "big-b")
            bx, by = self.batch()
            for _ in range(3):
                fut = c.stub.TrainStep.future(pb.TrainStepRequest(
                    name="networks/big-a", batch=train_req(bx, by).batch), timeout=60)
                time.sleep(0.2)
                gate = threading.Event()

                def requests():
                    yield train_req(name="networks/big-b")
                    yield train_req(bx[:10], by[:10])
                    gate.wait(10)

                stream = c.stub.Train(requests(), timeout=30)
                time.sleep(0.3)
                stream.cancel()
                gate.set()
                self.assertEqual(fut.result().result.step, c.get_network("big-a").step)
            time.sleep(0.5)
            self.assertTrue(s.alive())
        finally:
            self.assertEqual(s.stop(), 0)

    # -- item 2 ---------------------------------------------------------------
    def test_item02_wide_layer_million_rows(self):
        s = Server()
        try:
            c = s.client
            c.create_network(1, [(65536, "sigmoid"), (1, "sigmoid")], network_id="wide",
                             dtype="float32")
            x = np.ones((1000000, 1), dtype=np.float32)
            # TrainStep cannot be chunked bitwise-identically: over the
            # per-call scratch bound, refused up front.
            step = pb.TrainStepRequest(name="networks/wide")
            to_tensor(x, "float32", out=step.batch.inputs)
            to_tensor(x, "float32", out=step.batch.targets)
            code, msg = code_of(lambda: c.stub.TrainStep(step, timeout=30))
            note("item 2 TrainStep 1e6 rows:", code, msg)
            self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED, msg)
            self.assertIn("--memory_budget_bytes", msg)  # 1 TB: over the budget first
            small = pb.TrainStepRequest(name="networks/wide")
            to_tensor(x[:10000], "float32", out=small.batch.inputs)
            to_tensor(x[:10000], "float32", out=small.batch.targets)
            code, msg = code_of(lambda: c.stub.TrainStep(small, timeout=30))
            note("item 2 TrainStep 1e4 rows:", code, msg)
            self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED, msg)
            self.assertIn("per-call scratch limit", msg)
            self.assertEqual(c.get_network("wide").step, 0)
            # Evaluate runs in chunks (bounded scratch) and its deadline stops it.
            req = pb.EvaluateRequest(name="networks/wide", data=step.batch)
            t = time.monotonic()
            code, msg = code_of(lambda: c.stub.Evaluate(req, timeout=3))
            note("item 2 Evaluate 1e6 rows, 3 s deadline: %s in %.2f s" % (code, time.monotonic() - t))
            self.assertEqual(code, grpc.StatusCode.DEADLINE_EXCEEDED, msg)
            fwd = pb.ForwardRequest(name="networks/wide")
            to_tensor(x, "float32", out=fwd.inputs)
            t = time.monotonic()
            code, msg = code_of(lambda: c.stub.Forward(fwd, timeout=3))
            took = time.monotonic() - t
            rss, hwm = rss_mib(s.proc)
            note("item 2 Forward 1e6 rows, 3 s deadline: %s %r in %.2f s; RSS %d MiB HWM %d MiB"
                 % (code, msg, took, rss, hwm))
            # Chunked, so it runs (and the deadline stops it) within the
            # 1 GiB per-call scratch, not ~256 GB.
            self.assertIn(code, (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.OK))
            self.assertLess(hwm, 3000)
            time.sleep(1.0)  # the cancelled compute must stop soon after
            t = time.monotonic()
            c.forward("wide", [[0.5]])
            self.assertLess(time.monotonic() - t, 5.0, "compute still busy after deadline")
            self.assertTrue(s.alive())
        finally:
            self.assertEqual(s.stop(), 0)

    # -- item 3 ---------------------------------------------------------------
    def test_item03_memory_budget(self):
        budget = 2 << 30
        s = Server("--max_message_bytes", str(256 << 20), "--memory_budget_bytes", str(budget))
        try:
            c = s.client
            created, refused = 0, None
            for i in range(15):
                code, msg = code_of(lambda: c.create_network(
                    4000, [(10000, "tanh"), (1, "sigmoid")], network_id="m%d" % i,
                    dtype="float32"))
                if code != grpc.StatusCode.OK:
                    refused = (i, code, msg)
                    break
                created += 1
                x = np.zeros((1, 4000), dtype=np.float32)
                code, msg = code_of(lambda: c.train_step("m%d" % i, x, [[0.0]]))
                if code != grpc.StatusCode.OK:
                    refused = (i, code, msg)
                    break
            rss, hwm = rss_mib(s.proc)
            note("item 3: %d created, refused %r; RSS %d MiB HWM %d MiB"
                 % (created, refused, rss, hwm))
            self.assertIsNotNone(refused, "15 x 40M parameters fit a 2 GiB budget?")
            self.assertEqual(refused[1], grpc.StatusCode.RESOURCE_EXHAUSTED, refused)
            self.assertLess(hwm, (budget >> 20) + 600)
            self.assertTrue(s.alive())
            for i in range(created):
                c.delete_network("m%d" % i)
            # Memory is given back to the budget: one can be created again.
            c.create_network(4000, [(10000, "tanh"), (1, "sigmoid")], network_id="again",
                             dtype="float32")
        finally:
            self.assertEqual(s.stop(), 0)

    # -- item 4 ---------------------------------------------------------------
    def test_item04_idle_stream_releases_writer_slot(self):
        s = Server("--stream_idle_timeout_seconds", "2")
        try:
            c = s.client
            c.create_network(1, [(2, "tanh"), (1, "sigmoid")], network_id="n")
            gate = threading.Event()

            def requests():
                yield train_req(name="networks/n")
                gate.wait(20)

            t = time.monotonic()
            stream = c.stub.Train(requests(), timeout=30)
            time.sleep(0.5)
            code, _ = code_of(lambda: c.train_step("n", [[0.1]], [[0.0]]))
            self.assertEqual(code, grpc.StatusCode.ABORTED)
            code, msg = code_of(lambda: list(stream))
            took = time.monotonic() - t
            gate.set()
            note("item 4: idle stream ended %s %r after %.2f s" % (code, msg, took))
            self.assertEqual(code, grpc.StatusCode.DEADLINE_EXCEEDED, msg)
            self.assertLess(took, 6.0)
            self.assertEqual(c.train_step("n", [[0.1]], [[0.0]]).step, 1)
        finally:
            self.assertEqual(s.stop(), 0)

    # -- item 5 ---------------------------------------------------------------
    def test_item05_slowloris_http(self):
        proc = subprocess.Popen([SERVER, "--port", "0", "--http_port", "0", "--log_level", "warn"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        socks = []
        try:
            http_port = None
            for _ in range(4):
                line = proc.stdout.readline()
                if "http" in line.lower() and ":" in line:
                    http_port = int(line.strip().rsplit(":", 1)[1].split()[0].strip("/"))
                    break
            self.assertIsNotNone(http_port, "no HTTP port printed")
            for _ in range(60):
                sock = socket.create_connection(("127.0.0.1", http_port), timeout=5)
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                socks.append(sock)
            for _ in range(2):
                time.sleep(2.0)
                for sock in socks:
                    try:
                        sock.sendall(b"X-Slow: 1\r\n")
                    except OSError:
                        pass
                t = time.monotonic()
                with socket.create_connection(("127.0.0.1", http_port), timeout=5) as sock:
                    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    head = sock.recv(64)
                took = time.monotonic() - t
                note("item 5: /metrics under 60 slow connections: %r in %.3f s" % (head[:15], took))
                self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
                self.assertLess(took, 2.0)
        finally:
            for sock in socks:
                sock.close()
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=20), 0)
            proc.stdout.close()
            proc.stderr.close()

    # -- item 6 ---------------------------------------------------------------
    def test_item06_shutdown_grace_reaches_evaluate(self):
        s = Server("--shutdown_grace_seconds", "2")
        slow_network(s.client, "big")
        x, y = self.batch(self.rows * 30)  # ~10 s of Evaluate (forward only)
        fut = s.client.stub.Evaluate.future(pb.EvaluateRequest(
            name="networks/big", data=train_req(x, y).batch), timeout=120)
        time.sleep(1.5)
        self.assertFalse(fut.done())
        t = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        code = s.proc.wait(timeout=30)
        took = time.monotonic() - t
        note("item 6: exit %d %.2f s after SIGTERM (grace 2 s)" % (code, took))
        self.assertEqual(code, 0)
        self.assertLess(took, 3.5)
        self.assertNotEqual(code_of(fut.result)[0], grpc.StatusCode.OK)
        s.stop()

    # -- item 7 ---------------------------------------------------------------
    def test_item07_undecodable_message_mid_stream(self):
        s = Server()
        try:
            c = s.client
            c.create_network(1, [(2, "tanh"), (1, "sigmoid")], network_id="n")
            raw = s.client._channel.stream_stream(
                SERVICE + "Train", request_serializer=lambda b: b,
                response_deserializer=pb.TrainResponse.FromString)
            good = train_req([[0.1]], [[0.0]]).SerializeToString()
            first = train_req([[0.1]], [[0.0]], "networks/n").SerializeToString()
            msgs = [first, good, b"\xff\xff\xff\xff", good, good]
            replies = []
            code, msg = code_of(lambda: replies.extend(raw(iter(msgs), timeout=10)))
            note("item 7:", code, msg, "replies", len(replies))
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, msg)
            self.assertTrue(msg, "empty message")
            self.assertEqual(c.get_network("n").step, 2)
        finally:
            self.assertEqual(s.stop(), 0)

    # -- item 8 ---------------------------------------------------------------
    def test_item08_deadline_leaves_step_unchanged_and_request_id(self):
        s = Server()
        try:
            c = s.client
            slow_network(c, "n")
            # ~3 s, under the 1 GiB per-call scratch (~99 KB a row): well past 270 ms.
            x, y = self.batch(min(3 * self.rows, 10000))
            req = pb.TrainStepRequest(name="networks/n", batch=train_req(x, y).batch)
            before = c.get_network("n").step
            t = time.monotonic()
            code, msg = code_of(lambda: c.stub.TrainStep(req, timeout=0.27))
            self.assertEqual(code, grpc.StatusCode.DEADLINE_EXCEEDED, msg)
            deadline_at = time.monotonic()
            # Retry, as a client would, until the stopped step has left the
            # writer slot (ABORTED meanwhile); the network must not have
            # stepped in between.
            req.request_id = "retry-1"
            while True:
                self.assertEqual(c.get_network("n").step, before)
                attempt = time.monotonic()
                code, msg = code_of(lambda: c.stub.TrainStep(req, timeout=60))
                if code != grpc.StatusCode.ABORTED:
                    break
                self.assertLess(time.monotonic() - deadline_at, 20.0, "slot never released")
                time.sleep(0.05)
            self.assertEqual(code, grpc.StatusCode.OK, msg)
            released = attempt - deadline_at
            first = c.get_network("n").step
            t = time.monotonic()
            code_of(lambda: c.stub.TrainStep(pb.TrainStepRequest(
                name="networks/n", batch=req.batch), timeout=60))
            full = time.monotonic() - t
            # Cancellation reaches the step between layers: the slot is free
            # well before a whole step would have ended.
            self.assertLess(released, max(full, 1.0))
            note("item 8: DEADLINE_EXCEEDED; the stopped step held the network %.2f s more"
                 " (a whole step: %.2f s); retry applied once" % (released, full))
            self.assertEqual(first, before + 1)
            self.assertEqual(c.get_network("n").step, before + 2)
            second = c.stub.TrainStep(req, timeout=60).result.step
            self.assertEqual(second, first)  # the same id again: answered, not applied
            self.assertEqual(c.get_network("n").step, before + 2)
            # Same id, different request: not a silent replay.
            other = pb.TrainStepRequest(name="networks/n", request_id="retry-1",
                                        batch=train_req(x[:3], y[:3]).batch)
            code, msg = code_of(lambda: c.stub.TrainStep(other, timeout=60))
            note("item 8: same request_id, other batch:", code, msg)
            self.assertNotEqual(code, grpc.StatusCode.OK)
            self.assertEqual(c.get_network("n").step, before + 2)
        finally:
            self.assertEqual(s.stop(), 0)

    # -- item 9 ---------------------------------------------------------------
    def test_item09_huge_display_name_and_label(self):
        s = Server()
        try:
            c = s.client
            for field in ("display_name", "label"):
                spec = ex.ExperimentSpec(epochs=200)
                spec.dataset.builtin.kind = ex.DATASET_KIND_XOR
                v = spec.variants.add(output_activation=npb.ACTIVATION_SIGMOID,
                                      loss=npb.LOSS_MSE)
                if field == "display_name":
                    spec.display_name = "x" * (1 << 20)
                else:
                    v.label = "x" * (1 << 20)
                code, msg = code_of(lambda: list(c.run_experiment(spec, timeout=30)))
                note("item 9 %s 1 MiB: %s %r" % (field, code, msg[:100]))
                self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
                self.assertIn(field, msg)
            rss, hwm = rss_mib(s.proc)
            note("item 9: RSS %d MiB HWM %d MiB" % (rss, hwm))
            self.assertLess(rss, 200)
        finally:
            self.assertEqual(s.stop(), 0)

    # -- item 11 --------------------------------------------------------------
    def test_item11_garbage_bytes_to_every_unary_method(self):
        s = Server()
        try:
            rng = np.random.default_rng(11)
            garbage = b"\xff" + rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
            for method in ("CreateNetwork", "GetNetwork", "ListNetworks", "DeleteNetwork",
                           "GetParameters", "SetParameters", "Forward", "ComputeGradients",
                           "TrainStep", "Evaluate"):
                call = s.client._channel.unary_unary(
                    SERVICE + method, request_serializer=lambda b: b,
                    response_deserializer=lambda b: b)
                code, msg = code_of(lambda: call(garbage, timeout=10))
                self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, (method, msg))
                self.assertTrue(msg, method)
            note("item 11: e.g. %r" % msg)
            # network_id that is not UTF-8: a hand-made CreateNetworkRequest
            # (field 2, length-delimited) with bytes \xc3\x28.
            call = s.client._channel.unary_unary(
                SERVICE + "CreateNetwork", request_serializer=lambda b: b,
                response_deserializer=lambda b: b)
            code, msg = code_of(lambda: call(b"\x12\x02\xc3\x28", timeout=10))
            note("item 11 non-UTF-8 network_id:", code, msg)
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
            self.assertTrue(msg)
            self.assertTrue(s.alive())
        finally:
            self.assertEqual(s.stop(), 0)

    # -- item 12 --------------------------------------------------------------
    def test_item12_every_creatable_network_is_readable(self):
        s = Server()
        try:
            big = s.client
            code, msg = code_of(lambda: big.create_network(
                1000, [(10000, "tanh"), (1, "sigmoid")], network_id="p", dtype="float64"))
            note("item 12 create 1000->10000->1 float64:", code, msg)
            self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("--max_message_bytes", msg)
            # Just under the message limit: created, read and written back.
            big.create_network(1000, [(8350, "tanh"), (1, "sigmoid")], network_id="edge",
                               dtype="float64", seed=2)
            t = time.monotonic()
            params = big.get_parameters("edge")
            self.assertEqual(params[0][0].shape, (1000, 8350))
            big.set_parameters("edge", params)
            again = big.get_parameters("edge")
            note("item 12: 1000->8350->1 float64 (%d parameters) read, written, read in %.2f s"
                 % (1000 * 8350 + 8350 * 2 + 1, time.monotonic() - t))
            self.assertEqual(again[0][0].tobytes(), params[0][0].tobytes())
        finally:
            self.assertEqual(s.stop(), 0)

    # -- item 13 --------------------------------------------------------------
    def test_item13_forward_error_names_field_once(self):
        s = Server()
        try:
            s.client.create_network(2, [(2, "tanh"), (1, "sigmoid")], network_id="n")
            code, msg = code_of(lambda: s.client.forward("n", [[1.0, 2.0, 3.0]]))
            note("item 13:", code, msg)
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
            self.assertNotIn("inputs.inputs", msg)
            self.assertIn("inputs", msg)
        finally:
            self.assertEqual(s.stop(), 0)

    # -- found by this verification ---------------------------------------
    def test_queued_unary_requests_count_against_the_budget(self):
        """Found by this test on 42f5abe: the request messages of unary
        calls waiting for a compute thread were bounded only in number
        (--max_queued_calls 1024 x --max_message_bytes 64 MiB = 64 GiB). 20
        queued 64 MB Forwards took RSS to 2.6 GiB under a 1 GiB budget, and
        under RLIMIT_AS=3 GiB 40 of them aborted the process (std::bad_alloc
        in protobuf's parse inside gRPC). Requests of 64 KiB or more are now
        charged to the budget from arrival until their call ends."""
        budget = 1 << 30
        s = Server("--compute_threads", "1", "--memory_budget_bytes", str(budget))
        try:
            c = s.client
            slow_network(c, "slow")
            c.create_network(16, [(1, "sigmoid")], network_id="tiny", dtype="float32")
            # An Evaluate of a minute or more holds the one compute thread
            # until the Forwards' fate is known, then is cancelled (the call's
            # stop check ends it between chunks). Each Forward is charged, or
            # refused, when it arrives, so a refusal shows while the blocker
            # runs however slowly 20 x 64 MB cross loopback. A blocker of a
            # fixed ~10 s ended first on a loaded CI machine (the Forwards
            # then ran one by one, none ever waiting with 16 others).
            x, y = self.batch(self.rows * 200)
            blocker = c.stub.Evaluate.future(pb.EvaluateRequest(
                name="networks/slow", data=train_req(x, y).batch), timeout=600)
            fwd = pb.ForwardRequest(name="networks/tiny")
            to_tensor(np.ones((1000000, 16), np.float32), "float32", out=fwd.inputs)
            data = fwd.SerializeToString()
            raw = c._channel.unary_unary(SERVICE + "Forward", request_serializer=lambda b: b,
                                         response_deserializer=lambda b: b)
            futures = [raw.future(data, timeout=600) for _ in range(20)]

            def refused():
                return any(f.done() and f.exception() is not None and
                           f.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for f in futures)

            peak = 0
            give_up = time.monotonic() + 300

            def watch_rss_until(done):
                nonlocal peak
                while not done() and time.monotonic() < give_up:
                    peak = max(peak, rss_mib(s.proc)[0])
                    time.sleep(0.05)

            watch_rss_until(lambda: refused() or blocker.done())
            blocker_ran_out = blocker.done()
            blocker.cancel()
            watch_rss_until(lambda: all(f.done() for f in futures))
            codes = [code_of(f.result)[0] for f in futures]
            note("20 queued 64 MB Forwards, budget 1 GiB: peak RSS %d MiB" % peak)
            self.assertTrue(s.alive())
            self.assertFalse(blocker_ran_out, "the blocker ended before any Forward "
                             "was refused: %s" % codes)
            # What the budget bounds is what is held (~1 GiB here); on top
            # come the transient decode buffers of requests arriving at
            # once (wire bytes and parsed copy, ~128 MB each, not counted:
            # docs/reliability.md), whose heap glibc keeps. Before the fix:
            # 2.4-2.6 GiB over the first 2.5 s. With it, RSS watched from the
            # first Forward to the last answer: 1.84-1.97 GiB on a quiet
            # 2-core machine, 1.93-2.12 GiB beside two busy loops. The
            # refusal below is what tells the fix from its absence; this
            # bound catches requests held past their refusal.
            self.assertLess(peak, (budget >> 20) + 1400)
            self.assertIn(grpc.StatusCode.RESOURCE_EXHAUSTED, codes)
        finally:
            self.assertEqual(s.stop(), 0)

    # -- item 15 --------------------------------------------------------------
    def test_item15_help(self):
        r = subprocess.run([SERVER, "--help"], capture_output=True, text=True, timeout=20)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0)
        self.assertNotIn("No flags matched", out)
        for flag in ("--port", "--memory_budget_bytes", "--shutdown_grace_seconds"):
            self.assertIn(flag, out)


class FurtherAbuse(unittest.TestCase):
    """Abuse beyond the issue's list, all against one server: each case gets
    a definite code, and the server keeps serving with bounded memory."""

    @classmethod
    def setUpClass(cls):
        cls.s = Server("--compute_threads", "2", "--max_open_streams", "64",
                       "--stream_idle_timeout_seconds", "5")
        cls.c = cls.s.client
        cls.c.create_network(2, [(8, "tanh"), (1, "sigmoid")], network_id="small", seed=3)

    @classmethod
    def tearDownClass(cls):
        rss, hwm = rss_mib(cls.s.proc)
        note("further abuse: RSS %d MiB HWM %d MiB" % (rss, hwm))
        assert cls.s.alive()
        assert cls.s.stop() == 0

    def expect(self, code, fn, field=None):
        got, msg = code_of(fn)
        note("%s: %s %r" % (self._testMethodName, got, msg[:160]))
        self.assertEqual(got, code, msg)
        if field:
            self.assertIn(field, msg)
        self.assertTrue(self.s.alive())
        return msg

    def test_huge_and_negative_page_size(self):
        for size in (2**31 - 1, -1, 1001):
            self.expect(grpc.StatusCode.INVALID_ARGUMENT, lambda: self.c.stub.ListNetworks(
                pb.ListNetworksRequest(page_size=size), timeout=10), "page_size")
        self.expect(grpc.StatusCode.INVALID_ARGUMENT, lambda: self.c.stub.ListNetworks(
            pb.ListNetworksRequest(page_token="x" * 100000), timeout=10), "page_token")

    def test_many_counterfactual_losses(self):
        req = pb.ComputeGradientsRequest(name="networks/small")
        to_tensor([[0.1, 0.2]], out=req.batch.inputs)
        to_tensor([[1.0]], out=req.batch.targets)
        req.counterfactual_losses.extend([npb.LOSS_MSE] * 100000)
        self.expect(grpc.StatusCode.INVALID_ARGUMENT,
                    lambda: self.c.stub.ComputeGradients(req, timeout=20),
                    "counterfactual_losses")
        req.counterfactual_losses[:] = [77]
        self.expect(grpc.StatusCode.INVALID_ARGUMENT,
                    lambda: self.c.stub.ComputeGradients(req, timeout=20),
                    "counterfactual_losses")

    def test_report_every_huge_and_negative(self):
        x = [[0.1, 0.2]] * 3
        y = [[1.0]] * 3
        before = self.c.get_network("small").step
        replies = list(self.c.stub.Train(iter([
            train_req(name="networks/small", report_every=2**31 - 1)] +
            [train_req(x, y) for _ in range(5)]), timeout=20))
        # The last step is always reported.
        self.assertEqual(len(replies), 1)
        self.assertEqual(replies[-1].batches_applied, 5)
        self.assertEqual(self.c.get_network("small").step, before + 5)
        self.expect(grpc.StatusCode.INVALID_ARGUMENT, lambda: list(self.c.stub.Train(iter([
            train_req(name="networks/small", report_every=-5), train_req(x, y)]),
            timeout=20)), "report_every")

    def test_watch_metrics_absurd_start_step(self):
        for start in (2**63 - 1, -2**63, -2):
            stream = self.c.stub.WatchMetrics(pb.WatchMetricsRequest(
                name="networks/small", start_step=start), timeout=1.5)
            got, msg = code_of(lambda: list(stream))
            note("WatchMetrics start_step %d: %s %r" % (start, got, msg[:120]))
            self.assertIn(got, (grpc.StatusCode.INVALID_ARGUMENT,
                                grpc.StatusCode.DEADLINE_EXCEEDED), msg)
            if start == -2:
                self.assertEqual(got, grpc.StatusCode.INVALID_ARGUMENT)
        self.expect(grpc.StatusCode.NOT_FOUND, lambda: list(self.c.stub.WatchMetrics(
            pb.WatchMetricsRequest(name="networks/nope"), timeout=5)))

    def test_experiment_epochs_times_variants(self):
        spec = ex.ExperimentSpec(epochs=2**31 - 1)
        spec.dataset.builtin.kind = ex.DATASET_KIND_XOR
        for _ in range(1000):
            spec.variants.add(output_activation=npb.ACTIVATION_SIGMOID, loss=npb.LOSS_MSE)
        msg = self.expect(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          lambda: list(self.c.run_experiment(spec, timeout=20)))
        self.assertTrue("epochs" in msg or "variants" in msg, msg)
        del spec.variants[1:]
        self.expect(grpc.StatusCode.RESOURCE_EXHAUSTED,
                    lambda: list(self.c.run_experiment(spec, timeout=20)), "epochs")
        spec = ex.ExperimentSpec(epochs=10, batch_size=0)
        spec.dataset.builtin.kind = ex.DATASET_KIND_CIRCLES
        spec.dataset.builtin.samples = 2**31 - 1
        spec.variants.add(output_activation=npb.ACTIVATION_SIGMOID, loss=npb.LOSS_MSE)
        self.expect(grpc.StatusCode.RESOURCE_EXHAUSTED,
                    lambda: list(self.c.run_experiment(spec, timeout=20)), "samples")

    def test_experiment_stops_when_client_cancels(self):
        spec = ex.ExperimentSpec(epochs=10000, batch_size=1)
        spec.dataset.builtin.kind = ex.DATASET_KIND_SPIRALS
        spec.dataset.builtin.samples = 2000
        spec.hidden_layers.add(units=64, activation=npb.ACTIVATION_TANH)
        spec.variants.add(output_activation=npb.ACTIVATION_SIGMOID, loss=npb.LOSS_MSE)
        stream = self.c.run_experiment(spec, timeout=60)
        next(stream)
        stream.cancel()
        time.sleep(0.5)
        t = time.monotonic()
        for _ in range(4):  # both compute threads free again
            self.c.train_step("small", [[0.1, 0.2]], [[1.0]])
        self.assertLess(time.monotonic() - t, 3.0)

    def test_many_concurrent_streams_one_connection(self):
        # 200 WatchMetrics streams on one channel: the server's 64-stream cap
        # answers the excess RESOURCE_EXHAUSTED, the rest are served.
        streams = [self.c.stub.WatchMetrics(pb.WatchMetricsRequest(start_step=-1), timeout=4)
                   for _ in range(200)]
        codes = {}
        for st in streams:
            got, _ = code_of(lambda: list(st))
            codes[got] = codes.get(got, 0) + 1
        note("200 WatchMetrics on one connection:", codes)
        self.assertGreater(codes.get(grpc.StatusCode.RESOURCE_EXHAUSTED, 0), 0, codes)
        self.assertEqual(sum(codes.values()), 200)
        self.assertEqual(set(codes) - {grpc.StatusCode.RESOURCE_EXHAUSTED,
                                       grpc.StatusCode.DEADLINE_EXCEEDED}, set(), codes)
        self.assertTrue(self.s.alive())

    def test_set_parameters_wrong_shape_mid_train(self):
        self.c.create_network(2, [(8, "tanh"), (1, "sigmoid")], network_id="mid", seed=4)
        before = self.c.get_parameters("mid")
        gate = threading.Event()

        def requests():
            yield train_req(name="networks/mid")
            gate.wait(10)

        stream = self.c.stub.Train(requests(), timeout=20)
        time.sleep(0.3)
        bad = [(np.zeros((3, 8)), np.zeros(8)), (np.zeros((8, 1)), np.zeros(1))]
        self.expect(grpc.StatusCode.ABORTED, lambda: self.c.set_parameters("mid", bad))
        gate.set()
        list(stream)
        self.expect(grpc.StatusCode.INVALID_ARGUMENT,
                    lambda: self.c.set_parameters("mid", bad), "layers")
        after = self.c.get_parameters("mid")
        for (w0, b0), (w1, b1) in zip(before, after):
            self.assertEqual(w0.tobytes(), w1.tobytes())
            self.assertEqual(b0.tobytes(), b1.tobytes())

    def test_delete_network_during_train_stream(self):
        self.c.create_network(2, [(8, "tanh"), (1, "sigmoid")], network_id="doomed")
        gate = threading.Event()

        def requests():
            yield train_req(name="networks/doomed")
            for _ in range(3):
                yield train_req([[0.1, 0.2]], [[1.0]])
            gate.wait(10)
            yield train_req([[0.1, 0.2]], [[1.0]])

        stream = self.c.stub.Train(requests(), timeout=20)
        time.sleep(0.5)
        self.c.delete_network("doomed")
        # Observed: the stream is not ended at the deletion but at its next
        # minibatch (or the idle timeout), ABORTED naming the deletion.
        threading.Timer(1.0, gate.set).start()
        replies = []
        got, msg = code_of(lambda: replies.extend(stream))
        note("Train stream after DeleteNetwork:", got, msg)
        self.assertEqual(got, grpc.StatusCode.ABORTED, msg)
        self.assertIn("deleted", msg)
        self.assertEqual(len(replies), 3)
        self.expect(grpc.StatusCode.NOT_FOUND, lambda: self.c.get_network("doomed"))

    def test_nan_inf_and_shape_lies(self):
        before = self.c.get_network("small").step
        for x in ([[float("nan"), 0.0]], [[float("inf"), 0.0]]):
            self.expect(grpc.StatusCode.INVALID_ARGUMENT,
                        lambda: self.c.train_step("small", x, [[1.0]]), "inputs")
        req = pb.TrainStepRequest(name="networks/small")
        req.batch.inputs.shape.extend([2**40, 2])
        req.batch.inputs.double_values.extend([0.1, 0.2])
        to_tensor([[1.0]], out=req.batch.targets)
        self.expect(grpc.StatusCode.INVALID_ARGUMENT,
                    lambda: self.c.stub.TrainStep(req, timeout=10), "inputs")
        req.batch.inputs.shape[:] = [-1, -2]
        self.expect(grpc.StatusCode.INVALID_ARGUMENT,
                    lambda: self.c.stub.TrainStep(req, timeout=10), "inputs")
        self.assertEqual(self.c.get_network("small").step, before)

    def test_absurd_network_specs(self):
        # Size limits are RESOURCE_EXHAUSTED (the proto's error table), the
        # rest INVALID_ARGUMENT.
        for layers, code, field in (
                ([(2**31 - 1, "tanh")], grpc.StatusCode.RESOURCE_EXHAUSTED, "units"),
                ([(1, "tanh")] * 10000, grpc.StatusCode.RESOURCE_EXHAUSTED, "layers"),
                ([(0, "tanh")], grpc.StatusCode.INVALID_ARGUMENT, "units")):
            self.expect(code, lambda: self.c.create_network(2, layers), field)
        self.expect(grpc.StatusCode.INVALID_ARGUMENT,
                    lambda: self.c.create_network(2, [(4, "tanh")], network_id="é" * 40))
        self.expect(grpc.StatusCode.INVALID_ARGUMENT,
                    lambda: self.c.get_network("x" * 100000), "name")

    def test_half_close_without_any_message_and_trailing_garbage(self):
        # A stream closed before its first message names nothing: OK,
        # nothing applied.
        before = self.c.get_network("small").step
        replies = []
        got, msg = code_of(lambda: replies.extend(self.c.stub.Train(iter([]), timeout=5)))
        note("Train with no message:", got, msg)
        self.assertEqual((got, replies), (grpc.StatusCode.OK, []))
        self.assertEqual(self.c.get_network("small").step, before)
        raw = self.c._channel.stream_stream(SERVICE + "Train", request_serializer=lambda b: b,
                                            response_deserializer=pb.TrainResponse.FromString)
        self.expect(grpc.StatusCode.INVALID_ARGUMENT,
                    lambda: list(raw(iter([b"\xff" * 10]), timeout=5)))


if __name__ == "__main__":
    unittest.main(verbosity=2)
