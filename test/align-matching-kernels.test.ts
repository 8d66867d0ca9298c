/**
 * The matching's faster kernels against the computations they replace, on random inputs with
 * ties: the radix-sorted hash tables against one packed comparison sort, the pairs walked above
 * the chance threshold against the full order cut at it, the four-sum dot product against one
 * running sum, four-rows-at-a-time standardization against one row at a time (bit for bit), and
 * matchings that reuse the dot products kept from earlier matchings against fresh ones.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { informativeRows } from '../src/align/independence.js';
import { decreasingAbove, keyedRows, matchSources, type SimilaritySource } from '../src/align/matching.js';
import { standardizeRows } from '../src/linalg/countsketch.js';
import type { Matrix } from '../src/linalg/matrix.js';
import { spanDot } from '../src/linalg/ops.js';
import { Rng } from '../src/linalg/rng.js';

test('keyedRows: keys increasing, ties by row, as one sort of key * n + row (few distinct keys and many)', () => {
  const rng = new Rng(11);
  for (const [bits, length, n] of [[1, 50, 60], [4, 3000, 5000], [18, 11008, 11008], [23, 4000, 9000], [30, 2500, 2500], [11, 0, 10]] as const) {
    const rows = Int32Array.from({ length: n }, (_, i) => i).filter(() => length === n || rng.uniform() < length / n);
    const keys = Uint32Array.from(rows, () => Math.floor(rng.uniform() * 2 ** bits));
    const packed = Float64Array.from(keys, (k, p) => k * n + rows[p]!).sort();
    const keysBefore = keys.slice(), rowsBefore = rows.slice();
    const got = keyedRows(keys, rows, bits);
    assert.deepEqual(Array.from(got.keys), Array.from(packed, (v) => Math.floor(v / n)), `keys, ${bits} bits`);
    assert.deepEqual(Array.from(got.rows), Array.from(packed, (v) => v % n), `rows, ${bits} bits`);
    assert.deepEqual(keys, keysBefore, 'the keys given are not written');
    assert.deepEqual(rows, rowsBefore, 'the rows given are not written');
  }
});

test('decreasingAbove: the full order by decreasing score (ties by index) cut at the threshold', () => {
  const rng = new Rng(12);
  for (const length of [0, 1, 7, 2000]) {
    // Scores on a coarse grid: many exact ties, some at the threshold itself.
    const score = Float64Array.from({ length }, () => Math.round(rng.gaussian() * 8) / 16);
    for (const threshold of [-Infinity, 0, 0.25, Infinity]) {
      const full = Array.from(score.keys()).sort((x, y) => score[y]! - score[x]! || x - y);
      const cut = full.findIndex((p) => score[p]! <= threshold);
      assert.deepEqual(Array.from(decreasingAbove(score, threshold)), cut < 0 ? full : full.slice(0, cut), `${length} scores above ${threshold}`);
    }
  }
});

test('spanDot: one running sum up to rounding, at any offsets and lengths (not only multiples of 4)', () => {
  const rng = new Rng(13);
  const x = Float64Array.from({ length: 600 }, () => rng.gaussian()), y = Float64Array.from({ length: 600 }, () => rng.gaussian());
  for (const [a, b, length] of [[0, 0, 0], [3, 5, 1], [10, 0, 7], [0, 300, 256], [17, 211, 255], [1, 2, 300]] as const) {
    let reference = 0, magnitude = 0;
    for (let q = 0; q < length; q++) {
      reference += x[a + q]! * y[b + q]!;
      magnitude += Math.abs(x[a + q]! * y[b + q]!);
    }
    const got = spanDot(x, a, y, b, length);
    assert.ok(Math.abs(got - reference) <= 1e-14 * magnitude, `${a} ${b} ${length}: ${got} vs ${reference}`);
  }
  assert.equal(spanDot(x, 4, x, 4, 64) > 0, true);
});

/** standardizeRows as it was: one row at a time, centred, summed, then scaled in place. */
function standardizeOneRowAtATime(a: { rows: number; cols: number; data: Float32Array | Float64Array }): Float64Array {
  const out = new Float64Array(a.data.length), n = a.cols;
  for (let i = 0; i < a.rows; i++) {
    const o = i * n;
    let mean = 0;
    for (let j = 0; j < n; j++) mean += a.data[o + j]!;
    mean /= n;
    let ss = 0;
    for (let j = 0; j < n; j++) {
      out[o + j] = a.data[o + j]! - mean;
      ss += out[o + j]! * out[o + j]!;
    }
    const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
    for (let j = 0; j < n; j++) out[o + j]! *= inv;
  }
  return out;
}

test('standardizeRows: bit for bit the one-row-at-a-time values, any row count, zero and constant rows, float32 and float64', () => {
  const rng = new Rng(14);
  for (const [rows, cols] of [[0, 5], [1, 1], [1, 9], [2, 3], [3, 256], [4, 4], [5, 17], [7, 2], [13, 64]] as const) {
    const data = Float64Array.from({ length: rows * cols }, () => rng.gaussian() * 3 + 1);
    if (rows > 1) data.fill(0, 0, cols);
    if (rows > 2) data.fill(2.5, 2 * cols, 3 * cols);
    for (const values of [data, Float32Array.from(data)]) {
      const got = standardizeRows({ rows, cols, data: values }).data;
      const want = standardizeOneRowAtATime({ rows, cols, data: values });
      assert.ok(got.every((v, p) => Object.is(v, want[p])), `${rows}x${cols} ${values.constructor.name}`);
    }
  }
});

function unitRows(rows: number, cols: number, rng: Rng): Matrix {
  return standardizeRows({ rows, cols, data: Float64Array.from({ length: rows * cols }, () => rng.gaussian()) });
}

/** Candidate rows: base rows permuted, noisy, some negated, a few duplicated (ties), restandardized. */
function relatedRows(base: Matrix, noise: number, rng: Rng): Matrix {
  const order = rng.permutation(base.rows), w = base.cols;
  const data = new Float64Array(base.data.length);
  for (let i = 0; i < base.rows; i++) {
    const sign = i % 5 === 0 ? -1 : 1;
    for (let j = 0; j < w; j++) data[i * w + j] = sign * base.data[order[i]! * w + j]! + noise * rng.gaussian();
  }
  for (let i = 0; i < 20; i++) data.copyWithin((i + 40) * w, i * w, (i + 1) * w);
  return standardizeRows({ rows: base.rows, cols: w, data });
}

test('matchSources: matchings that reuse dot products kept from earlier matchings of the same rows equal fresh ones', () => {
  const rng = new Rng(15);
  const n = 900, w = 64;
  for (const noise of [0.05, 0.8, 10]) {
    const gateBase = unitRows(n, w, rng), upBase = unitRows(n, w, rng);
    // Ties: duplicated base rows too.
    gateBase.data.copyWithin(5 * w, 6 * w, 7 * w);
    const gate: SimilaritySource = { base: gateBase, candidate: relatedRows(gateBase, noise, rng), absolute: false };
    const up: SimilaritySource = { base: upBase, candidate: relatedRows(upBase, noise, rng), absolute: true };
    // Copies of the matrices: nothing computed for the originals is found for them.
    const fresh = (s: SimilaritySource): SimilaritySource => ({ base: { ...s.base, data: s.base.data.slice() }, candidate: { ...s.candidate, data: s.candidate.data.slice() }, absolute: s.absolute });
    const options = { seed: 3, denseLimit: 128 };
    for (const sources of [[gate], [up], [gate, up], [up, gate], [gate, up]]) {
      const kept = matchSources(sources, options), alone = matchSources(sources.map(fresh), options);
      assert.deepEqual(kept.permutation, alone.permutation, `noise ${noise}`);
      assert.deepEqual(kept.matched, alone.matched, `noise ${noise}`);
      assert.equal(kept.quality, alone.quality);
    }
  }
});

test('informativeRows: on many rows with repeats, negated repeats and zero rows, exactly the rows no other row repeats', () => {
  const rng = new Rng(16);
  const n = 3000, w = 32;
  const m = unitRows(n, w, rng);
  const copies: Array<[number, number, number]> = [];
  for (let t = 0; t < 200; t++) {
    const from = rng.int(n), to = rng.int(n), sign = t % 2 ? -1 : 1;
    if (from === to) continue;
    for (let j = 0; j < w; j++) m.data[to * w + j] = sign * m.data[from * w + j]!;
    copies.push([from, to, sign]);
  }
  for (let i = 0; i < 10; i++) m.data.fill(0, (i * 97) * w, (i * 97 + 1) * w);
  for (const absolute of [false, true]) {
    // Reference: all pairs, exact equality of the (sign-folded when absolute) rows.
    const key = (i: number) => {
      const row = Array.from(m.data.subarray(i * w, (i + 1) * w));
      const first = row.find((v) => v !== 0) ?? 0;
      return (absolute && first < 0 ? row.map((v) => -v) : row).join(',');
    };
    const counts = new Map<string, number>();
    for (let i = 0; i < n; i++) counts.set(key(i), (counts.get(key(i)) ?? 0) + 1);
    const want = Array.from({ length: n }, (_, i) => (m.data.subarray(i * w, (i + 1) * w).some((v) => v !== 0) && counts.get(key(i)) === 1 ? 1 : 0));
    assert.deepEqual(Array.from(informativeRows(m, absolute)), want, `absolute ${absolute}`);
  }
  assert.ok(copies.length > 150);
});
