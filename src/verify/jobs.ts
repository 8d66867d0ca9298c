import type { StoredWeight, Weight } from '../arch/types.js';
import type { LayerWeights, ModuleRole } from '../align/llama.js';
import type { ArrayAllocator } from '../align/noisy.js';
import { rowsOfStored, rowsOfWeight, sketchResidualSide, type ResidualPlacement, type SketchedWeight } from '../align/residual-sketch.js';
import type { FloatDType } from '../io/dtypes.js';
import { layerBuffers } from './buffer-pool.js';
import { analyseLayer, MODULES, type LayerContext, type LayerOutcome } from './layer.js';

/**
 * The work verify hands to a layer analyst (a worker thread, or this thread): sketch one module
 * of one model from its stored bytes, analyse a layer whose modules were all sketched, or
 * analyse a layer read whole (the exact analysis). Sketching happens where the analysis does, so
 * with workers both the decoding and the analysis run in parallel while the calling thread only
 * reads bytes.
 */
export type Job =
  | {
    readonly kind: 'module';
    readonly index: number;
    readonly role: ModuleRole;
    readonly model: 'base' | 'candidate';
    readonly side: 'cols' | 'rows';
    readonly weight: StoredWeight | Weight;
    readonly place: ResidualPlacement;
    readonly roundTo: FloatDType | null;
  }
  | {
    readonly kind: 'sketched-layer';
    readonly index: number;
    /** Norm gains of both models, the candidate's in the base's residual order. */
    readonly norms: { readonly base: readonly [Float64Array, Float64Array]; readonly candidate: readonly [Float64Array, Float64Array] };
  }
  | { readonly kind: 'exact-layer'; readonly index: number; readonly base: LayerWeights; readonly candidate: LayerWeights };

/** What a job gives back: the buffers it was sent (spent, reusable), and a layer's outcome. */
export interface JobResult {
  readonly kind: Job['kind'];
  readonly index: number;
  readonly outcome: LayerOutcome | null;
  readonly buffers: readonly ArrayBuffer[];
  /** Time the job took (module jobs: decoding and sketching, counted as reading). */
  readonly seconds: number;
}

/** The buffers a job carries (to transfer them, and to get them back). */
export function jobBuffers(job: Job): ArrayBuffer[] {
  if (job.kind === 'module') return [('bytes' in job.weight ? job.weight.bytes.buffer : job.weight.data.buffer) as ArrayBuffer];
  if (job.kind === 'exact-layer') return [...layerBuffers(job.base), ...layerBuffers(job.candidate)];
  return [];
}

/** Runs jobs in order, holding the sketches of the layers still being assembled. */
export class LayerAnalyst {
  private readonly sketched = new Map<number, Map<ModuleRole, { base?: SketchedWeight; candidate?: SketchedWeight }>>();

  constructor(private readonly context: LayerContext, private readonly arrays?: ArrayAllocator & { release(buffers: Iterable<ArrayBufferLike | undefined>): void }) {}

  run(job: Job): JobResult {
    const started = performance.now();
    const result = this.runJob(job);
    return { ...result, seconds: job.kind === 'module' ? (performance.now() - started) / 1000 : 0 };
  }

  private runJob(job: Job): Omit<JobResult, 'seconds'> {
    if (job.kind === 'module') {
      const rows = 'bytes' in job.weight ? rowsOfStored(job.weight) : rowsOfWeight(job.weight);
      let layer = this.sketched.get(job.index);
      if (!layer) this.sketched.set(job.index, (layer = new Map()));
      const pair = layer.get(job.role) ?? {};
      pair[job.model] = sketchResidualSide(rows, job.side, job.place, job.roundTo, this.arrays);
      layer.set(job.role, pair);
      return { kind: job.kind, index: job.index, outcome: null, buffers: jobBuffers(job) };
    }
    if (job.kind === 'exact-layer') {
      // The layer's buffers go back for the next layer read; the outcome holds no view of them.
      return { kind: job.kind, index: job.index, outcome: analyseLayer(job.index, job.base, job.candidate, this.context), buffers: jobBuffers(job) };
    }
    const modules = this.sketched.get(job.index);
    const missing = MODULES.filter(([role]) => !modules?.get(role)?.base || !modules.get(role)?.candidate).map(([role]) => role);
    if (!modules || missing.length > 0) throw new Error(`layer ${job.index}: modules ${missing.join(', ')} were not sketched`);
    this.sketched.delete(job.index);
    const model = (side: 'base' | 'candidate', norms: readonly [Float64Array, Float64Array]): LayerWeights => {
      const pick = (role: ModuleRole) => modules.get(role)![side]!;
      const lines = Object.fromEntries(MODULES.map(([role]) => [role, pick(role).lines])) as LayerWeights['lines'] & object;
      return {
        q: pick('q').matrix, k: pick('k').matrix, v: pick('v').matrix, o: pick('o').matrix,
        gate: pick('gate').matrix, up: pick('up').matrix, down: pick('down').matrix,
        inputNorm: norms[0], postNorm: norms[1], lines,
      };
    };
    const base = model('base', job.norms.base), candidate = model('candidate', job.norms.candidate);
    const outcome = analyseLayer(job.index, base, candidate, this.context);
    this.arrays?.release([...layerBuffers(base), ...layerBuffers(candidate)]);
    return { kind: job.kind, index: job.index, outcome, buffers: [] };
  }
}
