import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import type { LayerWeights } from '../align/llama.js';
import { layerBuffers } from './buffer-pool.js';
import type { LayerContext, LayerOutcome } from './layer.js';

/**
 * Worker threads that run analyseLayer on layers read by the calling thread. verifyModels is
 * synchronous, so results are collected synchronously too: each worker bumps a shared counter
 * after posting, the caller sleeps on it (Atomics.wait) and takes the message off the port
 * (receiveMessageOnPort). Weight buffers are transferred, not copied, both ways; at most one layer
 * per worker is in flight plus the one being read, which bounds memory.
 */
export interface LayerJob {
  readonly base: LayerWeights;
  readonly candidate: LayerWeights;
}

/**
 * Messages from a worker: an outcome with the layer's buffers sent back (their contents spent,
 * their memory reusable), or the error that stopped the layer.
 */
export type WorkerReply =
  | { readonly index: number; readonly outcome: LayerOutcome; readonly buffers: readonly ArrayBuffer[] }
  | { readonly index: number; readonly error: string };

interface Slot {
  readonly worker: Worker;
  readonly port: MessagePort;
  busy: boolean;
}

export class LayerPool {
  private readonly slots: Slot[] = [];
  /** [0]: replies posted so far (workers add 1 after each). */
  private readonly signal = new Int32Array(new SharedArrayBuffer(4));

  constructor(size: number, context: LayerContext) {
    for (let i = 0; i < size; i++) {
      const channel = new MessageChannel();
      const worker = new Worker(new URL('./layer-worker.js', import.meta.url), {
        workerData: { context, port: channel.port2, signal: this.signal },
        transferList: [channel.port2],
      });
      worker.unref();
      this.slots.push({ worker, port: channel.port1, busy: false });
    }
  }

  /**
   * Analyse layers 0..count-1: `load(index)` runs here, in order, whenever a worker is free;
   * `record` gets the outcomes in layer order; `recycle` the buffers of each layer analysed.
   */
  run(
    count: number, load: (index: number) => LayerJob, record: (outcome: LayerOutcome) => void,
    recycle: (buffers: readonly ArrayBuffer[]) => void = () => {},
  ): void {
    const done = new Map<number, LayerOutcome>();
    let next = 0, recorded = 0;
    while (recorded < count) {
      const free = this.slots.find((s) => !s.busy);
      if (free && next < count) {
        const job = load(next);
        free.busy = true;
        free.port.postMessage({ index: next, base: job.base, candidate: job.candidate }, [...layerBuffers(job.base), ...layerBuffers(job.candidate)]);
        next++;
        continue;
      }
      const reply = this.take();
      if ('error' in reply) throw new Error(`layer ${reply.index}: ${reply.error}`);
      recycle(reply.buffers);
      done.set(reply.index, reply.outcome);
      while (done.has(recorded)) {
        record(done.get(recorded)!);
        done.delete(recorded);
        recorded++;
      }
    }
  }

  /** The next reply from any busy worker, sleeping until one is posted. */
  private take(): WorkerReply {
    for (;;) {
      const seen = Atomics.load(this.signal, 0);
      for (const slot of this.slots) {
        if (!slot.busy) continue;
        const message = receiveMessageOnPort(slot.port);
        if (message) {
          slot.busy = false;
          return message.message as WorkerReply;
        }
      }
      if (!this.slots.some((s) => s.busy)) throw new Error('layer pool: no layer in flight');
      Atomics.wait(this.signal, 0, seen);
    }
  }

  close(): void {
    for (const slot of this.slots) {
      slot.port.close();
      void slot.worker.terminate();
    }
  }
}
