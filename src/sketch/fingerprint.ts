/**
 * Content fingerprint of a model's weight files, the key of the sketch cache and the tie key
 * that makes tree recovery independent of names and input order.
 *
 * sha256 over, per weight file in the source's order: its size, its whole safetensors header
 * (length prefix and JSON), and three 64 KiB blocks of its payload at fixed relative positions
 * (start, middle, end). Cheap (at most 192 KiB per file) and it changes whenever a file is
 * re-saved with other tensors, shapes, dtypes or sizes, or when any sampled block differs. An
 * in-place edit of bytes outside the sampled blocks that keeps the header and size is not seen:
 * use --no-cache for such files.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import type { TensorSource } from '../io/types.js';

export const FINGERPRINT_BLOCK_BYTES = 64 * 1024;

export interface Fingerprint {
  readonly hash: string;
  /** Bytes read to compute it (headers and sampled blocks). */
  readonly bytesRead: number;
}

export function contentFingerprint(source: TensorSource): Fingerprint {
  const hash = createHash('sha256');
  let bytesRead = 0;
  for (const file of source.files) {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const prefix = Buffer.alloc(8);
      bytesRead += fs.readSync(fd, prefix, 0, 8, 0);
      const headerLength = Number(prefix.readBigUInt64LE(0));
      const payloadStart = Math.min(size, 8 + headerLength);
      const header = Buffer.alloc(payloadStart - 8);
      bytesRead += readAt(fd, header, 8);
      hash.update(`file ${size}\n`).update(prefix).update(header);
      const payload = size - payloadStart;
      const block = Buffer.alloc(Math.min(FINGERPRINT_BLOCK_BYTES, payload));
      for (const at of [0, 0.5, 1]) {
        const offset = payloadStart + Math.floor((payload - block.length) * at);
        bytesRead += readAt(fd, block, offset);
        hash.update(block);
      }
    } finally {
      fs.closeSync(fd);
    }
  }
  return { hash: hash.digest('hex'), bytesRead };
}

function readAt(fd: number, buffer: Buffer, position: number): number {
  let done = 0;
  while (done < buffer.length) {
    const n = fs.readSync(fd, buffer, done, buffer.length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}
