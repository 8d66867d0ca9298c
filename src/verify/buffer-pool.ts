/** Memory of verify's layers reused from layer to layer (BufferPool). */
import type { ArrayAllocator } from '../noise/noisy-matrix.js';

/**
 * Memory reused from layer to layer. Layer shapes repeat, and on first touch fresh memory costs
 * far more than refilling memory already in use (page faults and zeroing, ~1 ns per byte), so the
 * analysis form of a layer (float64 values, float32 variance) and the float32 decode of each role
 * are taken from here and given back once the layer is analysed. Buffers are matched by byte
 * length (or the smallest larger one serves, see take); a buffer handed out holds garbage (the
 * analysis permutes and scales in place), so every user overwrites all of it. At most `maxBytes`
 * are kept: what one job needs.
 */
export class BufferPool implements ArrayAllocator {
  private readonly free = new Map<number, ArrayBuffer[]>();
  /** The buffers in `free`, so a buffer given back twice is not handed out twice. */
  private readonly held = new Set<ArrayBuffer>();
  private heldBytes = 0;
  /** Buffers handed out from the pool, and newly allocated (for tests and benchmarks). */
  reused = 0;
  allocated = 0;

  constructor(readonly maxBytes: number) {}

  float64(length: number): Float64Array {
    return new Float64Array(this.take(length * Float64Array.BYTES_PER_ELEMENT), 0, length);
  }

  float32(length: number): Float32Array {
    return new Float32Array(this.take(length * Float32Array.BYTES_PER_ELEMENT), 0, length);
  }

  /** Give back buffers nothing reads any more; those beyond `maxBytes` are left to the collector. */
  release(buffers: Iterable<ArrayBufferLike | undefined>): void {
    for (const buffer of buffers) {
      // Detached (transferred) buffers have length 0; shared ones are never pooled.
      if (!(buffer instanceof ArrayBuffer) || buffer.byteLength === 0 || this.held.has(buffer)) continue;
      if (this.heldBytes + buffer.byteLength > this.maxBytes) continue;
      let list = this.free.get(buffer.byteLength);
      if (!list) this.free.set(buffer.byteLength, (list = []));
      list.push(buffer);
      this.held.add(buffer);
      this.heldBytes += buffer.byteLength;
    }
  }

  /** Bytes kept for reuse now. */
  get bytesHeld(): number {
    return this.heldBytes;
  }

  /**
   * A free buffer of `byteLength`, else the smallest larger one (a view of its start is handed
   * out): a layer's two parts (jobs.ts) have matrices of different sizes, so the attention part
   * is served from the MLP part's buffers and one part's worth serves both.
   */
  private take(byteLength: number): ArrayBuffer {
    let fit = this.free.get(byteLength)?.length ? byteLength : Infinity;
    if (fit === Infinity) for (const [size, list] of this.free) if (size > byteLength && size < fit && list.length > 0) fit = size;
    const buffer = fit === Infinity ? undefined : this.free.get(fit)!.pop();
    if (buffer) {
      this.held.delete(buffer);
      this.heldBytes -= buffer.byteLength;
      this.reused++;
      return buffer;
    }
    this.allocated++;
    return new ArrayBuffer(byteLength);
  }
}

/** Every ArrayBuffer under a layer's (or a part's) weights (to transfer them, or give them back to a pool). */
export function layerBuffers(layer: object): ArrayBuffer[] {
  const out = new Set<ArrayBuffer>();
  for (const value of Object.values(layer)) {
    if (ArrayBuffer.isView(value)) out.add(value.buffer as ArrayBuffer);
    else if (value && typeof value === 'object' && 'values' in value) {
      out.add(value.values.buffer as ArrayBuffer);
      out.add(value.variance.buffer as ArrayBuffer);
    }
  }
  return [...out];
}
