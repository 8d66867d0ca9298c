/**
 * Per-pair evidence computed directly from aligned weight matrices. These are small local
 * helpers for in-memory models (tests, small models); the streaming sketch code fills the
 * same `PairEvidence` for real checkpoints.
 */
import type { Matrix } from '../../src/linalg/matrix.js';
import { MomentAccumulator } from '../../src/stats/moments.js';
import type { LowRankEvidence, PairEvidence } from '../../src/tree/forest.js';
import { rmsDistance } from '../../src/tree/mother.js';
import { mostCommon } from '../../src/tree/sketch-evidence.js';

/** Named matrices of one model, e.g. "3.q_proj" -> W; both models of a pair share the names. */
export type ModelWeights = ReadonlyMap<string, Matrix>;

export interface PairEvidenceOptions {
  /** A delta counts as low rank when rank <= this fraction of min(rows, cols). */
  readonly lowRankFraction?: number;
  /** Singular-value cut relative to the largest (pivoted-QR estimate). */
  readonly rankTolerance?: number;
}

/** Excess kurtosis (biased, Fisher) of each matrix, summed: the paper's direction statistic. */
export function summedKurtosis(matrices: Iterable<Matrix>): number {
  let sum = 0;
  for (const m of matrices) {
    const acc = new MomentAccumulator();
    acc.add(m.data);
    sum += acc.result().excessKurtosis;
  }
  return sum;
}

/**
 * Numerical rank by column-pivoted Gram-Schmidt (rank-revealing QR): the number of pivots
 * whose residual norm exceeds `relTol` times the first pivot's. Exact low-rank deltas in
 * float64 leave residuals at rounding level, far below any sensible tolerance.
 */
export function numericalRank(m: Matrix, relTol = 1e-8): number {
  const { rows, cols } = m;
  const columns = Array.from({ length: cols }, (_, j) => {
    const c = new Float64Array(rows);
    for (let i = 0; i < rows; i++) c[i] = m.data[i * cols + j]!;
    return c;
  });
  const remaining = new Set(columns.keys());
  let first = 0;
  let rank = 0;
  while (remaining.size > 0) {
    let pick = -1, pickNorm = -1;
    for (const j of remaining) {
      const norm = norm2(columns[j]!);
      if (norm > pickNorm) {
        pickNorm = norm;
        pick = j;
      }
    }
    if (rank === 0) first = pickNorm;
    if (pickNorm === 0 || pickNorm <= relTol * first) break;
    remaining.delete(pick);
    const q = columns[pick]!;
    for (let i = 0; i < rows; i++) q[i] /= pickNorm;
    for (const j of remaining) {
      const c = columns[j]!;
      let dot = 0;
      for (let i = 0; i < rows; i++) dot += q[i]! * c[i]!;
      for (let i = 0; i < rows; i++) c[i] -= dot * q[i]!;
    }
    rank++;
  }
  return rank;
}

function norm2(v: Float64Array): number {
  let s = 0;
  for (const x of v) s += x * x;
  return Math.sqrt(s);
}

/**
 * log10 of the one-sided p-value that two models are unrelated: the Pearson correlation of
 * all their weights, Fisher-transformed (z = atanh(r) sqrt(N - 3)). Independently initialised
 * matrices correlate at about 1/sqrt(N); a fine-tune keeps r near 1. (Not robust to
 * permutations: aligned inputs are assumed.)
 */
export function correlationLog10PValue(a: ModelWeights, b: ModelWeights): number {
  let n = 0, sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
  for (const [name, ma] of a) {
    const mb = requireSameShape(name, ma, b.get(name));
    for (let i = 0; i < ma.data.length; i++) {
      const x = ma.data[i]!, y = mb.data[i]!;
      sa += x; sb += y; saa += x * x; sbb += y * y; sab += x * y;
    }
    n += ma.data.length;
  }
  if (n < 4) return 0;
  const cov = sab - (sa * sb) / n;
  const va = saa - (sa * sa) / n, vb = sbb - (sb * sb) / n;
  if (va <= 0 || vb <= 0) return 0;
  const r = Math.min(1 - 1e-15, Math.max(-1 + 1e-15, cov / Math.sqrt(va * vb)));
  return log10NormalUpperTail(Math.atanh(r) * Math.sqrt(n - 3));
}

/**
 * log10 P(Z > z) for a standard normal, finite for any z: erfc via the Chebyshev-fitted
 * exponent (relative error < 1.2e-7), taken as a logarithm so it never underflows.
 */
export function log10NormalUpperTail(z: number): number {
  const x = Math.abs(z) / Math.SQRT2;
  const t = 1 / (1 + 0.5 * x);
  const poly =
    -x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  const lnHalfErfc = Math.log(t) + poly - Math.LN2; // ln(erfc(x) / 2) = ln P(Z > |z|)
  if (z >= 0) return lnHalfErfc / Math.LN10;
  return Math.log10(1 - Math.exp(lnHalfErfc));
}

/** Evidence for one pair of aligned models (matrices matched by name, e.g. "0.q_proj"). */
export function pairEvidenceFromWeights(
  a: number,
  b: number,
  weightsA: ModelWeights,
  weightsB: ModelWeights,
  options: PairEvidenceOptions = {},
): PairEvidence {
  const fraction = options.lowRankFraction ?? 0.25;
  const deltas: Float64Array[] = [];
  const changedRanks: { module: string; rank: number }[] = [];
  let lowRank = true;
  let rankSum = 0;
  let kurtosisMargin = 0;
  for (const [name, ma] of weightsA) {
    const mb = requireSameShape(name, ma, weightsB.get(name));
    const delta = new Float64Array(ma.data.length);
    let changed = false;
    for (let i = 0; i < delta.length; i++) {
      delta[i] = ma.data[i]! - mb.data[i]!;
      if (delta[i] !== 0) changed = true;
    }
    deltas.push(delta);
    if (!changed) continue;
    const rank = numericalRank({ rows: ma.rows, cols: ma.cols, data: delta }, options.rankTolerance);
    rankSum += rank;
    changedRanks.push({ module: name.slice(name.lastIndexOf('.') + 1), rank });
    if (rank > fraction * Math.min(ma.rows, ma.cols)) lowRank = false;
    kurtosisMargin += summedKurtosis([ma]) - summedKurtosis([mb]);
  }
  const evidenceLowRank: LowRankEvidence | null = lowRank
    ? { rank: mostCommon(changedRanks.map((c) => c.rank)), modules: [...new Set(changedRanks.map((c) => c.module))].sort(), rankSum }
    : null;
  return {
    a,
    b,
    log10PValue: correlationLog10PValue(weightsA, weightsB),
    distance: rmsDistance(deltas),
    lowRank: evidenceLowRank,
    kurtosisMargin,
  };
}

function requireSameShape(name: string, a: Matrix, b: Matrix | undefined): Matrix {
  if (!b || b.rows !== a.rows || b.cols !== a.cols) throw new RangeError(`matrix ${name} missing or of another shape`);
  return b;
}
