/**
 * Known answers for the noise-aware numerical rank (src/noise/delta-rank.ts): a bf16-stored matrix
 * plus B A of known rank, with and without function-preserving row/column rescaling, and pure
 * storage noise, which must read as rank 0.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lowRankDelta } from '../src/noise/delta-rank.js';
import { coarserGrid, noisyFromWeight, type NoisyMatrix } from '../src/noise/noisy-matrix.js';
import { Rng } from '../src/linalg/rng.js';

const M = 96, N = 160;

function stored(values: Float64Array, dtype: 'BF16' | 'F32', roundTo: 'BF16' | null = null, rows = M, cols = N): NoisyMatrix {
  return noisyFromWeight({ rows, cols, data: Float32Array.from(values), dtype, tensor: 't', file: 'f' }, roundTo);
}

function lowRank(rng: Rng, rank: number, size: number, rows = M, cols = N): Float64Array {
  const b = rng.gaussianMatrix(rows, rank);
  const a = rng.gaussianMatrix(rank, cols);
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let t = 0; t < rank; t++) for (let j = 0; j < cols; j++) out[i * cols + j]! += size * b.data[i * rank + t]! * a.data[t * cols + j]!;
  return out;
}

function scaled(values: Float64Array, rowScale: Float64Array, colScale: Float64Array, cols = N): Float64Array {
  return Float64Array.from(values, (v, p) => v * rowScale[Math.floor(p / cols)]! * colScale[p % cols]!);
}

const both = { rows: true, cols: true };

for (const seed of [1, 2, 3]) {
  const rng = new Rng(seed);
  const w = Float64Array.from(rng.gaussianMatrix(M, N, 0.02).data);
  const rank = 1 + (seed * 3) % 7;
  const delta = lowRank(rng, rank, (0.02 * 0.15) / Math.sqrt(rank));
  const rowScale = Float64Array.from({ length: M }, () => Math.exp(0.5 * rng.gaussian()));
  const colScale = Float64Array.from({ length: N }, () => Math.exp(0.5 * rng.gaussian()));

  test(`seed ${seed}: bf16 base + rank ${rank}: exact rank with and without gauge freedom`, () => {
    const childValues = Float64Array.from(w, (v, p) => v + delta[p]!);
    for (const gauge of [{ rows: false, cols: false }, both]) {
      const r = lowRankDelta(stored(w, 'BF16'), stored(childValues, 'BF16'), { gauge });
      assert.equal(r.rank, rank, JSON.stringify(gauge));
      assert.equal(r.lowRank, true);
      assert.ok(r.spectrum[rank - 1]! > 1 && r.spectrum[rank]! <= 1, 'the threshold (1) falls in the gap');
    }
  });

  test(`seed ${seed}: rescaled rows and columns hide nothing: rank ${rank} only with gauge freedom`, () => {
    const childValues = scaled(Float64Array.from(w, (v, p) => v + delta[p]!), rowScale, colScale);
    const r = lowRankDelta(stored(w, 'BF16'), stored(childValues, 'BF16'), { gauge: both });
    assert.equal(r.rank, rank);
    const plain = lowRankDelta(stored(w, 'BF16'), stored(childValues, 'BF16'), { gauge: { rows: false, cols: false } });
    assert.ok(plain.rank > rank, `without gauge freedom the rescaling reads as rank ${plain.rank}`);
  });

  test(`seed ${seed}: a rescaled copy is pure storage noise: rank 0`, () => {
    const copy = scaled(w, rowScale, colScale);
    const r = lowRankDelta(stored(w, 'BF16'), stored(copy, 'BF16'), { gauge: both });
    assert.equal(r.rank, 0);
  });
}

test('f32 parent, bf16 child: rounding the parent onto the child grid makes untouched entries equal', () => {
  const rng = new Rng(9);
  const w = Float64Array.from(rng.gaussianMatrix(M, N, 0.02).data);
  assert.equal(coarserGrid('F32', 'BF16'), 'BF16');
  assert.equal(coarserGrid('BF16', 'F16'), null);
  const parent = stored(w, 'F32', 'BF16');
  const child = stored(Float64Array.from(stored(w, 'F32', 'BF16').values), 'BF16');
  const rounded = lowRankDelta(parent, child, { gauge: { rows: false, cols: false } });
  assert.equal(rounded.rank, 0);
  assert.equal(rounded.spectrum.length, 0, 'bit-identical after rounding: no spectrum at all');
  // Unrounded, the difference is the child's bf16 rounding: noise the threshold accounts for.
  const unrounded = lowRankDelta(stored(w, 'F32'), child, { gauge: { rows: false, cols: false } });
  assert.equal(unrounded.rank, 0);
  assert.ok(unrounded.spectrum.length > 0 && unrounded.spectrum[0]! <= 1);
});

test('past the exact-SVD size (randomized SVD, CholeskyQR2 bases): rank through rescaled heads, rescaled columns alone, dense update', () => {
  const rows = 192, cols = 320, rank = 6, head = 32;
  const rng = new Rng(31);
  const w = Float64Array.from(rng.gaussianMatrix(rows, cols, 0.02).data);
  const bf16 = (v: Float64Array) => stored(v, 'BF16', 'BF16', rows, cols); // rounded onto the bf16 grid
  const base = bf16(w);
  // V/O-like: an update plus one scale per head of rows, and an independent scale per column.
  const headScale = Float64Array.from({ length: rows / head }, () => Math.exp(0.7 * rng.gaussian()));
  const rowScale = Float64Array.from({ length: rows }, (_, i) => headScale[Math.floor(i / head)]!);
  const colScale = Float64Array.from({ length: cols }, () => Math.exp(0.5 * rng.gaussian()));
  const update = lowRank(rng, rank, (0.02 * 0.1) / Math.sqrt(rank), rows, cols);
  const child = bf16(scaled(Float64Array.from(w, (v, p) => v + update[p]!), rowScale, colScale, cols));
  const fit = lowRankDelta(base, child, { gauge: both });
  assert.equal(fit.rank, rank);
  assert.ok(fit.spectrum[rank - 1]! > 1 && fit.spectrum[rank]! <= 1);
  // The fitted scales undo the obfuscation up to the gauge's own freedom (a t, b / t).
  const t = fit.rowScale[0]! * rowScale[0]!;
  for (let i = 0; i < rows; i += 17) assert.ok(Math.abs(fit.rowScale[i]! * rowScale[i]! / t - 1) < 1e-2, `row ${i}`);
  for (let j = 0; j < cols; j += 23) assert.ok(Math.abs(fit.colScale[j]! * colScale[j]! * t - 1) < 1e-2, `column ${j}`);
  // O-like: columns rescaled only, columns free: nothing but storage noise.
  const ones = new Float64Array(rows).fill(1);
  const columnsOnly = lowRankDelta(base, bf16(scaled(w, ones, colScale, cols)), { gauge: { rows: false, cols: true } });
  assert.equal(columnsOnly.rank, 0);
  // A full fine-tune (dense 2% update) is not low-rank in any gauge.
  const dense = lowRankDelta(base, bf16(Float64Array.from(w, (v) => v + 0.02 * 0.02 * rng.gaussian())), { gauge: both });
  assert.equal(dense.lowRank, false);
  assert.ok(dense.rank > 96 / 2, `dense update counted ${dense.rank} values above the edge`);
});
