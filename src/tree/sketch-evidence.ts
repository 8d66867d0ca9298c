/**
 * Pairwise evidence from model sketches (src/sketch): for every pair of models, per matrix,
 * whether it changed, the rank of the change read against the storage-rounding noise, the
 * change's squared norm, and from those the pair's low-rank / dense verdict, distance, norm
 * growth (direction) and MoTHer's distances; relatedness from the matched-neuron test on the
 * projected gate/up rows.
 */
import { independenceTest, type NeuronRows } from '../align/independence.js';
import { MODULE_NAME, type LayerRole } from '../arch/types.js';
import { isFloatDType } from '../io/dtypes.js';
import { IncompatibleModelsError } from '../io/errors.js';
import type { Matrix } from '../linalg/matrix.js';
import { symmetricEigenvalues } from '../linalg/eig.js';
import { gram } from '../linalg/ops.js';
import { TRACY_WIDOM_1_QUANTILES, tracyWidomSingularValueThreshold } from '../stats/rank.js';
import type { MatrixSketch, ModelSketch, NeuronSketch, SketchView } from '../sketch/types.js';
import type { LowRankEvidence } from './forest.js';

export interface MatrixComparison {
  readonly layer: number;
  readonly role: LayerRole;
  /** The two sketches differ at all (equal weights on a common grid give equal sketches). */
  readonly changed: boolean;
  /** Singular values of the sketch difference above the noise edge. */
  readonly rank: number;
  /** rank > half the sketch size: a dense (full fine-tune) change. */
  readonly dense: boolean;
  /** ||S_a - S_b||²: unbiased estimate of ||W_a - W_b||_F^2 (the CountSketch has gain 1; exact when neither side is projected). */
  readonly deltaSquared: number;
  readonly squaredNormA: number;
  readonly squaredNormB: number;
  readonly rows: number;
  readonly cols: number;
  /** Smaller sketch side: the most a rank can read. */
  readonly sketchRank: number;
}

export interface SketchComparison {
  readonly matrices: readonly MatrixComparison[];
  /** Set when no changed matrix is dense. */
  readonly lowRank: LowRankEvidence | null;
  /** sqrt(sum ||dW||^2 / sum (||W_a||^2 + ||W_b||^2) / 2) over all matrices. */
  readonly relativeDistance: number;
  /** g(a -> b) over the changed matrices; undefined when nothing changed. */
  readonly normGrowth: number | undefined;
  /** MoTHer's distance: mean over square attention matrices of the RMS of the delta. */
  readonly attentionRms: number;
  /** MoTHer's LoRA distance: sum of ranks, a dense matrix counting its sketch rank. */
  readonly rankSum: number;
  /** log10 p-value of "independently initialised" (matched-neuron test); -Infinity if untestable. */
  readonly log10PValue: number;
}

/** Tracy-Widom quantile of the rank threshold: one noise singular value in 1000 passes it. */
const RANK_QUANTILE = TRACY_WIDOM_1_QUANTILES['0.999'];

/** Structure of a sketch that must agree for two models to be compared. */
export function sketchSignature(sketch: ModelSketch): string {
  return sketch.matrices.map((m) => `${m.layer}.${m.role}:${m.rows}x${m.cols}`).join(' ');
}

/** The views to compare: stored values on a common grid, else both rounded to bf16. */
function commonViews(a: MatrixSketch, b: MatrixSketch): [SketchView, SketchView] {
  if (a.storedDtype === b.storedDtype) return [a.views[0]!, b.views[0]!];
  const bf16 = (m: MatrixSketch) => m.views.find((v) => v.dtype === 'BF16') ?? m.views[0]!;
  return [bf16(a), bf16(b)];
}

/**
 * `readRank` false skips the rank (the costly part): a changed matrix is then taken as dense.
 */
export function compareMatrix(a: MatrixSketch, b: MatrixSketch, readRank = true): MatrixComparison {
  const [va, vb] = commonViews(a, b);
  const k1 = a.sketchRows, k2 = a.sketchCols;
  const diff = new Float64Array(k1 * k2);
  let sq = 0;
  for (let i = 0; i < diff.length; i++) {
    const d = va.sketch[i]! - vb.sketch[i]!;
    diff[i] = d;
    sq += d * d;
  }
  const sketchRank = Math.min(k1, k2);
  const base = {
    layer: a.layer, role: a.role, deltaSquared: sq, squaredNormA: va.squaredNorm, squaredNormB: vb.squaredNorm,
    rows: a.rows, cols: a.cols, sketchRank,
  };
  if (sq === 0) return { ...base, changed: false, rank: 0, dense: false };
  if (!readRank) return { ...base, changed: true, rank: sketchRank, dense: true };
  const threshold = noiseThreshold(a, va, vb);
  const rank = countSingularValuesAbove(diff, k1, k2, threshold);
  return { ...base, changed: true, rank, dense: rank > sketchRank / 2 };
}

/**
 * Largest singular value the rounding noise of the two models can reach in the sketch of
 * their difference. The noise has independent entries of uneven variance V_ij (the ulp grows
 * with |w|); each sketch entry sums the noise of its own block of W with signs, so the sketch's
 * noise has independent entries whose variance profile has exactly the row and column sums the
 * sketch keeps (rowVariance, columnVariance, added over the two models). Its edge is
 * sqrt(max row sum) + sqrt(max column sum) (Bandeira and van Handel; for even variance the
 * Marchenko-Pastur edge). The float32 storage of both sketches adds even noise. The edge is
 * raised by the Tracy-Widom 0.999 margin of a k1 x k2 noise matrix.
 */
export function noiseThreshold(m: MatrixSketch, a: SketchView, b: SketchView): number {
  const k1 = m.sketchRows, k2 = m.sketchCols;
  const storage = a.sketchRounding + b.sketchRounding;
  const rowSum = largestPairSum(a.rowVariance, b.rowVariance) + k2 * storage;
  const columnSum = largestPairSum(a.columnVariance, b.columnVariance) + k1 * storage;
  const tracyWidomMargin = tracyWidomSingularValueThreshold(k1, k2, 1, RANK_QUANTILE) / (Math.sqrt(k1) + Math.sqrt(k2));
  return (Math.sqrt(rowSum) + Math.sqrt(columnSum)) * tracyWidomMargin;
}

function largestPairSum(a: readonly number[], b: readonly number[]): number {
  let largest = 0;
  for (let i = 0; i < a.length; i++) largest = Math.max(largest, a[i]! + (b[i] ?? 0));
  return largest;
}

/**
 * Singular values of the k1 x k2 matrix above `threshold`, from the eigenvalues of its smaller
 * Gram matrix: several times faster than an SVD, and the squares lose nothing that matters
 * here (thresholds sit far above eps times the largest value).
 */
export function countSingularValuesAbove(data: Float64Array, k1: number, k2: number, threshold: number): number {
  const eigenvalues = symmetricEigenvalues(gram({ rows: k1, cols: k2, data }).matrix);
  const cut = threshold * threshold;
  let rank = 0;
  while (rank < eigenvalues.length && eigenvalues[rank]! > cut) rank++;
  return rank;
}

function toMatrix(values: Float32Array, rows: number, cols: number): Matrix {
  return { rows, cols, data: Float64Array.from(values) };
}

/** Matched-neuron independence test over the layers both sketches kept. */
export function relatednessLog10P(a: readonly NeuronSketch[], b: readonly NeuronSketch[]): number {
  const layers: NeuronRows[] = [];
  for (const na of a) {
    const nb = b.find((n) => n.layer === na.layer);
    if (!nb || nb.count !== na.count || nb.dim !== na.dim || na.count < 3) continue;
    layers.push({
      gateBase: toMatrix(na.gate, na.count, na.dim),
      upBase: toMatrix(na.up, na.count, na.dim),
      gateCandidate: toMatrix(nb.gate, nb.count, nb.dim),
      upCandidate: toMatrix(nb.up, nb.count, nb.dim),
    });
  }
  if (layers.length === 0) return -Infinity;
  return independenceTest(layers).log10PValue;
}

export interface CompareOptions {
  /**
   * log10 p-value above which the pair counts as unrelated: its ranks are then not read (no
   * edge can join it). Default: always read them.
   */
  readonly relatednessThreshold?: number;
}

/**
 * Ranks are read matrix by matrix until the first dense one: after that the pair is a dense
 * (full fine-tune) pair whatever the rest says, and each later changed matrix counts as dense
 * (its full sketch rank) in rankSum. That keeps the cost of a dense pair to about one rank.
 */
export function compareSketches(a: ModelSketch, b: ModelSketch, options: CompareOptions = {}): SketchComparison {
  if (sketchSignature(a) !== sketchSignature(b)) throw new IncompatibleModelsError('sketches of different architectures');
  const log10PValue = relatednessLog10P(a.neurons, b.neurons);
  let readRanks = log10PValue <= (options.relatednessThreshold ?? Infinity);
  const matrices = a.matrices.map((m, i) => {
    const c = compareMatrix(m, b.matrices[i]!, readRanks);
    if (c.dense) readRanks = false;
    return c;
  });
  let growth = 0, changedDelta = 0, delta = 0, norms = 0, rankSum = 0, rmsSum = 0, rmsCount = 0;
  let dense = false;
  const ranks: number[] = [];
  const modules = new Set<string>();
  for (const m of matrices) {
    delta += m.deltaSquared;
    norms += (m.squaredNormA + m.squaredNormB) / 2;
    if (isSquareAttention(m)) {
      rmsSum += Math.sqrt(m.deltaSquared / (m.rows * m.cols));
      rmsCount++;
    }
    if (!m.changed) continue;
    growth += m.squaredNormB - m.squaredNormA;
    changedDelta += m.deltaSquared;
    rankSum += m.dense ? m.sketchRank : m.rank;
    if (m.dense) dense = true;
    if (m.rank > 0) {
      ranks.push(m.rank);
      modules.add(MODULE_NAME[m.role] ?? m.role);
    }
  }
  const changed = matrices.some((m) => m.changed);
  const quantizedCopy = !dense && changed && ranks.length === 0 && (isQuantized(a) || isQuantized(b));
  return {
    matrices,
    lowRank: dense ? null : { rank: mostCommon(ranks), modules: [...modules].sort(), rankSum, ...(quantizedCopy ? { quantizedCopy } : {}) },
    relativeDistance: norms > 0 ? Math.sqrt(delta / norms) : 0,
    normGrowth: changedDelta > 0 ? growth / changedDelta : undefined,
    attentionRms: rmsCount ? rmsSum / rmsCount : 0,
    rankSum,
    log10PValue,
  };
}

/** Block-quantized storage (GGUF types: not a float dtype) in any matrix of the sketch. */
export function isQuantized(sketch: ModelSketch): boolean {
  return sketch.matrices.some((m) => !isFloatDType(m.storedDtype));
}

/**
 * The block-quantized types of the sketch's matrices, the most frequent first (ties by name),
 * joined by "+": "Q8_0", or "Q4_K+Q6_K" for a Q4_K_M mix; null when none is quantized.
 */
export function quantizationOf(sketch: ModelSketch): string | null {
  const counts = new Map<string, number>();
  for (const m of sketch.matrices) if (!isFloatDType(m.storedDtype)) counts.set(m.storedDtype, (counts.get(m.storedDtype) ?? 0) + 1);
  if (counts.size === 0) return null;
  return [...counts].sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1)).map(([type]) => type).join('+');
}

function isSquareAttention(m: MatrixComparison): boolean {
  return (m.role === 'q' || m.role === 'k' || m.role === 'v' || m.role === 'o') && m.rows === m.cols;
}

/** The most frequent value; ties go to the smaller one. 0 for an empty list. */
export function mostCommon(values: readonly number[]): number {
  const counts = new Map<number, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best = 0, bestCount = 0;
  for (const [v, c] of counts) {
    if (c > bestCount || (c === bestCount && v < best)) {
      best = v;
      bestCount = c;
    }
  }
  return best;
}
