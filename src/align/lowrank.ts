import type { Matrix } from '../linalg/matrix.js';
import { Rng } from '../linalg/rng.js';
import { matmul, matmulTransB, transpose } from '../linalg/ops.js';
import { randomizedSvd, svdViaGram } from '../linalg/svd.js';
import { medianInPlace } from '../stats/median.js';
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
 * rank any such scaling we find: per-row / per-column least-squares scales fitted on the
 * complement of a trial top-k singular subspace of the whitened delta (variable projection), with
 * k read off the spectrum itself (its largest gap, its count above the edge), one SVD per round,
 * until the count above the edge stops falling. Every gauge tried is function-preserving, so the
 * least count seen is a valid (upper) bound; no rank is ever claimed below the edge.
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
  /** Gauge rounds at most (default 24): one scale refit and one SVD each. */
  readonly rounds?: number;
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
  const variance = new Float64Array(m * n);
  let minPositive = Infinity;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const p = i * n + j;
      const s = a[i]! * b[j]!;
      const v = x.variance[p]! + s * s * y.variance[p]!;
      variance[p] = v;
      if (v > 0 && v < minPositive) minPositive = v;
    }
  }
  // Exactly representable in both (e.g. zeros): give them the smallest variance seen, not zero.
  const floor = Number.isFinite(minPositive) ? minPositive : 1;
  let total = 0;
  const rowMean = new Float64Array(m);
  const colMean = new Float64Array(n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const p = i * n + j;
      const v = Math.max(variance[p]!, floor);
      variance[p] = v;
      const l = Math.log(v);
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
      const s = variance[p]! / (w * w);
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
const EXACT_SVD_LIMIT = 128;

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

/** Count of leading singular values above 1 (values already divided by the edge). */
function countAbove(s: ArrayLike<number>): number {
  let k = 0;
  while (k < s.length && s[k]! > 1) k++;
  return k;
}

/** Gauge rounds at most: each is one scale refit and one SVD. */
const MAX_ROUNDS = 24;

/** Singular values computed per round at least (more when the count above the edge needs them). */
const MIN_VALUES = 24;

interface Spectrum {
  /** Singular values divided by the edge, descending. */
  readonly s: Float64Array;
  /** Count above 1; exact unless `saturated`. */
  readonly count: number;
  /** Every value computed is above the edge: the count is a lower bound. */
  readonly saturated: boolean;
  readonly u: Matrix;
  readonly v: Matrix;
  /** The row and column whitening factors it was computed with (the next scale fit reuses them). */
  readonly r: Float64Array;
  readonly c: Float64Array;
}

/** Top singular values and vectors of the whitened delta in gauge (a, b), at least `want` of them. */
function spectrumAt(x: NoisyMatrix, y: NoisyMatrix, a: Float64Array, b: Float64Array, want: number, limit: number): Spectrum {
  const w = whiten(x, y, a, b);
  const top = topSvd(w.delta, Math.min(limit, want));
  const s = Float64Array.from(top.s, (v) => v / w.edge);
  const count = countAbove(s);
  return { s, count, saturated: count === s.length && s.length < limit, u: top.u, v: top.v, r: w.r, c: w.c };
}

/** The spectrum at (a, b) with enough values computed to count those above the edge, up to cap. */
function countedSpectrum(x: NoisyMatrix, y: NoisyMatrix, a: Float64Array, b: Float64Array, want: number, cap: number, limit: number): Spectrum {
  let spectrum = spectrumAt(x, y, a, b, want, limit);
  while (spectrum.saturated && spectrum.s.length <= cap) spectrum = spectrumAt(x, y, a, b, spectrum.s.length * 4, limit);
  return spectrum;
}

/** Median-polish sweeps of the robust starting scales. */
const POLISH_SWEEPS = 4;

/**
 * One median-polish half sweep: for each of `count` lines (rows or columns) of the log-ratio
 * matrix, the median over its `len` entries (at t*lineStride + s*entryStride) of the entry minus
 * the other side's current log scale at s; NaN entries (a zero on either side) are skipped.
 */
function polishLines(
  logRatio: Float64Array, count: number, len: number, lineStride: number, entryStride: number,
  other: Float64Array, scratch: Float64Array, out: Float64Array,
): void {
  for (let t = 0; t < count; t++) {
    let used = 0;
    for (let e = 0; e < len; e++) {
      const l = logRatio[t * lineStride + e * entryStride]!;
      if (!Number.isNaN(l)) scratch[used++] = l - other[e]!;
    }
    out[t] = used > 0 ? medianInPlace(scratch, used) : 0;
  }
}

/**
 * Starting scales robust to the update itself: medians of the log magnitude ratios log|x/y| per
 * row and column (median polish). A least-squares start would absorb part of the update into the
 * scales (its projection on the base's rows), leaving a full-rank misfit as strong as the update's
 * weakest directions; the median ignores the entries the update dominates. Signs follow the
 * least-squares sign of each row and column.
 */
function medianScales(x: NoisyMatrix, y: NoisyMatrix, a: Float64Array, b: Float64Array, gauge: GaugeFreedom): void {
  const m = x.rows, n = x.cols;
  const logRatio = new Float64Array(m * n).fill(NaN);
  for (let p = 0; p < m * n; p++) {
    const xv = x.values[p]!, yv = y.values[p]!;
    if (xv !== 0 && yv !== 0) logRatio[p] = Math.log(Math.abs(xv / yv));
  }
  const logA = new Float64Array(m), logB = new Float64Array(n);
  const line = new Float64Array(Math.max(m, n));
  for (let sweep = 0; sweep < POLISH_SWEEPS; sweep++) {
    if (gauge.rows) polishLines(logRatio, m, n, n, 1, logB, line, logA);
    if (gauge.cols) polishLines(logRatio, n, m, 1, n, logA, line, logB);
  }
  for (let i = 0; i < m; i++) a[i] = Math.exp(logA[i]!);
  for (let j = 0; j < n; j++) b[j] = Math.exp(logB[j]!);
  // Signs: a flipped row (or column) correlates negatively with the base's.
  const rowDot = new Float64Array(m), colDot = new Float64Array(n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const d = x.values[i * n + j]! * y.values[i * n + j]! * a[i]! * b[j]!;
      rowDot[i]! += d;
      colDot[j]! += d;
    }
  }
  if (gauge.rows) for (let i = 0; i < m; i++) if (rowDot[i]! < 0) a[i] = -a[i]!;
  if (gauge.cols && !gauge.rows) for (let j = 0; j < n; j++) if (colDot[j]! < 0) b[j] = -b[j]!;
  if (gauge.rows && gauge.cols) normalizeGauge(a, b);
}

/** Alternations of the row and column fits per round at most, and their convergence tolerance
 * (scales this close give a misfit far under the rounding noise). */
const ALTERNATIONS = 40;
const CONVERGED = 1e-5;

/**
 * Row and column scales (in place, starting from the gauge `spectrum` was computed in) minimising
 * the whitened misfit outside its top-k singular subspaces: alternating least squares, since the
 * two sides are coupled. The whitening is the spectrum's own. Columns are fitted as the rows of
 * the transposed matrices.
 */
function fitGauge(x: NoisyMatrix, y: NoisyMatrix, a: Float64Array, b: Float64Array, gauge: GaugeFreedom, spectrum: Spectrum, k: number): void {
  const values = (m: NoisyMatrix): Matrix => ({ rows: m.rows, cols: m.cols, data: m.values });
  const rows = gauge.rows ? new RowScaleFit(values(x), values(y), spectrum.c, spectrum.v, k) : null;
  const cols = gauge.cols ? new RowScaleFit(transpose(values(x)), transpose(values(y)), spectrum.r, spectrum.u, k) : null;
  const alternations = rows && cols ? ALTERNATIONS : 1;
  const before = new Float64Array(a.length + b.length);
  for (let it = 0; it < alternations; it++) {
    before.set(a);
    before.set(b, a.length);
    rows?.fit(b, a);
    cols?.fit(a, b);
    if (rows && cols) normalizeGauge(a, b);
    let change = 0;
    for (let i = 0; i < a.length; i++) change = Math.max(change, Math.abs(a[i]! - before[i]!) / (Math.abs(before[i]!) || 1));
    for (let j = 0; j < b.length; j++) change = Math.max(change, Math.abs(b[j]! - before[a.length + j]!) / (Math.abs(before[a.length + j]!) || 1));
    if (change < CONVERGED) break;
  }
}

/** The first k columns of basis (len x cols) as a k x len matrix of contiguous vectors. */
function leadingVectors(basis: Matrix, k: number): Matrix {
  const out = new Float64Array(k * basis.rows);
  for (let s = 0; s < basis.rows; s++) for (let q = 0; q < k; q++) out[q * basis.rows + s] = basis.data[s * basis.cols + q]!;
  return { rows: k, cols: basis.rows, data: out };
}

/** m with column j scaled by scale[j]. */
function scaleColumnsOf(m: Matrix, scale: ArrayLike<number>): Matrix {
  const out = new Float64Array(m.data.length);
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < m.cols; j++) out[i * m.cols + j] = m.data[i * m.cols + j]! * scale[j]!;
  return { rows: m.rows, cols: m.cols, data: out };
}

/**
 * Least-squares scale of each candidate row against the base row, in whitened units (columns
 * divided by `unit`), both with the trial subspace (k right singular vectors V) projected out:
 * a_i = <P y_i, P x_i> / |P y_i|^2 = <y_i, P x_i> / (|y_i|^2 - |V^T y_i|^2). P x is fixed per fit;
 * the projections are matrix products (the fast kernel).
 */
class RowScaleFit {
  private readonly projected: Matrix;
  private readonly vectors: Matrix;
  private readonly inverseUnit: Float64Array;

  constructor(x: Matrix, private readonly y: Matrix, unit: Float64Array, basis: Matrix, k: number) {
    this.vectors = leadingVectors(basis, k);
    this.inverseUnit = Float64Array.from(unit, (u) => 1 / u);
    const whitened = scaleColumnsOf(x, this.inverseUnit);
    if (k > 0) {
      const inside = matmul(matmulTransB(whitened, this.vectors), this.vectors);
      for (let p = 0; p < whitened.data.length; p++) whitened.data[p]! -= inside.data[p]!;
    }
    this.projected = whitened;
  }

  /** Writes the scale of every row into `out`, given the other side's scales. */
  fit(other: Float64Array, out: Float64Array): void {
    const n = this.y.cols;
    const line = scaleColumnsOf(this.y, Float64Array.from(other, (v, j) => v * this.inverseUnit[j]!));
    const inner = this.vectors.rows > 0 ? matmulTransB(line, this.vectors) : null;
    const values = line.data, projected = this.projected.data;
    for (let i = 0; i < this.y.rows; i++) {
      let num = 0, total = 0, inside = 0;
      const row = i * n;
      for (let j = 0; j < n; j++) {
        const v = values[row + j]!;
        num += v * projected[row + j]!;
        total += v * v;
      }
      if (inner) {
        for (let q = 0; q < inner.cols; q++) {
          const w = inner.data[i * inner.cols + q]!;
          inside += w * w;
        }
      }
      const den = total - inside;
      out[i] = den > total * 1e-12 ? num / den : 1;
    }
  }
}

/** (a t, b / t) is the same candidate: pin the geometric mean of |b| to 1. */
function normalizeGauge(a: Float64Array, b: Float64Array): void {
  let logMean = 0;
  for (let j = 0; j < b.length; j++) logMean += Math.log(Math.abs(b[j]!) || 1) / b.length;
  const t = Math.exp(logMean);
  for (let j = 0; j < b.length; j++) b[j]! /= t;
  for (let i = 0; i < a.length; i++) a[i]! *= t;
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
  const rounds = options.rounds ?? MAX_ROUNDS;
  const ones = (len: number) => new Float64Array(len).fill(1);
  const finish = (spectrum: Spectrum | null, a: Float64Array, b: Float64Array): LowRankResult => {
    const rank = spectrum ? spectrum.count : 0;
    return {
      rank, lowRank: rank <= maxRank, spectrum: spectrum ? spectrum.s.slice(0, keep) : new Float64Array(0),
      rowScale: a, colScale: b, ...norms(base, candidate, a, b),
    };
  };
  if (isZero(base, candidate)) return finish(null, ones(m), ones(n));

  const { gauge } = options;
  const gauged = gauge.rows || gauge.cols;
  // With gauge freedom a dense-looking plain delta is only a starting point: no need to count it.
  const plain: GaugeState = { spectrum: countedSpectrum(base, candidate, ones(m), ones(n), MIN_VALUES, gauged ? 0 : maxRank, limit), a: ones(m), b: ones(n) };
  if (!gauged || plain.spectrum.count === 0) return finish(plain.spectrum, plain.a, plain.b);

  // The least rank over the gauge by variable projection: refit the scales on the complement of a
  // trial top-k subspace (a rescaling's misfit lies outside the update's own directions), count
  // again, move on from any improvement. A dense-looking plain delta (a rescaling is full-rank)
  // first gets robust median-polish scales, the origin of the projections. Trial k, in order until
  // one improves: the spectrum's largest gap (the update is strong, a leftover rescaling spreads
  // thin), the count above the edge, and one fewer than the count, from here and from the origin
  // (directions projected out are exempt from the fit, so a leftover rescaling among them would
  // persist along this path). The least count seen is reported.
  let best = plain;
  let current = plain;
  let origin = plain; // where the projections started: the plain state, or the robust start
  let tried = new Set<string>();
  for (let round = 0; round < rounds && best.spectrum.count > 0; round++) {
    const spectrum = current.spectrum;
    const plainFit = round === 0 && dense(spectrum);
    const proposals: Array<{ k: number; from: GaugeState }> = plainFit ? [{ k: 0, from: current }] : [
      { k: Math.min(gapRank(spectrum), maxRank), from: current },
      { k: Math.min(spectrum.count, maxRank), from: current },
      // One fewer, from here and (a different path) from where the projections started.
      ...(dense(spectrum) ? [] : [{ k: spectrum.count - 1, from: current }, ...(origin === current ? [] : [{ k: spectrum.count - 1, from: origin }])]),
    ];
    const key = (p: { k: number; from: GaugeState }) => `${p.k}:${p.from === origin ? 'origin' : 'current'}`;
    const proposal = proposals.find((p) => !tried.has(key(p)));
    if (!proposal) break;
    const { k, from } = proposal;
    tried.add(key(proposal));
    // Refit at this k while the first value beyond the trial subspace keeps falling (each fit
    // starts from the last one's subspace), then compare with the current state.
    const cap = spectrum.saturated ? 0 : Math.min(spectrum.count - 1, DENSE_CAP);
    let trial = from;
    for (let step = 0; step < REFITS; step++) {
      const a = trial.a.slice(), b = trial.b.slice();
      if (plainFit) medianScales(base, candidate, a, b, gauge);
      else fitGauge(base, candidate, a, b, gauge, trial.spectrum, k);
      // Enough values to see whether the count fell below the current one (a dense-looking state
      // is compared on the same number of values, by the energy above the edge).
      const next: GaugeState = { spectrum: countedSpectrum(base, candidate, a, b, Math.max(MIN_VALUES, k + 8, spectrum.saturated ? spectrum.s.length : 0), cap, limit), a, b };
      const falling = (next.spectrum.s[k] ?? 0) < (trial.spectrum.s[k] ?? 0) * (1 - PROGRESS);
      trial = next;
      if (plainFit || improves(trial.spectrum, spectrum, k) || !falling) break;
    }
    if (plainFit) origin = trial;
    if (plainFit || improves(trial.spectrum, spectrum, k)) {
      current = trial;
      tried = new Set();
      if (!improves(best.spectrum, trial.spectrum)) best = trial;
    }
  }
  if (dense(best.spectrum)) {
    // Dense in every gauge tried: the plain spectrum, counted up to DENSE_CAP values.
    return finish(countedSpectrum(base, candidate, plain.a, plain.b, plain.spectrum.s.length, Math.min(maxRank, DENSE_CAP), limit), plain.a, plain.b);
  }
  return finish(best.spectrum, best.a, best.b);

  function dense(spectrum: Spectrum): boolean {
    return spectrum.saturated || spectrum.count > maxRank;
  }
}

/** Singular values counted at most while a delta still looks dense (each costs a wider SVD). */
const DENSE_CAP = 96;

/** Refits at one trial rank at most, while they keep lowering the first value beyond it. */
const REFITS = 6;

/** Relative decrease of the energy above the edge that counts as progress at an equal count. */
const PROGRESS = 0.01;

/**
 * Fewer values above the edge, or as many (both counts possibly lower bounds, when every value
 * computed is above the edge) with clearly less energy above it beyond the first `from` values
 * (the trial subspace, whose strength is the update's own, not misfit).
 */
function improves(trial: Spectrum, best: Spectrum, from = 0): boolean {
  if (!trial.saturated && trial.count < (best.saturated ? best.s.length : best.count)) return true;
  if (trial.saturated !== best.saturated || (!trial.saturated && trial.count !== best.count)) return false;
  const excess = (s: Float64Array, len: number) => {
    let e = 0;
    for (let i = from; i < len; i++) e += Math.max(0, s[i]! * s[i]! - 1);
    return e;
  };
  const len = Math.min(trial.s.length, best.s.length);
  return excess(trial.s, len) < excess(best.s, len) * (1 - PROGRESS);
}

interface GaugeState {
  readonly spectrum: Spectrum;
  readonly a: Float64Array;
  readonly b: Float64Array;
}

/** The k in 1..count with the largest ratio s_k / max(s_{k+1}, 1): where the spectrum drops most. */
function gapRank(spectrum: Spectrum): number {
  const s = spectrum.s;
  // A saturated spectrum's last computed value has no known successor: no gap can be read there.
  const last = spectrum.saturated ? spectrum.count - 1 : spectrum.count;
  let bestK = spectrum.count, bestRatio = 0;
  for (let k = 1; k <= last; k++) {
    const ratio = s[k - 1]! / Math.max(s[k] ?? 0, 1);
    if (ratio > bestRatio) [bestK, bestRatio] = [k, ratio];
  }
  return bestK;
}
