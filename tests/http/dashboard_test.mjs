// Headless Chromium (playwright-core, /usr/bin/chromium) opens the live
// dashboard of a satlab-server whose network trains through the CLI, finds
// the network, watches its loss chart gain points, and saves a screenshot.
//
// With --experiment, it instead runs a two-variant experiment (sigmoid+MSE
// vs sigmoid+BCE on XOR) through `satlab experiment SPEC.json`, selects it,
// and checks that both variants are charted side by side.
//
// With --key, the server has API keys for two tenants
// (--dashboard_access=auto -> key): the page must ask for a key, refuse a
// wrong one, and with tenant acme's key show acme's network only.
//
//   node dashboard_test.mjs --server-bin B --cli-bin C --screenshot OUT.png
//        [--experiment | --key] [--chromium /usr/bin/chromium]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
  arg, cli, makeTempDir, requireFile, sleep, startServer, startTraining, stopAll, writeCsv,
} from './harness.mjs';

const serverBin = arg('server-bin');
const cliBin = arg('cli-bin');
const screenshot = arg('screenshot');
const chromiumBin = requireFile(arg('chromium', '/usr/bin/chromium'), 'chromium (apt-get install chromium)');
const experimentMode = process.argv.includes('--experiment');
const keyMode = process.argv.includes('--key');
const KEY_ACME = 'acme-dashboard-key-0123456789abcdef';
const KEY_OTHER = 'other-dashboard-key-0123456789abcdef';

function runExperiment(target, tmp) {
  const spec = {
    display_name: 'xor: mse vs cross-entropy',
    dataset: { builtin: { kind: 'DATASET_KIND_XOR', samples: 64, single_output: true } },
    hidden_layers: [{ units: 4, activation: 'ACTIVATION_SIGMOID' }],
    init: { scheme: 'INIT_SCHEME_GLOROT_UNIFORM', seed: '1' },
    optimizer: { sgd: { learning_rate: 2.0 } },
    variants: [
      { label: 'sigmoid+mse', output_activation: 'ACTIVATION_SIGMOID', loss: 'LOSS_MSE' },
      { label: 'sigmoid+bce', output_activation: 'ACTIVATION_SIGMOID', loss: 'LOSS_BCE' },
    ],
    epochs: 60,
    batch_size: 8,
  };
  const file = path.join(tmp, 'xor.json');
  fs.writeFileSync(file, JSON.stringify(spec));
  const r = spawnSync(cliBin, ['--server', target, '--quiet', 'experiment', file, '--out',
    path.join(tmp, 'experiment'), '--no-figures'], { encoding: 'utf8', timeout: 60000 });
  if (r.status !== 0) throw new Error(`satlab experiment failed (${r.status}): ${r.stderr}${r.stdout}`);
}

async function experimentView(page, server, tmp) {
  runExperiment(server.grpcTarget, tmp);
  await page.goto(server.httpBase + '/', { waitUntil: 'load' });
  const item = page.locator('#experiments li').first();
  await item.waitFor({ timeout: 20000 });
  await item.click();
  await page.locator('#experiment-view').waitFor({ state: 'visible', timeout: 5000 });
  await page.locator('#experiment-summary-card').waitFor({ state: 'visible', timeout: 10000 });
  const title = await page.locator('#experiment-title').textContent();
  if (title !== 'xor: mse vs cross-entropy') throw new Error(`experiment title is ${title}`);
  const rows = await page.locator('#experiment-summary tr').count();
  if (rows !== 3) throw new Error(`summary should have a header and 2 variants, got ${rows} rows`);
  const labels = await page.evaluate(() =>
    Chart.getChart(document.querySelector('#chart-exp-loss')).data.datasets.map((d) => `${d.label}:${d.data.length}`));
  console.log(`experiment loss chart: ${labels.join(', ')}`);
  if (labels.length !== 2 || !labels.every((l) => Number(l.split(':')[1]) >= 60)) {
    throw new Error(`expected two variants with >= 60 epochs each, got ${labels}`);
  }
}

// Each tenant creates and trains one network through the CLI with its key.
function trainAsTenants(target, tmp) {
  const csv = path.join(tmp, 'blobs.csv');
  writeCsv(csv, 64);
  for (const [id, key] of [['acme-net', KEY_ACME], ['other-net', KEY_OTHER]]) {
    const env = { SATLAB_API_KEY: key };
    cli(cliBin, target, ['create', id, '--input-size', '2', '--layers', '4:sigmoid,1:sigmoid',
      '--loss', 'mse', '--seed', '3'], env);
    cli(cliBin, target, ['--quiet', 'train', id, '--data', csv, '--epochs', '2', '--batch-size', '16'], env);
  }
}

async function keyView(page, server, tmp) {
  trainAsTenants(server.grpcTarget, tmp);
  await page.goto(server.httpBase + '/', { waitUntil: 'load' });
  await page.locator('#auth').waitFor({ state: 'visible', timeout: 10000 });
  if ((await page.locator('#networks li').count()) !== 0) throw new Error('networks shown before a key');
  await page.fill('#auth-key', 'not-a-key-of-this-server-000000');
  await page.click('#auth button');
  await page.waitForFunction(() => document.querySelector('#auth-message').textContent.includes('not accepted'),
    null, { timeout: 10000 });
  await page.fill('#auth-key', KEY_ACME);
  await page.click('#auth button');
  await page.locator('#networks li[data-key="networks/acme-net"]').waitFor({ timeout: 10000 });
  await page.locator('#auth').waitFor({ state: 'hidden', timeout: 5000 });
  await page.waitForFunction(() => Number(document.querySelector('#chart-loss')?.dataset.points || 0) > 0,
    null, { timeout: 10000 });
  await sleep(500);  // anything else the stream would bring has arrived
  const shown = await page.locator('#networks li').evaluateAll((els) => els.map((e) => e.dataset.key));
  console.log(`networks shown with acme's key: ${shown.join(', ')}`);
  if (shown.length !== 1 || shown[0] !== 'networks/acme-net') {
    throw new Error(`acme's key must show networks/acme-net only, got ${shown}`);
  }
}

async function main() {
  const tmp = makeTempDir('satlab-dash-');
  const server = await startServer(serverBin, tmp, keyMode
    ? { SATLAB_API_KEYS: `acme:user:${KEY_ACME},other:user:${KEY_OTHER}` } : {});
  console.log(`satlab-server grpc ${server.grpcTarget} http ${server.httpBase}`);
  const trainer = experimentMode || keyMode ? { stop: async () => {} }
    : startTraining(cliBin, server.grpcTarget, 'mse-sigmoid', tmp);

  const browser = await chromium.launch({
    executablePath: chromiumBin,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1440, height: 960 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      // A refused key is the browser's logged 401, expected in --key mode.
      if (m.type() === 'error' && !(keyMode && m.text().includes('401'))) errors.push(m.text());
    });
    if (experimentMode || keyMode) {
      await (keyMode ? keyView(page, server, tmp) : experimentView(page, server, tmp));
      if (errors.length > 0) throw new Error(`page errors: ${errors.join('; ')}`);
      await page.screenshot({ path: screenshot, fullPage: true });
      console.log(`screenshot ${screenshot}`);
      return;
    }
    await page.goto(server.httpBase + '/', { waitUntil: 'load' });

    const item = page.locator('#networks li[data-key="networks/mse-sigmoid"]');
    await item.waitFor({ timeout: 20000 });
    await item.click();
    await page.locator('#network-view').waitFor({ state: 'visible', timeout: 5000 });
    const title = await page.locator('#network-title').textContent();
    if (title !== 'networks/mse-sigmoid') throw new Error(`title is ${title}`);

    const points = async () => Number(await page.locator('#chart-loss').getAttribute('data-points') || 0);
    await page.waitForFunction(() => Number(document.querySelector('#chart-loss')?.dataset.points || 0) > 0, null, { timeout: 10000 });
    const before = await points();
    await sleep(2500);
    const after = await points();
    console.log(`loss chart points: ${before} -> ${after}`);
    if (!(after > before)) throw new Error(`loss chart did not gain points (${before} -> ${after})`);

    // Chart.js drew the axes titles and legends (the canvas holds pixels).
    const drawn = await page.evaluate(() => {
      const c = document.querySelector('#chart-loss');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let ink = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++;
      return ink;
    });
    if (drawn < 1000) throw new Error(`loss chart canvas looks empty (${drawn} pixels)`);
    const tiles = await page.locator('#network-tiles .tile').count();
    if (tiles < 6) throw new Error(`expected 6 stat tiles, got ${tiles}`);
    if (errors.length > 0) throw new Error(`page errors: ${errors.join('; ')}`);

    await sleep(1000);
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`screenshot ${screenshot}`);
  } finally {
    await browser.close();
    await trainer.stop();
    stopAll();
  }
}

main().then(() => { console.log('dashboard test passed'); process.exit(0); })
  .catch((e) => { console.error(e); stopAll(); process.exit(1); });
