/**
 * One LayerNorm block (ViT, BERT, GPT-2, GPT-NeoX) of the verify analysis, as layer.ts does for a
 * Llama-style block: alignment onto the base (align/layernorm-block.ts), the independence statistic from
 * fc_in rows and fc_out columns, the noise-aware rank of every module's delta with its bias, the
 * invariants and probe rank. A pure function of its inputs, like analyseLayer.
 */
import { independenceFromSources } from '../align/independence.js';
import {
  alignLayerNormMlp, applyLayerNormHeads, applyLayerNormMlp, applyResidualLayerNorm, canonicalizeLayerNorm,
  layerNormNeuronSources, type LayerNormLayerWeights,
} from '../align/layernorm-block.js';
import { alignHeads } from '../align/llama-block.js';
import { lowRankDelta, type GaugeFreedom, type LowRankResult } from '../noise/delta-rank.js';
import type { NoisyMatrix } from '../noise/noisy-matrix.js';
import { PLAIN_MODULE_NAME, PLAIN_ROLES, type PlainRole } from '../arch/types.js';
import { MomentAccumulator } from '../stats/moments.js';
import { addMoments, LayerDirection, layerOutcome, moduleEvidence, sameGains, type LayerContext, type LayerOutcome } from './layer.js';
import type { ModuleEvidence } from './types.js';

/**
 * The diagonal scalings each role admits without changing the function: reader columns through
 * the LayerNorm gamma (pre-norm blocks); Q/K rows per head, V rows with O columns. GELU is not
 * homogeneous, so fc_in rows and fc_out columns admit none; residual-side rows none.
 */
const GAUGE: Readonly<Record<PlainRole, GaugeFreedom>> = {
  q: { rows: true, cols: true },
  k: { rows: true, cols: true },
  v: { rows: true, cols: true },
  o: { rows: false, cols: true },
  fc_in: { rows: false, cols: true },
  fc_out: { rows: false, cols: false },
};

/** Which norm each reader was folded with (pre-norm blocks), for the growth of a dense change. */
const READ_NORM: Readonly<Record<PlainRole, 'inputNorm' | 'postNorm' | null>> = {
  q: 'inputNorm', k: 'inputNorm', v: 'inputNorm', o: null, fc_in: 'postNorm', fc_out: null,
};

/**
 * The gauge a module's delta is fitted in: a reader's column scales are the freedom of its norm
 * gain, none when the gains are bit-identical in both models (the fold is exact) or not folded.
 */
function gaugeOf(role: PlainRole, preNorm: boolean, gainsAgree: Readonly<Record<'inputNorm' | 'postNorm', boolean>>): GaugeFreedom {
  const norm = READ_NORM[role];
  return norm && (!preNorm || gainsAgree[norm]) ? { rows: GAUGE[role].rows, cols: false } : GAUGE[role];
}

/**
 * A float32 merge W + s B A rounds the factor product too (r products summed per entry, each
 * rounded), so beside the storage rounding the edge is set by, a merged update carries noise of up
 * to about sqrt(r) times it (measured: a rank-8 f32 merge's 9th singular value at 1.1-1.5 times the
 * edge, after a gap of 10^6). Directions standing within MERGE_NOISE of the edge after a gap of
 * more than MERGE_GAP are that noise, not update directions: a trained direction that weak could
 * not be told from it anyway.
 */
const MERGE_NOISE = 2;
const MERGE_GAP = 1e3;

function beyondMergeNoise(fit: LowRankResult): LowRankResult {
  const s = fit.spectrum;
  for (let k = 1; k < Math.min(fit.rank, s.length); k++) {
    if (s[k]! < MERGE_NOISE && s[k - 1]! > MERGE_GAP * s[k]!) return { ...fit, rank: k };
  }
  return fit;
}

/** Squared norms of two biases and their difference, the candidate's rows scaled by `rowScale`. */
function biasNorms(base: NoisyMatrix, candidate: NoisyMatrix, rowScale: Float64Array) {
  let deltaNormSq = 0, baseNormSq = 0, candidateNormSq = 0;
  for (let i = 0; i < base.rows; i++) {
    const x = base.values[i]!, y = rowScale[i]! * candidate.values[i]!;
    deltaNormSq += (y - x) * (y - x);
    baseNormSq += x * x;
    candidateNormSq += y * y;
  }
  return { deltaNormSq, baseNormSq, candidateNormSq };
}

/** A weight with its bias appended as one more column: a changed bias raises the delta's rank by one. */
function withBias(w: NoisyMatrix, bias: NoisyMatrix): NoisyMatrix {
  const cols = w.cols + 1;
  const values = new Float64Array(w.rows * cols), variance = new Float32Array(w.rows * cols);
  for (let i = 0; i < w.rows; i++) {
    values.set(w.values.subarray(i * w.cols, (i + 1) * w.cols), i * cols);
    variance.set(w.variance.subarray(i * w.cols, (i + 1) * w.cols), i * cols);
    values[i * cols + w.cols] = bias.values[i]!;
    variance[i * cols + w.cols] = bias.variance[i]!;
  }
  return { rows: w.rows, cols, values, variance };
}

/**
 * `preNorm`: the norms read by each block's linears (ViT, GPT-2, GPT-NeoX) are folded into them;
 * post-norm (BERT) layers are compared as stored. Layers are always whole (no residual sample).
 */
export function analyseLayerNormLayer(
  index: number, base: LayerNormLayerWeights, candidateStored: LayerNormLayerWeights, context: LayerContext, preNorm: boolean,
): LayerOutcome {
  const { layout, seed } = context;
  const view = context.whole;
  const t0 = performance.now();
  let c = applyResidualLayerNorm(candidateStored, view.residual);
  const gainsAgree = { inputNorm: sameGains(base.inputNorm, c.inputNorm), postNorm: sameGains(base.postNorm, c.postNorm) };
  const b = canonicalizeLayerNorm(base, preNorm);
  c = canonicalizeLayerNorm(c, preNorm);
  const layerSeed = seed + 3 * index;
  const sources = layerNormNeuronSources(b, c, layerSeed);
  const independence = independenceFromSources(index, sources, layerSeed + 7);
  const mlp = alignLayerNormMlp(sources, layerSeed + 9);
  c = applyLayerNormMlp(c, mlp);
  const heads = alignHeads(b, c, layout, seed + 2000 + index);
  c = applyLayerNormHeads(c, heads, layout);
  const alignSeconds = (performance.now() - t0) / 1000;

  const moments: [MomentAccumulator, MomentAccumulator] = [new MomentAccumulator(), new MomentAccumulator()];
  const direction = new LayerDirection(layout);
  const modules: ModuleEvidence[] = [];
  const fits = new Map<PlainRole, LowRankResult>();
  for (const role of PLAIN_ROLES) {
    const x = b[role], y = c[role];
    const fit = beyondMergeNoise(lowRankDelta(x, y, { gauge: gaugeOf(role, preNorm, gainsAgree) }));
    fits.set(role, fit);
    const biasChanged = lowRankDelta(withBias(x, b.bias[role]), withBias(y, c.bias[role]), { gauge: gaugeOf(role, preNorm, gainsAgree) }).rank > fit.rank;
    // O's bias holds W_o b_v (canonicalizeLayerNorm): a changed V changes it, which is V's change.
    const biasOnly = biasChanged && !(role === 'o' && modules.some((m) => m.module === PLAIN_MODULE_NAME.v && m.status !== 'unchanged'));
    const status = fit.rank === 0 ? (biasOnly ? 'full' : 'unchanged') : fit.lowRank ? 'low-rank' : 'full';
    addMoments(moments, x, y, fit);
    // A bias-only change: its direction is read from the biases (candidate in the fitted row gauge).
    if (fit.rank === 0 && status === 'full') direction.addGrowth(biasNorms(b.bias[role], c.bias[role], fit.rowScale));
    const norm = preNorm ? READ_NORM[role] : null;
    direction.addModule(role, x, y, fit, norm ? [b[norm], c[norm]] : null);
    modules.push({ ...moduleEvidence(PLAIN_MODULE_NAME[role], status, fit, false), biasChanged });
  }
  return layerOutcome({
    index, base: b, candidate: c, view, layout, modules, residualSample: null, pruned: { base: 0, candidate: 0 }, independence, mlp,
    // GELU is not homogeneous: no up/down scale is fitted, none is reported.
    mlpScaleMaxLog: 0, heads, k: fits.get('k')!, v: fits.get('v')!, o: fits.get('o')!,
    growthNum: direction.growthNum, growthDen: direction.growthDen, components: direction.components(), moments, started: t0, alignSeconds,
  });
}
