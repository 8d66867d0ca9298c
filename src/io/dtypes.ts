/**
 * Storage dtypes: sizes, exact decoding to float32, rounding onto a dtype's grid, and the
 * grid spacing used to model rounding noise. Hosts are assumed little-endian (as the
 * safetensors format is); every supported Node platform is.
 */
import { BadInputError } from './errors.js';
import type { DType } from './types.js';

export type FloatDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'F8_E4M3' | 'F8_E5M2';

export const DTYPE_BYTES: Readonly<Record<DType, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1,
  I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

const FLOAT_DTYPES: ReadonlySet<string> = new Set<FloatDType>(['F64', 'F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2']);

export function isDType(name: unknown): name is DType {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, name);
}

export function isFloatDType(dtype: string): dtype is FloatDType {
  return FLOAT_DTYPES.has(dtype);
}

const INTEGER_DTYPES: ReadonlySet<string> = new Set<DType>(['I64', 'I32', 'I16', 'I8', 'U64', 'U32', 'U16', 'U8', 'BOOL']);

/** Integer and boolean storage (token ids, masks): no NaN to look for. */
export function isIntegerDType(dtype: string): boolean {
  return INTEGER_DTYPES.has(dtype);
}

/** Bytes per element; BadInputError "unsupported dtype X" for anything unknown. */
export function dtypeBytes(dtype: string, where: { file?: string; tensor?: string } = {}): number {
  if (!isDType(dtype)) throw new BadInputError(`unsupported dtype ${String(dtype)}`, where);
  return DTYPE_BYTES[dtype];
}

// ---------------------------------------------------------------------------------------
// Lookup tables, built once on first use.

let bf16Cache: Float32Array | null = null;
let f16Cache: Float32Array | null = null;
let e4m3Cache: Float32Array | null = null;
let e5m2Cache: Float32Array | null = null;

/** Value of every bf16 bit pattern: the pattern is the top half of a float32. */
export function bf16Table(): Float32Array {
  if (bf16Cache) return bf16Cache;
  const bits = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) bits[h] = h << 16;
  bf16Cache = new Float32Array(bits.buffer);
  return bf16Cache;
}

/** Value of every IEEE half-precision bit pattern (subnormals, inf and NaN included). */
export function f16Table(): Float32Array {
  if (f16Cache) return f16Cache;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) table[h] = halfBitsToNumber(h);
  f16Cache = table;
  return table;
}

/** F8_E4M3 as in torch.float8_e4m3fn: bias 7, no infinities, S.1111.111 is NaN, max 448. */
export function f8e4m3Table(): Float32Array {
  if (e4m3Cache) return e4m3Cache;
  const table = new Float32Array(256);
  for (let b = 0; b < 256; b++) {
    const sign = b & 0x80 ? -1 : 1;
    const exponent = (b >> 3) & 0x0f;
    const mantissa = b & 0x07;
    if (exponent === 15 && mantissa === 7) table[b] = NaN;
    else if (exponent === 0) table[b] = sign * mantissa * 2 ** -9;
    else table[b] = sign * (8 + mantissa) * 2 ** (exponent - 10);
  }
  e4m3Cache = table;
  return table;
}

/** F8_E5M2 (torch.float8_e5m2): IEEE-style with infinities; it is the top byte of an f16. */
export function f8e5m2Table(): Float32Array {
  if (e5m2Cache) return e5m2Cache;
  const half = f16Table();
  const table = new Float32Array(256);
  for (let b = 0; b < 256; b++) table[b] = half[b << 8]!;
  e5m2Cache = table;
  return table;
}

function halfBitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa ? NaN : sign * Infinity;
  return sign * (1024 + mantissa) * 2 ** (exponent - 25);
}

/** The decoding table of a 1- or 2-byte float dtype (null for wider ones). */
export function decodeTable(dtype: DType): Float32Array | null {
  switch (dtype) {
    case 'BF16': return bf16Table();
    case 'F16': return f16Table();
    case 'F8_E4M3': return f8e4m3Table();
    case 'F8_E5M2': return f8e5m2Table();
    default: return null;
  }
}

// ---------------------------------------------------------------------------------------
// Decoding raw little-endian bytes.

/**
 * Decode `count` elements stored at the start of `bytes` into out[outOffset...].
 * `bytes.byteOffset` must be a multiple of the element size (the reader's buffer is).
 */
export function decodeInto(dtype: DType, bytes: Uint8Array, count: number, out: Float32Array, outOffset: number): void {
  const buffer = bytes.buffer;
  const at = bytes.byteOffset;
  switch (dtype) {
    case 'F32':
      out.set(new Float32Array(buffer, at, count), outOffset);
      return;
    case 'F64':
      out.set(new Float64Array(buffer, at, count), outOffset);
      return;
    case 'BF16':
      // A bf16 pattern is the top half of a float32: a shift, no table.
      widenBf16Bits(new Uint16Array(buffer, at, count), new Uint32Array(out.buffer, out.byteOffset + outOffset * 4, count));
      return;
    case 'F16':
      decodeByTable16(new Uint16Array(buffer, at, count), decodeTable(dtype)!, out, outOffset);
      return;
    case 'F8_E4M3':
    case 'F8_E5M2':
      decodeByTable8(new Uint8Array(buffer, at, count), decodeTable(dtype)!, out, outOffset);
      return;
    case 'I8': out.set(new Int8Array(buffer, at, count), outOffset); return;
    case 'U8': out.set(new Uint8Array(buffer, at, count), outOffset); return;
    case 'I16': out.set(new Int16Array(buffer, at, count), outOffset); return;
    case 'U16': out.set(new Uint16Array(buffer, at, count), outOffset); return;
    case 'I32': out.set(new Int32Array(buffer, at, count), outOffset); return;
    case 'U32': out.set(new Uint32Array(buffer, at, count), outOffset); return;
    case 'I64': decodeBig(new BigInt64Array(buffer, at, count), out, outOffset); return;
    case 'U64': decodeBig(new BigUint64Array(buffer, at, count), out, outOffset); return;
    case 'BOOL': {
      const src = new Uint8Array(buffer, at, count);
      for (let i = 0; i < count; i++) out[outOffset + i] = src[i] ? 1 : 0;
      return;
    }
    default:
      throw new BadInputError(`unsupported dtype ${String(dtype)}`);
  }
}

/** Whether gatherDecode decodes this dtype straight from its bytes (else decode the row, then pick). */
export function gathersFromBytes(dtype: DType): boolean {
  return dtype === 'BF16' || dtype === 'F16' || dtype === 'F32' || dtype === 'F64' || dtype === 'F8_E4M3' || dtype === 'F8_E5M2';
}

/**
 * Decode the elements at `columns` of stored rows held whole in `bytes` (aligned as for
 * decodeInto, `rowLength` elements each): row t's go to out[outRows[t] * columns.length ...], in
 * the order of `columns`. A column sample decodes only what it keeps.
 */
export function gatherDecode(dtype: DType, bytes: Uint8Array, rowLength: number, columns: Int32Array, out: Float32Array, outRows: Int32Array): void {
  const buffer = bytes.buffer, offset = bytes.byteOffset, count = bytes.length / DTYPE_BYTES[dtype];
  switch (dtype) {
    case 'BF16':
      gatherBf16Bits(new Uint16Array(buffer, offset, count), rowLength, columns, new Uint32Array(out.buffer, out.byteOffset, out.length), outRows);
      return;
    case 'F16':
      gatherByTable(new Uint16Array(buffer, offset, count), rowLength, columns, decodeTable(dtype)!, out, outRows);
      return;
    case 'F8_E4M3':
    case 'F8_E5M2':
      gatherByTable(new Uint8Array(buffer, offset, count), rowLength, columns, decodeTable(dtype)!, out, outRows);
      return;
    case 'F32':
      gatherValues(new Float32Array(buffer, offset, count), rowLength, columns, out, outRows);
      return;
    case 'F64':
      gatherValues(new Float64Array(buffer, offset, count), rowLength, columns, out, outRows);
      return;
    default:
      throw new RangeError(`gatherDecode: ${dtype} is decoded whole (see gathersFromBytes)`);
  }
}

function gatherBf16Bits(src: Uint16Array, rowLength: number, columns: Int32Array, dst: Uint32Array, outRows: Int32Array): void {
  const k = columns.length;
  for (let t = 0; t < outRows.length; t++) {
    const from = t * rowLength, to = outRows[t]! * k;
    for (let q = 0; q < k; q++) dst[to + q] = src[from + columns[q]!]! << 16;
  }
}

function gatherByTable(src: Uint16Array | Uint8Array, rowLength: number, columns: Int32Array, table: Float32Array, out: Float32Array, outRows: Int32Array): void {
  const k = columns.length;
  for (let t = 0; t < outRows.length; t++) {
    const from = t * rowLength, to = outRows[t]! * k;
    for (let q = 0; q < k; q++) out[to + q] = table[src[from + columns[q]!]!]!;
  }
}

function gatherValues(src: Float32Array | Float64Array, rowLength: number, columns: Int32Array, out: Float32Array, outRows: Int32Array): void {
  const k = columns.length;
  for (let t = 0; t < outRows.length; t++) {
    const from = t * rowLength, to = outRows[t]! * k;
    for (let q = 0; q < k; q++) out[to + q] = src[from + columns[q]!]!;
  }
}

function widenBf16Bits(src: Uint16Array, dst: Uint32Array): void {
  const n = src.length;
  for (let i = 0; i < n; i++) dst[i] = src[i]! << 16;
}

// Tables come in as parameters: V8 runs such loops several times faster than on module constants.
function decodeByTable16(src: Uint16Array, table: Float32Array, out: Float32Array, outOffset: number): void {
  const n = src.length;
  for (let i = 0; i < n; i++) out[outOffset + i] = table[src[i]!]!;
}

function decodeByTable8(src: Uint8Array, table: Float32Array, out: Float32Array, outOffset: number): void {
  const n = src.length;
  for (let i = 0; i < n; i++) out[outOffset + i] = table[src[i]!]!;
}

function decodeBig(src: BigInt64Array | BigUint64Array, out: Float32Array, outOffset: number): void {
  for (let i = 0; i < src.length; i++) out[outOffset + i] = Number(src[i]!);
}

// ---------------------------------------------------------------------------------------
// Rounding onto a dtype's grid (round to nearest, ties to even), as PyTorch's casts do.

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** The bf16 bit pattern nearest to a float32 value (NaN stays NaN, quietened). */
export function float32ToBf16Bits(value: number): number {
  scratchF32[0] = value;
  const bits = scratchU32[0]!;
  if ((bits & 0x7fffffff) > 0x7f800000) return (bits >>> 16) | 0x0040;
  return (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
}

/** The IEEE half bit pattern nearest to a float32 value; overflow goes to infinity. */
export function float32ToF16Bits(value: number): number {
  scratchF32[0] = value;
  const bits = scratchU32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  if (exponent === 0xff) return sign | 0x7c00 | ((bits & 0x7fffff) ? 0x0200 : 0);
  const magnitude = Math.abs(scratchF32[0]!);
  // Past the largest half (65504) by half an ulp or more: infinity.
  if (magnitude >= 65520) return sign | 0x7c00;
  if (magnitude < 2 ** -14) {
    // Subnormal half: an integer number of 2^-24 steps (1024 steps is the smallest normal).
    return sign | roundHalfEven(magnitude * 2 ** 24);
  }
  const e = exponent - 127;
  let steps = roundHalfEven(magnitude * 2 ** (10 - e)); // in [1024, 2048]
  let biased = e + 15;
  if (steps === 2048) { steps = 1024; biased += 1; }
  return sign | (biased << 10) | (steps - 1024);
}

/** Round a non-negative double that is an exact binary fraction to the nearest integer, ties to even. */
function roundHalfEven(y: number): number {
  const floor = Math.floor(y);
  const fraction = y - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** Values rounded to the nearest value representable in `dtype` (ties to even), as float32. */
export function roundToDtype(values: Float32Array, dtype: 'BF16' | 'F16' | 'F32'): Float32Array {
  return roundToDtypeInto(values, dtype, new Float32Array(values.length));
}

/** roundToDtype into `out` (same length as `values`; may be `values` itself); returns `out`. */
export function roundToDtypeInto(values: Float32Array, dtype: 'BF16' | 'F16' | 'F32', out: Float32Array): Float32Array {
  if (out.length !== values.length) throw new RangeError(`roundToDtypeInto: ${values.length} values, ${out.length} outputs`);
  if (dtype === 'F32') {
    if (out !== values) out.set(values);
    return out;
  }
  if (dtype === 'BF16') {
    roundBitsToBf16(new Uint32Array(values.buffer, values.byteOffset, values.length), new Uint32Array(out.buffer, out.byteOffset, out.length));
    return out;
  }
  const table = f16Table();
  for (let i = 0; i < values.length; i++) out[i] = table[float32ToF16Bits(values[i]!)]!;
  return out;
}

function roundBitsToBf16(src: Uint32Array, dst: Uint32Array): void {
  for (let i = 0; i < src.length; i++) {
    const bits = src[i]!;
    dst[i] = (bits & 0x7fffffff) > 0x7f800000
      ? (bits | 0x00400000) & 0xffff0000
      : (((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) << 16) >>> 0;
  }
}

// ---------------------------------------------------------------------------------------
// Grid geometry.

/** Significand bits (with the implicit one) and smallest normal exponent of each float dtype. */
const GRID: Readonly<Record<FloatDType, { precision: number; minExponent: number }>> = {
  F64: { precision: 53, minExponent: -1022 },
  F32: { precision: 24, minExponent: -126 },
  F16: { precision: 11, minExponent: -14 },
  BF16: { precision: 8, minExponent: -126 },
  F8_E4M3: { precision: 4, minExponent: -6 },
  F8_E5M2: { precision: 3, minExponent: -14 },
};

/** Significand bits (with the implicit one) and smallest normal exponent of a float dtype's grid. */
export function gridGeometry(dtype: FloatDType): { readonly precision: number; readonly minExponent: number } {
  return GRID[dtype];
}

/** Per-dtype table: exponent field of a float32 value -> ulp^2/12 on the dtype's grid. */
const varianceTables = new Map<FloatDType, Float64Array>();
export function roundingVarianceTable(dtype: FloatDType): Float64Array {
  let table = varianceTables.get(dtype);
  if (!table) {
    table = new Float64Array(256);
    for (let e = 0; e < 256; e++) {
      // Values decoded from the grid are exact in float32, so their exponent field is exact.
      const ulp = ulpOf(e === 0 ? 0 : 2 ** (e - 127), dtype);
      table[e] = (ulp * ulp) / 12;
    }
    varianceTables.set(dtype, table);
  }
  return table;
}

/** roundingVarianceTable rounded to float32, the precision variances are stored in (null grid: all zero). */
const varianceTables32 = new Map<FloatDType | null, Float32Array>();
function roundingVarianceTable32(grid: FloatDType | null): Float32Array {
  let table = varianceTables32.get(grid);
  if (!table) {
    table = grid ? Float32Array.from(roundingVarianceTable(grid)) : new Float32Array(256);
    varianceTables32.set(grid, table);
  }
  return table;
}

/**
 * The analysis form of float32 elements: values[at + i] = src[i] as float64 and variance[at + i] =
 * the variance of rounding onto `grid` at src[i] (ulp^2 / 12 by exponent, as roundingVarianceTable;
 * zero when `grid` is null, e.g. integer storage). src must already lie on `grid`. One pass, no
 * allocation. Returns the index of the first NaN or infinity in src, or -1.
 */
export function widenWithVariance(src: Float32Array, values: Float64Array, variance: Float32Array, at: number, grid: FloatDType | null): number {
  if (at < 0 || at + src.length > values.length || at + src.length > variance.length) {
    throw new RangeError(`widenWithVariance: ${src.length} elements at ${at} do not fit ${values.length} values / ${variance.length} variances`);
  }
  // TypedArray.set widens in native code, several times faster than a JS loop; the variance
  // lookup, which reads the exponent bits anyway, also spots NaN and infinity.
  values.set(src, at);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  return varianceByExponent(bits, variance, at, roundingVarianceTable32(grid)) ? firstNonFinite(src, src.length) : -1;
}

/** Index of the first NaN or infinity among the first `count` values, or -1. */
export function firstNonFinite(values: ArrayLike<number>, count: number): number {
  for (let i = 0; i < count; i++) {
    const v = values[i]!;
    // v - v is NaN exactly for NaN and infinities.
    if (v - v !== 0) return i;
  }
  return -1;
}

// Tables and arrays as parameters keep the loop monomorphic; true when a NaN or infinity was seen.
function varianceByExponent(bits: Uint32Array, variance: Float32Array, at: number, table: Float32Array): boolean {
  const n = bits.length;
  let nonFinite = 0;
  for (let i = 0; i < n; i++) {
    const exponent = (bits[i]! >>> 23) & 0xff;
    variance[at + i] = table[exponent]!;
    nonFinite |= exponent + 1; // bit 8 is set only for exponent 255 (NaN, infinity)
  }
  return (nonFinite & 0x100) !== 0;
}

/** Unit roundoff u = 2^-precision: round-to-nearest relative error is at most u. */
export function unitRoundoff(dtype: FloatDType): number {
  return 2 ** -GRID[dtype].precision;
}

const scratchF64 = new Float64Array(1);
const scratchF64Bits = new Uint32Array(scratchF64.buffer);

/**
 * Spacing of the dtype's grid at `value`: 2^(e - precision + 1) for |value| in [2^e, 2^(e+1)),
 * the subnormal spacing below the smallest normal (and at zero). NaN for non-finite values.
 */
export function ulpOf(value: number, dtype: FloatDType): number {
  if (!Number.isFinite(value)) return NaN;
  const { precision, minExponent } = GRID[dtype];
  const magnitude = Math.abs(value);
  let exponent = minExponent;
  if (magnitude >= 2 ** minExponent) {
    // Exact binary exponent from the double's bits (Math.log2 can be off near powers of two).
    scratchF64[0] = magnitude;
    exponent = ((scratchF64Bits[1]! >>> 20) & 0x7ff) - 1023;
  }
  return 2 ** (exponent - precision + 1);
}
