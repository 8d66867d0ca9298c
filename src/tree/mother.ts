/**
 * The published MoTHer method (arXiv 2405.18432), reproduced on given evidence:
 * per-model kurtosis and a pairwise distance matrix D.
 * - Direction: T[i][j] = 1 when kurtosis says j is not i's child, i.e. ku[j] > ku[i]
 *   (kurtosis falls during fine-tuning; `kurtosisRises` flips it for continued pre-training).
 * - Cost: M[i->j] = D[i][j] + lambda * mean(D) * T[i][j], lambda = 0.3; mean(D) is taken
 *   over the finite off-diagonal entries of the tree being solved.
 * - Tree: Chu-Liu/Edmonds minimum spanning arborescence, root left free.
 * - Several trees: Ward linkage on D cut at the given number of trees (K is an input, as in
 *   the paper).
 */
import { minimumArborescence, type CostMatrix } from './arborescence.js';
import { wardClusters } from './cluster.js';
import { assembleResult } from './result.js';
import type { EdgeKind, LineageResult } from './types.js';

export const MOTHER_LAMBDA = 0.3;

export interface MotherInput {
  readonly names: readonly string[];
  /** Stable keys (e.g. content hashes) that decide ties; defaults to the names. */
  readonly tieKeys?: readonly string[];
  /** Per model: excess kurtosis summed over the chosen layers. */
  readonly kurtosis: readonly number[];
  /** Symmetric distances: `rmsDistance` for full fine-tunes, `loraRankDistance` for LoRA. */
  readonly distance: CostMatrix;
  /** Which of the paper's two settings D comes from; labels the edges. */
  readonly kind: EdgeKind;
  /** Optional per-pair LoRA rank to print on edges (LoRA setting only). */
  readonly rank?: CostMatrix;
}

export interface MotherOptions {
  readonly lambda?: number;
  readonly kurtosisRises?: boolean;
  /** Number of trees K (Ward linkage); 1 when absent. */
  readonly trees?: number;
}

/** ku(parent) - ku(child) in the direction rule's sign: positive when i -> j agrees. */
export function directionMargin(kurtosis: readonly number[], i: number, j: number, kurtosisRises = false): number {
  const margin = kurtosis[i]! - kurtosis[j]!;
  return kurtosisRises ? -margin : margin;
}

/** T[i][j] = 1 when the kurtosis rule says j is not i's child. */
export function directionMatrix(kurtosis: readonly number[], kurtosisRises = false): number[][] {
  return kurtosis.map((_, i) => kurtosis.map((_, j) => (i !== j && directionMargin(kurtosis, i, j, kurtosisRises) < 0 ? 1 : 0)));
}

/** M = D + lambda * mean(D) * T with an infinite diagonal. */
export function motherCosts(
  distance: CostMatrix,
  kurtosis: readonly number[],
  options: Pick<MotherOptions, 'lambda' | 'kurtosisRises'> = {},
): number[][] {
  const n = distance.length;
  const lambda = options.lambda ?? MOTHER_LAMBDA;
  const t = directionMatrix(kurtosis, options.kurtosisRises);
  const mean = offDiagonalMean(distance);
  return Array.from({ length: n }, (_, i) =>
    Array.from({ length: n }, (_, j) => (i === j ? Infinity : distance[i]![j]! + lambda * mean * t[i]![j]!)),
  );
}

export function offDiagonalMean(matrix: CostMatrix): number {
  let sum = 0, count = 0;
  matrix.forEach((row, i) => {
    for (let j = 0; j < row.length; j++) {
      if (i !== j && Number.isFinite(row[j]!)) {
        sum += row[j]!;
        count++;
      }
    }
  });
  return count ? sum / count : 0;
}

export function recoverMother(input: MotherInput, options: MotherOptions = {}): LineageResult {
  const n = input.names.length;
  if (input.kurtosis.length !== n || input.distance.length !== n) {
    throw new RangeError(`expected ${n} kurtosis values and a ${n}x${n} distance matrix`);
  }
  const keys = input.tieKeys ?? input.names;
  const parent = new Array<number>(n).fill(-1);
  for (const members of wardClusters(input.distance, options.trees ?? 1, keys)) {
    const sub = (m: CostMatrix | readonly number[][]) => members.map((a) => members.map((b) => m[a]![b]!));
    const costs = motherCosts(sub(input.distance), members.map((v) => input.kurtosis[v]!), options);
    const result = minimumArborescence(costs, { tieKeys: members.map((v) => keys[v]!) });
    result.parent.forEach((p, c) => {
      if (p >= 0) parent[members[c]!] = members[p]!;
    });
  }
  return assembleResult('mother', input.names, parent, (p, c) => ({
    kind: input.kind,
    rank: input.kind === 'lora' && input.rank ? input.rank[p]![c]! : null,
    modules: [],
    distance: input.distance[p]![c]!,
    directionMargin: directionMargin(input.kurtosis, p, c, options.kurtosisRises),
  }));
}

/** The paper's full fine-tune distance: per-layer RMS of the weight difference, averaged. */
export function rmsDistance(deltaLayers: ReadonlyArray<ArrayLike<number>>): number {
  if (deltaLayers.length === 0) return 0;
  let total = 0;
  for (const delta of deltaLayers) {
    let s = 0;
    for (let i = 0; i < delta.length; i++) s += delta[i]! * delta[i]!;
    total += delta.length ? Math.sqrt(s / delta.length) : 0;
  }
  return total / deltaLayers.length;
}

/** The paper's LoRA distance: sum over layers of rank(W_u - W_v). */
export function loraRankDistance(ranksPerLayer: readonly number[]): number {
  return ranksPerLayer.reduce((s, r) => s + r, 0);
}
