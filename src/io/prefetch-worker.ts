/** Helper thread of PageCachePrefetcher (prefetch.ts): reads the spans it is sent into one buffer, discarding them. */
import * as fs from 'node:fs';
import { parentPort } from 'node:worker_threads';
import type { ByteSpan } from './prefetch.js';

const READ_BYTES = 1 << 20;
const buffer = Buffer.allocUnsafeSlow(READ_BYTES);
const descriptors = new Map<string, number>();

function descriptor(file: string): number {
  let fd = descriptors.get(file);
  if (fd === undefined) {
    fd = fs.openSync(file, 'r');
    descriptors.set(file, fd);
  }
  return fd;
}

parentPort?.on('message', (spans: readonly ByteSpan[]) => {
  for (const span of spans) {
    try {
      const fd = descriptor(span.file);
      for (let at = span.start; at < span.end;) {
        const got = fs.readSync(fd, buffer, 0, Math.min(READ_BYTES, span.end - at), at);
        if (got <= 0) break;
        at += got;
      }
    } catch {
      // Best effort: the calling thread's own read reports what went wrong.
    }
  }
});
