import { Rng } from '../linalg/rng.js';
import type { ResidualAlignment } from './llama.js';

/**
 * Layers of wide models are analysed on a random sample of the residual dimensions: the columns
 * of q, k, v, gate and up, and the rows of o and down, kept at the same sampled base dimensions in
 * both models. Only those columns are decoded and only those rows read, so a 7B layer pair costs a
 * few hundred MB and a read, not 5 GB and a decode of every weight.
 *
 * Why the residual side: its alignment (permutation and signs, from the embeddings) is known
 * before any layer is read, so the candidate is read at the stored dimensions that play the
 * sampled base ones. The other side (heads, neurons) stays whole: its permutations are found from
 * these very samples, and its function-preserving scalings must still be fitted.
 *
 * What is kept, exactly as in the whole analysis: the noise model (every kept entry has its own
 * rounding variance), the gauge of both sides (a sampled column is still one residual dimension,
 * so rescaled norm gains are still refitted per column), the rank of a delta (B A restricted to
 * the sampled columns of A keeps rank r when A's rows are spread over the residual, as a trained
 * LoRA's are). Norms, the norm growth and the moments become estimates from the sample (the same
 * columns in both models, so |C|^2 - |B|^2 carries no sampling noise of |B|^2 itself).
 * What is lost: about sqrt(hidden / width) of sensitivity for the weakest singular values (the
 * same as a count sketch of that width), and a change confined to unsampled dimensions is not
 * seen: the sample is seeded, so a rerun with another seed samples other dimensions.
 */
export const RESIDUAL_SAMPLE_WIDTH = 256;

/** How many residual dimensions a model of `hidden` is analysed on: `width` when wider, null when kept whole. */
export function residualSampleWidth(hidden: number, width = RESIDUAL_SAMPLE_WIDTH): number | null {
  return hidden > width ? width : null;
}

/** The sampled base residual dimensions (ascending), or null when there are no more than `width` (kept whole). */
export function residualSample(hidden: number, seed: number, width = RESIDUAL_SAMPLE_WIDTH): Int32Array | null {
  const kept = residualSampleWidth(hidden, width);
  return kept === null ? null : new Rng(seed * 7919 + 4099).permutation(hidden).slice(0, kept).sort();
}

/**
 * A sample as each model is read: the base at its sampled dimensions, the candidate at the stored
 * dimensions that play them; and the alignment left to apply to the candidate's sample (the
 * order is already the base's, the residual sign flips remain).
 */
export interface SampledResidual {
  readonly base: Int32Array;
  readonly candidate: Int32Array;
  readonly alignment: ResidualAlignment;
}

export function sampledResidual(sample: Int32Array, residual: ResidualAlignment): SampledResidual {
  const candidate = Int32Array.from(sample, (i) => residual.order[i]!);
  const sign = Float64Array.from(sample, (i) => residual.sign[i]!);
  const order = Int32Array.from(sample, (_, t) => t);
  const flipped = sign.reduce((n, s) => n + (s < 0 ? 1 : 0), 0);
  return { base: sample, candidate, alignment: { order, sign, quality: residual.quality, moved: 0, flipped } };
}

/** Token rows of the embeddings the residual alignment reads when the vocabulary is larger. */
export const TOKEN_SAMPLE = 4096;

/** The sampled token rows (ascending), or null when the vocabulary has no more than `count`. */
export function tokenSample(vocab: number, seed: number, count = TOKEN_SAMPLE): Int32Array | null {
  if (vocab <= count) return null;
  return new Rng(seed * 7919 + 8191).permutation(vocab).slice(0, count).sort();
}
