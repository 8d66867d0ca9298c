/** A registry opened for use: its database (migrated), its records and its sketch queue. */
import { openDatabase, type Database } from './database.js';
import { SketchQueue, type QueueOptions } from './queue.js';
import { migrate } from './schema.js';
import { RegistryStore, type ModelState } from './store.js';

export interface Registry {
  readonly db: Database;
  readonly store: RegistryStore;
  readonly queue: SketchQueue;
  close(): Promise<void>;
}

export async function openRegistry(location: string, queueOptions: QueueOptions = { supervise: false }): Promise<Registry> {
  const db = await openDatabase(location);
  try {
    await migrate(db);
    const queue = await SketchQueue.open(db, queueOptions);
    return {
      db, queue, store: new RegistryStore(db),
      async close() {
        try {
          await queue.close();
        } finally {
          await db.close();
        }
      },
    };
  } catch (err) {
    await db.close().catch(() => undefined);
    throw err;
  }
}

/** Opens the registry, runs `work`, and closes it whatever happens. */
export async function withRegistry<T>(location: string, work: (registry: Registry) => Promise<T>, queueOptions?: QueueOptions): Promise<T> {
  const registry = await openRegistry(location, queueOptions);
  try {
    return await work(registry);
  } finally {
    await registry.close();
  }
}

export interface RegistryStatus {
  readonly counts: Readonly<Record<ModelState, number>>;
  readonly sketches: number;
  readonly unfinishedJobs: number;
  readonly failures: ReadonlyArray<{ path: string; error: string; attempts: number }>;
}

/**
 * Models whose job the queue failed without a worker saying so (the last attempt's worker died
 * and its lease ran out) are marked failed with the queue's reason. Only models in `sketching`
 * can be in that case (a worker marks them so when it takes their job), so this asks the queue
 * about as many jobs as workers hold, not about every queued model.
 */
export async function settleAbandonedJobs(registry: Registry): Promise<void> {
  const open = (await registry.store.models('sketching')).filter((m) => m.jobId && m.fingerprint);
  for (const m of open) {
    const job = await registry.queue.jobState(m.jobId!);
    if (job?.state === 'failed') {
      await registry.store.markAttemptFailed(m.fingerprint!, job.reason ?? m.error ?? 'the job failed', true);
    }
  }
}

export async function registryStatus(registry: Registry): Promise<RegistryStatus> {
  await settleAbandonedJobs(registry);
  return {
    counts: await registry.store.stateCounts(),
    sketches: await registry.store.sketchCount(),
    unfinishedJobs: await registry.queue.unfinished(),
    failures: (await registry.store.models('failed')).map((m) => ({ path: m.path, error: m.error ?? 'unknown', attempts: m.attempts })),
  };
}
