/**
 * LayerDirection (src/verify/layer.ts) lets go of an unchanged module's matrices when the MLP job
 * reuses their memory, keeping line sums: the norm growth it then reads must be the one read with
 * the matrices, in every reading (stored, norm-folded readers, paired lines' products), and must
 * not change when the detached arrays are overwritten.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../src/linalg/rng.js';
import { lowRankDelta } from '../src/noise/delta-rank.js';
import { noisyFromValues, type NoisyMatrix } from '../src/noise/noisy-matrix.js';
import { LayerDirection } from '../src/verify/layer.js';

const LAYOUT = { heads: 4, kvHeads: 2, headDim: 8 };
const HIDDEN = 32, FF = 96;

function noisy(rows: number, cols: number, values: Float64Array): NoisyMatrix {
  return noisyFromValues(rows, cols, values, Float32Array.from(values, (v) => (Math.abs(v) * 2 ** -8) ** 2 / 12));
}

/**
 * gate, up (readers of the post-norm gain, folded) and down of a base and a candidate: gate and up
 * exactly the base's but for `scale` (an obfuscator's up/down scaling: up rows times f, down
 * columns divided by f; a norm scaling: gain times s, the readers' columns divided by s), down
 * changed densely.
 */
function mlp(seed: number, obfuscated: boolean) {
  const rng = new Rng(seed);
  const gaussian = (n: number, sd: number) => Float64Array.from({ length: n }, () => sd * rng.gaussian());
  const gain = Float64Array.from({ length: HIDDEN }, () => 1 + 0.1 * rng.gaussian());
  const f = Float64Array.from({ length: FF }, () => (obfuscated ? Math.exp(0.5 * rng.gaussian()) : 1));
  const s = Float64Array.from({ length: HIDDEN }, () => (obfuscated ? Math.exp(0.5 * rng.gaussian()) : 1));
  const gate = gaussian(FF * HIDDEN, 0.05), up = gaussian(FF * HIDDEN, 0.05), down = gaussian(HIDDEN * FF, 0.05);
  const denseChange = gaussian(HIDDEN * FF, 0.01);
  // Folded readers: W diag(gain); the candidate's stored columns are divided by s and its gain times s, so folded they are the base's.
  const folded = (w: Float64Array, rowScale: (i: number) => number) => w.map((v, p) => v * rowScale(Math.floor(p / HIDDEN)));
  const base = { gate: folded(gate, () => 1), up: folded(up, () => 1), down };
  const candidate = {
    gate: folded(gate, () => 1),
    up: folded(up, (i) => f[i]!),
    down: down.map((v, p) => (v + denseChange[p]!) / f[p % FF]!),
  };
  const gains: [Float64Array, Float64Array] = [gain, gain.map((g, j) => g * s[j]!)];
  return { base, candidate, gains };
}

function growth(seed: number, obfuscated: boolean, detach: boolean): { num: number; den: number } {
  const { base, candidate, gains } = mlp(seed, obfuscated);
  const direction = new LayerDirection(LAYOUT);
  const arrays: Float64Array[] = [];
  for (const [role, rows, cols, norms] of [['gate', FF, HIDDEN, gains], ['up', FF, HIDDEN, gains], ['down', HIDDEN, FF, null]] as const) {
    const x = noisy(rows, cols, base[role]), y = noisy(rows, cols, candidate[role]);
    const fit = lowRankDelta(x, y, { gauge: { rows: role === 'up', cols: true } });
    direction.addModule(role, x, y, fit, norms);
    if (detach && fit.rank === 0) {
      direction.detach(role);
      arrays.push(x.values, y.values);
    }
  }
  // What the MLP job does with a detached module's memory: reuse it.
  for (const a of arrays) a.fill(7);
  return { num: direction.growthNum, den: direction.growthDen };
}

test('LayerDirection: an unchanged module detached reads the same growth as kept whole, plain and obfuscated', () => {
  for (const obfuscated of [false, true]) {
    for (const seed of [3, 4]) {
      const whole = growth(seed, obfuscated, false), detached = growth(seed, obfuscated, true);
      assert.ok(whole.den > 0, 'the dense change of down is read');
      assert.ok(Math.abs(detached.num - whole.num) <= 1e-9 * whole.den, `numerator ${detached.num} vs ${whole.num} (obfuscated ${obfuscated})`);
      assert.ok(Math.abs(detached.den / whole.den - 1) < 1e-9, `denominator ${detached.den} vs ${whole.den} (obfuscated ${obfuscated})`);
    }
  }
});
