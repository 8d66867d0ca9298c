/**
 * Two keys of a model's weight files.
 *
 * The content fingerprint is the tie key that makes tree recovery independent of names and input
 * order (the same weights in another folder share it): sha256 over, per weight file in the
 * source's order, its size, its whole safetensors header (length prefix and JSON) and three
 * 64 KiB blocks of its payload at fixed relative positions (start, middle, end). It is cheap (at
 * most 192 KiB per file) but blind to an in-place edit outside those blocks, so it is not what
 * the sketch cache trusts.
 *
 * The cache key adds what changes whenever a file is written: per weight file its size,
 * modification and status-change times to the nanosecond, inode and device (or, with `rehash`,
 * the sha256 of its whole content, which survives copies and touches), and the model's config.
 * The registry keys its jobs and sketches the same way without the status-change time, which a
 * rename or a change of owner moves while the content stays.
 */
import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import { openForReading } from './safetensors.js';
import type { TensorSource } from './types.js';

export const FINGERPRINT_BLOCK_BYTES = 64 * 1024;
/** Read size of the full content hash. */
const REHASH_BLOCK_BYTES = 1024 * 1024;

export interface Fingerprint {
  readonly hash: string;
  /** Bytes read to compute it (headers and sampled blocks). */
  readonly bytesRead: number;
}

export function contentFingerprint(source: TensorSource): Fingerprint {
  const hash = createHash('sha256');
  let bytesRead = 0;
  for (const file of source.files) {
    const fd = openForReading(file);
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

export interface CacheKey {
  readonly hash: string;
  /** Bytes read to compute it beyond the fingerprint's (the whole files with `rehash`, else 0). */
  readonly bytesRead: number;
}

/**
 * The sketch cache's key: the content fingerprint, the config, and per weight file either its
 * file-system stamp (default) or, with `rehash`, the hash of its whole content.
 */
export function sketchCacheKey(source: TensorSource, fingerprint: Fingerprint, rehash: boolean, statusChange = true): CacheKey {
  const hash = createHash('sha256').update(`fingerprint ${fingerprint.hash}\nconfig ${JSON.stringify(source.config)}\n`);
  let bytesRead = 0;
  for (const file of source.files) {
    const fd = openForReading(file);
    try {
      const s = fs.fstatSync(fd, { bigint: true });
      if (rehash) {
        hash.update(`content ${s.size}\n`);
        bytesRead += hashWholeFile(fd, hash);
      } else {
        hash.update(`stamp ${s.size} ${s.mtimeNs} ${statusChange ? s.ctimeNs : '-'} ${s.ino} ${s.dev}\n`);
      }
    } finally {
      fs.closeSync(fd);
    }
  }
  return { hash: hash.digest('hex'), bytesRead };
}

function hashWholeFile(fd: number, hash: Hash): number {
  const block = Buffer.alloc(REHASH_BLOCK_BYTES);
  let position = 0;
  for (;;) {
    const n = fs.readSync(fd, block, 0, block.length, position);
    if (n === 0) return position;
    hash.update(block.subarray(0, n));
    position += n;
  }
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
