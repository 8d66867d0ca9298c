/** The residual sample wide layers are analysed on (residual-sample.ts): which dimensions each model is read at. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { residualSample, sampledResidual, tokenSample } from '../src/align/residual-sample.js';
import type { ResidualAlignment } from '../src/align/llama.js';
import { Rng } from '../src/linalg/rng.js';

test('residualSample: width distinct ascending dimensions, the same for a seed, none when the model is narrow', () => {
  const sample = residualSample(4096, 1)!;
  assert.equal(sample.length, 256);
  for (let t = 1; t < sample.length; t++) assert.ok(sample[t - 1]! < sample[t]!, 'ascending and distinct');
  assert.ok(sample[0]! >= 0 && sample[sample.length - 1]! < 4096);
  assert.deepEqual(residualSample(4096, 1), sample);
  assert.notDeepEqual(residualSample(4096, 2), sample, 'another seed samples other dimensions');
  assert.equal(residualSample(256, 1), null);
  assert.equal(residualSample(64, 1, 32)!.length, 32);
  // Spread over the residual, not clustered: every quarter holds about a quarter of the sample.
  for (let q = 0; q < 4; q++) {
    const inQuarter = sample.filter((d) => d >= q * 1024 && d < (q + 1) * 1024).length;
    assert.ok(inQuarter > 40 && inQuarter < 90, `quarter ${q}: ${inQuarter}`);
  }
});

test('sampledResidual: the candidate is read at the stored dimensions playing the sampled ones; only the signs remain to apply', () => {
  const n = 10;
  const order = new Rng(3).permutation(n);
  const sign = Float64Array.from({ length: n }, (_, i) => (i % 3 === 0 ? -1 : 1));
  const residual: ResidualAlignment = { order, sign, quality: 0.9, moved: n, flipped: 4 };
  const sample = Int32Array.from([1, 3, 6, 9]);
  const s = sampledResidual(sample, residual);
  assert.deepEqual([...s.base], [1, 3, 6, 9]);
  assert.deepEqual([...s.candidate], [order[1], order[3], order[6], order[9]]);
  assert.deepEqual([...s.alignment.order], [0, 1, 2, 3]);
  assert.deepEqual([...s.alignment.sign], [1, -1, -1, -1]);
  assert.equal(s.alignment.flipped, 3);
  assert.equal(s.alignment.quality, 0.9);
});

test('tokenSample: a fixed number of distinct token rows when the vocabulary is larger', () => {
  const tokens = tokenSample(32000, 1)!;
  assert.equal(tokens.length, 4096);
  assert.equal(new Set(tokens).size, 4096);
  assert.ok(tokens.every((t, i) => t >= 0 && t < 32000 && (i === 0 || tokens[i - 1]! < t)));
  assert.equal(tokenSample(4096, 1), null);
});
