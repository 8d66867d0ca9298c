/** Worker thread of WorkerAnalysts (parallel.ts): runs the jobs it is sent, one at a time, in order. */
import { workerData, type MessagePort } from 'node:worker_threads';
import { serializeError } from '../io/errors.js';
import { BufferPool } from './buffer-pool.js';
import { LayerAnalyst, type Job } from './jobs.js';
import type { LayerContext } from './layer.js';
import type { WorkerReply } from './parallel.js';

const { context, port, signal, poolBytes } = workerData as { context: LayerContext; port: MessagePort; signal: Int32Array; poolBytes: number };
// The analysis arrays of one layer are reused by the next one this worker analyses.
const analyst = new LayerAnalyst(context, new BufferPool(poolBytes));

function reply(message: WorkerReply): void {
  port.postMessage(message, message.ok ? [...message.buffers] : []);
  Atomics.add(signal, 0, 1);
  Atomics.notify(signal, 0);
}

port.on('message', (job: Job) => {
  try {
    analyst.run(job, (result) => reply({ ok: true, ...result }));
  } catch (err) {
    reply({ ok: false, index: job.index, error: serializeError(err) });
  }
});
