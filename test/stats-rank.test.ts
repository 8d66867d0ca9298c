import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  TRACY_WIDOM_1_QUANTILES, estimateNoiseSigma, gavishDonohoLambda, gavishDonohoOmega, gavishDonohoThreshold,
  gavishDonohoThresholdKnownSigma, johnstoneScaling, marchenkoPasturCdf, marchenkoPasturEdge, marchenkoPasturMedian,
  tracyWidomSingularValueThreshold,
} from '../src/stats/rank.js';
import { Rng } from '../src/linalg/rng.js';
import { singularValues } from '../src/linalg/svd.js';
import { add } from '../src/linalg/ops.js';
import { withSpectrum } from './linalg-helpers.js';

test('Gavish–Donoho constants match the published values', () => {
  assert.ok(Math.abs(gavishDonohoLambda(1) - 4 / Math.sqrt(3)) < 1e-15);
  assert.ok(Math.abs(gavishDonohoOmega(1) - 2.858) < 5e-4, `omega(1) = ${gavishDonohoOmega(1)}`);
  // Their cubic fit 0.56β³ − 0.95β² + 1.82β + 1.43 is good to ~0.01 on (0, 1].
  for (const beta of [0.05, 0.1, 0.25, 0.5, 0.75, 0.9]) {
    const fit = 0.56 * beta ** 3 - 0.95 * beta ** 2 + 1.82 * beta + 1.43;
    assert.ok(Math.abs(gavishDonohoOmega(beta) - fit) < 0.01, `omega(${beta})`);
  }
  assert.ok(Math.abs(gavishDonohoThresholdKnownSigma(100, 100, 0.5) - (4 / Math.sqrt(3)) * 10 * 0.5) < 1e-12);
  assert.equal(marchenkoPasturEdge(100, 400, 2), 60);
});

test('Marchenko–Pastur median: closed form at β = 1 edges, and the Wishart sample median', () => {
  assert.equal(marchenkoPasturCdf(0, 1), 0);
  assert.equal(marchenkoPasturCdf(4, 1), 1);
  // β = 1 is the quarter-circle law for √x; its median is 0.6527... (Gavish–Donoho Table).
  assert.ok(Math.abs(marchenkoPasturMedian(1) - 0.6528) < 1e-4);
  assert.ok(Math.abs(marchenkoPasturCdf(marchenkoPasturMedian(0.3), 0.3) - 0.5) < 1e-12);
  // Empirical: squared singular values / n of a 300×900 Gaussian matrix follow MP(β = 1/3).
  const rng = new Rng(30);
  const m = 300, n = 900;
  const s = singularValues(rng.gaussianMatrix(m, n));
  const eig = [...s].map((x) => (x * x) / n).sort((a, b) => a - b);
  const sampleMedian = 0.5 * (eig[149]! + eig[150]!);
  assert.ok(Math.abs(sampleMedian - marchenkoPasturMedian(1 / 3)) < 0.01, `${sampleMedian}`);
  // Noise-only singular values sit just under the bulk edge.
  assert.ok(s[0]! < marchenkoPasturEdge(m, n, 1) * 1.02 && s[0]! > marchenkoPasturEdge(m, n, 1) * 0.95);
});

test('unknown-sigma threshold separates a planted rank from the noise', () => {
  const rng = new Rng(31);
  const m = 200, n = 120, sigma = 0.01;
  const planted = withSpectrum(rng, m, n, [5, 3, 2, 1, 0.8]);
  const y = add(planted, rng.gaussianMatrix(m, n, sigma));
  const s = singularValues(y);
  const tau = gavishDonohoThreshold(s, m, n);
  assert.equal([...s].filter((x) => x > tau).length, 5);
  assert.ok(Math.abs(estimateNoiseSigma(s, m, n) / sigma - 1) < 0.05);
  assert.ok(Math.abs(tau / gavishDonohoThresholdKnownSigma(m, n, sigma) - 1) < 0.05);
});

test('Johnstone centring/scaling and the Tracy–Widom threshold', () => {
  const { mu, sigma } = johnstoneScaling(101, 25);
  assert.equal(mu, 225);
  assert.ok(Math.abs(sigma - 15 * Math.cbrt(0.1 + 0.2)) < 1e-12);
  assert.deepEqual(TRACY_WIDOM_1_QUANTILES, { '0.95': 0.9793, '0.99': 2.0234, '0.999': 3.2722 });
  const t = tracyWidomSingularValueThreshold(25, 101, 2, TRACY_WIDOM_1_QUANTILES['0.99']);
  assert.ok(Math.abs(t - 2 * Math.sqrt(mu + 2.0234 * sigma)) < 1e-12);
  // Largest noise singular value exceeds the 0.95 threshold in roughly 5% of draws.
  const rng = new Rng(32);
  let exceed = 0;
  const trials = 200, rows = 60, cols = 30;
  const threshold = tracyWidomSingularValueThreshold(rows, cols, 1, TRACY_WIDOM_1_QUANTILES['0.95']);
  for (let i = 0; i < trials; i++) if (singularValues(rng.gaussianMatrix(rows, cols))[0]! > threshold) exceed++;
  assert.ok(exceed >= 2 && exceed <= 22, `exceedances ${exceed}/${trials}`);
});
