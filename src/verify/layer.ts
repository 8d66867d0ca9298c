/**
 * One decoder layer of the verify analysis, from both models' weights (already read) to its
 * evidence: alignment onto the base, the independence statistic, the noise-aware rank of every
 * module's delta, the invariants and probe rank. A pure function of its inputs, so layers can be
 * analysed in any order or in parallel (see parallel.ts) and merged in layer order; a layer is
 * analysed in two parts, attention and MLP (LayerPart), merged the same way.
 */
import { independenceFromSources, type LayerIndependence } from '../align/independence.js';
import { attentionInvariants, probesFor, type AttentionWeights } from './attention-invariants.js';
import {
  alignHeads, alignMlp, applyHeads, applyMlp, applyMlpToDown, applyResidualToAttention, applyResidualToDown, applyResidualToMlp, foldInputNorm, foldPostNorm,
  neuronSources, type AttentionPart, type HeadAlignment, type HeadLayout, type LayerWeights, type MlpAlignment, type MlpReaders, type ModuleRole, type ResidualAlignment,
} from '../align/llama-block.js';
import { lowRankDelta, type GaugeFreedom, type LowRankResult } from '../noise/delta-rank.js';
import type { NoisyMatrix } from '../noise/noisy-matrix.js';
import type { Matrix } from '../linalg/matrix.js';
import { ATTENTION_ROLES, MLP_ROLES, MODULE_NAME, type LayerRole } from '../arch/types.js';
import { MomentAccumulator, type MomentSums } from '../stats/moments.js';
import { addComponents, layerComponents, type ChangedModule, type ComponentSums } from './direction.js';
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
 * (the fold is exact), and a column fit would only cost time. `gainAgrees`: the gain of the
 * module's part (attention: the input norm; MLP: the post-attention norm) is.
 */
function gaugeOf(name: ModuleName, gainAgrees: boolean): GaugeFreedom {
  return READ_NORM[name] && gainAgrees ? { rows: GAUGE[name].rows, cols: false } : GAUGE[name];
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

/** Sums over a layer's (or a part's) modules, added when parts merge. */
interface ModuleSums {
  /** Numerator and denominator of the norm growth over the changed modules. */
  readonly growthNum: number;
  readonly growthDen: number;
  /** The direction read component by component over the changed modules (direction.ts). */
  readonly components: ComponentSums;
  /** Weight moments of base and candidate (in the fitted gauge). */
  readonly moments: readonly [MomentSums, MomentSums];
  readonly alignSeconds: number;
  /** Time spent after alignment: ranks, moments, invariants. */
  readonly analyseSeconds: number;
}

export interface LayerOutcome extends ModuleSums {
  readonly evidence: LayerEvidence;
  readonly independence: LayerIndependence;
  readonly transform: TransformFound['layers'][number];
  readonly mlpQuality: number;
  readonly headQuality: number;
}

/**
 * One pair of neuron sketches serves the independence test and the MLP alignment; kept inside
 * this function so they are released before the rank analysis.
 */
function matchNeurons(index: number, base: MlpReaders, candidate: MlpReaders, seed: number) {
  const layerSeed = seed + 3 * index;
  const sources = neuronSources(base, candidate, layerSeed);
  return { independence: independenceFromSources(index, sources, layerSeed + 7), mlp: alignMlp(sources, layerSeed + 9) };
}

/**
 * The two parts a Llama-style layer is analysed in, each a job of its own (jobs.ts), so an analyst
 * holds half a layer: attention (its modules, the head alignment, the invariants) and the MLP (its
 * modules, the neuron matching, the independence statistic, pruning). Both share the residual
 * alignment only (the context); mergeParts makes the layer's outcome.
 */
export type LayerPart = 'attention' | 'mlp';

export const PART_ROLES: Readonly<Record<LayerPart, readonly ModuleRole[]>> = { attention: ATTENTION_ROLES, mlp: MLP_ROLES };

/**
 * The role of a part whose analysis form is built once the part's other modules are fitted (see
 * MlpDown): an analyst holds at once the forms of the other roles, or of this one.
 */
export const FORMED_LAST: Readonly<Record<LayerPart, ModuleRole | null>> = { attention: null, mlp: 'down' };

/**
 * Where the MLP part's down comes from, and where the arrays of a module nothing reads any more
 * go. The neuron matching reads gate and up only, so down's analysis form is built once gate and
 * up are fitted; an unchanged module's arrays are given back after its fit (no direction evidence
 * reads them), so an analyst builds down's form in gate's and up's memory, never holding the
 * three modules' forms at once.
 */
export interface MlpDown {
  /** Both models' down in the analysis form, the candidate's in its stored order. */
  form(): { readonly base: NoisyMatrix; readonly candidate: NoisyMatrix };
  /** Absent when nothing reuses a released module's memory (no pool): its matrices are then kept. */
  readonly release?: (m: NoisyMatrix) => void;
}

/** What the attention part adds to a layer's outcome. */
interface AttentionFindings {
  readonly probeRank: number;
  readonly invariants: { readonly qk: number; readonly vo: number };
  readonly kvGroupOrder: number[];
  readonly queryHeadOrder: number[];
  readonly qkScaleMaxLog: number;
  readonly voScaleMaxLog: number;
  readonly headQuality: number;
}

/** What the MLP part adds to a layer's outcome. */
interface MlpFindings {
  readonly independence: LayerIndependence;
  readonly mlpNeuronsPermuted: number;
  readonly mlpScaleMaxLog: number;
  readonly mlpQuality: number;
  readonly prunedNeurons: { readonly base: number; readonly candidate: number };
}

/** One part of a layer, analysed. */
export interface PartOutcome extends ModuleSums {
  readonly index: number;
  readonly part: LayerPart;
  readonly modules: readonly ModuleEvidence[];
  readonly residualSample: number | null;
  /** Some module of the part changed densely. */
  readonly dense: boolean;
  /**
   * `components` covers every changed module of the part: false only when the part changed, none
   * of it densely, and it was not told the other part did (then, if the other part did, it is
   * analysed again with `layerDense`: components are read over a layer's changed modules when any
   * of them changed densely, see layerComponents).
   */
  readonly componentsRead: boolean;
  readonly attention: AttentionFindings | null;
  readonly mlp: MlpFindings | null;
}

/** A part's outcome, with its changed modules (in this thread) to read their components later. */
interface PartAnalysis {
  readonly outcome: PartOutcome;
  readonly changed: readonly ChangedModule[];
}

function viewOf(context: LayerContext, sampled: boolean, index: number): ResidualView {
  const view = sampled ? context.sampled : context.whole;
  if (!view) throw new Error(`layer ${index}: read on a residual sample, but the context has none`);
  return view;
}

/**
 * The modules of a part fitted in order (`pairs` is read one module at a time), with their
 * moments, growth and components; an unchanged module's matrices go to `release`, when given,
 * once fitted (the direction evidence keeping what it may still read of them).
 */
function fitModules(
  pairs: Iterable<readonly [ModuleRole, NoisyMatrix, NoisyMatrix]>, gains: { readonly agree: boolean; readonly base: Float64Array; readonly candidate: Float64Array },
  layout: HeadLayout, sampled: boolean, layerDense: boolean, release?: (m: NoisyMatrix) => void,
) {
  const moments: [MomentAccumulator, MomentAccumulator] = [new MomentAccumulator(), new MomentAccumulator()];
  const direction = new LayerDirection(layout);
  const modules: ModuleEvidence[] = [];
  const fits = new Map<ModuleName, LowRankResult>();
  // One work array serves every module's rank analysis (each overwrites it).
  let scratch = new Float64Array(0);
  for (const [role, x, y] of pairs) {
    const name = MODULE_NAME[role];
    if (scratch.length < x.values.length) scratch = new Float64Array(x.values.length);
    const fit = lowRankDelta(x, y, { gauge: gaugeOf(name, gains.agree), scratch });
    fits.set(name, fit);
    const status = fit.rank === 0 ? 'unchanged' : fit.lowRank ? 'low-rank' : 'full';
    addMoments(moments, x, y, fit);
    direction.addModule(role, x, y, fit, READ_NORM[name] ? [gains.base, gains.candidate] : null);
    if (status === 'unchanged' && release) {
      direction.detach(role);
      release(x);
      release(y);
    }
    modules.push(moduleEvidence(name, status, fit, sampled));
  }
  const changed = direction.changedModules();
  const dense = changed.some((m) => m.dense);
  return {
    modules, fits, changed, dense, componentsRead: dense || layerDense || changed.length === 0,
    growthNum: direction.growthNum, growthDen: direction.growthDen,
    components: layerComponents(changed, dense || layerDense), moments,
  };
}

/**
 * A part's candidate in the base's residual order, and both parts' norm gain folded into the
 * modules that read it; `gainsAgree`: the gains were bit-identical before (gaugeOf).
 */
function inResidualOrderFolded<T>(
  base: T, candidateStored: T, view: ResidualView, toBaseOrder: (part: T, r: ResidualAlignment) => T, gain: (part: T) => Float64Array, fold: (part: T) => void,
): { candidate: T; gainsAgree: boolean } {
  const candidate = toBaseOrder(candidateStored, view.residual);
  const gainsAgree = sameGains(gain(base), gain(candidate));
  fold(base);
  fold(candidate);
  return { candidate, gainsAgree };
}

/**
 * The attention part of a layer. `sampled`: read on the residual sample (context.sampled), the
 * candidate already at the stored dimensions that play the sampled base ones; else whole, in its
 * stored order. `layerDense`: the MLP part changed densely (read this part's components).
 */
function analyseAttention(index: number, b: AttentionPart, candidateStored: AttentionPart, context: LayerContext, sampled: boolean, layerDense: boolean): PartAnalysis {
  const { layout, seed } = context;
  const view = viewOf(context, sampled, index);
  const t0 = performance.now();
  const folded = inResidualOrderFolded(b, candidateStored, view, applyResidualToAttention, (part) => part.inputNorm, foldInputNorm);
  let c = folded.candidate;
  const agree = folded.gainsAgree;
  const heads = alignHeads(b, c, layout, seed + 2000 + index);
  c = applyHeads(c, heads, layout);
  const alignSeconds = (performance.now() - t0) / 1000;
  const fitted = fitModules(ATTENTION_ROLES.map((role) => [role, b[role], c[role]] as const), { agree, base: b.inputNorm, candidate: c.inputNorm }, layout, sampled, layerDense);
  const attention = attentionFindings(b, c, view, layout, heads, { k: fitted.fits.get('k_proj')!, v: fitted.fits.get('v_proj')!, o: fitted.fits.get('o_proj')! });
  return partAnalysis(index, 'attention', fitted, sampled ? b.q.cols : null, t0, alignSeconds, attention, null);
}

/** The MLP part of a layer (see analyseAttention); down comes from `down` once gate and up are fitted. */
function analyseMlp(index: number, b: MlpReaders, candidateStored: MlpReaders, down: MlpDown, context: LayerContext, sampled: boolean, layerDense: boolean): PartAnalysis {
  const view = viewOf(context, sampled, index);
  const t0 = performance.now();
  const folded = inResidualOrderFolded(b, candidateStored, view, applyResidualToMlp, (part) => part.postNorm, foldPostNorm);
  let c = folded.candidate;
  const agree = folded.gainsAgree;
  const { independence, mlp } = matchNeurons(index, b, c, context.seed);
  c = applyMlp(c, mlp);
  const pruned = setAsidePruning(b, c);
  let alignSeconds = (performance.now() - t0) / 1000;
  // down aligned as gate and up were: its residual rows, its neuron columns, the set-aside neurons' columns.
  function* modules(): Generator<readonly [ModuleRole, NoisyMatrix, NoisyMatrix]> {
    yield ['gate', b.gate, c.gate];
    yield ['up', b.up, c.up];
    const formed = down.form();
    const t1 = performance.now();
    const candidateDown = applyMlpToDown(applyResidualToDown(formed.candidate, view.residual), mlp);
    setAsideDownColumns(formed.base, candidateDown, pruned.neurons);
    alignSeconds += (performance.now() - t1) / 1000;
    yield ['down', formed.base, candidateDown];
  }
  const fitted = fitModules(modules(), { agree, base: b.postNorm, candidate: c.postNorm }, context.layout, sampled, layerDense, down.release);
  const findings: MlpFindings = {
    independence, mlpNeuronsPermuted: mlp.moved, mlpScaleMaxLog: maxAbsLog(fitted.fits.get('up_proj')!.rowScale), mlpQuality: mlp.quality,
    prunedNeurons: { base: pruned.base, candidate: pruned.candidate },
  };
  return partAnalysis(index, 'mlp', fitted, sampled ? b.gate.cols : null, t0, alignSeconds, null, findings);
}

function partAnalysis(
  index: number, part: LayerPart, fitted: ReturnType<typeof fitModules>, residualSample: number | null, started: number, alignSeconds: number,
  attention: AttentionFindings | null, mlp: MlpFindings | null,
): PartAnalysis {
  const outcome: PartOutcome = {
    index, part, modules: fitted.modules, residualSample, dense: fitted.dense, componentsRead: fitted.componentsRead,
    growthNum: fitted.growthNum, growthDen: fitted.growthDen, components: fitted.components,
    moments: [fitted.moments[0].toSums(), fitted.moments[1].toSums()],
    alignSeconds, analyseSeconds: (performance.now() - started) / 1000 - alignSeconds, attention, mlp,
  };
  return { outcome, changed: fitted.changed };
}

/**
 * One part of a Llama-style layer (a job's worth), from both models' weights of that part (the
 * MLP's down from `down`).
 */
export function analyseLayerPart(
  index: number, part: LayerPart, base: AttentionPart | MlpReaders, candidateStored: AttentionPart | MlpReaders, context: LayerContext, sampled: boolean, layerDense: boolean,
  down: MlpDown | null,
): PartOutcome {
  if (part === 'attention') return analyseAttention(index, base as AttentionPart, candidateStored as AttentionPart, context, sampled, layerDense).outcome;
  if (!down) throw new Error(`verify: the MLP part of layer ${index} analysed without its down`);
  return analyseMlp(index, base as MlpReaders, candidateStored as MlpReaders, down, context, sampled, layerDense).outcome;
}

/**
 * A whole Llama-style layer, in this thread: its two parts, merged (what verify's jobs give, see
 * analyseAttention for `sampled`).
 */
export function analyseLayer(index: number, base: LayerWeights, candidateStored: LayerWeights, context: LayerContext, sampled: boolean): LayerOutcome {
  const attention = analyseAttention(index, base, candidateStored, context, sampled, false);
  const down: MlpDown = { form: () => ({ base: base.down, candidate: candidateStored.down }) };
  const mlp = analyseMlp(index, base, candidateStored, down, context, sampled, attention.outcome.dense);
  // The MLP changed densely after the attention part was fitted: its modules are still here.
  const first = mlp.outcome.dense && !attention.outcome.componentsRead
    ? { ...attention.outcome, components: layerComponents(attention.changed, true), componentsRead: true }
    : attention.outcome;
  return mergeParts(first, mlp.outcome);
}

/** The attention part must be read again (with `layerDense`) before the two merge: see PartOutcome.componentsRead. */
export function partToReread(a: PartOutcome, b: PartOutcome): PartOutcome | null {
  return b.dense && !a.componentsRead ? a : a.dense && !b.componentsRead ? b : null;
}

/** A layer's outcome from its two parts (in either order). */
export function mergeParts(one: PartOutcome, other: PartOutcome): LayerOutcome {
  const [attentionPart, mlpPart] = one.part === 'attention' ? [one, other] : [other, one];
  const { attention } = attentionPart, { mlp } = mlpPart;
  if (!attention || !mlp || attentionPart.index !== mlpPart.index) throw new Error(`verify: layer ${one.index} merged from parts that are not its attention and MLP`);
  if (partToReread(attentionPart, mlpPart)) throw new Error(`verify: layer ${one.index} merged before the components of all its changed modules were read`);
  return assembleOutcome(one.index, [...attentionPart.modules, ...mlpPart.modules], attentionPart.residualSample, attention, mlp, {
    growthNum: attentionPart.growthNum + mlpPart.growthNum,
    growthDen: attentionPart.growthDen + mlpPart.growthDen,
    components: addComponents(attentionPart.components, mlpPart.components),
    moments: [0, 1].map((s) => {
      const sum = MomentAccumulator.fromSums(attentionPart.moments[s]!);
      sum.merge(MomentAccumulator.fromSums(mlpPart.moments[s]!));
      return sum.toSums();
    }) as [MomentSums, MomentSums],
    alignSeconds: attentionPart.alignSeconds + mlpPart.alignSeconds,
    analyseSeconds: attentionPart.analyseSeconds + mlpPart.analyseSeconds,
  });
}

/** A layer's findings once its modules are fitted (LayerNorm blocks, analysed whole). */
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
  const attention = attentionFindings(f.base, f.candidate, f.view, f.layout, f.heads, f);
  const analyseSeconds = (performance.now() - f.started) / 1000 - f.alignSeconds;
  const mlp: MlpFindings = { independence: f.independence, mlpNeuronsPermuted: f.mlp.moved, mlpScaleMaxLog: f.mlpScaleMaxLog, mlpQuality: f.mlp.quality, prunedNeurons: f.pruned };
  return assembleOutcome(f.index, f.modules, f.residualSample, attention, mlp, {
    growthNum: f.growthNum, growthDen: f.growthDen, components: f.components, moments: [f.moments[0].toSums(), f.moments[1].toSums()],
    alignSeconds: f.alignSeconds, analyseSeconds,
  });
}

/** The attention invariants and probe rank, and the head transform found. */
function attentionFindings(
  base: AttentionWeights, candidate: AttentionWeights, view: ResidualView, layout: HeadLayout, heads: HeadAlignment,
  fits: { readonly k: LowRankResult; readonly v: LowRankResult; readonly o: LowRankResult },
): AttentionFindings {
  // The change of W_v W_o has rank at most r_v + r_o: the probes are sized from those weight-delta ranks.
  const voRankBound = [fits.v, fits.o].reduce((sum, fit) => sum + (fit.lowRank ? fit.rank : Infinity), 0);
  const inv = attentionInvariants(base, candidate, layout, probesFor(view.probes, voRankBound));
  return {
    probeRank: inv.probeRank, invariants: { qk: inv.qk, vo: inv.vo },
    kvGroupOrder: Array.from(heads.groupOrder), queryHeadOrder: Array.from(heads.headOrder),
    qkScaleMaxLog: maxAbsLog(groupMeans(fits.k.rowScale, layout.headDim)),
    voScaleMaxLog: maxAbsLog(groupMeans(fits.v.rowScale, layout.headDim)),
    headQuality: heads.quality,
  };
}

function assembleOutcome(
  index: number, modules: readonly ModuleEvidence[], residualSample: number | null, attention: AttentionFindings, mlp: MlpFindings, sums: ModuleSums,
): LayerOutcome {
  return {
    evidence: {
      layer: index, modules, probeRank: attention.probeRank, invariants: attention.invariants, residualSample, prunedNeurons: mlp.prunedNeurons,
    },
    independence: mlp.independence,
    transform: {
      layer: index,
      mlpNeuronsPermuted: mlp.mlpNeuronsPermuted,
      mlpScaleMaxLog: mlp.mlpScaleMaxLog,
      kvGroupOrder: attention.kvGroupOrder,
      queryHeadOrder: attention.queryHeadOrder,
      qkScaleMaxLog: attention.qkScaleMaxLog,
      voScaleMaxLog: attention.voScaleMaxLog,
    },
    mlpQuality: mlp.mlpQuality,
    headQuality: attention.headQuality,
    ...sums,
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
function zeroNeuron(layer: MlpReaders, i: number): boolean {
  const w = layer.gate.cols;
  for (let q = i * w; q < (i + 1) * w; q++) if (layer.gate.values[q] !== 0 || layer.up.values[q] !== 0) return false;
  return true;
}

/**
 * Neurons zeroed in one model and not in the other (MLP already aligned), counted per side, and
 * set aside: the candidate's gate and up rows (here) and down column (setAsideDownColumns, given
 * `neurons`) of such a neuron are made the base's, so the rank analysis and the norm growth see
 * only the change beside the pruning. A zeroed neuron gets no gradient through gate or up, so
 * training never revives it: pruning is evidence of direction on its own (a model with neurons
 * zeroed descends from one that has them).
 */
function setAsidePruning(b: MlpReaders, c: MlpReaders): { base: number; candidate: number; neurons: number[] } {
  const counts = { base: 0, candidate: 0, neurons: [] as number[] };
  const w = b.gate.cols;
  for (let i = 0; i < b.gate.rows; i++) {
    const zb = zeroNeuron(b, i), zc = zeroNeuron(c, i);
    if (zb === zc) continue;
    counts[zb ? 'base' : 'candidate']++;
    counts.neurons.push(i);
    for (const role of ['gate', 'up'] as const) {
      c[role].values.set(b[role].values.subarray(i * w, (i + 1) * w), i * w);
      c[role].variance.set(b[role].variance.subarray(i * w, (i + 1) * w), i * w);
    }
  }
  return counts;
}

/** The down columns of the neurons setAsidePruning set aside, made the base's. */
function setAsideDownColumns(base: NoisyMatrix, candidate: NoisyMatrix, neurons: readonly number[]): void {
  const ff = base.cols;
  for (const i of neurons) {
    for (let d = 0; d < base.rows; d++) {
      candidate.values[d * ff + i] = base.values[d * ff + i]!;
      candidate.variance[d * ff + i] = base.variance[d * ff + i]!;
    }
  }
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
 * growth's numerator and denominator, and the modules the components are read from. Every module
 * is added, unchanged ones too: a dense change is read with the module its scaling pairs it with.
 */
export class LayerDirection {
  private readonly modules = new Map<LayerRole, DirectionModule>();
  private readonly extra = { num: 0, den: 0 };
  private totals: { readonly num: number; readonly den: number } | null = null;

  constructor(private readonly layout: HeadLayout) {}

  /** One change's squared norms added to the growth (a bias-only change). */
  addGrowth(g: SquaredNorms): void {
    this.extra.num += g.candidateNormSq - g.baseNormSq;
    this.extra.den += g.deltaNormSq;
    this.totals = null;
  }

  /**
   * A module of both models, aligned and norm-folded, with its delta's fit; `norms` the gains
   * folded into its columns (base, candidate), or null.
   */
  addModule(role: LayerRole, x: NoisyMatrix, y: NoisyMatrix, fit: LowRankResult, norms: readonly [Float64Array, Float64Array] | null): void {
    this.modules.set(role, { rows: x.rows, cols: x.cols, base: x, candidate: y, fit, norms, unfold: false, kept: null });
    this.totals = null;
  }

  /**
   * Lets go of an unchanged module's matrices (the MLP job forms down in an unchanged gate's and
   * up's memory), keeping the line sums the growth may still read of it when another module of the
   * part changed densely. A changed module is read whole (its components, plainNorms): kept.
   */
  detach(role: LayerRole): void {
    const m = this.modules.get(role);
    if (!m || !m.base || m.fit.rank > 0) return;
    m.kept = keptSums(m);
    m.base = m.candidate = null;
  }

  get growthNum(): number {
    return this.growth().num;
  }

  get growthDen(): number {
    return this.growth().den;
  }

  /**
   * A low-rank delta pins the gauge (the fit recovers any rescaling exactly): its growth is the
   * fit's. A dense one does not, and a fitted scale would absorb the very growth it should show,
   * so a dense change is read where no function-preserving scaling of CANDIDATE moves it:
   * - readers in the split of weights and norm gain each model stores (unfolded), unless
   *   CANDIDATE's split is evidently not BASE's (storedSplitKept): then on the norm-folded weights.
   *   The stored split keeps a fine-tuned gain out of its readers' change (gains changed as much
   *   as the weights would add noise of about 1 / (change x sqrt(width)) per norm); an
   *   obfuscator's norm scale s (gain times s, the reader's columns divided by s) cancels in the
   *   folded weights, where stored ones would carry 1/s.
   * - the modules one diagonal scaling moves in opposite ways (Q/K, V/O, up/down) as stored too,
   *   unless CANDIDATE's split between them is evidently not BASE's: then on the rank-one products
   *   of their paired lines (pairedNorms).
   * A split is read as stored only when it differs from BASE's no more than the fine-tune's own
   * changes do (splitKept): an obfuscator's scalings then move the growth no more than those do.
   */
  private growth(): { readonly num: number; readonly den: number } {
    if (this.totals) return this.totals;
    let num = this.extra.num, den = this.extra.den;
    const add = (g: SquaredNorms) => {
      num += g.candidateNormSq - g.baseNormSq;
      den += g.deltaNormSq;
    };
    const dense = (m: DirectionModule | undefined) => m !== undefined && m.fit.rank > 0 && !m.fit.lowRank;
    if (![...this.modules.values()].some(dense)) {
      for (const m of this.modules.values()) if (m.fit.rank > 0) add(m.fit);
      this.totals = { num, den };
      return this.totals;
    }
    const byNorm = new Map<Float64Array, DirectionModule[]>();
    for (const m of this.modules.values()) if (m.norms) byNorm.set(m.norms[0], [...(byNorm.get(m.norms[0]) ?? []), m]);
    for (const readers of byNorm.values()) {
      const unfold = storedSplitKept(readers);
      for (const m of readers) m.unfold = unfold;
    }
    const paired = new Set<LayerRole>();
    for (const pair of scaledPairs(this.layout)) {
      const p = this.modules.get(pair.first), q = this.modules.get(pair.second);
      if (!p || !q || !(dense(p) || dense(q))) continue;
      const products = pairedNorms(p, q, pair);
      if (!products) continue;
      add(products);
      paired.add(pair.first).add(pair.second);
    }
    for (const [role, m] of this.modules) {
      if (m.fit.rank === 0 || paired.has(role)) continue;
      add(m.fit.lowRank ? m.fit : plainNorms(m));
    }
    this.totals = { num, den };
    return this.totals;
  }

  /** The modules whose delta has a rank (each changed module, with whether it changed densely). */
  changedModules(): ChangedModule[] {
    return [...this.modules.values()].filter((m) => m.fit.rank > 0)
      .map((m) => ({ base: m.base!, candidate: m.candidate!, fit: m.fit, dense: !m.fit.lowRank }));
  }

  components(): ComponentSums {
    return layerComponents(this.changedModules());
  }
}

interface DirectionModule {
  readonly rows: number;
  readonly cols: number;
  /** Null once detached (then `kept` holds its line sums). */
  base: NoisyMatrix | null;
  candidate: NoisyMatrix | null;
  kept: { readonly rows: LineSums; readonly cols: LineSums; readonly rowsUnfolded: LineSums | null } | null;
  readonly fit: LowRankResult;
  /** The gains folded into the columns (base, candidate), or null. */
  readonly norms: readonly [Float64Array, Float64Array] | null;
  /** Whether the growth is read with the gains unfolded (storedSplitKept), set per norm. */
  unfold: boolean;
}

/**
 * Whether CANDIDATE's split of its readers' columns between weights and norm gain is BASE's
 * (splitKept): per residual dimension, the log ratio of the readers' stacked column norms stored
 * (gains unfolded) against folded. A fine-tune's gain change shows in the folded ratios; an
 * obfuscator's norm scales s show in the stored ones as 1/s and cancel in the folded ones.
 */
function storedSplitKept(readers: readonly DirectionModule[]): boolean {
  const [gainBase, gainCandidate] = readers[0]!.norms!;
  const width = gainBase.length;
  const base = new Float64Array(width), candidate = new Float64Array(width);
  for (const m of readers) {
    const sums = lineSums(m, 'cols', false);
    for (let j = 0; j < width; j++) {
      base[j]! += sums.base[j]!;
      candidate[j]! += sums.candidate[j]!;
    }
  }
  const folded: number[] = [], stored: number[] = [];
  for (let j = 0; j < width; j++) {
    const f = 0.5 * Math.log(candidate[j]! / base[j]!), g = Math.log(Math.abs(gainCandidate[j]! / gainBase[j]!));
    if (!Number.isFinite(f) || !Number.isFinite(g)) continue;
    folded.push(f);
    stored.push(f - g);
  }
  return splitKept(stored, folded);
}

/**
 * Whether a function-preserving split between two parts of the models (weights and norm gain; the
 * two modules of a scaled pair) is read as CANDIDATE stores it: when the log ratios to BASE of the
 * stored parts, line by line, are no larger (mean square) than those of what no such scaling
 * moves (the folded weights; the paired lines' products). A fine-tune moves both about alike; a
 * rescaling only the stored ones. A rescaling no larger than the fine-tune's own changes may pass
 * as stored: it moves the growth no more than those changes do.
 */
function splitKept(stored: readonly number[], invariant: readonly number[]): boolean {
  return meanSquare(stored) <= meanSquare(invariant);
}

function meanSquare(values: readonly number[]): number {
  return values.length === 0 ? 0 : values.reduce((s, v) => s + v * v, 0) / values.length;
}

interface SquaredNorms {
  readonly candidateNormSq: number;
  readonly baseNormSq: number;
  readonly deltaNormSq: number;
}

interface ScaledPair {
  readonly first: LayerRole;
  readonly second: LayerRole;
  readonly secondAxis: 'rows' | 'cols';
  /** The second module's lines scaled with the first's row i. */
  readonly lines: (i: number) => readonly number[];
}

/**
 * The pairs of modules one diagonal scaling moves in opposite ways: the first's row i times f,
 * the second's `lines(i)` (rows for Q, columns for O and down) divided by f. K's row goes with its
 * group's query rows (GQA), V's row with O's columns of the group's query heads, up's row with
 * down's column.
 */
function scaledPairs(layout: HeadLayout): readonly ScaledPair[] {
  const { heads, kvHeads, headDim } = layout;
  const perGroup = heads / kvHeads;
  const groupQueries = (i: number) => {
    const g = Math.floor(i / headDim), t = i % headDim;
    return Array.from({ length: perGroup }, (_, h) => (g * perGroup + h) * headDim + t);
  };
  return [
    { first: 'k', second: 'q', secondAxis: 'rows', lines: groupQueries },
    { first: 'v', second: 'o', secondAxis: 'cols', lines: groupQueries },
    { first: 'up', second: 'down', secondAxis: 'cols', lines: (i) => [i] },
  ];
}

/**
 * The growth of a scaled pair read on the rank-one products of its paired lines, p_i q_l^T (a
 * K row with a Q row, a V row with an O column, an up row with a down column), or null when the
 * pair's stored split is kept (splitKept: each module is then read on its own). A scaling f of
 * the pair (or a sign flip) leaves each product as it is. |p q^T|^2 = |p|^2 |q|^2 and
 * <p q^T, p' q'^T> = <p, p'> <q, q'>, so only line sums are needed. An update independent of
 * BASE reads ~ +1 here as on the weights; balancing the scales instead (CANDIDATE given BASE's
 * ratio of the two lines' energies) lifts the growth, since small lines grow relatively more
 * under an update of even size (measured +0.2 on synthetic full fine-tunes). The products' norms
 * are brought to the pair's weights' by BASE's energies (an even relative change of both modules
 * gives the same numerator and denominator on products and on weights).
 */
function pairedNorms(p: DirectionModule, q: DirectionModule, pair: ScaledPair): SquaredNorms | null {
  const lp = lineSums(p, 'rows'), lq = lineSums(q, pair.secondAxis);
  let baseSq = 0, candidateSq = 0, deltaSq = 0;
  const stored: number[] = [], products: number[] = [];
  for (let i = 0; i < lp.base.length; i++) {
    let qBase = 0, qCandidate = 0;
    for (const l of pair.lines(i)) {
      const b = lp.base[i]! * lq.base[l]!, c = lp.candidate[i]! * lq.candidate[l]!;
      baseSq += b;
      candidateSq += c;
      deltaSq += b + c - 2 * lp.cross[i]! * lq.cross[l]!;
      qBase += lq.base[l]!;
      qCandidate += lq.candidate[l]!;
    }
    const first = 0.5 * Math.log(lp.candidate[i]! / lp.base[i]!), second = 0.5 * Math.log(qCandidate / qBase);
    if (Number.isFinite(first) && Number.isFinite(second)) {
      stored.push(first);
      products.push(first + second);
    }
  }
  if (baseSq === 0 || splitKept(stored, products)) return null;
  const toWeights = (sum(lp.base) + sum(lq.base)) / (2 * baseSq);
  return { baseNormSq: baseSq * toWeights, candidateNormSq: candidateSq * toWeights, deltaNormSq: deltaSq * toWeights };
}

function sum(values: Float64Array): number {
  return values.reduce((s, v) => s + v, 0);
}

interface LineSums {
  readonly base: Float64Array;
  readonly candidate: Float64Array;
  readonly cross: Float64Array;
}

/** What a detached module keeps: its row and column sums, and its row sums with the gains unfolded. */
function keptSums(m: DirectionModule): NonNullable<DirectionModule['kept']> {
  const rows = emptyLineSums(m.rows), cols = emptyLineSums(m.cols);
  addLineSums(m, false, rows, cols);
  const rowsUnfolded = m.norms ? emptyLineSums(m.rows) : null;
  if (rowsUnfolded) addLineSums(m, true, rowsUnfolded, null);
  return { rows, cols, rowsUnfolded };
}

/** Per row or column of a module: both models' squared norms and their inner product (gains unfolded when `unfold`). */
function lineSums(m: DirectionModule, axis: 'rows' | 'cols', unfold = m.unfold): LineSums {
  if (!m.base || !m.candidate) return keptLineSums(m, axis, unfold);
  const out = emptyLineSums(axis === 'rows' ? m.rows : m.cols);
  addLineSums(m, unfold, axis === 'rows' ? out : null, axis === 'cols' ? out : null);
  return out;
}

function emptyLineSums(size: number): LineSums {
  return { base: new Float64Array(size), candidate: new Float64Array(size), cross: new Float64Array(size) };
}

/** Adds a module's per-row and/or per-column sums (gains unfolded when `unfold`) into `byRow`, `byCol`, in one pass. */
function addLineSums(m: DirectionModule, unfold: boolean, byRow: LineSums | null, byCol: LineSums | null): void {
  const { rows, cols } = m, x = m.base!.values, y = m.candidate!.values;
  const [gb, gc] = unfoldingFactors(m, unfold);
  for (let i = 0; i < rows; i++) {
    let bb = 0, cc = 0, bc = 0;
    for (let j = 0; j < cols; j++) {
      const p = i * cols + j, xv = x[p]! * gb[j]!, yv = y[p]! * gc[j]!, xx = xv * xv, yy = yv * yv, xy = xv * yv;
      bb += xx;
      cc += yy;
      bc += xy;
      if (byCol) {
        byCol.base[j]! += xx;
        byCol.candidate[j]! += yy;
        byCol.cross[j]! += xy;
      }
    }
    if (byRow) {
      byRow.base[i]! += bb;
      byRow.candidate[i]! += cc;
      byRow.cross[i]! += bc;
    }
  }
}

/** A detached module's line sums; a column's unfolding factor is one number, so its sums scale by it. */
function keptLineSums(m: DirectionModule, axis: 'rows' | 'cols', unfold: boolean): LineSums {
  const kept = m.kept!;
  if (axis === 'rows') return unfold && kept.rowsUnfolded ? kept.rowsUnfolded : kept.rows;
  if (!unfold || !m.norms) return kept.cols;
  const [gb, gc] = unfoldingFactors(m, true);
  return {
    base: kept.cols.base.map((v, j) => v * gb[j]! * gb[j]!),
    candidate: kept.cols.candidate.map((v, j) => v * gc[j]! * gc[j]!),
    cross: kept.cols.cross.map((v, j) => v * gb[j]! * gc[j]!),
  };
}

/** Per column, the factors that undo each model's gain folding (1 when the module is read folded). */
function unfoldingFactors(m: DirectionModule, unfold: boolean): readonly [Float64Array, Float64Array] {
  const cols = m.cols;
  if (!unfold || !m.norms) return [new Float64Array(cols).fill(1), new Float64Array(cols).fill(1)];
  const inverse = (g: Float64Array) => Float64Array.from({ length: cols }, (_, j) => 1 / (g[j]! || 1));
  return [inverse(m.norms[0]), inverse(m.norms[1])];
}

/** Squared norms of base, candidate and their difference, as aligned (gains unfolded when the module's are). */
function plainNorms(m: DirectionModule): SquaredNorms {
  // Only changed modules are read here, and those are never detached.
  const { rows, cols } = m;
  if (!m.base || !m.candidate) throw new Error('verify: the growth of a detached (unchanged) module read whole');
  const [gb, gc] = unfoldingFactors(m, m.unfold);
  let d = 0, bx = 0, cy = 0;
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const p = i * cols + j, xv = m.base.values[p]! * gb[j]!, yv = m.candidate.values[p]! * gc[j]!;
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
