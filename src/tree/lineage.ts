/**
 * `lineage tree` on sketches: pairwise comparisons, then either our default forest recovery
 * (relatedness clusters, low-rank / dense costs, norm-growth direction) or the paper's MoTHer.
 * Output depends only on the sketches: names label the output, fingerprints break ties.
 */
import { singleLinkage } from './cluster.js';
import { recoverFamilies } from './families.js';
import { relatednessThreshold, type ForestEvidence, type PairEvidence } from './forest.js';
import { recoverMother } from './mother.js';
import { compareSketches, quantizationOf, type SketchComparison } from './sketch-evidence.js';
import type { LineageResult } from './types.js';
import type { ModelSketch } from '../sketch/types.js';
import { sketchIdentity } from '../sketch/identity.js';

export interface SketchedModel {
  readonly name: string;
  readonly sketch: ModelSketch;
  /**
   * Shapes of the weights outside the layer stack (embeddings, LM or classifier heads), which
   * the sketches do not compare: members of one family may differ there (another vocabulary or
   * label set), and a note says so. Optional: unknown when not given.
   */
  readonly headShapes?: Readonly<Record<string, readonly number[]>>;
}

export type MotherDistance = 'auto' | 'lora' | 'rms';

export interface LineageOptions {
  readonly method?: 'default' | 'mother';
  /** MoTHer only: the distance (auto = LoRA rank sum when every delta is low rank, else RMS). */
  readonly motherDistance?: MotherDistance;
  /** MoTHer only: kurtosis rises from parent to child. */
  readonly kurtosisRises?: boolean;
  /** Family-wise level of the relatedness test. */
  readonly alpha?: number;
  /** Models of one architecture from which families are found by the candidate search first (architectures.ts). */
  readonly candidateSearchFrom?: number;
}

/**
 * A related model whose nearest relative still differs by more than this relative Frobenius
 * distance is suspicious: fine-tunes move weights by a few percent, while a permuted or
 * rescaled copy differs by as much as two unrelated matrices (about sqrt(2)).
 */
export const OBFUSCATION_DISTANCE = 0.5;

export interface LineageAnalysis {
  readonly result: LineageResult;
  /** comparisons[i][j] for i < j (models in input order). */
  readonly comparisons: ReadonlyArray<ReadonlyArray<SketchComparison | undefined>>;
  /** Members the sketches joined to a parent by a change as large as unrelated weights differ. */
  readonly suspects: readonly SuspectedObfuscation[];
}

export interface SuspectedObfuscation {
  readonly model: string;
  readonly parent: string;
  readonly relativeDistance: number;
  /** The warning about it in `result.notes`. */
  readonly note: string;
}

/** Per-model MoTHer kurtosis: excess kurtosis of o_proj summed over layers. */
export function outputProjectionKurtosis(sketch: ModelSketch): number {
  let sum = 0;
  for (const m of sketch.matrices) if (m.role === 'o' && Number.isFinite(m.moments.excessKurtosis)) sum += m.moments.excessKurtosis;
  return sum;
}

/** Models of one architecture (see groupByArchitecture); compareSketches refuses a mixed pair. */
export function compareAll(models: readonly SketchedModel[], alpha?: number): SketchComparison[][] {
  const n = models.length;
  const threshold = relatednessThreshold(n, alpha);
  const table: SketchComparison[][] = Array.from({ length: n }, () => new Array<SketchComparison>(n));
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) table[i]![j] = compareSketches(models[i]!.sketch, models[j]!.sketch, { relatednessThreshold: threshold });
  }
  return table;
}

export function forestEvidence(models: readonly SketchedModel[], comparisons: SketchComparison[][]): ForestEvidence {
  const pairs: PairEvidence[] = [];
  for (let i = 0; i < models.length; i++) {
    for (let j = i + 1; j < models.length; j++) {
      const c = comparisons[i]![j]!;
      pairs.push({
        a: i, b: j, log10PValue: c.log10PValue, distance: c.relativeDistance, lowRank: c.lowRank,
        ...(c.normGrowth !== undefined ? { normGrowth: c.normGrowth } : {}),
      });
    }
  }
  return {
    models: models.map((m) => ({ name: m.name, key: sketchIdentity(m.sketch), kurtosis: outputProjectionKurtosis(m.sketch), ...quantizedEvidence(m.sketch) })),
    pairs,
  };
}

/** A model's quantization as the forest reads it: nothing for float storage. */
function quantizedEvidence(sketch: ModelSketch): { quantized?: true; quantization?: string } {
  const quantization = quantizationOf(sketch);
  return quantization === null ? {} : { quantized: true, quantization };
}

/** `comparisons` (from compareAll) may be passed to run both methods on one set of pairs. */
export function recoverLineage(
  models: readonly SketchedModel[],
  options: LineageOptions = {},
  comparisons: SketchComparison[][] = compareAll(models, options.alpha),
): LineageAnalysis {
  const pairOf = (i: number, j: number) => (i < j ? comparisons[i]![j]! : comparisons[j]![i]!);
  const n = models.length;
  const keys = models.map((m) => sketchIdentity(m.sketch));
  let result: LineageResult;
  if ((options.method ?? 'default') === 'default') {
    result = recoverFamilies({
      names: models.map((m) => m.name), sketches: models.map((m) => m.sketch), evidence: forestEvidence(models, comparisons), pairOf,
      ...(options.alpha !== undefined ? { alpha: options.alpha } : {}),
    });
  } else {
    // The paper takes the number of trees K as given; we take it from the relatedness test.
    const threshold = relatednessThreshold(n, options.alpha);
    const clusters = singleLinkage(n, (i, j) => pairOf(i, j).log10PValue <= threshold, keys);
    const allLowRank = comparisons.every((row, i) => row.every((c, j) => j <= i || c === undefined || c.lowRank !== null || !related(c, threshold)));
    const wanted = options.motherDistance ?? 'auto';
    const kind = wanted === 'lora' || (wanted === 'auto' && allLowRank) ? 'lora' : 'full';
    const matrix = (value: (c: SketchComparison) => number) =>
      models.map((_, i) => models.map((_, j) => (i === j ? 0 : value(pairOf(i, j)))));
    result = recoverMother(
      {
        names: models.map((m) => m.name),
        tieKeys: keys,
        kurtosis: models.map((m) => outputProjectionKurtosis(m.sketch)),
        distance: kind === 'lora' ? matrix((c) => c.rankSum) : matrix((c) => c.attentionRms),
        kind,
        ...(kind === 'lora' ? { rank: matrix((c) => c.lowRank?.rank ?? NaN) } : {}),
      },
      { trees: Math.max(1, clusters.length), kurtosisRises: options.kurtosisRises },
    );
  }
  const suspects = suspectedObfuscations(models, result, pairOf);
  const notes = [...(result.notes ?? []), ...suspects.map((s) => s.note)];
  return { result: notes.length ? { ...result, notes } : result, comparisons, suspects };
}

function related(c: SketchComparison, threshold: number): boolean {
  return c.log10PValue <= threshold;
}

/**
 * Honest flags: a model joined to its parent by a dense change as large as the weights
 * themselves is related by the neuron test yet not a fine-tune of anything given: most likely
 * an obfuscated (permuted / rescaled) copy, which needs alignment before it can be placed.
 */
function suspectedObfuscations(
  models: readonly SketchedModel[],
  result: LineageResult,
  pairOf: (i: number, j: number) => SketchComparison,
): SuspectedObfuscation[] {
  const index = new Map(models.map((m, i) => [m.name, i]));
  const suspects: SuspectedObfuscation[] = [];
  for (const edge of result.edges) {
    // A merge's parents and a virtual node's children are not single fine-tune steps.
    if (edge.kind === 'merge' || !index.has(edge.parent)) continue;
    const c = pairOf(index.get(edge.parent)!, index.get(edge.child)!);
    if (c.lowRank === null && c.relativeDistance > OBFUSCATION_DISTANCE) {
      suspects.push({
        model: edge.child, parent: edge.parent, relativeDistance: c.relativeDistance,
        note: `could not place ${edge.child}: related to ${edge.parent} by the neuron test, but their weights differ as much as `
          + `unrelated ones (relative distance ${c.relativeDistance.toFixed(2)}): obfuscated relative to ${edge.parent}?`,
      });
    }
  }
  return suspects;
}
