import { compareArchitectures } from '../arch/map.js';
import type { RoleReader } from '../arch/reader.js';
import { MODULE_NAME, type LayerRole } from '../arch/types.js';
import { IncompatibleModelsError, LineageError } from '../io/errors.js';
import { combineIndependence, type LayerIndependence } from '../align/independence.js';
import {
  alignResidual, permuteResidualVector, residualColumns, residualColumnsOfBlocks, type HeadLayout, type ResidualAlignment, type ResidualEvidence,
} from '../align/llama.js';
import type { NoisyMatrix } from '../align/noisy.js';
import { residualSample, residualSampleWidth, sampledResidual, tokenSample } from '../align/residual-sample.js';
import { Rng } from '../linalg/rng.js';
import { MomentAccumulator } from '../stats/moments.js';
import { maxAbsLog, MODULES, ratio, READ_NORM, type LayerContext, type LayerOutcome } from './layer.js';
import { BufferPool } from './buffer-pool.js';
import { addComponents, NO_COMPONENTS, siblingsOfDifferentKinds, summarizeComponents } from './direction.js';
import { InThreadAnalysts, WorkerAnalysts, type Analysts } from './parallel.js';
import { onCommonGrid, type Job, type ReadLayer } from './jobs.js';
import type { AdapterBase, IndependenceTest, LayerEvidence, ModelSummary, ModuleName, Relation, TransformFound, VerifyResult } from './types.js';

/** Significance levels of the independence test: above UNRELATED_P no shared origin is claimed. */
export const UNRELATED_P = 0.01;
export const RELATED_P = 1e-3;
/**
 * Norm growth g = (|C|^2 - |B|^2) / |C - B|^2 is ~1 when C = B + an update independent of B, ~0 for
 * two equally trained siblings and ~-1 when B descends from C: the midpoint 1/2 decides.
 */
export const DERIVED_GROWTH = 0.5;
/**
 * One-token probe states for the invariants and the Origin-Tracer probe rank: each layer uses the
 * first ones, as many as its V and O delta ranks need (probesFor), all of them for a dense change.
 */
const PROBES = 256;

export interface VerifyOptions {
  readonly seed?: number;
  /** Worker threads analysing layers in parallel (default 0: all in this thread). */
  readonly workers?: number;
  /**
   * Where layer memory comes from: by default a pool that keeps one layer's worth, so each
   * analysed layer's memory is refilled by the next; null allocates afresh (same result, slower).
   */
  readonly buffers?: BufferPool | null;
  /**
   * Hidden sizes above this are analysed on a sample of this many residual dimensions (default
   * RESIDUAL_SAMPLE_WIDTH; tests lower it to exercise the sampled analysis on small models).
   */
  readonly residualSampleWidth?: number;
  /** Called after each layer (for progress displays). */
  readonly onLayer?: (done: number, total: number) => void;
}

function headLayout(reader: RoleReader): HeadLayout {
  const d = reader.map.dims;
  if (!d.heads || !d.kvHeads || !d.headDim) {
    throw new LineageError(`verify needs attention head counts: ${reader.name} has none in config.json`);
  }
  return { heads: d.heads, kvHeads: d.kvHeads, headDim: d.headDim };
}

function requireDecoder(reader: RoleReader): void {
  const layer0 = reader.map.layers[0] ?? {};
  const missing = MODULES.map(([role]) => role).filter((role) => !layer0[role]);
  if (missing.length > 0 || !layer0.input_norm || !layer0.post_norm) {
    throw new LineageError(
      `verify supports Llama-style decoders (q, k, v, o, gate, up, down with RMSNorms); ${reader.name} (family ${reader.map.family}) lacks ${[...missing, ...(layer0.input_norm ? [] : ['input_norm'])].join(', ') || 'post_norm'}`,
    );
  }
}

/** Values of a layer role of `reader` as analysed: whole, or on a residual sample of `width` dimensions (0 when absent). */
function roleElements(reader: RoleReader, index: number, role: LayerRole, width: number | null): number {
  const shape = reader.map.layers[index]?.[role]?.shape;
  if (!shape) return 0;
  return width === null ? shape[0] * shape[1] : (shape[0] * shape[1] / Math.max(1, reader.map.dims.hidden)) * width;
}

/** A pool buffer for a role's decode, whole or on a residual sample of `width` dimensions. */
function decodeBuffer(reader: RoleReader, index: number, role: LayerRole, width: number | null, pool: BufferPool | null): Float32Array | undefined {
  const elements = roleElements(reader, index, role, width);
  return pool && elements > 0 ? pool.float32(elements) : undefined;
}

type NormPair = { base: NoisyMatrix; candidate: NoisyMatrix };
interface LayerNorms {
  readonly input: NormPair;
  readonly post: NormPair;
}

/** A layer's norm gains of both models, whole, on the grid they are compared on. */
function readNorms(base: RoleReader, candidate: RoleReader, index: number): LayerNorms {
  const norm = (role: 'input_norm' | 'post_norm') => onCommonGrid(base.layer(index, role), candidate.layer(index, role));
  return { input: norm('input_norm'), post: norm('post_norm') };
}

/** Largest |log| of a candidate norm gain over the base's, in the base's residual order. */
function normFoldOf(base: Float64Array, candidate: Float64Array, residual: ResidualAlignment): number {
  return maxAbsLog(ratio(permuteResidualVector(candidate, residual), base));
}

/** normFoldOf both norms of a layer. */
function layerNormFold(norms: LayerNorms, residual: ResidualAlignment): number {
  const fold = (pair: NormPair) => normFoldOf(pair.base.values, pair.candidate.values, residual);
  return Math.max(fold(norms.input), fold(norms.post));
}

/** Entries `dims` of a residual-indexed column (a norm gain). */
function pickDims(m: NoisyMatrix, dims: Int32Array): NoisyMatrix {
  return { rows: dims.length, cols: 1, values: Float64Array.from(dims, (d) => m.values[d]!), variance: Float32Array.from(dims, (d) => m.variance[d]!) };
}

const MODULE_ROLES = MODULES.map(([role]) => role);

/**
 * One model's layer as read: whole (decoded into pool buffers when there is a pool), or on its
 * residual sample `dims` (stored dimensions; readers' columns, writers' rows), only those read.
 */
function readLayer(reader: RoleReader, index: number, norms: { input: NoisyMatrix; post: NoisyMatrix }, dims: Int32Array | null, pool: BufferPool | null): ReadLayer {
  const modules = Object.fromEntries(reader.storageOrder(index, MODULE_ROLES).map((role) => {
    const reads = READ_NORM[MODULE_NAME[role] as ModuleName];
    return [
      role,
      dims
        ? reader.layerPart(index, role, reads ? { rows: null, cols: dims } : { rows: dims, cols: null }, decodeBuffer(reader, index, role, dims.length, pool))
        : reader.layer(index, role, decodeBuffer(reader, index, role, null, pool)),
    ];
  })) as ReadLayer['modules'];
  return { modules, inputNorm: dims ? pickDims(norms.input, dims) : norms.input, postNorm: dims ? pickDims(norms.post, dims) : norms.post };
}

/** Values of the largest layer of `reader` as analysed: whole, or on a residual sample of `width` dimensions. */
function largestLayerElements(reader: RoleReader, width: number | null): number {
  let largest = 0;
  for (let index = 0; index < reader.map.layers.length; index++) {
    largest = Math.max(largest, MODULES.reduce((total, [role]) => total + roleElements(reader, index, role, width), 0));
  }
  return largest;
}

/**
 * Memory bounds of one verify run, from the largest layer (as analysed: whole, or on the residual
 * sample). The calling thread's pool keeps the float32 decodes (4 bytes a value) of one layer of
 * both models, given back by an analyst once it built the analysis form, for the next layer read.
 * Each analyst keeps a layer's analysis form (8 + 4 bytes a value).
 */
function memoryPlan(base: RoleReader, candidate: RoleReader, width: number | null): { decodeBytes: number; analysisBytes: number } {
  // The architectures were compared equal: both models' largest layer is the same layer.
  const largest = largestLayerElements(base, width) + largestLayerElements(candidate, width);
  return { decodeBytes: 4 * largest, analysisBytes: 12 * largest };
}

/**
 * Bytes one layer analyst needs on a model (verify's --workers default): a layer's analysis form
 * of both models with the analysis' work arrays (about twice that, measured by the verify
 * benchmark), and the float32 decodes of the layer it was sent. The calling thread holds one
 * more layer's decodes, read ahead.
 */
export function analystBytes(reader: RoleReader): number {
  const largest = largestLayerElements(reader, residualSampleWidth(reader.map.dims.hidden));
  return 2 * (2 * 12 * largest) + 2 * 4 * largest;
}

/**
 * One model's residual evidence: the columns of the embedding-like matrices, on a sample of the
 * token rows when the vocabulary is large (the same rows in both models: obfuscation permutes
 * the residual, not the vocabulary).
 */
function loadResidualEvidence(reader: RoleReader, withHead: boolean, finalNorm: Float64Array | null, tokens: Int32Array | null): ResidualEvidence {
  const columns = (role: 'embed' | 'lm_head') => {
    const hidden = reader.map.global[role]?.shape?.[1];
    if (!tokens || hidden === undefined) return residualColumns(reader.global(role), role);
    return residualColumnsOfBlocks(tokens.length, hidden, tokenBlocks(reader, role, tokens), role);
  };
  return { embed: columns('embed'), lmHead: withHead ? columns('lm_head') : null, finalNorm };
}

/** Token rows read per block: the sampled rows are sketched a block at a time, never all in memory. */
const TOKEN_BLOCK = 256;

function* tokenBlocks(reader: RoleReader, role: 'embed' | 'lm_head', tokens: Int32Array): Generator<{ rowStart: number; rowEnd: number; data: Float32Array }> {
  for (let t = 0; t < tokens.length; t += TOKEN_BLOCK) {
    const rows = tokens.subarray(t, Math.min(tokens.length, t + TOKEN_BLOCK));
    yield { rowStart: t, rowEnd: t + rows.length, data: reader.globalPart(role, { rows, cols: null }).data };
  }
}

function loadGlobals(base: RoleReader, candidate: RoleReader, seed: number): { base: ResidualEvidence; candidate: ResidualEvidence } {
  const tied = base.map.tiedEmbeddings || candidate.map.tiedEmbeddings || !base.map.global.lm_head || !candidate.map.global.lm_head;
  // The final norms on the common grid, as every layer weight: an f32 parent's equals its bf16 child's.
  const norms = base.map.global.final_norm && candidate.map.global.final_norm
    ? onCommonGrid(base.global('final_norm'), candidate.global('final_norm')) : null;
  const vocab = Math.min(...[base, candidate].map((r) => r.map.global.embed?.shape?.[0] ?? 0));
  const tokens = vocab > 0 ? tokenSample(vocab, seed) : null;
  return {
    base: loadResidualEvidence(base, !tied, norms ? norms.base.values : null, tokens),
    candidate: loadResidualEvidence(candidate, !tied, norms ? norms.candidate.values : null, tokens),
  };
}

function isIdentity(order: ArrayLike<number>): boolean {
  for (let i = 0; i < order.length; i++) if (order[i] !== i) return false;
  return true;
}

function summarize(reader: RoleReader, adapter: ModelSummary['adapter']): ModelSummary {
  return { name: reader.name, path: reader.path, dtypes: reader.dtypes, parameters: reader.parameters, adapter };
}

/** The most common value (ties: the smaller). */
function mode(values: readonly number[]): number {
  const counts = new Map<number, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best = values[0]!, bestCount = 0;
  for (const [v, c] of [...counts].sort((a, b) => a[0] - b[0])) if (c > bestCount) [best, bestCount] = [v, c];
  return best;
}

export function verifyModels(
  base: RoleReader, candidate: RoleReader, options: VerifyOptions = {},
  adapters: { base?: ModelSummary['adapter']; candidate?: ModelSummary['adapter'] } = {},
): VerifyResult {
  const started = performance.now();
  let readSeconds = 0, alignSeconds = 0, analyseSeconds = 0;
  const timed = <T>(f: () => T, add: (s: number) => void): T => {
    const t0 = performance.now();
    const out = f();
    add((performance.now() - t0) / 1000);
    return out;
  };
  const problems = compareArchitectures(base.map, candidate.map);
  if (problems.length > 0) {
    throw new IncompatibleModelsError(`${base.name} and ${candidate.name} have different architectures: ${problems.join('; ')}`);
  }
  requireDecoder(base);
  requireDecoder(candidate);
  const layout = headLayout(base);
  const seed = options.seed ?? 1;

  // The residual evidence (embedding sketches) is needed for the residual alignment and the final
  // norms' fold only: kept in this block, so it is not held while the layers are analysed.
  const { residual, finalNormFold } = (() => {
    const globals = timed(() => loadGlobals(base, candidate, seed), (s) => (readSeconds += s));
    const aligned: ResidualAlignment = timed(() => alignResidual(globals.base, globals.candidate), (s) => (alignSeconds += s));
    const fold = globals.candidate.finalNorm && globals.base.finalNorm ? normFoldOf(globals.base.finalNorm, globals.candidate.finalNorm, aligned) : 0;
    return { residual: aligned, finalNormFold: fold };
  })();
  // Wide models: every layer is analysed on a sample of the residual dimensions (residual-sample.ts),
  // and its probe states live in the sample's coordinates.
  const sample = residualSample(base.map.dims.hidden, seed, options.residualSampleWidth);
  const sampled = sample ? sampledResidual(sample, residual) : null;
  const probesOf = (dims: number) => new Rng(seed + 99).gaussianMatrix(Math.min(dims, PROBES), dims);
  const context: LayerContext = {
    whole: { residual, probes: probesOf(base.map.dims.hidden) },
    sampled: sampled ? { residual: sampled.alignment, probes: probesOf(sampled.base.length) } : null,
    layout, seed,
  };

  const moments: [MomentAccumulator, MomentAccumulator] = [new MomentAccumulator(), new MomentAccumulator()];
  const layers: LayerEvidence[] = [];
  const independence: LayerIndependence[] = [];
  const transformLayers: TransformFound['layers'][number][] = [];
  const qualities: number[] = [residual.quality];
  let normFold = finalNormFold;
  let growthNum = 0, growthDen = 0;
  let components = NO_COMPONENTS;
  const layerCount = base.map.layers.length;

  const record = (outcome: LayerOutcome) => {
    layers.push(outcome.evidence);
    independence.push(outcome.independence);
    transformLayers.push(outcome.transform);
    qualities.push(outcome.mlpQuality, outcome.headQuality);
    growthNum += outcome.growthNum;
    growthDen += outcome.growthDen;
    components = addComponents(components, outcome.components);
    moments[0].merge(MomentAccumulator.fromSums(outcome.moments[0]));
    moments[1].merge(MomentAccumulator.fromSums(outcome.moments[1]));
    alignSeconds += outcome.alignSeconds;
    analyseSeconds += outcome.analyseSeconds;
    options.onLayer?.(layers.length, layerCount);
  };
  // The analysis consumes a layer's arrays (permuted and scaled in place), and no outcome keeps a
  // view of them, so once a layer is analysed its memory is filled by the next one.
  const workers = Math.min(options.workers ?? 0, layerCount);
  const budget = memoryPlan(base, candidate, sampled ? sampled.base.length : null);
  const buffers = options.buffers === undefined ? new BufferPool(budget.decodeBytes + (workers > 0 ? 0 : budget.analysisBytes)) : options.buffers;
  const analysts: Analysts = workers > 0 ? new WorkerAnalysts(workers, context, budget.analysisBytes) : new InThreadAnalysts(context, buffers);
  // Each analyst holds one layer at a time, and the calling thread reads the next one meanwhile;
  // a layer goes to whichever analyst is free first. Results may come back out of order and are
  // recorded in layer order.
  const outcomes = new Map<number, LayerOutcome>();
  const busy = new Map<number, number>(); // layer index -> analyst slot
  let recorded = 0;
  const takeOne = () => {
    const result = analysts.take();
    if (!result) throw new Error('verify: waiting for a layer, but no job is in flight');
    buffers?.release(result.buffers);
    if (!result.outcome) return;
    busy.delete(result.index);
    outcomes.set(result.index, result.outcome);
    for (let next = outcomes.get(recorded); next; next = outcomes.get(recorded)) {
      outcomes.delete(recorded++);
      record(next);
    }
  };
  const freeSlot = () => {
    for (;;) {
      const taken = new Set(busy.values());
      for (let slot = 0; slot < analysts.size; slot++) if (!taken.has(slot)) return slot;
      takeOne();
    }
  };
  try {
    for (let index = 0; index < layerCount; index++) {
      const job: Job = timed(() => {
        const norms = readNorms(base, candidate, index);
        normFold = Math.max(normFold, layerNormFold(norms, residual));
        const side = (s: 'base' | 'candidate') => ({ input: norms.input[s], post: norms.post[s] });
        return {
          index,
          base: readLayer(base, index, side('base'), sampled?.base ?? null, buffers),
          candidate: readLayer(candidate, index, side('candidate'), sampled?.candidate ?? null, buffers),
          sampled: sampled !== null,
        };
      }, (s) => (readSeconds += s));
      const slot = freeSlot();
      busy.set(index, slot);
      analysts.post(slot, job);
    }
    while (recorded < layerCount) takeOne();
  } finally {
    analysts.close();
  }

  const test = combineIndependence(independence);
  const kurtosisBase = moments[0].result().excessKurtosis;
  const kurtosisCandidate = moments[1].result().excessKurtosis;
  const normGrowth = growthDen > 0 ? growthNum / growthDen : 0;
  const transform = describeTransform(residual, normFold, transformLayers);
  const quantization = { base: base.quantization ?? null, candidate: candidate.quantization ?? null };
  const directionComponents = summarizeComponents(components);
  const evidence = siblingsOfDifferentKinds(judge(test, normGrowth, layers, quantization), directionComponents, layers, formatP(test.log10PValue), normGrowth);
  const adapterBase = adapters.candidate ? declaredAdapterBase(adapters.candidate.declaredBase ?? null, base.name) : null;
  return {
    schema: 'model-lineage/verify@1',
    base: summarize(base, adapters.base ?? null),
    candidate: summarize(candidate, adapters.candidate ?? null),
    relation: evidence.relation,
    adapterBase,
    reason: adapterBase ? `${evidence.reason}; ${adapterCaveat(adapterBase)}` : evidence.reason,
    pValue: test.pValue,
    log10PValue: test.log10PValue,
    independence: test,
    alignmentQuality: qualities.reduce((a, q) => a + q, 0) / qualities.length,
    direction: { normGrowth, kurtosisBase, kurtosisCandidate, components: evidence.fullFineTune ? directionComponents : null },
    lora: evidence.lora,
    fullFineTune: evidence.fullFineTune,
    quantization,
    transform,
    layers,
    timings: { readSeconds, alignSeconds, analyseSeconds, totalSeconds: (performance.now() - started) / 1000 },
  };
}

/** The declared base of an adapter against BASE's name: the declared name's last path component (a hub id's model name, a folder's name). */
export function declaredAdapterBase(declared: string | null, baseName: string): AdapterBase {
  if (declared === null || declared.trim() === '') return { declared: null, matchesBase: null };
  const last = declared.trim().replace(/[\\/]+$/, '').split(/[\\/]/).pop() ?? '';
  return { declared, matchesBase: last.toLowerCase() === baseName.toLowerCase() };
}

/** What an adapter verdict rests on, for its reason line. */
function adapterCaveat(adapterBase: AdapterBase): string {
  const declared = adapterBase.declared === null
    ? 'it declares no base'
    : `it declares base "${adapterBase.declared}", ${adapterBase.matchesBase ? 'which is' : 'which is not'} BASE`;
  return `this assumes the adapter is applied to BASE (it was merged onto BASE; LoRA factors carry little trace of the base they were trained on); ${declared}`;
}

function formatP(log10P: number): string {
  return log10P > -300 ? `p = ${(10 ** log10P).toExponential(1)}` : `p = 10^${log10P.toFixed(0)}`;
}

/** Scales within this |log| of 1 are what fitting noise produces, not an obfuscation. */
const SCALE_REPORT_LOG = Math.log(1.05);

function describeTransform(residual: ResidualAlignment, normFold: number, layers: TransformFound['layers']): TransformFound {
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

interface Judgement {
  relation: Relation;
  reason: string;
  lora: VerifyResult['lora'];
  fullFineTune: boolean;
}

/**
 * Fewest informative neurons (see independence.ts) the test must have used for its verdict to
 * stand: with fewer, neither a shared origin nor independence is claimed.
 */
export const MIN_INFORMATIVE_NEURONS = 32;

/**
 * A LoRA rank read through quantization is a lower bound when, in at least half the changed
 * modules, the weakest direction counted stands within this factor of the noise threshold: the
 * spectrum runs into the floor instead of ending above it (a rank read whole keeps a clear gap).
 */
const FLOOR_GAP = 2;

function judge(test: IndependenceTest, growth: number, layers: readonly LayerEvidence[], quantization: NonNullable<VerifyResult['quantization']>): Judgement {
  const log10P = test.log10PValue;
  const p = formatP(log10P);
  const used = `${test.rowsUsed} of ${test.rows} neurons informative`;
  if (test.rowsUsed < MIN_INFORMATIVE_NEURONS) {
    return {
      relation: 'inconclusive',
      reason: `too few informative MLP neurons to test a shared origin (${used}; zero, constant or repeated rows tell no match apart)`,
      lora: null, fullFineTune: false,
    };
  }
  if (log10P > Math.log10(UNRELATED_P)) {
    return { relation: 'unrelated', reason: `no sign of a shared initialisation (${p} under independence, ${used})`, lora: null, fullFineTune: false };
  }
  if (log10P > Math.log10(RELATED_P)) {
    return { relation: 'inconclusive', reason: `weak evidence of a shared initialisation (${p}, ${used}): neither independence nor kinship is clear`, lora: null, fullFineTune: false };
  }
  const all = layers.flatMap((l) => l.modules.map((m) => ({ layer: l.layer, ...m })));
  const changed = all.filter((m) => m.status !== 'unchanged');
  const pruned = { base: 0, candidate: 0, total: 0 };
  for (const l of layers) {
    pruned.base += l.prunedNeurons.base;
    pruned.candidate += l.prunedNeurons.candidate;
  }
  const neurons = test.rows;
  // Zeroed neurons never come back in training: the model that has them zeroed is the descendant.
  const prunedNote = pruned.candidate > 0 ? `${pruned.candidate} of ${neurons} MLP neurons pruned (zeroed)` : '';
  if (pruned.base > 0 && pruned.candidate === 0) {
    return {
      relation: 'related',
      reason: `shared origin (${p}), but BASE looks derived from CANDIDATE: ${pruned.base} of ${neurons} MLP neurons are zeroed in BASE only (pruning is never undone by training)`,
      lora: null, fullFineTune: changed.some((m) => m.status === 'full'),
    };
  }
  if (changed.length === 0) {
    if (pruned.candidate > 0 && pruned.base === 0) {
      return { relation: 'derived', reason: `CANDIDATE is BASE with ${prunedNote}, otherwise the same weights after alignment (${p})`, lora: null, fullFineTune: false };
    }
    const copy = quantizedCopy(quantization);
    return { relation: 'derived', reason: copy ? `same weights as BASE beyond the quantization floor: ${copy} (${p})` : `same weights as BASE after alignment (a copy; ${p})`, lora: null, fullFineTune: false };
  }
  const fullFineTune = changed.some((m) => m.status === 'full');
  const prunedOnly = pruned.candidate > 0 && pruned.base === 0;
  if (growth < -DERIVED_GROWTH) {
    return { relation: 'related', reason: `shared origin (${p}), but BASE looks derived from CANDIDATE (norm growth ${growth.toFixed(2)})`, lora: null, fullFineTune };
  }
  if (growth <= DERIVED_GROWTH && !prunedOnly) {
    return { relation: 'related', reason: `shared origin (${p}), but neither descends from the other: siblings or cousins (norm growth ${growth.toFixed(2)})`, lora: null, fullFineTune };
  }
  let lora: VerifyResult['lora'] = null;
  if (!fullFineTune) {
    // The noise threshold leaves no spurious ranks, so every changed module is a target, also
    // when the adapter covered only some layers.
    const targets = MODULES.map(([, name]) => name).filter((name) => changed.some((m) => m.module === name));
    const ranks = changed.filter((m) => targets.includes(m.module)).map((m) => m.rank);
    const loraLayers = [...new Set(changed.map((m) => m.layer))].sort((a, b) => a - b);
    const atFloor = changed.filter((m) => (m.singularValues[m.rank - 1] ?? 0) < FLOOR_GAP).length;
    const quantized = quantization.base?.quantized || quantization.candidate?.quantized;
    lora = { rank: mode(ranks), targets, layers: loraLayers, stacked: false, ...(quantized && 2 * atFloor >= changed.length ? { rankIsLowerBound: true as const } : {}) };
  }
  const what = lora ? `LoRA rank ${lora.rankIsLowerBound ? 'at least ' : ''}${lora.rank} on ${lora.targets.join(', ')}` : 'a full fine-tune';
  const direction = prunedOnly ? `${prunedNote}; norm growth ${growth.toFixed(2)}` : `norm growth ${growth.toFixed(2)}`;
  return { relation: 'derived', reason: `CANDIDATE is BASE plus ${what}${prunedOnly ? `, with ${prunedNote}` : ''} (${p}, ${direction})`, lora, fullFineTune };
}

/** "a quantized copy (Q8_0)" naming the quantized side (the candidate first), or null when neither is quantized. */
function quantizedCopy(quantization: NonNullable<VerifyResult['quantization']>): string | null {
  const { base, candidate } = quantization;
  if (candidate?.quantized) return `CANDIDATE is a quantized copy (${candidate.fileType ?? Object.keys(candidate.tensorTypes).join(', ')})`;
  if (base?.quantized) return `BASE is a quantized copy (${base.fileType ?? Object.keys(base.tensorTypes).join(', ')})`;
  return null;
}
