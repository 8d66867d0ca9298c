/**
 * Reading a role's weight from a tensor source: the (out, in) matrix of a whole tensor, a row slice
 * or interleaved rows of a fused one, or the transpose of Conv1D storage, decoded to float32.
 */
import { BadInputError } from '../io/errors.js';
import { isQuantType } from '../io/gguf-quants.js';
import { checkIndices } from '../io/source.js';
import type { TensorInfo } from '../io/types.js';
import type { LayerRole, ModelMap, RoleRef, TensorSource, Weight, WeightPart } from './types.js';

/** A tensor viewed as 2-D, as the io layer does: shape[0] x product(rest) (1-D: n x 1). */
export function storedShape(info: TensorInfo): [number, number] {
  const rows = info.shape.length === 0 ? 1 : info.shape[0]!;
  let cols = 1;
  for (let i = 1; i < info.shape.length; i++) cols *= info.shape[i]!;
  return [rows, cols];
}

export function tensorInfo(source: TensorSource, name: string): TensorInfo {
  const info = source.tensors.get(name);
  if (!info) throw new BadInputError('tensor not found in the model', { tensor: name });
  return info;
}

/** (out, in) size of a role as `readRole` returns it, computed from the header alone. */
export function roleShape(source: TensorSource, ref: RoleRef): [number, number] {
  const [storedRows, storedCols] = storedShape(tensorInfo(source, ref.tensor));
  const [outFull, inFeatures] = ref.transposed ? [storedCols, storedRows] : [storedRows, storedCols];
  const ranges = roleRanges(ref, outFull);
  return [ranges.reduce((sum, [s, e]) => sum + (e - s), 0), inFeatures];
}

function roleRanges(ref: RoleRef, outFull: number): ReadonlyArray<readonly [number, number]> {
  if (ref.rowRanges) return ref.rowRanges;
  if (ref.rows) return [ref.rows];
  return [[0, outFull]];
}

/**
 * Decode a role's weight to float32 (out, in): only the rows it needs from a fused tensor,
 * and the transpose of Conv1D storage, streamed block by block so memory stays bounded by
 * the result. `into` (of the role's size) is filled instead of a new array.
 */
export function readRole(source: TensorSource, ref: RoleRef, into?: Float32Array): Weight {
  const info = tensorInfo(source, ref.tensor);
  const [storedRows, storedCols] = storedShape(info);
  const [rows, cols] = roleShape(source, ref);
  if (into && into.length !== rows * cols) throw new RangeError(`${ref.tensor}: ${rows}x${cols} role read into ${into.length} values`);
  // Every element is written below, so a reused buffer needs no clearing.
  const data = into ?? new Float32Array(rows * cols);
  const variance = quantizedVariance(source, info, ref, rows * cols);
  if (!ref.transposed) {
    let offset = 0;
    for (const [start, end] of roleRanges(ref, storedRows)) {
      checkRange(ref, start, end, storedRows);
      const at = offset, to = offset + (end - start) * cols;
      if (variance) source.readRowsWithVarianceInto!(ref.tensor, start, end, data.subarray(at, to), variance.subarray(at, to));
      else source.readRowsInto(ref.tensor, start, end, data.subarray(at, to));
      offset = to;
    }
  } else {
    // Logical row j is stored column j: walk stored rows (= logical columns) in blocks.
    const ranges = roleRanges(ref, storedCols);
    for (const [start, end] of ranges) checkRange(ref, start, end, storedCols);
    for (const block of source.rowBlocks(ref.tensor)) {
      const blockData = block.data;
      let outRow = 0;
      for (const [start, end] of ranges) {
        for (let storedCol = start; storedCol < end; storedCol++, outRow++) {
          const outBase = outRow * cols;
          for (let r = block.rowStart; r < block.rowEnd; r++) {
            data[outBase + r] = blockData[(r - block.rowStart) * storedCols + storedCol]!;
          }
        }
      }
    }
  }
  return { rows, cols, data, dtype: info.dtype, tensor: ref.tensor, file: info.file, ...(variance ? { variance } : {}) };
}

/**
 * A role's rounding variances, for block-quantized storage read from a source that gives them
 * (null otherwise: float storage's noise floor is its dtype's grid). A transposed role is never
 * quantized (GGUF stores every weight (out, in)).
 */
function quantizedVariance(source: TensorSource, info: TensorInfo, ref: RoleRef, length: number): Float32Array | null {
  return isQuantType(info.dtype) && !ref.transposed && source.readRowsWithVarianceInto && source.readSelectionWithVarianceInto
    ? new Float32Array(length) : null;
}

/**
 * Part of a role's (out, in) weight: the rows and columns in `part`, each in the order given (null:
 * all). Only the rows kept are read and only the columns kept decoded, so a sample of a wide
 * matrix's columns costs the read of its bytes, not their decode. A transposed (Conv1D) role is
 * read whole first (memory of one role), then picked. `into` (of the part's size) is filled
 * instead of a new array.
 */
export function readRolePart(source: TensorSource, ref: RoleRef, part: WeightPart, into?: Float32Array): Weight {
  const [rows, cols] = roleShape(source, ref);
  checkIndices(part.rows, rows, 'row', ref.tensor);
  checkIndices(part.cols, cols, 'column', ref.tensor);
  const keptRows = part.rows ? part.rows.length : rows, keptCols = part.cols ? part.cols.length : cols;
  if (into && into.length !== keptRows * keptCols) throw new RangeError(`${ref.tensor}: ${keptRows}x${keptCols} part read into ${into.length} values`);
  // Every element is written below, so a reused buffer needs no clearing.
  const data = into ?? new Float32Array(keptRows * keptCols);
  if (ref.transposed) {
    const whole = readRole(source, ref);
    for (let i = 0; i < keptRows; i++) {
      const from = (part.rows ? part.rows[i]! : i) * cols;
      for (let j = 0; j < keptCols; j++) data[i * keptCols + j] = whole.data[from + (part.cols ? part.cols[j]! : j)]!;
    }
    return { ...whole, rows: keptRows, cols: keptCols, data };
  }
  const info = tensorInfo(source, ref.tensor);
  const ranges = roleRanges(ref, storedShape(info)[0]);
  for (const [start, end] of ranges) checkRange(ref, start, end, storedShape(info)[0]);
  // Logical rows of a fused tensor's slices are stored rows of its ranges.
  const whole = ranges.length === 1 && ranges[0]![0] === 0 && ranges[0]![1] === rows;
  const storedRows = whole ? part.rows : storedRowsOf(ranges, part.rows ?? Int32Array.from({ length: rows }, (_, i) => i));
  const variance = quantizedVariance(source, info, ref, data.length);
  if (variance) source.readSelectionWithVarianceInto!(ref.tensor, storedRows, part.cols, data, variance);
  else source.readSelectionInto(ref.tensor, storedRows, part.cols, data);
  return { rows: keptRows, cols: keptCols, data, dtype: info.dtype, tensor: ref.tensor, file: info.file, ...(variance ? { variance } : {}) };
}

/**
 * The row of the whole (out, in) tensor that holds each of the role's rows: a fused role's
 * rows within its fused tensor (for a transposed tensor, rows of the transpose).
 */
export function tensorRowsOf(ref: RoleRef, outFull: number, logical: ArrayLike<number>): Int32Array {
  return storedRowsOf(roleRanges(ref, outFull), logical);
}

/** The stored row of each logical row, for a role made of the row ranges of a tensor. */
function storedRowsOf(ranges: ReadonlyArray<readonly [number, number]>, logical: ArrayLike<number>): Int32Array {
  const starts: number[] = [];
  let total = 0;
  for (const [start, end] of ranges) {
    starts.push(total);
    total += end - start;
  }
  // Binary search: a role made of one-row ranges (GGUF q/k) has as many ranges as rows.
  return Int32Array.from(logical, (l) => {
    let lo = 0, hi = ranges.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= l) lo = mid;
      else hi = mid - 1;
    }
    return ranges[lo]![0] + (l - starts[lo]!);
  });
}

function checkRange(ref: RoleRef, start: number, end: number, limit: number): void {
  if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end && end <= limit)) {
    throw new BadInputError(`row range [${start}, ${end}) outside the tensor's ${limit} rows`, { tensor: ref.tensor });
  }
}

/** The role of one layer; throws a BadInputError when the model has no such role there. */
export function layerRoleRef(map: ModelMap, layer: number, role: LayerRole): RoleRef {
  if (!(Number.isInteger(layer) && layer >= 0 && layer < map.layers.length)) {
    throw new BadInputError(`layer ${layer} does not exist (the model has ${map.layers.length} layers)`);
  }
  const ref = map.layers[layer]![role];
  if (!ref) throw new BadInputError(`layer ${layer} has no ${role} weight (${map.family} model)`);
  return ref;
}
