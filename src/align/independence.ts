/**
 * The independence test (Zhu et al. style matched-neuron test): are two models' MLP neurons the
 * same neurons, i.e. do they share their initialisation? Per layer, the neuron matchings read
 * from two views (gate and up rows; fc_in rows and fc_out columns) agree by Spearman correlation
 * only when the models are related; Fisher's method combines the layers. Shared by verify and tree.
 */
import type { Matrix } from '../linalg/matrix.js';
import { fisherCombineLogP, normalLogSf, spearman } from '../stats/hypothesis-tests.js';
import { standardizeRows } from '../linalg/countsketch.js';
import { matchSources, type SimilaritySource } from './matching.js';

/** Evidence that the two models share their initialisation (Zhu et al. style matched-neuron test). */
export interface IndependenceTest {
  readonly method: string;
  /**
   * Per layer: Spearman correlation of the neuron matchings from gate and from up rows, and its z,
   * over the `rowsUsed` of `rows` neurons whose rows are informative (not zero, constant or tied).
   */
  readonly perLayer: ReadonlyArray<{ readonly layer: number; readonly spearman: number; readonly z: number; readonly rowsUsed: number; readonly rows: number }>;
  /** Fisher's chi-square over the layers tested. */
  readonly statistic: number;
  /** 1 when no layer was tested. */
  readonly pValue: number;
  readonly log10PValue: number;
  /** Informative neurons in the layers tested, and neurons in all layers. */
  readonly rowsUsed: number;
  readonly rows: number;
  /** Layers with enough informative neurons to enter the test (0: the weights carry no evidence either way). */
  readonly layersTested: number;
}

/** One MLP layer's neuron rows in both models; columns in the same (aligned) residual order. */
export interface NeuronRows {
  readonly gateBase: Matrix;
  readonly upBase: Matrix;
  readonly gateCandidate: Matrix;
  readonly upCandidate: Matrix;
}

export interface LayerIndependence {
  readonly layer: number;
  /** 0 (and z 0) when fewer than MIN_ROWS_USED rows carried evidence: the layer is then left out of the test. */
  readonly spearman: number;
  readonly z: number;
  /** Neurons the statistic was computed on: those whose rows tell matches apart in both matchings. */
  readonly rowsUsed: number;
  /** Neurons of the layer. */
  readonly rows: number;
}

/**
 * Fewest informative neurons a layer needs to enter the test: below it the normal approximation
 * of rho * sqrt(m - 1) is poor and the layer could say little anyway.
 */
export const MIN_ROWS_USED = 8;

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
 *
 * Only neurons whose rows carry evidence count: a zero, constant (zero once standardized) or
 * duplicated row ties with others, and an assignment breaks ties the same way in both matchings,
 * so tied rows would agree by construction (an all-zero model would look like a copy of anything).
 * A neuron is used when its base rows are informative in both sources and each matching paired it
 * with an informative candidate row; where the optimum is unique (no ties among those rows) which
 * neurons these are is decided by the informative rows alone, and the null is kept.
 */
export function independenceFromSources(layer: number, sources: NeuronSources, seed: number, options: { denseLimit?: number } = {}): LayerIndependence {
  const n = sources.gate.base.rows;
  const fromGate = matchSources([sources.gate], { seed, ...options }).permutation;
  const fromUp = matchSources([sources.up], { seed: seed + 1, ...options }).permutation;
  const gate = informativeSides(sources.gate), up = informativeSides(sources.up);
  const used: number[] = [];
  for (let i = 0; i < n; i++) {
    if (gate.base[i] && up.base[i] && gate.candidate[fromGate[i]!] && up.candidate[fromUp[i]!]) used.push(i);
  }
  const m = used.length;
  if (m < MIN_ROWS_USED) return { layer, spearman: 0, z: 0, rowsUsed: m, rows: n };
  const rho = spearman(used.map((i) => fromGate[i]!), used.map((i) => fromUp[i]!));
  if (!Number.isFinite(rho)) return { layer, spearman: 0, z: 0, rowsUsed: m, rows: n };
  return { layer, spearman: rho, z: rho * Math.sqrt(m - 1), rowsUsed: m, rows: n };
}

function informativeSides(s: SimilaritySource): { base: Uint8Array; candidate: Uint8Array } {
  return { base: informativeRows(s.base, s.absolute), candidate: informativeRows(s.candidate, s.absolute) };
}

/** Leading coordinates a row's grouping key is read from, and their rounding step (unit rows). */
const KEY_COORDS = 8;
const KEY_STEP = 1e-2;
/** Unit rows closer than this in |cos| (cos when signed) are the same row: float32 storage and sketching errors stay far below. */
const TIED_COS = 1 - 1e-6;

/**
 * Whether a unit-or-zero row x[from, from + w) is a unit row: its first nonzero (and not NaN)
 * coordinate tells, mostly the first one read, where a sum of squares would read the whole row.
 */
function nonzeroRow(x: Float64Array, from: number, w: number): boolean {
  for (let q = from, end = from + w; q < end; q++) if (x[q]! > 0 || x[q]! < 0) return true;
  return false;
}

/**
 * Rows of a matrix of unit (or zero) rows that can tell matches apart: 1 for a nonzero row that no
 * other row repeats (up to sign when `absolute`: such a source cannot tell x from -x). Rows are
 * grouped by their leading coordinates, rounded, and compared only within a group, so the cost
 * stays linear when nothing repeats and when everything does.
 */
export function informativeRows(m: Matrix, absolute: boolean): Uint8Array {
  const keep = new Uint8Array(m.rows);
  const w = m.cols, x = m.data, coords = Math.min(KEY_COORDS, w);
  // A row's key is its rounded leading coordinates (codes); rows are grouped by a hash of them,
  // and within a group compared only with rows of the same codes (a hash collision joins no keys).
  // Groups are the runs of one native sort of hash * rows + row (below 2^53), rows increasing in each.
  const codes = new Int32Array(m.rows * coords);
  const byHash = new Float64Array(m.rows);
  let kept = 0;
  for (let i = 0; i < m.rows; i++) {
    if (!nonzeroRow(x, i * w, w)) continue;
    keep[i] = 1;
    let hash = 0;
    for (let q = 0; q < coords; q++) {
      const code = Math.round((absolute ? Math.abs(x[i * w + q]!) : x[i * w + q]!) / KEY_STEP);
      codes[i * coords + q] = code;
      hash = Math.imul(hash ^ code, 0x9e3779b1);
    }
    byHash[kept++] = (hash >>> 0) * m.rows + i;
  }
  const sorted = byHash.subarray(0, kept).sort();
  const hashOf = (p: number) => Math.floor(sorted[p]! / m.rows);
  const sameKey = (i: number, k: number) => {
    for (let q = 0; q < coords; q++) if (codes[i * coords + q] !== codes[k * coords + q]) return false;
    return true;
  };
  for (let start = 0, end = 1; start < kept; start = end, end = start + 1) {
    const hash = hashOf(start);
    while (end < kept && hashOf(end) === hash) end++;
    if (end - start < 2) continue;
    // Each row against the distinct rows met so far with its key (few, unless rows repeat).
    const distinct: number[] = [];
    for (let p = start; p < end; p++) {
      const i = sorted[p]! - hash * m.rows;
      const same = distinct.find((k) => {
        if (!sameKey(i, k)) return false;
        let dot = 0;
        for (let q = 0; q < w; q++) dot += x[i * w + q]! * x[k * w + q]!;
        return (absolute ? Math.abs(dot) : dot) > TIED_COS;
      });
      if (same === undefined) distinct.push(i);
      else keep[i] = keep[same] = 0;
    }
  }
  return keep;
}

/**
 * Layers combined with Fisher's method on one-sided p-values of z = rho * sqrt(m - 1), over the
 * layers with at least MIN_ROWS_USED informative neurons. With none, nothing is tested: p = 1,
 * and `layersTested` = 0 tells a caller the weights carried no evidence either way.
 */
/** `views`: the two views of the neurons the matchings came from, for the method's description. */
export function combineIndependence(perLayer: readonly LayerIndependence[], views = 'gate vs up'): IndependenceTest {
  const tested = perLayer.filter((l) => l.rowsUsed >= MIN_ROWS_USED);
  const combined = tested.length > 0 ? fisherCombineLogP(tested.map((l) => normalLogSf(l.z))) : { statistic: 0, p: 1, log10P: 0 };
  return {
    method: `matched-neuron Spearman (${views} matchings) over neurons with informative rows, Fisher-combined over layers`,
    perLayer,
    statistic: combined.statistic,
    pValue: combined.p,
    log10PValue: combined.log10P,
    rowsUsed: tested.reduce((sum, l) => sum + l.rowsUsed, 0),
    rows: perLayer.reduce((sum, l) => sum + l.rows, 0),
    layersTested: tested.length,
  };
}

export function independenceTest(layers: readonly NeuronRows[]): IndependenceTest {
  return combineIndependence(layers.map((rows, layer) => layerIndependence(layer, rows)));
}
