#!/usr/bin/env node
'use strict';
// Streams minibatches through Train and prints the StepResults as they come.
//
// Creates a 2-16-1 network (tanh hidden, sigmoid output, bce) on two noisy
// Gaussian blobs generated here, streams `--batches` minibatches of
// `--batch-size` rows (Float32Array tensors, written straight into the
// protobuf bytes), and prints every `--report-every`-th result.
//
// Usage: node examples/train_stream.js [--server HOST:PORT] [--batches N]
//          [--batch-size N] [--report-every K] [--keep]

const { Client, tensor } = require('../satlab.js');

function parseArgs(argv) {
  const args = {
    server: process.env.SATLAB_SERVER || '127.0.0.1:50051',
    batches: 200, 'batch-size': 256, 'report-every': 20, keep: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const m = argv[i].match(/^--([^=]+)(?:=(.*))?$/);
    if (!m || !(m[1] in args)) throw new Error(`unknown argument ${argv[i]}`);
    if (typeof args[m[1]] === 'boolean') args[m[1]] = true;
    else args[m[1]] = m[2] !== undefined ? m[2] : argv[++i];
  }
  for (const k of ['batches', 'batch-size', 'report-every']) args[k] = Number(args[k]);
  return args;
}

// Deterministic PRNG (mulberry32) and Box-Muller normals.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function blobs(rows, next) {
  const x = new Float32Array(rows * 2);
  const y = new Float32Array(rows);
  for (let i = 0; i < rows; i++) {
    const cls = next() < 0.5 ? 0 : 1;
    const c = cls ? 1.5 : -1.5;
    for (let j = 0; j < 2; j++) {
      const n = Math.sqrt(-2 * Math.log(next() + 1e-12)) * Math.cos(2 * Math.PI * next());
      x[i * 2 + j] = c + n;
    }
    y[i] = cls;
  }
  return { inputs: tensor(x, [rows, 2]), targets: tensor(y, [rows, 1]) };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const client = new Client(args.server);
  await client.waitReady(10000);
  const { network } = await client.createNetwork({
    network: {
      spec: {
        input_size: 2,
        layers: [{ units: 16, activation: 'ACTIVATION_TANH' }, { units: 1, activation: 'ACTIVATION_SIGMOID' }],
        loss: 'LOSS_BCE',
        init: { scheme: 'INIT_SCHEME_GLOROT_UNIFORM', seed: 42 },
        optimizer: { sgd: { learning_rate: 0.1, momentum: 0.9 } },
        dtype: 'DTYPE_FLOAT32',
      },
    },
  });
  console.log(`created ${network.name} (${network.parameter_count} parameters)`);

  const call = client.train({}, { deadlineMs: 600000 });
  const done = new Promise((resolve, reject) => {
    let last = null;
    call.on('data', (res) => {
      last = res;
      const r = res.result;
      const sat = r.saturation.layers.map((l) => l.saturated_fraction.toFixed(3)).join('/');
      console.log(`step ${String(r.step).padStart(5)}  loss ${r.loss.toFixed(5)}  accuracy ${r.accuracy.toFixed(3)}  ` +
        `saturated ${sat}  attenuation ${r.saturation.output_attenuation.toFixed(4)}`);
    });
    call.on('error', reject);
    call.on('end', () => resolve(last));
  });

  const start = process.hrtime.bigint();
  const next = rng(1);
  call.write({ name: network.name, report_every: args['report-every'] });
  for (let i = 0; i < args.batches; i++) {
    // Respect flow control: wait for 'drain' when grpc-js's buffer is full.
    if (!call.write({ batch: blobs(args['batch-size'], next) })) {
      await new Promise((r) => call.once('drain', r));
    }
  }
  call.end();
  const last = await done;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(`streamed ${last.batches_applied} minibatches of ${args['batch-size']} rows in ${seconds.toFixed(2)} s ` +
    `(${(last.batches_applied / seconds).toFixed(0)} steps/s)`);
  if (!args.keep) await client.deleteNetwork({ name: network.name });
  client.close();
  return last;
}

if (require.main === module) {
  main().catch((e) => { console.error(`train_stream: ${e.message}`); process.exit(1); });
}
module.exports = { main };
