/**
 * One decoder layer of the verify analysis, from both models' weights (already read) to its
 * evidence: alignment onto the base, the independence statistic, the noise-aware rank of every
 * module's delta, the invariants and probe rank. A pure function of its inputs, so layers can be
 * analysed in any order or in parallel (see parallel.ts) and merged in layer order.
 */
import { independenceFromSources, type LayerIndependence } from '../align/independence.js';
import { attentionInvariants, probesFor, type AttentionWeights } from './attention-invariants.js';
import {
  alignHeads, alignMlp, applyHeads, applyMlp, applyResidual, foldNorms, neuronSources,
  type HeadAlignment, type HeadLayout, type LayerWeights, type MlpAlignment, type ModuleRole, type ResidualAlignment,
} from '../align/llama-block.js';
import { lowRankDelta, type GaugeFreedom, type LowRankResult } from '../noise/delta-rank.js';
import type { NoisyMatrix } from '../noise/noisy-matrix.js';
import type { Matrix } from '../linalg/matrix.js';
import { ATTENTION_ROLES, MLP_ROLES, MODULE_NAME } from '../arch/types.js';
import { MomentAccumulator, type MomentSums } from '../stats/moments.js';
import { layerComponents, type ChangedModule, type ComponentSums } from './direction.js';
import type { LayerEvidence, ModuleEvidence, ModuleName, TransformFound } from './types.js';

/** The seven modules verify analyses, in report order, with their PEFT names (arch's MODULE_NAME). */
export const MODULES: ReadonlyArray<readonly [ModuleRole, ModuleName]> = [...ATTENTION_ROLES, ...MLP_ROLES]
  .map((role) => [role, MODULE_NAME[role]] as const);

/**
 * The diagonal scalings each role admits without changing the function: reader columns through
 * norm folding; Q/K rows per RoPE pair, V rows with O columns, up rows with down columns.
 * Residual-side rows (O, down) and gate rows (SiLU is not scale-equivariant) admit none.
 */
const GAUGE: Readonly<Record<ModuleName, GaugeFreedom>> = {
  q_proj: { rows: true, cols: true },
  k_proj: { rows: true, cols: true },
  v_proj: { rows: true, cols: true },
  o_proj: { rows: false, cols: true },
  gate_proj: { rows: false, cols: true },
  up_proj: { rows: true, cols: true },
  down_proj: { rows: false, cols: true },
};

/**
 * The gauge a module's delta is fitted in. A reader's column scales are the freedom of its norm
 * gain (folded into its columns): when the gains are bit-identical in both models there is none
 * (the fold is exact), and a column fit would only cost time.
 */
function gaugeOf(name: ModuleName, gainsAgree: { readonly input: boolean; readonly post: boolean }): GaugeFreedom {
  const norm = READ_NORM[name];
  return norm && gainsAgree[norm] ? { rows: GAUGE[name].rows, cols: false } : GAUGE[name];
}

export function sameGains(a: Float64Array, b: Float64Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** How a layer's residual side is given: its alignment onto the base's and the probe states in its coordinates. */
export interface ResidualView {
  readonly residual: ResidualAlignment;
  readonly probes: Matrix;
}

/**
 * What every layer shares: the residual view of whole layers, and of layers read on the residual
 * sample (residual-sample.ts) when the model is wide; the head layout and seed.
 */
export interface LayerContext {
  readonly whole: ResidualView;
  readonly sampled: ResidualView | null;
  readonly layout: HeadLayout;
  readonly seed: number;
  /** Set for LayerNorm blocks (layernorm-layer.ts), whose norms are folded when they are pre-norm; null for Llama-style blocks. */
  readonly layerNorm?: { readonly preNorm: boolean } | null;
}

export interface LayerOutcome {
  readonly evidence: LayerEvidence;
  readonly independence: LayerIndependence;
  readonly transform: TransformFound['layers'][number];
  readonly mlpQuality: number;
  readonly headQuality: number;
  /** Numerator and denominator of the norm growth over this layer's changed modules. */
  readonly growthNum: number;
  readonly growthDen: number;
  /** The direction read component by component over this layer's changed modules (direction.ts). */
  readonly components: ComponentSums;
  /** Weight moments of base and candidate (in the fitted gauge). */
  readonly moments: readonly [MomentSums, MomentSums];
  readonly alignSeconds: number;
  /** Time spent after alignment: ranks, moments, invariants. */
  readonly analyseSeconds: number;
}

/**
 * One pair of neuron sketches serves the independence test and the MLP alignment; kept inside
 * this function so they are released before the rank analysis.
 */
function matchNeurons(index: number, base: LayerWeights, candidate: LayerWeights, seed: number) {
  const layerSeed = seed + 3 * index;
  const sources = neuronSources(base, candidate, layerSeed);
  return { independence: independenceFromSources(index, sources, layerSeed + 7), mlp: alignMlp(sources, layerSeed + 9) };
}

/**
 * `sampled`: the layer was read on the residual sample (context.sampled), the candidate already
 * at the stored dimensions that play the sampled base ones; else it is whole, in its stored order.
 */
export function analyseLayer(index: number, base: LayerWeights, candidateStored: LayerWeights, context: LayerContext, sampled: boolean): LayerOutcome {
  const { layout, seed } = context;
  const view = sampled ? context.sampled : context.whole;
  if (!view) throw new Error(`layer ${index}: read on a residual sample, but the context has none`);
  const b = base;
  const t0 = performance.now();
  let c = applyResidual(candidateStored, view.residual);
  const gainsAgree = { input: sameGains(b.inputNorm, c.inputNorm), post: sameGains(b.postNorm, c.postNorm) };
  foldNorms(b);
  foldNorms(c);
  const { independence, mlp } = matchNeurons(index, b, c, seed);
  c = applyMlp(c, mlp);
  const pruned = setAsidePruning(b, c);
  const heads = alignHeads(b, c, layout, seed + 2000 + index);
  c = applyHeads(c, heads, layout);
  const alignSeconds = (performance.now() - t0) / 1000;

  const moments: [MomentAccumulator, MomentAccumulator] = [new MomentAccumulator(), new MomentAccumulator()];
  const direction = new LayerDirection();
  const modules: ModuleEvidence[] = [];
  const fits = new Map<ModuleName, LowRankResult>();
  for (const [role, name] of MODULES) {
    const x = b[role] as NoisyMatrix;
    const y = c[role] as NoisyMatrix;
    const fit = lowRankDelta(x, y, { gauge: gaugeOf(name, gainsAgree) });
    fits.set(name, fit);
    const status = fit.rank === 0 ? 'unchanged' : fit.lowRank ? 'low-rank' : 'full';
    addMoments(moments, x, y, fit);
    if (status !== 'unchanged') {
      direction.addModule(x, y, fit, READ_NORM[name] === 'input' ? [b.inputNorm, c.inputNorm] : READ_NORM[name] === 'post' ? [b.postNorm, c.postNorm] : null);
    }
    modules.push(moduleEvidence(name, status, fit, sampled));
  }
  return layerOutcome({
    index, base: b, candidate: c, view, layout, modules, residualSample: sampled ? b.q.cols : null, pruned, independence, mlp,
    mlpScaleMaxLog: maxAbsLog(fits.get('up_proj')!.rowScale), heads, k: fits.get('k_proj')!, v: fits.get('v_proj')!, o: fits.get('o_proj')!,
    growthNum: direction.growthNum, growthDen: direction.growthDen, components: direction.components(), moments, started: t0, alignSeconds,
  });
}

/** A layer's findings once its modules are fitted, from either block kind. */
export interface LayerFindings {
  readonly index: number;
  readonly base: AttentionWeights;
  readonly candidate: AttentionWeights;
  readonly view: ResidualView;
  readonly layout: HeadLayout;
  readonly modules: readonly ModuleEvidence[];
  readonly residualSample: number | null;
  readonly pruned: { readonly base: number; readonly candidate: number };
  readonly independence: LayerIndependence;
  readonly mlp: MlpAlignment;
  readonly mlpScaleMaxLog: number;
  readonly heads: HeadAlignment;
  /** The fits of K, V and O (their scales and ranks). */
  readonly k: LowRankResult;
  readonly v: LowRankResult;
  readonly o: LowRankResult;
  readonly growthNum: number;
  readonly growthDen: number;
  /** Norm growth read by component (low-rank spike, dense rest), summed over the dense modules. */
  readonly components: ComponentSums;
  readonly moments: readonly [MomentAccumulator, MomentAccumulator];
  /** performance.now() when the layer's analysis started. */
  readonly started: number;
  readonly alignSeconds: number;
}

/** The attention invariants and probe rank, the transform found and the layer's outcome. */
export function layerOutcome(f: LayerFindings): LayerOutcome {
  // The change of W_v W_o has rank at most r_v + r_o: the probes are sized from those weight-delta ranks.
  const voRankBound = [f.v, f.o].reduce((sum, fit) => sum + (fit.lowRank ? fit.rank : Infinity), 0);
  const inv = attentionInvariants(f.base, f.candidate, f.layout, probesFor(f.view.probes, voRankBound));
  const analyseSeconds = (performance.now() - f.started) / 1000 - f.alignSeconds;
  return {
    evidence: {
      layer: f.index, modules: f.modules, probeRank: inv.probeRank, invariants: { qk: inv.qk, vo: inv.vo }, residualSample: f.residualSample, prunedNeurons: f.pruned,
    },
    independence: f.independence,
    transform: {
      layer: f.index,
      mlpNeuronsPermuted: f.mlp.moved,
      mlpScaleMaxLog: f.mlpScaleMaxLog,
      kvGroupOrder: Array.from(f.heads.groupOrder),
      queryHeadOrder: Array.from(f.heads.headOrder),
      qkScaleMaxLog: maxAbsLog(groupMeans(f.k.rowScale, f.layout.headDim)),
      voScaleMaxLog: maxAbsLog(groupMeans(f.v.rowScale, f.layout.headDim)),
    },
    mlpQuality: f.mlp.quality,
    headQuality: f.heads.quality,
    growthNum: f.growthNum,
    growthDen: f.growthDen,
    components: f.components,
    moments: [f.moments[0].toSums(), f.moments[1].toSums()],
    alignSeconds: f.alignSeconds,
    analyseSeconds,
  };
}

/** A module's evidence from its delta's fit. */
export function moduleEvidence(name: ModuleName, status: ModuleEvidence['status'], fit: LowRankResult, sampled: boolean): ModuleEvidence {
  return {
    module: name,
    status,
    rank: fit.rank,
    relativeDelta: fit.baseNormSq > 0 ? Math.sqrt(fit.deltaNormSq / fit.baseNormSq) : 0,
    singularValues: Array.from(fit.spectrum),
    threshold: 1,
    thresholdMethod: (sampled ? 'on the residual sample: ' : '') + 'bulk edge of the storage-rounding noise (whitened by per-row/column ulp scales); least rank over the function-preserving row/column scalings',
  };
}

/** True when neuron i's gate and up rows are all zero: the neuron is pruned (it adds nothing to the residual). */
function zeroNeuron(layer: LayerWeights, i: number): boolean {
  const w = layer.gate.cols;
  for (let q = i * w; q < (i + 1) * w; q++) if (layer.gate.values[q] !== 0 || layer.up.values[q] !== 0) return false;
  return true;
}

/**
 * Neurons zeroed in one model and not in the other (MLP already aligned), counted per side, and
 * set aside: the candidate's gate and up rows and down column of such a neuron are made the
 * base's, so the rank analysis and the norm growth see only the change beside the pruning. A
 * zeroed neuron gets no gradient through gate or up, so training never revives it: pruning is
 * evidence of direction on its own (a model with neurons zeroed descends from one that has them).
 */
function setAsidePruning(b: LayerWeights, c: LayerWeights): { base: number; candidate: number } {
  const counts = { base: 0, candidate: 0 };
  const w = b.gate.cols, ff = b.down.cols;
  for (let i = 0; i < b.gate.rows; i++) {
    const zb = zeroNeuron(b, i), zc = zeroNeuron(c, i);
    if (zb === zc) continue;
    counts[zb ? 'base' : 'candidate']++;
    for (const role of ['gate', 'up'] as const) {
      c[role].values.set(b[role].values.subarray(i * w, (i + 1) * w), i * w);
      c[role].variance.set(b[role].variance.subarray(i * w, (i + 1) * w), i * w);
    }
    for (let d = 0; d < b.down.rows; d++) {
      c.down.values[d * ff + i] = b.down.values[d * ff + i]!;
      c.down.variance[d * ff + i] = b.down.variance[d * ff + i]!;
    }
  }
  return counts;
}

/** Weight moments of both models on the aligned, norm-folded matrices in the fitted gauge, so an
 * obfuscator's rescaling does not distort the candidate's kurtosis. */
export function addMoments(moments: [MomentAccumulator, MomentAccumulator], x: NoisyMatrix, y: NoisyMatrix, fit: LowRankResult): void {
  moments[0].add(x.values);
  // Scaled a block of rows at a time: no copy of the whole matrix (45M values at 7B widths).
  const blockRows = Math.max(1, Math.floor(MOMENT_BLOCK / y.cols));
  // A fit that kept every scale at 1 (an unchanged module) adds the values as stored, block by block alike.
  const unscaled = fit.rowScale.every((v) => v === 1) && fit.colScale.every((v) => v === 1);
  const scaled = new Float64Array(unscaled ? 0 : Math.min(y.rows, blockRows) * y.cols);
  for (let i0 = 0; i0 < y.rows; i0 += blockRows) {
    const i1 = Math.min(y.rows, i0 + blockRows);
    if (unscaled) {
      moments[1].add(y.values, i0 * y.cols, i1 * y.cols);
      continue;
    }
    for (let i = i0; i < i1; i++) {
      const r = fit.rowScale[i]!, o = i * y.cols, t = (i - i0) * y.cols;
      for (let j = 0; j < y.cols; j++) scaled[t + j] = r * y.values[o + j]! * fit.colScale[j]!;
    }
    moments[1].add(scaled, 0, (i1 - i0) * y.cols);
  }
}

/** Values scaled per block in addMoments. */
const MOMENT_BLOCK = 1 << 18;

/** Which RMSNorm each reader role was folded with (null: a writer, whose residual side is its rows). */
export const READ_NORM: Readonly<Record<ModuleName, 'input' | 'post' | null>> = {
  q_proj: 'input', k_proj: 'input', v_proj: 'input', o_proj: null, gate_proj: 'post', up_proj: 'post', down_proj: null,
};

/**
 * A layer's direction evidence, summed over its changed modules (both block kinds): the norm
 * growth's numerator and denominator, and the modules the components are read from.
 */
export class LayerDirection {
  growthNum = 0;
  growthDen = 0;
  private readonly changed: ChangedModule[] = [];

  /** One change's squared norms added to the growth. */
  addGrowth(g: { readonly candidateNormSq: number; readonly baseNormSq: number; readonly deltaNormSq: number }): void {
    this.growthNum += g.candidateNormSq - g.baseNormSq;
    this.growthDen += g.deltaNormSq;
  }

  /**
   * A changed module. A low-rank delta pins the gauge (the fit recovers any rescaling exactly); a
   * dense one does not, so its growth is measured on the stored (unfolded) weights as aligned,
   * `norms` being the gains folded into it (base, candidate), or null.
   */
  addModule(x: NoisyMatrix, y: NoisyMatrix, fit: LowRankResult, norms: [Float64Array, Float64Array] | null): void {
    const dense = !fit.lowRank;
    this.addGrowth(dense ? unfoldedNorms(x, y, norms) : fit);
    this.changed.push({ base: x, candidate: y, fit, dense });
  }

  components(): ComponentSums {
    return layerComponents(this.changed);
  }
}

/** Squared norms of base, candidate and their difference with the norm folding undone. */
function unfoldedNorms(x: NoisyMatrix, y: NoisyMatrix, norms: [Float64Array, Float64Array] | null) {
  let d = 0, bx = 0, cy = 0;
  for (let i = 0; i < x.rows; i++) {
    for (let j = 0; j < x.cols; j++) {
      const p = i * x.cols + j;
      const xv = norms ? x.values[p]! / (norms[0][j]! || 1) : x.values[p]!;
      const yv = norms ? y.values[p]! / (norms[1][j]! || 1) : y.values[p]!;
      d += (yv - xv) * (yv - xv);
      bx += xv * xv;
      cy += yv * yv;
    }
  }
  return { deltaNormSq: d, baseNormSq: bx, candidateNormSq: cy };
}

/** Mean |scale| of each head block (a per-head obfuscation scale shows as one value per block). */
function groupMeans(scale: Float64Array, size: number): Float64Array {
  const out = new Float64Array(Math.floor(scale.length / size));
  for (let g = 0; g < out.length; g++) {
    let s = 0;
    for (let t = 0; t < size; t++) s += Math.abs(scale[g * size + t]!);
    out[g] = s / size;
  }
  return out;
}

export function maxAbsLog(values: ArrayLike<number>, from = 0, to = values.length): number {
  let m = 0;
  for (let i = from; i < to; i++) {
    const v = Math.abs(values[i]!);
    if (v > 0) m = Math.max(m, Math.abs(Math.log(v)));
  }
  return m;
}

export function ratio(a: Float64Array, b: Float64Array): Float64Array {
  return Float64Array.from(a, (v, i) => (b[i] !== 0 ? v / b[i]! : 1));
}
