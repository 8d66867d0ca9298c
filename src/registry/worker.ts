/**
 * `lineage worker`: take sketch jobs from the registry's queue, sketch the models (one read each,
 * the batch's matrices spread over worker threads), store each sketch once, and complete or fail
 * the jobs. Safe to run on many machines at once: a job is held by one worker at a time, and a
 * sketch that two workers made (a lease that ran out on a slow worker) is stored once.
 */
import { hostname } from 'node:os';
import { loadSketches } from '../store/load-sketches.js';
import { openTensorSource } from '../io/source.js';
import { registryKey } from './enqueue.js';
import type { HeldJob } from './queue.js';
import { settleAbandonedJobs, type Registry } from './registry.js';

export interface WorkerOptions {
  /** Jobs held at once, their matrices sketched on this many threads (1: this thread). */
  readonly concurrency: number;
  /** Stop once no job is queued, waiting for a retry or held by anyone. */
  readonly untilIdle: boolean;
  /** Seconds between polls of an empty queue. */
  readonly pollSeconds: number;
  /** Stop after the current batch when this says so (a signal). */
  readonly stopRequested?: () => boolean;
  /** One line per finished job. */
  readonly log?: (line: string) => void;
}

export interface WorkerSummary {
  readonly sketched: number;
  /** Jobs whose sketch was already stored (another worker or an earlier attempt made it). */
  readonly alreadyStored: number;
  readonly failedAttempts: number;
  readonly failedFinally: number;
}

export const workerName = (): string => `${hostname()}:${process.pid}`;

export async function runWorker(registry: Registry, options: WorkerOptions): Promise<WorkerSummary> {
  const summary = { sketched: 0, alreadyStored: 0, failedAttempts: 0, failedFinally: 0 };
  const me = workerName();
  const log = options.log ?? (() => undefined);
  while (!options.stopRequested?.()) {
    const jobs = await registry.queue.fetch(options.concurrency);
    if (jobs.length === 0) {
      if (options.untilIdle && (await registry.queue.unfinished()) === 0) break;
      await new Promise((resolve) => setTimeout(resolve, options.pollSeconds * 1000));
      continue;
    }
    await runBatch(registry, jobs, options.concurrency, me, summary, log);
  }
  await settleAbandonedJobs(registry);
  return summary;
}

async function runBatch(
  registry: Registry, jobs: readonly HeldJob[], concurrency: number, me: string,
  summary: { sketched: number; alreadyStored: number; failedAttempts: number; failedFinally: number }, log: (line: string) => void,
): Promise<void> {
  const { store, queue } = registry;
  const todo: HeldJob[] = [];
  for (const job of jobs) {
    // At-least-once delivery: a job may come again after its sketch was stored.
    if (await store.hasSketch(job.data.fingerprint)) {
      await store.markSketched(job.data.fingerprint);
      await queue.complete(job.id);
      summary.alreadyStored++;
      log(`already sketched: ${job.data.path}`);
      continue;
    }
    await store.markSketching(job.data.fingerprint, me);
    todo.push(job);
  }
  if (todo.length === 0) return;
  for (const job of todo) log(`sketching: ${job.data.path}`);
  const started = performance.now();
  const keys = todo.map((job) => currentKey(job.data.path));
  const loaded = loadSketches(todo.map((j) => j.data.path), { cacheDir: null, workers: concurrency > 1 ? concurrency : 0 });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  for (const [i, job] of todo.entries()) {
    const result = loaded[i]!;
    const reason = 'error' in result ? result.error.message
      : keys[i] !== job.data.fingerprint ? `the model changed since it was enqueued (file ${job.data.path}): enqueue it again` : null;
    if (!('error' in result) && reason === null) {
      await store.putSketch(job.data.fingerprint, result.sketch, me);
      await queue.complete(job.id);
      summary.sketched++;
      log(`sketched: ${job.data.path} (${seconds} s for ${todo.length} models)`);
    } else {
      await store.markAttemptFailed(job.data.fingerprint, reason!, job.lastAttempt);
      await queue.fail(job.id, reason!);
      summary.failedAttempts++;
      if (job.lastAttempt) summary.failedFinally++;
      log(`${job.lastAttempt ? 'failed' : 'attempt failed, will retry'}: ${reason}`);
    }
  }
}

/** The model's registry key now, or null when it cannot be read (its sketch then says why). */
function currentKey(modelPath: string): string | null {
  try {
    const source = openTensorSource(modelPath);
    try {
      return registryKey(source);
    } finally {
      source.close();
    }
  } catch {
    return null;
  }
}
