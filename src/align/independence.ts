import type { Matrix } from '../linalg/matrix.js';
import { fisherCombineLogP, normalLogSf, spearman } from '../stats/tests.js';
import type { IndependenceTest } from '../verify/types.js';
import { standardizeRows } from '../linalg/countsketch.js';
import { matchSources, type SimilaritySource } from './matching.js';

/** One MLP layer's neuron rows in both models; columns in the same (aligned) residual order. */
export interface NeuronRows {
  readonly gateBase: Matrix;
  readonly upBase: Matrix;
  readonly gateCandidate: Matrix;
  readonly upCandidate: Matrix;
}

export interface LayerIndependence {
  readonly layer: number;
  readonly spearman: number;
  readonly z: number;
}

/**
 * Matched-neuron independence test in the spirit of Zhu et al. (ICML 2025): per layer, match the
 * candidate's neurons to the base's once from gate rows and once from up rows. If the models were
 * initialised independently the two matchings are unrelated permutations, so their Spearman
 * correlation rho has mean 0 and variance 1/(n-1); a shared origin makes them agree (rho near 1).
 * Neuron permutations and up/down rescaling leave the statistic unchanged (matching absorbs the
 * permutation; correlations ignore positive scale; up uses |corr| so sign flips are folded too).
 * Rows may be exact or randomly projected (sketched) rows: projection keeps correlations.
 */
export function layerIndependence(layer: number, rows: NeuronRows, seed = 1): LayerIndependence {
  const source = (base: Matrix, candidate: Matrix, absolute: boolean): SimilaritySource =>
    ({ base: standardizeRows(base), candidate: standardizeRows(candidate), absolute });
  return independenceFromSources(layer, {
    gate: source(rows.gateBase, rows.gateCandidate, false),
    up: source(rows.upBase, rows.upCandidate, true),
  }, seed);
}

/** One layer's neuron rows as similarity sources: signed for gate, absolute for up. */
export interface NeuronSources {
  readonly gate: SimilaritySource;
  readonly up: SimilaritySource;
}

/**
 * The test from ready sources (verify shares them with the neuron alignment). Each matching gets
 * its own seed, so where matchSources completes unmatched rows at random the completions are
 * independent, as the null requires.
 */
export function independenceFromSources(layer: number, sources: NeuronSources, seed: number, options: { denseLimit?: number } = {}): LayerIndependence {
  const n = sources.gate.base.rows;
  const fromGate = matchSources([sources.gate], { seed, ...options }).permutation;
  const fromUp = matchSources([sources.up], { seed: seed + 1, ...options }).permutation;
  const rho = n > 2 ? spearman(fromGate, fromUp) : NaN;
  if (!Number.isFinite(rho)) return { layer, spearman: 0, z: 0 };
  return { layer, spearman: rho, z: rho * Math.sqrt(n - 1) };
}

/** Layers combined with Fisher's method on one-sided p-values of z = rho * sqrt(n - 1). */
export function combineIndependence(perLayer: readonly LayerIndependence[]): IndependenceTest {
  const combined = fisherCombineLogP(perLayer.map((l) => normalLogSf(l.z)));
  return {
    method: 'matched-neuron Spearman (gate vs up matchings), Fisher-combined over layers',
    perLayer,
    statistic: combined.statistic,
    pValue: combined.p,
    log10PValue: combined.log10P,
  };
}

export function independenceTest(layers: readonly NeuronRows[]): IndependenceTest {
  return combineIndependence(layers.map((rows, layer) => layerIndependence(layer, rows)));
}
