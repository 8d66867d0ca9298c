import type { Matrix } from '../linalg/matrix.js';
import { matmulTransB } from '../linalg/ops.js';
import { Rng } from '../linalg/rng.js';
import type { NeuronSimilarities } from './independence.js';
import { matchFromCorrelations, movedCount, rowCorrelations, standardizeRows } from './matching.js';
import { permuteColumns, permuteColumnsInPlace, permuteRowsInPlace, scaleColumns, type NoisyMatrix } from './noisy.js';

/**
 * Alignment of a Llama-style decoder (RMSNorm, GQA attention, gated MLP) onto a base model by the
 * function-preserving transforms such a block admits: a signed permutation of the residual
 * stream, norm weights folded into the linears that read them, MLP neuron permutation (scales are
 * left to the gauge fit), KV-group and query-head permutations. All matrices are (out, in).
 */
export interface LayerWeights {
  readonly q: NoisyMatrix;
  readonly k: NoisyMatrix;
  readonly v: NoisyMatrix;
  readonly o: NoisyMatrix;
  readonly gate: NoisyMatrix;
  readonly up: NoisyMatrix;
  readonly down: NoisyMatrix;
  readonly inputNorm: Float64Array;
  readonly postNorm: Float64Array;
  /** Rounding variance of the stored input-norm weights (their error rescales V's columns). */
  readonly inputNormVariance?: Float32Array;
}

export interface GlobalWeights {
  readonly embed: NoisyMatrix;
  readonly lmHead: NoisyMatrix | null;
  readonly finalNorm: Float64Array | null;
}

export interface HeadLayout {
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
}

/** Rows longer than this are compared through a shared random projection (correlations are kept). */
const PROJECTED_WIDTH = 256;

/** Rows of a as float64 Matrix, randomly projected to PROJECTED_WIDTH columns when wider. */
export function comparableRows(a: NoisyMatrix, seed: number): Matrix {
  const m: Matrix = { rows: a.rows, cols: a.cols, data: a.values };
  if (a.cols <= PROJECTED_WIDTH) return m;
  const omega = new Rng(seed).gaussianMatrix(PROJECTED_WIDTH, a.cols);
  return matmulTransB(m, omega);
}

/** Columns of a as rows (for residual dimensions seen through embeddings). */
function columnsAsRows(a: NoisyMatrix, maxRows: number, seed: number): Matrix {
  // A fixed random subset of rows (tokens) keeps the cost bounded for 128k vocabularies.
  const rows = Math.min(a.rows, maxRows);
  const pick = a.rows <= maxRows ? null : new Rng(seed).permutation(a.rows).subarray(0, rows).sort();
  const out = new Float64Array(a.cols * rows);
  for (let t = 0; t < rows; t++) {
    const src = (pick ? pick[t]! : t) * a.cols;
    for (let j = 0; j < a.cols; j++) out[j * rows + t] = a.values[src + j]!;
  }
  return { rows: a.cols, cols: rows, data: out };
}

function concatColumns(a: Matrix, b: Matrix | null): Matrix {
  if (!b) return a;
  const out = new Float64Array(a.rows * (a.cols + b.cols));
  for (let i = 0; i < a.rows; i++) {
    out.set(a.data.subarray(i * a.cols, (i + 1) * a.cols), i * (a.cols + b.cols));
    out.set(b.data.subarray(i * b.cols, (i + 1) * b.cols), i * (a.cols + b.cols) + a.cols);
  }
  return { rows: a.rows, cols: a.cols + b.cols, data: out };
}

export interface ResidualAlignment {
  /** order[i] = candidate residual dimension that plays base dimension i. */
  readonly order: Int32Array;
  /** +1 or -1 per base dimension (a sign flip of a residual dimension is function-preserving). */
  readonly sign: Float64Array;
  readonly quality: number;
  readonly moved: number;
  readonly flipped: number;
}

/** Residual permutation from the embedding and lm_head columns (one feature per token). */
export function alignResidual(base: GlobalWeights, candidate: GlobalWeights): ResidualAlignment {
  const features = (g: GlobalWeights) =>
    concatColumns(columnsAsRows(g.embed, 4096, 11), g.lmHead ? columnsAsRows(g.lmHead, 4096, 12) : null);
  const fb = features(base);
  const fc = features(candidate);
  const signed = rowCorrelations(fb, fc, false);
  const absolute = Float32Array.from(signed, Math.abs);
  const match = matchFromCorrelations(absolute, fb.rows);
  const sign = new Float64Array(fb.rows);
  let flipped = 0;
  for (let i = 0; i < fb.rows; i++) {
    sign[i] = signed[i * fb.rows + match.permutation[i]!]! < 0 ? -1 : 1;
    if (sign[i]! < 0) flipped++;
  }
  return { order: match.permutation, sign, quality: match.quality, moved: movedCount(match.permutation), flipped };
}

/**
 * Express a candidate layer in the base's residual order (readers' columns, writers' rows). This
 * and applyMlp / applyHeads permute the layer's matrices in place: the layer is consumed.
 */
export function applyResidual(layer: LayerWeights, r: ResidualAlignment): LayerWeights {
  const readers = (m: NoisyMatrix) => permuteColumnsInPlace(m, r.order, r.sign);
  const writers = (m: NoisyMatrix) => permuteRowsInPlace(m, r.order, r.sign);
  const norm = (g: Float64Array) => Float64Array.from(r.order, (from) => g[from]!);
  return {
    q: readers(layer.q), k: readers(layer.k), v: readers(layer.v), o: writers(layer.o),
    gate: readers(layer.gate), up: readers(layer.up), down: writers(layer.down),
    inputNorm: norm(layer.inputNorm), postNorm: norm(layer.postNorm),
    ...(layer.inputNormVariance ? { inputNormVariance: Float32Array.from(r.order, (from) => layer.inputNormVariance![from]!) } : {}),
  };
}

export function applyResidualToGlobals(g: GlobalWeights, r: ResidualAlignment): GlobalWeights {
  return {
    embed: permuteColumns(g.embed, r.order, r.sign),
    lmHead: g.lmHead ? permuteColumns(g.lmHead, r.order, r.sign) : null,
    finalNorm: g.finalNorm ? Float64Array.from(r.order, (from) => g.finalNorm![from]!) : null,
  };
}

/**
 * Fold RMSNorm weights into the linears that read them (W diag(gamma)): the product is what the
 * function depends on, so norm-scale obfuscation disappears. Mutates and returns the layer.
 */
export function foldNorms(layer: LayerWeights): LayerWeights {
  for (const m of [layer.q, layer.k, layer.v]) scaleColumns(m, layer.inputNorm);
  for (const m of [layer.gate, layer.up]) scaleColumns(m, layer.postNorm);
  return layer;
}

export interface MlpAlignment {
  /** order[i] = candidate neuron that plays base neuron i. */
  readonly order: Int32Array;
  readonly quality: number;
  readonly moved: number;
}

/** Gate (signed) and up (absolute) correlations of every base neuron with every candidate neuron. */
export function neuronSimilarities(base: LayerWeights, candidate: LayerWeights, seed: number): NeuronSimilarities {
  return {
    gate: rowCorrelations(comparableRows(base.gate, seed), comparableRows(candidate.gate, seed), false),
    up: rowCorrelations(comparableRows(base.up, seed + 1), comparableRows(candidate.up, seed + 1), true),
  };
}

/** Neuron permutation maximising the mean of the gate and up similarities. */
export function alignMlp(sims: NeuronSimilarities, n: number): MlpAlignment {
  const combined = new Float32Array(sims.gate.length);
  for (let p = 0; p < combined.length; p++) combined[p] = (sims.gate[p]! + sims.up[p]!) / 2;
  const match = matchFromCorrelations(combined, n);
  return { order: match.permutation, quality: match.quality, moved: movedCount(match.permutation) };
}

export function applyMlp(layer: LayerWeights, a: MlpAlignment): LayerWeights {
  return {
    ...layer,
    gate: permuteRowsInPlace(layer.gate, a.order),
    up: permuteRowsInPlace(layer.up, a.order),
    down: permuteColumnsInPlace(layer.down, a.order),
  };
}

export interface HeadAlignment {
  /** groupOrder[g] = candidate KV group playing base group g. */
  readonly groupOrder: Int32Array;
  /** headOrder[h] = candidate query head playing base head h. */
  readonly headOrder: Int32Array;
  readonly quality: number;
}

/**
 * Mean over the rows of a head block of |corr| between base and candidate rows (row scales
 * cancel): only row t of one block against row t of the other is needed, blocks^2 * headDim
 * correlations rather than all rows against all.
 */
function blockSimilarity(base: NoisyMatrix, cand: NoisyMatrix, headDim: number, blocks: number, seed: number): Float64Array {
  const rb = standardizeRows(comparableRows(base, seed));
  const rc = standardizeRows(comparableRows(cand, seed));
  const width = rb.cols;
  const sim = new Float64Array(blocks * blocks);
  for (let g = 0; g < blocks; g++) {
    for (let h = 0; h < blocks; h++) {
      let s = 0;
      for (let t = 0; t < headDim; t++) {
        const x = (g * headDim + t) * width, y = (h * headDim + t) * width;
        let dot = 0;
        for (let q = 0; q < width; q++) dot += rb.data[x + q]! * rc.data[y + q]!;
        s += Math.abs(dot);
      }
      sim[g * blocks + h] = s / headDim;
    }
  }
  return sim;
}

export function alignHeads(base: LayerWeights, candidate: LayerWeights, layout: HeadLayout, seed: number): HeadAlignment {
  const { heads, kvHeads, headDim } = layout;
  const perGroup = heads / kvHeads;
  const kSim = blockSimilarity(base.k, candidate.k, headDim, kvHeads, seed);
  const vSim = blockSimilarity(base.v, candidate.v, headDim, kvHeads, seed + 1);
  const groupSim = new Float64Array(kvHeads * kvHeads);
  for (let p = 0; p < groupSim.length; p++) groupSim[p] = (kSim[p]! + vSim[p]!) / 2;
  const groups = matchFromCorrelations(groupSim, kvHeads);
  const qSim = blockSimilarity(base.q, candidate.q, headDim, heads, seed + 2);
  const headOrder = new Int32Array(heads);
  let quality = groups.quality;
  for (let g = 0; g < kvHeads; g++) {
    // Query heads may only move within their KV group: match inside the chosen group.
    const from = groups.permutation[g]!;
    const sub = new Float64Array(perGroup * perGroup);
    for (let i = 0; i < perGroup; i++) {
      for (let j = 0; j < perGroup; j++) sub[i * perGroup + j] = qSim[(g * perGroup + i) * heads + from * perGroup + j]!;
    }
    const inner = matchFromCorrelations(sub, perGroup);
    for (let i = 0; i < perGroup; i++) headOrder[g * perGroup + i] = from * perGroup + inner.permutation[i]!;
  }
  return { groupOrder: groups.permutation, headOrder, quality };
}

function blockRows(order: ArrayLike<number>, size: number): Int32Array {
  const rows = new Int32Array(order.length * size);
  for (let b = 0; b < order.length; b++) for (let t = 0; t < size; t++) rows[b * size + t] = order[b]! * size + t;
  return rows;
}

export function applyHeads(layer: LayerWeights, a: HeadAlignment, layout: HeadLayout): LayerWeights {
  const kvRows = blockRows(a.groupOrder, layout.headDim);
  const qRows = blockRows(a.headOrder, layout.headDim);
  return {
    ...layer,
    q: permuteRowsInPlace(layer.q, qRows),
    k: permuteRowsInPlace(layer.k, kvRows),
    v: permuteRowsInPlace(layer.v, kvRows),
    o: permuteColumnsInPlace(layer.o, qRows),
  };
}
