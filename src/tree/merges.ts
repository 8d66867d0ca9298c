/**
 * Merges as multi-parent nodes, read off the sketches. Sketches are linear in the weights, so
 * the sketch of a merge M = sum_j c_j Q_j is sum_j c_j S(Q_j) up to storage rounding. For every
 * member M we fit S(M) by an affine combination (coefficients summing to 1) of the sketches of
 * other members of its family, adding members forward while each one removes a good share of
 * the residual. An affine fit is the right form for every merge method:
 * - linear: M = sum w_i P_i with sum w_i = 1;
 * - task arithmetic over a base X: M = X + sum l_i (P_i - X), i.e. coefficients l_i on the
 *   parents and 1 - sum l_i on X (negative when sum l_i > 1);
 * - TIES and DARE over X: not exactly in the span (trimmed / dropped entries), but their least
 *   squares fit over {X, P_i} leaves a residual far smaller than any single parent does.
 * Everything comes from one Gram matrix of the sketches per matrix (sketchGram), so the fits
 * cost nothing once the inner products are taken.
 *
 * A fine-tune adds an update of its own that no other member carries, so an ordinary child is
 * fitted by its parent alone and is never a merge. A merge adds nothing of its own, but linear
 * dependence is symmetric (a1 = (M - 0.4 a2) / 0.6 when M = 0.6 a1 + 0.4 a2); the merge is the
 * reading with positive parent weights and at most one negative member (the base), and when
 * several readings qualify the one whose base has the smallest norm (fine-tunes grow norms) wins.
 */
import type { ModelSketch, SketchView, MatrixSketch } from '../sketch/types.js';
import { countSingularValuesAbove, noiseThreshold } from './sketch-evidence.js';

export type MergeMethod = 'linear' | 'task_arithmetic' | 'ties' | 'dare' | 'unknown';

/** Inner products of every pair of the models' sketches, per matrix, on a common grid. */
export interface SketchGram {
  readonly models: number;
  readonly matrices: number;
  /** perMatrix[m][a * models + b] = <S_a, S_b> of matrix m. */
  readonly perMatrix: readonly Float64Array[];
  /** The sum over matrices. */
  readonly total: Float64Array;
  /** Expected squared norm of each model's storage rounding in the sketch, summed over matrices. */
  readonly rounding: Float64Array;
  /** views[m][model]: the views the inner products were taken on (for residuals' ranks). */
  readonly views: ReadonlyArray<readonly SketchView[]>;
  /** The matrices' layout (of the first model). */
  readonly layout: readonly MatrixSketch[];
}

/** Per matrix the stored views when every model stores it on one grid, else every model's bf16 view. */
function commonView(matrices: readonly MatrixSketch[]): SketchView[] {
  const sameGrid = matrices.every((m) => m.storedDtype === matrices[0]!.storedDtype);
  return matrices.map((m) => (sameGrid ? m.views[0]! : m.views.find((v) => v.dtype === 'BF16') ?? m.views[0]!));
}

export function sketchGram(sketches: readonly ModelSketch[]): SketchGram {
  const n = sketches.length;
  const matrixCount = sketches[0]?.matrices.length ?? 0;
  const perMatrix: Float64Array[] = [];
  const allViews: SketchView[][] = [];
  const total = new Float64Array(n * n);
  const rounding = new Float64Array(n);
  for (let m = 0; m < matrixCount; m++) {
    const views = commonView(sketches.map((s) => s.matrices[m]!));
    allViews.push(views);
    const dot = new Float64Array(n * n);
    for (let a = 0; a < n; a++) {
      const va = views[a]!.sketch;
      rounding[a] += views[a]!.roundingVariance + views[a]!.sketchRounding * va.length;
      for (let b = a; b < n; b++) {
        const vb = views[b]!.sketch;
        let s = 0;
        for (let i = 0; i < va.length; i++) s += va[i]! * vb[i]!;
        dot[a * n + b] = s;
        dot[b * n + a] = s;
      }
    }
    perMatrix.push(dot);
    for (let i = 0; i < dot.length; i++) total[i] += dot[i]!;
  }
  return { models: n, matrices: matrixCount, perMatrix, total, rounding, views: allViews, layout: sketches[0]?.matrices ?? [] };
}

/** ||sum_j w_j S_{idx_j}||^2 under the inner products `dot` (n x n). */
function combinationNorm(dot: Float64Array, n: number, idx: readonly number[], w: readonly number[]): number {
  let s = 0;
  for (let a = 0; a < idx.length; a++) {
    for (let b = 0; b < idx.length; b++) s += w[a]! * w[b]! * dot[idx[a]! * n + idx[b]!]!;
  }
  return s;
}

export function squaredDistance(gram: SketchGram, a: number, b: number, dot: Float64Array = gram.total): number {
  return combinationNorm(dot, gram.models, [a, b], [1, -1]);
}

export interface AffineFit {
  /** Fitted members (model indices) and their coefficients, which sum to 1. */
  readonly members: readonly number[];
  readonly coefficients: readonly number[];
  /** ||S(target) - sum c_j S(member_j)||^2 over all matrices. */
  readonly residual: number;
}

/**
 * Least squares fit of `target` by an affine combination of `members` (first member the anchor).
 * Null when the members are affinely dependent (e.g. two near-identical members).
 */
export function affineFit(gram: SketchGram, target: number, members: readonly number[]): AffineFit | null {
  const n = gram.models, K = gram.total;
  const q0 = members[0]!;
  const k = members.length - 1;
  const centred = (a: number, b: number) => K[a * n + b]! - K[a * n + q0]! - K[q0 * n + b]! + K[q0 * n + q0]!;
  const g = new Float64Array(k * k), rhs = new Float64Array(k);
  for (let i = 0; i < k; i++) {
    rhs[i] = centred(target, members[i + 1]!);
    for (let j = 0; j < k; j++) g[i * k + j] = centred(members[i + 1]!, members[j + 1]!);
  }
  const solution = solveSymmetric(g, rhs, k);
  if (!solution) return null;
  let explained = 0;
  for (let i = 0; i < k; i++) explained += solution[i]! * rhs[i]!;
  const coefficients = [1 - solution.reduce((s, x) => s + x, 0), ...solution];
  return { members: [...members], coefficients, residual: Math.max(0, centred(target, target) - explained) };
}

/** Cholesky solve; null when a pivot falls below 1e-10 of the diagonal's scale (a dependent set). */
function solveSymmetric(g: Float64Array, rhs: Float64Array, k: number): Float64Array | null {
  const l = new Float64Array(k * k);
  let scale = 0;
  for (let i = 0; i < k; i++) scale = Math.max(scale, g[i * k + i]!);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j <= i; j++) {
      let s = g[i * k + j]!;
      for (let t = 0; t < j; t++) s -= l[i * k + t]! * l[j * k + t]!;
      if (i === j) {
        if (!(s > 1e-10 * scale)) return null;
        l[i * k + i] = Math.sqrt(s);
      } else {
        l[i * k + j] = s / l[j * k + j]!;
      }
    }
  }
  const y = new Float64Array(k);
  for (let i = 0; i < k; i++) {
    let s = rhs[i]!;
    for (let t = 0; t < i; t++) s -= l[i * k + t]! * y[t]!;
    y[i] = s / l[i * k + i]!;
  }
  const x = new Float64Array(k);
  for (let i = k - 1; i >= 0; i--) {
    let s = y[i]!;
    for (let t = i + 1; t < k; t++) s -= l[t * k + i]! * x[t]!;
    x[i] = s / l[i * k + i]!;
  }
  return x;
}

/** A member added to a fit must remove at least this share of the residual left before it. */
export const MIN_MEMBER_GAIN = 0.15;
/** A merge's fit leaves at most this share of what its nearest single member leaves. */
export const MERGE_RESIDUAL_SHARE = 0.5;
/** A residual within this factor of the expected storage rounding is an exact combination. */
export const EXACT_FACTOR = 4;
/** At most this many members (parents and base) per merge. */
export const MAX_MERGE_MEMBERS = 6;

export interface MergeFit extends AffineFit {
  readonly target: number;
  /** Residual of the nearest single member: what an ordinary edge would leave. */
  readonly singleResidual: number;
  /** The residual's expected value if the combination were exact (storage rounding). */
  readonly roundingFloor: number;
}

/**
 * Forward selection of members explaining `target` among `candidates`, started from every
 * candidate in turn (a merge over a base is reached from its base, whose nearest single member
 * may be one of the parents); the fit with the least residual wins.
 */
export function forwardFit(gram: SketchGram, target: number, candidates: readonly number[]): MergeFit | null {
  if (candidates.length === 0) return null;
  const distances = candidates.map((c) => squaredDistance(gram, target, c));
  const singleResidual = Math.min(...distances);
  const floorOf = (f: AffineFit) => gram.rounding[target]! + f.members.reduce((s, m, i) => s + f.coefficients[i]! ** 2 * gram.rounding[m]!, 0);
  let best: AffineFit | null = null;
  candidates.forEach((start, s) => {
    let fit: AffineFit = { members: [start], coefficients: [1], residual: distances[s]! };
    while (fit.members.length < MAX_MERGE_MEMBERS && fit.residual > EXACT_FACTOR * floorOf(fit)) {
      let step: AffineFit | null = null;
      for (const c of candidates) {
        if (fit.members.includes(c)) continue;
        const next = affineFit(gram, target, [...fit.members, c]);
        if (next && (!step || next.residual < step.residual)) step = next;
      }
      if (!step || step.residual > (1 - MIN_MEMBER_GAIN) * fit.residual) break;
      fit = step;
    }
    fit = pruned(gram, target, fit);
    if (!best || fit.residual < best.residual) best = fit;
  });
  return { ...best!, target, singleResidual, roundingFloor: floorOf(best!) };
}

/** Drops members (the start among them) whose removal raises the residual by less than MIN_MEMBER_GAIN would. */
function pruned(gram: SketchGram, target: number, fit: AffineFit): AffineFit {
  let current = fit;
  for (;;) {
    if (current.members.length <= 1) return current;
    let best: AffineFit | null = null;
    for (const drop of current.members) {
      const rest = current.members.filter((m) => m !== drop);
      const next = rest.length === 1
        ? { members: rest, coefficients: [1], residual: squaredDistance(gram, target, rest[0]!) }
        : affineFit(gram, target, rest);
      if (next && (!best || next.residual < best.residual)) best = next;
    }
    if (!best || (1 - MIN_MEMBER_GAIN) * best.residual > current.residual) return current;
    current = best;
  }
}

/** An inexact (TIES / DARE) merge leaves at most this share of its nearest single member's residual. */
export const SPARSE_MERGE_RESIDUAL_SHARE = 0.8;
/**
 * No other member's task vector may explain more than this share of an inexact merge's residual:
 * dropped or trimmed entries are uncorrelated with every model, while reading a model from its
 * descendants (which carry its update mixed with others') leaves those others' updates behind.
 */
export const CLEAN_RESIDUAL_SHARE = 0.05;
/** Largest relative spread of the per-matrix residual law (see sparseLaw) an inexact merge may show. */
export const LAW_SPREAD = 0.3;

export interface MergeReading {
  readonly target: number;
  readonly parents: readonly number[];
  /** Coefficient of each parent (task arithmetic / TIES / DARE: of its task vector over the base). */
  readonly weights: readonly number[];
  readonly base: number | null;
  readonly method: MergeMethod;
  /** Kept share of each parent's entries when the merge drops or trims entries. */
  readonly density: number | null;
  /** Residual over the nearest single member's residual. */
  readonly residualShare: number;
  /** Residual over its expected storage rounding (about 1 or less for an exact combination). */
  readonly residualOverRounding: number;
  readonly exact: boolean;
}

const norm2 = (gram: SketchGram, i: number) => gram.total[i * gram.models + i]!;

/** The exact reading of a fit, or null: positive parents (two or more) and at most one negative member, the base. */
function exactReading(gram: SketchGram, fit: MergeFit): MergeReading | null {
  const negative = fit.members.filter((_, i) => fit.coefficients[i]! < 0);
  const positive = fit.members.filter((_, i) => fit.coefficients[i]! > 0);
  if (positive.length < 2 || negative.length > 1) return null;
  let base = negative[0] ?? null;
  // A base is the parents' ancestor: fine-tunes grow norms, so it is the smallest of them.
  if (base !== null && positive.some((p) => norm2(gram, p) < norm2(gram, base))) return null;
  // Task arithmetic with weights summing below 1 keeps the base at a positive coefficient: the
  // smallest member is that base when the others' updates from it are independent.
  if (base === null && positive.length >= 3) {
    const smallest = positive.reduce((a, b) => (norm2(gram, b) < norm2(gram, a) ? b : a));
    if (independentUpdates(gram, smallest, positive.filter((p) => p !== smallest))) base = smallest;
  }
  const parents = positive.filter((p) => p !== base);
  return {
    target: fit.target,
    parents,
    weights: parents.map((p) => fit.coefficients[fit.members.indexOf(p)]!),
    base,
    method: base === null ? 'linear' : 'task_arithmetic',
    density: null,
    residualShare: fit.residual / fit.singleResidual,
    residualOverRounding: fit.residual / fit.roundingFloor,
    exact: true,
  };
}

/** Largest |cosine| between two members' updates from a common parent (independent fine-tunes: about 0). */
export const INDEPENDENT_COSINE = 0.25;

/** Are the changes from `base` to each of `members` pairwise nearly orthogonal (as fine-tunes of it are)? */
function independentUpdates(gram: SketchGram, base: number, members: readonly number[]): boolean {
  const n = gram.models, K = gram.total;
  const dot = (a: number, b: number) => K[a * n + b]! - K[a * n + base]! - K[base * n + b]! + K[base * n + base]!;
  for (let i = 0; i < members.length; i++) {
    for (let j = i + 1; j < members.length; j++) {
      const [a, b] = [members[i]!, members[j]!];
      if (Math.abs(dot(a, b)) > INDEPENDENT_COSINE * Math.sqrt(dot(a, a) * dot(b, b))) return false;
    }
  }
  return true;
}

/**
 * Per matrix, the residual of M - X - sum w_i T_i over sum w_i^2 ||T_i||^2. Dropping each entry
 * with probability 1 - p and rescaling the kept ones by 1 / p (DARE) leaves exactly
 * (1 - p) / p of it in every matrix; trimming small entries (TIES) leaves a similar steady share.
 * Returns the share's energy-weighted mean and its relative spread over the changed matrices.
 */
function sparseLaw(gram: SketchGram, target: number, base: number, parents: readonly number[], weights: readonly number[]) {
  const n = gram.models;
  const members = [target, base, ...parents];
  const baseWeight = -(1 - weights.reduce((s, w) => s + w, 0));
  const coefficients = [1, baseWeight, ...weights.map((w) => -w)];
  const ratios: number[] = [], energies: number[] = [];
  for (const dot of gram.perMatrix) {
    let expected = 0;
    parents.forEach((p, i) => { expected += weights[i]! ** 2 * combinationNorm(dot, n, [p, base], [1, -1]); });
    if (!(expected > 0)) continue;
    ratios.push(combinationNorm(dot, n, members, coefficients) / expected);
    energies.push(expected);
  }
  const total = energies.reduce((s, e) => s + e, 0);
  const mean = ratios.reduce((s, r, i) => s + r * energies[i]!, 0) / total;
  const variance = ratios.reduce((s, r, i) => s + (r - mean) ** 2 * energies[i]!, 0) / total;
  return { ratio: mean, spread: mean > 0 ? Math.sqrt(variance) / mean : Infinity };
}

/**
 * Scales of kept entries read as TIES (entries at their own values). The pooled kept share
 * reads a parent outvoted by sign election or averaged on overlaps below 1, so the range
 * reaches down further than up.
 */
export const TIES_SCALES = { low: 0.6, high: 1.25 } as const;

/**
 * A merge that keeps a share of each parent's entries at scale c_i and drops the rest leaves
 * least-squares weights w_i = c_i f and the law's ratio (1 - f) / f, f the kept share of the
 * energy. Kept entries at their own values (c = 1: TIES, which trims by magnitude, so f is an
 * energy share, not its density; weights c_i) or rescaled (DARE: f its density, weights w_i).
 * A DARE whose weight equals its density also keeps c = 1 and reads as TIES, and a TIES with
 * weights other than 1 reads as DARE: the sketches see the kept entries' scale, not how they
 * were chosen.
 */
function sparseMethod(weights: readonly number[], ratio: number): Pick<MergeReading, 'method' | 'weights' | 'density'> {
  const kept = 1 / (1 + ratio);
  const scales = weights.map((w) => w / kept);
  if (scales.every((c) => c >= TIES_SCALES.low && c <= TIES_SCALES.high)) return { method: 'ties', weights: scales, density: null };
  return { method: 'dare', weights, density: kept };
}

/**
 * Is the residual S(M) - sum c_j S(Q_j) dense (rank above half the sketch) in the matrix where it
 * is largest? Dropping or trimming entries leaves per-entry noise of full rank even when the
 * parents' changes are low rank; an update of the target's own that the fit cannot explain (a
 * LoRA sibling read as a merge of its siblings) is low rank. The noise edge is that of the
 * combination's rounding: the views' variance profiles summed with the squared coefficients.
 */
function denseResidual(gram: SketchGram, members: readonly number[], coefficients: readonly number[]): boolean {
  let largest = -1, energy = 0;
  gram.perMatrix.forEach((dot, m) => {
    const e = combinationNorm(dot, gram.models, members, coefficients);
    if (e > energy) [largest, energy] = [m, e];
  });
  if (largest < 0) return false;
  const matrix = gram.layout[largest]!;
  const views = members.map((v) => gram.views[largest]![v]!);
  const residual = new Float64Array(views[0]!.sketch.length);
  views.forEach((view, k) => { for (let i = 0; i < residual.length; i++) residual[i] += coefficients[k]! * view.sketch[i]!; });
  const weighted = (pick: (v: SketchView) => readonly number[]) =>
    pick(views[0]!).map((_, i) => views.reduce((s, v, k) => s + coefficients[k]! ** 2 * pick(v)[i]!, 0));
  const combined: SketchView = {
    ...views[0]!, rowVariance: weighted((v) => v.rowVariance), columnVariance: weighted((v) => v.columnVariance),
    sketchRounding: views.reduce((s, v, k) => s + coefficients[k]! ** 2 * v.sketchRounding, 0),
  };
  const silent: SketchView = { ...combined, rowVariance: [], columnVariance: [], sketchRounding: 0 };
  const rank = countSingularValuesAbove(residual, matrix.sketchRows, matrix.sketchCols, noiseThreshold(matrix, combined, silent));
  return rank > Math.min(matrix.sketchRows, matrix.sketchCols) / 2;
}

/**
 * Forward selection of parents over a fixed base (never dropped). A parent is added while it
 * removes more than CLEAN_RESIDUAL_SHARE of the residual: a weak parent (small task vector, most
 * entries dropped) still explains that much, and a reading that leaves it out would fail the
 * cleanliness check anyway.
 */
function fitOverBase(gram: SketchGram, target: number, base: number, candidates: readonly number[]): AffineFit {
  let fit: AffineFit = { members: [base], coefficients: [1], residual: squaredDistance(gram, target, base) };
  for (;;) {
    if (fit.members.length >= MAX_MERGE_MEMBERS) return fit;
    let step: AffineFit | null = null;
    for (const c of candidates) {
      if (c === base || fit.members.includes(c)) continue;
      const next = affineFit(gram, target, [...fit.members, c]);
      if (next && (!step || next.residual < step.residual)) step = next;
    }
    if (!step || step.residual > (1 - CLEAN_RESIDUAL_SHARE) * fit.residual) return fit;
    fit = step;
  }
}

/**
 * The inexact (TIES / DARE) reading of `target` over the best base among `candidates`, or null.
 * `others` (every other family member, exact merges too) set the nearest single residual and the
 * cleanliness check: a fine-tune of a merge is nearer to that merge than any reading over its parents.
 */
function sparseReading(gram: SketchGram, target: number, candidates: readonly number[], others: readonly number[]): MergeReading | null {
  const singleResidual = Math.min(...others.map((c) => squaredDistance(gram, target, c)));
  let best: MergeReading | null = null;
  for (const base of candidates) {
    // A merge adds its parents' updates to the base, and drops or trims less than it adds: its norm
    // exceeds the base's and each parent's (fine-tunes grow norms; a model averaged from its own
    // fine-tunes would be smaller than they are).
    if (norm2(gram, base) >= norm2(gram, target)) continue;
    const fit = fitOverBase(gram, target, base, candidates);
    const parents = fit.members.slice(1);
    const weights = fit.coefficients.slice(1);
    if (parents.length < 2 || weights.some((w) => w <= 0)) continue;
    if (parents.some((p) => norm2(gram, p) <= norm2(gram, base) || norm2(gram, p) >= norm2(gram, target))) continue;
    const share = fit.residual / singleResidual;
    if (share > SPARSE_MERGE_RESIDUAL_SHARE || (best && fit.residual >= best.residualShare * singleResidual)) continue;
    let cleanest = 0;
    for (const other of others) {
      if (fit.members.includes(other)) continue;
      const wider = affineFit(gram, target, [...fit.members, other]);
      if (wider) cleanest = Math.max(cleanest, 1 - wider.residual / fit.residual);
    }
    if (cleanest > CLEAN_RESIDUAL_SHARE) continue;
    const law = sparseLaw(gram, target, base, parents, weights);
    if (law.spread > LAW_SPREAD) continue;
    if (!denseResidual(gram, [target, ...fit.members], [1, ...fit.coefficients.map((c) => -c)])) continue;
    const floor = gram.rounding[target]! + fit.members.reduce((s, m, i) => s + fit.coefficients[i]! ** 2 * gram.rounding[m]!, 0);
    best = {
      target, parents, base, ...sparseMethod(weights, law.ratio),
      residualShare: share, residualOverRounding: fit.residual / floor, exact: false,
    };
  }
  return best;
}

/**
 * Merges among each family's members (indices into the gram): exact combinations first (linear,
 * task arithmetic), then inexact ones (entries trimmed or dropped) among the rest. Readings are
 * accepted best first (exact, then smaller residual share, then smaller base norm, then key); a
 * model that is a parent or base of an accepted merge is not a merge itself, and no merge may be
 * its own ancestor.
 */
export function detectMerges(gram: SketchGram, families: ReadonlyArray<readonly number[]>, keys: readonly string[]): MergeReading[] {
  const accepted: MergeReading[] = [];
  for (const family of families) {
    if (family.length < 3) continue;
    const exact: MergeReading[] = [];
    for (const target of family) {
      const fit = forwardFit(gram, target, family.filter((m) => m !== target));
      if (!fit || fit.residual > EXACT_FACTOR * fit.roundingFloor || fit.residual > MERGE_RESIDUAL_SHARE * fit.singleResidual) continue;
      const reading = exactReading(gram, fit);
      if (reading) exact.push(reading);
    }
    const chosen = acceptReadings(gram, exact, keys, []);
    const merged = new Set(chosen.map((r) => r.target));
    const rest = family.filter((m) => !merged.has(m));
    const sparse: MergeReading[] = [];
    for (const target of rest) {
      const reading = sparseReading(gram, target, rest.filter((m) => m !== target), family.filter((m) => m !== target));
      if (reading) sparse.push(reading);
    }
    accepted.push(...acceptReadings(gram, sparse, keys, chosen), ...chosen);
  }
  return accepted.sort((a, b) => a.target - b.target);
}

function acceptReadings(gram: SketchGram, readings: readonly MergeReading[], keys: readonly string[], already: readonly MergeReading[]): MergeReading[] {
  const baseNorm = (r: MergeReading) => (r.base === null ? 0 : norm2(gram, r.base));
  const order = [...readings].sort((a, b) =>
    a.residualShare - b.residualShare || baseNorm(a) - baseNorm(b) || (keys[a.target]! < keys[b.target]! ? -1 : 1));
  const chosen: MergeReading[] = [];
  const sources = (r: MergeReading) => (r.base === null ? r.parents : [...r.parents, r.base]);
  for (const r of order) {
    const all = [...already, ...chosen];
    if (all.some((a) => sources(a).includes(r.target))) continue;
    if (all.some((a) => sources(r).includes(a.target) && dependsOn(a, r.target, all, sources))) continue;
    chosen.push(r);
  }
  return chosen;
}

/** Does merge `a` have `model` among its sources, directly or through other merges? */
function dependsOn(a: MergeReading, model: number, all: readonly MergeReading[], sources: (r: MergeReading) => readonly number[]): boolean {
  const seen = new Set<number>();
  const stack = [...sources(a)];
  while (stack.length) {
    const m = stack.pop()!;
    if (m === model) return true;
    if (seen.has(m)) continue;
    seen.add(m);
    const merge = all.find((r) => r.target === m);
    if (merge) stack.push(...sources(merge));
  }
  return false;
}
