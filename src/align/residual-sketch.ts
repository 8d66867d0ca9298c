import type { StoredWeight, Weight } from '../arch/types.js';
import {
  decodeInto, DTYPE_BYTES, firstNonFinite, isDType, roundingVarianceTable, roundToDtypeInto, type FloatDType,
} from '../io/dtypes.js';
import { BadInputError } from '../io/errors.js';
import type { DType } from '../io/types.js';
import { countSketchMap, type CountSketchMap } from '../linalg/countsketch.js';
import type { MomentSums } from '../stats/moments.js';
import type { ResidualAlignment } from './llama.js';
import { analysisGrid, FRESH_ARRAYS, requireFinite, type ArrayAllocator, type NoisyMatrix } from './noisy.js';

/**
 * Layers of wide models are analysed with the residual side of every matrix count-sketched (the
 * columns of q, k, v, gate and up, the rows of o and down), straight from the stored values as
 * they are read: a 7B layer pair becomes a few hundred MB instead of 5 GB, and each weight costs
 * one multiply-add instead of the passes of dense SVDs.
 *
 * Why the residual side: its alignment (permutation and signs, from the embeddings) and the norm
 * gains folded into the readers are known before any layer is read, so they go into the sketch
 * itself: the candidate's stored residual index j is hashed as the base dimension it plays. The
 * other side (heads, neurons) stays whole, because its permutations are found from these very
 * sketches and its function-preserving scalings (V/O, Q/K, up/down) must still be fitted;
 * diagonal scalings and permutations of that side commute with a sketch of the residual side.
 *
 * What is kept: the rank of a delta (a sketch S of the residual side keeps rank(delta S) =
 * rank(delta) when the sketch is wider than the rank), its noise model (each sketched entry's
 * rounding variance is the sum of its terms' variances, computed exactly, so the bulk edge of the
 * whitened sketch still follows from the storage dtype), correlations of rows (for matching).
 * What is lost: a factor of about sqrt(residual / width) of sensitivity against the noise for the
 * weakest singular values, and the column gauge of the readers (norm gains that changed between
 * the models cannot be refitted once summed into buckets).
 */
export const RESIDUAL_SKETCH_WIDTH = 256;

/** Seed of the residual hashing (shared by both models, so their sketches compare). */
const RESIDUAL_SKETCH_SEED = 4099;

/** The residual sketch for `hidden` base dimensions, or null when they are no wider than `width` (kept whole). */
export function residualSketchMap(hidden: number, width = RESIDUAL_SKETCH_WIDTH): CountSketchMap | null {
  return hidden > width ? countSketchMap(hidden, width, RESIDUAL_SKETCH_SEED) : null;
}

/** Where each stored residual index of one model goes in the sketch: its bucket, hash sign and factor. */
export interface ResidualPlacement {
  readonly bucket: Int32Array;
  readonly sign: Float64Array;
  /** The residual sign flip (candidate) times the folded norm gain (readers): the aligned value is factor x. */
  readonly factor: Float64Array;
  readonly width: number;
}

/**
 * A model's placement: the base's stored order is the reference; the candidate's stored index
 * order[i] plays base dimension i, with sign[i]. `gain` (indexed by stored dimension) is the norm
 * weight folded into a reader's columns, null for the writers (o, down).
 */
export function residualPlacement(map: CountSketchMap, alignment: ResidualAlignment | null, gain: Float64Array | null): ResidualPlacement {
  const n = map.bucket.length;
  const bucket = new Int32Array(n);
  const sign = new Float64Array(n);
  const factor = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const stored = alignment ? alignment.order[i]! : i;
    bucket[stored] = map.bucket[i]!;
    sign[stored] = map.sign[i]!;
    factor[stored] = (alignment ? alignment.sign[i]! : 1) * (gain ? gain[stored]! : 1);
  }
  return { bucket, sign, factor, width: map.width };
}

/**
 * Power sums s1..s4 of the (norm-folded) values along each line of the side that stays whole:
 * line t's sums at [t], [L + t], [2L + t], [3L + t] for L lines. Moments and norms of the weights
 * in any gauge of that side follow from them (sum over t of scale_t^p times the p-th sum). The
 * values summed are the aligned ones (residual signs, folded gains), without the hash signs.
 */
export interface LineSums {
  readonly lines: number;
  /** Elements per line (the residual width). */
  readonly perLine: number;
  readonly sums: Float64Array;
}

export interface SketchedWeight {
  readonly matrix: NoisyMatrix;
  readonly lines: LineSums;
}

/**
 * A weight's rows, decoded on demand into float32: the sketch decodes cache-sized pieces, so a
 * stored weight (2 bytes a value in bf16) is never widened whole into memory.
 */
export interface WeightRows {
  readonly rows: number;
  readonly cols: number;
  readonly dtype: string;
  readonly tensor: string;
  readonly file: string;
  /** Rows [from, to) into out, (to - from) * cols values. */
  decode(from: number, to: number, out: Float32Array): void;
}

export function rowsOfWeight(w: Weight): WeightRows {
  return { ...weightInfo(w), decode: (from, to, out) => out.set(w.data.subarray(from * w.cols, to * w.cols)) };
}

export function rowsOfStored(w: StoredWeight): WeightRows {
  if (!isDType(w.dtype)) throw new BadInputError(`unsupported dtype ${w.dtype}`, { file: w.file, tensor: w.tensor });
  const dtype: DType = w.dtype, size = DTYPE_BYTES[dtype];
  return {
    ...weightInfo(w),
    decode: (from, to, out) => decodeInto(dtype, w.bytes.subarray(from * w.cols * size, to * w.cols * size), (to - from) * w.cols, out, 0),
  };
}

/** What WeightRows shares with the weight it decodes. */
function weightInfo(w: { rows: number; cols: number; dtype: string; tensor: string; file: string }) {
  return { rows: w.rows, cols: w.cols, dtype: w.dtype, tensor: w.tensor, file: w.file };
}

/** Values decoded per piece: a scratch that stays in cache. */
const PIECE = 1 << 14;

/**
 * A weight with its residual side sketched: 'cols' (a reader, out x hidden) gives out x width,
 * 'rows' (a writer, hidden x in) gives width x in. Values and their rounding variances are
 * accumulated in one pass over the stored values, decoded a cache-sized piece at a time (rounded
 * onto `roundTo` first when the other model is stored coarser); a NaN or infinity is a
 * BadInputError naming the tensor. A writer's rows are visited bucket by bucket, so each output
 * row is summed in cache and written once.
 */
export function sketchResidualSide(
  w: WeightRows, residualSide: 'cols' | 'rows', place: ResidualPlacement, roundTo: FloatDType | null, arrays: ArrayAllocator = FRESH_ARRAYS,
): SketchedWeight {
  const width = place.width;
  const [rows, cols] = residualSide === 'cols' ? [w.rows, width] : [width, w.cols];
  const resident = residualSide === 'cols' ? w.cols : w.rows;
  if (place.bucket.length !== resident) {
    throw new RangeError(`sketchResidualSide: ${w.tensor} has ${resident} residual dimensions, the sketch ${place.bucket.length}`);
  }
  const values = arrays.float64(rows * cols).fill(0);
  const variance = arrays.float32(rows * cols).fill(0);
  const lineCount = residualSide === 'cols' ? w.rows : w.cols;
  const sums = new Float64Array(4 * lineCount);
  const factorSq = Float64Array.from(place.factor, (g) => g * g);
  const { grid, rounding } = analysisGrid(w.dtype, roundTo);
  const table = grid ? roundingVarianceTable(grid) : ZERO_VARIANCE;
  const pieceRows = residualSide === 'cols' ? Math.max(1, Math.floor(PIECE / Math.max(1, w.cols))) : 1;
  const scratch = new Float32Array(pieceRows * w.cols);
  const bits = new Uint32Array(scratch.buffer);
  // Rows in the order visited: all of them for a reader; bucket by bucket for a writer.
  const order = residualSide === 'cols' ? null : rowsByBucket(place);
  for (let t = 0; t < w.rows; t += pieceRows) {
    const first = order ? order[t]! : t;
    const count = Math.min(pieceRows, w.rows - t);
    const piece = count === pieceRows ? scratch : scratch.subarray(0, count * w.cols);
    w.decode(first, first + count, piece);
    if (rounding) roundToDtypeInto(piece, rounding, piece);
    const nonFinite = residualSide === 'cols'
      ? sketchReaderRows(piece, bits, first, count, w.cols, place, factorSq, table, values, variance, sums, lineCount)
      : sketchWriterRows(piece, bits, first, count, w.cols, place, factorSq, table, values, variance, sums, lineCount);
    if (nonFinite) requireFinite(firstNonFinite(piece, piece.length), first * w.cols, piece, w, rounding);
  }
  return { matrix: { rows, cols, values, variance }, lines: { lines: lineCount, perLine: resident, sums } };
}

/** Stored rows sorted by bucket (stable): a writer's rows in the order its sketch rows are summed. */
function rowsByBucket(place: ResidualPlacement): Int32Array {
  const n = place.bucket.length;
  const starts = new Int32Array(place.width + 1);
  for (let j = 0; j < n; j++) starts[place.bucket[j]! + 1]!++;
  for (let b = 0; b < place.width; b++) starts[b + 1]! += starts[b]!;
  const order = new Int32Array(n);
  for (let j = 0; j < n; j++) order[starts[place.bucket[j]!]!++] = j;
  return order;
}

const ZERO_VARIANCE = new Float64Array(256);

/**
 * Reader rows (residual = columns): row i's element j adds sign_j factor_j x into (i, bucket_j).
 * Returns true when an exponent of 255 (NaN, infinity) was seen.
 */
function sketchReaderRows(
  block: Float32Array, bits: Uint32Array, firstRow: number, blockRows: number, cols: number, place: ResidualPlacement,
  factorSq: Float64Array, table: Float64Array, values: Float64Array, variance: Float32Array, sums: Float64Array, lines: number,
): boolean {
  const { bucket, sign, factor, width } = place;
  let nonFinite = 0;
  for (let r = 0; r < blockRows; r++) {
    const i = firstRow + r, o = r * cols, out = i * width;
    let s1 = 0, s2 = 0, s3 = 0, s4 = 0;
    for (let j = 0; j < cols; j++) {
      const exponent = (bits[o + j]! >>> 23) & 0xff;
      nonFinite |= exponent + 1;
      const d = factor[j]! * block[o + j]!;
      const b = out + bucket[j]!;
      values[b]! += sign[j]! * d;
      variance[b]! += factorSq[j]! * table[exponent]!;
      const d2 = d * d;
      s1 += d;
      s2 += d2;
      s3 += d2 * d;
      s4 += d2 * d2;
    }
    sums[i] = s1;
    sums[lines + i] = s2;
    sums[2 * lines + i] = s3;
    sums[3 * lines + i] = s4;
  }
  return (nonFinite & 0x100) !== 0;
}

/** Writer rows (residual = rows): stored row i adds sign_i factor_i times itself into sketch row bucket_i. */
function sketchWriterRows(
  block: Float32Array, bits: Uint32Array, firstRow: number, blockRows: number, cols: number, place: ResidualPlacement,
  factorSq: Float64Array, table: Float64Array, values: Float64Array, variance: Float32Array, sums: Float64Array, lines: number,
): boolean {
  let nonFinite = 0;
  for (let r = 0; r < blockRows; r++) {
    const i = firstRow + r, o = r * cols, out = place.bucket[i]! * cols;
    const g = place.factor[i]!, g2 = factorSq[i]!, s = place.sign[i]!;
    for (let j = 0; j < cols; j++) {
      const exponent = (bits[o + j]! >>> 23) & 0xff;
      nonFinite |= exponent + 1;
      const d = g * block[o + j]!;
      values[out + j]! += s * d;
      variance[out + j]! += g2 * table[exponent]!;
      const d2 = d * d;
      sums[j]! += d;
      sums[lines + j]! += d2;
      sums[2 * lines + j]! += d2 * d;
      sums[3 * lines + j]! += d2 * d2;
    }
  }
  return (nonFinite & 0x100) !== 0;
}

/** Line sums in the order of an alignment: line t becomes line order[t] of `sums`. */
export function permuteLines(sums: LineSums, order: ArrayLike<number>): LineSums {
  const L = sums.lines;
  const out = new Float64Array(4 * L);
  for (let p = 0; p < 4; p++) for (let t = 0; t < L; t++) out[p * L + t] = sums.sums[p * L + order[t]!]!;
  return { lines: L, perLine: sums.perLine, sums: out };
}

/** s_p = sum_t scale_t^p sums_p[t] for p = 1..4, and the element count: the moments in that gauge. */
export function scaledPowerSums(sums: LineSums, scale: ArrayLike<number> | null): MomentSums {
  const L = sums.lines, s = sums.sums;
  let s1 = 0, s2 = 0, s3 = 0, s4 = 0;
  for (let t = 0; t < L; t++) {
    const a = scale ? scale[t]! : 1, a2 = a * a;
    s1 += a * s[t]!;
    s2 += a2 * s[L + t]!;
    s3 += a2 * a * s[2 * L + t]!;
    s4 += a2 * a2 * s[3 * L + t]!;
  }
  return { shift: 0, n: L * sums.perLine, s1, s2, s3, s4 };
}
