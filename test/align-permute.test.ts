/** In-place row and column permutations (with signs) of a noisy matrix, against a direct copy. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { noisyFromValues, permuteColumnsInPlace, permuteRowsInPlace } from '../src/noise/noisy-matrix.js';
import { Rng } from '../src/linalg/rng.js';

function random(rng: Rng, rows: number, cols: number) {
  const values = Float64Array.from(rng.gaussianMatrix(rows, cols).data);
  return noisyFromValues(rows, cols, values, Float32Array.from(values, (v) => v * v));
}

test('permuteRowsInPlace: row i becomes sign[i] times row order[i], variance moved with it', () => {
  const rng = new Rng(4);
  for (const [rows, cols] of [[1, 3], [7, 5], [64, 9]] as const) {
    const m = random(rng, rows, cols);
    const order = rng.permutation(rows);
    const sign = Float64Array.from({ length: rows }, () => (rng.uniform() < 0.5 ? -1 : 1));
    const before = { values: m.values.slice(), variance: m.variance.slice() };
    permuteRowsInPlace(m, order, sign);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        assert.equal(m.values[i * cols + j], sign[i]! * before.values[order[i]! * cols + j]!);
        assert.equal(m.variance[i * cols + j], before.variance[order[i]! * cols + j]);
      }
    }
  }
});

test('permuteColumnsInPlace: column j becomes sign_j times column order[j], variance moved with it', () => {
  const rng = new Rng(5);
  const m = random(rng, 6, 33);
  const before = { values: m.values.slice(), variance: m.variance.slice() };
  const order = rng.permutation(33);
  const sign = Float64Array.from({ length: 33 }, () => (rng.uniform() < 0.5 ? -1 : 1));
  permuteColumnsInPlace(m, order, sign);
  for (let i = 0; i < 6; i++) {
    for (let j = 0; j < 33; j++) {
      assert.equal(m.values[i * 33 + j], sign[j]! * before.values[i * 33 + order[j]!]!);
      assert.equal(m.variance[i * 33 + j], before.variance[i * 33 + order[j]!]);
    }
  }
});
