'use strict';
// Node.js client of satlab.v1.TrainingService.
//
// Messages are plain objects with the proto's snake_case field names, enums as
// their names ('ACTIVATION_SIGMOID'), int64 as Number. Tensors are
//   { shape: [rows, cols], float_values: Float32Array }   or
//   { shape: [rows, cols], double_values: Float64Array }
// (plain arrays are accepted on input). Unlike @grpc/proto-loader, which
// turns every packed float into a JS number and back (~30 MB/s), the Tensor
// codec here copies packed values straight between typed arrays and the
// protobuf bytes: it replaces the encoder/decoder of satlab.v1.Tensor inside
// protobufjs, so every message that embeds a Tensor (Minibatch, Forward,
// ComputeGradients, parameters, ...) gets it.

const os = require('os');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protobuf = require('protobufjs');
const Long = require('long');

protobuf.util.Long = Long;
protobuf.configure();

// The packed package carries its own copy of the protos (prepack copies
// proto/satlab/v1 into ./proto); in the repository they are read from ../../proto.
const fs = require('fs');
const PROTO_ROOT = process.env.SATLAB_PROTO_ROOT
  || [path.join(__dirname, 'proto'), path.resolve(__dirname, '..', '..', 'proto')]
    .find((dir) => fs.existsSync(path.join(dir, 'satlab', 'v1', 'training_service.proto')))
  || path.join(__dirname, 'proto');
const SERVICE_NAME = 'satlab.v1.TrainingService';
const LITTLE_ENDIAN = os.endianness() === 'LE';

// Objects handed to the user: enums by name, int64 as Number, defaults filled.
const TO_OBJECT = { longs: Number, enums: String, defaults: true, oneofs: true, arrays: true };

function loadRoot() {
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => {
    if (target.startsWith('google/protobuf/')) return target; // bundled in protobufjs
    return path.isAbsolute(target) ? target : path.join(PROTO_ROOT, target);
  };
  root.loadSync('satlab/v1/training_service.proto', { keepCase: true });
  root.resolveAll();
  installTensorCodec(root.lookupType('satlab.v1.Tensor'));
  return root;
}

function toNumber(v) {
  return typeof v === 'number' ? v : Long.fromValue(v).toNumber();
}

// Bytes of a typed array as a Buffer view (no copy).
function bytesOf(arr) {
  return Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength);
}

// A copy of `n` bytes at `pos` of `buf` as a fresh, aligned typed array.
function typedCopy(Ctor, buf, pos, n) {
  const size = Ctor.BYTES_PER_ELEMENT;
  if (n % size !== 0) throw new Error(`satlab.v1.Tensor: packed field of ${n} bytes is not a multiple of ${size}`);
  const out = new Ctor(n / size);
  if (LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(buf.subarray(pos, pos + n));
  } else {
    const view = new DataView(buf.buffer, buf.byteOffset + pos, n);
    for (let i = 0; i < out.length; i++) out[i] = size === 4 ? view.getFloat32(i * 4, true) : view.getFloat64(i * 8, true);
  }
  return out;
}

function asTyped(Ctor, values) {
  if (values instanceof Ctor) return values;
  return Ctor.from(values);
}

function littleEndianBytes(arr) {
  if (LITTLE_ENDIAN) return bytesOf(arr);
  const buf = Buffer.alloc(arr.byteLength);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let i = 0; i < arr.length; i++) {
    if (arr.BYTES_PER_ELEMENT === 4) view.setFloat32(i * 4, arr[i], true);
    else view.setFloat64(i * 8, arr[i], true);
  }
  return buf;
}

function concatTyped(Ctor, parts) {
  if (parts.length === 1) return parts[0];
  const out = new Ctor(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

// Replaces protobufjs's generated codec of satlab.v1.Tensor. Parent messages'
// generated code calls types[i].encode/decode/fromObject/toObject on this
// Type object, so the overrides apply to every message embedding a Tensor.
function installTensorCodec(Tensor) {
  Tensor.setup();
  const Writer = protobuf.Writer;
  const Reader = protobuf.Reader;

  Tensor.fromObject = (d) => d;         // keep typed arrays as they are
  Tensor.verify = () => null;
  Tensor.create = (p) => p || {};

  Tensor.encode = (m, w) => {
    w = w || Writer.create();
    const shape = m.shape || [];
    if (shape.length) {
      w.uint32(10).fork();               // field 1, packed int64
      for (const d of shape) w.int64(d);
      w.ldelim();
    }
    const f = m.float_values;
    const d = m.double_values;
    if (f && f.length) w.uint32(18).bytes(littleEndianBytes(asTyped(Float32Array, f)));  // field 2
    if (d && d.length) w.uint32(26).bytes(littleEndianBytes(asTyped(Float64Array, d)));  // field 3
    return w;
  };

  Tensor.decode = (r, length) => {
    if (!(r instanceof Reader)) r = Reader.create(r);
    const end = length === undefined ? r.len : r.pos + length;
    const shape = [];
    const floats = [];
    const doubles = [];
    while (r.pos < end) {
      const tag = r.uint32();
      const field = tag >>> 3;
      const wire = tag & 7;
      if (field === 1 && wire === 2) {
        const e = r.uint32() + r.pos;
        while (r.pos < e) shape.push(toNumber(r.int64()));
      } else if (field === 1 && wire === 0) {
        shape.push(toNumber(r.int64()));
      } else if ((field === 2 || field === 3) && wire === 2) {
        const n = r.uint32();
        const Ctor = field === 2 ? Float32Array : Float64Array;
        (field === 2 ? floats : doubles).push(typedCopy(Ctor, r.buf, r.pos, n));
        r.pos += n;
      } else if (field === 2 && wire === 5) {
        floats.push(Float32Array.of(r.float()));
      } else if (field === 3 && wire === 1) {
        doubles.push(Float64Array.of(r.double()));
      } else {
        r.skipType(wire);
      }
    }
    return {
      shape,
      float_values: concatTyped(Float32Array, floats.length ? floats : [new Float32Array(0)]),
      double_values: concatTyped(Float64Array, doubles.length ? doubles : [new Float64Array(0)]),
    };
  };

  Tensor.toObject = (m) => m;
}

/** A Tensor from values (array or typed array) and a shape; dtype 'float32' or 'float64'. */
function tensor(values, shape, dtype) {
  if (!dtype) dtype = values instanceof Float64Array ? 'float64' : 'float32';
  const n = shape.reduce((a, b) => a * b, 1);
  if (n !== values.length) throw new Error(`tensor: shape [${shape}] needs ${n} values, got ${values.length}`);
  if (dtype === 'float32') return { shape: [...shape], float_values: asTyped(Float32Array, values) };
  if (dtype === 'float64') return { shape: [...shape], double_values: asTyped(Float64Array, values) };
  throw new Error(`tensor: dtype must be float32 or float64, got ${dtype}`);
}

/** The values of a decoded Tensor (whichever precision it carries). */
function values(t) {
  if (!t) return new Float64Array(0);
  return t.float_values && t.float_values.length ? t.float_values : (t.double_values || new Float64Array(0));
}

/** A Tensor as an array of rows (for printing; keep typed arrays for math). */
function rows(t) {
  const v = values(t);
  if (t.shape.length !== 2) return Array.from(v);
  const [r, c] = t.shape;
  const out = [];
  for (let i = 0; i < r; i++) out.push(Array.from(v.subarray(i * c, (i + 1) * c)));
  return out;
}

function lowerFirst(s) { return s[0].toLowerCase() + s.slice(1); }

let cachedRoot = null;
function root() {
  if (!cachedRoot) cachedRoot = loadRoot();
  return cachedRoot;
}

/** A grpc-js service definition of satlab.v1.TrainingService using the fast codec. */
function serviceDefinition(r = root()) {
  const service = r.lookupService(SERVICE_NAME);
  const def = {};
  for (const method of service.methodsArray) {
    method.resolve();
    const Req = method.resolvedRequestType;
    const Res = method.resolvedResponseType;
    def[lowerFirst(method.name)] = {
      path: `/${SERVICE_NAME}/${method.name}`,
      requestStream: !!method.requestStream,
      responseStream: !!method.responseStream,
      requestSerialize: (obj) => {
        const u8 = Req.encode(Req.fromObject(obj)).finish();
        return Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
      },
      requestDeserialize: (buf) => Req.toObject(Req.decode(buf), TO_OBJECT),
      responseSerialize: (obj) => Buffer.from(Res.encode(Res.fromObject(obj)).finish()),
      responseDeserialize: (buf) => Res.toObject(Res.decode(buf), TO_OBJECT),
    };
  }
  return def;
}

let healthTypes = null;
function healthDefinition() {
  if (!healthTypes) {
    const file = require.resolve('grpc-health-check/proto/health/v1/health.proto');
    const hr = new protobuf.Root().loadSync(file, { keepCase: true });
    healthTypes = {
      Req: hr.lookupType('grpc.health.v1.HealthCheckRequest'),
      Res: hr.lookupType('grpc.health.v1.HealthCheckResponse'),
    };
  }
  const { Req, Res } = healthTypes;
  const m = (name, responseStream) => ({
    path: `/grpc.health.v1.Health/${name}`,
    requestStream: false,
    responseStream,
    requestSerialize: (o) => Buffer.from(Req.encode(Req.fromObject(o)).finish()),
    requestDeserialize: (b) => Req.toObject(Req.decode(b), TO_OBJECT),
    responseSerialize: (o) => Buffer.from(Res.encode(Res.fromObject(o)).finish()),
    responseDeserialize: (b) => Res.toObject(Res.decode(b), TO_OBJECT),
  });
  return { check: m('Check', false), watch: m('Watch', true) };
}

const DEFAULT_OPTIONS = {
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  'grpc.max_send_message_length': 64 * 1024 * 1024,
};

/**
 * A connection to one satlab server.
 *
 * Unary RPCs return Promises: client.createNetwork({network: {spec}}, {deadlineMs}).
 * Streams return grpc-js call objects: train() is a duplex (write TrainRequest,
 * 'data' TrainResponse, end()); watchMetrics(req) and runExperiment(req) are
 * readable streams (also async-iterable). Errors carry .code (grpc.status)
 * and .details.
 */
/**
 * grpc-js TLS credentials from PEM files: caFile, the CA the server's
 * certificate must chain to (omitted: Node's roots); certFile + keyFile, a
 * client certificate for mutual TLS (both or neither).
 */
function tlsCredentials({ caFile, certFile, keyFile } = {}) {
  if (Boolean(certFile) !== Boolean(keyFile)) {
    throw new Error('tlsCertFile and tlsKeyFile: expected both (mutual TLS) or neither');
  }
  const read = (file) => (file ? fs.readFileSync(file) : null);
  return grpc.credentials.createSsl(read(caFile), read(keyFile), read(certFile));
}

/** A grpc-js interceptor adding `authorization: Bearer <apiKey>` to every call. */
function bearerInterceptor(apiKey) {
  return (options, nextCall) => new grpc.InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      metadata.set('authorization', `Bearer ${apiKey}`);
      next(metadata, listener);
    },
  });
}

class Client {
  constructor(target, {
    credentials, options, deadlineMs = 30000,
    tls = false, tlsCaFile, tlsCertFile, tlsKeyFile, tlsServerName,
    apiKey = process.env.SATLAB_API_KEY,
  } = {}) {
    const Ctor = grpc.makeGenericClientConstructor(serviceDefinition(), 'TrainingService');
    const HealthCtor = grpc.makeGenericClientConstructor(healthDefinition(), 'Health');
    const useTls = tls || Boolean(tlsCaFile || tlsCertFile || tlsKeyFile);
    const creds = credentials
      || (useTls ? tlsCredentials({ caFile: tlsCaFile, certFile: tlsCertFile, keyFile: tlsKeyFile })
        : grpc.credentials.createInsecure());
    const opts = { ...DEFAULT_OPTIONS, ...(options || {}) };
    if (tlsServerName) opts['grpc.ssl_target_name_override'] = tlsServerName;
    // The key goes on every call and stream, health included (an
    // interceptor, since grpc-js refuses call credentials on plaintext).
    if (apiKey) opts.interceptors = [...(opts.interceptors || []), bearerInterceptor(apiKey)];
    this.raw = new Ctor(target, creds, opts);
    // Share the channel: health calls go over the same connection.
    this.healthRaw = new HealthCtor(target, creds, { ...opts, channelOverride: this.raw.getChannel() });
    this.deadlineMs = deadlineMs;
    for (const [name, def] of Object.entries(serviceDefinition())) {
      // RPCs with a method of their own below (export / import).
      if (name in Client.prototype) continue;
      if (def.requestStream || def.responseStream) {
        this[name] = (req, callOpts = {}) => {
          const meta = new grpc.Metadata();
          const o = callOpts.deadlineMs ? { deadline: Date.now() + callOpts.deadlineMs } : {};
          return def.requestStream ? this.raw[name](meta, o) : this.raw[name](req || {}, meta, o);
        };
      } else {
        this[name] = (req, callOpts = {}) => this._unary(this.raw, name, req, callOpts);
      }
    }
  }

  _unary(stub, name, req, { deadlineMs } = {}) {
    const deadline = Date.now() + (deadlineMs || this.deadlineMs);
    return new Promise((resolve, reject) => {
      stub[name](req || {}, new grpc.Metadata(), { deadline }, (err, res) => (err ? reject(err) : resolve(res)));
    });
  }

  /** Resolves when connected; rejects after timeoutMs. */
  waitReady(timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      this.raw.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** grpc.health.v1 Check: resolves to 'SERVING', 'NOT_SERVING', ... */
  async health(service = SERVICE_NAME, { deadlineMs = 5000 } = {}) {
    const res = await this._unary(this.healthRaw, 'check', { service }, { deadlineMs });
    return res.status;
  }

  close() {
    this.raw.close();
  }

  // --- export / import (docs/storage.md, "Export files") ---

  /** Resolves to networks/{id}'s export file as one Buffer (req: {name}). */
  async exportNetwork(req, { deadlineMs } = {}) {
    const o = deadlineMs ? { deadline: Date.now() + deadlineMs } : {};
    const chunks = [];
    let done = 0;
    for await (const chunk of this.raw.exportNetwork(req || {}, new grpc.Metadata(), o)) {
      if (chunk.offset !== done) throw new Error(`ExportNetwork: chunk at offset ${chunk.offset}, expected ${done}`);
      chunks.push(chunk.data);
      done += chunk.data.length;
    }
    return Buffer.concat(chunks);
  }

  /**
   * Creates a network from an export file (a Buffer), sent in 1 MiB chunks;
   * resolves to the ImportNetworkResponse. req: {data, network_id}.
   */
  importNetwork(req, { deadlineMs } = {}) {
    const data = Buffer.from(req.data || []);
    const o = deadlineMs ? { deadline: Date.now() + deadlineMs } : {};
    return new Promise((resolve, reject) => {
      const call = this.raw.importNetwork(new grpc.Metadata(), o, (err, res) => (err ? reject(err) : resolve(res)));
      const CHUNK = 1 << 20;
      let offset = 0;
      const pump = () => {
        do {
          const end = Math.min(offset + CHUNK, data.length);
          const msg = offset === 0
            ? { network_id: req.network_id || '', total_bytes: data.length, data: data.subarray(0, end) }
            : { data: data.subarray(offset, end) };
          offset = end;
          if (!call.write(msg) && offset < data.length) {
            call.once('drain', pump);
            return;
          }
        } while (offset < data.length);
        call.end();
      };
      pump();
    });
  }

  // --- several minibatches per message (issue 15 item 4) ---

  /**
   * Trains networks/{id} on `batches` (an iterable or async iterable of
   * Minibatch) through one Train stream, sending up to batchesPerMessage of
   * them per message (the server applies them in order, each one step,
   * bitwise as if sent one by one; 1 sends each alone as `batch`, what
   * servers before packing read). An async iterable of TrainResponses, one
   * every reportEvery steps and after the last; with reportLosses each lists
   * the loss of every step since the previous one.
   */
  async* trainBatches(name, batches, {
    batchesPerMessage = BATCHES_PER_MESSAGE, reportEvery = 1, reportLosses = false,
    commitEverySteps = 0, commitIntervalMs = 0, deadlineMs,
  } = {}) {
    if (!(batchesPerMessage >= 1)) throw new RangeError(`batchesPerMessage: expected at least 1, got ${batchesPerMessage}`);
    const call = this.train(null, { deadlineMs });
    let failed = null;
    const sender = (async () => {
      const send = (msg) => (call.write(msg) ? null : new Promise((resolve) => call.once('drain', resolve)));
      let first = {
        name, report_every: reportEvery, report_losses: reportLosses,
        commit_every_steps: commitEverySteps, commit_interval_ms: commitIntervalMs,
      };
      let pack = [];
      const flush = async () => {
        const msg = first || {};
        first = null;
        if (pack.length === 1) msg.batch = pack[0]; else msg.batches = pack;
        pack = [];
        await send(msg);
      };
      for await (const batch of batches) {
        pack.push(batch);
        if (pack.length === batchesPerMessage) await flush();
      }
      if (pack.length > 0) await flush();
      if (first) await send(first);
      call.end();
    })().catch((err) => { failed = err; call.cancel(); });
    let ended = false;
    try {
      for await (const response of call) yield response;
      ended = true;
    } catch (err) {
      await sender;
      throw failed || err;
    } finally {
      // The caller stopped iterating early: end the stream.
      if (!ended) call.cancel();
    }
    await sender;
    if (failed) throw failed;
  }

  /**
   * trainBatches that survives a dropped connection, a server restart or,
   * behind a gRPC proxy, the death of the replica serving the stream, like
   * the C++ TrainSession and Python's train_resumable. Minibatch n (from 0)
   * becomes step start + n + 1, where start is the network's step when the
   * call begins; each is kept until the server reports it durable
   * (result.durable_step). When the stream fails with UNAVAILABLE, INTERNAL
   * "RST_STREAM" (nginx's gRPC proxy when its replica died) or, once
   * resuming, ABORTED (the previous stream, or another replica's lease,
   * still holds the network), it waits with backoff, reads the network's
   * step, opens a stream that must start exactly there (expected_step) and
   * resends the rest: the network ends bitwise as an uninterrupted run.
   * Yields TrainResponses in order, at most once per step. Throws the gRPC
   * error when it is not retryable or maxResumes failures come in a row.
   */
  async* trainResumable(name, batches, {
    batchesPerMessage = BATCHES_PER_MESSAGE, reportEvery = 1, commitEverySteps = 0,
    maxResumes = 10, initialBackoffMs = 50, maxBackoffMs = 2000, maxBuffered = 4096, deadlineMs,
  } = {}) {
    if (!(batchesPerMessage >= 1)) throw new RangeError(`batchesPerMessage: expected at least 1, got ${batchesPerMessage}`);
    if (!(maxBuffered >= 2)) throw new RangeError(`maxBuffered: expected at least 2, got ${maxBuffered}`);
    const deadline = deadlineMs ? Date.now() + deadlineMs : null;
    const left = () => (deadline === null ? undefined : Math.max(1, deadline - Date.now()));
    const start = (await this.getNetwork({ name }, { deadlineMs: left() })).network.step;
    // Half the buffer: a commit (and a report) comes before it fills, so the
    // sender never waits on a durable step the server has no reason to reach.
    const half = Math.floor(maxBuffered / 2);
    const commitEvery = commitEverySteps > 0 ? Math.min(commitEverySteps, half) : half;
    const every = Math.max(1, Math.min(reportEvery, half));
    const source = batches[Symbol.asyncIterator] ? batches[Symbol.asyncIterator]() : batches[Symbol.iterator]();
    // The minibatches of steps start + first + 1 ... start + written not yet
    // durable: kept.list[kept.head + j - kept.first] is minibatch j.
    const kept = { list: [], head: 0, first: 0, written: 0, exhausted: false, durable: 0 };
    const at = (j) => kept.list[kept.head + j - kept.first];
    let sourceError = null;
    // One pull from the source at a time, kept across streams: a source that
    // waits for this generator's consumer (reports) must not hold up a
    // resume, and what it hands out belongs to the next stream then.
    let pending = null;
    const pull = () => {
      if (!pending) {
        pending = Promise.resolve().then(() => source.next()).then((next) => {
          if (next.done) {
            kept.exhausted = true;
          } else {
            kept.list.push(next.value);
            kept.written += 1;
          }
        }, (err) => { sourceError = sourceError || err; }).finally(() => { pending = null; });
      }
      return pending;
    };
    let release = null; // wakes a sender waiting for 'drain' or for room
    const wakeSender = () => {
      if (release) { const r = release; release = null; r(); }
    };
    const trim = () => {
      let dropped = false;
      while (kept.first < kept.written && start + kept.first + 1 <= kept.durable) {
        kept.list[kept.head] = undefined;
        kept.head += 1;
        kept.first += 1;
        dropped = true;
      }
      if (kept.head > 1024 && 2 * kept.head > kept.list.length) {
        kept.list = kept.list.slice(kept.head);
        kept.head = 0;
      }
      if (dropped) wakeSender();
    };
    let serverStep = start;
    let delivered = start;
    let failures = 0;
    let backoff = initialBackoffMs;
    let resuming = false;
    let call = null;
    try {
      for (;;) {
        call = this.train(null, { deadlineMs: left() });
        const stream = call;
        // A write the failing stream refuses is reported to the reader
        // below; without a listener Node would also throw it at top level.
        stream.on('error', () => {});
        let over = false;
        const wait = (onDrain) => new Promise((resolve) => {
          release = resolve;
          if (onDrain) stream.once('drain', wakeSender);
        });
        const sender = (async () => {
          const send = async (msg) => { if (!stream.write(msg)) await wait(true); };
          await send({ name, report_every: every, commit_every_steps: commitEvery, expected_step: serverStep });
          let i = serverStep - start;
          while (!over) {
            const pack = [];
            while (pack.length < batchesPerMessage && !over) {
              const j = i + pack.length;
              if (j < kept.written) {
                pack.push(at(j));
              } else if (kept.exhausted) {
                break;
              } else if (kept.written - kept.first >= maxBuffered) {
                if (pack.length) break; // send what there is; the server drains the buffer
                await wait(false);
              } else {
                await pull();
                if (sourceError) {
                  if (!over) stream.cancel();
                  return;
                }
              }
            }
            if (over) return;
            if (!pack.length) { stream.end(); return; }
            await send(pack.length === 1 ? { batch: pack[0] } : { batches: pack });
            i += pack.length;
          }
        })().catch((err) => {
          // Not the server's failure (that reaches the reader): end the call
          // and throw it to the caller as a source error is.
          sourceError = sourceError || err;
          if (!over) stream.cancel();
        });
        let error = null;
        try {
          for await (const response of stream) {
            const r = response.result;
            serverStep = Math.max(serverStep, r.step);
            kept.durable = Math.max(kept.durable, r.durable_step);
            trim();
            failures = 0;
            backoff = initialBackoffMs;
            if (r.step > delivered) {
              delivered = r.step;
              yield response;
            }
          }
        } catch (err) {
          error = err;
        } finally {
          over = true;
          wakeSender();
        }
        if (sourceError) throw sourceError;
        if (!error) {
          await sender; // done: it ended the stream before the server did
          call = null;
          if (serverStep !== start + kept.written) {
            throw new Error(`${name} is at step ${serverStep} after the stream, expected ${start + kept.written}: `
              + 'the server skipped minibatches (one that predates several minibatches per message '
              + 'ignores them: pass batchesPerMessage: 1)');
          }
          return;
        }
        let net;
        for (;;) {
          const code = error.code;
          const retry = code === grpc.status.UNAVAILABLE
            || (code === grpc.status.INTERNAL && String(error.details || '').includes('RST_STREAM'))
            || (code === grpc.status.ABORTED && (resuming || failures > 0));
          failures += 1;
          if (!retry || failures > maxResumes || (deadline !== null && Date.now() >= deadline)) throw error;
          await new Promise((resolve) => { setTimeout(resolve, backoff); });
          backoff = Math.min(2 * backoff, maxBackoffMs);
          try {
            net = (await this.getNetwork({ name }, { deadlineMs: left() })).network;
            break;
          } catch (again) {
            error = again;
          }
        }
        resuming = true;
        serverStep = net.step;
        kept.durable = Math.max(kept.durable, net.durable_step);
        trim();
        if (serverStep - start < kept.first || serverStep - start > kept.written) {
          throw new Error(`${name} is at step ${serverStep}, but only the minibatches for steps `
            + `${start + kept.first + 1} to ${start + kept.written} are kept: another writer changed it, `
            + 'or the server lost state it reported durable');
        }
      }
    } finally {
      // The caller stopped iterating early, or an error ends the call.
      if (call) call.cancel();
    }
  }
}

// Minibatches per Train message by default in trainBatches: a stream of tiny
// steps is then not bound by one message per step (docs/benchmarks.md,
// "Many small steps per message").
const BATCHES_PER_MESSAGE = 32;

module.exports = {
  Client, tensor, values, rows, serviceDefinition, root, SERVICE_NAME, PROTO_ROOT, grpc, protobuf,
  tlsCredentials,
};
