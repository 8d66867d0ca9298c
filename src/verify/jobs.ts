/**
 * Verify's jobs: one layer of both models as read, put in the analysis form and analysed (by
 * layer.ts or layernorm-layer.ts), and the buffers handed back; what parallel.ts runs.
 */
import { PLAIN_ROLES, type LayerRole, type PlainRole, type Weight } from '../arch/types.js';
import type { LayerNormLayerWeights } from '../align/layernorm-block.js';
import type { LayerWeights, ModuleRole } from '../align/llama-block.js';
import { coarserGrid, FRESH_ARRAYS, noisyFromWeight, type ArrayAllocator, type NoisyMatrix } from '../noise/noisy-matrix.js';
import { layerBuffers } from './buffer-pool.js';
import { analyseLayer, MODULES, type LayerContext, type LayerOutcome } from './layer.js';
import { analyseLayerNormLayer } from './layernorm-layer.js';

/** One model's layer as read: every module decoded to float32 (whole, or on the residual sample) and its norm gains. */
export interface ReadLayer {
  /** Llama-style blocks: the ModuleRoles; LayerNorm blocks: the PlainRoles. */
  readonly modules: Readonly<Partial<Record<LayerRole, Weight>>>;
  /** Norm gains on the grid the models are compared on, as their modules. */
  readonly inputNorm: NoisyMatrix;
  readonly postNorm: NoisyMatrix;
  /**
   * LayerNorm blocks: each linear's bias and the norms' betas (under input_norm, post_norm), on the
   * compared grid; a role without one is absent.
   */
  readonly biases?: Readonly<Partial<Record<LayerRole, NoisyMatrix>>>;
}

/**
 * The work verify hands to a layer analyst (a worker thread, or this thread): one layer of both
 * models as read. The analyst puts it in the analysis form (float64 values, rounding variances)
 * and analyses it, so with workers that work runs in parallel while the calling thread reads.
 */
export interface Job {
  readonly index: number;
  readonly base: ReadLayer;
  readonly candidate: ReadLayer;
  /** Read on the residual sample (residual-sample.ts), else whole. */
  readonly sampled: boolean;
}

/**
 * What an analyst gives back of a job, twice: the decode buffers it was sent, as soon as the
 * analysis form is built from them (outcome null: the reader's pool refills them, so neither
 * thread holds decodes it no longer needs), then the layer's outcome.
 */
export interface JobResult {
  readonly index: number;
  readonly outcome: LayerOutcome | null;
  readonly buffers: readonly ArrayBuffer[];
}

/** The decode buffers a job carries (to transfer them, and to get them back). */
export function jobBuffers(job: Job): ArrayBuffer[] {
  return [job.base, job.candidate].flatMap((layer) => Object.values(layer.modules).flatMap((w) => {
    return w.variance ? [w.data.buffer as ArrayBuffer, w.variance.buffer as ArrayBuffer] : [w.data.buffer as ArrayBuffer];
  }));
}

/** Both weights in the analysis form on the grid they are compared on: a model stored finer than the other (f32 vs bf16) is rounded onto the coarser grid. */
export function onCommonGrid(wb: Weight, wc: Weight, arrays: ArrayAllocator = FRESH_ARRAYS): { base: NoisyMatrix; candidate: NoisyMatrix } {
  const grid = coarserGrid(wb.dtype, wc.dtype);
  return {
    base: noisyFromWeight(wb, grid !== wb.dtype ? grid : null, arrays),
    candidate: noisyFromWeight(wc, grid !== wc.dtype ? grid : null, arrays),
  };
}

/** Both models' layers in the analysis form, from `arrays`. */
function analysisForm(job: Job, arrays: ArrayAllocator): { base: LayerWeights; candidate: LayerWeights } {
  const pairs = new Map(MODULES.map(([role]) => [role, onCommonGrid(module(job.base, role), module(job.candidate, role), arrays)]));
  const side = (s: 'base' | 'candidate'): LayerWeights => {
    const pick = (role: ModuleRole) => pairs.get(role)![s];
    const read = job[s];
    return {
      q: pick('q'), k: pick('k'), v: pick('v'), o: pick('o'), gate: pick('gate'), up: pick('up'), down: pick('down'),
      inputNorm: read.inputNorm.values.slice(), inputNormVariance: read.inputNorm.variance, postNorm: read.postNorm.values.slice(),
    };
  };
  return { base: side('base'), candidate: side('candidate') };
}

function module(layer: ReadLayer, role: LayerRole): Weight {
  const w = layer.modules[role];
  if (!w) throw new Error(`verify: a layer read without its ${role} weight`);
  return w;
}

/** A vector of n zeros with zero variance (the bias of a linear stored without one). */
function zeros(n: number): NoisyMatrix {
  return { rows: n, cols: 1, values: new Float64Array(n), variance: new Float32Array(n) };
}

/** Both models' LayerNorm layers in the analysis form; biases are copied (the analysis changes them in place). */
function layerNormForm(job: Job, arrays: ArrayAllocator): { base: LayerNormLayerWeights; candidate: LayerNormLayerWeights } {
  const pairs = new Map(PLAIN_ROLES.map((role) => [role, onCommonGrid(module(job.base, role), module(job.candidate, role), arrays)]));
  const copy = (m: NoisyMatrix | undefined, n: number): NoisyMatrix => (m ? { ...m, values: m.values.slice(), variance: m.variance.slice() } : zeros(n));
  const side = (s: 'base' | 'candidate'): LayerNormLayerWeights => {
    const pick = (role: PlainRole) => pairs.get(role)![s];
    const read = job[s];
    const hidden = read.inputNorm.rows;
    return {
      q: pick('q'), k: pick('k'), v: pick('v'), o: pick('o'), fc_in: pick('fc_in'), fc_out: pick('fc_out'),
      bias: Object.fromEntries(PLAIN_ROLES.map((role) => [role, copy(read.biases?.[role], pick(role).rows)])) as Record<PlainRole, NoisyMatrix>,
      inputNorm: read.inputNorm.values.slice(), inputNormBias: copy(read.biases?.input_norm, hidden),
      postNorm: read.postNorm.values.slice(), postNormBias: copy(read.biases?.post_norm, hidden),
    };
  };
  return { base: side('base'), candidate: side('candidate') };
}

/** Runs jobs: a layer's analysis form comes from `arrays` and goes back there once analysed. */
export class LayerAnalyst {
  constructor(private readonly context: LayerContext, private readonly arrays?: ArrayAllocator & { release(buffers: Iterable<ArrayBufferLike | undefined>): void }) {}

  run(job: Job, giveBack: (result: JobResult) => void): void {
    const arrays = this.arrays ?? FRESH_ARRAYS;
    const layerNorm = this.context.layerNorm;
    const form = layerNorm ? { layerNorm: layerNormForm(job, arrays) } : { llama: analysisForm(job, arrays) };
    giveBack({ index: job.index, outcome: null, buffers: jobBuffers(job) });
    // The outcome holds no view of the layer's arrays: they are refilled by the next layer.
    const outcome = form.layerNorm
      ? analyseLayerNormLayer(job.index, form.layerNorm.base, form.layerNorm.candidate, this.context, layerNorm!.preNorm)
      : analyseLayer(job.index, form.llama!.base, form.llama!.candidate, this.context, job.sampled);
    const layers = form.layerNorm ?? form.llama!;
    this.arrays?.release([...layerBuffers(layers.base), ...layerBuffers(layers.candidate)]);
    giveBack({ index: job.index, outcome, buffers: [] });
  }
}
