/**
 * The rank of a delta against a Q4_K-stored candidate (a GGUF of a fine-tune: every module differs
 * from the bf16 base by its 4-bit rounding, with the reader's per-element variances): the rounding
 * alone is the floor (rank 0, in every gauge, with its spectrum reported under the edge); a rank-1
 * change a little above the edge is seen in every gauge; a rescaled (obfuscated) but otherwise
 * unchanged module is the floor once the gauge is fitted. Tall and wide shapes, each through the
 * exact Gram route (min side <= 128) and the leading-values Gram route (128 < min side <= 256), so
 * the singular vectors a gauge fit reads are there on both sides of the Gram.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lowRankDelta, type GaugeFreedom } from '../src/noise/delta-rank.js';
import { noisyFromWeight, type NoisyMatrix } from '../src/noise/noisy-matrix.js';
import { roundToDtype } from '../src/io/dtypes.js';
import { dequantizeBlocks } from '../src/io/gguf-quants.js';
import { Rng } from '../src/linalg/rng.js';
import { encodeTensor } from './helpers/gguf-writer.js';

const SHAPES: ReadonlyArray<readonly [number, number]> = [[512, 96], [96, 512], [512, 160], [160, 512]];
const GAUGES: readonly GaugeFreedom[] = [
  { rows: false, cols: false }, { rows: true, cols: false }, { rows: false, cols: true }, { rows: true, cols: true },
];

function bf16(values: Float64Array, rows: number, cols: number): NoisyMatrix {
  return noisyFromWeight({ rows, cols, data: roundToDtype(Float32Array.from(values), 'BF16'), dtype: 'BF16', tensor: 'base', file: 'f' });
}

/** Values stored as Q4_K and read back with their rounding variances, as the GGUF reader gives them. */
function q4k(values: Float64Array, rows: number, cols: number): NoisyMatrix {
  const data = new Float32Array(values.length), variance = new Float32Array(values.length);
  dequantizeBlocks('Q4_K', encodeTensor('Q4_K', values), 0, values.length / 256, data, 0, variance);
  return noisyFromWeight({ rows, cols, data, variance, dtype: 'Q4_K', tensor: 'candidate', file: 'f' });
}

/** A trained-looking weight: N(0, 0.02) with log-normal row and column magnitudes, on the bf16 grid. */
function weight(rng: Rng, rows: number, cols: number): Float64Array {
  const r = Float64Array.from({ length: rows }, () => Math.exp(0.3 * rng.gaussian()));
  const c = Float64Array.from({ length: cols }, () => Math.exp(0.3 * rng.gaussian()));
  return bf16(Float64Array.from(rng.gaussianMatrix(rows, cols, 0.02).data, (v, p) => v * r[Math.floor(p / cols)]! * c[p % cols]!), rows, cols).values;
}

/** Pearson correlation of log|a| and log b. */
function logCorrelation(a: Float64Array, b: Float64Array): number {
  const x = Array.from(a, (v) => Math.log(Math.abs(v))), y = Array.from(b, Math.log);
  const mean = (v: number[]) => v.reduce((sum, e) => sum + e, 0) / v.length;
  const mx = mean(x), my = mean(y);
  let xy = 0, xx = 0, yy = 0;
  for (let i = 0; i < x.length; i++) {
    xy += (x[i]! - mx) * (y[i]! - my);
    xx += (x[i]! - mx) ** 2;
    yy += (y[i]! - my) ** 2;
  }
  return xy / Math.sqrt(xx * yy);
}

function unitVector(rng: Rng, length: number): Float64Array {
  const v = Float64Array.from({ length }, () => rng.gaussian());
  const norm = Math.hypot(...v);
  return v.map((x) => x / norm);
}

for (const [rows, cols] of SHAPES) {
  test(`${rows}x${cols}: a Q4_K copy is its rounding alone: rank 0 in every gauge, the spectrum under the edge, no scale fitted`, () => {
    const rng = new Rng(rows + 7 * cols);
    const w = weight(rng, rows, cols);
    const base = bf16(w, rows, cols), candidate = q4k(w, rows, cols);
    for (const gauge of GAUGES) {
      const fit = lowRankDelta(base, candidate, { gauge });
      assert.equal(fit.rank, 0, JSON.stringify(gauge));
      assert.ok(fit.spectrum.length > 0 && fit.spectrum[0]! <= 1 && fit.spectrum[0]! > 0.5, `top value ${fit.spectrum[0]} of the floor`);
      assert.ok(fit.rowScale.every((v) => v === 1) && fit.colScale.every((v) => v === 1));
      // The norms summed while whitening are those of the stored matrices.
      let d = 0, x = 0, y = 0;
      for (let p = 0; p < w.length; p++) {
        d += (candidate.values[p]! - base.values[p]!) ** 2;
        x += base.values[p]! ** 2;
        y += candidate.values[p]! ** 2;
      }
      assert.ok(Math.abs(fit.deltaNormSq / d - 1) < 1e-12 && Math.abs(fit.baseNormSq / x - 1) < 1e-12 && Math.abs(fit.candidateNormSq / y - 1) < 1e-12);
    }
  });

  test(`${rows}x${cols}: a rank-1 change a little above the floor's edge is seen in every gauge`, () => {
    const rng = new Rng(3 * rows + cols);
    const w = weight(rng, rows, cols);
    const base = bf16(w, rows, cols);
    // The floor's noise level, from the copy's variances: a spike of 1.5 edges of it stands out
    // (its singular value in the noise is above its own), yet is 1.6 times the floor's top value at most.
    const floor = q4k(w, rows, cols);
    const noise = Math.sqrt(floor.variance.reduce((sum, v) => sum + v, 0) / floor.variance.length);
    const u = unitVector(rng, rows), v = unitVector(rng, cols);
    const size = 1.5 * (Math.sqrt(rows) + Math.sqrt(cols)) * noise;
    const candidate = q4k(Float64Array.from(w, (x, p) => x + size * u[Math.floor(p / cols)]! * v[p % cols]!), rows, cols);
    for (const gauge of GAUGES) {
      const fit = lowRankDelta(base, candidate, { gauge });
      assert.equal(fit.rank, 1, `${JSON.stringify(gauge)}: spectrum ${Array.from(fit.spectrum.slice(0, 3))}`);
      assert.ok(fit.spectrum[0]! > 1 && fit.spectrum[0]! < 2.5, `spike at ${fit.spectrum[0]} edges`);
    }
  });

  test(`${rows}x${cols}: rescaled rows and columns of a Q4_K copy (obfuscation) are the floor once the gauge is fitted`, () => {
    const rng = new Rng(5 * rows + 11 * cols);
    const w = weight(rng, rows, cols);
    const base = bf16(w, rows, cols);
    const rowScale = Float64Array.from({ length: rows }, () => Math.exp(0.5 * rng.gaussian()));
    const colScale = Float64Array.from({ length: cols }, () => Math.exp(0.5 * rng.gaussian()));
    const ones = (n: number) => new Float64Array(n).fill(1);
    const cases: ReadonlyArray<readonly [GaugeFreedom, Float64Array, Float64Array]> = [
      [{ rows: true, cols: false }, rowScale, ones(cols)],
      [{ rows: false, cols: true }, ones(rows), colScale],
      [{ rows: true, cols: true }, rowScale, colScale],
    ];
    for (const [gauge, r, c] of cases) {
      const candidate = q4k(Float64Array.from(w, (x, p) => x * r[Math.floor(p / cols)]! * c[p % cols]!), rows, cols);
      assert.ok(lowRankDelta(base, candidate, { gauge: { rows: false, cols: false } }).rank > 0, 'the rescaling is seen without gauge freedom');
      const fit = lowRankDelta(base, candidate, { gauge });
      assert.equal(fit.rank, 0, JSON.stringify(gauge));
      // The fitted scales undo the obfuscation as closely as 4-bit rounding lets them (the search
      // ends once nothing is left above the edge): their logs follow the obfuscation's, negated.
      if (gauge.rows) assert.ok(logCorrelation(fit.rowScale, r) < -0.9, `row scales ${logCorrelation(fit.rowScale, r)}`);
      if (gauge.cols) assert.ok(logCorrelation(fit.colScale, c) < -0.9, `column scales ${logCorrelation(fit.colScale, c)}`);
    }
  });
}
