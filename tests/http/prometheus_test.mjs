// A real Prometheus (Debian's binary, its own config and storage in a temp
// dir, listening on 127.0.0.1:<free port>) scrapes satlab-server's /metrics
// while a network trains through the satlab CLI. Checks the training
// series through Prometheus's HTTP API, then evaluates every PromQL
// expression of the Grafana dashboard: each must return data.
//
// Also lints the compose setup's docker/prometheus/prometheus.yml with
// `promtool check config`.
//
//   node prometheus_test.mjs --server-bin B --cli-bin C --dashboard JSON
//        --compose-config prometheus.yml [--prometheus /usr/bin/prometheus]
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { arg, freePort, makeTempDir, requireFile, sleep, startServer, startTraining, stopAll, track } from './harness.mjs';

const serverBin = arg('server-bin');
const cliBin = arg('cli-bin');
const dashboardFile = requireFile(arg('dashboard'), 'Grafana dashboard JSON');
const composeConfig = requireFile(arg('compose-config'), 'docker/prometheus/prometheus.yml');
const prometheusBin = requireFile(arg('prometheus', '/usr/bin/prometheus'),
  'prometheus (apt-get install --no-install-recommends prometheus)');
const promtoolBin = requireFile(path.join(path.dirname(prometheusBin), 'promtool'), 'promtool');

const failures = [];
function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures.push(what);
}

async function query(base, expr) {
  const url = `${base}/api/v1/query?query=${encodeURIComponent(expr)}`;
  const res = await fetch(url);
  const body = await res.json();
  if (body.status !== 'success') throw new Error(`${expr}: ${body.errorType}: ${body.error}`);
  return body.data.result;
}

async function pollQuery(base, expr, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last = [];
  while (Date.now() < deadline) {
    last = await query(base, expr).catch(() => []);
    if (last.length > 0) return last;
    await sleep(500);
  }
  return last;
}

// Every target expression of the dashboard, with Grafana's variables
// replaced as Grafana would for "All" networks.
function dashboardExpressions(file) {
  const dashboard = JSON.parse(fs.readFileSync(file, 'utf8'));
  const exprs = [];
  const walk = (panels) => {
    for (const p of panels || []) {
      for (const t of p.targets || []) if (t.expr) exprs.push({ panel: p.title, expr: t.expr });
      walk(p.panels);
    }
  };
  walk(dashboard.panels);
  for (const v of dashboard.templating?.list || []) {
    if (v.definition) exprs.push({ panel: `variable ${v.name}`, expr: v.definition.replace(/^label_values\((\w+), *\w+\)$/, '$1') });
  }
  return exprs.map(({ panel, expr }) => ({
    panel,
    expr: expr.replaceAll('$__rate_interval', '20s').replaceAll('$network', '.*'),
  }));
}

async function main() {
  const lint = spawnSync(promtoolBin, ['check', 'config', composeConfig], { encoding: 'utf8' });
  check(lint.status === 0, `promtool check config ${composeConfig}${lint.status === 0 ? '' : ': ' + lint.stdout + lint.stderr}`);

  const tmp = makeTempDir('satlab-prom-');
  console.log(`temp dir ${tmp}`);
  const server = await startServer(serverBin, tmp);
  const httpHostPort = server.httpBase.replace('http://', '');
  console.log(`satlab-server grpc ${server.grpcTarget} http ${server.httpBase}`);

  const trainer = startTraining(cliBin, server.grpcTarget, 'prom-net', tmp);

  const promPort = await freePort();
  const config = path.join(tmp, 'prometheus.yml');
  fs.writeFileSync(config, [
    'global:', '  scrape_interval: 1s', '  evaluation_interval: 1s',
    'scrape_configs:', '  - job_name: satlab', '    static_configs:',
    `      - targets: ["${httpHostPort}"]`, ''].join('\n'));
  const promLog = fs.openSync(path.join(tmp, 'prometheus.log'), 'w');
  track(spawn(prometheusBin, [
    `--config.file=${config}`, `--storage.tsdb.path=${path.join(tmp, 'data')}`,
    `--web.listen-address=127.0.0.1:${promPort}`, '--storage.tsdb.retention.time=1h',
  ], { stdio: ['ignore', promLog, promLog] }));
  const prom = `http://127.0.0.1:${promPort}`;
  console.log(`prometheus ${prom}`);

  const up = await pollQuery(prom, 'up{job="satlab"} == 1', 30000);
  check(up.length === 1, 'Prometheus scrapes satlab (up == 1)');

  const loss = await pollQuery(prom, 'satlab_network_loss{network="prom-net"}', 30000);
  check(loss.length === 1, 'satlab_network_loss{network="prom-net"} present');
  const layers = await pollQuery(prom, 'satlab_layer_saturated_ratio{network="prom-net"}', 10000);
  check(layers.length === 2, `saturated ratio for both layers (got ${layers.length})`);

  // Training proceeds between scrapes: the step series increases.
  await sleep(4000);
  const steps = await pollQuery(prom, 'increase(satlab_network_step{network="prom-net"}[10s]) > 0', 15000);
  check(steps.length === 1, 'satlab_network_step increases while training');

  for (const { panel, expr } of dashboardExpressions(dashboardFile)) {
    let result = [];
    let error = '';
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      try { result = await query(prom, expr); error = ''; } catch (e) { error = e.message; }
      if (result.length > 0) break;
      await sleep(1000);
    }
    check(result.length > 0, `dashboard "${panel}": ${expr}${error ? ' — ' + error : ''} (${result.length} series)`);
  }

  await trainer.stop();
  stopAll();
  if (failures.length > 0) {
    console.error(`\n${failures.length} check(s) failed; logs in ${tmp}`);
    process.exit(1);
  }
  console.log(`\nall checks passed (${trainer.runs()} training runs)`);
  fs.rmSync(tmp, { recursive: true, force: true });
}

main().catch((e) => { console.error(e); stopAll(); process.exit(1); });
