/**
 * Where verify's jobs (jobs.ts) run: `size` analysts, each running the jobs posted to it in
 * order. With worker threads, jobs and their buffers are transferred, not copied, both ways;
 * verifyModels is synchronous, so results are collected synchronously too (threads/sync-pool.ts:
 * each worker bumps a shared counter after posting, the caller sleeps on it and takes the
 * message off the port). Without workers the jobs run in this thread as they are posted.
 */
import { deserializeError, type SerializedError } from '../io/errors.js';
import { SyncWorkerPool } from '../threads/sync-pool.js';
import type { BufferPool } from './buffer-pool.js';
import { jobBuffers, LayerAnalyst, type Job, type JobResult } from './jobs.js';
import type { LayerContext } from './layer.js';

/** Runs verify's jobs and hands back their results. */
export interface Analysts {
  readonly size: number;
  post(slot: number, job: Job): void;
  /** The next result of any analyst (sleeping until one is posted), or null when no job is in flight. */
  take(): JobResult | null;
  close(): void;
}

/** Messages from a worker: a job's result, or the error that stopped it. */
export type WorkerReply = ({ readonly ok: true } & JobResult) | { readonly ok: false; readonly index: number; readonly error: SerializedError };

export class InThreadAnalysts implements Analysts {
  readonly size = 1;
  private readonly analyst: LayerAnalyst;
  private readonly results: JobResult[] = [];

  constructor(context: LayerContext, arrays: BufferPool | null) {
    this.analyst = new LayerAnalyst(context, arrays ?? undefined);
  }

  post(_slot: number, job: Job): void {
    this.analyst.run(job, (result) => this.results.push(result));
  }

  take(): JobResult | null {
    return this.results.shift() ?? null;
  }

  close(): void {}
}

/**
 * The analysis allocates few JavaScript objects but large arrays, whose memory is freed only when
 * their (young) wrappers are collected: with the default young generation, collections were so
 * rare that a worker carried about 100-150 MB of dead work arrays at 7B widths. A small one makes
 * scavenges (cheap) frequent; measured on the 7B bench, peak RSS fell from 1451-1521 to 1371 MiB
 * at the same time. 1 MB rather than 2: a 7B Q4_K_M candidate's peak fell from 1545-1549 to 1511
 * MiB, verify taking the same 46 s (bench:verify-gguf).
 */
const WORKER_YOUNG_GENERATION_MB = 1;

export class WorkerAnalysts implements Analysts {
  private readonly pool: SyncWorkerPool<WorkerReply>;

  /**
   * `poolBytes`: what each worker keeps of a layer's analysis arrays for the next. The workers'
   * entry point (workers/layer-worker.ts) lowers its thread's priority through /proc, which an
   * analysis never touches, so it lives with the other composition points.
   */
  constructor(readonly size: number, context: LayerContext, poolBytes: number) {
    this.pool = new SyncWorkerPool(new URL('../workers/layer-worker.js', import.meta.url), size, {
      workerData: { context, poolBytes },
      resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB },
    });
  }

  post(slot: number, job: Job): void {
    this.pool.post(slot, job, jobBuffers(job));
  }

  take(): JobResult | null {
    const taken = this.pool.take();
    if (!taken) return null;
    const reply = taken.reply;
    if (!reply.ok) throw deserializeError(reply.error, `layer ${reply.index}`);
    if (reply.outcome) this.pool.finished(taken.slot);
    return { index: reply.index, part: reply.part, outcome: reply.outcome, buffers: reply.buffers };
  }

  close(): void {
    this.pool.close();
  }
}
