/** The noise model: a weight in float64 with each element's storage-rounding variance, and the moves and scalings that keep the two together. */
import type { Weight } from '../arch/types.js';
import { firstNonFinite, isFloatDType, roundToDtypeInto, widenWithVariance, type FloatDType } from '../io/dtypes.js';
import { BadInputError } from '../io/errors.js';

/**
 * A weight matrix as analysed: float64 values plus, per element, the variance of the rounding
 * error its storage format put there (uniform rounding: ulp^2 / 12). Every transform that moves or
 * scales values moves or scales the variance with them, so the noise floor stays exact.
 */
export interface NoisyMatrix {
  readonly rows: number;
  readonly cols: number;
  readonly values: Float64Array;
  readonly variance: Float32Array;
}

/** Bits of precision of each float storage dtype. */
const PRECISION: Readonly<Record<FloatDType, number>> = { F64: 53, F32: 24, F16: 11, BF16: 8, F8_E4M3: 4, F8_E5M2: 3 };

/** The dtype whose grid is contained in the other's (rounding onto it is exact), or null. */
export function coarserGrid(a: string, b: string): FloatDType | null {
  if (!isFloatDType(a) || !isFloatDType(b) || a === b) return null;
  const [fine, coarse] = PRECISION[a] > PRECISION[b] ? [a, b] : [b, a];
  // F16 and BF16 have different exponent ranges: neither grid contains the other.
  if (fine === 'F16' || (fine === 'F32' && coarse.startsWith('F8')) || fine === 'F8_E4M3') return null;
  return coarse;
}

/**
 * Where noisyFromWeight takes its arrays from: fresh ones, or memory reused from layer to layer
 * (contents arbitrary: every element is overwritten).
 */
export interface ArrayAllocator {
  float64(length: number): Float64Array;
  float32(length: number): Float32Array;
}

export const FRESH_ARRAYS: ArrayAllocator = { float64: (n) => new Float64Array(n), float32: (n) => new Float32Array(n) };

/** Elements rounded per block when a weight moves onto a coarser grid: a scratch that stays in cache. */
const ROUNDING_BLOCK = 4096;

/**
 * Values and rounding variance of a stored weight. `roundTo` first rounds it onto a coarser grid
 * (a f32 parent compared with its bf16 child: untouched matrices then match exactly). A NaN or
 * infinity (also one made by rounding) is a BadInputError naming the weight's file and tensor.
 * The result's arrays come from `arrays` and do not alias `w.data`.
 */
export function noisyFromWeight(w: Weight, roundTo: FloatDType | null = null, arrays: ArrayAllocator = FRESH_ARRAYS): NoisyMatrix {
  const n = w.data.length;
  const values = arrays.float64(n);
  const variance = arrays.float32(n);
  const grid = roundTo ?? (isFloatDType(w.dtype) ? w.dtype : null);
  const rounding = roundTo === 'BF16' || roundTo === 'F16' ? roundTo : null;
  if (w.variance && !rounding) {
    // Block-quantized storage: the reader gave each element's variance on its block's grid.
    values.set(w.data);
    variance.set(w.variance);
    requireFinite(firstNonFinite(w.data, n), 0, w.data, w, null);
  } else if (!rounding) {
    requireFinite(widenWithVariance(w.data, values, variance, 0, grid), 0, w.data, w, null);
  } else {
    const scratch = new Float32Array(Math.min(n, ROUNDING_BLOCK));
    for (let start = 0; start < n; start += ROUNDING_BLOCK) {
      const count = Math.min(ROUNDING_BLOCK, n - start);
      const block = roundToDtypeInto(w.data.subarray(start, start + count), rounding, scratch.subarray(0, count));
      requireFinite(widenWithVariance(block, values, variance, start, grid), start, block, w, rounding);
    }
  }
  return { rows: w.rows, cols: w.cols, values, variance };
}

/** A BadInputError for block[badIndex] (element offset + badIndex of the weight), unless badIndex < 0. */
function requireFinite(badIndex: number, offset: number, block: Float32Array, w: Weight, roundedTo: FloatDType | null): void {
  if (badIndex < 0) return;
  const how = roundedTo ? ` after rounding to ${roundedTo}` : '';
  throw new BadInputError(`non-finite weight ${block[badIndex]}${how} at element ${offset + badIndex}`, { file: w.file, tensor: w.tensor });
}

/** Bit-identical values (the delta is exactly zero). */
export function sameValues(a: NoisyMatrix, b: NoisyMatrix): boolean {
  if (a.values.length !== b.values.length) return false;
  for (let i = 0; i < a.values.length; i++) if (a.values[i] !== b.values[i]) return false;
  return true;
}

/** Build from plain values with a given per-element variance (tests, merged adapters). */
export function noisyFromValues(rows: number, cols: number, values: Float64Array, variance: Float32Array): NoisyMatrix {
  return { rows, cols, values, variance };
}

/** Scale columns in place by s_j (values by s_j, variance by s_j^2). */
export function scaleColumns(m: NoisyMatrix, s: ArrayLike<number>): void {
  for (let i = 0; i < m.rows; i++) {
    const o = i * m.cols;
    for (let j = 0; j < m.cols; j++) {
      m.values[o + j]! *= s[j]!;
      m.variance[o + j]! *= s[j]! * s[j]!;
    }
  }
}

/** Scale rows in place by s_i. */
export function scaleRows(m: NoisyMatrix, s: ArrayLike<number>): void {
  for (let i = 0; i < m.rows; i++) {
    const o = i * m.cols;
    const f = s[i]!;
    for (let j = 0; j < m.cols; j++) {
      m.values[o + j]! *= f;
      m.variance[o + j]! *= f * f;
    }
  }
}

/** The identity order with no sign flips: a move that leaves the matrix as it is (the common case of an unobfuscated child). */
function movesNothing(order: ArrayLike<number>, sign: ArrayLike<number> | undefined): boolean {
  for (let i = 0; i < order.length; i++) if (order[i] !== i || (sign && sign[i] !== 1)) return false;
  return true;
}

/**
 * Row i becomes row `order[i]` times `sign[i]`, in place (cycle by cycle, one row of scratch):
 * for layers that are consumed by their alignment, so no second copy of a large matrix is made.
 */
export function permuteRowsInPlace(m: NoisyMatrix, order: ArrayLike<number>, sign?: ArrayLike<number>): NoisyMatrix {
  if (movesNothing(order, sign)) return m;
  const n = m.cols;
  const done = new Uint8Array(m.rows);
  const values = new Float64Array(n), variance = new Float32Array(n);
  for (let start = 0; start < m.rows; start++) {
    if (done[start]) continue;
    values.set(m.values.subarray(start * n, (start + 1) * n));
    variance.set(m.variance.subarray(start * n, (start + 1) * n));
    for (let i = start; ;) {
      done[i] = 1;
      const from = order[i]!;
      const s = sign ? sign[i]! : 1;
      const fromValues = from === start ? values : m.values.subarray(from * n, (from + 1) * n);
      const fromVariance = from === start ? variance : m.variance.subarray(from * n, (from + 1) * n);
      for (let j = 0; j < n; j++) m.values[i * n + j] = s * fromValues[j]!;
      m.variance.set(fromVariance, i * n);
      if (from === start) break;
      i = from;
    }
  }
  return m;
}

/** Column j becomes column `order[j]` times `sign[j]`, in place (one row of scratch). */
export function permuteColumnsInPlace(m: NoisyMatrix, order: ArrayLike<number>, sign?: ArrayLike<number>): NoisyMatrix {
  if (movesNothing(order, sign)) return m;
  const n = m.cols;
  const values = new Float64Array(n), variance = new Float32Array(n);
  for (let i = 0; i < m.rows; i++) {
    const o = i * n;
    values.set(m.values.subarray(o, o + n));
    variance.set(m.variance.subarray(o, o + n));
    for (let j = 0; j < n; j++) {
      m.values[o + j] = (sign ? sign[j]! : 1) * values[order[j]!]!;
      m.variance[o + j] = variance[order[j]!]!;
    }
  }
  return m;
}
