// Shared by the live HTTP tests: starts satlab-server on ports chosen at run
// time, trains a network through the satlab CLI until stopped, and cleans
// up only the processes it started.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export function arg(name, fallback) {
  const i = process.argv.indexOf('--' + name);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (fallback !== undefined) return fallback;
  throw new Error(`missing --${name}`);
}

export function requireFile(file, what) {
  if (!fs.existsSync(file)) throw new Error(`${what} not found at ${file}`);
  return file;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const children = [];

export function track(child) {
  children.push(child);
  return child;
}

// Kills what this test started (by PID), newest first.
export function stopAll() {
  for (const child of children.reverse()) {
    if (child.exitCode === null && child.signalCode === null) {
      try { process.kill(child.pid, 'SIGTERM'); } catch { /* already gone */ }
    }
  }
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { stopAll(); process.exit(1); });
}
// Temp dirs of a passing run are removed (a CI machine runs these often);
// a failing run keeps them for its logs. Removal may race a server still
// shutting down, so it is best effort.
const tempDirs = [];
process.on('exit', (code) => {
  stopAll();
  if (code !== 0) return;
  for (const dir of tempDirs) {
    try { fs.rmSync(dir, { recursive: true, force: true }); } catch { /* left behind */ }
  }
});

// Collects a child's stdout so that several lines can be waited for.
function collectStdout(child) {
  const out = { text: '', waiters: [] };
  child.stdout.on('data', (chunk) => {
    out.text += chunk.toString();
    for (const w of out.waiters) w();
  });
  return out;
}

// Waits for a line matching `re` in the collected stdout.
function waitForLine(child, out, re, what, timeoutMs = 20000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no line matching ${re} in ${timeoutMs} ms`)), timeoutMs);
    const check = () => {
      const m = re.exec(out.text);
      if (m) {
        clearTimeout(timer);
        out.waiters = out.waiters.filter((w) => w !== check);
        resolve(m);
      }
    };
    out.waiters.push(check);
    check();
    child.on('exit', (code) => reject(new Error(`${what} exited (${code}) before printing ${re}`)));
  });
}

// satlab-server on 127.0.0.1 with gRPC and HTTP ports picked by the server.
// `env` adds variables (SATLAB_API_KEYS for a server with keys).
export async function startServer(serverBin, tmp, env = {}) {
  requireFile(serverBin, 'satlab-server');
  const log = fs.openSync(path.join(tmp, 'server.log'), 'w');
  const child = track(spawn(serverBin, ['--port', '0', '--http_port', '0', '--log_level', 'warn'], {
    stdio: ['ignore', 'pipe', log],
    env: { ...process.env, SATLAB_HOST: '127.0.0.1', ...env },
  }));
  const out = collectStdout(child);
  const grpc = await waitForLine(child, out, /^listening on (\S+)$/m, 'satlab-server');
  const http = await waitForLine(child, out, /^http listening on (\S+)$/m, 'satlab-server');
  return { child, grpcTarget: grpc[1], httpBase: 'http://' + http[1] };
}

// A two-class dataset (two Gaussian-ish blobs), 2 features + 1 target.
export function writeCsv(file, rows = 512) {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const lines = [];
  for (let i = 0; i < rows; i++) {
    const cls = i % 2;
    const cx = cls ? 1.5 : -1.5;
    lines.push(`${(cx + rand() - 0.5).toFixed(4)},${(cx + rand() - 0.5).toFixed(4)},${cls}`);
  }
  fs.writeFileSync(file, lines.join('\n') + '\n');
}

export function cli(cliBin, target, args, env = {}) {
  const r = spawnSync(cliBin, ['--server', target, ...args], {
    encoding: 'utf8', env: { ...process.env, ...env },
  });
  if (r.status !== 0) {
    throw new Error(`satlab ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

// Creates network `id` (2-16(sigmoid)-1(sigmoid), MSE: it saturates) and
// trains it in the background, one epoch per CLI run, until `stop()`.
export function startTraining(cliBin, target, id, tmp) {
  requireFile(cliBin, 'satlab CLI');
  const csv = path.join(tmp, 'blobs.csv');
  writeCsv(csv);
  cli(cliBin, target, ['create', id, '--input-size', '2', '--layers', '16:sigmoid,1:sigmoid',
    '--loss', 'mse', '--init', 'glorot_uniform', '--seed', '3', '--lr', '0.5']);
  let stopped = false;
  let runs = 0;
  const loop = async () => {
    while (!stopped) {
      const child = track(spawn(cliBin, ['--server', target, '--quiet', 'train', id, '--data', csv,
        '--epochs', '2', '--batch-size', '16'], { stdio: 'ignore' }));
      const code = await new Promise((r) => child.on('exit', r));
      if (code !== 0 && !stopped) throw new Error(`satlab train exited ${code}`);
      runs++;
      await sleep(150);  // a steady, watchable pace
    }
  };
  const done = loop();
  return { stop: async () => { stopped = true; await done; }, runs: () => runs };
}

export function makeTempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}
