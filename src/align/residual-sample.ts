/**
 * Layers of wide models are analysed on a random sample of the residual dimensions (runs of
 * consecutive ones, see runSample): the columns of q, k, v, gate and up, and the rows of o and
 * down, kept at the same sampled base dimensions in both models. Only those columns are decoded
 * and only those rows read, so a 7B layer pair costs a few hundred MB and a read, not 5 GB and a
 * decode of every weight.
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
import { Rng } from '../linalg/rng.js';
import type { ResidualAlignment } from './llama-block.js';

export const RESIDUAL_SAMPLE_WIDTH = 256;

/** How many residual dimensions a model of `hidden` is analysed on: `width` when wider, null when kept whole. */
export function residualSampleWidth(hidden: number, width = RESIDUAL_SAMPLE_WIDTH): number | null {
  return hidden > width ? width : null;
}

/**
 * Consecutive residual dimensions per run of the sample: the base's o and down are read on the
 * sampled rows, 8 to a read instead of 1 (residual dimensions have no order that matters, so runs
 * at random places sample them as well as scattered ones do).
 */
export const RESIDUAL_RUN = 8;

/** The sampled base residual dimensions (ascending), or null when there are no more than `width` (kept whole). */
export function residualSample(hidden: number, seed: number, width = RESIDUAL_SAMPLE_WIDTH): Int32Array | null {
  const kept = residualSampleWidth(hidden, width);
  return kept === null ? null : runSample(hidden, kept, RESIDUAL_RUN, new Rng(seed * 7919 + 4099));
}

/**
 * `count` of the indices 0..total-1, ascending: runs of `run` consecutive indices (the last one
 * shorter when `run` does not divide `count`) at run-aligned slots, one drawn by `rng` in each of
 * as many equal strata of the range (spread over all of it, whatever the draw); single indices
 * when too few slots fit.
 */
function runSample(total: number, count: number, run: number, rng: Rng): Int32Array {
  const length = Math.floor(total / run) >= Math.ceil(count / run) ? run : 1;
  const slots = Math.floor(total / length), runs = Math.ceil(count / length);
  const starts = Int32Array.from({ length: runs }, (_, r) => {
    const from = Math.floor((r * slots) / runs), to = Math.floor(((r + 1) * slots) / runs);
    return (from + rng.int(to - from)) * length;
  });
  return Int32Array.from({ length: count }, (_, t) => starts[Math.floor(t / length)]! + (t % length));
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

/**
 * Consecutive token rows per run of the sample: one read of 64 rows (512 KB of a 4096-wide bf16
 * embedding) instead of 64 scattered ones, the difference between milliseconds and seconds on a
 * cold disk; 64 runs still spread the sample over the whole vocabulary.
 */
export const TOKEN_RUN = 64;

/**
 * The sampled token rows (ascending), or null when the vocabulary has no more than `count`:
 * `count / run` runs of `run` consecutive rows, one drawn in each stratum of the vocabulary
 * (runSample; the vocabulary's order is the same in both models: obfuscation permutes the
 * residual, not the tokens).
 */
export function tokenSample(vocab: number, seed: number, count = TOKEN_SAMPLE, run = TOKEN_RUN): Int32Array | null {
  return vocab <= count ? null : runSample(vocab, count, run, new Rng(seed * 7919 + 8191));
}
