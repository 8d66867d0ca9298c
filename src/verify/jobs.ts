/**
 * Verify's jobs: one part of a layer (Llama-style blocks: attention or MLP, see LayerPart) or a
 * whole layer (LayerNorm blocks) of both models as read, put in the analysis form and analysed
 * (by layer.ts or layernorm-layer.ts), and the buffers handed back; what parallel.ts runs.
 */
import { PLAIN_ROLES, type LayerRole, type PlainRole, type Weight } from '../arch/types.js';
import type { LayerNormLayerWeights } from '../align/layernorm-block.js';
import type { AttentionPart, MlpReaders, ModuleRole } from '../align/llama-block.js';
import { coarserGrid, FRESH_ARRAYS, noisyFromWeight, type ArrayAllocator, type NoisyMatrix } from '../noise/noisy-matrix.js';
import { layerBuffers } from './buffer-pool.js';
import { analyseLayerPart, FORMED_LAST, PART_ROLES, type LayerContext, type LayerOutcome, type LayerPart, type MlpDown, type PartOutcome } from './layer.js';
import { analyseLayerNormLayer } from './layernorm-layer.js';

/** One model's layer (or part of it) as read: every module decoded to float32 (whole, or on the residual sample) and its norm gains. */
export interface ReadLayer {
  /** Llama-style blocks: the ModuleRoles of the job's part; LayerNorm blocks: the PlainRoles. */
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
 * The work verify hands to a layer analyst (a worker thread, or this thread): one layer, or one
 * part of it, of both models as read. The analyst puts it in the analysis form (float64 values,
 * rounding variances) and analyses it, so with workers that work runs in parallel while the
 * calling thread reads.
 */
export interface Job {
  readonly index: number;
  /** The part of a Llama-style layer; null: a whole (LayerNorm) layer. */
  readonly part: LayerPart | null;
  /** The layer's other part changed densely (the part is analysed again, see PartOutcome.componentsRead). */
  readonly layerDense: boolean;
  readonly base: ReadLayer;
  readonly candidate: ReadLayer;
  /** Read on the residual sample (residual-sample.ts), else whole. */
  readonly sampled: boolean;
}

/**
 * What an analyst gives back of a job: the decode buffers it was sent, as soon as the analysis
 * form is built from them (outcome null: the reader's pool refills them, so neither thread holds
 * decodes it no longer needs; the MLP's down later than the others, see MlpDown), then the
 * layer's outcome.
 */
export interface JobResult {
  readonly index: number;
  readonly part: LayerPart | null;
  /** A part's outcome for a part's job, a layer's for a whole layer's. */
  readonly outcome: PartOutcome | LayerOutcome | null;
  readonly buffers: readonly ArrayBuffer[];
}

/** The decode buffers a job carries (to transfer them, and to get them back), of the roles `of` takes (all by default). */
export function jobBuffers(job: Job, of: (role: LayerRole) => boolean = () => true): ArrayBuffer[] {
  return [job.base, job.candidate].flatMap((layer) => Object.entries(layer.modules).flatMap(([role, w]) => {
    if (!w || !of(role as LayerRole)) return [];
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

/** Both models' part of a layer in the analysis form, from `arrays`, but for the role formed last (FORMED_LAST). */
function partForm(job: Job, part: LayerPart, arrays: ArrayAllocator): { base: AttentionPart | MlpReaders; candidate: AttentionPart | MlpReaders } {
  const roles = PART_ROLES[part].filter((role) => role !== FORMED_LAST[part]);
  const pairs = new Map(roles.map((role) => [role, onCommonGrid(module(job.base, role), module(job.candidate, role), arrays)]));
  const side = (s: 'base' | 'candidate'): AttentionPart | MlpReaders => {
    const pick = (role: ModuleRole) => pairs.get(role)![s];
    const read = job[s];
    return part === 'attention'
      ? { q: pick('q'), k: pick('k'), v: pick('v'), o: pick('o'), inputNorm: read.inputNorm.values.slice(), inputNormVariance: read.inputNorm.variance }
      : { gate: pick('gate'), up: pick('up'), postNorm: read.postNorm.values.slice() };
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

/** Runs jobs: a job's analysis form comes from `arrays` and goes back there once analysed. */
export class LayerAnalyst {
  constructor(private readonly context: LayerContext, private readonly arrays?: ArrayAllocator & { release(buffers: Iterable<ArrayBufferLike | undefined>): void }) {}

  run(job: Job, giveBack: (result: JobResult) => void): void {
    const { index, part } = job;
    const arrays = this.arrays ?? FRESH_ARRAYS;
    const last = part ? FORMED_LAST[part] : null;
    const formedLast: NoisyMatrix[] = [];
    const down: MlpDown = {
      form: () => {
        const pair = onCommonGrid(module(job.base, 'down'), module(job.candidate, 'down'), arrays);
        formedLast.push(pair.base, pair.candidate);
        giveBack({ index, part, outcome: null, buffers: jobBuffers(job, (role) => role === last) });
        return pair;
      },
      ...(this.arrays ? { release: (m: NoisyMatrix) => this.arrays!.release([m.values.buffer, m.variance.buffer]) } : {}),
    };
    const analysis = this.prepare(job, arrays, down);
    giveBack({ index, part, outcome: null, buffers: jobBuffers(job, (role) => role !== last) });
    // The outcome holds no view of the job's arrays: they are refilled by the next job (a buffer
    // already given back by MlpDown.release is not pooled twice).
    const outcome = analysis.analyse();
    this.arrays?.release([...layerBuffers(analysis.form.base), ...layerBuffers(analysis.form.candidate), ...formedLast.flatMap((m) => [m.values.buffer, m.variance.buffer])]);
    giveBack({ index, part, outcome, buffers: [] });
  }

  /** The job in the analysis form (the MLP's down formed by `down` when the analysis asks), and its analysis. */
  private prepare(job: Job, arrays: ArrayAllocator, down: MlpDown): { form: { base: object; candidate: object }; analyse(): PartOutcome | LayerOutcome } {
    const layerNorm = this.context.layerNorm;
    if (layerNorm) {
      const form = layerNormForm(job, arrays);
      return { form, analyse: () => analyseLayerNormLayer(job.index, form.base, form.candidate, this.context, layerNorm.preNorm) };
    }
    const part = job.part;
    if (!part) throw new Error(`verify: a job for the whole of layer ${job.index}, whose block is analysed in parts`);
    const form = partForm(job, part, arrays);
    return { form, analyse: () => analyseLayerPart(job.index, part, form.base, form.candidate, this.context, job.sampled, job.layerDense, part === 'mlp' ? down : null) };
  }
}
