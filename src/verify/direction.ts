/**
 * Direction read component by component: tells siblings of different kinds from parent and child.
 *
 * The norm growth g = (|C|^2 - |B|^2) / |D|^2 of the whole delta D = C - B decides `derived` at
 * 1/2. Two children of one root R, B = R + L (a LoRA) and C = R + F (a dense fine-tune), give
 * D = F - L and g ~ (|F|^2 - |L|^2) / (|F|^2 + |L|^2): above 1/2 as soon as the dense update is
 * the larger, though C lacks what B has. So D is split into its low-rank spike S (the singular
 * directions standing out of the dense rest) and that rest, and the growth of each is read:
 * g_S = 1 + 2 <B, S> / |S|^2. A part CANDIDATE added independently of BASE reads ~ +1 (<B, S> is
 * noise, of standard deviation |S| times B's RMS entry); a part BASE has and CANDIDATE lacks
 * (S = -L, B = R + L) reads ~ -1. Siblings: the spike reads below the dense rest and <B, S> is
 * negative beyond its noise; parent -> child: neither (a LoRA nephew, D = F + L2 - L1, reads
 * g_S ~ 0 with <B, S> = -|L1|^2, far beyond the noise too).
 *
 * Gauge: the delta is read on the aligned, norm-folded weights in the gauge of the rank fit
 * (noise/delta-rank.ts): exact for a low-rank delta; for a dense one, robust median-polish row and column
 * scales over the same function-preserving freedoms. They take out an obfuscator's rescalings and
 * a fine-tuned norm gain (on folded weights a change of BASE's own columns, whose growth is noise
 * of either sign as large as 1 / (gain change x sqrt(width))), and barely move for an update
 * spread over many entries; what they do absorb of a large dense update lowers both components'
 * growth alike (the rule compares the two).
 *
 * Nothing is tuned: the spike edge is the bulk edge of the rest (Bandeira-van Handel, as in
 * noise/delta-rank.ts, on the delta whitened by the rest's own row and column energies), the level is
 * RELATED_P's.
 */
import type { LowRankResult } from '../noise/delta-rank.js';
import type { NoisyMatrix } from '../noise/noisy-matrix.js';
import type { Matrix } from '../linalg/matrix.js';
import { Rng } from '../linalg/rng.js';
import { randomizedSvd, svdViaGram } from '../linalg/svd.js';
import { normalCdf } from '../stats/hypothesis-tests.js';
import type { LayerEvidence, Relation } from './types.js';

/** Spike directions read per module at most: the strongest ones carry the evidence. */
export const SPIKE_DIRECTIONS = 24;

/** Smaller sides up to this get an exact SVD (Gram route); larger ones a randomized top-k. */
const EXACT_SIDE = 160;

/** One-sided level at which the spike is said to be BASE's (as a shared origin is claimed at RELATED_P). */
export const LACKED_P = 1e-3;

/** Sums over changed modules of what their spike and dense parts show (additive across modules and layers). */
export interface ComponentSums {
  /** Growth numerator (|C|^2 - |B|^2 restricted to the part) and energy |D|^2 of the spike directions. */
  readonly spikeNum: number;
  readonly spikeEnergy: number;
  /** The same for the dense rest. */
  readonly denseNum: number;
  readonly denseEnergy: number;
  /** Spike directions read. */
  readonly directions: number;
  /** Variance of <B, S> if the spike S owed nothing to B: sum over modules of (B's mean square entry) |S|^2. */
  readonly spikeNoise: number;
}

export const NO_COMPONENTS: ComponentSums = { spikeNum: 0, spikeEnergy: 0, denseNum: 0, denseEnergy: 0, directions: 0, spikeNoise: 0 };

export function addComponents(a: ComponentSums, b: ComponentSums): ComponentSums {
  return {
    spikeNum: a.spikeNum + b.spikeNum,
    spikeEnergy: a.spikeEnergy + b.spikeEnergy,
    denseNum: a.denseNum + b.denseNum,
    denseEnergy: a.denseEnergy + b.denseEnergy,
    directions: a.directions + b.directions,
    spikeNoise: a.spikeNoise + b.spikeNoise,
  };
}

/**
 * One changed module's components: `base` and `candidate` aligned and norm-folded, `fit` its
 * low-rank fit (whose scales are exact when the delta is low-rank).
 */
export function moduleComponents(base: NoisyMatrix, candidate: NoisyMatrix, fit: LowRankResult): ComponentSums {
  const m = base.rows, n = base.cols;
  // A dense delta is read in the robust scales its fit started from (the fit keeps the plain gauge for it).
  const a = fit.robustScales?.rows ?? fit.rowScale, b = fit.robustScales?.cols ?? fit.colScale;
  const x = base.values, y = candidate.values;
  const delta = new Float64Array(m * n);
  let baseSq = 0, candidateSq = 0, deltaSq = 0;
  const rowSq = new Float64Array(m), colSq = new Float64Array(n);
  for (let i = 0; i < m; i++) {
    const ai = a[i]!, row = i * n;
    for (let j = 0; j < n; j++) {
      const p = row + j, xv = x[p]!, yv = ai * y[p]! * b[j]!, d = yv - xv;
      delta[p] = d;
      baseSq += xv * xv;
      candidateSq += yv * yv;
      const dd = d * d;
      deltaSq += dd;
      rowSq[i]! += dd;
      colSq[j]! += dd;
    }
  }
  if (deltaSq === 0) return NO_COMPONENTS;
  // Whitened by the rest's rank-one energy profile (rows r, columns c): a dense update's energy is
  // uneven over rows and columns (BASE's own scales, fine-tuned norm gains), which would lift the
  // max-line-sum edge far above its true bulk; whitened, the edge is tight (near Marchenko-Pastur).
  const r = Float64Array.from(rowSq, (e) => Math.sqrt(e / (deltaSq / m)) || 1);
  const c = Float64Array.from(colSq, (e) => Math.sqrt(e / (deltaSq / n)) || 1);
  const whitened = new Float64Array(m * n);
  rowSq.fill(0);
  colSq.fill(0);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const w = delta[i * n + j]! / (r[i]! * c[j]!);
      whitened[i * n + j] = w;
      rowSq[i]! += w * w;
      colSq[j]! += w * w;
    }
  }
  const w: Matrix = { rows: m, cols: n, data: whitened };
  const k = Math.min(SPIKE_DIRECTIONS, m, n);
  const top = Math.min(m, n) <= EXACT_SIDE ? svdViaGram(w, { leading: k }) : randomizedSvd(w, k, { oversample: 8, powerIters: 1, rng: new Rng(11) });
  const spikes = spikeCount(top.s, top.u!, top.v!, rowSq, colSq, k);
  // The spike in the weights' own coordinates: S = sum_t s_t (r u_t)(c v_t)^T.
  const left = columnsScaled(top.u!, r, spikes), right = columnsScaled(top.v!, c, spikes);
  let alongBase = 0, alongDelta = 0, spikeSq = 0;
  for (let t = 0; t < spikes; t++) {
    const st = top.s[t]!;
    alongBase += st * bilinear(x, n, left[t]!, right[t]!);
    alongDelta += st * bilinear(delta, n, left[t]!, right[t]!);
    for (let q = 0; q < spikes; q++) spikeSq += st * top.s[q]! * dot(left[t]!, left[q]!) * dot(right[t]!, right[q]!);
  }
  // |C|^2 - |B|^2 = 2 <B, D> + <D, D>, split along D = S + rest.
  const spikeNum = 2 * alongBase + alongDelta;
  return {
    spikeNum, spikeEnergy: alongDelta,
    denseNum: candidateSq - baseSq - spikeNum, denseEnergy: deltaSq - alongDelta,
    directions: spikes, spikeNoise: (baseSq / (m * n)) * spikeSq,
  };
}

/** A changed module of a layer, aligned and norm-folded, with its low-rank fit. */
export interface ChangedModule {
  readonly base: NoisyMatrix;
  readonly candidate: NoisyMatrix;
  readonly fit: LowRankResult;
  readonly dense: boolean;
}

/**
 * The components of a layer's changed modules, read only when one of them changed densely: the
 * verdict uses them only with a dense change (siblingsOfDifferentKinds), and each costs a
 * randomized SVD, which a LoRA or quantized candidate's layers would pay for nothing.
 * `layerDense`: a layer analysed in parts (layer.ts) passes whether any part changed densely.
 */
export function layerComponents(changed: readonly ChangedModule[], layerDense = changed.some((m) => m.dense)): ComponentSums {
  if (!layerDense) return NO_COMPONENTS;
  return changed.reduce((sum, m) => addComponents(sum, moduleComponents(m.base, m.candidate, m.fit)), NO_COMPONENTS);
}

/** The first `count` columns of `vectors`, each multiplied entrywise by `scale`. */
function columnsScaled(vectors: Matrix, scale: Float64Array, count: number): Float64Array[] {
  return Array.from({ length: count }, (_, t) => Float64Array.from(scale, (f, i) => f * vectors.data[i * vectors.cols + t]!));
}

function dot(p: Float64Array, q: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < p.length; i++) sum += p[i]! * q[i]!;
  return sum;
}

/**
 * How many of the leading singular values (at most `k`) stand above the bulk edge of the rest:
 * sqrt(max row sum) + sqrt(max column sum) of the rest's squared entries, the spike directions'
 * own energy taken out of the sums, recounted until the count settles.
 */
function spikeCount(s: Float64Array, u: Matrix, v: Matrix, rowSq: Float64Array, colSq: Float64Array, k: number): number {
  let count = 0;
  for (let round = 0; round < 8; round++) {
    const edge = Math.sqrt(restMax(rowSq, u, s, count)) + Math.sqrt(restMax(colSq, v, s, count));
    let next = 0;
    while (next < k && s[next]! > edge) next++;
    if (next === count) break;
    count = next;
  }
  return count;
}

/** Largest line sum of squares once the first `count` directions' energy is taken out. */
function restMax(lineSq: Float64Array, vectors: Matrix, s: Float64Array, count: number): number {
  let max = 0;
  for (let i = 0; i < lineSq.length; i++) {
    let sum = lineSq[i]!;
    for (let t = 0; t < count; t++) {
      const w = vectors.data[i * vectors.cols + t]! * s[t]!;
      sum -= w * w;
    }
    max = Math.max(max, sum);
  }
  return max;
}

/** p^T M q for a row-major M with `n` columns. */
function bilinear(values: Float64Array, n: number, p: Float64Array, q: Float64Array): number {
  let total = 0;
  for (let i = 0; i < p.length; i++) {
    const pi = p[i]!;
    if (pi === 0) continue;
    let sum = 0;
    for (let j = 0; j < n; j++) sum += values[i * n + j]! * q[j]!;
    total += pi * sum;
  }
  return total;
}

/** The components as reported (verify's JSON direction block). */
export interface DirectionComponents {
  /** Norm growth of the low-rank spike of the delta (null when it has none). */
  readonly lowRankGrowth: number | null;
  /** Norm growth of the dense rest (null when there is none). */
  readonly denseGrowth: number | null;
  /** Share of |D|^2 in the spike, and how many directions it has (over all modules). */
  readonly lowRankShare: number;
  readonly lowRankDirections: number;
  /**
   * <B, S> / its standard deviation were the spike S independent of BASE: ~0 when CANDIDATE added
   * it, about -|S| / (B's RMS entry) when BASE has it and CANDIDATE lacks it (0 when no spike).
   */
  readonly lowRankZ: number;
}

export function summarizeComponents(sums: ComponentSums): DirectionComponents {
  const total = sums.spikeEnergy + sums.denseEnergy;
  return {
    lowRankGrowth: sums.spikeEnergy > 0 ? sums.spikeNum / sums.spikeEnergy : null,
    denseGrowth: sums.denseEnergy > 0 ? sums.denseNum / sums.denseEnergy : null,
    lowRankShare: total > 0 ? sums.spikeEnergy / total : 0,
    lowRankDirections: sums.directions,
    lowRankZ: sums.spikeNoise > 0 ? (sums.spikeNum - sums.spikeEnergy) / 2 / Math.sqrt(sums.spikeNoise) : 0,
  };
}

/**
 * BASE has low-rank directions CANDIDATE lacks: the spike reads below what an added update reads,
 * both against the noise of <B, S> (one-sided, at LACKED_P) and against the dense rest of the same
 * delta (the pair's own reading of an added update). A dense delta is needed: without one the
 * rest is storage rounding, whose growth says nothing.
 */
export function candidateLacksBaseDirections(c: DirectionComponents): boolean {
  return c.lowRankGrowth !== null && c.denseGrowth !== null && c.lowRankGrowth < c.denseGrowth && normalCdf(c.lowRankZ) < LACKED_P;
}

/** What the components show, for a reason line. */
export function describeComponents(c: DirectionComponents): string {
  const growth = (g: number | null) => (g === null ? 'none' : g.toFixed(2));
  return `growth of the low-rank part of the change ${growth(c.lowRankGrowth)} (${c.lowRankDirections} directions, z = ${c.lowRankZ.toFixed(1)} against BASE), of the dense rest ${growth(c.denseGrowth)}`;
}

interface Verdict {
  readonly relation: Relation;
  readonly reason: string;
  readonly lora: unknown;
  readonly fullFineTune: boolean;
}

/**
 * A `derived` verdict with a dense change, turned `related` when BASE has low-rank directions
 * CANDIDATE lacks; a derived one's reason gains the components. Pruning (zeroed neurons in
 * CANDIDATE only) is evidence of descent of its own and keeps its verdict. `p`: the shared
 * origin's p-value as the reason lines print it; `growth` the whole change's norm growth.
 */
export function siblingsOfDifferentKinds<V extends Verdict>(verdict: V, c: DirectionComponents, layers: readonly LayerEvidence[], p: string, growth: number): V {
  if (verdict.relation !== 'derived' || !verdict.fullFineTune) return verdict;
  const pruned = layers.some((l) => l.prunedNeurons.candidate > 0);
  if (pruned) return verdict;
  if (!candidateLacksBaseDirections(c)) return { ...verdict, reason: `${verdict.reason}; BASE has no low-rank directions CANDIDATE lacks (${describeComponents(c)})` };
  return {
    ...verdict,
    relation: 'related',
    reason: `shared origin (${p}), but neither descends from the other: BASE has low-rank directions CANDIDATE lacks, as siblings or cousins of different kinds do (norm growth ${growth.toFixed(2)} over the whole change; ${describeComponents(c)})`,
    lora: null,
  };
}
