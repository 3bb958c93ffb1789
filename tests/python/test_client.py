"""satlab.Client (Python) against a live satlab-server."""

import os
import pathlib
import subprocess
import sys
import unittest
import uuid

import grpc
import numpy as np

from live_server import LiveServer

import satlab
from satlab.v1 import experiment_pb2, network_pb2

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
EXAMPLES = REPO / "client" / "python" / "examples"

server = None


def setUpModule():
    global server
    server = LiveServer(os.environ["SATLAB_SERVER_BIN"]).start()


def tearDownModule():
    code = server.stop()
    if code not in (0, None):
        raise RuntimeError(f"satlab-server exited with {code} after SIGTERM: {server.log()}")


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.c = satlab.Client(server.address, timeout=20)
        self.c.wait_ready(10)
        self.created = []

    def tearDown(self):
        for name in self.created:
            try:
                self.c.delete_network(name)
            except grpc.RpcError:
                pass
        self.c.close()

    def create(self, **kwargs):
        kwargs.setdefault("network_id", unique("py"))
        net = self.c.create_network(**kwargs)
        self.created.append(net.name)
        return net

    def neuron(self, loss="mse", lr=0.15):
        return self.create(input_size=1, layers=[(1, "sigmoid")], loss=loss,
                           parameters=[(np.array([[2.0]]), np.array([2.0]))],
                           optimizer=satlab.sgd(lr), dtype="float64")

    def test_Health_Service_Serving(self):
        self.assertEqual(self.c.health(), "SERVING")
        self.assertEqual(self.c.health(""), "SERVING")

    def test_ComputeGradients_SingleNeuron_MseAttenuatedBceNot(self):
        net = self.neuron("mse")
        x, y = np.array([[1.0]]), np.array([[0.0]])
        g, other = self.c.compute_gradients(net, x, y, counterfactual_losses=["bce"])
        a = sigmoid(4.0)
        self.assertEqual(g.loss, "mse")
        self.assertAlmostEqual(g.loss_value, 0.5 * a * a, places=12)
        dw, db = g.layers[0]
        self.assertEqual(dw.shape, (1, 1))
        self.assertEqual(db.shape, (1,))
        self.assertAlmostEqual(dw[0, 0], 0.017345, places=6)
        self.assertAlmostEqual(dw[0, 0], a * a * (1 - a), places=12)
        self.assertAlmostEqual(g.saturation.output_attenuation, a * (1 - a), places=9)
        bce = other["bce"]
        self.assertAlmostEqual(bce.layers[0][0][0, 0], 0.982014, places=6)
        self.assertAlmostEqual(bce.loss_value, -np.log(1 - a), places=9)
        self.assertAlmostEqual(bce.saturation.output_attenuation, 1.0, places=9)
        np.testing.assert_allclose(bce.output_delta, [[a]], rtol=1e-12)
        # Parameters untouched.
        w, b = self.c.get_parameters(net)[0]
        self.assertEqual((w[0, 0], b[0]), (2.0, 2.0))

    def test_Parameters_RoundTrip_BitExact(self):
        rng = np.random.default_rng(7)
        for dtype, npdtype in (("float64", np.float64), ("float32", np.float32)):
            net = self.create(input_size=5, layers=[(4, "tanh"), (3, "sigmoid")], loss="mse", dtype=dtype)
            params = [(rng.standard_normal((5, 4)).astype(npdtype), rng.standard_normal(4).astype(npdtype)),
                      (rng.standard_normal((4, 3)).astype(npdtype), rng.standard_normal(3).astype(npdtype))]
            self.c.set_parameters(net, params)
            got = self.c.get_parameters(net)
            for (w, b), (gw, gb) in zip(params, got):
                self.assertEqual(gw.dtype, npdtype)
                np.testing.assert_array_equal(gw, w)
                np.testing.assert_array_equal(gb, b)

    def test_Forward_TwoLayers_MatchesNumpy(self):
        rng = np.random.default_rng(1)
        params = [(rng.standard_normal((3, 4)), rng.standard_normal(4)),
                  (rng.standard_normal((4, 2)), rng.standard_normal(2))]
        net = self.create(input_size=3, layers=[(4, "tanh"), (2, "sigmoid")], loss="bce",
                          parameters=params, dtype="float64")
        x = rng.standard_normal((6, 3))
        out, layers = self.c.forward(net, x, include_layers=True)
        z1 = x @ params[0][0] + params[0][1]
        a1 = np.tanh(z1)
        z2 = a1 @ params[1][0] + params[1][1]
        np.testing.assert_allclose(out, sigmoid(z2), rtol=1e-12)
        np.testing.assert_allclose(layers[0][0], z1, rtol=1e-12)
        np.testing.assert_allclose(layers[0][1], a1, rtol=1e-12)
        self.assertEqual(len(layers), 2)

    def test_Forward_LargeFloat32Batch_ShapeAndValues(self):
        net = self.create(input_size=100, layers=[(1, "identity")], loss="mse", dtype="float32",
                          parameters=[(np.ones((100, 1), np.float32), np.zeros(1, np.float32))])
        x = np.random.default_rng(2).random((5000, 100), dtype=np.float32)
        out = self.c.forward(net, x)
        self.assertEqual(out.shape, (5000, 1))
        self.assertEqual(out.dtype, np.float32)
        np.testing.assert_allclose(out[:, 0], x.sum(axis=1), rtol=1e-4)

    def test_TrainStep_Bce_LossFallsFasterThanMse(self):
        x, y = np.array([[1.0]]), np.array([[0.0]])
        losses = {}
        for loss in ("mse", "bce"):
            net = self.neuron(loss)
            first = self.c.train_step(net, x, y)
            self.assertEqual(first.step, 1)
            self.assertEqual(first.batch_size, 1)
            self.assertFalse(first.diverged)
            for _ in range(29):
                r = self.c.train_step(net, x, y)
            self.assertEqual(r.step, 30)
            losses[loss] = (first.loss, r.loss)
            self.assertEqual(self.c.get_network(net).step, 30)
        # Relative progress after 30 steps: bce is well off the plateau, mse barely moved.
        mse_drop = 1 - losses["mse"][1] / losses["mse"][0]
        bce_drop = 1 - losses["bce"][1] / losses["bce"][0]
        self.assertGreater(bce_drop, 0.3)
        self.assertLess(mse_drop, 0.1)

    def test_Train_Stream_ReportsEveryKAndLast(self):
        net = self.create(input_size=2, layers=[(4, "tanh"), (1, "sigmoid")], loss="bce", seed=3,
                          optimizer=satlab.sgd(0.5))
        xor_x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
        xor_y = np.array([[0], [1], [1], [0]], dtype=np.float64)
        batches = [(xor_x, xor_y)] * 22
        responses = list(self.c.train(net, batches, report_every=5, timeout=60))
        steps = [r.result.step for r in responses]
        self.assertEqual(steps, [5, 10, 15, 20, 22])
        self.assertEqual(responses[-1].batches_applied, 22)
        ev = self.c.evaluate(net, xor_x, xor_y)
        self.assertEqual(ev.samples, 4)
        self.assertEqual(ev.step, 22)
        self.assertTrue(0 <= ev.accuracy <= 1)

    def test_PackedTrainAndTrainSteps_EqualOneByOne_Bitwise(self):
        rng = np.random.default_rng(11)
        batches = []
        for i in range(37):
            x = rng.uniform(-1, 1, size=(1 + i % 5, 2))
            batches.append((x, (x[:, :1] > x[:, 1:]).astype(float)))
        nets = {}
        for key in ("one", "packed", "steps"):
            nets[key] = self.create(input_size=2, layers=[(6, "tanh"), (1, "sigmoid")], loss="bce",
                                    seed=4, optimizer=satlab.adam(0.01), dtype="float32")
        one = list(self.c.train(nets["one"], batches, batches_per_message=1, timeout=60))
        packed = list(self.c.train(nets["packed"], batches, batches_per_message=8, report_every=4,
                                   report_losses=True, timeout=60))
        # Responses every 4 steps and after the last, whatever the packing,
        # each listing the losses of its steps.
        self.assertEqual([r.result.step for r in packed], [4, 8, 12, 16, 20, 24, 28, 32, 36, 37])
        losses = [loss for r in packed for loss in r.losses]
        self.assertEqual(losses, [r.result.loss for r in one])
        for r in packed:  # durable_step may differ (commits every second too)
            a, b = r.result, one[r.batches_applied - 1].result
            self.assertEqual((a.step, a.loss, a.accuracy, a.saturation),
                             (b.step, b.loss, b.accuracy, b.saturation))
        r = self.c.train_steps(nets["steps"], batches[:20])
        r2 = self.c.train_steps(nets["steps"], batches[20:])
        self.assertEqual((r.steps_applied, r2.steps_applied), (20, 17))
        self.assertEqual(list(r.losses) + list(r2.losses), losses)
        self.assertEqual(r2.result.step, 37)
        ref = self.c.get_parameters(nets["one"])
        for key in ("packed", "steps"):
            for (rw, rb), (gw, gb) in zip(ref, self.c.get_parameters(nets[key])):
                self.assertEqual(rw.tobytes(), gw.tobytes(), key)
                self.assertEqual(rb.tobytes(), gb.tobytes(), key)
        # A bad minibatch in the middle: nothing of the call applied.
        bad = batches[:3] + [(np.zeros((2, 3)), np.zeros((2, 1)))] + batches[3:5]
        with self.assertRaises(grpc.RpcError) as err:
            self.c.train_steps(nets["steps"], bad)
        self.assertEqual(err.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("batches[3].inputs", err.exception.details())
        self.assertEqual(self.c.get_network(nets["steps"]).step, 37)

    def test_ListNetworks_Paginated_SeesAll(self):
        names = {self.create(input_size=1, layers=[(1, "sigmoid")], loss="mse").name for _ in range(3)}
        listed = {n.name for n in self.c.list_networks(page_size=2)}
        self.assertTrue(names <= listed, f"{names} not in {listed}")

    def test_Errors_UnknownNetworkAndBadShape_CodesAndFieldNames(self):
        with self.assertRaises(grpc.RpcError) as e:
            self.c.get_network("networks/" + unique("missing"))
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        net = self.neuron()
        with self.assertRaises(grpc.RpcError) as e:
            self.c.train_step(net, np.ones((2, 3)), np.zeros((2, 1)))
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("inputs", e.exception.details())
        with self.assertRaises(grpc.RpcError) as e:
            self.create(input_size=1, layers=[(1, "relu")], loss="bce")
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(ValueError):
            self.create(input_size=1, layers=[(1, "no-such-activation")], loss="mse")

    def test_RunExperiment_TwoVariants_StreamsEpochsThenSummary(self):
        spec = experiment_pb2.ExperimentSpec(
            display_name=unique("py-exp"), epochs=3, batch_size=4,
            dataset=experiment_pb2.Dataset(builtin=experiment_pb2.BuiltinDataset(
                kind=experiment_pb2.DATASET_KIND_XOR, samples=8, single_output=True, seed=1)),
            init=network_pb2.Initialization(scheme=network_pb2.INIT_SCHEME_UNIFORM_FAN_IN, seed=5),
            optimizer=satlab.sgd(0.5))
        spec.hidden_layers.add(units=3, activation=network_pb2.ACTIVATION_TANH)
        spec.variants.add(output_activation=network_pb2.ACTIVATION_SIGMOID, loss=network_pb2.LOSS_MSE)
        spec.variants.add(output_activation=network_pb2.ACTIVATION_SIGMOID, loss=network_pb2.LOSS_BCE)
        msgs = list(self.c.run_experiment(spec, timeout=60))
        epochs = [m.epoch for m in msgs if m.WhichOneof("kind") == "epoch"]
        self.assertEqual(msgs[-1].WhichOneof("kind"), "summary")
        self.assertEqual({e.variant for e in epochs}, {0, 1})
        self.assertEqual(max(e.epoch for e in epochs), 3)
        self.assertEqual(len(msgs[-1].summary.variants), 2)

    def test_WatchMetrics_Replay_SeesSteps(self):
        net = self.neuron("bce")
        for _ in range(3):
            self.c.train_step(net, np.array([[1.0]]), np.array([[0.0]]))
        stream = self.c.watch_metrics(net, start_step=0, timeout=20)
        steps = []

        for msg in stream:
            if msg.event.WhichOneof("kind") == "step":
                self.assertEqual(msg.event.network, net.name)
                steps.append(msg.event.step.step)
            if len(steps) == 3:
                break
        stream.cancel()
        self.assertEqual(steps, [1, 2, 3])

    def test_ExportImport_RoundTrip_BitwiseAndSameNextStep(self):
        import tempfile
        net = self.create(input_size=3, layers=[(4, "tanh"), (2, "sigmoid")], loss="bce",
                          optimizer=satlab.adam(0.01), dtype="float64")
        x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.25]])
        y = np.array([[1.0, 0.0], [0.0, 1.0]])
        self.c.train_step(net, x, y)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "net.slx")
            size = self.c.export_network(net, path)
            self.assertEqual(size, os.path.getsize(path))
            with open(path, "rb") as f:
                self.assertEqual(f.read(4), b"SLNS")
            copy = self.c.import_network(path, unique("pycopy"))
            self.created.append(copy.name)
            self.assertEqual(copy.step, 1)
            for (w, b), (cw, cb) in zip(self.c.get_parameters(net), self.c.get_parameters(copy)):
                self.assertEqual(w.tobytes(), cw.tobytes())
                self.assertEqual(b.tobytes(), cb.tobytes())
            a = self.c.train_step(net, x, y)
            b = self.c.train_step(copy, x, y)
            self.assertEqual(a.loss, b.loss)
            with self.assertRaises(grpc.RpcError) as err:
                self.c.import_network(path, copy.name.split("/")[1])
            self.assertEqual(err.exception.code(), grpc.StatusCode.ALREADY_EXISTS)
            with open(path, "r+b") as f:
                f.seek(size // 2)
                byte = f.read(1)
                f.seek(size // 2)
                f.write(bytes([byte[0] ^ 1]))
            with self.assertRaises(grpc.RpcError) as err:
                self.c.import_network(path, unique("pybad"))
            self.assertEqual(err.exception.code(), grpc.StatusCode.DATA_LOSS)


    def test_Experiments_GetListDelete_CurvesEqualTheStream(self):
        spec = experiment_pb2.ExperimentSpec(
            epochs=3, no_shuffle=True,
            dataset=experiment_pb2.Dataset(builtin=experiment_pb2.BuiltinDataset(
                kind=experiment_pb2.DATASET_KIND_SINGLE_SAMPLE)),
            optimizer=satlab.sgd(0.15))
        spec.variants.add(output_activation=network_pb2.ACTIVATION_SIGMOID, loss=network_pb2.LOSS_BCE)
        exp_id = unique("pyexp")
        msgs = list(self.c.run_experiment(spec, timeout=60, experiment_id=exp_id))
        self.assertEqual(msgs[0].experiment, f"experiments/{exp_id}")
        got = self.c.get_experiment(exp_id)
        self.assertEqual(got.state, experiment_pb2.EXPERIMENT_STATE_SUCCEEDED)
        self.assertEqual(list(got.curves), [m.epoch for m in msgs if m.WhichOneof("kind") == "epoch"])
        self.assertEqual(got.summary, msgs[-1].summary)
        self.assertIn(f"experiments/{exp_id}", [e.name for e in self.c.list_experiments(page_size=1)])
        self.c.delete_experiment(got.name)
        with self.assertRaises(grpc.RpcError) as err:
            self.c.get_experiment(exp_id)
        self.assertEqual(err.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.assertIn(f"experiments/{exp_id}", err.exception.details())


class ExamplesTest(unittest.TestCase):
    def run_example(self, name, *args):
        r = subprocess.run([sys.executable, str(EXAMPLES / name), "--server", server.address, *args],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout

    def test_MseVsBceExample_PrintsNielsenGradients(self):
        out = self.run_example("mse_vs_bce.py", "--steps", "30")
        self.assertIn("0.017345", out)
        self.assertIn("0.982014", out)

    def test_ReflectionDemo_ListsAndDescribesWithoutLocalProtos(self):
        out = self.run_example("reflection_demo.py")
        self.assertIn("satlab.v1.TrainingService", out)
        self.assertIn("grpc.health.v1.Health", out)
        self.assertIn("rpc Train(stream satlab.v1.TrainRequest) returns (stream satlab.v1.TrainResponse)", out)
        self.assertIn("rpc ComputeGradients(satlab.v1.ComputeGradientsRequest)", out)
        self.assertIn("ListNetworks via reflected descriptors", out)


class TrainResumableTest(unittest.TestCase):
    """train_resumable against a durable server that is SIGKILLed and
    restarted mid-stream: the network ends bitwise equal to one trained
    without interruption."""

    def test_sigkill_mid_stream_resumes_bitwise(self):
        import shutil
        import socket
        import tempfile
        data_dir = tempfile.mkdtemp(prefix="satlab-pyresume-")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        args = [f"--port={port}", f"--data_dir={data_dir}", "--compute_threads=1", "--http_port=-1"]
        binary = os.environ["SATLAB_SERVER_BIN"]
        live = LiveServer(binary, args).start()
        fast_reconnect = [("grpc.max_reconnect_backoff_ms", 200),
                          ("grpc.initial_reconnect_backoff_ms", 50),
                          ("grpc.min_reconnect_backoff_ms", 50)]
        c = satlab.Client(f"127.0.0.1:{port}", options=fast_reconnect)
        try:
            rng = np.random.default_rng(3)
            batches = []
            for _ in range(300):
                x = rng.uniform(-2, 2, size=(8, 3))
                batches.append((x, (x.sum(axis=1, keepdims=True) > 0).astype(float)))
            opt = satlab.adam(0.01)
            for name in ("ref", "resumed"):
                c.create_network(3, [(8, "tanh"), (1, "sigmoid")], "bce", network_id=name,
                                 init="glorot_uniform", seed=5, optimizer=opt)
            list(c.train("ref", batches, batches_per_message=1))
            seen = []
            # 8 minibatches per message, commits every 7 steps: commits and
            # the kill fall inside messages.
            for response in c.train_resumable("resumed", batches, commit_every_steps=7,
                                              batches_per_message=8):
                seen.append(response.result.step)
                if len(seen) == 120:
                    live.proc.kill()  # SIGKILL, by PID
                    live.proc.wait()
                    live.stop()
                    live = LiveServer(binary, args).start()
            # In order, never twice, ending at the last step; results the
            # kill cut off (the server runs ahead of what the loop has read)
            # for steps already committed are not sent again.
            self.assertEqual(seen, sorted(set(seen)))
            self.assertEqual(seen[-1], 300)
            self.assertGreater(len(seen), 120)
            ref = c.get_parameters("ref")
            got = c.get_parameters("resumed")
            for (rw, rb), (gw, gb) in zip(ref, got):
                self.assertEqual(rw.tobytes(), gw.tobytes())
                self.assertEqual(rb.tobytes(), gb.tobytes())
            net = c.get_network("resumed")
            self.assertEqual((net.step, net.durable_step), (300, 300))
        finally:
            c.close()
            live.stop()
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
