/**
 * CountSketch (Charikar, Chen and Farach-Colton): coordinate j of a vector is added, with a random
 * sign, into one of `width` random buckets. Inner products are preserved in expectation with the
 * variance of a Gaussian projection of the same width, yet the cost is one add per element instead
 * of 2 x width flops: what lets neuron and residual matching scale to 7B widths.
 */
import type { Matrix, RowMajor } from './matrix.js';
import { transpose } from './ops.js';
import { Rng } from './rng.js';

/** One random map: a bucket and a sign per input coordinate. */
export interface CountSketchMap {
  /** Bucket of each input coordinate. */
  readonly bucket: Int32Array;
  /** +1 or -1 per input coordinate. */
  readonly sign: Float64Array;
  readonly width: number;
}

/**
 * The map for `dim` input coordinates, a function of (dim, width, seed) only. Buckets are filled
 * evenly (a random permutation dealt round-robin): with independent buckets, a few hundred
 * coordinates would leave some of 256 buckets empty, exact zeros whose sign carries nothing.
 */
export function countSketchMap(dim: number, width: number, seed: number): CountSketchMap {
  const rng = new Rng(seed);
  const deal = rng.permutation(dim);
  const bucket = new Int32Array(dim);
  const sign = new Float64Array(dim);
  for (let j = 0; j < dim; j++) {
    bucket[j] = deal[j]! % width;
    sign[j] = rng.nextUint32() & 1 ? 1 : -1;
  }
  return { bucket, sign, width };
}

/**
 * Rows of `a` centred, sketched and scaled to unit length, so the dot product of two such rows
 * estimates the Pearson correlation of the originals. Rows no wider than `width` are kept whole
 * (the correlation is then exact).
 */
export function sketchRowsStandardized(a: RowMajor, width: number, seed: number): Matrix {
  if (a.cols <= width) return standardizeRows(a);
  const map = countSketchMap(a.cols, width, seed);
  // Centring after sketching: sketch(x - mean) = sketch(x) - mean * sketch(ones).
  const ones = new Float64Array(width);
  for (let j = 0; j < a.cols; j++) ones[map.bucket[j]!]! += map.sign[j]!;
  const out = new Float64Array(a.rows * width);
  for (let i = 0; i < a.rows; i++) {
    const o = i * a.cols, w = i * width;
    let sum = 0;
    for (let j = 0; j < a.cols; j++) {
      const v = a.data[o + j]!;
      sum += v;
      out[w + map.bucket[j]!]! += map.sign[j]! * v;
    }
    const mean = sum / a.cols;
    for (let b = 0; b < width; b++) out[w + b]! -= mean * ones[b]!;
  }
  return normalizeRows({ rows: a.rows, cols: width, data: out });
}

/**
 * Columns of `a` as sketched rows: row j of the result is column j of `a` with its entries (one
 * per row of `a`, e.g. one per token of an embedding) count-sketched to `width`, centred and
 * scaled to unit length. One pass over `a` in storage order.
 */
export function sketchColumnsStandardized(a: RowMajor, width: number, seed: number): Matrix {
  if (a.rows <= width) return standardizeRows(transpose(a));
  const sketch = new ColumnSketch(a.rows, a.cols, width, seed);
  sketch.add(a.data, 0, a.rows);
  return sketch.result();
}

/**
 * sketchColumnsStandardized fed a block of rows at a time (an embedding read in bounded blocks
 * is never whole in memory). Accumulated bucket-major (each row added contiguously into its
 * bucket's row), then transposed: a column-major accumulation would stride through the whole
 * output per row.
 */
export class ColumnSketch {
  private readonly map: CountSketchMap;
  private readonly byBucket: Float64Array;
  private readonly ones: Float64Array;
  private readonly sums: Float64Array;
  private seen = 0;

  constructor(readonly rows: number, readonly cols: number, readonly width: number, seed: number) {
    this.map = countSketchMap(rows, width, seed);
    this.byBucket = new Float64Array(width * cols);
    this.ones = new Float64Array(width);
    this.sums = new Float64Array(cols);
  }

  /** Rows [rowStart, rowEnd) of the matrix, row-major in `data`. */
  add(data: ArrayLike<number>, rowStart: number, rowEnd: number): void {
    const { map, byBucket, ones, sums, cols } = this;
    for (let t = rowStart; t < rowEnd; t++) {
      const b = map.bucket[t]!, s = map.sign[t]!;
      ones[b]! += s;
      const o = (t - rowStart) * cols, w = b * cols;
      for (let j = 0; j < cols; j++) {
        const v = data[o + j]!;
        sums[j]! += v;
        byBucket[w + j]! += s * v;
      }
    }
    this.seen += rowEnd - rowStart;
  }

  result(): Matrix {
    if (this.seen !== this.rows) throw new RangeError(`ColumnSketch: ${this.seen} of ${this.rows} rows added`);
    const { width, cols, byBucket, ones, sums } = this;
    const out = new Float64Array(cols * width);
    for (let j = 0; j < cols; j++) {
      const mean = sums[j]! / this.rows;
      for (let b = 0; b < width; b++) out[j * width + b] = byBucket[b * cols + j]! - mean * ones[b]!;
    }
    return normalizeRows({ rows: cols, cols: width, data: out });
  }
}

/**
 * Rows centred and scaled to unit length, so dot products are Pearson correlations. Four rows at
 * a time: each row's sums run in their own order as if it were alone (the same values), and four
 * independent sums hide each addition's latency. A last group of fewer rows repeats the final row
 * (computed and written twice, alike).
 */
export function standardizeRows(a: RowMajor): Matrix {
  const out = new Float64Array(a.data.length);
  const n = a.cols, data = a.data, last = a.rows - 1;
  for (let i = 0; i < a.rows; i += 4) {
    const o0 = i * n, o1 = Math.min(i + 1, last) * n, o2 = Math.min(i + 2, last) * n, o3 = Math.min(i + 3, last) * n;
    let m0 = 0, m1 = 0, m2 = 0, m3 = 0;
    for (let j = 0; j < n; j++) {
      m0 += data[o0 + j]!;
      m1 += data[o1 + j]!;
      m2 += data[o2 + j]!;
      m3 += data[o3 + j]!;
    }
    m0 /= n;
    m1 /= n;
    m2 /= n;
    m3 /= n;
    // The centred values' sum of squares (normalizeRows' sum, in the same order), then the centred
    // values recomputed (the same differences) and scaled as normalizeRows would: one write per element.
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (let j = 0; j < n; j++) {
      const v0 = data[o0 + j]! - m0, v1 = data[o1 + j]! - m1, v2 = data[o2 + j]! - m2, v3 = data[o3 + j]! - m3;
      s0 += v0 * v0;
      s1 += v1 * v1;
      s2 += v2 * v2;
      s3 += v3 * v3;
    }
    const i0 = unitScale(s0), i1 = unitScale(s1), i2 = unitScale(s2), i3 = unitScale(s3);
    for (let j = 0; j < n; j++) {
      out[o0 + j] = (data[o0 + j]! - m0) * i0;
      out[o1 + j] = (data[o1 + j]! - m1) * i1;
      out[o2 + j] = (data[o2 + j]! - m2) * i2;
      out[o3 + j] = (data[o3 + j]! - m3) * i3;
    }
  }
  return { rows: a.rows, cols: n, data: out };
}

/** Scale rows to unit length in place (zero rows stay zero). */
function normalizeRows(a: Matrix): Matrix {
  for (let i = 0; i < a.rows; i++) {
    const o = i * a.cols;
    let ss = 0;
    for (let j = 0; j < a.cols; j++) ss += a.data[o + j]! * a.data[o + j]!;
    scaleToUnit(a.data, o, a.cols, ss);
  }
  return a;
}

/** The factor that scales a vector of sum of squares ss to unit length (0 for a zero vector). */
function unitScale(ss: number): number {
  return ss > 0 ? 1 / Math.sqrt(ss) : 0;
}

/** data[o, o + n) divided by sqrt(ss), its sum of squares (zeroed when ss is 0). */
function scaleToUnit(data: Float64Array, o: number, n: number, ss: number): void {
  const inv = unitScale(ss);
  for (let j = 0; j < n; j++) data[o + j]! *= inv;
}
