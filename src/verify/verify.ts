/** Verify's orchestration: compare the architectures, align the residual, read and analyse layer by layer, judge. */

import { compareArchitectures, headLeftOut } from '../arch/compare.js';
import type { RoleReader } from '../arch/reader.js';
import { IncompatibleModelsError, LineageError } from '../io/errors.js';
import { combineIndependence, type LayerIndependence } from '../align/independence.js';
import { alignResidual, type HeadLayout, type ResidualAlignment } from '../align/llama-block.js';
import { residualSample, sampledResidual } from '../align/residual-sample.js';
import { Rng } from '../linalg/rng.js';
import { MomentAccumulator } from '../stats/moments.js';
import { mergeParts, PART_ROLES, partToReread, type LayerContext, type LayerOutcome, type LayerPart, type PartOutcome } from './layer.js';
import { BufferPool } from './buffer-pool.js';
import { addComponents, NO_COMPONENTS, siblingsOfDifferentKinds, summarizeComponents } from './direction.js';
import { InThreadAnalysts, WorkerAnalysts, type Analysts } from './parallel.js';
import type { Job } from './jobs.js';
import { loadGlobals, memoryPlan, readBiases, readLayer, readNorms, type LayerNorms } from './layer-reading.js';
import { blockOf } from './block.js';
import { describeTransform, layerNormFold, normFoldOf } from './transform-found.js';
import { adapterCaveat, declaredAdapterBase, formatP, judge } from './verdict.js';
import type { LayerEvidence, ModelSummary, TransformFound, VerifyResult } from './types.js';

// The verdict's constants and the memory plan are part of verify's interface.
export { DERIVED_GROWTH, MIN_INFORMATIVE_NEURONS, RELATED_P, UNRELATED_P, declaredAdapterBase } from './verdict.js';
export { analystBytes } from './layer-reading.js';

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

function summarize(reader: RoleReader, adapter: ModelSummary['adapter']): ModelSummary {
  return { name: reader.name, path: reader.path, dtypes: reader.dtypes, parameters: reader.parameters, adapter };
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
  // Task heads (classifier, pooler, a resized vocabulary) are left out: the bodies are compared.
  const problems = compareArchitectures(base.map, candidate.map, { bodies: true });
  if (problems.length > 0) {
    throw new IncompatibleModelsError(`${base.name} and ${candidate.name} have different architectures: ${problems.join('; ')}`);
  }
  // The bodies compared equal: CANDIDATE has BASE's roles, hence its block kind.
  const block = blockOf(base);
  const leftOut = headLeftOut(base.map, candidate.map);
  const layout = headLayout(base);
  const seed = options.seed ?? 1;

  // The residual evidence (embedding sketches) is needed for the residual alignment and the final
  // norms' fold only: kept in this block, so it is not held while the layers are analysed.
  const { residual, finalNormFold } = (() => {
    const globals = timed(() => loadGlobals(base, candidate, seed), (s) => (readSeconds += s));
    const found = timed(() => alignResidual(globals.base, globals.candidate), (s) => (alignSeconds += s));
    // Through a LayerNorm only the order of the residual dimensions is free, not their signs.
    const aligned: ResidualAlignment = block.layerNorm ? { ...found, sign: new Float64Array(found.sign.length).fill(1), flipped: 0 } : found;
    const fold = globals.candidate.finalNorm && globals.base.finalNorm ? normFoldOf(globals.base.finalNorm, globals.candidate.finalNorm, aligned) : 0;
    return { residual: aligned, finalNormFold: fold };
  })();
  // Wide models: every layer is analysed on a sample of the residual dimensions (residual-sample.ts),
  // and its probe states live in the sample's coordinates.
  // LayerNorm blocks are always analysed whole.
  const sample = block.layerNorm ? null : residualSample(base.map.dims.hidden, seed, options.residualSampleWidth);
  const sampled = sample ? sampledResidual(sample, residual) : null;
  const probesOf = (dims: number) => new Rng(seed + 99).gaussianMatrix(Math.min(dims, PROBES), dims);
  const context: LayerContext = {
    whole: { residual, probes: probesOf(base.map.dims.hidden) },
    sampled: sampled ? { residual: sampled.alignment, probes: probesOf(sampled.base.length) } : null,
    layout, seed, layerNorm: block.layerNorm,
  };
  const roles = block.modules.map(([role]) => role);

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
  // The analysis consumes a job's arrays (permuted and scaled in place), and no outcome keeps a
  // view of them, so once a job is analysed its memory is filled by the next one.
  const workers = Math.min(options.workers ?? 0, layerCount);
  const budget = memoryPlan(base, candidate, sampled ? sampled.base.length : null);
  const buffers = options.buffers === undefined ? new BufferPool(budget.decodeBytes + (workers > 0 ? 0 : budget.analysisBytes)) : options.buffers;
  const analysts: Analysts = workers > 0 ? new WorkerAnalysts(workers, context, budget.analysisBytes) : new InThreadAnalysts(context, buffers);
  // A Llama-style layer is two jobs, attention and MLP (layer.ts, LayerPart), so an analyst holds
  // half a layer and the calling thread reads half a layer ahead; LayerNorm layers are one job.
  const parts: readonly (LayerPart | null)[] = block.layerNorm ? [null] : ['attention', 'mlp'];
  // Each analyst holds one job at a time, and the calling thread reads the next one meanwhile;
  // a job goes to whichever analyst is free first. Results may come back out of order and are
  // recorded in layer order, a layer's parts merged once both are in.
  const outcomes = new Map<number, LayerOutcome>();
  const partsIn = new Map<number, PartOutcome>();
  const rereads: PartOutcome[] = [];
  const busy = new Map<string, number>(); // job -> analyst slot
  const jobKey = (index: number, part: LayerPart | null) => `${index}/${part}`;
  let recorded = 0;
  const takeOne = () => {
    const result = analysts.take();
    if (!result) throw new Error('verify: waiting for a layer, but no job is in flight');
    buffers?.release(result.buffers);
    if (!result.outcome) return;
    busy.delete(jobKey(result.index, result.part));
    if ('part' in result.outcome) {
      const other = partsIn.get(result.index);
      if (!other) {
        partsIn.set(result.index, result.outcome);
        return;
      }
      partsIn.delete(result.index);
      const reread = partToReread(other, result.outcome);
      if (reread) {
        // Its components are read once it is analysed again; its first analysis' time counts too.
        alignSeconds += reread.alignSeconds;
        analyseSeconds += reread.analyseSeconds;
        partsIn.set(result.index, reread === other ? result.outcome : other);
        rereads.push(reread);
        return;
      }
      outcomes.set(result.index, mergeParts(other, result.outcome));
    } else {
      outcomes.set(result.index, result.outcome);
    }
    for (let next = outcomes.get(recorded); next; next = outcomes.get(recorded)) {
      outcomes.delete(recorded++);
      record(next);
    }
  };
  const post = (job: Job) => {
    const slot = freeSlot();
    busy.set(jobKey(job.index, job.part), slot);
    analysts.post(slot, job);
  };
  const freeSlot = () => {
    for (;;) {
      const taken = new Set(busy.values());
      for (let slot = 0; slot < analysts.size; slot++) if (!taken.has(slot)) return slot;
      takeOne();
    }
  };
  // A layer's norm gains are read once for its parts (and again for a part read again).
  const readLayerNorms = (index: number): LayerNorms => timed(() => readNorms(base, candidate, index), (s) => (readSeconds += s));
  const readJob = (index: number, part: LayerPart | null, norms: LayerNorms, layerDense: boolean): Job => timed(() => {
    const side = (s: 'base' | 'candidate') => ({ input: norms.input[s], post: norms.post[s] });
    const biases = block.layerNorm ? readBiases(base, candidate, index, roles) : null;
    const partRoles = part ? PART_ROLES[part] : roles;
    return {
      index, part, layerDense,
      base: readLayer(base, index, side('base'), sampled?.base ?? null, buffers, partRoles, biases?.base),
      candidate: readLayer(candidate, index, side('candidate'), sampled?.candidate ?? null, buffers, partRoles, biases?.candidate),
      sampled: sampled !== null,
    };
  }, (s) => (readSeconds += s));
  // A part read again (rare: its layer's other part changed densely and it did not) is posted as
  // soon as it is known, so the layers after it are not held back.
  const postRereads = () => {
    for (let part = rereads.shift(); part; part = rereads.shift()) post(readJob(part.index, part.part, readLayerNorms(part.index), true));
  };
  try {
    for (let index = 0; index < layerCount; index++) {
      const norms = readLayerNorms(index);
      normFold = Math.max(normFold, layerNormFold(norms, residual));
      for (const part of parts) {
        post(readJob(index, part, norms, false));
        postRereads();
      }
    }
    while (recorded < layerCount) {
      if (rereads.length > 0) postRereads();
      else takeOne();
    }
  } finally {
    analysts.close();
  }

  // A LayerNorm block's two views of its neurons are fc_in rows and fc_out columns.
  const test = combineIndependence(independence, block.layerNorm ? 'fc_in row vs fc_out column' : undefined);
  const kurtosisBase = moments[0].result().excessKurtosis;
  const kurtosisCandidate = moments[1].result().excessKurtosis;
  const normGrowth = growthDen > 0 ? growthNum / growthDen : 0;
  const transform = describeTransform(residual, normFold, transformLayers);
  const quantization = { base: base.quantization ?? null, candidate: candidate.quantization ?? null };
  const directionComponents = summarizeComponents(components);
  const evidence = siblingsOfDifferentKinds(judge(test, normGrowth, layers, quantization, block.nativeName, block.layerNorm !== null), directionComponents, layers, formatP(test.log10PValue), normGrowth);
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
    ...(leftOut ? { leftOut } : {}),
    quantization,
    transform,
    layers,
    timings: { readSeconds, alignSeconds, analyseSeconds, totalSeconds: (performance.now() - started) / 1000 },
  };
}
