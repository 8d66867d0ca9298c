import { test } from 'node:test';
import assert from 'node:assert/strict';
import { noisyFromWeight } from '../src/noise/noisy-matrix.js';
import { bf16Table, roundToDtype, roundToDtypeInto, ulpOf, widenWithVariance, type FloatDType } from '../src/io/dtypes.js';
import { BadInputError } from '../src/io/errors.js';

/** ulp^2 / 12 on the grid, rounded to float32 as variances are stored; the definition, computed directly. */
const expectedVariance = (value: number, dtype: FloatDType) => Math.fround(ulpOf(value, dtype) ** 2 / 12);

/** Zero, subnormals and normals across the range, both signs (those past a grid's range are left out there). */
const ON_GRID = [0, -0, 1, -1, 1.5, 2 ** -126, -(2 ** -130), 2 ** -14, 2 ** -20, 3 * 2 ** 100, -(2 ** -3), 65504, 2 ** -24];

test('widenWithVariance: exact values and ulp^2/12 per element on each grid, at an offset', () => {
  for (const dtype of ['F32', 'BF16', 'F16'] as const) {
    const src = roundToDtype(Float32Array.from(ON_GRID), dtype).filter(Number.isFinite);
    const values = new Float64Array(src.length + 3).fill(7);
    const variance = new Float32Array(src.length + 3).fill(7);
    assert.equal(widenWithVariance(src, values, variance, 2, dtype), -1);
    assert.deepEqual([values[0], values[1], values[values.length - 1]], [7, 7, 7], 'nothing written outside');
    for (let i = 0; i < src.length; i++) {
      assert.ok(Object.is(values[2 + i], src[i]), `${dtype} value ${i}`);
      assert.equal(variance[2 + i], expectedVariance(src[i]!, dtype), `${dtype} variance of ${src[i]}`);
    }
  }
  // bf16 ulp of 1 is 2^-7: variance 2^-14 / 12.
  const variance = new Float32Array(1);
  widenWithVariance(new Float32Array([1]), new Float64Array(1), variance, 0, 'BF16');
  assert.equal(variance[0], Math.fround(2 ** -14 / 12));
});

test('widenWithVariance: no grid gives zero variance; first NaN or infinity index is returned', () => {
  const variance = new Float32Array(3).fill(1);
  assert.equal(widenWithVariance(new Float32Array([1, 2, 3]), new Float64Array(3), variance, 0, null), -1);
  assert.deepEqual([...variance], [0, 0, 0]);
  for (const bad of [NaN, Infinity, -Infinity]) {
    const src = new Float32Array(1000).fill(0.5);
    src[617] = bad;
    src[900] = NaN;
    assert.equal(widenWithVariance(src, new Float64Array(1000), new Float32Array(1000), 0, 'BF16'), 617, String(bad));
  }
  assert.throws(() => widenWithVariance(new Float32Array(4), new Float64Array(4), new Float32Array(4), 1, 'F32'), RangeError);
});

test('roundToDtypeInto in place equals roundToDtype; lengths must match', () => {
  const values = new Float32Array(300).map((_, i) => Math.sin(i) * 3 ** (i % 20 - 10));
  for (const dtype of ['BF16', 'F16', 'F32'] as const) {
    const expected = roundToDtype(values, dtype);
    const inPlace = values.slice();
    assert.equal(roundToDtypeInto(inPlace, dtype, inPlace), inPlace);
    assert.deepEqual(inPlace, expected, dtype);
  }
  assert.throws(() => roundToDtypeInto(values, 'BF16', new Float32Array(3)), RangeError);
});

test('noisyFromWeight rounding f32 onto bf16 across rounding blocks: values and variance as rounding then widening', () => {
  const n = 2 * 4096 + 3;
  const data = new Float32Array(n).map((_, i) => Math.cos(i * 0.37) * 2 ** ((i % 9) - 6));
  const noisy = noisyFromWeight({ rows: 1, cols: n, data, dtype: 'F32', tensor: 't', file: 'f' }, 'BF16');
  const rounded = roundToDtype(data, 'BF16');
  const bf16 = new Set(bf16Table());
  for (let i = 0; i < n; i++) {
    assert.ok(Object.is(noisy.values[i], rounded[i]) && bf16.has(rounded[i]!), `value ${i}`);
    assert.equal(noisy.variance[i], expectedVariance(rounded[i]!, 'BF16'), `variance ${i}`);
  }
  // Without rounding the stored grid's variance is used and the values are untouched.
  const plain = noisyFromWeight({ rows: 1, cols: n, data, dtype: 'F32', tensor: 't', file: 'f' });
  assert.deepEqual(plain.values, Float64Array.from(data));
  assert.equal(plain.variance[5], expectedVariance(data[5]!, 'F32'));
});

test('noisyFromWeight: a NaN, or an overflow made by rounding, is an error naming file, tensor and element', () => {
  const data = new Float32Array(5000).fill(0.25);
  data[4500] = NaN;
  const weight = { rows: 50, cols: 100, data, dtype: 'F32', tensor: 'layers.3.mlp.up', file: 'm.safetensors' };
  for (const roundTo of [null, 'BF16'] as const) {
    assert.throws(() => noisyFromWeight(weight, roundTo), (err: unknown) => err instanceof BadInputError
      && /non-finite weight NaN.* at element 4500 \(file m\.safetensors, tensor layers\.3\.mlp\.up\)/.test(err.message));
  }
  const huge = new Float32Array([1, 3.4e38]); // finite in f32, past the largest bf16
  assert.throws(() => noisyFromWeight({ ...weight, rows: 1, cols: 2, data: huge }, 'BF16'),
    /non-finite weight Infinity after rounding to BF16 at element 1/);
});
