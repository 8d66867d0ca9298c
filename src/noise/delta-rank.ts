/**
 * Numerical rank of the difference of two aligned matrices, candidate minus base, where both carry
 * storage-rounding noise of known per-element variance V (see noisy-matrix.ts).
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
import { fastLog } from '../linalg/fast-log.js';
import type { Matrix } from '../linalg/matrix.js';
import { Rng } from '../linalg/rng.js';
import { matmulTransB, transpose } from '../linalg/ops.js';
import { gramSideSvd, otherSideVectors, randomizedSvd } from '../linalg/svd.js';
import { medianInPlace } from '../stats/median.js';
import { sameValues, type NoisyMatrix } from './noisy-matrix.js';

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
  /** A dense delta with gauge freedom: the robust (median-polish) scales its gauge search started from. */
  readonly robustScales?: { readonly rows: Float64Array; readonly cols: Float64Array };
}

export interface LowRankOptions {
  readonly gauge: GaugeFreedom;
  /** Largest rank still called low-rank (default: half the smaller dimension). */
  readonly maxRank?: number;
  /** How many singular values to keep in the result's spectrum (default 64). */
  readonly keep?: number;
  /** Gauge rounds at most (default 24): one scale refit and one SVD each. */
  readonly rounds?: number;
  /**
   * Work memory of at least rows x cols values for the whitened deltas (overwritten; no result
   * keeps a view of it), so a caller fitting several modules allocates it once; default fresh.
   */
  readonly scratch?: Float64Array;
}

/** Ranks above this are not called low-rank (LoRA ranks in use are far below it). */
export const MAX_LOW_RANK = 256;

interface Whitened {
  readonly delta: Matrix;
  readonly edge: number;
  readonly r: Float64Array;
  readonly c: Float64Array;
  /** The squared norms at the (a, b) it was whitened at (see norms), summed in the same pass. */
  readonly norms: SquaredNorms;
}

/** ||a y b - x||_F^2, ||x||_F^2 and ||a y b||_F^2: a fit's result reports those of its gauge. */
interface SquaredNorms {
  readonly deltaNormSq: number;
  readonly baseNormSq: number;
  readonly candidateNormSq: number;
}

/**
 * The whitened delta (a y b - x) / (r c), its bulk edge, and the squared norms at (a, b) (which
 * the pass forming the delta reads anyway). The combined variance V = Vx + (a b)^2 Vy is
 * recomputed in each of the two passes (log means, then delta and edge sums) rather than stored:
 * one m x n float64 array fewer, for two multiply-adds per entry.
 */
function whiten(x: NoisyMatrix, y: NoisyMatrix, a: Float64Array, b: Float64Array, delta: Float64Array): Whitened {
  const m = x.rows, n = x.cols;
  const vx = x.variance, vy = y.variance;
  // Log means of V over the positive entries; exact zeros (exactly representable in both, e.g.
  // zeros) get the smallest positive variance seen, added once the pass has found it.
  let minPositive = Infinity;
  let total = 0, zeros = 0;
  const rowMean = new Float64Array(m);
  const colMean = new Float64Array(n);
  const rowZeros = new Int32Array(m), colZeros = new Int32Array(n);
  const perRow = 1 / n, perCol = 1 / m;
  for (let i = 0; i < m; i++) {
    const ai = a[i]!, row = i * n;
    let rowSum = 0;
    for (let j = 0; j < n; j++) {
      const s = ai * b[j]!;
      const v = vx[row + j]! + s * s * vy[row + j]!;
      if (v > 0) {
        if (v < minPositive) minPositive = v;
        const l = fastLog(v);
        rowSum += l * perRow;
        colMean[j]! += l * perCol;
        total += l;
      } else {
        rowZeros[i]!++;
        colZeros[j]!++;
        zeros++;
      }
    }
    rowMean[i] = rowSum;
  }
  const floor = Number.isFinite(minPositive) ? minPositive : 1;
  if (zeros > 0) {
    const l = Math.log(floor);
    for (let i = 0; i < m; i++) rowMean[i]! += rowZeros[i]! * l * perRow;
    for (let j = 0; j < n; j++) colMean[j]! += colZeros[j]! * l * perCol;
    total += zeros * l;
  }
  total /= m * n;
  const r = new Float64Array(m);
  const c = new Float64Array(n);
  for (let i = 0; i < m; i++) r[i] = Math.exp(rowMean[i]! / 2);
  for (let j = 0; j < n; j++) c[j] = Math.exp((colMean[j]! - total) / 2);
  const inverseC = Float64Array.from(c, (v) => 1 / v), inverseCSq = Float64Array.from(inverseC, (v) => v * v);
  const rowSum = new Float64Array(m);
  const colSum = new Float64Array(n);
  const xv = x.values, yv = y.values;
  let deltaNormSq = 0, baseNormSq = 0, candidateNormSq = 0;
  for (let i = 0; i < m; i++) {
    const ai = a[i]!, inverseR = 1 / r[i]!, inverseRSq = inverseR * inverseR, row = i * n;
    let sum = 0;
    for (let j = 0; j < n; j++) {
      const p = row + j;
      const s = ai * b[j]!;
      const v = Math.max(vx[p]! + s * s * vy[p]!, floor);
      const scaled = v * inverseRSq * inverseCSq[j]!;
      sum += scaled;
      colSum[j]! += scaled;
      const candidate = ai * yv[p]! * b[j]!, base = xv[p]!, d = candidate - base;
      delta[p] = d * inverseR * inverseC[j]!;
      deltaNormSq += d * d;
      baseNormSq += base * base;
      candidateNormSq += candidate * candidate;
    }
    rowSum[i] = sum;
  }
  let maxRow = 0, maxCol = 0;
  for (let i = 0; i < m; i++) maxRow = Math.max(maxRow, rowSum[i]!);
  for (let j = 0; j < n; j++) maxCol = Math.max(maxCol, colSum[j]!);
  return { delta: { rows: m, cols: n, data: delta }, edge: Math.sqrt(maxRow) + Math.sqrt(maxCol), r, c, norms: { deltaNormSq, baseNormSq, candidateNormSq } };
}

/**
 * Small matrices: all singular values via the Gram matrix. Up to GRAM_SVD_LIMIT: the Gram route
 * too (exact, and cheaper there than the randomized one), though only the values asked for are
 * returned, so the count above the edge saturates and is re-run as with the randomized route.
 * Large: randomized top-k with power iterations.
 */
const EXACT_SVD_LIMIT = 128;
const GRAM_SVD_LIMIT = 256;

interface TopSvd {
  readonly s: Float64Array;
  /**
   * The singular vectors asked for (left u, right v), while the matrix is still intact; null for
   * a side not asked for. On the Gram route the Gram side's come with the values, the other
   * side's cost a product with the whole matrix.
   */
  vectors(sides: { readonly u: boolean; readonly v: boolean }): { readonly u: Matrix | null; readonly v: Matrix | null };
}

function topSvd(a: Matrix, k: number): TopSvd {
  const limit = Math.min(a.rows, a.cols);
  if (limit > GRAM_SVD_LIMIT) {
    const r = randomizedSvd(a, Math.min(limit, Math.max(1, k)), { oversample: 10, powerIters: 3, rng: new Rng(7) });
    return { s: r.s, vectors: () => ({ u: r.u, v: r.v }) };
  }
  const want = limit <= EXACT_SVD_LIMIT ? limit : Math.min(limit, Math.max(1, k));
  const half = gramSideSvd(a, limit <= EXACT_SVD_LIMIT ? undefined : want);
  return {
    s: limit <= EXACT_SVD_LIMIT ? half.s : half.s.slice(0, want),
    vectors(sides) {
      const [gramSide, otherSide] = half.tall ? [sides.v, sides.u] : [sides.u, sides.v];
      const gramVectors = gramSide ? half.vectors : null, otherVectors = otherSide ? otherSideVectors(half) : null;
      return half.tall ? { u: otherVectors, v: gramVectors } : { u: gramVectors, v: otherVectors };
    },
  };
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
  /**
   * Singular vectors, for the gauge fit: v for a row fit, u for a column fit (ScaleFit's other
   * side); null where no fit will read them (a side without gauge freedom, or nothing above the edge).
   */
  readonly u: Matrix | null;
  readonly v: Matrix | null;
  /** The row and column whitening factors it was computed with (the next scale fit reuses them). */
  readonly r: Float64Array;
  readonly c: Float64Array;
  /** The squared norms in the gauge it was computed in. */
  readonly norms: SquaredNorms;
}

/**
 * Top singular values of a whitened delta, at least `want` of them, and the vectors a gauge fit
 * of `gauge` reads (only a spectrum with values above the edge is ever fitted from: the gauge
 * search stops at a count of 0).
 */
function spectrumOf(w: Whitened, want: number, limit: number, gauge: GaugeFreedom): Spectrum {
  const top = topSvd(w.delta, Math.min(limit, want));
  const s = Float64Array.from(top.s, (v) => v / w.edge);
  const count = countAbove(s);
  const { u, v } = top.vectors(count > 0 ? { u: gauge.cols, v: gauge.rows } : { u: false, v: false });
  return { s, count, saturated: count === s.length && s.length < limit, u, v, r: w.r, c: w.c, norms: w.norms };
}

/**
 * The spectrum at (a, b) with enough values computed to count those above the edge, up to cap:
 * from `want` values, or from `known` (already computed at (a, b)) when given. The whitened delta
 * is formed once, into `scratch` (m x n, overwritten: no spectrum keeps a view of it), and only
 * if a spectrum has to be computed.
 */
function countedSpectrum(
  x: NoisyMatrix, y: NoisyMatrix, a: Float64Array, b: Float64Array, gauge: GaugeFreedom, want: number, cap: number, limit: number, scratch: Float64Array,
  known: Spectrum | null = null,
): Spectrum {
  let whitened: Whitened | null = null;
  const at = (values: number) => spectrumOf(whitened ??= whiten(x, y, a, b, scratch), values, limit, gauge);
  let spectrum = known ?? at(want);
  while (spectrum.saturated && spectrum.s.length <= cap) spectrum = at(spectrum.s.length * 4);
  return spectrum;
}

/** Median-polish sweeps of the robust starting scales. */
const POLISH_SWEEPS = 4;

/** Lines gathered together when they are contiguous across (columns of a row-major matrix). */
const POLISH_BLOCK = 32;

/**
 * One median-polish half sweep: for each of `count` lines (rows or columns) of the log-ratio
 * matrix, the median over its `len` entries (at t*lineStride + s*entryStride) of the entry minus
 * the other side's current log scale at s; NaN entries (a zero on either side) are skipped.
 * Columns (lineStride 1) are gathered POLISH_BLOCK at a time, reading rows contiguously.
 */
function polishLines(logRatio: Float64Array, count: number, len: number, lineStride: number, entryStride: number, other: Float64Array, out: Float64Array): void {
  const block = lineStride === 1 ? POLISH_BLOCK : 1;
  const scratch = new Float64Array(block * len);
  const used = new Int32Array(block);
  for (let t0 = 0; t0 < count; t0 += block) {
    const lines = Math.min(block, count - t0);
    used.fill(0);
    for (let e = 0; e < len; e++) {
      const start = t0 * lineStride + e * entryStride, shift = other[e]!;
      for (let t = 0; t < lines; t++) {
        const l = logRatio[start + t * lineStride]!;
        if (!Number.isNaN(l)) scratch[t * len + used[t]!++] = l - shift;
      }
    }
    for (let t = 0; t < lines; t++) out[t0 + t] = used[t]! > 0 ? medianInPlace(scratch.subarray(t * len, (t + 1) * len), used[t]!) : 0;
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
    if (xv !== 0 && yv !== 0) logRatio[p] = fastLog(Math.abs(xv / yv));
  }
  const logA = new Float64Array(m), logB = new Float64Array(n);
  // With one side free the other stays 0: a second sweep would repeat the first.
  const sweeps = gauge.rows && gauge.cols ? POLISH_SWEEPS : 1;
  for (let sweep = 0; sweep < sweeps; sweep++) {
    if (gauge.rows) polishLines(logRatio, m, n, n, 1, logB, logA);
    if (gauge.cols) polishLines(logRatio, n, m, 1, n, logA, logB);
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
 * two sides are coupled. The whitening is the spectrum's own.
 */
function fitGauge(x: NoisyMatrix, y: NoisyMatrix, a: Float64Array, b: Float64Array, gauge: GaugeFreedom, spectrum: Spectrum, k: number): void {
  const values = (m: NoisyMatrix): Matrix => ({ rows: m.rows, cols: m.cols, data: m.values });
  const vectors = (side: Matrix | null): Matrix => {
    if (!side) throw new Error('fitGauge: a spectrum without the singular vectors of its gauge (fitted from a count of 0?)');
    return side;
  };
  const rows = gauge.rows ? new ScaleFit(values(x), values(y), y.variance, 'rows', spectrum.c, vectors(spectrum.v), k) : null;
  const cols = gauge.cols ? new ScaleFit(values(x), values(y), y.variance, 'cols', spectrum.r, vectors(spectrum.u), k) : null;
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

/**
 * Least-squares scale of each candidate line (row or column) against the base's, in whitened
 * units (the other side's entries divided by `unit`), both with the trial subspace projected out
 * (P = I - W W^T, W the first k singular vectors on the other side):
 *   s_t = <P y_t, P x_t> / |P y_t|^2 = (<y_t, x_t> - <W^T y_t, W^T x_t>) / (|y_t|^2 - |W^T y_t|^2),
 * with y_t already carrying the other side's current scales. |P y_t|^2 counts the candidate's
 * rounding noise besides its signal; its expected energy (the variances, weighted as y_t) is taken
 * out, or a coarse grid (4-bit) would shrink every fitted scale toward zero by the noise's share
 * (regression dilution) and read as a norm loss. The projections W^T x_t (fixed) and
 * W^T y_t (per fit) are thin products of the lines with weighted copies of W, and the inner
 * products one pass over both matrices; a column fit transposes the matrices once (the product
 * kernel reads lines as rows), not once a fit: at most one m x n array beside the inputs, as when
 * whitening.
 */
class ScaleFit {
  /** The first k singular vectors on the other side, as an other x k matrix. */
  private readonly basis: Matrix;
  private readonly inverseUnit: Float64Array;
  /** W^T x_t for every line t, lines x k. */
  private readonly baseInside: Matrix | null;
  /** The candidate's lines as rows (its transpose when fitting columns), made once for every fit. */
  private readonly candidateLines: Matrix | null;

  constructor(
    private readonly x: Matrix, private readonly y: Matrix, private readonly yVariance: Float32Array,
    private readonly side: 'rows' | 'cols', unit: Float64Array, vectors: Matrix, k: number,
  ) {
    const other = vectors.rows;
    const basis = new Float64Array(other * k);
    for (let e = 0; e < other; e++) for (let q = 0; q < k; q++) basis[e * k + q] = vectors.data[e * vectors.cols + q]!;
    this.basis = { rows: other, cols: k, data: basis };
    this.inverseUnit = Float64Array.from(unit, (u) => 1 / u);
    const lines = (m: Matrix) => (side === 'rows' ? m : transpose(m));
    this.baseInside = k > 0 ? this.project(lines(x), this.inverseUnit) : null;
    this.candidateLines = k > 0 ? lines(y) : null;
  }

  /**
   * W^T (line_t ∘ weight) for every line t (the rows of `lines`): lines x k, i.e. `lines` times
   * (W ∘ weight)^T stored k x other, through the fast kernel.
   */
  private project(lines: Matrix, weight: Float64Array): Matrix {
    const k = this.basis.cols, other = this.basis.rows;
    const weighted = new Float64Array(k * other);
    for (let e = 0; e < other; e++) for (let q = 0; q < k; q++) weighted[q * other + e] = this.basis.data[e * k + q]! * weight[e]!;
    return matmulTransB(lines, { rows: k, cols: other, data: weighted });
  }

  /** Expected rounding energy of each candidate line as the fit weighs it: sum over e of (weight_e)^2 var(line, e). */
  private noiseEnergy(weight: Float64Array, lines: number): Float64Array {
    const noise = new Float64Array(lines);
    const { rows: m, cols: n } = this.y, variance = this.yVariance;
    const w2 = Float64Array.from(weight, (w) => w * w);
    for (let i = 0; i < m; i++) {
      const row = i * n;
      if (this.side === 'rows') {
        let sum = 0;
        for (let j = 0; j < n; j++) sum += w2[j]! * variance[row + j]!;
        noise[i] = sum;
      } else {
        const wi = w2[i]!;
        for (let j = 0; j < n; j++) noise[j]! += wi * variance[row + j]!;
      }
    }
    return noise;
  }

  /** Writes the scale of every line into `out`, given the other side's scales. */
  fit(otherScale: Float64Array, out: Float64Array): void {
    const weight = Float64Array.from(otherScale, (v, e) => v * this.inverseUnit[e]!);
    const lines = out.length;
    const cross = new Float64Array(lines), square = new Float64Array(lines);
    const { rows: m, cols: n } = this.y, xv = this.x.data, yv = this.y.data, inverse = this.inverseUnit;
    // Two entries at a time (two sums per row, or two rows into the column sums): the single sum
    // chains, or the column sums' loads and stores, bounded this pass.
    if (this.side === 'rows') {
      for (let i = 0; i < m; i++) {
        const row = i * n;
        let c0 = 0, c1 = 0, q0 = 0, q1 = 0, j = 0;
        for (; j + 1 < n; j += 2) {
          const v0 = yv[row + j]! * weight[j]!, v1 = yv[row + j + 1]! * weight[j + 1]!;
          c0 += v0 * xv[row + j]! * inverse[j]!;
          c1 += v1 * xv[row + j + 1]! * inverse[j + 1]!;
          q0 += v0 * v0;
          q1 += v1 * v1;
        }
        if (j < n) {
          const v = yv[row + j]! * weight[j]!;
          c0 += v * xv[row + j]! * inverse[j]!;
          q0 += v * v;
        }
        cross[i] = c0 + c1;
        square[i] = q0 + q1;
      }
    } else {
      let i = 0;
      for (; i + 1 < m; i += 2) {
        const r0 = i * n, r1 = r0 + n;
        const w0 = weight[i]!, u0 = inverse[i]!, w1 = weight[i + 1]!, u1 = inverse[i + 1]!;
        for (let j = 0; j < n; j++) {
          const v0 = yv[r0 + j]! * w0, v1 = yv[r1 + j]! * w1;
          cross[j]! += v0 * xv[r0 + j]! * u0 + v1 * xv[r1 + j]! * u1;
          square[j]! += v0 * v0 + v1 * v1;
        }
      }
      if (i < m) {
        const row = i * n, w = weight[i]!, u = inverse[i]!;
        for (let j = 0; j < n; j++) {
          const v = yv[row + j]! * w;
          cross[j]! += v * xv[row + j]! * u;
          square[j]! += v * v;
        }
      }
    }
    const noise = this.noiseEnergy(weight, lines);
    const k = this.basis.cols;
    const inside = this.candidateLines ? this.project(this.candidateLines, weight).data : null;
    const baseInside = this.baseInside?.data;
    for (let t = 0; t < lines; t++) {
      let num = cross[t]!, den = square[t]!;
      if (inside && baseInside) {
        for (let q = 0; q < k; q++) {
          const w = inside[t * k + q]!;
          num -= w * baseInside[t * k + q]!;
          den -= w * w;
        }
      }
      // Noise that is most of a line's energy leaves no signal to fit: then it is not taken out.
      if (den - noise[t]! > 0.5 * den) den -= noise[t]!;
      out[t] = den > square[t]! * 1e-12 ? num / den : 1;
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

function norms(x: NoisyMatrix, y: NoisyMatrix, a: Float64Array, b: Float64Array): SquaredNorms {
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
    // A NaN compares false with the threshold and would count as no change: never let it through.
    if (spectrum && spectrum.s.some((v) => !Number.isFinite(v))) {
      throw new RangeError(`lowRankDelta: non-finite singular values of a ${m}x${n} delta (an overflow), not a rank`);
    }
    const rank = spectrum ? spectrum.count : 0;
    return {
      rank, lowRank: rank <= maxRank, spectrum: spectrum ? spectrum.s.slice(0, keep) : new Float64Array(0),
      // A spectrum's gauge is (a, b) (every state's spectrum is computed at its own scales).
      rowScale: a, colScale: b, ...(spectrum ? spectrum.norms : norms(base, candidate, a, b)),
    };
  };
  if (sameValues(base, candidate)) return finish(null, ones(m), ones(n));

  const { gauge } = options;
  const gauged = gauge.rows || gauge.cols;
  // With gauge freedom a dense-looking plain delta is only a starting point: no need to count it.
  // One m x n array serves every whitened delta of this fit (each is consumed by its spectrum).
  const scratch = options.scratch && options.scratch.length >= m * n ? options.scratch.subarray(0, m * n) : new Float64Array(m * n);
  const plain: GaugeState = { spectrum: countedSpectrum(base, candidate, ones(m), ones(n), gauge, MIN_VALUES, gauged ? 0 : maxRank, limit, scratch), a: ones(m), b: ones(n) };
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
    // A trial subspace holding every value above the edge leaves nothing above it to reduce: the
    // fit there only absorbs noise, so it is not tried (a leftover rescaling among the counted
    // directions is what the count - 1 trials look for).
    const proposal = proposals.find((p) => !tried.has(key(p)) && (spectrum.saturated || p.k < spectrum.count));
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
      const next: GaugeState = { spectrum: countedSpectrum(base, candidate, a, b, gauge, Math.max(MIN_VALUES, k + 8, spectrum.saturated ? spectrum.s.length : 0), cap, limit, scratch), a, b };
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
    // Dense in every gauge tried: the plain spectrum, counted on from its first values up to DENSE_CAP.
    const counted = finish(countedSpectrum(base, candidate, plain.a, plain.b, gauge, plain.spectrum.s.length, Math.min(maxRank, DENSE_CAP), limit, scratch, plain.spectrum), plain.a, plain.b);
    return origin === plain ? counted : { ...counted, robustScales: { rows: origin.a, cols: origin.b } };
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
