/**
 * Where the sketch's matrix jobs (sketch-model.ts) run: in this thread, or spread over worker
 * threads that each open the model themselves and stream their matrices through their own
 * kernel. Jobs are handed out in the order the models were given and, within a model, the order
 * its bytes are stored, at most two in flight per worker, so the workers' reads advance together
 * through the files and the operating system's readahead serves them. Synchronous, like verify's
 * analysts (verify/parallel.ts), through the same pool (threads/sync-pool.ts).
 */
import { deserializeError, type SerializedError } from '../io/errors.js';
import type { StoredRoleReader } from '../arch/reader.js';
import { SyncWorkerPool } from '../threads/sync-pool.js';
import { sketchMatrix, type MatrixJob, type MatrixResult } from './sketch-model.js';

/**
 * A tensor the sketch does not read (embeddings, lm_head, norms, biases, unmapped ones), checked
 * for NaN and infinity so that such a model is bad input for `tree` as for `verify`.
 */
export interface FiniteCheckJob {
  readonly check: string;
  readonly bytes: number;
}

export type SketchJob = MatrixJob | FiniteCheckJob;

/** Runs one job on an open reader: a matrix's sketch, or null for a finiteness check passed. */
export function runSketchJob(reader: StoredRoleReader, job: SketchJob, sketchSize: number): MatrixResult | null {
  if ('check' in job) {
    reader.checkUnreadTensor(job.check);
    return null;
  }
  return sketchMatrix(reader, job, sketchSize);
}

/** One matrix job of one model, as posted to a worker. */
export interface PostedJob {
  readonly model: number;
  readonly path: string;
  readonly index: number;
  readonly job: SketchJob;
  readonly sketchSize: number;
}

export type SketchWorkerReply =
  | { readonly ok: true; readonly model: number; readonly index: number; readonly result: MatrixResult | null }
  | { readonly ok: false; readonly model: number; readonly index: number; readonly error: SerializedError };

/** A model's jobs to run; `done` gets each result, `failed` the first error (the rest are then skipped). */
export interface ModelWork {
  readonly path: string;
  readonly jobs: readonly SketchJob[];
  readonly done: (index: number, result: MatrixResult | null) => void;
  readonly failed: (error: Error) => void;
}

/** The arrays a result carries, transferred rather than copied. */
export function resultBuffers(result: MatrixResult | null): ArrayBuffer[] {
  if (!result) return [];
  const buffers = new Set<ArrayBuffer>([result.captured.buffer as ArrayBuffer]);
  for (const view of result.matrix.views) buffers.add(view.sketch.buffer as ArrayBuffer);
  return [...buffers];
}

/** Runs every model's jobs in this thread, one model open at a time. */
export function runInThread(work: readonly ModelWork[], open: (path: string) => StoredRoleReader, sketchSize: number): void {
  for (const model of work) {
    let reader: StoredRoleReader | null = null;
    try {
      reader = open(model.path);
      model.jobs.forEach((job, i) => model.done(i, runSketchJob(reader!, job, sketchSize)));
    } catch (err) {
      model.failed(err as Error);
    } finally {
      reader?.close();
    }
  }
}

/** Jobs a worker holds at once: one running, one waiting, so it never idles on this thread. */
const JOBS_PER_WORKER = 2;

/**
 * Runs every model's jobs on `size` worker threads. Their entry point (workers/sketch-worker.ts)
 * opens the models, which an analysis never does, so it lives with the other composition points.
 */
export function runOnWorkers(work: readonly ModelWork[], size: number, sketchSize: number): void {
  const pool = new SyncWorkerPool<SketchWorkerReply>(new URL('../workers/sketch-worker.js', import.meta.url), size);
  try {
    const queue: PostedJob[] = [];
    work.forEach((model, m) => model.jobs.forEach((job, index) => queue.push({ model: m, path: model.path, index, job, sketchSize })));
    const failed = new Set<number>();
    let next = 0;
    const dispatch = () => {
      for (let slot = 0; slot < size; slot++) {
        while (pool.inFlight(slot) < JOBS_PER_WORKER && next < queue.length) {
          const posted = queue[next++]!;
          if (failed.has(posted.model)) continue;
          pool.post(slot, posted);
        }
      }
    };
    dispatch();
    for (let taken = pool.take(); taken; taken = pool.take()) {
      pool.finished(taken.slot);
      const reply = taken.reply;
      if (!failed.has(reply.model)) {
        if (reply.ok) work[reply.model]!.done(reply.index, reply.result);
        else {
          failed.add(reply.model);
          work[reply.model]!.failed(deserializeError(reply.error, `sketch of ${work[reply.model]!.path}`));
        }
      }
      dispatch();
    }
  } finally {
    pool.close();
  }
}
