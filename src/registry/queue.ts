/**
 * Sketch jobs on pg-boss, in the registry's own PostgreSQL: one job per model content, keyed by
 * its fingerprint (the queue's `stately` policy keeps at most one queued and one running job per
 * key), a lease after which a running job whose worker died is handed out again, and a retry
 * limit after which the job is failed with the last reason.
 */
import PgBoss from 'pg-boss';
import { JOB_SCHEMA } from './schema.js';
import type { Database } from './database.js';

export const SKETCH_QUEUE = 'lineage-sketch';

export interface SketchJobData {
  readonly fingerprint: string;
  readonly path: string;
}

export interface JobPolicy {
  /** Attempts after the first one. */
  readonly retries: number;
  /** Seconds a worker may hold a job before it is taken over. */
  readonly leaseSeconds: number;
}

export const DEFAULT_JOB_POLICY: JobPolicy = { retries: 2, leaseSeconds: 900 };

export interface HeldJob {
  readonly id: string;
  readonly data: SketchJobData;
  /** No retry is left after this attempt. */
  readonly lastAttempt: boolean;
}

export interface QueueOptions {
  /** Run pg-boss's supervision here (workers do): expired leases are failed or retried. */
  readonly supervise: boolean;
  /** How often supervision looks for expired leases. */
  readonly superviseSeconds?: number;
}

export class SketchQueue {
  private constructor(private readonly boss: PgBoss) {}

  static async open(db: Database, options: QueueOptions): Promise<SketchQueue> {
    const boss = new PgBoss({
      db: { executeSql: (text: string, values: unknown[]) => db.executeSql(text, values) },
      schema: JOB_SCHEMA,
      supervise: options.supervise,
      schedule: false,
      ...(options.supervise ? { maintenanceIntervalSeconds: options.superviseSeconds ?? 5 } : {}),
    });
    // Supervision errors (a dropped connection) are retried on the next round, not fatal.
    boss.on('error', () => undefined);
    await boss.start();
    if (!(await boss.getQueue(SKETCH_QUEUE))) {
      try {
        await boss.createQueue(SKETCH_QUEUE, { name: SKETCH_QUEUE, policy: 'stately' });
      } catch (err) {
        if (!(await boss.getQueue(SKETCH_QUEUE))) throw err; // else another process created it first
      }
    }
    return new SketchQueue(boss);
  }

  /** A new job for this content, or null when one is already queued for it. */
  async send(data: SketchJobData, policy: JobPolicy): Promise<string | null> {
    return this.boss.send(SKETCH_QUEUE, data, {
      singletonKey: data.fingerprint,
      retryLimit: policy.retries,
      retryDelay: 0,
      expireInSeconds: policy.leaseSeconds,
    });
  }

  /** Up to `count` jobs, now held by this worker until completed, failed or their lease ends. */
  async fetch(count: number): Promise<HeldJob[]> {
    const jobs = await this.boss.fetch<SketchJobData>(SKETCH_QUEUE, { batchSize: count, includeMetadata: true });
    return jobs.map((j) => ({ id: j.id, data: j.data, lastAttempt: j.retryCount >= j.retryLimit }));
  }

  async complete(id: string): Promise<void> {
    await this.boss.complete(SKETCH_QUEUE, id);
  }

  async fail(id: string, reason: string): Promise<void> {
    await this.boss.fail(SKETCH_QUEUE, id, { message: reason });
  }

  /** Jobs queued, waiting for a retry, or held by a worker (live or not yet expired). */
  async unfinished(): Promise<number> {
    return this.boss.getQueueSize(SKETCH_QUEUE, { before: 'completed' });
  }

  /** A job's state and, when it failed, its reason (null when the job is gone from the queue). */
  async jobState(id: string): Promise<{ state: string; reason: string | null } | null> {
    const job = await this.boss.getJobById<SketchJobData>(SKETCH_QUEUE, id, { includeArchive: true });
    if (!job) return null;
    const output = job.output as { message?: unknown; value?: { message?: unknown } } | null;
    const reason = output?.message ?? output?.value?.message;
    return { state: job.state, reason: typeof reason === 'string' ? reason : null };
  }

  async close(): Promise<void> {
    await this.boss.stop({ graceful: false, wait: true, close: false });
  }
}
