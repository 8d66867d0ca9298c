import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { deserializeError, type SerializedError } from '../io/errors.js';
import type { BufferPool } from './buffer-pool.js';
import { jobBuffers, LayerAnalyst, type Job, type JobResult } from './jobs.js';
import type { LayerContext } from './layer.js';

/**
 * Where verify's jobs (jobs.ts) run: `size` analysts, each running the jobs posted to it in
 * order. With worker threads, jobs and their buffers are transferred, not copied, both ways;
 * verifyModels is synchronous, so results are collected synchronously too: each worker bumps a
 * shared counter after posting, the caller sleeps on it (Atomics.wait) and takes the message off
 * the port (receiveMessageOnPort). Without workers the jobs run in this thread as they are posted.
 */
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

interface Slot {
  readonly worker: Worker;
  readonly port: MessagePort;
  inFlight: number;
}

/**
 * The analysis allocates few JavaScript objects but large arrays, whose memory is freed only when
 * their (young) wrappers are collected: with the default young generation, collections were so
 * rare that a worker carried about 100-150 MB of dead work arrays at 7B widths. A small one makes
 * scavenges (cheap) frequent; measured on the 7B bench, peak RSS fell from 1451-1521 to 1371 MiB
 * at the same time.
 */
const WORKER_YOUNG_GENERATION_MB = 2;

export class WorkerAnalysts implements Analysts {
  private readonly slots: Slot[] = [];
  /** [0]: replies posted so far (workers add 1 after each). */
  private readonly signal = new Int32Array(new SharedArrayBuffer(4));

  /** `poolBytes`: what each worker keeps of a layer's analysis arrays for the next. */
  constructor(readonly size: number, context: LayerContext, poolBytes: number) {
    for (let i = 0; i < size; i++) {
      const channel = new MessageChannel();
      const worker = new Worker(new URL('../workers/layer-worker.js', import.meta.url), {
        workerData: { context, port: channel.port2, signal: this.signal, poolBytes },
        transferList: [channel.port2],
        resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB },
      });
      worker.unref();
      this.slots.push({ worker, port: channel.port1, inFlight: 0 });
    }
  }

  post(slot: number, job: Job): void {
    const s = this.slots[slot]!;
    s.inFlight++;
    s.port.postMessage(job, jobBuffers(job));
  }

  take(): JobResult | null {
    for (;;) {
      const seen = Atomics.load(this.signal, 0);
      for (const slot of this.slots) {
        if (slot.inFlight === 0) continue;
        const message = receiveMessageOnPort(slot.port);
        if (message) {
          const reply = message.message as WorkerReply;
          if (!reply.ok) throw deserializeError(reply.error, `layer ${reply.index}`);
          if (reply.outcome) slot.inFlight--;
          return { index: reply.index, outcome: reply.outcome, buffers: reply.buffers };
        }
      }
      if (!this.slots.some((s) => s.inFlight > 0)) return null;
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
