/** Memory of verify's layers reused from layer to layer (BufferPool). */
import type { ArrayAllocator } from '../noise/noisy-matrix.js';
import type { LayerNormLayerWeights } from '../align/layernorm-block.js';
import type { LayerWeights } from '../align/llama-block.js';

/**
 * Memory reused from layer to layer. Layer shapes repeat, and on first touch fresh memory costs
 * far more than refilling memory already in use (page faults and zeroing, ~1 ns per byte), so the
 * analysis form of a layer (float64 values, float32 variance) and the float32 decode of each role
 * are taken from here and given back once the layer is analysed. Buffers are matched by byte
 * length; a buffer handed out holds garbage (the analysis permutes and scales in place), so every
 * user overwrites all of it. At most `maxBytes` are kept: what one layer needs.
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
    return new Float64Array(this.take(length * Float64Array.BYTES_PER_ELEMENT));
  }

  float32(length: number): Float32Array {
    return new Float32Array(this.take(length * Float32Array.BYTES_PER_ELEMENT));
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

  private take(byteLength: number): ArrayBuffer {
    const buffer = this.free.get(byteLength)?.pop();
    if (buffer) {
      this.held.delete(buffer);
      this.heldBytes -= byteLength;
      this.reused++;
      return buffer;
    }
    this.allocated++;
    return new ArrayBuffer(byteLength);
  }
}

/** Every ArrayBuffer under a layer's weights (to transfer them, or give them back to a pool). */
export function layerBuffers(layer: LayerWeights | LayerNormLayerWeights): ArrayBuffer[] {
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
