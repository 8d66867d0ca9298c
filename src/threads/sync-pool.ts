/**
 * Worker threads that a synchronous caller waits on. verify and the sketch run synchronously
 * (no event loop turns while they work), so replies cannot arrive through 'message' events:
 * each worker bumps a shared counter after posting a reply, the caller sleeps on that counter
 * (Atomics.wait) and takes the reply off the worker's port (receiveMessageOnPort). Both sides of
 * that handshake are here, so verify's analysts and the sketch's job runner share one.
 */
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort, type ResourceLimits } from 'node:worker_threads';

/** What a pool worker receives in its workerData besides the caller's own fields. */
export interface PoolChannel {
  readonly port: MessagePort;
  /** [0]: replies posted so far by all workers of the pool. */
  readonly signal: Int32Array;
}

/** Inside a pool worker: posts a reply and wakes the caller. */
export function postReply(channel: PoolChannel, message: unknown, transfer: readonly ArrayBuffer[] = []): void {
  channel.port.postMessage(message, [...transfer]);
  Atomics.add(channel.signal, 0, 1);
  Atomics.notify(channel.signal, 0);
}

export interface SyncPoolOptions {
  /** Fields every worker finds in its workerData, next to `port` and `signal`. */
  readonly workerData?: Record<string, unknown>;
  readonly resourceLimits?: ResourceLimits;
}

interface Slot {
  readonly worker: Worker;
  readonly port: MessagePort;
  inFlight: number;
}

/**
 * `size` workers running `entry`. The caller counts its own jobs: `post` adds one in flight to a
 * slot, `finished` removes one (a job may reply more than once before its last reply).
 */
export class SyncWorkerPool<Reply> {
  private readonly slots: Slot[] = [];
  private readonly signal = new Int32Array(new SharedArrayBuffer(4));

  constructor(entry: URL, readonly size: number, options: SyncPoolOptions = {}) {
    try {
      for (let i = 0; i < size; i++) {
        const channel = new MessageChannel();
        const worker = new Worker(entry, {
          workerData: { ...options.workerData, port: channel.port2, signal: this.signal },
          transferList: [channel.port2],
          ...(options.resourceLimits ? { resourceLimits: options.resourceLimits } : {}),
        });
        worker.unref();
        this.slots.push({ worker, port: channel.port1, inFlight: 0 });
      }
    } catch (err) {
      this.close();
      throw err;
    }
  }

  post(slot: number, message: unknown, transfer: readonly ArrayBuffer[] = []): void {
    const s = this.slots[slot]!;
    s.inFlight++;
    s.port.postMessage(message, [...transfer]);
  }

  /** Jobs posted to `slot` and not yet finished. */
  inFlight(slot: number): number {
    return this.slots[slot]!.inFlight;
  }

  /** True while any slot has a job in flight. */
  busy(): boolean {
    return this.slots.some((s) => s.inFlight > 0);
  }

  /** Marks one job of `slot` done. */
  finished(slot: number): void {
    this.slots[slot]!.inFlight--;
  }

  /** The next reply of any worker with a job in flight (sleeping until one is posted), or null when none is in flight. */
  take(): { readonly slot: number; readonly reply: Reply } | null {
    for (;;) {
      const seen = Atomics.load(this.signal, 0);
      for (let slot = 0; slot < this.slots.length; slot++) {
        const s = this.slots[slot]!;
        if (s.inFlight === 0) continue;
        const message = receiveMessageOnPort(s.port);
        if (message) return { slot, reply: message.message as Reply };
      }
      if (!this.busy()) return null;
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
