/**
 * Writing safetensors files: used by test fixtures, benchmarks and sample generation. Payload
 * is streamed in caller-sized chunks, so files of any size are written with bounded memory.
 */
import * as fs from 'node:fs';
import { BadInputError } from './errors.js';
import { DTYPE_BYTES, float32ToBf16Bits, float32ToF16Bits, f8e4m3Table, f8e5m2Table } from './dtypes.js';
import type { DType } from './types.js';

export interface TensorSpec {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

/**
 * The header bytes (length prefix included) for tensors laid out contiguously in the given
 * order. JSON is padded with spaces to a multiple of 8, as the reference writer does, so the
 * payload starts aligned.
 */
export function encodeHeader(specs: readonly TensorSpec[], metadata?: Readonly<Record<string, string>>): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata) header['__metadata__'] = metadata;
  let offset = 0;
  for (const spec of specs) {
    const size = spec.shape.reduce((p, d) => p * d, 1) * DTYPE_BYTES[spec.dtype];
    header[spec.name] = { dtype: spec.dtype, shape: spec.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const jsonBytes = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + jsonBytes.length);
  out.writeBigUInt64LE(BigInt(jsonBytes.length), 0);
  jsonBytes.copy(out, 8);
  return out;
}

/**
 * Write a safetensors file; `produce(spec, write)` must write exactly the tensor's byte size,
 * in as many `write` calls as it likes.
 */
export function writeSafetensorsStreaming(
  file: string,
  specs: readonly TensorSpec[],
  produce: (spec: TensorSpec, write: (bytes: Uint8Array) => void) => void,
  metadata?: Readonly<Record<string, string>>,
): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, encodeHeader(specs, metadata));
    for (const spec of specs) {
      const expected = spec.shape.reduce((p, d) => p * d, 1) * DTYPE_BYTES[spec.dtype];
      let written = 0;
      produce(spec, (bytes) => {
        let done = 0;
        while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done);
        written += bytes.length;
      });
      if (written !== expected) throw new Error(`wrote ${written} bytes for ${spec.name}, expected ${expected}`);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Encode numbers as `dtype` little-endian bytes: floats rounded to nearest (ties to even),
 * integers truncated toward zero and wrapped as the typed arrays do, BOOL as 0/1.
 */
export function encodeValues(dtype: DType, values: ArrayLike<number>): Uint8Array {
  const n = values.length;
  const out = new Uint8Array(n * DTYPE_BYTES[dtype]);
  const buffer = out.buffer;
  switch (dtype) {
    case 'F64': new Float64Array(buffer).set(values); break;
    case 'F32': new Float32Array(buffer).set(values); break;
    case 'BF16': { const dst = new Uint16Array(buffer); for (let i = 0; i < n; i++) dst[i] = float32ToBf16Bits(values[i]!); break; }
    case 'F16': { const dst = new Uint16Array(buffer); for (let i = 0; i < n; i++) dst[i] = float32ToF16Bits(values[i]!); break; }
    case 'F8_E4M3': encodeByNearest(values, f8e4m3Table(), out); break;
    case 'F8_E5M2': encodeByNearest(values, f8e5m2Table(), out); break;
    case 'I8': new Int8Array(buffer).set(Array.from(values, Math.trunc)); break;
    case 'U8': new Uint8Array(buffer).set(Array.from(values, Math.trunc)); break;
    case 'I16': new Int16Array(buffer).set(Array.from(values, Math.trunc)); break;
    case 'U16': new Uint16Array(buffer).set(Array.from(values, Math.trunc)); break;
    case 'I32': new Int32Array(buffer).set(Array.from(values, Math.trunc)); break;
    case 'U32': new Uint32Array(buffer).set(Array.from(values, Math.trunc)); break;
    case 'I64': new BigInt64Array(buffer).set(Array.from(values, (v) => BigInt(Math.trunc(v)))); break;
    case 'U64': new BigUint64Array(buffer).set(Array.from(values, (v) => BigInt(Math.trunc(v)))); break;
    case 'BOOL': for (let i = 0; i < n; i++) out[i] = values[i] ? 1 : 0; break;
    default: throw new BadInputError(`unsupported dtype ${String(dtype)}`);
  }
  return out;
}

/**
 * 8-bit floats: the nearest finite code, ties to the even code (its lowest bit is the last
 * mantissa bit); out of range saturates to the largest finite value, NaN to the NaN code.
 */
function encodeByNearest(values: ArrayLike<number>, table: Float32Array, out: Uint8Array): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    const signBit = v < 0 || Object.is(v, -0) ? 0x80 : 0;
    let best = signBit;
    let bestDistance = Infinity;
    for (let code = signBit; code < signBit + 0x80; code++) {
      const candidate = table[code]!;
      if (Number.isNaN(v) || !Number.isFinite(candidate)) {
        if (Number.isNaN(v) && Number.isNaN(candidate)) { best = code; break; }
        continue;
      }
      const distance = Math.abs(candidate - v);
      if (distance < bestDistance || (distance === bestDistance && (best & 1) === 1 && (code & 1) === 0)) {
        best = code;
        bestDistance = distance;
      }
    }
    out[i] = best;
  }
}
