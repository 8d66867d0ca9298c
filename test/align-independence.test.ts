/**
 * The matched-neuron independence test counts only neurons whose rows carry evidence: zero,
 * constant and repeated rows (ties an assignment breaks the same way in both matchings) are left
 * out and counted, and the null holds with such rows on either side.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { combineIndependence, independenceFromSources, informativeRows, MIN_ROWS_USED, type LayerIndependence } from '../src/align/independence.js';
import { standardizeRows } from '../src/linalg/countsketch.js';
import type { Matrix } from '../src/linalg/matrix.js';
import { Rng } from '../src/linalg/rng.js';
import { normalLogSf } from '../src/stats/hypothesis-tests.js';

function gaussian(rows: number, cols: number, rng: Rng): Matrix {
  return { rows, cols, data: Float64Array.from({ length: rows * cols }, () => rng.gaussian()) };
}

/** Rows `zeroed` set to 0 and rows `constant` to 0.5 everywhere, in place. */
function degrade(m: Matrix, zeroed: Iterable<number>, constant: Iterable<number> = []): Matrix {
  for (const i of zeroed) m.data.fill(0, i * m.cols, (i + 1) * m.cols);
  for (const i of constant) m.data.fill(0.5, i * m.cols, (i + 1) * m.cols);
  return m;
}

function sources(gateBase: Matrix, upBase: Matrix, gateCandidate: Matrix, upCandidate: Matrix) {
  return {
    gate: { base: standardizeRows(gateBase), candidate: standardizeRows(gateCandidate), absolute: false },
    up: { base: standardizeRows(upBase), candidate: standardizeRows(upCandidate), absolute: true },
  };
}

test('informativeRows: zero, constant and repeated rows (negated ones too, for absolute sources) are not informative', () => {
  const rng = new Rng(5);
  const m = gaussian(12, 40, rng);
  degrade(m, [0], [1]);
  m.data.copyWithin(3 * 40, 2 * 40, 3 * 40); // row 3 repeats row 2
  for (let j = 0; j < 40; j++) m.data[5 * 40 + j] = -m.data[4 * 40 + j]!; // row 5 is row 4 negated
  for (let j = 0; j < 40; j++) m.data[7 * 40 + j] = 3 * m.data[6 * 40 + j]! + 1; // row 7 is row 6 rescaled and shifted
  const unit = standardizeRows(m);
  assert.deepEqual(Array.from(informativeRows(unit, true)), [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
  // A signed source tells x from -x: rows 4 and 5 are then informative.
  assert.deepEqual(Array.from(informativeRows(unit, false)), [0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1]);
});

test('informativeRows: rows that share their leading coordinates (one key) but differ further on are informative', () => {
  const rng = new Rng(8);
  const w = 40, head = Array.from({ length: 8 }, () => rng.gaussian()), tail = Array.from({ length: w - 8 }, () => rng.gaussian());
  // Rows 0-3: one head, the tail in different orders (so equal norms: equal leading coordinates
  // once unit); rows 4 and 5: another row, twice.
  const rows = [0, 1, 2, 3].map((k) => [...head, ...tail.slice(k), ...tail.slice(0, k)]);
  const other = Array.from({ length: w }, () => rng.gaussian());
  rows.push(other, other);
  const data = Float64Array.from(rows.flatMap((row) => row.map((v) => v / Math.hypot(...row))));
  const unit = { rows: rows.length, cols: w, data };
  for (const absolute of [true, false]) assert.deepEqual(Array.from(informativeRows(unit, absolute)), [1, 1, 1, 1, 0, 0]);
});

test('an all-zero or constant candidate gives no evidence: no neuron used, the layer left out, p = 1', () => {
  const rng = new Rng(6);
  const n = 80, w = 48;
  const all = Array.from({ length: n }, (_, i) => i);
  for (const candidate of [() => degrade(gaussian(n, w, rng), all), () => degrade(gaussian(n, w, rng), [], all)]) {
    const layer = independenceFromSources(0, sources(gaussian(n, w, rng), gaussian(n, w, rng), candidate(), candidate()), 3);
    assert.deepEqual({ rowsUsed: layer.rowsUsed, z: layer.z }, { rowsUsed: 0, z: 0 });
    const combined = combineIndependence([layer]);
    assert.equal(combined.layersTested, 0);
    assert.equal(combined.pValue, 1);
  }
});

test('null calibration with pruned and constant rows on both sides: z ~ N(0, 1) per layer, p > 0.01 combined', () => {
  const rng = new Rng(7);
  const n = 120, w = 48, layers = 60;
  const perLayer: LayerIndependence[] = [];
  for (let layer = 0; layer < layers; layer++) {
    // Each model zeroes its own random 40% of neurons (and makes a few constant), as pruning does.
    const model = () => {
      const order = rng.permutation(n);
      const zeroed = Array.from(order.subarray(0, 48)), constant = Array.from(order.subarray(48, 54));
      return { gate: degrade(gaussian(n, w, rng), zeroed, constant), up: degrade(gaussian(n, w, rng), zeroed, constant) };
    };
    const a = model(), b = model();
    const result = independenceFromSources(layer, sources(a.gate, a.up, b.gate, b.up), 100 + layer);
    assert.ok(result.rowsUsed >= MIN_ROWS_USED && result.rowsUsed <= n - 54, `layer ${layer}: ${result.rowsUsed} rows used`);
    perLayer.push(result);
  }
  const z = perLayer.map((l) => l.z);
  const mean = z.reduce((s, v) => s + v, 0) / layers;
  const variance = z.reduce((s, v) => s + (v - mean) ** 2, 0) / (layers - 1);
  console.log(`  null with pruned rows: mean z ${mean.toFixed(3)}, variance ${variance.toFixed(3)}, ${perLayer.reduce((s, l) => s + l.rowsUsed, 0)} of ${n * layers} neurons used`);
  // Mean of 60 N(0,1) draws: |mean| < 4 / sqrt(60) ~ 0.52; variance within a wide band around 1.
  assert.ok(Math.abs(mean) < 0.52, `mean z ${mean}`);
  assert.ok(variance > 0.5 && variance < 1.7, `variance of z ${variance}`);
  assert.ok(z.filter((v) => Math.exp(normalLogSf(v)) < 0.01).length <= 4, `per-layer p < 0.01: ${z.map((v) => v.toFixed(1)).join(' ')}`);
  const combined = combineIndependence(perLayer);
  assert.ok(combined.pValue > 0.01, `p = ${combined.pValue}`);
  assert.equal(combined.layersTested, layers);
});

test('related rows with half the candidate neurons pruned: the kept ones are used and agree', () => {
  const rng = new Rng(8);
  const n = 100, w = 48;
  const gate = gaussian(n, w, rng), up = gaussian(n, w, rng);
  const order = rng.permutation(n);
  const child = (m: Matrix) => {
    const data = new Float64Array(m.data.length);
    for (let i = 0; i < n; i++) for (let j = 0; j < w; j++) data[i * w + j] = m.data[order[i]! * w + j]! + 0.2 * rng.gaussian();
    return degrade({ rows: n, cols: w, data }, Array.from({ length: n / 2 }, (_, k) => 2 * k));
  };
  const result = independenceFromSources(0, sources(gate, up, child(gate), child(up)), 9);
  assert.equal(result.rowsUsed, n / 2);
  assert.ok(result.spearman > 0.99, `rho = ${result.spearman}`);
});
