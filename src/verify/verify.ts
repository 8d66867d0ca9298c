import { compareArchitectures } from '../arch/map.js';
import type { RoleReader } from '../arch/reader.js';
import type { LayerRole, Weight } from '../arch/types.js';
import { IncompatibleModelsError, LineageError } from '../io/errors.js';
import { combineIndependence, type LayerIndependence } from '../align/independence.js';
import {
  alignResidual, permuteResidualVector, residualColumns, type HeadLayout, type LayerWeights, type ResidualAlignment, type ResidualEvidence,
} from '../align/llama.js';
import { coarserGrid, noisyFromWeight, type ArrayAllocator, type NoisyMatrix } from '../align/noisy.js';
import { Rng } from '../linalg/rng.js';
import { MomentAccumulator } from '../stats/moments.js';
import { residualPlacement, residualSketchMap, sketchResidualSide } from '../align/residual-sketch.js';
import type { CountSketchMap } from '../linalg/countsketch.js';
import { analyseLayer, maxAbsLog, MODULES, ratio, READ_NORM, type LayerContext, type LayerOutcome } from './layer.js';
import { BufferPool, layerBuffers } from './buffer-pool.js';
import { LayerPool } from './parallel.js';
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

/**
 * One layer of both models with the residual side of every module sketched as it is read (see
 * residual-sketch.ts): the candidate hashed in the base's residual order, both with their norm
 * gains folded into the readers. Only one role's float32 decode per model is in memory at a time.
 */
function loadSketchedLayer(
  base: RoleReader, candidate: RoleReader, index: number, map: CountSketchMap, residual: ResidualAlignment, norms: LayerNorms, pool: BufferPool | null,
): { base: LayerWeights; candidate: LayerWeights } {
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
  const arrays = pool ?? undefined;
  const sketched = MODULES.map(([role, name]) => {
    const decodeBase = decodeBuffer(base, index, role, pool);
    const decodeCandidate = decodeBuffer(candidate, index, role, pool);
    const wb = base.layer(index, role, decodeBase), wc = candidate.layer(index, role, decodeCandidate);
    const grid = coarserGrid(wb.dtype, wc.dtype);
    const reads = READ_NORM[name];
    const side = reads ? 'cols' : 'rows';
    const out = {
      base: sketchResidualSide(wb, side, place.base[reads ?? 'writer'], grid !== wb.dtype ? grid : null, arrays),
      candidate: sketchResidualSide(wc, side, place.candidate[reads ?? 'writer'], grid !== wc.dtype ? grid : null, arrays),
    };
    pool?.release([decodeBase?.buffer, decodeCandidate?.buffer]);
    return out;
  });
  const model = (s: 'base' | 'candidate', inputNorm: Float64Array, postNorm: Float64Array): LayerWeights => {
    const [q, k, v, o, gate, up, down] = sketched.map((pair) => pair[s]);
    const lines = { q: q!.lines, k: k!.lines, v: v!.lines, o: o!.lines, gate: gate!.lines, up: up!.lines, down: down!.lines };
    return {
      q: q!.matrix, k: k!.matrix, v: v!.matrix, o: o!.matrix, gate: gate!.matrix, up: up!.matrix, down: down!.matrix,
      inputNorm, postNorm, lines,
    };
  };
  return {
    base: model('base', input.base.values, post.base.values),
    candidate: model('candidate', permuteResidualVector(input.candidate.values, residual), permuteResidualVector(post.candidate.values, residual)),
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
 * What a buffer pool keeps between layers: the largest layer's analysis form (8 + 4 bytes a
 * value) and float32 decodes (4 bytes a value) of both models, so memory stays bounded by one
 * layer. Sketched (to `width`), the analysis form is the sketches and one role's decode at a time.
 */
function layerPoolBytes(base: RoleReader, candidate: RoleReader, width: number | null): number {
  const analysisBytes = Float64Array.BYTES_PER_ELEMENT + Float32Array.BYTES_PER_ELEMENT;
  let most = 0;
  for (let index = 0; index < base.map.layers.length; index++) {
    let bytes = 0, decode = 0;
    for (const reader of [base, candidate]) {
      let largest = 0;
      for (const role of LAYER_ROLES) {
        const shape = reader.map.layers[index]?.[role]?.shape;
        if (!shape) continue;
        const elements = shape[0] * shape[1];
        largest = Math.max(largest, elements);
        if (width === null) bytes += elements * (analysisBytes + Float32Array.BYTES_PER_ELEMENT);
        else if (shape.length === 2) bytes += (elements / Math.max(1, reader.map.dims.hidden)) * width * analysisBytes;
      }
      decode += largest * Float32Array.BYTES_PER_ELEMENT;
    }
    most = Math.max(most, width === null ? bytes : bytes + decode);
  }
  return most;
}

/**
 * One model's residual evidence: each embedding-like matrix is sketched as soon as it is read, into
 * `scratch` when it fits (one decode buffer serves all of them: fresh memory costs about as much
 * to touch as to decode), so at most one of them (131M values at 7B) is in memory at a time.
 */
function loadResidualEvidence(reader: RoleReader, withHead: boolean, finalNorm: Float64Array | null, scratch: (role: 'embed' | 'lm_head') => Float32Array | undefined): ResidualEvidence {
  return {
    embed: residualColumns(reader.global('embed', scratch('embed')), 'embed'),
    lmHead: withHead ? residualColumns(reader.global('lm_head', scratch('lm_head')), 'lm_head') : null,
    finalNorm,
  };
}

function loadGlobals(base: RoleReader, candidate: RoleReader): { base: ResidualEvidence; candidate: ResidualEvidence } {
  const tied = base.map.tiedEmbeddings || candidate.map.tiedEmbeddings || !base.map.global.lm_head || !candidate.map.global.lm_head;
  // The final norms on the common grid, as every layer weight: an f32 parent's equals its bf16 child's.
  const norms = base.map.global.final_norm && candidate.map.global.final_norm
    ? onCommonGrid(base.global('final_norm'), candidate.global('final_norm')) : null;
  const elements = (reader: RoleReader, role: 'embed' | 'lm_head') => {
    const shape = reader.map.global[role]?.shape;
    return shape ? shape[0] * (shape[1] ?? 1) : 0;
  };
  const largest = Math.max(...[base, candidate].flatMap((r) => [elements(r, 'embed'), tied ? 0 : elements(r, 'lm_head')]));
  const buffer = new Float32Array(largest);
  const scratchOf = (reader: RoleReader) => (role: 'embed' | 'lm_head') => {
    const n = elements(reader, role);
    return n > 0 ? buffer.subarray(0, n) : undefined;
  };
  return {
    base: loadResidualEvidence(base, !tied, norms ? norms.base.values : null, scratchOf(base)),
    candidate: loadResidualEvidence(candidate, !tied, norms ? norms.candidate.values : null, scratchOf(candidate)),
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
  const buffers = options.buffers === undefined ? new BufferPool(layerPoolBytes(base, candidate, sketch ? sketch.width : null)) : options.buffers;
  const recycle = (released: readonly ArrayBuffer[]) => buffers?.release(released);
  const load = (index: number) => timed(() => {
    const norms = sketch ? readNorms(base, candidate, index) : null;
    return sketch && norms && gainsAgree(norms, residual)
      ? loadSketchedLayer(base, candidate, index, sketch, residual, norms, buffers)
      : loadLayer(base, candidate, index, buffers);
  }, (s) => (readSeconds += s));
  const workers = Math.min(options.workers ?? 0, layerCount);
  if (workers > 0) {
    // Layers are read here, in order, while the workers analyse the previous ones.
    const pool = new LayerPool(workers, context);
    try {
      pool.run(layerCount, load, record, recycle);
    } finally {
      pool.close();
    }
  } else {
    for (let index = 0; index < layerCount; index++) {
      const loaded = load(index);
      record(analyseLayer(index, loaded.base, loaded.candidate, context));
      recycle([...layerBuffers(loaded.base), ...layerBuffers(loaded.candidate)]);
    }
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
