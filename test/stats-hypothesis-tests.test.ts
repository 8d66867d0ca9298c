import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  averageRanks, chiSquareLogSf, chiSquareSf, erf, erfc, fisherCombine, fisherCombineLogP, logErfc, logGamma,
  normalCdf, normalLogSf, normalQuantile, normalSf, pearson, spearman,
} from '../src/stats/hypothesis-tests.js';

function close(actual: number, expected: number, relative: number, label: string): void {
  assert.ok(Math.abs(actual - expected) <= relative * Math.abs(expected), `${label}: ${actual} vs ${expected}`);
}

test('pearson and spearman on hand-computed cases, with ties averaged', () => {
  close(pearson([1, 2, 3, 4], [2, 4, 6, 8]), 1, 1e-15, 'linear');
  close(pearson([1, 2, 3], [3, 2, 1]), -1, 1e-15, 'reversed');
  // x = (1,2,3,4), y = (1,3,2,4): sxy = 4, sxx = syy = 5.
  close(pearson([1, 2, 3, 4], [1, 3, 2, 4]), 0.8, 1e-15, 'hand');
  assert.ok(Number.isNaN(pearson([1, 1, 1], [1, 2, 3])));
  assert.deepEqual([...averageRanks([10, 20, 20, 5, 20])], [2, 4, 4, 1, 4]);
  // Monotone but non-linear: Spearman 1, Pearson below 1.
  close(spearman([1, 2, 3, 4, 5], [1, 8, 27, 64, 125]), 1, 1e-15, 'monotone');
  // Ranks x = (1, 2.5, 2.5, 4), y = (1,3,2,4): centred (−1.5,0,0,1.5)·(−1.5,.5,−.5,1.5) = 4.5, |x|² = 4.5, |y|² = 5.
  close(spearman([1, 2, 2, 3], [1, 3, 2, 4]), 4.5 / Math.sqrt(4.5 * 5), 1e-15, 'ties');
  assert.throws(() => pearson([1, 2], [1]), RangeError);
});

test('erf/erfc and the normal tail against tabulated values', () => {
  close(erfc(1), 0.157299207050285130658, 1e-14, 'erfc(1)');
  close(erfc(0.5), 0.479500122186953462317, 1e-14, 'erfc(0.5)');
  close(erfc(3), 2.20904969985854413727e-5, 1e-13, 'erfc(3)');
  close(erfc(-1), 1.842700792949714869342, 1e-15, 'erfc(-1)');
  close(erf(0.1), 0.112462916018284892203, 1e-15, 'erf(0.1)');
  close(normalSf(10), 7.61985302416052606597e-24, 1e-13, 'sf(10)');
  close(normalSf(5), 2.86651571879193911670e-7, 1e-13, 'sf(5)');
  close(normalSf(20), 2.75362411860623369540e-89, 1e-13, 'sf(20)');
  close(normalCdf(-1.96), 0.0249978951482204355, 1e-13, 'cdf(-1.96)');
  close(normalCdf(0), 0.5, 1e-16, 'cdf(0)');
  // Far beyond underflow: log sf(z) = −z²/2 − log(z√(2π)) − 1/z² + ... ; at z = 100 that is −5005.524208694...
  close(normalLogSf(100), -5005.52420869400, 1e-12, 'log sf(100)');
  close(logErfc(30), Math.log(erfc(30)), 1e-13, 'logErfc vs erfc');
  close(normalLogSf(3), Math.log(normalSf(3)), 1e-14, 'log sf(3)');
});

test('normal quantiles against tabulated values, in both tails', () => {
  close(normalQuantile(0.975), 1.959963984540054, 1e-14, 'q(0.975)');
  close(normalQuantile(0.995), 2.575829303548901, 1e-14, 'q(0.995)');
  close(normalQuantile(0.05), -1.644853626951472, 1e-14, 'q(0.05)');
  close(normalQuantile(1e-10), -6.361340902404056, 1e-13, 'q(1e-10)');
  assert.ok(Math.abs(normalQuantile(0.5)) < 1e-15);
  // Round trip deep in the tail.
  close(normalCdf(normalQuantile(1e-200)), 1e-200, 1e-12, 'round trip 1e-200');
});

test('chi-square survival: even closed form, odd via incomplete gamma', () => {
  // 2 dof: e^{−x/2}; 4 dof: e^{−x/2}(1 + x/2); 1 dof: erfc(√(x/2)); 3 dof: erfc(√(x/2)) + √(2x/π)e^{−x/2}.
  close(chiSquareSf(3, 2), Math.exp(-1.5), 1e-15, '2 dof');
  close(chiSquareSf(10, 4), Math.exp(-5) * 6, 1e-14, '4 dof');
  close(chiSquareSf(3.841458820694124, 1), 0.05, 1e-12, '1 dof critical');
  close(chiSquareSf(10, 3), erfc(Math.sqrt(5)) + Math.sqrt(20 / Math.PI) * Math.exp(-5), 1e-12, '3 dof');
  close(chiSquareSf(0.5, 3), erfc(0.5) + Math.sqrt(1 / Math.PI) * Math.exp(-0.25), 1e-12, '3 dof series side');
  close(chiSquareSf(5, 2.5), Math.exp(chiSquareLogSf(5, 2.5)), 1e-15, 'fractional dof');
  // Deep tail stays finite in log space: 2 dof → −x/2 exactly.
  close(chiSquareLogSf(5000, 2), -2500, 1e-15, 'log tail');
  assert.equal(chiSquareSf(0, 3), 1);
  close(logGamma(0.5), 0.5 * Math.log(Math.PI), 1e-14, 'logGamma(1/2)');
  close(logGamma(10), Math.log(362880), 1e-14, 'logGamma(10)');
});

test('Fisher combination, including p-values that would underflow', () => {
  // Two p-values: X = −2 ln(p1 p2), 4 dof: P = p1p2·(1 − ln(p1p2)).
  const r = fisherCombine([0.1, 0.2]);
  close(r.statistic, -2 * Math.log(0.02), 1e-15, 'statistic');
  assert.equal(r.dof, 4);
  close(r.p, 0.02 * (1 - Math.log(0.02)), 1e-14, 'combined');
  close(r.log10P, Math.log10(0.02 * (1 - Math.log(0.02))), 1e-14, 'log10');
  // Single p-value: Fisher returns it unchanged.
  close(fisherCombine([0.3]).p, 0.3, 1e-14, 'identity');
  // 3 × 1e-300: X = 6·ln(1e300); P = e^{−X/2}·(1 + X/2 + X²/8), far below double range.
  const tiny = fisherCombine([1e-300, 1e-300, 1e-300]);
  const half = 3 * 300 * Math.LN10;
  assert.equal(tiny.p, 0);
  close(tiny.log10P, (-half + Math.log(1 + half + half * half / 2)) / Math.LN10, 1e-13, 'underflow-safe');
  close(fisherCombineLogP([Math.log(0.1), Math.log(0.2)]).p, r.p, 1e-14, 'log input');
  assert.throws(() => fisherCombine([0]), RangeError);
  assert.throws(() => fisherCombine([]), RangeError);
});
