/**
 * Alignment of a LayerNorm block (ViT, BERT, GPT-2, GPT-NeoX: LayerNorm with biases, attention
 * with biases, a non-gated GELU MLP fc_in -> fc_out) onto a base model by the function-preserving
 * transforms such a block admits: a permutation of the residual stream (LayerNorm's mean and
 * variance do not see the order; sign flips are NOT preserved, the mean would change), LayerNorm
 * gamma and beta folded into the linears that read the norm (W diag(gamma), b + W beta), MLP
 * neuron permutation (GELU is not homogeneous: no up/down rescaling), head permutation (found by
 * llama-block.ts's alignHeads from q, k and v rows, as for any attention), and Q/K, V/O per-head scalings
 * (left to the gauge fit). All matrices are (out, in); biases are (n, 1).
 */
import type { PlainRole } from '../arch/types.js';
import type { NeuronSources } from './independence.js';
import { blockRows, comparableRows, type HeadAlignment, type HeadLayout, type MlpAlignment, type ResidualAlignment } from './llama-block.js';
import { matchSources, movedCount } from './matching.js';
import { permuteColumnsInPlace, permuteRowsInPlace, scaleColumns, type NoisyMatrix } from '../noise/noisy-matrix.js';

export interface LayerNormLayerWeights {
  readonly q: NoisyMatrix;
  readonly k: NoisyMatrix;
  readonly v: NoisyMatrix;
  readonly o: NoisyMatrix;
  readonly fc_in: NoisyMatrix;
  readonly fc_out: NoisyMatrix;
  /** Each linear's bias (n, 1); zeros of zero variance where the model stores none. */
  readonly bias: Readonly<Record<PlainRole, NoisyMatrix>>;
  /** LayerNorm gamma and beta before attention (input) and before the MLP (post). */
  readonly inputNorm: Float64Array;
  readonly inputNormBias: NoisyMatrix;
  readonly postNorm: Float64Array;
  readonly postNormBias: NoisyMatrix;
}

const READERS = ['q', 'k', 'v', 'fc_in'] as const;
const WRITERS = ['o', 'fc_out'] as const;

/** A candidate layer in the base's residual order (readers' columns, writers' rows and biases, norms); in place. */
export function applyResidualLayerNorm(layer: LayerNormLayerWeights, r: ResidualAlignment): LayerNormLayerWeights {
  for (const role of READERS) permuteColumnsInPlace(layer[role], r.order);
  for (const role of WRITERS) {
    permuteRowsInPlace(layer[role], r.order);
    permuteRowsInPlace(layer.bias[role], r.order);
  }
  const vector = (g: Float64Array) => Float64Array.from(r.order, (from) => g[from]!);
  return {
    ...layer,
    inputNorm: vector(layer.inputNorm), postNorm: vector(layer.postNorm),
    inputNormBias: permuteRowsInPlace(layer.inputNormBias, r.order), postNormBias: permuteRowsInPlace(layer.postNormBias, r.order),
  };
}

/**
 * Bring a layer to the form its function depends on, in place:
 * - pre-norm blocks (`preNorm`): W diag(gamma) and b + W beta for each linear reading a norm (an
 *   obfuscator may move scale and shift between the norm and the linear; post-norm BERT's norm
 *   output is the residual itself, so there it is left as stored);
 * - V's bias moved into O's (b_o + W_o b_v): attention weights sum to one, so only that sum acts;
 * - K's bias dropped: it adds q . b_k to every key's score alike, which softmax ignores.
 */
export function canonicalizeLayerNorm(layer: LayerNormLayerWeights, preNorm: boolean): LayerNormLayerWeights {
  if (preNorm) {
    for (const role of ['q', 'k', 'v'] as const) foldBeta(layer[role], layer.bias[role], layer.inputNormBias);
    foldBeta(layer.fc_in, layer.bias.fc_in, layer.postNormBias);
    for (const role of ['q', 'k', 'v'] as const) scaleColumns(layer[role], layer.inputNorm);
    scaleColumns(layer.fc_in, layer.postNorm);
  }
  foldBeta(layer.o, layer.bias.o, layer.bias.v);
  for (const b of [layer.bias.v, layer.bias.k]) {
    b.values.fill(0);
    b.variance.fill(0);
  }
  return layer;
}

/** bias += W x, with the rounding variance of the product (each stored factor's error, to first order). */
function foldBeta(w: NoisyMatrix, bias: NoisyMatrix, x: NoisyMatrix): void {
  for (let i = 0; i < w.rows; i++) {
    let sum = 0, variance = 0;
    for (let j = 0; j < w.cols; j++) {
      const p = i * w.cols + j, wv = w.values[p]!, xv = x.values[j]!;
      sum += wv * xv;
      variance += wv * wv * x.variance[j]! + xv * xv * w.variance[p]!;
    }
    bias.values[i]! += sum;
    bias.variance[i]! += variance;
  }
}

/** A matrix's columns as the rows of a new one (fc_out's columns are its neurons). */
function columnsAsRows(m: NoisyMatrix): NoisyMatrix {
  const values = new Float64Array(m.rows * m.cols), variance = new Float32Array(m.rows * m.cols);
  for (let i = 0; i < m.rows; i++) {
    for (let j = 0; j < m.cols; j++) {
      values[j * m.rows + i] = m.values[i * m.cols + j]!;
      variance[j * m.rows + i] = m.variance[i * m.cols + j]!;
    }
  }
  return { rows: m.cols, cols: m.rows, values, variance };
}

/**
 * The two independent views of the MLP's hidden units: fc_in rows and fc_out columns, both signed
 * (GELU is not odd, so a neuron cannot be negated). Named gate and up as in the gated test.
 */
export function layerNormNeuronSources(base: LayerNormLayerWeights, candidate: LayerNormLayerWeights, seed: number): NeuronSources {
  return {
    gate: { base: comparableRows(base.fc_in, seed), candidate: comparableRows(candidate.fc_in, seed), absolute: false },
    up: { base: comparableRows(columnsAsRows(base.fc_out), seed + 1), candidate: comparableRows(columnsAsRows(candidate.fc_out), seed + 1), absolute: false },
  };
}

/** Neuron permutation maximising the mean of both views' similarities. */
export function alignLayerNormMlp(sources: NeuronSources, seed: number): MlpAlignment {
  const match = matchSources([sources.gate, sources.up], { seed });
  return { order: match.permutation, quality: match.quality, moved: movedCount(match.permutation) };
}

export function applyLayerNormMlp(layer: LayerNormLayerWeights, a: MlpAlignment): LayerNormLayerWeights {
  permuteRowsInPlace(layer.fc_in, a.order);
  permuteRowsInPlace(layer.bias.fc_in, a.order);
  permuteColumnsInPlace(layer.fc_out, a.order);
  return layer;
}

export function applyLayerNormHeads(layer: LayerNormLayerWeights, a: HeadAlignment, layout: HeadLayout): LayerNormLayerWeights {
  const kvRows = blockRows(a.groupOrder, layout.headDim);
  const qRows = blockRows(a.headOrder, layout.headDim);
  for (const [role, rows] of [['q', qRows], ['k', kvRows], ['v', kvRows]] as const) {
    permuteRowsInPlace(layer[role], rows);
    permuteRowsInPlace(layer.bias[role], rows);
  }
  permuteColumnsInPlace(layer.o, qRows);
  return layer;
}
