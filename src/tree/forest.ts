/**
 * Our default tree recovery: the models are first split into trees by a relatedness test,
 * then each tree is an arborescence on costs built from per-pair evidence, where each pair's
 * distance is chosen from the data (a low-rank delta or a dense one), so trees that mix
 * LoRA and full fine-tunes work and every edge is labelled.
 *
 * Clustering: pairs with a relatedness p-value below alpha / (number of pairs) (Bonferroni)
 * are "related"; trees are the connected components of that graph (single linkage). The
 * number of trees is not given: it is what the test finds.
 *
 * Costs inside a tree (order of preference first, then magnitude):
 * - low-rank pair: rankSum / (largest rankSum of the tree's low-rank pairs), in (0, 1];
 *   rankSum is the paper's LoRA distance (sum of the ranks over the compared matrices).
 * - dense pair: 1 + distance / (largest dense distance of the tree), in (1, 2]. A pair that
 *   differs by a low-rank delta is always nearer than a pair that differs densely: only
 *   models joined by LoRA steps alone (parent, child, siblings, chains) are low-rank apart.
 * - direction: + lambda * mean(cost) when the direction margin says the edge points the wrong
 *   way (the paper's T term), + half of that when the margin is exactly zero. The margin is the
 *   pair's norm growth when given (see PairEvidence.normGrowth), else the kurtosis margin.
 * Pairs without evidence cannot be edges. Ties are broken by the models' keys.
 */
import { minimumArborescence } from './arborescence.js';
import { singleLinkage } from './cluster.js';
import { MOTHER_LAMBDA, offDiagonalMean } from './mother.js';
import { assembleResult } from './result.js';
import type { LineageResult } from './types.js';

export interface ModelEvidence {
  /** Display name (a folder name, a hub id): used only for output. */
  readonly name: string;
  /** Stable identity for tie-breaking, e.g. a content hash: output must not depend on names. */
  readonly key: string;
  /** Excess kurtosis summed over the chosen layers. */
  readonly kurtosis: number;
  /**
   * Stored block-quantized (GGUF): such a model is a leaf, never a parent. Quantization is the last
   * step of a release (fine-tunes train on float weights), and its noise floor is so high that
   * any dense relative reads as low rank against it, which would make it everyone's cheapest parent.
   */
  readonly quantized?: boolean;
  /** Its quantized storage types when quantized, e.g. "Q8_0" or "Q4_K+Q6_K" (the most frequent first). */
  readonly quantization?: string;
}

export interface LowRankEvidence {
  /** The LoRA rank most adapted matrices agree on (the edge label). */
  readonly rank: number;
  /** Module names the delta touches, e.g. ["q_proj", "v_proj"]; empty for identical weights. */
  readonly modules: readonly string[];
  /** Sum of the delta's ranks over all compared matrices (MoTHer's LoRA distance). */
  readonly rankSum: number;
  /**
   * Set when weights changed, but every change lies within the block-quantization noise of a
   * quantized member (GGUF): the same weights quantized, not a fine-tune.
   */
  readonly quantizedCopy?: boolean;
}

export interface PairEvidence {
  /** Indices into ForestEvidence.models; the pair is unordered. */
  readonly a: number;
  readonly b: number;
  /** log10 of the relatedness test's p-value under "independently initialised" (<= 0). */
  readonly log10PValue: number;
  /** Dense distance of the pair, e.g. `rmsDistance` of the aligned weight deltas. */
  readonly distance: number;
  /** Set when the delta between the two is low rank in every changed matrix. */
  readonly lowRank: LowRankEvidence | null;
  /**
   * ku(a) - ku(b) measured on the matrices this pair changes; defaults to the difference of
   * the models' kurtosis. Positive: kurtosis says a is the parent.
   */
  readonly kurtosisMargin?: number;
  /**
   * Norm growth g(a -> b) = (||W_b||^2 - ||W_a||^2) / ||W_b - W_a||^2 over the matrices the pair
   * changes. A fine-tune adds an update nearly independent of the weights, so g is near +1 from
   * parent to child, g(b -> a) = -g(a -> b), and siblings give g near 0. Positive: a is the parent.
   */
  readonly normGrowth?: number;
}

export interface ForestEvidence {
  readonly models: readonly ModelEvidence[];
  readonly pairs: readonly PairEvidence[];
}

export interface ForestOptions {
  /** Family-wise level of the relatedness test (Bonferroni over all pairs). */
  readonly alpha?: number;
  /** Weight of the direction term, as a fraction of the tree's mean cost. */
  readonly lambda?: number;
  /** Kurtosis rises from parent to child (continued pre-training). */
  readonly kurtosisRises?: boolean;
  /** Direction evidence: norm growth where pairs carry it (default), or kurtosis only. */
  readonly direction?: 'norm-growth' | 'kurtosis';
  /**
   * Edges decided elsewhere (e.g. a merge hung under one of its parents): child -> its only
   * allowed parent, which must be related to it.
   */
  readonly fixedParents?: ReadonlyMap<number, number>;
  /** Edges that may not be used (e.g. from a merge to its own parents). */
  readonly forbidden?: (parent: number, child: number) => boolean;
}

export const DEFAULT_ALPHA = 1e-3;

/** log10 of the Bonferroni-corrected p-value threshold for n models. */
export function relatednessThreshold(modelCount: number, alpha = DEFAULT_ALPHA): number {
  const pairs = Math.max(1, (modelCount * (modelCount - 1)) / 2);
  return Math.log10(alpha / pairs);
}

export function recoverForest(evidence: ForestEvidence, options: ForestOptions = {}): LineageResult {
  const { models } = evidence;
  const n = models.length;
  const pairOf = indexPairs(evidence);
  const threshold = relatednessThreshold(n, options.alpha);
  const keys = models.map((m) => m.key);
  // A node with a fixed parent (a merge) joins its parent's tree without linking others: a merge
  // of two families' members keeps each family its own tree (the merge's edges join them later).
  const fixed = options.fixedParents;
  const linked = (i: number, j: number) => !fixed?.has(i) && !fixed?.has(j) && (pairOf(i, j)?.log10PValue ?? 0) <= threshold;
  const clusters = attachFixed(singleLinkage(n, linked, keys), fixed);

  const margin = (parent: number, child: number): number => {
    const pair = pairOf(parent, child);
    if (options.direction !== 'kurtosis' && pair?.normGrowth !== undefined) {
      return pair.a === parent ? pair.normGrowth : -pair.normGrowth;
    }
    let m = models[parent]!.kurtosis - models[child]!.kurtosis;
    if (pair?.kurtosisMargin !== undefined) m = pair.a === parent ? pair.kurtosisMargin : -pair.kurtosisMargin;
    return options.kurtosisRises ? -m : m;
  };

  const parent = new Array<number>(n).fill(-1);
  for (const members of clusters) {
    const costs = clusterCosts(members, pairOf, margin, options.lambda ?? MOTHER_LAMBDA, (v) => models[v]!.quantized === true);
    constrain(costs, members, options);
    const result = minimumArborescence(costs, { tieKeys: members.map((v) => keys[v]!) });
    result.parent.forEach((p, c) => {
      if (p >= 0) parent[members[c]!] = members[p]!;
    });
  }
  return assembleResult(
    'lineage',
    models.map((m) => m.name),
    parent,
    (p, c) => {
      const pair = pairOf(p, c)!;
      // A quantized copy is the coarser of the two: its types name the quantization (the parent's
      // only when the child carries none, an edge sketches alone would not make).
      const quantization = pair.lowRank?.quantizedCopy ? models[c]!.quantization ?? models[p]!.quantization : undefined;
      return {
        kind: pair.lowRank?.quantizedCopy ? 'quantized' : pair.lowRank ? 'lora' : 'full',
        ...(quantization !== undefined ? { quantization } : {}),
        rank: pair.lowRank ? pair.lowRank.rank : null,
        modules: pair.lowRank ? [...pair.lowRank.modules] : [],
        distance: pair.distance,
        directionMargin: margin(p, c),
      };
    },
  );
}

/** Moves each node with a fixed parent (a singleton of the linkage) into its parent's cluster. */
function attachFixed(clusters: number[][], fixed: ReadonlyMap<number, number> | undefined): number[][] {
  if (!fixed?.size) return clusters;
  const clusterOf = new Map<number, number>();
  clusters.forEach((c, k) => c.forEach((v) => clusterOf.set(v, k)));
  const root = (v: number, seen = new Set<number>()): number => {
    const p = fixed.get(v);
    return p === undefined || seen.has(p) ? v : (seen.add(v), root(p, seen));
  };
  const moved = clusters.map((c) => c.filter((v) => !fixed.has(v)));
  for (const v of fixed.keys()) {
    if (clusterOf.has(v)) moved[clusterOf.get(root(v))!]!.push(v);
  }
  for (const c of moved) c.sort((a, b) => a - b);
  return moved.filter((c) => c.length > 0);
}

/** Applies fixed parents (every other incoming edge removed) and forbidden edges to a cluster's costs. */
function constrain(costs: number[][], members: readonly number[], options: ForestOptions): void {
  const { fixedParents, forbidden } = options;
  if (!fixedParents && !forbidden) return;
  members.forEach((parent, i) => {
    members.forEach((child, j) => {
      const fixed = fixedParents?.get(child);
      if ((fixed !== undefined && fixed !== parent) || forbidden?.(parent, child)) costs[i]![j] = Infinity;
    });
  });
}

type PairLookup = (i: number, j: number) => PairEvidence | undefined;

function indexPairs(evidence: ForestEvidence): PairLookup {
  const n = evidence.models.length;
  const table = new Map<number, PairEvidence>();
  for (const pair of evidence.pairs) {
    if (!(pair.a >= 0 && pair.a < n && pair.b >= 0 && pair.b < n) || pair.a === pair.b) {
      throw new RangeError(`pair (${pair.a}, ${pair.b}) does not name two of the ${n} models`);
    }
    const id = Math.min(pair.a, pair.b) * n + Math.max(pair.a, pair.b);
    if (table.has(id)) throw new RangeError(`pair (${pair.a}, ${pair.b}) given twice`);
    table.set(id, pair);
  }
  return (i, j) => table.get(Math.min(i, j) * n + Math.max(i, j));
}

/** Added to a quantized parent's edge: decides ties only (costs are ranks and distances of order 0.01-2). */
const QUANTIZED_PARENT_TIE = 1e-9;

function clusterCosts(
  members: readonly number[],
  pairOf: PairLookup,
  margin: (parent: number, child: number) => number,
  lambda: number,
  quantized: (model: number) => boolean,
): number[][] {
  let maxRankSum = 0, maxDense = 0;
  for (const a of members) {
    for (const b of members) {
      const pair = a < b ? pairOf(a, b) : undefined;
      if (!pair) continue;
      if (pair.lowRank) maxRankSum = Math.max(maxRankSum, pair.lowRank.rankSum);
      else maxDense = Math.max(maxDense, pair.distance);
    }
  }
  const base = members.map((a) =>
    members.map((b) => {
      const pair = a === b ? undefined : pairOf(a, b);
      if (!pair || (quantized(a) && !quantized(b))) return Infinity;
      if (pair.lowRank) return maxRankSum > 0 ? pair.lowRank.rankSum / maxRankSum : 0;
      return 1 + (maxDense > 0 ? pair.distance / maxDense : 0);
    }),
  );
  const penalty = lambda * offDiagonalMean(base);
  return base.map((row, i) =>
    row.map((c, j) => {
      if (!Number.isFinite(c)) return c;
      const m = margin(members[i]!, members[j]!);
      // Between equal costs a quantized parent yields to the float one: it only stands in for its float source.
      return c + (m < 0 ? penalty : m === 0 ? penalty / 2 : 0) + (quantized(members[i]!) ? QUANTIZED_PARENT_TIE : 0);
    }),
  );
}
