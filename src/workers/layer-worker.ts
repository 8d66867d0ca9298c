/** Worker thread of WorkerAnalysts (verify/parallel.ts): runs the jobs it is sent, one at a time, in order. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { workerData } from 'node:worker_threads';
import { serializeError } from '../io/errors.js';
import { postReply, type PoolChannel } from '../threads/sync-pool.js';
import { BufferPool } from '../verify/buffer-pool.js';
import { LayerAnalyst, type Job } from '../verify/jobs.js';
import type { LayerContext } from '../verify/layer.js';
import type { WorkerReply } from '../verify/parallel.js';

/** Nice levels the analysts run below the reading thread (see lowerThreadPriority). */
const ANALYST_NICENESS = 5;

const channel = workerData as PoolChannel & { context: LayerContext; poolBytes: number };
const { context, port, poolBytes } = channel;
lowerThreadPriority();
// The analysis arrays of one layer are reused by the next one this worker analyses.
const analyst = new LayerAnalyst(context, new BufferPool(poolBytes));

function reply(message: WorkerReply): void {
  postReply(channel, message, message.ok ? message.buffers : []);
}

port.on('message', (job: Job) => {
  try {
    analyst.run(job, (result) => reply({ ok: true, ...result }));
  } catch (err) {
    reply({ ok: false, index: job.index, error: serializeError(err) });
  }
});

/**
 * Analysts run a few nice levels below the reading thread: when both cores are busy analysing,
 * the reader still gets the CPU as soon as its last read returns, so the disk is kept busy (at
 * equal priority the reading thread of a cold 7B run took 130 of its 139 s; with this and the
 * 1 MiB read buffer the run took 116 s).
 * Linux only (a thread's id from /proc/thread-self; setpriority of a thread id sets that thread's
 * nice value); elsewhere the analysts keep the default priority.
 */
function lowerThreadPriority(): void {
  try {
    const threadId = Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(threadId) && threadId > 0) os.setPriority(threadId, Math.min(19, os.getPriority(threadId) + ANALYST_NICENESS));
  } catch {
    // No /proc or no permission: the default priority serves.
  }
}
