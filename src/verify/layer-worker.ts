/** Worker thread of LayerPool (parallel.ts): analyses the layers it is sent, one at a time. */
import { workerData, type MessagePort } from 'node:worker_threads';
import { layerBuffers } from './buffer-pool.js';
import { analyseLayer, type LayerContext } from './layer.js';
import type { LayerJob, WorkerReply } from './parallel.js';

const { context, port, signal } = workerData as { context: LayerContext; port: MessagePort; signal: Int32Array };

port.on('message', (job: LayerJob & { index: number }) => {
  let reply: WorkerReply;
  try {
    const outcome = analyseLayer(job.index, job.base, job.candidate, context);
    // The layer's buffers go back for the next layer read; the outcome holds no view of them.
    reply = { index: job.index, outcome, buffers: [...layerBuffers(job.base), ...layerBuffers(job.candidate)] };
  } catch (err) {
    reply = { index: job.index, error: err instanceof Error ? err.message : String(err) };
  }
  port.postMessage(reply, 'buffers' in reply ? [...reply.buffers] : []);
  Atomics.add(signal, 0, 1);
  Atomics.notify(signal, 0);
});
