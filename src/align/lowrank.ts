import type { Matrix } from '../linalg/matrix.js';
import { Rng } from '../linalg/rng.js';
import { randomizedSvd, svdViaGram } from '../linalg/svd.js';
import type { NoisyMatrix } from './noisy.js';

/**
 * Numerical rank of the difference of two aligned matrices, candidate minus base, where both carry
 * storage-rounding noise of known per-element variance V (see noisy.ts).
 *
 * Whitening: V is fitted by a rank-one profile r_i^2 c_j^2 (two-way mean of log V); dividing the
 * delta by r_i c_j keeps its rank (diagonal scalings) and makes the noise nearly homoscedastic.
 * Threshold: for independent noise with variance profile S = V / (r c)^2, the largest singular
 * value is at most about sqrt(max row sum of S) + sqrt(max column sum of S) (the bulk edge of
 * Bandeira and van Handel's bound; it is the Marchenko-Pastur edge sqrt(m)+sqrt(n) when S = 1).
 * Nothing here is tuned: the threshold follows from the storage dtype alone.
 *
 * Gauge: an obfuscated candidate is only known up to the function-preserving diagonal scalings of
 * its rows and/or columns (norm folding, V/O, Q/K, up/down scales). The rank reported is the least
 * rank any such scaling allows: for each trial rank k, alternate between the top-k singular
 * subspaces of the whitened delta and per-row / per-column least-squares scales fitted on the
 * complement of those subspaces (variable projection), then test whether the (k+1)-th singular
 * value fell under the noise edge. Trial ranks are bisected (passing is monotone in k).
 */
export interface GaugeFreedom {
  /** Rows of the candidate may carry unknown scales. */
  readonly rows: boolean;
  /** Columns of the candidate may carry unknown scales. */
  readonly cols: boolean;
}

export interface LowRankResult {
  /** Numerical rank, or the count above the edge (capped) when the delta is not low-rank. */
  readonly rank: number;
  readonly lowRank: boolean;
  /** Largest singular values of the whitened delta divided by the edge (1 = threshold). */
  readonly spectrum: Float64Array;
  /** Row and column scales applied to the candidate (all 1 when no gauge was fitted). */
  readonly rowScale: Float64Array;
  readonly colScale: Float64Array;
  /** ||delta||_F^2 and ||base||_F^2, ||candidate||_F^2 in the fitted gauge. */
  readonly deltaNormSq: number;
  readonly baseNormSq: number;
  readonly candidateNormSq: number;
}

export interface LowRankOptions {
  readonly gauge: GaugeFreedom;
  /** Largest rank still called low-rank (default: half the smaller dimension). */
  readonly maxRank?: number;
  /** How many singular values to keep in the result's spectrum (default 64). */
  readonly keep?: number;
  /** Alternations per trial rank (default 12). */
  readonly iterations?: number;
}

/** Ranks above this are not called low-rank (LoRA ranks in use are far below it). */
export const MAX_LOW_RANK = 256;

interface Whitened {
  readonly delta: Matrix;
  readonly edge: number;
  readonly r: Float64Array;
  readonly c: Float64Array;
}

function whiten(x: NoisyMatrix, y: NoisyMatrix, a: Float64Array, b: Float64Array): Whitened {
  const m = x.rows, n = x.cols;
  const logV = new Float64Array(m * n);
  let minPositive = Infinity;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const p = i * n + j;
      const s = a[i]! * b[j]!;
      const v = x.variance[p]! + s * s * y.variance[p]!;
      logV[p] = v;
      if (v > 0 && v < minPositive) minPositive = v;
    }
  }
  // Exactly representable in both (e.g. zeros): give them the smallest variance seen, not zero.
  const floor = Number.isFinite(minPositive) ? minPositive : 1;
  let total = 0;
  const rowMean = new Float64Array(m);
  const colMean = new Float64Array(n);
  for (let p = 0; p < m * n; p++) logV[p] = Math.log(Math.max(logV[p]!, floor));
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const l = logV[i * n + j]!;
      rowMean[i]! += l / n;
      colMean[j]! += l / m;
      total += l;
    }
  }
  total /= m * n;
  const r = new Float64Array(m);
  const c = new Float64Array(n);
  for (let i = 0; i < m; i++) r[i] = Math.exp(rowMean[i]! / 2);
  for (let j = 0; j < n; j++) c[j] = Math.exp((colMean[j]! - total) / 2);
  const rowSum = new Float64Array(m);
  const colSum = new Float64Array(n);
  const delta = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const p = i * n + j;
      const w = r[i]! * c[j]!;
      const s = Math.exp(logV[p]!) / (w * w);
      rowSum[i]! += s;
      colSum[j]! += s;
      delta[p] = (a[i]! * y.values[p]! * b[j]! - x.values[p]!) / w;
    }
  }
  let maxRow = 0, maxCol = 0;
  for (let i = 0; i < m; i++) maxRow = Math.max(maxRow, rowSum[i]!);
  for (let j = 0; j < n; j++) maxCol = Math.max(maxCol, colSum[j]!);
  return { delta: { rows: m, cols: n, data: delta }, edge: Math.sqrt(maxRow) + Math.sqrt(maxCol), r, c };
}

/** Small matrices: all singular values via the Gram matrix. Large: randomized top-k with power iterations. */
const EXACT_SVD_LIMIT = 384;

interface TopSvd {
  readonly s: Float64Array;
  readonly u: Matrix;
  readonly v: Matrix;
}

function topSvd(a: Matrix, k: number): TopSvd {
  const limit = Math.min(a.rows, a.cols);
  if (limit <= EXACT_SVD_LIMIT) {
    const full = svdViaGram(a, { vectors: true });
    return { s: full.s, u: full.u!, v: full.v! };
  }
  const want = Math.min(limit, Math.max(1, k));
  const r = randomizedSvd(a, want, { oversample: 10, powerIters: 3, rng: new Rng(7) });
  return { s: r.s, u: r.u, v: r.v };
}

function isZero(x: NoisyMatrix, y: NoisyMatrix): boolean {
  for (let p = 0; p < x.values.length; p++) if (x.values[p] !== y.values[p]) return false;
  return true;
}

/** Count of singular values above 1 (values already divided by the edge), up to `cap`. */
function countAbove(s: ArrayLike<number>, edge: number): number {
  let k = 0;
  while (k < s.length && s[k]! > edge) k++;
  return k;
}

/** Relative decrease per round below which a gauge fit counts as converged. */
const STALL = 0.01;

interface GaugeTrial {
  readonly ok: boolean;
  readonly a: Float64Array;
  readonly b: Float64Array;
}

/**
 * Variable-projection fit of the gauge at trial rank k, warm-started from (a, b): each round takes
 * one SVD of the whitened delta, stops as soon as its (k+1)-th singular value is under the edge
 * (rank <= k is then shown), else refits row and column scales on the complement of the top-k
 * singular subspaces.
 */
function fitGauge(x: NoisyMatrix, y: NoisyMatrix, gauge: GaugeFreedom, k: number, iterations: number, start: GaugeTrial | null): GaugeTrial {
  const m = x.rows, n = x.cols;
  const a = start ? start.a.slice() : new Float64Array(m).fill(1);
  const b = start ? start.b.slice() : new Float64Array(n).fill(1);
  let previous = Infinity;
  for (let it = 0; ; it++) {
    const w = whiten(x, y, a, b);
    const top = topSvd(w.delta, k + 1);
    const excess = (top.s[k] ?? 0) / w.edge;
    if (excess <= 1) return { ok: true, a, b };
    // Stalled: another round would not bring the (k+1)-th value under the edge.
    if (it >= iterations || excess > previous * (1 - STALL)) return { ok: false, a, b };
    previous = excess;
    const before = Float64Array.from([...a, ...b]);
    if (gauge.rows) fitScales(x, y, a, b, w.c, top.v, k, 'rows');
    if (gauge.cols) fitScales(x, y, a, b, w.r, top.u, k, 'cols');
    if (gauge.rows && gauge.cols) {
      // (a t, b / t) is the same candidate: pin the geometric mean of |b| to 1.
      let logMean = 0;
      for (let j = 0; j < n; j++) logMean += Math.log(Math.abs(b[j]!) || 1) / n;
      const t = Math.exp(logMean);
      for (let j = 0; j < n; j++) b[j]! /= t;
      for (let i = 0; i < m; i++) a[i]! *= t;
    }
    let change = 0;
    for (let i = 0; i < m; i++) change = Math.max(change, Math.abs(a[i]! - before[i]!) / (Math.abs(before[i]!) || 1));
    for (let j = 0; j < n; j++) change = Math.max(change, Math.abs(b[j]! - before[m + j]!) / (Math.abs(before[m + j]!) || 1));
    if (change < 1e-9) return { ok: false, a, b };
  }
}

/**
 * Least-squares scale of each row (or column) of the candidate against the base, after removing
 * the trial low-rank subspace (basis: columns of `basis`, k of them) from both, in whitened units.
 */
function fitScales(
  x: NoisyMatrix, y: NoisyMatrix, a: Float64Array, b: Float64Array,
  unit: Float64Array, basis: Matrix | null, k: number, along: 'rows' | 'cols',
): void {
  const m = x.rows, n = x.cols;
  const len = along === 'rows' ? n : m;
  const count = along === 'rows' ? m : n;
  const yv = new Float64Array(len);
  const xv = new Float64Array(len);
  for (let t = 0; t < count; t++) {
    for (let s = 0; s < len; s++) {
      const [i, j] = along === 'rows' ? [t, s] : [s, t];
      const p = i * n + j;
      const other = along === 'rows' ? b[j]! : a[i]!;
      yv[s] = (y.values[p]! * other) / unit[s]!;
      xv[s] = x.values[p]! / unit[s]!;
    }
    if (basis) {
      for (let q = 0; q < k; q++) {
        let py = 0, px = 0;
        for (let s = 0; s < len; s++) {
          const e = basis.data[s * basis.cols + q]!;
          py += yv[s]! * e;
          px += xv[s]! * e;
        }
        for (let s = 0; s < len; s++) {
          const e = basis.data[s * basis.cols + q]!;
          yv[s]! -= py * e;
          xv[s]! -= px * e;
        }
      }
    }
    let num = 0, den = 0;
    for (let s = 0; s < len; s++) {
      num += yv[s]! * xv[s]!;
      den += yv[s]! * yv[s]!;
    }
    const scale = den > 0 ? num / den : 1;
    if (along === 'rows') a[t] = scale;
    else b[t] = scale;
  }
}

function spectrumAt(x: NoisyMatrix, y: NoisyMatrix, a: Float64Array, b: Float64Array, need: number) {
  const w = whiten(x, y, a, b);
  const top = topSvd(w.delta, need);
  const s = new Float64Array(top.s.length);
  for (let i = 0; i < s.length; i++) s[i] = top.s[i]! / w.edge;
  return s;
}

function norms(x: NoisyMatrix, y: NoisyMatrix, a: Float64Array, b: Float64Array) {
  let d = 0, bx = 0, cy = 0;
  const n = x.cols;
  for (let i = 0; i < x.rows; i++) {
    for (let j = 0; j < n; j++) {
      const p = i * n + j;
      const yv = a[i]! * y.values[p]! * b[j]!;
      const xv = x.values[p]!;
      d += (yv - xv) * (yv - xv);
      bx += xv * xv;
      cy += yv * yv;
    }
  }
  return { deltaNormSq: d, baseNormSq: bx, candidateNormSq: cy };
}

export function lowRankDelta(base: NoisyMatrix, candidate: NoisyMatrix, options: LowRankOptions): LowRankResult {
  if (base.rows !== candidate.rows || base.cols !== candidate.cols) {
    throw new RangeError(`lowRankDelta: ${base.rows}x${base.cols} vs ${candidate.rows}x${candidate.cols}`);
  }
  const m = base.rows, n = base.cols;
  const limit = Math.min(m, n);
  const maxRank = Math.min(options.maxRank ?? Math.min(Math.floor(limit / 2), MAX_LOW_RANK), limit - 1);
  const keep = Math.min(options.keep ?? 64, limit);
  const iterations = options.iterations ?? 12;
  const ones = (len: number) => new Float64Array(len).fill(1);
  const finish = (rank: number, lowRank: boolean, a: Float64Array, b: Float64Array): LowRankResult => {
    const spectrum = rank === 0 && isZero(base, candidate) ? new Float64Array(0) : spectrumAt(base, candidate, a, b, Math.max(keep, rank + 1));
    return { rank, lowRank, spectrum: spectrum.slice(0, keep), rowScale: a, colScale: b, ...norms(base, candidate, a, b) };
  };
  if (isZero(base, candidate)) return finish(0, true, ones(m), ones(n));

  // Escalate the number of singular values computed only while they stay above the edge.
  let plain = spectrumAt(base, candidate, ones(m), ones(n), Math.min(maxRank + 1, 16));
  while (plain.length < maxRank + 1 && countAbove(plain, 1) === plain.length && plain.length < limit) {
    plain = spectrumAt(base, candidate, ones(m), ones(n), Math.min(maxRank + 1, plain.length * 4));
  }
  const plainRank = countAbove(plain, 1);
  const gauged = options.gauge.rows || options.gauge.cols;
  if (!gauged || plainRank === 0) return finish(plainRank, plainRank <= maxRank, ones(m), ones(n));

  let lo = -1; // largest rank known to fail
  let pass = -1; // least rank known to pass (-1: none yet)
  let best: GaugeTrial = { ok: false, a: ones(m), b: ones(n) };
  let warm: GaugeTrial | null = null;
  if (plainRank <= maxRank) {
    // Plausibly unscaled (the common case): the plain count passes as it is, and one trial just
    // below it settles the rank unless a rescaling inflated it.
    pass = plainRank;
    best = { ok: true, a: ones(m), b: ones(n) };
    const below = fitGauge(base, candidate, options.gauge, plainRank - 1, iterations, null);
    if (!below.ok) return finish(plainRank, true, best.a, best.b);
    pass = plainRank - 1;
    best = below;
  }
  if (pass < 0) {
    // Dense as counted: unless some rescaling makes it low-rank at maxRank, it is dense (one trial).
    const top = fitGauge(base, candidate, options.gauge, maxRank, iterations, null);
    if (!top.ok) return finish(plainRank, false, ones(m), ones(n));
    pass = maxRank;
    best = top;
  }
  // The least passing rank: doubling from 0 (LoRA ranks are small, and small trial ranks are
  // cheap), then bisection; nothing passing up to maxRank means a dense delta.
  for (let k = 0; k < pass; k = Math.max(1, 2 * k)) {
    const trial = fitGauge(base, candidate, options.gauge, k, iterations, warm);
    warm = trial;
    if (trial.ok) {
      pass = k;
      best = trial;
      break;
    }
    lo = k;
  }
  while (pass - lo > 1) {
    const mid = (lo + pass) >> 1;
    const trial = fitGauge(base, candidate, options.gauge, mid, iterations, warm);
    if (trial.ok) {
      pass = mid;
      best = trial;
    } else {
      lo = mid;
      warm = trial;
    }
  }
  return finish(pass, true, best.a, best.b);
}
