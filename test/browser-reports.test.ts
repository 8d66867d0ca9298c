/**
 * The HTML reports opened in a real headless Chromium, checked for what a person would see.
 * Needs Debian's chromium at /usr/bin/chromium (installed by .ci/run); skipped with the reason
 * printed when it is absent. Installs nothing at run time.
 * With REPORT_SCREENSHOT_DIR set, also writes verify-report.png and tree-report.png there.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { pathToFileURL } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { renderTreeHtml } from '../src/reports/html-tree.js';
import { renderVerifyHtml } from '../src/reports/html-verify.js';
import { LAYERS, MODULES, modelCount, sampleLineageResult, sampleVerifyResult } from './report-fixtures.js';

/** Debian's chromium; CHROMIUM_PATH overrides it (e.g. to see the skip path). */
const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const SKIP_REASON = `no Chromium at ${CHROMIUM} (install Debian's chromium package to run the browser test)`;
const screenshotDir = process.env['REPORT_SCREENSHOT_DIR'];

let workDir = '';
let context: BrowserContext | null = null;

before(async () => {
  if (!existsSync(CHROMIUM)) return;
  workDir = mkdtempSync(path.join(tmpdir(), 'lineage-browser-'));
  context = await chromium.launchPersistentContext(path.join(workDir, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 1000 },
  });
});

after(async () => {
  await context?.close();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

interface OpenedPage {
  readonly page: Page;
  /** Console errors, uncaught exceptions and any request that would leave the file. */
  readonly problems: string[];
}

/** Write the report to a file and open it from disk, as a reader would. */
async function openReport(t: TestContext, html: string, name: string): Promise<OpenedPage | null> {
  if (!context) {
    t.skip(SKIP_REASON);
    console.log(`# skipped: ${SKIP_REASON}`);
    return null;
  }
  const file = path.join(workDir, name);
  writeFileSync(file, html);
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith('file:')) return route.continue();
    problems.push(`network request: ${url}`);
    return route.abort();
  });
  await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
  return { page, problems };
}

test('tree report in Chromium: one node per model, families apart, click shows details', async (t) => {
  const result = sampleLineageResult();
  const opened = await openReport(t, await renderTreeHtml(result), 'tree.html');
  if (!opened) return;
  const { page, problems } = opened;

  const nodes = page.locator('#graph svg g.node');
  assert.equal(await nodes.count(), modelCount(result));
  for (const box of await nodes.evaluateAll((els) => els.map((el) => el.getBoundingClientRect().toJSON() as DOMRect))) {
    assert.ok(box.width > 20 && box.height > 10, 'every node is drawn at a visible size');
  }
  assert.equal(await page.locator('#summary').innerText(), '11 models in 2 families');

  // Families are separate boxes that do not overlap, and each holds exactly its own models.
  const clusters = await page.locator('#graph svg g.cluster').evaluateAll((els) => els.map((el) => el.getBoundingClientRect().toJSON() as DOMRect));
  assert.equal(clusters.length, result.trees.length);
  const [a, b] = clusters as [DOMRect, DOMRect];
  assert.ok(a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top, 'family boxes overlap');
  const centres = await nodes.evaluateAll((els) => els.map((el) => {
    const r = el.getBoundingClientRect();
    return { name: el.getAttribute('data-model'), x: r.x + r.width / 2, y: r.y + r.height / 2 };
  }));
  result.trees.forEach((tree, i) => {
    const box = clusters[i]!;
    const inside = centres.filter((c) => c.x > box.left && c.x < box.right && c.y > box.top && c.y < box.bottom).map((c) => c.name).sort();
    assert.deepEqual(inside, [...tree.members].sort());
  });

  // Roots on top: every child is drawn below its parent.
  const y = new Map(centres.map((c) => [c.name, c.y]));
  for (const edge of result.edges) assert.ok(y.get(edge.child)! > y.get(edge.parent)!, `${edge.child} below ${edge.parent}`);

  await page.locator('#graph g.node[data-model="p4a"]').click();
  assert.equal(await page.locator('#details h3').innerText(), 'p4a');
  const details = await page.locator('#details').innerText();
  assert.match(details, /parent\s+p4/);
  assert.match(details, /change\s+LoRA r=8 v_proj,o_proj/);
  assert.match(details, /direction margin\s+-0\.004 \(against the norm-growth evidence\)/);
  assert.equal(await page.locator('#graph g.node.selected').getAttribute('data-model'), 'p4a');

  if (screenshotDir) await page.screenshot({ path: path.join(screenshotDir, 'tree-report.png'), fullPage: true });
  assert.deepEqual(problems, []);
  await page.close();
});

test('verify report in Chromium: verdict visible, one drawn spectrum per module with its threshold', async (t) => {
  const result = sampleVerifyResult();
  const opened = await openReport(t, renderVerifyHtml(result), 'verify.html');
  if (!opened) return;
  const { page, problems } = opened;

  const verdict = page.locator('#verdict');
  assert.ok(await verdict.isVisible());
  assert.equal(await verdict.innerText(), 'DERIVED');
  assert.equal(await page.locator('#headline').innerText(), 'o1 is derived from p0');
  assert.equal(await page.locator('#pvalue').innerText(), 'p = 4.27e-413');
  const verdictBox = (await verdict.boundingBox())!;
  assert.ok(verdictBox.y < 200, 'verdict is at the top of the page');

  assert.equal(await page.locator('body').getAttribute('data-plots-drawn'), String(LAYERS * MODULES.length));
  assert.equal(await page.locator('figure.spectrum .uplot').count(), 28);
  // Look at the pixels: every plot shows blue singular values and the red dashed threshold.
  const colours = await page.locator('figure.spectrum canvas').evaluateAll((canvases) => canvases.map((canvas) => {
    const c = canvas as HTMLCanvasElement;
    const pixels = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    let blue = 0;
    let red = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      const [r, g, b, alpha] = [pixels[i]!, pixels[i + 1]!, pixels[i + 2]!, pixels[i + 3]!];
      if (alpha < 128) continue;
      if (b > 150 && r < 80 && g > 60 && g < 160) blue++;
      if (r > 150 && g < 80 && b < 90) red++;
    }
    return { blue, red, width: c.width, height: c.height };
  }));
  assert.equal(colours.length, 28);
  for (const c of colours) {
    assert.ok(c.width > 100 && c.height > 100, 'plot canvas has a visible size');
    assert.ok(c.blue > 30, `singular values drawn (${c.blue} blue pixels)`);
    assert.ok(c.red > 30, `threshold drawn (${c.red} red pixels)`);
  }
  // The low-rank gap: in an adapted module 8 values lie above the threshold, in the others none.
  assert.equal(await page.locator('#spectrum-1-q_proj .badge').innerText(), 'low-rank r=8');
  assert.equal(await page.locator('#spectrum-1-k_proj .badge').innerText(), 'unchanged');

  if (screenshotDir) await page.screenshot({ path: path.join(screenshotDir, 'verify-report.png'), fullPage: true, clip: { x: 0, y: 0, width: 1280, height: 1500 } });
  assert.deepEqual(problems, []);
  await page.close();
});
