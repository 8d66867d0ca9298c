import type { Weight } from '../arch/types.js';
import type { LayerWeights, ModuleRole } from '../align/llama.js';
import { coarserGrid, FRESH_ARRAYS, noisyFromWeight, type ArrayAllocator, type NoisyMatrix } from '../align/noisy.js';
import { layerBuffers } from './buffer-pool.js';
import { analyseLayer, MODULES, type LayerContext, type LayerOutcome } from './layer.js';

/** One model's layer as read: every module decoded to float32 (whole, or on the residual sample) and its norm gains. */
export interface ReadLayer {
  readonly modules: Readonly<Record<ModuleRole, Weight>>;
  /** Norm gains on the grid the models are compared on, as their modules. */
  readonly inputNorm: NoisyMatrix;
  readonly postNorm: NoisyMatrix;
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
  return [job.base, job.candidate].flatMap((layer) => MODULES.flatMap(([role]) => {
    const w = layer.modules[role];
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
  const pairs = new Map(MODULES.map(([role]) => [role, onCommonGrid(job.base.modules[role], job.candidate.modules[role], arrays)]));
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

/** Runs jobs: a layer's analysis form comes from `arrays` and goes back there once analysed. */
export class LayerAnalyst {
  constructor(private readonly context: LayerContext, private readonly arrays?: ArrayAllocator & { release(buffers: Iterable<ArrayBufferLike | undefined>): void }) {}

  run(job: Job, giveBack: (result: JobResult) => void): void {
    const { base, candidate } = analysisForm(job, this.arrays ?? FRESH_ARRAYS);
    giveBack({ index: job.index, outcome: null, buffers: jobBuffers(job) });
    // The outcome holds no view of the layer's arrays: they are refilled by the next layer.
    const outcome = analyseLayer(job.index, base, candidate, this.context, job.sampled);
    this.arrays?.release([...layerBuffers(base), ...layerBuffers(candidate)]);
    giveBack({ index: job.index, outcome, buffers: [] });
  }
}
