import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromArray, zeros } from '../src/linalg/matrix.js';
import {
  correlationLog10PValue, log10NormalUpperTail, numericalRank, pairEvidenceFromWeights, summedKurtosis,
} from './helpers/tree-evidence.js';
import { relatednessThreshold } from '../src/tree/forest.js';
import { gaussian, seededRandom, syntheticFamily } from './helpers/tree-synthetic.js';

const close = (actual: number, expected: number, rel: number) =>
  assert.ok(Math.abs(actual - expected) <= rel * Math.abs(expected), `${actual} vs ${expected}`);

test('log10 of the normal upper tail, including far beyond double range', () => {
  close(log10NormalUpperTail(0), Math.log10(0.5), 1e-6);
  close(log10NormalUpperTail(1.959963984540054), Math.log10(0.025), 1e-6);
  close(log10NormalUpperTail(-1.959963984540054), Math.log10(0.975), 1e-6);
  close(log10NormalUpperTail(10), Math.log10(7.619853024160527e-24), 1e-6);
  // Mills ratio asymptotics: ln P = -z^2/2 - ln z - ln(2 pi)/2 + ln(1 - 1/z^2 + 3/z^4).
  const z = 40;
  const lnP = (-z * z) / 2 - Math.log(z) - Math.log(2 * Math.PI) / 2 + Math.log(1 - 1 / z ** 2 + 3 / z ** 4);
  close(log10NormalUpperTail(z), lnP / Math.LN10, 1e-7);
});

test('numerical rank of exact low-rank, zero and full matrices', () => {
  const random = seededRandom(3);
  const b = Array.from({ length: 20 * 3 }, () => gaussian(random));
  const a = Array.from({ length: 3 * 30 }, () => gaussian(random));
  const product = zeros(20, 30);
  for (let i = 0; i < 20; i++) for (let k = 0; k < 3; k++) for (let j = 0; j < 30; j++) product.data[i * 30 + j] += b[i * 3 + k]! * a[k * 30 + j]!;
  assert.equal(numericalRank(product), 3);
  assert.equal(numericalRank(zeros(4, 6)), 0);
  assert.equal(numericalRank(fromArray(3, 3, [1, 0, 0, 0, 1, 0, 0, 0, 1])), 3);
  assert.equal(numericalRank(fromArray(2, 3, [1, 2, 3, 2, 4, 6])), 1);
});

test('summed kurtosis is the biased Fisher excess kurtosis per matrix, summed', () => {
  // [1, 2, 3, 4]: m2 = 1.25, m4 = 2.5625, excess = 2.5625 / 1.5625 - 3 = -1.36.
  const m = fromArray(2, 2, [1, 2, 3, 4]);
  close(summedKurtosis([m]), -1.36, 1e-12);
  close(summedKurtosis([m, fromArray(1, 4, [4, 3, 2, 1])]), -2.72, 1e-12);
});

test('pair evidence from weights: LoRA rank, modules, rank sum, relatedness', () => {
  const shape = { layers: 2, modules: ['q_proj', 'v_proj', 'o_proj'], size: 32 };
  const models = syntheticFamily(
    [
      { name: 'root', kind: 'root' },
      { name: 'lora', kind: 'lora', parent: 'root', rank: 3, modules: ['q_proj', 'o_proj'], scale: 0.2 },
      { name: 'full', kind: 'full', parent: 'root', scale: 0.2 },
      { name: 'other', kind: 'root' },
    ],
    shape,
    5,
  );
  const get = (name: string) => models.get(name)!;
  const lora = pairEvidenceFromWeights(0, 1, get('root'), get('lora'));
  assert.deepEqual(lora.lowRank, { rank: 3, modules: ['o_proj', 'q_proj'], rankSum: 12 });
  assert.ok(lora.log10PValue < -50);
  assert.ok(lora.kurtosisMargin! > 0, 'adding a LoRA delta lowered kurtosis');
  const full = pairEvidenceFromWeights(0, 2, get('root'), get('full'));
  assert.equal(full.lowRank, null);
  // RMS of the delta is 0.2 x the root's RMS (Laplace(0, 1): sqrt(2)), up to sampling.
  close(full.distance, 0.2 * Math.SQRT2, 0.1);
  const unrelated = pairEvidenceFromWeights(0, 3, get('root'), get('other'));
  assert.ok(unrelated.log10PValue > relatednessThreshold(100), `${unrelated.log10PValue}`);
  assert.equal(unrelated.lowRank, null);
  const copy = pairEvidenceFromWeights(0, 0, get('root'), get('root'));
  assert.deepEqual([copy.distance, copy.lowRank], [0, { rank: 0, modules: [], rankSum: 0 }]);
  assert.ok(correlationLog10PValue(get('root'), get('root')) < -1000);
});
