/**
 * Alignment of a Llama-style decoder (RMSNorm, GQA attention, gated MLP) onto a base model by the
 * function-preserving transforms such a block admits: a signed permutation of the residual
 * stream, norm weights folded into the linears that read them, MLP neuron permutation (scales are
 * left to the gauge fit), KV-group and query-head permutations. All matrices are (out, in).
 */
import { ColumnSketch, sketchColumnsStandardized, sketchRowsStandardized } from '../linalg/countsketch.js';
import type { Matrix, RowMajor } from '../linalg/matrix.js';
import { matmulTransB, selectRows } from '../linalg/ops.js';
import type { NeuronSources } from './independence.js';
import { matchFromCorrelations, matchSources, movedCount, sourceDot, type SimilaritySource } from './matching.js';
import type { ModuleRole } from '../arch/types.js';
import { permuteColumnsInPlace, permuteRowsInPlace, scaleColumns, type NoisyMatrix } from '../noise/noisy-matrix.js';

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

/** The roles a layer's alignment works on (arch's one list). */
export type { ModuleRole };

/**
 * A layer's two parts, aligned apart (verify analyses a wide layer as two jobs): attention with
 * the norm it reads, and the MLP with its own.
 */
export type AttentionPart = Pick<LayerWeights, 'q' | 'k' | 'v' | 'o' | 'inputNorm' | 'inputNormVariance'>;
export type MlpPart = Pick<LayerWeights, 'gate' | 'up' | 'down' | 'postNorm'>;
/** The MLP part's readers and their norm: all its neuron matching reads (verify forms down later, see layer.ts). */
export type MlpReaders = Pick<MlpPart, 'gate' | 'up' | 'postNorm'>;

/**
 * What the residual alignment needs of one model's global weights: the embedding and lm_head
 * columns sketched (see residualColumns; the matrices themselves can be released at once) and
 * the final norm.
 */
export interface ResidualEvidence {
  readonly embed: Matrix;
  readonly lmHead: Matrix | null;
  readonly finalNorm: Float64Array | null;
}

/** Seed of the token sketch: embeddings and lm_head get their own hashing. */
const RESIDUAL_SEED = 11;

/** The columns of an embedding-like (tokens x hidden) matrix, one sketched row per residual dimension. */
export function residualColumns(m: RowMajor, role: 'embed' | 'lm_head'): Matrix {
  return sketchColumnsStandardized(m, SKETCH_WIDTH, residualSeed(role));
}

function residualSeed(role: 'embed' | 'lm_head'): number {
  return RESIDUAL_SEED + (role === 'embed' ? 0 : 1);
}

/** residualColumns of a (rows x cols) matrix given in row blocks, never whole in memory (unless it is narrow). */
export function residualColumnsOfBlocks(
  rows: number, cols: number, blocks: Iterable<{ readonly rowStart: number; readonly rowEnd: number; readonly data: Float32Array }>, role: 'embed' | 'lm_head',
): Matrix {
  if (rows <= SKETCH_WIDTH) {
    const data = new Float32Array(rows * cols);
    for (const block of blocks) data.set(block.data.subarray(0, (block.rowEnd - block.rowStart) * cols), block.rowStart * cols);
    return residualColumns({ rows, cols, data }, role);
  }
  const sketch = new ColumnSketch(rows, cols, SKETCH_WIDTH, residualSeed(role));
  for (const block of blocks) sketch.add(block.data, block.rowStart, block.rowEnd);
  return sketch.result();
}

export interface HeadLayout {
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
}

/**
 * Width rows are compared at: longer rows are count-sketched to it (correlations are kept up to
 * an error of about 1/sqrt(width), far below those of related rows).
 */
const SKETCH_WIDTH = 256;

function asMatrix(a: NoisyMatrix): Matrix {
  return { rows: a.rows, cols: a.cols, data: a.values };
}

/** Rows of a, standardized and sketched for correlation (shared hashing per seed, so both models' rows compare). */
export function comparableRows(a: NoisyMatrix, seed: number): Matrix {
  return sketchRowsStandardized(asMatrix(a), SKETCH_WIDTH, seed);
}

/** The two sides' rows of one role as a similarity source. */
function rowSource(base: NoisyMatrix, candidate: NoisyMatrix, absolute: boolean, seed: number): SimilaritySource {
  return { base: comparableRows(base, seed), candidate: comparableRows(candidate, seed), absolute };
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

/**
 * Residual permutation from the embedding and lm_head columns (each column's entries, one per
 * token, sketched). Columns may be negated: matched on |corr|, the sign read from the matched pair.
 */
export function alignResidual(base: ResidualEvidence, candidate: ResidualEvidence): ResidualAlignment {
  const sources: SimilaritySource[] = [{ base: base.embed, candidate: candidate.embed, absolute: true }];
  if (base.lmHead && candidate.lmHead) sources.push({ base: base.lmHead, candidate: candidate.lmHead, absolute: true });
  const match = matchSources(sources, { seed: RESIDUAL_SEED + 2 });
  const n = match.permutation.length;
  const sign = new Float64Array(n);
  let flipped = 0;
  for (let i = 0; i < n; i++) {
    let signed = 0;
    for (const s of sources) signed += sourceDot(s, i, match.permutation[i]!);
    sign[i] = signed < 0 ? -1 : 1;
    if (sign[i]! < 0) flipped++;
  }
  return { order: match.permutation, sign, quality: match.quality, moved: movedCount(match.permutation), flipped };
}

const residualReaders = (m: NoisyMatrix, r: ResidualAlignment) => permuteColumnsInPlace(m, r.order, r.sign);
const residualWriters = (m: NoisyMatrix, r: ResidualAlignment) => permuteRowsInPlace(m, r.order, r.sign);

/**
 * Express a candidate layer's attention part in the base's residual order (readers' columns,
 * writers' rows). This, applyResidualToMlp, applyResidualToDown, applyMlp, applyMlpToDown and
 * applyHeads permute the matrices in place: the part is consumed.
 */
export function applyResidualToAttention(part: AttentionPart, r: ResidualAlignment): AttentionPart {
  return {
    q: residualReaders(part.q, r), k: residualReaders(part.k, r), v: residualReaders(part.v, r), o: residualWriters(part.o, r),
    inputNorm: permuteResidualVector(part.inputNorm, r),
    ...(part.inputNormVariance ? { inputNormVariance: Float32Array.from(r.order, (from) => part.inputNormVariance![from]!) } : {}),
  };
}

/** applyResidualToAttention of the MLP part's readers (down: applyResidualToDown). */
export function applyResidualToMlp(part: MlpReaders, r: ResidualAlignment): MlpReaders {
  return { gate: residualReaders(part.gate, r), up: residualReaders(part.up, r), postNorm: permuteResidualVector(part.postNorm, r) };
}

/** The MLP part's writer (down) in the base's residual order. */
export function applyResidualToDown(down: NoisyMatrix, r: ResidualAlignment): NoisyMatrix {
  return residualWriters(down, r);
}

/** A residual-indexed vector (a norm weight) in the base's residual order. */
export function permuteResidualVector(g: Float64Array, r: ResidualAlignment): Float64Array {
  return Float64Array.from(r.order, (from) => g[from]!);
}

/**
 * Fold RMSNorm weights into the linears that read them (W diag(gamma)): the product is what the
 * function depends on, so norm-scale obfuscation disappears. Mutates the part: the input norm
 * into Q, K and V.
 */
export function foldInputNorm(part: AttentionPart): void {
  for (const m of [part.q, part.k, part.v]) scaleColumns(m, part.inputNorm);
}

/** foldInputNorm of the MLP part: the post-attention norm into gate and up. */
export function foldPostNorm(part: MlpReaders): void {
  for (const m of [part.gate, part.up]) scaleColumns(m, part.postNorm);
}

export interface MlpAlignment {
  /** order[i] = candidate neuron that plays base neuron i. */
  readonly order: Int32Array;
  readonly quality: number;
  readonly moved: number;
}

/** Both models' gate (signed) and up (absolute: up rows may be negated with down columns) rows, sketched. */
export function neuronSources(base: Pick<MlpPart, 'gate' | 'up'>, candidate: Pick<MlpPart, 'gate' | 'up'>, seed: number): NeuronSources {
  return { gate: rowSource(base.gate, candidate.gate, false, seed), up: rowSource(base.up, candidate.up, true, seed + 1) };
}

/** Neuron permutation maximising the mean of the gate and up similarities. */
export function alignMlp(sources: NeuronSources, seed: number, options: { denseLimit?: number } = {}): MlpAlignment {
  const match = matchSources([sources.gate, sources.up], { seed, ...options });
  return { order: match.permutation, quality: match.quality, moved: movedCount(match.permutation) };
}

/** The neuron permutation applied to gate and up rows (down's columns: applyMlpToDown). */
export function applyMlp<T extends MlpReaders>(layer: T, a: MlpAlignment): T {
  return { ...layer, gate: permuteRowsInPlace(layer.gate, a.order), up: permuteRowsInPlace(layer.up, a.order) };
}

export function applyMlpToDown(down: NoisyMatrix, a: MlpAlignment): NoisyMatrix {
  return permuteColumnsInPlace(down, a.order);
}

/** What the head alignment reads of a layer (any block with q, k, v rows per head). */
export type HeadWeights = Pick<LayerWeights, 'q' | 'k' | 'v'>;

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
  const rb = comparableRows(base, seed);
  const rc = comparableRows(cand, seed);
  const sim = new Float64Array(blocks * blocks);
  // Row t of every block at once: one blocks x blocks product per t, in the fast kernel.
  const rowT = new Int32Array(blocks);
  for (let t = 0; t < headDim; t++) {
    for (let g = 0; g < blocks; g++) rowT[g] = g * headDim + t;
    const dots = matmulTransB(selectRows(rb, rowT), selectRows(rc, rowT)).data;
    for (let p = 0; p < sim.length; p++) sim[p]! += Math.abs(dots[p]!);
  }
  for (let p = 0; p < sim.length; p++) sim[p]! /= headDim;
  return sim;
}

export function alignHeads(base: HeadWeights, candidate: HeadWeights, layout: HeadLayout, seed: number): HeadAlignment {
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

export function blockRows(order: ArrayLike<number>, size: number): Int32Array {
  const rows = new Int32Array(order.length * size);
  for (let b = 0; b < order.length; b++) for (let t = 0; t < size; t++) rows[b * size + t] = order[b]! * size + t;
  return rows;
}

export function applyHeads<T extends AttentionPart>(layer: T, a: HeadAlignment, layout: HeadLayout): T {
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
