#!/usr/bin/env node
'use strict';
// lang.node: tests the Node client as its users get it. `npm pack` in
// client/node, `npm install` of the tarball into a temp app, `tsc --strict`
// over ES-module and CommonJS consumers of its .d.ts/.d.mts, then
// `node --test tests/node/` with SATLAB_CLIENT_PKG pointing at the installed
// package (the tests start a real satlab-server from $SATLAB_SERVER_BIN).
// Exits non-zero on any failure; removes the temp dir.

const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const HERE = __dirname;
const CLIENT = path.resolve(HERE, '..', '..', 'client', 'node');

function sh(cmd, args, opts = {}) {
  console.error(`run_packed: ${cmd} ${args.join(' ')}`);
  return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', ...opts });
}

function main() {
  if (!process.env.SATLAB_SERVER_BIN) throw new Error('SATLAB_SERVER_BIN is not set');
  const tsc = path.join(CLIENT, 'node_modules', '.bin', 'tsc');
  if (!fs.existsSync(tsc)) throw new Error(`${tsc} missing: npm ci in client/node (tests/lang/npm_setup.sh)`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'satlab-nodepack-'));
  try {
    const out = sh('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: CLIENT });
    const [{ filename, files }] = JSON.parse(out);
    const names = files.map((f) => f.path);
    for (const need of ['satlab.js', 'satlab.mjs', 'satlab.d.ts', 'satlab.d.mts', 'proto/satlab/v1/training_service.proto']) {
      if (!names.includes(need)) throw new Error(`${filename} lacks ${need}: ${names.join(', ')}`);
    }
    if (fs.existsSync(path.join(CLIENT, 'proto'))) throw new Error('postpack left client/node/proto behind');

    const app = path.join(tmp, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'satlab-pack-test', private: true }));
    sh('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', path.join(tmp, filename)],
      { cwd: app });
    for (const f of fs.readdirSync(path.join(HERE, 'packed'))) {
      fs.copyFileSync(path.join(HERE, 'packed', f), path.join(app, f));
    }
    sh(tsc, ['--strict', '--noEmit', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022',
      '--typeRoots', path.join(CLIENT, 'node_modules', '@types'), '--types', 'node',
      'types_check.mts', 'types_check.cts'], { cwd: app });

    const env = { ...process.env, SATLAB_CLIENT_PKG: path.join(app, 'node_modules', 'satlab-client'), SATLAB_CLIENT_APP: app };
    execFileSync(process.execPath, ['--test', HERE], { stdio: 'inherit', env });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

try {
  main();
} catch (e) {
  console.error(`run_packed: ${e.message}`);
  process.exit(1);
}
