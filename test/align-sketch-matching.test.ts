/**
 * Known answers for count-sketched correlations and for the matching that scales past the dense
 * assignment (LSH candidates, greedy above chance, exact leftovers, random completion): permuted
 * noisy copies are matched exactly, negated rows too where signs are folded, crowded keys fall
 * back to the exact leftovers, and unrelated rows give a matched-neuron statistic with its null.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { combineIndependence, independenceFromSources, type LayerIndependence } from '../src/align/independence.js';
import { matchSources, type SimilaritySource } from '../src/align/matching.js';
import { countSketchMap, sketchColumnsStandardized, sketchRowsStandardized, standardizeRows } from '../src/linalg/countsketch.js';
import type { Matrix } from '../src/linalg/matrix.js';
import { Rng } from '../src/linalg/rng.js';

function gaussian(rows: number, cols: number, seed: number): Matrix {
  const rng = new Rng(seed);
  return { rows, cols, data: Float64Array.from({ length: rows * cols }, () => rng.gaussian()) };
}

/** Candidate row i = sign_i * scale_i * (base row order[i]) + noise. */
function permutedCopy(base: Matrix, noise: number, seed: number, negate = false): { candidate: Matrix; order: Int32Array } {
  const rng = new Rng(seed);
  const order = rng.permutation(base.rows);
  const data = new Float64Array(base.data.length);
  for (let i = 0; i < base.rows; i++) {
    const factor = (negate && i % 3 === 0 ? -1 : 1) * Math.exp(0.5 * rng.gaussian());
    for (let j = 0; j < base.cols; j++) data[i * base.cols + j] = factor * (base.data[order[i]! * base.cols + j]! + noise * rng.gaussian());
  }
  return { candidate: { rows: base.rows, cols: base.cols, data }, order };
}

function dot(a: Matrix, i: number, b: Matrix, j: number): number {
  let s = 0;
  for (let q = 0; q < a.cols; q++) s += a.data[i * a.cols + q]! * b.data[j * b.cols + q]!;
  return s;
}

/** Rows matched to their true counterpart (matchSources maps base rows to candidate rows). */
function correctCount(permutation: Int32Array, order: Int32Array): number {
  let ok = 0;
  for (let i = 0; i < permutation.length; i++) if (order[permutation[i]!] === i) ok++;
  return ok;
}

test('count sketch: a map of its seed alone, buckets evenly filled, signs +-1', () => {
  const a = countSketchMap(1000, 64, 5), b = countSketchMap(1000, 64, 5);
  assert.deepEqual(a.bucket, b.bucket);
  const fill = new Array<number>(64).fill(0);
  for (const x of a.bucket) fill[x]!++;
  assert.ok(fill.every((c) => c === 15 || c === 16), `bucket fill ${fill}`);
  assert.ok(a.sign.every((s) => s === 1 || s === -1));
  assert.notDeepEqual(countSketchMap(1000, 64, 6).bucket, a.bucket);
});

test('sketched correlations: identical rows 1, negated -1, a shifted copy 1, unrelated rows near 0', () => {
  const x = gaussian(40, 2000, 1);
  const shifted: Matrix = { rows: 40, cols: 2000, data: x.data.map((v, p) => (Math.floor(p / 2000) % 2 ? -v : 3 * v + 7)) };
  const sx = sketchRowsStandardized(x, 128, 9), ss = sketchRowsStandardized(shifted, 128, 9);
  for (let i = 0; i < 40; i++) {
    assert.ok(Math.abs(dot(sx, i, sx, i) - 1) < 1e-12);
    assert.ok(Math.abs(dot(sx, i, ss, i) - (i % 2 ? -1 : 1)) < 1e-9, `row ${i}`);
  }
  // Unrelated Gaussian rows: correlation about N(0, 1/128); 6 standard deviations is never reached.
  let worst = 0;
  for (let i = 0; i < 40; i++) for (let j = 0; j < 40; j++) if (i !== j) worst = Math.max(worst, Math.abs(dot(sx, i, sx, j)));
  assert.ok(worst < 6 / Math.sqrt(128), `largest unrelated correlation ${worst}`);
  assert.ok(worst > 0.5 / Math.sqrt(128), 'sketches are not degenerate');
});

test('sketched correlations track exact ones within the sketch error', () => {
  const x = gaussian(30, 3000, 2);
  const y = permutedCopy(x, 1.0, 3).candidate; // correlation about 1/sqrt(2) with its partner
  const ex = standardizeRows(x), ey = standardizeRows(y);
  const sx = sketchRowsStandardized(x, 256, 4), sy = sketchRowsStandardized(y, 256, 4);
  for (let i = 0; i < 30; i++) {
    for (let j = 0; j < 30; j++) {
      const exact = dot(ex, i, ey, j), sketched = dot(sx, i, sy, j);
      assert.ok(Math.abs(exact - sketched) < 6 / Math.sqrt(256), `(${i}, ${j}): exact ${exact}, sketched ${sketched}`);
    }
  }
});

test('column sketches are the row sketches of the transpose; narrow sides are kept whole', () => {
  const a = gaussian(500, 12, 5);
  const t: Matrix = { rows: 12, cols: 500, data: new Float64Array(6000) };
  for (let i = 0; i < 500; i++) for (let j = 0; j < 12; j++) t.data[j * 500 + i] = a.data[i * 12 + j]!;
  const byColumns = sketchColumnsStandardized(a, 64, 8), byRows = sketchRowsStandardized(t, 64, 8);
  byColumns.data.forEach((v, p) => assert.ok(Math.abs(v - byRows.data[p]!) < 1e-12));
  assert.deepEqual(sketchRowsStandardized(t, 1000, 8).data, standardizeRows(t).data);
});

test('matching past the dense limit recovers a permuted, rescaled, noisy copy exactly, and agrees with the dense assignment', () => {
  const base = gaussian(900, 512, 6);
  const { candidate, order } = permutedCopy(base, 0.15, 7);
  const source: SimilaritySource = { base: sketchRowsStandardized(base, 256, 1), candidate: sketchRowsStandardized(candidate, 256, 1), absolute: false };
  const sparse = matchSources([source], { seed: 1, denseLimit: 100 });
  assert.equal(correctCount(sparse.permutation, order), 900);
  const dense = matchSources([source], { seed: 1, denseLimit: 1000 });
  assert.deepEqual(sparse.permutation, dense.permutation);
  assert.ok(Math.abs(sparse.quality - dense.quality) < 1e-6); // the dense similarities are float32
});

test('absolute sources fold negated rows; two sources are averaged', () => {
  const gate = gaussian(700, 300, 8);
  const up = gaussian(700, 300, 9);
  const g = permutedCopy(gate, 0.2, 10);
  // The same neuron order for up, with a third of the rows negated.
  const upCandidate = new Float64Array(up.data.length);
  for (let i = 0; i < 700; i++) {
    for (let j = 0; j < 300; j++) upCandidate[i * 300 + j] = (i % 3 ? 1 : -2) * up.data[g.order[i]! * 300 + j]!;
  }
  const sources: SimilaritySource[] = [
    { base: sketchRowsStandardized(gate, 256, 2), candidate: sketchRowsStandardized(g.candidate, 256, 2), absolute: false },
    { base: sketchRowsStandardized(up, 256, 3), candidate: sketchRowsStandardized({ rows: 700, cols: 300, data: upCandidate }, 256, 3), absolute: true },
  ];
  const both = matchSources(sources, { seed: 2, denseLimit: 50 });
  assert.equal(correctCount(both.permutation, g.order), 700);
  const upOnly = matchSources([sources[1]!], { seed: 2, denseLimit: 50 });
  assert.equal(correctCount(upOnly.permutation, g.order), 700);
  assert.ok(upOnly.quality > 0.999);
});

test('crowded keys (repeated rows) and rows LSH misses are settled by the exact leftover assignment', () => {
  const base = gaussian(600, 256, 11);
  // 40 identical rows share every key; a tenth of the rows are heavily perturbed (missed by the hashes).
  for (let i = 1; i < 40; i++) base.data.copyWithin(i * 256, 0, 256);
  const { candidate, order } = permutedCopy(base, 0.05, 12);
  const rng = new Rng(13);
  for (let i = 0; i < 600; i += 10) for (let j = 0; j < 256; j++) candidate.data[i * 256 + j]! += 0.9 * rng.gaussian();
  const source: SimilaritySource = { base: standardizeRows(base), candidate: standardizeRows(candidate), absolute: false };
  const match = matchSources([source], { seed: 3, denseLimit: 200 });
  // Identical base rows are interchangeable: count a match as right when the rows are equal.
  let ok = 0;
  for (let i = 0; i < 600; i++) {
    const truth = order[match.permutation[i]!]!;
    if (truth === i || (truth < 40 && i < 40)) ok++;
  }
  assert.equal(ok, 600);
});

test('unrelated rows past the dense limit: the matched-neuron statistic keeps its null (p > 0.01 combined, |z| small per layer)', () => {
  const layers: LayerIndependence[] = [];
  for (let layer = 0; layer < 12; layer++) {
    const s = (seed: number, absolute: boolean): SimilaritySource => ({
      base: sketchRowsStandardized(gaussian(500, 96, 1000 + seed), 256, seed),
      candidate: sketchRowsStandardized(gaussian(500, 96, 2000 + seed), 256, seed),
      absolute,
    });
    const result = independenceFromSources(layer, { gate: s(3 * layer, false), up: s(3 * layer + 1, true) }, 50 + layer, { denseLimit: 100 });
    assert.ok(Math.abs(result.z) < 4.5, `layer ${layer}: z = ${result.z}`);
    layers.push(result);
  }
  const combined = combineIndependence(layers);
  assert.ok(combined.pValue > 0.01, `p = ${combined.pValue}`);
});

test('related rows past the dense limit: the statistic is overwhelming', () => {
  const gate = gaussian(800, 200, 21), up = gaussian(800, 200, 22);
  const g = permutedCopy(gate, 0.3, 23);
  const upCandidate = new Float64Array(up.data.length);
  for (let i = 0; i < 800; i++) for (let j = 0; j < 200; j++) upCandidate[i * 200 + j] = up.data[g.order[i]! * 200 + j]! + 0.3 * ((i * 7 + j * 13) % 5 - 2) / 2;
  const result = independenceFromSources(0, {
    gate: { base: standardizeRows(gate), candidate: standardizeRows(g.candidate), absolute: false },
    up: { base: standardizeRows(up), candidate: standardizeRows({ rows: 800, cols: 200, data: upCandidate }), absolute: true },
  }, 1, { denseLimit: 100 });
  assert.ok(result.spearman > 0.99, `rho = ${result.spearman}`);
});
