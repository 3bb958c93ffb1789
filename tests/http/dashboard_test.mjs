// Headless Chromium (playwright-core, /usr/bin/chromium) opens the live
// dashboard of a satlab-server whose network trains through the CLI, finds
// the network, watches its loss chart gain points, and saves a screenshot.
//
// With --experiment, it instead runs a two-variant experiment (sigmoid+MSE
// vs sigmoid+BCE on XOR) through `satlab experiment SPEC.json`, selects it,
// and checks that both variants are charted side by side.
//
//   node dashboard_test.mjs --server-bin B --cli-bin C --screenshot OUT.png
//        [--experiment] [--chromium /usr/bin/chromium]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { arg, makeTempDir, requireFile, sleep, startServer, startTraining, stopAll } from './harness.mjs';

const serverBin = arg('server-bin');
const cliBin = arg('cli-bin');
const screenshot = arg('screenshot');
const chromiumBin = requireFile(arg('chromium', '/usr/bin/chromium'), 'chromium (apt-get install chromium)');
const experimentMode = process.argv.includes('--experiment');

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

async function main() {
  const tmp = makeTempDir('satlab-dash-');
  const server = await startServer(serverBin, tmp);
  console.log(`satlab-server grpc ${server.grpcTarget} http ${server.httpBase}`);
  const trainer = experimentMode ? { stop: async () => {} }
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
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    if (experimentMode) {
      await experimentView(page, server, tmp);
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
