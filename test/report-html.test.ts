/** HTML reports as strings: self-contained, escaped, and carrying exactly the result's data. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { BadInputError } from '../src/io/errors.js';
import { escapeHtml, formatPValue, jsonForScript, writeReportFile } from '../src/reports/html-page.js';
import { nodeDetails, renderTreeHtml } from '../src/reports/html-tree.js';
import { renderVerifyHtml, sharedLogRange, spectrumPlots, verdictText } from '../src/reports/html-verify.js';
import { LAYERS, MODULES, modelCount, sampleLineageResult, sampleVerifyResult } from './report-fixtures.js';

function embeddedData(html: string): any {
  const match = /<script type="application\/json" id="report-data">([\s\S]*?)<\/script>/.exec(html);
  assert.ok(match, 'report-data script present');
  return JSON.parse(match[1]!);
}

/** Nothing the page would fetch: no external script, style sheet, image or frame. */
function assertSelfContained(html: string): void {
  assert.doesNotMatch(html, /<script[^>]+src=/i);
  assert.doesNotMatch(html, /<link\b/i);
  assert.doesNotMatch(html, /<(img|iframe)\b/i);
  assert.doesNotMatch(html, /url\(\s*['"]?(https?:)?\/\//i);
  assert.doesNotMatch(html, /@import/i);
}

test('formatPValue reads the p-value off its logarithm, below the double range too', () => {
  assert.equal(formatPValue(-0.3), '0.501');
  assert.equal(formatPValue(-3), '0.001');
  assert.equal(formatPValue(-45.5), '3.16e-46');
  assert.equal(formatPValue(-412.37), '4.27e-413');
  // 10^0.9999999 rounds to 10.00: carried into the exponent, never "10.00e-5".
  assert.equal(formatPValue(-4.0000001), '1.00e-4');
  assert.equal(formatPValue(0), '1');
  assert.equal(formatPValue(-Infinity), '0');
});

test('escaping: HTML text and script-embedded JSON cannot break out', () => {
  assert.equal(escapeHtml(`<a href="x">&'`), '&#60;a href=&#34;x&#34;&#62;&#38;&#39;');
  const tricky = { s: '</script><script>alert(1)</script>\u2028<!--' };
  const text = jsonForScript(tricky);
  assert.doesNotMatch(text, /<|>|\u2028/);
  assert.deepEqual(JSON.parse(text), tricky);
});

test('verify report: verdict and p-value up front, one plot per module, data as given', () => {
  const result = sampleVerifyResult();
  const html = renderVerifyHtml(result);
  assertSelfContained(html);
  assert.match(html, /<span class="relation relation-derived" id="verdict">DERIVED<\/span>/);
  assert.match(html, /<span class="headline" id="headline">o1 is derived from p0<\/span>/);
  assert.match(html, /<span class="pvalue" id="pvalue">p = 4\.27e-413<\/span>/);
  // The verdict comes before the spectra in reading order.
  assert.ok(html.indexOf('id="verdict"') < html.indexOf('class="spectrum'));
  assert.equal(html.match(/<figure class="spectrum /g)?.length, LAYERS * MODULES.length);
  for (const line of result.transform.summary) assert.ok(html.includes(`<li>${escapeHtml(line)}</li>`), line);
  assert.match(html, /var uPlot=function/);

  const data = embeddedData(html);
  assert.equal(data.plots.length, 28);
  assert.deepEqual(data.plots, spectrumPlots(result));
  // Largest value: layer 3's first singular value 60 + 3; smallest: the noise tail.
  assert.equal(data.yRange[1], 63 * 1.5);
  assert.deepEqual(data.yRange, sharedLogRange(data.plots));
  assert.equal(new Set(data.plots.map((p: { id: string }) => p.id)).size, 28);
  const q0 = data.plots.find((p: { id: string }) => p.id === 'spectrum-0-q_proj');
  assert.deepEqual(q0.singularValues, result.layers[0]!.modules[0]!.singularValues);
  assert.equal(q0.singularValues.filter((v: number) => v > q0.threshold).length, 8);
  assert.match(html, /id="spectrum-3-down_proj"[^>]*>\s*<figcaption><strong>down_proj<\/strong> <span class="badge">unchanged<\/span>/);
  assert.match(html, /id="spectrum-2-v_proj"[^>]*>\s*<figcaption><strong>v_proj<\/strong> <span class="badge">low-rank r=8<\/span>/);
});

test('sharedLogRange spans every positive value and the threshold; zeros are left off', () => {
  const plot = { id: 'a', layer: 0, module: 'q_proj', status: 'low-rank', threshold: 1 } as const;
  assert.deepEqual(sharedLogRange([{ ...plot, singularValues: [4, 0, 0.5] }]), [0.5 / 1.5, 6]);
  assert.deepEqual(sharedLogRange([{ ...plot, singularValues: [0.5] }, { ...plot, singularValues: [] }]), [0.5 / 1.5, 1.5]);
  assert.deepEqual(sharedLogRange([]), [0.1, 10]);
});

test('verify report: every relation has its own words, and names are escaped', () => {
  const base = sampleVerifyResult();
  const expected = {
    derived: 'o1 is derived from p0',
    related: 'o1 and p0 share an ancestor',
    unrelated: 'o1 and p0 are unrelated',
    inconclusive: 'inconclusive: o1 vs p0',
  } as const;
  for (const [relation, words] of Object.entries(expected)) {
    assert.equal(verdictText({ ...base, relation: relation as keyof typeof expected }), words);
  }
  const hostile = sampleVerifyResult({
    candidate: { ...base.candidate, name: '<img src=x onerror=alert(1)>' },
    reason: 'contains </script> on purpose',
  });
  const html = renderVerifyHtml(hostile);
  assertSelfContained(html);
  assert.ok(html.includes('&#60;img src=x onerror=alert(1)&#62; is derived from p0'));
  assert.equal(html.match(/<\/script>/g)?.length, 3, 'only the data, library and page scripts close');
});

test('tree report: one drawn node per model, one box per family, labelled edges, details per model', async () => {
  const result = sampleLineageResult();
  const html = await renderTreeHtml(result);
  assertSelfContained(html);
  assert.match(html, /<h1 id="summary">11 models in 2 families<\/h1>/);
  assert.equal(html.match(/<g id="node\d+" class="node">/g)?.length, modelCount(result));
  assert.equal(html.match(/<g id="clust\d+" class="cluster">/g)?.length, 2);
  assert.equal(html.match(/<g id="edge\d+" class="edge">/g)?.length, result.edges.length);
  // Edge labels come from the shared DOT rendering: type, rank, modules, distance and margin.
  assert.match(html, />LoRA r=16 q_proj,v_proj<\/text>/);
  assert.match(html, />d=0\.0297 margin=&#45;0\.00400<\/text>/);
  assert.match(html, />full FT<\/text>/);
  assert.doesNotMatch(html, /<\?xml/);

  const data = embeddedData(html);
  assert.deepEqual(Object.keys(data.nodes).sort(), result.trees.flatMap((t) => t.members).sort());
  assert.deepEqual(data.nodes, nodeDetails(result));
  assert.deepEqual(data.nodes.p4a.rows, [
    ['family', '1 (root p0)'],
    ['parent', 'p4'],
    ['change', 'LoRA r=8 v_proj,o_proj'],
    ['kind', 'LoRA (low-rank delta)'],
    ['LoRA rank', '8'],
    ['modules', 'v_proj, o_proj'],
    ['distance', '0.0297'],
    ['direction margin', '-0.004 (against the norm-growth evidence)'],
    ['children', 'none'],
  ]);
  assert.deepEqual(data.nodes.q0.rows, [['family', '2 (root q0)'], ['parent', 'none: a root'], ['children', 'q2']]);
  assert.deepEqual(data.nodes.p0.rows.at(-1), ['children', 'p1, p2, p3, p4']);
  assert.deepEqual(data.nodes.p2.rows.find((r: string[]) => r[0] === 'direction margin'), ['direction margin', '0.98 (agrees with the norm-growth evidence)']);
  assert.doesNotMatch(html, /id="notes"/);
});

test('tree report: MoTHer margins are kurtosis evidence; notes are listed, escaped', async () => {
  const result = { ...sampleLineageResult(), method: 'mother' as const, notes: ['o1 <obfuscated> placed with low confidence'] };
  const html = await renderTreeHtml(result);
  assert.deepEqual(nodeDetails(result)['p4a']!.rows.find((r) => r[0] === 'direction margin'), ['direction margin', '-0.004 (against the kurtosis evidence)']);
  assert.match(html, /<code>margin<\/code> is the kurtosis evidence for the edge's direction/);
  assert.match(html, /<ul id="notes"><li>o1 &#60;obfuscated&#62; placed with low confidence<\/li><\/ul>/);
});

test('tree report: an adapter edge reads no direction; skipped inputs are listed with their reasons, escaped', async () => {
  const base = sampleLineageResult();
  const adapterEdge = { parent: 'q0', child: 'q2-adapter', kind: 'lora' as const, rank: 8, modules: ['q_proj'], distance: 0.1, directionMargin: 0, adapter: true as const };
  const result = {
    ...base,
    trees: base.trees.map((t) => (t.root === 'q0' ? { ...t, members: [...t.members, 'q2-adapter'] } : t)),
    edges: [...base.edges, adapterEdge],
    skipped: [{ path: 'downloads/README.md', reason: 'not a <model>' }],
  };
  const html = await renderTreeHtml(result);
  const rows = nodeDetails(result)['q2-adapter']!.rows;
  assert.deepEqual(rows.find((r) => r[0] === 'direction'), ['direction', 'none read: a PEFT adapter is applied to its base']);
  assert.equal(rows.find((r) => r[0] === 'direction margin'), undefined);
  assert.match(html, /<td>PEFT adapter LoRA r=8 q_proj<\/td><td class="num">0.1<\/td><td class="num">none read<\/td>/);
  assert.match(html, /<ul id="skipped"><li><code>downloads\/README.md<\/code>: not a &#60;model&#62;<\/li><\/ul>/);
  assert.doesNotMatch(await renderTreeHtml(base), /id="skipped"/);
});

test('tree report: a single model with no edges still renders one node', async () => {
  const html = await renderTreeHtml({ method: 'mother', trees: [{ root: 'solo "model"', members: ['solo "model"'] }], edges: [] });
  assert.equal(html.match(/<g id="node\d+" class="node">/g)?.length, 1);
  assert.match(html, /<h1 id="summary">1 model in 1 family<\/h1>/);
  assert.match(html, /No edges: every model is its own root\./);
  assert.deepEqual(Object.keys(embeddedData(html).nodes), ['solo "model"']);
});

test('writeReportFile writes the page; an unwritable path is bad input (exit 2), not a crash', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'lineage-report-'));
  try {
    const file = path.join(dir, 'report.html');
    writeReportFile(file, '<!DOCTYPE html><p>x</p>');
    assert.equal(readFileSync(file, 'utf8'), '<!DOCTYPE html><p>x</p>');
    const missing = path.join(dir, 'no-such-folder', 'report.html');
    assert.throws(() => writeReportFile(missing, 'x'), (err) => err instanceof BadInputError && err.exitCode === 2 && /ENOENT/.test(err.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
