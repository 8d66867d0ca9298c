import { compareArchitectures } from '../arch/map.js';
import type { RoleReader } from '../arch/reader.js';
import type { LayerRole, Weight } from '../arch/types.js';
import { IncompatibleModelsError, LineageError } from '../io/errors.js';
import { combineIndependence, type LayerIndependence } from '../align/independence.js';
import {
  alignResidual, permuteResidualVector, residualColumns, residualColumnsOfBlocks, type HeadLayout, type LayerWeights, type ModuleRole, type ResidualAlignment, type ResidualEvidence,
} from '../align/llama.js';
import { coarserGrid, noisyFromWeight, type ArrayAllocator, type NoisyMatrix } from '../align/noisy.js';
import { Rng } from '../linalg/rng.js';
import { MomentAccumulator } from '../stats/moments.js';
import { residualPlacement, residualSketchMap } from '../align/residual-sketch.js';
import type { CountSketchMap } from '../linalg/countsketch.js';
import { DTYPE_BYTES, isDType } from '../io/dtypes.js';
import { maxAbsLog, MODULES, ratio, READ_NORM, type LayerContext, type LayerOutcome } from './layer.js';
import { BufferPool } from './buffer-pool.js';
import { InThreadAnalysts, WorkerAnalysts, type Analysts } from './parallel.js';
import { jobBuffers, type Job } from './jobs.js';
import type { LayerEvidence, ModelSummary, Relation, TransformFound, VerifyResult } from './types.js';

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
   * Hidden sizes above this are analysed with the residual side sketched to this width (default
   * RESIDUAL_SKETCH_WIDTH; tests lower it to exercise the sketched analysis on small models).
   */
  readonly residualSketchWidth?: number;
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

/**
 * One role of both models, each on the grid they are compared on: a model stored finer than the
 * other (f32 vs bf16) is rounded onto the coarser grid first. With a pool, the float32 decodes
 * and the analysis arrays reuse memory of earlier layers; the decodes go back at once.
 */
function readPair(base: RoleReader, candidate: RoleReader, index: number, role: LayerRole, pool: BufferPool | null): { base: NoisyMatrix; candidate: NoisyMatrix } {
  const decodeBase = decodeBuffer(base, index, role, pool);
  const decodeCandidate = decodeBuffer(candidate, index, role, pool);
  const pair = onCommonGrid(base.layer(index, role, decodeBase), candidate.layer(index, role, decodeCandidate), pool ?? undefined);
  pool?.release([decodeBase?.buffer, decodeCandidate?.buffer]);
  return pair;
}

/** Both weights in the analysis form on the grid they are compared on (see readPair). */
function onCommonGrid(wb: Weight, wc: Weight, arrays?: ArrayAllocator): { base: NoisyMatrix; candidate: NoisyMatrix } {
  const grid = coarserGrid(wb.dtype, wc.dtype);
  return {
    base: noisyFromWeight(wb, grid !== wb.dtype ? grid : null, arrays),
    candidate: noisyFromWeight(wc, grid !== wc.dtype ? grid : null, arrays),
  };
}

function decodeBuffer(reader: RoleReader, index: number, role: LayerRole, pool: BufferPool | null): Float32Array | undefined {
  const shape = reader.map.layers[index]?.[role]?.shape;
  return pool && shape ? pool.float32(shape[0] * shape[1]) : undefined;
}

const LAYER_ROLES = ['q', 'k', 'v', 'o', 'gate', 'up', 'down', 'input_norm', 'post_norm'] as const;

type NormPair = { base: NoisyMatrix; candidate: NoisyMatrix };
interface LayerNorms {
  readonly input: NormPair;
  readonly post: NormPair;
}

function readNorms(base: RoleReader, candidate: RoleReader, index: number): LayerNorms {
  const norm = (role: 'input_norm' | 'post_norm') => onCommonGrid(base.layer(index, role), candidate.layer(index, role));
  return { input: norm('input_norm'), post: norm('post_norm') };
}

/**
 * Whether the candidate's norm gains, in the base's residual order, equal the base's. Only then is
 * a layer sketched: a gain that differs (rescaled by an obfuscator, so rounded anew, or trained)
 * leaves a per-column rescaling of the readers that only their column gauge absorbs, and a sketch
 * of the columns has none (residual-sketch.ts). Such layers get the exact analysis.
 */
function gainsAgree(norms: LayerNorms, residual: ResidualAlignment): boolean {
  for (const pair of [norms.input, norms.post]) {
    const b = pair.base.values, c = pair.candidate.values;
    for (let i = 0; i < b.length; i++) if (b[i] !== c[residual.order[i]!]) return false;
  }
  return true;
}

/** The jobs of `jobs`, the time spent producing each (reading) added through `add`. */
function* timedJobs(jobs: Iterator<Job>, add: (seconds: number) => void): Generator<Job> {
  for (;;) {
    const started = performance.now();
    const next = jobs.next();
    add((performance.now() - started) / 1000);
    if (next.done) return;
    yield next.value;
  }
}

/** The storage dtype of a layer role (from the model map, without reading). */
function dtypeOf(reader: RoleReader, index: number, role: ModuleRole): string {
  return reader.map.layers[index]?.[role]?.dtype ?? reader.dtypes[0] ?? 'F32';
}

/**
 * The jobs of one layer analysed with the residual side sketched (residual-sketch.ts): one per
 * module and model, each carrying that model's stored bytes (read lazily, one job at a time, so
 * the caller bounds what is in flight) and the placement that hashes it in the base's residual
 * order with the norm gains folded into the readers; then the layer's own job.
 */
function* sketchedLayerJobs(
  base: RoleReader, candidate: RoleReader, index: number, map: CountSketchMap, residual: ResidualAlignment, norms: LayerNorms, pool: BufferPool | null,
): Generator<Job> {
  const { input, post } = norms;
  const placements = (gains: { input: Float64Array; post: Float64Array }, alignment: ResidualAlignment | null) => ({
    input: residualPlacement(map, alignment, gains.input),
    post: residualPlacement(map, alignment, gains.post),
    writer: residualPlacement(map, alignment, null),
  });
  const place = {
    base: placements({ input: input.base.values, post: post.base.values }, null),
    candidate: placements({ input: input.candidate.values, post: post.candidate.values }, residual),
  };
  const allocate = pool ? (n: number) => pool.bytes(n) : undefined;
  // Stored bytes when the reader has them (decoded where the analysis runs), else decoded here.
  const read = (reader: RoleReader, role: ModuleRole) => reader.layerStored?.(index, role, allocate) ?? reader.layer(index, role);
  for (const [role, name] of MODULES) {
    const reads = READ_NORM[name];
    const side = reads ? 'cols' : 'rows';
    // Both models' dtypes decide the common grid before either is read (shapes agree).
    const grid = coarserGrid(dtypeOf(base, index, role), dtypeOf(candidate, index, role));
    for (const model of ['base', 'candidate'] as const) {
      const weight = read(model === 'base' ? base : candidate, role);
      yield { kind: 'module', index, role, model, side, weight, place: place[model][reads ?? 'writer'], roundTo: grid !== weight.dtype ? grid : null };
    }
  }
  yield {
    kind: 'sketched-layer', index,
    norms: {
      base: [input.base.values, post.base.values],
      candidate: [permuteResidualVector(input.candidate.values, residual), permuteResidualVector(post.candidate.values, residual)],
    },
  };
}

function loadLayer(base: RoleReader, candidate: RoleReader, index: number, pool: BufferPool | null): { base: LayerWeights; candidate: LayerWeights } {
  const [q, k, v, o, gate, up, down, inputNorm, postNorm] = LAYER_ROLES.map((role) => readPair(base, candidate, index, role, pool));
  const side = (s: 'base' | 'candidate'): LayerWeights => ({
    q: q![s], k: k![s], v: v![s], o: o![s], gate: gate![s], up: up![s], down: down![s],
    inputNorm: inputNorm![s].values, inputNormVariance: inputNorm![s].variance, postNorm: postNorm![s].values,
  });
  return { base: side('base'), candidate: side('candidate') };
}

/**
 * Memory bounds of one verify run. Exact layers: a buffer pool keeps the largest layer's analysis
 * form (8 + 4 bytes a value) and float32 decodes (4 bytes a value) of both models, so memory stays
 * bounded by one layer. Sketched layers (to `width`): each analyst keeps one layer's sketches,
 * and each holds the stored bytes of one module of one model at a time while the next is read.
 */
function memoryPlan(base: RoleReader, candidate: RoleReader, width: number | null, workers: number): { poolBytes: number; sketchBytes: number } {
  const analysisBytes = Float64Array.BYTES_PER_ELEMENT + Float32Array.BYTES_PER_ELEMENT;
  const storedBytes = (r: RoleReader) => Math.max(1, ...r.dtypes.filter(isDType).map((d) => DTYPE_BYTES[d]));
  let exact = 0, sketches = 0, largestPair = 0;
  for (let index = 0; index < base.map.layers.length; index++) {
    let exactLayer = 0, sketchLayer = 0;
    for (const [role] of MODULES) {
      let pair = 0;
      for (const reader of [base, candidate]) {
        const shape = reader.map.layers[index]?.[role]?.shape;
        if (!shape) continue;
        const elements = shape[0] * shape[1];
        pair += elements * storedBytes(reader);
        exactLayer += elements * (analysisBytes + Float32Array.BYTES_PER_ELEMENT);
        if (width !== null) sketchLayer += (elements / Math.max(1, reader.map.dims.hidden)) * width * analysisBytes;
      }
      largestPair = Math.max(largestPair, pair);
    }
    exact = Math.max(exact, exactLayer);
    sketches = Math.max(sketches, sketchLayer);
  }
  if (width === null) return { poolBytes: exact, sketchBytes: 0 };
  // The pool here keeps the stored bytes for reuse, and the sketches too when analysed here.
  return { poolBytes: largestPair + (workers > 0 ? 0 : sketches), sketchBytes: sketches };
}

/**
 * One model's residual evidence: each embedding-like matrix is sketched as it is read, in bounded
 * row blocks when the reader gives them (131M values at 7B are never whole in memory).
 */
function loadResidualEvidence(reader: RoleReader, withHead: boolean, finalNorm: Float64Array | null): ResidualEvidence {
  const sketched = (role: 'embed' | 'lm_head') => {
    const shape = reader.map.global[role]?.shape;
    const blocks = shape ? reader.globalBlocks?.(role) : null;
    return shape && blocks ? residualColumnsOfBlocks(shape[0], shape[1], blocks, role) : residualColumns(reader.global(role), role);
  };
  return { embed: sketched('embed'), lmHead: withHead ? sketched('lm_head') : null, finalNorm };
}

function loadGlobals(base: RoleReader, candidate: RoleReader): { base: ResidualEvidence; candidate: ResidualEvidence } {
  const tied = base.map.tiedEmbeddings || candidate.map.tiedEmbeddings || !base.map.global.lm_head || !candidate.map.global.lm_head;
  // The final norms on the common grid, as every layer weight: an f32 parent's equals its bf16 child's.
  const norms = base.map.global.final_norm && candidate.map.global.final_norm
    ? onCommonGrid(base.global('final_norm'), candidate.global('final_norm')) : null;
  return {
    base: loadResidualEvidence(base, !tied, norms ? norms.base.values : null),
    candidate: loadResidualEvidence(candidate, !tied, norms ? norms.candidate.values : null),
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

  const globals = timed(() => loadGlobals(base, candidate), (s) => (readSeconds += s));
  const residual: ResidualAlignment = timed(() => alignResidual(globals.base, globals.candidate), (s) => (alignSeconds += s));
  // Wide models: every layer is analysed with its residual side sketched (residual-sketch.ts),
  // and the probe states live in the sketch's coordinates.
  const sketch = residualSketchMap(base.map.dims.hidden, options.residualSketchWidth);
  const probesOf = (dims: number) => new Rng(seed + 99).gaussianMatrix(Math.min(dims, PROBES), dims);
  const probes = probesOf(base.map.dims.hidden);
  const sketchedProbes = sketch ? probesOf(sketch.width) : null;

  const moments: [MomentAccumulator, MomentAccumulator] = [new MomentAccumulator(), new MomentAccumulator()];
  const layers: LayerEvidence[] = [];
  const independence: LayerIndependence[] = [];
  const transformLayers: TransformFound['layers'][number][] = [];
  const qualities: number[] = [residual.quality];
  let normFold = globals.candidate.finalNorm && globals.base.finalNorm
    ? maxAbsLog(ratio(permuteResidualVector(globals.candidate.finalNorm, residual), globals.base.finalNorm)) : 0;
  let growthNum = 0, growthDen = 0;
  const layerCount = base.map.layers.length;

  const context: LayerContext = { residual, layout, probes, sketchedProbes, seed };
  const record = (outcome: LayerOutcome) => {
    layers.push(outcome.evidence);
    independence.push(outcome.independence);
    transformLayers.push(outcome.transform);
    qualities.push(outcome.mlpQuality, outcome.headQuality);
    normFold = Math.max(normFold, outcome.normFold);
    growthNum += outcome.growthNum;
    growthDen += outcome.growthDen;
    moments[0].merge(MomentAccumulator.fromSums(outcome.moments[0]));
    moments[1].merge(MomentAccumulator.fromSums(outcome.moments[1]));
    alignSeconds += outcome.alignSeconds;
    analyseSeconds += outcome.analyseSeconds;
    options.onLayer?.(layers.length, layerCount);
  };
  // The analysis consumes a layer's arrays (permuted and scaled in place), and no outcome keeps a
  // view of them, so once a layer is analysed its memory is filled by the next one.
  const workers = Math.min(options.workers ?? 0, layerCount);
  const budget = memoryPlan(base, candidate, sketch ? sketch.width : null, workers);
  const buffers = options.buffers === undefined ? new BufferPool(budget.poolBytes) : options.buffers;
  const analysts: Analysts = workers > 0 ? new WorkerAnalysts(workers, context, budget.sketchBytes) : new InThreadAnalysts(context, buffers);
  // Each analyst assembles one layer at a time (layer i goes to analyst i mod size); the stored
  // bytes of modules sent but not yet sketched stay under budget.bytesInFlight.
  const outcomes = new Map<number, LayerOutcome>();
  const openLayer = new Int32Array(analysts.size).fill(-1);
  // Stored bytes sent to each analyst and not yet sketched: one module of one model at a time,
  // while the calling thread reads the next.
  const inFlight = new Float64Array(analysts.size);
  let recorded = 0;
  const byteLength = (list: readonly ArrayBuffer[]) => list.reduce((sum, b) => sum + b.byteLength, 0);
  const takeOne = () => {
    const result = analysts.take();
    if (!result) throw new Error('verify: waiting for a layer, but no job is in flight');
    readSeconds += result.seconds;
    if (result.kind === 'module') inFlight[result.index % analysts.size]! -= byteLength(result.buffers);
    buffers?.release(result.buffers);
    if (!result.outcome) return;
    outcomes.set(result.index, result.outcome);
    openLayer[result.index % analysts.size] = -1;
    for (let next = outcomes.get(recorded); next; next = outcomes.get(recorded)) {
      outcomes.delete(recorded++);
      record(next);
    }
  };
  try {
    for (let index = 0; index < layerCount; index++) {
      const slot = index % analysts.size;
      while (openLayer[slot] !== -1) takeOne();
      openLayer[slot] = index;
      const norms = sketch ? timed(() => readNorms(base, candidate, index), (s) => (readSeconds += s)) : null;
      if (sketch && norms && gainsAgree(norms, residual)) {
        for (const job of timedJobs(sketchedLayerJobs(base, candidate, index, sketch, residual, norms, buffers), (s) => (readSeconds += s))) {
          while (inFlight[slot]! > 0) takeOne();
          if (job.kind === 'module') inFlight[slot]! += byteLength(jobBuffers(job));
          analysts.post(slot, job);
        }
      } else {
        const loaded = timed(() => loadLayer(base, candidate, index, buffers), (s) => (readSeconds += s));
        analysts.post(slot, { kind: 'exact-layer', index, base: loaded.base, candidate: loaded.candidate });
      }
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
  const evidence = judge(test.log10PValue, normGrowth, layers);
  return {
    schema: 'model-lineage/verify@1',
    base: summarize(base, adapters.base ?? null),
    candidate: summarize(candidate, adapters.candidate ?? null),
    relation: evidence.relation,
    reason: evidence.reason,
    pValue: test.pValue,
    log10PValue: test.log10PValue,
    independence: test,
    alignmentQuality: qualities.reduce((a, q) => a + q, 0) / qualities.length,
    direction: { normGrowth, kurtosisBase, kurtosisCandidate },
    lora: evidence.lora,
    fullFineTune: evidence.fullFineTune,
    transform,
    layers,
    timings: { readSeconds, alignSeconds, analyseSeconds, totalSeconds: (performance.now() - started) / 1000 },
  };
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

function judge(log10P: number, growth: number, layers: readonly LayerEvidence[]): Judgement {
  const p = formatP(log10P);
  if (log10P > Math.log10(UNRELATED_P)) {
    return { relation: 'unrelated', reason: `no sign of a shared initialisation (${p} under independence)`, lora: null, fullFineTune: false };
  }
  if (log10P > Math.log10(RELATED_P)) {
    return { relation: 'inconclusive', reason: `weak evidence of a shared initialisation (${p}): neither independence nor kinship is clear`, lora: null, fullFineTune: false };
  }
  const all = layers.flatMap((l) => l.modules.map((m) => ({ layer: l.layer, ...m })));
  const changed = all.filter((m) => m.status !== 'unchanged');
  if (changed.length === 0) {
    return { relation: 'derived', reason: `same weights as BASE after alignment (a copy; ${p})`, lora: null, fullFineTune: false };
  }
  const fullFineTune = changed.some((m) => m.status === 'full');
  if (growth < -DERIVED_GROWTH) {
    return { relation: 'related', reason: `shared origin (${p}), but BASE looks derived from CANDIDATE (norm growth ${growth.toFixed(2)})`, lora: null, fullFineTune };
  }
  if (growth <= DERIVED_GROWTH) {
    return { relation: 'related', reason: `shared origin (${p}), but neither descends from the other: siblings or cousins (norm growth ${growth.toFixed(2)})`, lora: null, fullFineTune };
  }
  let lora: VerifyResult['lora'] = null;
  if (!fullFineTune) {
    // The noise threshold leaves no spurious ranks, so every changed module is a target, also
    // when the adapter covered only some layers.
    const targets = MODULES.map(([, name]) => name).filter((name) => changed.some((m) => m.module === name));
    const ranks = changed.filter((m) => targets.includes(m.module)).map((m) => m.rank);
    const loraLayers = [...new Set(changed.map((m) => m.layer))].sort((a, b) => a - b);
    lora = { rank: mode(ranks), targets, layers: loraLayers, stacked: false };
  }
  const what = lora ? `LoRA rank ${lora.rank} on ${lora.targets.join(', ')}` : 'a full fine-tune';
  return { relation: 'derived', reason: `CANDIDATE is BASE plus ${what} (${p}, norm growth ${growth.toFixed(2)})`, lora, fullFineTune };
}
