/** The residual sample wide layers are analysed on (residual-sample.ts): which dimensions each model is read at. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RESIDUAL_RUN, residualSample, sampledResidual, TOKEN_RUN, tokenSample } from '../src/align/residual-sample.js';
import type { ResidualAlignment } from '../src/align/llama-block.js';
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

/** Asserts `sample` is `runs` full runs of `run` consecutive run-aligned indices spread over 0..total-1. */
function assertRuns(sample: Int32Array, total: number, run: number): void {
  const perSlot = new Map<number, number>();
  for (const t of sample) perSlot.set(Math.floor(t / run), (perSlot.get(Math.floor(t / run)) ?? 0) + 1);
  assert.equal(perSlot.size, sample.length / run);
  assert.ok([...perSlot.values()].every((n) => n === run));
  const slots = [...perSlot.keys()].sort((a, b) => a - b);
  assert.ok(slots[0]! * run < total / 4 && slots[slots.length - 1]! * run > (3 * total) / 4, `runs from ${slots[0]! * run} to ${slots[slots.length - 1]! * run}`);
  assert.ok(sample.every((t, i) => t < total && (i === 0 || sample[i - 1]! < t)));
}

test('tokenSample and residualSample: runs of consecutive rows (one read each), spread over the whole range', () => {
  assertRuns(tokenSample(32000, 1)!, 32000, TOKEN_RUN);
  assert.notDeepEqual([...tokenSample(32000, 2)!], [...tokenSample(32000, 1)!]);
  assertRuns(residualSample(4096, 1)!, 4096, RESIDUAL_RUN);
  // A range that is not a multiple of the run, and one too tight for runs: still distinct, inside.
  for (const [total, count] of [[5000, 1024], [4099, 4096]] as const) {
    const odd = tokenSample(total, 3, count)!;
    assert.equal(new Set(odd).size, count);
    assert.ok(odd.every((t) => t < total));
  }
  const tight = residualSample(255, 1, 250)!;
  assert.equal(new Set(tight).size, 250);
  assert.ok(tight.every((t) => t < 255));
});
