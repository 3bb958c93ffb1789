'use strict';
// The Node client (client/node) against a live satlab-server.
// Run: SATLAB_SERVER_BIN=build/server/satlab-server node --test tests/node/

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('path');
const { execFile } = require('child_process');
const { promisify } = require('util');
const crypto = require('crypto');
const fs = require('fs');
const net = require('net');
const os = require('os');

// The package under test is the `npm pack` tarball installed into a temp
// app (run_packed.js sets these); the examples run from the checkout.
const CLIENT_DIR = path.resolve(__dirname, '..', '..', 'client', 'node');
const PKG = process.env.SATLAB_CLIENT_PKG;
const APP = process.env.SATLAB_CLIENT_APP;
if (!PKG || !APP) {
  throw new Error('SATLAB_CLIENT_PKG/SATLAB_CLIENT_APP not set: run tests/node/run_packed.js (ctest lang.node)');
}
const { Client, tensor, values, rows, root, grpc, protobuf, PROTO_ROOT } = require(PKG);
const { startServer } = require('./live_server.js');

const run = promisify(execFile);
const sigmoid = (z) => 1 / (1 + Math.exp(-z));
const unique = (p) => `${p}-${crypto.randomBytes(5).toString('hex')}`;

let server;
let client;

test.before(async () => {
  server = await startServer();
  client = new Client(server.address, { deadlineMs: 20000 });
  await client.waitReady(10000);
});

test.after(async () => {
  if (client) client.close();
  if (server) {
    const code = await server.stop();
    assert.equal(code, 0, `satlab-server exit code after SIGTERM: ${server.log()}`);
  }
});

function neuronSpec(loss) {
  return {
    input_size: 1,
    layers: [{ units: 1, activation: 'ACTIVATION_SIGMOID' }],
    loss,
    init: {
      scheme: 'INIT_SCHEME_EXPLICIT',
      parameters: [{ weights: tensor([2], [1, 1], 'float64'), biases: tensor([2], [1], 'float64') }],
    },
    optimizer: { sgd: { learning_rate: 0.15 } },
    dtype: 'DTYPE_FLOAT64',
  };
}

test('TensorCodec_PackedFloats_IdenticalToProtobufjsAndExact', () => {
  const Minibatch = root().lookupType('satlab.v1.Minibatch');
  const x = Float32Array.from({ length: 12 }, (_, i) => i / 7);
  const y = Float64Array.from([1, 0, 1]);
  const msg = { inputs: tensor(x, [3, 4]), targets: tensor(y, [3, 1]) };
  const bytes = Minibatch.encode(Minibatch.fromObject(msg)).finish();
  // Reference encoding with protobufjs's generic writer (element by element).
  const w = protobuf.Writer.create();
  w.uint32(10).fork().uint32(10).fork().int64(3).int64(4).ldelim().uint32(18).fork();
  for (const v of x) w.float(v);
  w.ldelim().ldelim();
  w.uint32(18).fork().uint32(10).fork().int64(3).int64(1).ldelim().uint32(26).fork();
  for (const v of y) w.double(v);
  w.ldelim().ldelim();
  assert.deepEqual(Buffer.from(bytes), Buffer.from(w.finish()));
  const back = Minibatch.toObject(Minibatch.decode(bytes));
  assert.deepEqual(back.inputs.shape, [3, 4]);
  assert.ok(back.inputs.float_values instanceof Float32Array);
  assert.deepEqual(Array.from(back.inputs.float_values), Array.from(x));
  assert.deepEqual(Array.from(back.targets.double_values), [1, 0, 1]);
  assert.throws(() => tensor([1, 2, 3], [2, 2]), /needs 4 values, got 3/);
});

test('Health_Service_Serving', async () => {
  assert.equal(await client.health(), 'SERVING');
  assert.equal(await client.health(''), 'SERVING');
});

test('ComputeGradients_SingleNeuron_MseAttenuatedBceNot', async () => {
  const { network } = await client.createNetwork({ network: { spec: neuronSpec('LOSS_MSE') }, network_id: unique('node') });
  try {
    const res = await client.computeGradients({
      name: network.name,
      batch: { inputs: tensor([1], [1, 1], 'float64'), targets: tensor([0], [1, 1], 'float64') },
      counterfactual_losses: ['LOSS_BCE'],
    });
    const a = sigmoid(4);
    const mse = res.gradients;
    const bce = res.counterfactuals[0];
    assert.equal(mse.loss, 'LOSS_MSE');
    assert.equal(bce.loss, 'LOSS_BCE');
    const dwMse = values(mse.layers[0].weights)[0];
    const dwBce = values(bce.layers[0].weights)[0];
    assert.ok(Math.abs(dwMse - 0.017345) < 1e-6, `mse dC/dw ${dwMse}`);
    assert.ok(Math.abs(dwBce - 0.982014) < 1e-6, `bce dC/dw ${dwBce}`);
    assert.ok(Math.abs(mse.saturation.output_attenuation - a * (1 - a)) < 1e-9);
    assert.ok(Math.abs(bce.saturation.output_attenuation - 1) < 1e-9);
    assert.deepEqual(rows(bce.output_delta), [[a]]);
  } finally {
    await client.deleteNetwork({ name: network.name });
  }
});

test('Forward_LargeFloat32Batch_ValuesExact', async () => {
  const n = 4000;
  const cols = 50;
  const { network } = await client.createNetwork({
    network: {
      spec: {
        input_size: cols,
        layers: [{ units: 1, activation: 'ACTIVATION_IDENTITY' }],
        loss: 'LOSS_MSE',
        init: { scheme: 'INIT_SCHEME_EXPLICIT', parameters: [{ weights: tensor(new Float32Array(cols).fill(1), [cols, 1]), biases: tensor([0.5], [1]) }] },
        dtype: 'DTYPE_FLOAT32',
      },
    },
  });
  try {
    // Integers: sums are exact in float32.
    const x = Float32Array.from({ length: n * cols }, (_, i) => i % 7);
    const res = await client.forward({ name: network.name, inputs: tensor(x, [n, cols]) });
    assert.deepEqual(res.outputs.shape, [n, 1]);
    assert.ok(res.outputs.float_values instanceof Float32Array);
    for (let r = 0; r < n; r += 997) {
      let s = 0.5;
      for (let c = 0; c < cols; c++) s += x[r * cols + c];
      assert.equal(res.outputs.float_values[r], s);
    }
  } finally {
    await client.deleteNetwork({ name: network.name });
  }
});

test('Train_StreamOfMinibatches_ReportsEveryKAndLast', async () => {
  const { network } = await client.createNetwork({ network: { spec: neuronSpec('LOSS_BCE') } });
  try {
    const call = client.train();
    const results = [];
    const done = new Promise((resolve, reject) => {
      call.on('data', (r) => results.push(r));
      call.on('error', reject);
      call.on('end', resolve);
    });
    call.write({ name: network.name, report_every: 4 });
    for (let i = 0; i < 10; i++) {
      call.write({ batch: { inputs: tensor([1], [1, 1]), targets: tensor([0], [1, 1]) } });
    }
    call.end();
    await done;
    assert.deepEqual(results.map((r) => r.result.step), [4, 8, 10]);
    assert.equal(results.at(-1).batches_applied, 10);
    assert.ok(results.at(-1).result.loss < results[0].result.loss);
    const { network: after } = await client.getNetwork({ name: network.name });
    assert.equal(after.step, 10);
  } finally {
    await client.deleteNetwork({ name: network.name });
  }
});

test('TrainBatches_PackedEqualsOneByOne_BitwiseAndLossesReported', async () => {
  const spec = {
    input_size: 2,
    layers: [{ units: 5, activation: 'ACTIVATION_TANH' }, { units: 1, activation: 'ACTIVATION_SIGMOID' }],
    loss: 'LOSS_BCE',
    init: { scheme: 'INIT_SCHEME_GLOROT_UNIFORM', seed: 9 },
    optimizer: { adam: { learning_rate: 0.01 } },
    dtype: 'DTYPE_FLOAT32',
  };
  const batches = [];
  for (let i = 0; i < 29; i++) {
    const n = 1 + (i % 4);
    const x = Float32Array.from({ length: 2 * n }, (_, k) => Math.sin(i * 3 + k));
    const y = Float32Array.from({ length: n }, (_, r) => (x[2 * r] > x[2 * r + 1] ? 1 : 0));
    batches.push({ inputs: tensor(x, [n, 2]), targets: tensor(y, [n, 1]) });
  }
  const names = [];
  for (let k = 0; k < 3; k++) names.push((await client.createNetwork({ network: { spec } })).network.name);
  try {
    const one = [];
    for await (const r of client.trainBatches(names[0], batches, { batchesPerMessage: 1 })) one.push(r);
    const packed = [];
    for await (const r of client.trainBatches(names[1], batches, { batchesPerMessage: 8, reportEvery: 5, reportLosses: true })) {
      packed.push(r);
    }
    assert.equal(one.length, 29);
    assert.deepEqual(packed.map((r) => r.result.step), [5, 10, 15, 20, 25, 29]);
    assert.deepEqual(packed.flatMap((r) => r.losses), one.map((r) => r.result.loss));
    // TrainStep with several minibatches: all or nothing, the same steps.
    const steps = await client.trainStep({ name: names[2], batches });
    assert.equal(steps.steps_applied, 29);
    assert.deepEqual(steps.losses, one.map((r) => r.result.loss));
    const bad = [batches[0], { inputs: tensor([1, 2, 3], [1, 3]), targets: tensor([0], [1, 1]) }];
    await assert.rejects(client.trainStep({ name: names[2], batches: bad }),
      (e) => e.code === grpc.status.INVALID_ARGUMENT && e.details.includes('batches[1].inputs'));
    const params = [];
    for (const name of names) {
      const { layers } = await client.getParameters({ name });
      params.push(Buffer.concat(layers.flatMap((l) => [values(l.weights), values(l.biases)])
        .map((v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength))));
    }
    assert.ok(params[0].equals(params[1]) && params[0].equals(params[2]), 'parameters differ');
    assert.equal((await client.getNetwork({ name: names[2] })).network.step, 29);
  } finally {
    for (const name of names) await client.deleteNetwork({ name });
  }
});

// trainResumable against a durable server SIGKILLed and restarted (same
// port, same data directory) mid-stream: every step reported once, in
// order, and the network ends bitwise equal to an uninterrupted run.
test('TrainResumable_ServerKilledMidStream_ResumesBitwise', async () => {
  const port = await new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => { const p = probe.address().port; probe.close(() => resolve(p)); });
  });
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'satlab-noderesume-'));
  const args = [`--port=${port}`, `--data_dir=${dataDir}`, '--compute_threads=1'];
  let live = await startServer(undefined, args);
  const c = new Client(`127.0.0.1:${port}`, {
    deadlineMs: 20000,
    options: { 'grpc.initial_reconnect_backoff_ms': 50, 'grpc.max_reconnect_backoff_ms': 200 },
  });
  try {
    const spec = {
      input_size: 3,
      layers: [{ units: 8, activation: 'ACTIVATION_TANH' }, { units: 1, activation: 'ACTIVATION_SIGMOID' }],
      loss: 'LOSS_BCE',
      init: { scheme: 'INIT_SCHEME_GLOROT_UNIFORM', seed: 5 },
      optimizer: { adam: { learning_rate: 0.01 } },
      dtype: 'DTYPE_FLOAT64',
    };
    const batches = [];
    for (let i = 0; i < 300; i++) {
      const x = Float64Array.from({ length: 24 }, (_, k) => 2 * Math.sin(7 * i + 3 * k));
      const y = Float64Array.from({ length: 8 }, (_, r) => (x[3 * r] + x[3 * r + 1] + x[3 * r + 2] > 0 ? 1 : 0));
      batches.push({ inputs: tensor(x, [8, 3]), targets: tensor(y, [8, 1]) });
    }
    const ref = (await c.createNetwork({ network: { spec } })).network.name;
    const resumed = (await c.createNetwork({ network: { spec } })).network.name;
    for await (const r of c.trainBatches(ref, batches, { batchesPerMessage: 1 })) assert.ok(r.result.step > 0);
    const seen = [];
    // The source hands out minibatch i only once step i - 40 was reported,
    // so the first server cannot have trained all 300 when it is killed
    // (without it the server runs ahead of this loop and may finish first).
    async function* gated() {
      for (let i = 0; i < batches.length; i++) {
        while (i > seen.length + 40) await new Promise((resolve) => { setTimeout(resolve, 1); });
        yield batches[i];
      }
    }
    // 8 minibatches per message, commits every 7 steps: the commits and the
    // kill fall inside messages.
    for await (const r of c.trainResumable(resumed, gated(), { batchesPerMessage: 8, commitEverySteps: 7 })) {
      seen.push(r.result.step);
      if (seen.length === 120) {
        live.proc.kill('SIGKILL');
        await live.stop();
        live = await startServer(undefined, args);
      }
    }
    assert.deepEqual(seen, [...new Set(seen)].sort((a, b) => a - b), 'steps in order, each once');
    assert.equal(seen[seen.length - 1], 300);
    assert.ok(seen.length > 120, `${seen.length} responses`);
    const bytes = async (name) => {
      const { layers } = await c.getParameters({ name });
      return Buffer.concat(layers.flatMap((l) => [values(l.weights), values(l.biases)])
        .map((v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength)));
    };
    assert.ok((await bytes(ref)).equals(await bytes(resumed)), 'parameters differ from the uninterrupted run');
    const { network } = await c.getNetwork({ name: resumed });
    assert.deepEqual([network.step, network.durable_step], [300, 300]);
    // Not retryable: a missing network fails at once, naming it.
    await assert.rejects(async () => {
      for await (const r of c.trainResumable('networks/absent', batches.slice(0, 2))) assert.fail(r);
    }, (e) => e.code === grpc.status.NOT_FOUND);
    // A source that throws ends the call with its error, not a resume.
    const broken = (await c.createNetwork({ network: { spec } })).network.name;
    async function* failing() {
      yield batches[0];
      yield batches[1];
      throw new Error('source broke');
    }
    await assert.rejects(async () => {
      for await (const r of c.trainResumable(broken, failing(), { batchesPerMessage: 1 })) assert.ok(r.result.step <= 2);
    }, /source broke/);
  } finally {
    c.close();
    await live.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});

test('Errors_UnknownNetworkAndBadShape_StatusCodes', async () => {
  await assert.rejects(client.getNetwork({ name: `networks/${unique('missing')}` }),
    (e) => e.code === grpc.status.NOT_FOUND);
  const { network } = await client.createNetwork({ network: { spec: neuronSpec('LOSS_MSE') } });
  try {
    await assert.rejects(client.trainStep({
      name: network.name,
      batch: { inputs: tensor([1, 2, 3, 4, 5, 6], [2, 3]), targets: tensor([0, 0], [2, 1]) },
    }), (e) => e.code === grpc.status.INVALID_ARGUMENT && /inputs/.test(e.details));
  } finally {
    await client.deleteNetwork({ name: network.name });
  }
});

test('ExportImport_RoundTrip_SameParametersAndNextStep', async () => {
  const { network } = await client.createNetwork({ network: { spec: neuronSpec('LOSS_BCE') } });
  const id = unique('nodecopy');
  const batch = { inputs: tensor([1], [1, 1]), targets: tensor([0], [1, 1]) };
  try {
    await client.trainStep({ name: network.name, batch });
    const file = await client.exportNetwork({ name: network.name });
    assert.equal(file.subarray(0, 4).toString(), 'SLNS');
    const { network: copy } = await client.importNetwork({ data: file, network_id: id });
    assert.equal(copy.name, `networks/${id}`);
    assert.equal(copy.step, 1);
    const a = await client.getParameters({ name: network.name });
    const b = await client.getParameters({ name: copy.name });
    assert.deepEqual(b.layers, a.layers);
    const sa = await client.trainStep({ name: network.name, batch });
    const sb = await client.trainStep({ name: copy.name, batch });
    assert.equal(sb.result.loss, sa.result.loss);
    await assert.rejects(client.importNetwork({ data: file, network_id: id }),
      (e) => e.code === grpc.status.ALREADY_EXISTS);
    const damaged = Buffer.from(file);
    damaged[damaged.length >> 1] ^= 1;
    await assert.rejects(client.importNetwork({ data: damaged, network_id: unique('nodebad') }),
      (e) => e.code === grpc.status.DATA_LOSS);
  } finally {
    await client.deleteNetwork({ name: network.name });
    await client.deleteNetwork({ name: `networks/${id}` }).catch(() => {});
  }
});

test('WatchMetricsAndRunExperiment_ServerStreams_AsyncIterable', async () => {
  const { network } = await client.createNetwork({ network: { spec: neuronSpec('LOSS_BCE') } });
  try {
    for (let i = 0; i < 3; i++) {
      await client.trainStep({ name: network.name, batch: { inputs: tensor([1], [1, 1]), targets: tensor([0], [1, 1]) } });
    }
    const watch = client.watchMetrics({ name: network.name, start_step: 0 }, { deadlineMs: 20000 });
    const steps = [];
    for await (const { event } of watch) {
      if (event.step) {
        assert.equal(event.network, network.name);
        steps.push(event.step.step);
      }
      if (steps.length === 3) break;   // leaving the loop cancels the call
    }
    assert.deepEqual(steps, [1, 2, 3]);
  } finally {
    await client.deleteNetwork({ name: network.name });
  }

  const kinds = [];
  let summary = null;
  const exp = client.runExperiment({ spec: {
    display_name: unique('node-exp'), epochs: 2, batch_size: 4,
    dataset: { builtin: { kind: 'DATASET_KIND_XOR', samples: 8, single_output: true, seed: 1 } },
    hidden_layers: [{ units: 3, activation: 'ACTIVATION_TANH' }],
    init: { scheme: 'INIT_SCHEME_UNIFORM_FAN_IN', seed: 5 },
    variants: [{ output_activation: 'ACTIVATION_SIGMOID', loss: 'LOSS_MSE' },
               { output_activation: 'ACTIVATION_SIGMOID', loss: 'LOSS_BCE' }],
    optimizer: { sgd: { learning_rate: 0.5 } },
  } }, { deadlineMs: 60000 });
  for await (const msg of exp) {
    kinds.push(msg.kind);
    if (msg.kind === 'summary') summary = msg.summary;
  }
  assert.ok(kinds.includes('epoch'));
  assert.equal(kinds.at(-1), 'summary');
  assert.equal(summary.variants.length, 2);
});

test('Experiments_GetListDelete_CurvesEqualTheStream', async () => {
  const id = unique('nodeexp');
  const epochs = [];
  let summary = null;
  let name = '';
  const exp = client.runExperiment({ experiment_id: id, spec: {
    epochs: 3, no_shuffle: true,
    dataset: { builtin: { kind: 'DATASET_KIND_SINGLE_SAMPLE' } },
    variants: [{ output_activation: 'ACTIVATION_SIGMOID', loss: 'LOSS_BCE' }],
    optimizer: { sgd: { learning_rate: 0.15 } },
  } }, { deadlineMs: 60000 });
  for await (const msg of exp) {
    name = msg.experiment;
    if (msg.kind === 'epoch') epochs.push(msg.epoch);
    if (msg.kind === 'summary') summary = msg.summary;
  }
  assert.equal(name, `experiments/${id}`);
  const { experiment } = await client.getExperiment({ name });
  assert.equal(experiment.state, 'EXPERIMENT_STATE_SUCCEEDED');
  assert.deepEqual(experiment.curves, epochs);
  assert.deepEqual(experiment.summary, summary);
  const { experiments } = await client.listExperiments({ page_size: 1000 });
  assert.ok(experiments.some((e) => e.name === name && e.curves.length === 0));
  await client.deleteExperiment({ name });
  await assert.rejects(client.getExperiment({ name }),
    (e) => e.code === grpc.status.NOT_FOUND && e.details.includes(name));
});

test('TrainStreamExample_StreamsAndReports', async () => {
  const { stdout } = await run(process.execPath, [path.join(CLIENT_DIR, 'examples', 'train_stream.js'),
    '--server', server.address, '--batches', '40', '--batch-size', '64', '--report-every', '10'], { timeout: 120000 });
  const steps = [...stdout.matchAll(/^step\s+(\d+)/gm)].map((m) => Number(m[1]));
  assert.deepEqual(steps, [10, 20, 30, 40]);
  assert.match(stdout, /streamed 40 minibatches of 64 rows/);
});

test('ReflectionExample_ListsAndDescribesWithoutLocalProtos', async () => {
  const { stdout } = await run(process.execPath, [path.join(CLIENT_DIR, 'examples', 'reflection.js'),
    '--server', server.address], { timeout: 60000 });
  assert.match(stdout, /satlab\.v1\.TrainingService/);
  assert.match(stdout, /grpc\.health\.v1\.Health/);
  assert.match(stdout, /rpc Train\(stream satlab\.v1\.TrainRequest\) returns \(stream satlab\.v1\.TrainResponse\)/);
  assert.match(stdout, /ListNetworks via reflected descriptors: \d+ network/);
});

test('package: loaded from the installed tarball, with its own protos', () => {
  const resolved = require.resolve(PKG);
  assert.ok(resolved.startsWith(path.join(APP, 'node_modules', 'satlab-client')), resolved);
  assert.equal(PROTO_ROOT, path.join(APP, 'node_modules', 'satlab-client', 'proto'));
  assert.ok(!resolved.startsWith(CLIENT_DIR), resolved);
});

// ES module and CommonJS consumers of the installed package, each in its own
// process with the temp app as cwd (so 'satlab-client' resolves as a user's
// would), against the live server.
for (const script of ['esm_check.mjs', 'cjs_check.cjs']) {
  test(`package: ${script} imports 'satlab-client' and calls the server`, async () => {
    const { stdout } = await run(process.execPath, [path.join(APP, script), server.address],
      { cwd: APP, timeout: 30000 });
    assert.match(stdout, /dC\/dw mse 0\.0173\d* bce 0\.98201\d*/);
    assert.match(stdout, /default export ok/);
  });
}
