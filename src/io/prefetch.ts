import { Worker } from 'node:worker_threads';
import type { TensorInfo } from './types.js';

/**
 * Reads byte spans of weight files on a helper thread, discarding them, so that they are in the
 * operating system's page cache when the calling thread reads them: the calling thread then
 * spends its time decoding, not waiting for the disk, and the disk streams meanwhile. Best
 * effort: errors are ignored (the real read reports them), and without worker threads nothing
 * happens. The helper reads the spans of each request in order, one read buffer at a time.
 */
export interface ByteSpan {
  readonly file: string;
  readonly start: number;
  readonly end: number;
}

/** Spans this close are read as one: reading through a small gap costs less than another seek. */
const MERGE_GAP = 1 << 20;

/** The byte spans of `tensors`, per file in file order, neighbours closer than MERGE_GAP merged. */
export function tensorSpans(tensors: readonly TensorInfo[]): ByteSpan[] {
  const sorted = [...tensors].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.start - b.start));
  const spans: { file: string; start: number; end: number }[] = [];
  for (const t of sorted) {
    const last = spans[spans.length - 1];
    if (last && last.file === t.file && t.start - last.end <= MERGE_GAP) last.end = Math.max(last.end, t.start + t.byteLength);
    else spans.push({ file: t.file, start: t.start, end: t.start + t.byteLength });
  }
  return spans;
}

export class PageCachePrefetcher {
  private worker: Worker | null | undefined;

  request(spans: readonly ByteSpan[]): void {
    if (spans.length === 0) return;
    this.worker ??= startWorker();
    this.worker?.postMessage(spans);
  }

  close(): void {
    void this.worker?.terminate();
    this.worker = null;
  }
}

function startWorker(): Worker | null {
  try {
    const worker = new Worker(new URL('./prefetch-worker.js', import.meta.url), {
      // It holds one read buffer and a few messages: the smallest heaps do.
      resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 8 },
    });
    worker.unref();
    worker.on('error', () => undefined);
    return worker;
  } catch {
    return null;
  }
}
