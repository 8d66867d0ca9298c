/**
 * Known answers for the residual-side sketch of wide layers: the sketch is the aligned, folded
 * matrix times the explicit CountSketch matrix; an exact permuted, sign-flipped copy sketches to
 * the same values bit for bit; rounding variances sum per bucket; line sums are the power sums of
 * the aligned values; bad values name the tensor.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Weight } from '../src/arch/types.js';
import type { ResidualAlignment } from '../src/align/llama.js';
import { noisyFromWeight } from '../src/align/noisy.js';
import {
  permuteLines, residualPlacement, residualSketchMap, rowsOfStored, rowsOfWeight, scaledPowerSums, sketchResidualSide, type WeightRows,
} from '../src/align/residual-sketch.js';
import { roundToDtype } from '../src/io/dtypes.js';
import { BadInputError } from '../src/io/errors.js';
import { Rng } from '../src/linalg/rng.js';

const HIDDEN = 96, WIDTH = 16, LINES = 7;

function bf16Matrix(rows: number, cols: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return roundToDtype(Float32Array.from({ length: rows * cols }, () => 0.05 * rng.gaussian()), 'BF16');
}

function decoded(data: Float32Array, rows: number, cols: number, dtype = 'BF16'): Weight {
  return { rows, cols, data, dtype, tensor: 'model.layers.0.mlp.up_proj.weight', file: 'model.safetensors' };
}

function weight(data: Float32Array, rows: number, cols: number, dtype = 'BF16'): WeightRows {
  return rowsOfWeight(decoded(data, rows, cols, dtype));
}

/** The bf16 bytes of values already on the bf16 grid (the top half of each float32). */
function storedBf16(data: Float32Array, rows: number, cols: number): WeightRows {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const halves = Uint16Array.from(bits, (b) => b >>> 16);
  return rowsOfStored({ rows, cols, dtype: 'BF16', bytes: new Uint8Array(halves.buffer), tensor: 'model.layers.0.mlp.down_proj.weight', file: 'model.safetensors' });
}

const map = residualSketchMap(HIDDEN, WIDTH)!;
const gains = roundToDtype(Float32Array.from({ length: HIDDEN }, (_, j) => 0.5 + (j % 5) / 4), 'BF16');
const gain = Float64Array.from(gains);

test('no sketch when the residual is no wider than the width', () => {
  assert.equal(residualSketchMap(WIDTH, WIDTH), null);
  assert.ok(residualSketchMap(WIDTH + 1, WIDTH));
});

test('a reader sketch is (W diag(gain)) S with S the CountSketch matrix; variances and line sums follow', () => {
  const w = bf16Matrix(LINES, HIDDEN, 1);
  const out = sketchResidualSide(weight(w, LINES, HIDDEN), 'cols', residualPlacement(map, null, gain), null);
  assert.equal(out.matrix.rows, LINES);
  assert.equal(out.matrix.cols, WIDTH);
  const exact = noisyFromWeight(decoded(w, LINES, HIDDEN));
  for (let i = 0; i < LINES; i++) {
    const expected = new Float64Array(WIDTH), variance = new Float64Array(WIDTH);
    let s2 = 0, s4 = 0;
    for (let j = 0; j < HIDDEN; j++) {
      const folded = w[i * HIDDEN + j]! * gain[j]!;
      expected[map.bucket[j]!]! += map.sign[j]! * folded;
      variance[map.bucket[j]!]! += gain[j]! * gain[j]! * exact.variance[i * HIDDEN + j]!;
      s2 += folded ** 2;
      s4 += folded ** 4;
    }
    for (let b = 0; b < WIDTH; b++) {
      assert.ok(Math.abs(out.matrix.values[i * WIDTH + b]! - expected[b]!) < 1e-12, `value ${i},${b}`);
      assert.ok(Math.abs(out.matrix.variance[i * WIDTH + b]! / variance[b]! - 1) < 1e-5, `variance ${i},${b}`);
    }
    assert.ok(Math.abs(out.lines.sums[LINES + i]! - s2) < 1e-12 * s2 + 1e-18);
    assert.ok(Math.abs(out.lines.sums[3 * LINES + i]! - s4) < 1e-9 * s4 + 1e-24);
  }
  // Moments in a gauge: line t scaled by a_t gives sum_t a_t^2 s2_t.
  const scale = Float64Array.from({ length: LINES }, (_, t) => 1 + t / 10);
  const scaled = scaledPowerSums(out.lines, scale);
  let direct = 0;
  for (let t = 0; t < LINES; t++) direct += scale[t]! ** 2 * out.lines.sums[LINES + t]!;
  assert.ok(Math.abs(scaled.s2 - direct) < 1e-12 * direct);
  assert.equal(scaled.n, LINES * HIDDEN);
});

/** A residual alignment whose order[i] is the stored index playing base dimension i, with signs. */
function alignmentFor(seed: number): ResidualAlignment {
  const rng = new Rng(seed);
  const order = Int32Array.from(rng.permutation(HIDDEN));
  const sign = Float64Array.from({ length: HIDDEN }, () => (rng.nextUint32() & 1 ? 1 : -1));
  return { order, sign, quality: 1, moved: HIDDEN, flipped: 0 };
}

test('a permuted, sign-flipped copy with its gains moved along sketches to the same values, bit for bit', () => {
  const alignment = alignmentFor(5);
  for (const side of ['cols', 'rows'] as const) {
    const [rows, cols] = side === 'cols' ? [LINES, HIDDEN] : [HIDDEN, LINES];
    const base = bf16Matrix(rows, cols, 2);
    // Stored copy: base dimension i lives at stored index order[i], negated where sign[i] < 0.
    const copy = new Float32Array(base.length);
    const copyGain = new Float64Array(HIDDEN);
    for (let i = 0; i < HIDDEN; i++) {
      const to = alignment.order[i]!, s = alignment.sign[i]!;
      copyGain[to] = gain[i]!;
      for (let t = 0; t < LINES; t++) {
        if (side === 'cols') copy[t * HIDDEN + to] = s * base[t * HIDDEN + i]!;
        else copy[to * LINES + t] = s * base[i * LINES + t]!;
      }
    }
    const folded = side === 'cols';
    const a = sketchResidualSide(weight(base, rows, cols), side, residualPlacement(map, null, folded ? gain : null), null);
    const b = sketchResidualSide(weight(copy, rows, cols), side, residualPlacement(map, alignment, folded ? copyGain : null), null);
    assert.deepEqual(b.matrix.values, a.matrix.values, `${side}: values`);
    for (let p = 0; p < a.matrix.variance.length; p++) assert.ok(Math.abs(b.matrix.variance[p]! - a.matrix.variance[p]!) <= 1e-6 * a.matrix.variance[p]!);
    for (let p = 0; p < a.lines.sums.length; p++) assert.ok(Math.abs(b.lines.sums[p]! - a.lines.sums[p]!) <= 1e-12 * Math.abs(a.lines.sums[p]!) + 1e-30);
  }
});

test('line sums move with the alignment of the whole side', () => {
  const w = bf16Matrix(LINES, HIDDEN, 3);
  const out = sketchResidualSide(weight(w, LINES, HIDDEN), 'cols', residualPlacement(map, null, null), null);
  const order = [3, 0, 6, 1, 5, 2, 4];
  const moved = permuteLines(out.lines, order);
  for (let p = 0; p < 4; p++) for (let t = 0; t < LINES; t++) assert.equal(moved.sums[p * LINES + t], out.lines.sums[p * LINES + order[t]!]);
});

test('a float32 weight rounded onto bf16 sketches as its rounded copy', () => {
  const rng = new Rng(4);
  const fine = Float32Array.from({ length: LINES * HIDDEN }, () => 0.05 * rng.gaussian());
  const place = residualPlacement(map, null, gain);
  const rounded = sketchResidualSide(weight(fine, LINES, HIDDEN, 'F32'), 'cols', place, 'BF16');
  const coarse = sketchResidualSide(weight(roundToDtype(fine, 'BF16'), LINES, HIDDEN), 'cols', place, null);
  assert.deepEqual(rounded.matrix.values, coarse.matrix.values);
  assert.deepEqual(rounded.matrix.variance, coarse.matrix.variance);
});

test('a NaN is a BadInputError naming the tensor; a size mismatch is refused', () => {
  const w = bf16Matrix(LINES, HIDDEN, 6);
  w[2 * HIDDEN + 9] = NaN;
  assert.throws(() => sketchResidualSide(weight(w, LINES, HIDDEN), 'cols', residualPlacement(map, null, null), null), (err: unknown) => {
    assert.ok(err instanceof BadInputError);
    assert.match(String(err.message), /up_proj/);
    assert.match(String(err.message), /element 201/);
    return true;
  });
  assert.throws(() => sketchResidualSide(weight(w, HIDDEN, LINES), 'cols', residualPlacement(map, null, null), null), RangeError);
});

test('stored bf16 bytes, decoded piece by piece, sketch as the decoded weight does (reader and writer)', () => {
  const w = bf16Matrix(HIDDEN, LINES * 40, 8);
  const writer = residualPlacement(map, null, null);
  assert.deepEqual(sketchResidualSide(storedBf16(w, HIDDEN, LINES * 40), 'rows', writer, null).matrix.values,
    sketchResidualSide(weight(w, HIDDEN, LINES * 40), 'rows', writer, null).matrix.values);
  const r = bf16Matrix(LINES * 40, HIDDEN, 9);
  const reader = residualPlacement(map, null, gain);
  const a = sketchResidualSide(storedBf16(r, LINES * 40, HIDDEN), 'cols', reader, null);
  const b = sketchResidualSide(weight(r, LINES * 40, HIDDEN), 'cols', reader, null);
  assert.deepEqual(a.matrix.values, b.matrix.values);
  assert.deepEqual(a.matrix.variance, b.matrix.variance);
  assert.deepEqual(a.lines.sums, b.lines.sums);
});
