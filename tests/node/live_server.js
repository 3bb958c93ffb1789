'use strict';
// Starts a real satlab-server on 127.0.0.1 with a port chosen at run time and
// stops it by its PID (SIGTERM, then SIGKILL after a grace period).

const { spawn } = require('child_process');
const fs = require('fs');
const readline = require('readline');

async function startServer(binary = process.env.SATLAB_SERVER_BIN, extraArgs = [], timeoutMs = 30000) {
  if (!binary) throw new Error('SATLAB_SERVER_BIN is not set');
  fs.accessSync(binary, fs.constants.X_OK);
  // The HTTP side port too is chosen at run time (the default 9464 would
  // collide with any other server on this machine).
  const env = { ...process.env, SATLAB_HTTP_PORT: process.env.SATLAB_HTTP_PORT || '0' };
  const proc = spawn(binary, ['--host=127.0.0.1', '--port=0', ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
  const address = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`no 'listening on' line in ${timeoutMs} ms: ${stderr}`)); }, timeoutMs);
    const rl = readline.createInterface({ input: proc.stdout });
    rl.on('line', (line) => {
      if (line.startsWith('listening on ')) { clearTimeout(timer); resolve(line.split(' ').pop()); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`satlab-server exited with ${code}: ${stderr}`)); });
  });
  proc.stdout.resume();
  return {
    address,
    proc,
    log: () => stderr,
    stop: (graceMs = 15000) => new Promise((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve(proc.exitCode);
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      proc.once('exit', (code) => { clearTimeout(timer); resolve(code); });
      proc.kill('SIGTERM');
    }),
  };
}

module.exports = { startServer };
