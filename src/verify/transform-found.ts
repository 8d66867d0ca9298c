/** What obfuscation verify found and undid, in numbers and plain words (the `transform` of the result). */
import { permuteResidualVector, type ResidualAlignment } from '../align/llama-block.js';
import { maxAbsLog, ratio } from './layer.js';
import type { LayerNorms, NormPair } from './layer-reading.js';
import type { TransformFound } from './types.js';

/** Largest |log| of a candidate norm gain over the base's, in the base's residual order. */
export function normFoldOf(base: Float64Array, candidate: Float64Array, residual: ResidualAlignment): number {
  return maxAbsLog(ratio(permuteResidualVector(candidate, residual), base));
}

/** normFoldOf both norms of a layer. */
export function layerNormFold(norms: LayerNorms, residual: ResidualAlignment): number {
  const fold = (pair: NormPair) => normFoldOf(pair.base.values, pair.candidate.values, residual);
  return Math.max(fold(norms.input), fold(norms.post));
}


function isIdentity(order: ArrayLike<number>): boolean {
  for (let i = 0; i < order.length; i++) if (order[i] !== i) return false;
  return true;
}

/** Scales within this |log| of 1 are what fitting noise produces, not an obfuscation. */
const SCALE_REPORT_LOG = Math.log(1.05);

export function describeTransform(residual: ResidualAlignment, normFold: number, layers: TransformFound['layers']): TransformFound {
  const summary: string[] = [];
  if (residual.moved > 0 || residual.flipped > 0) {
    summary.push(`residual stream permuted (${residual.moved} dimensions moved${residual.flipped ? `, ${residual.flipped} sign flips` : ''})`);
  }
  if (normFold > SCALE_REPORT_LOG) summary.push(`norm weights rescaled and folded (largest factor e^${normFold.toFixed(2)})`);
  const mlpMoved = layers.filter((l) => l.mlpNeuronsPermuted > 0).length;
  if (mlpMoved > 0) summary.push(`MLP neurons permuted in ${mlpMoved} of ${layers.length} layers`);
  const mlpScaled = layers.filter((l) => l.mlpScaleMaxLog > SCALE_REPORT_LOG).length;
  if (mlpScaled > 0) summary.push(`MLP up/down rescaled in ${mlpScaled} layers`);
  const headsMoved = layers.filter((l) => !isIdentity(l.queryHeadOrder)).length;
  if (headsMoved > 0) summary.push(`attention heads permuted in ${headsMoved} layers`);
  const qk = layers.filter((l) => l.qkScaleMaxLog > SCALE_REPORT_LOG).length;
  if (qk > 0) summary.push(`Q/K heads rescaled in ${qk} layers`);
  const vo = layers.filter((l) => l.voScaleMaxLog > SCALE_REPORT_LOG).length;
  if (vo > 0) summary.push(`V/O heads rescaled in ${vo} layers`);
  return {
    identity: summary.length === 0,
    residualPermuted: residual.moved,
    normFoldingMaxLogScale: normFold,
    layers,
    summary: summary.length ? summary : ['identity: no permutation or rescaling'],
  };
}
