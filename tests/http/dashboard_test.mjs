// Headless Chromium (playwright-core, /usr/bin/chromium) opens the live
// dashboard of a satlab-server whose network trains through the CLI, finds
// the network, watches its loss chart gain points, and saves a screenshot.
//
//   node dashboard_test.mjs --server-bin B --cli-bin C --screenshot OUT.png
//        [--chromium /usr/bin/chromium]
import { chromium } from 'playwright-core';
import { arg, makeTempDir, requireFile, sleep, startServer, startTraining, stopAll } from './harness.mjs';

const serverBin = arg('server-bin');
const cliBin = arg('cli-bin');
const screenshot = arg('screenshot');
const chromiumBin = requireFile(arg('chromium', '/usr/bin/chromium'), 'chromium (apt-get install chromium)');

async function main() {
  const tmp = makeTempDir('satlab-dash-');
  const server = await startServer(serverBin, tmp);
  console.log(`satlab-server grpc ${server.grpcTarget} http ${server.httpBase}`);
  const trainer = startTraining(cliBin, server.grpcTarget, 'mse-sigmoid', tmp);

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
