/**
 * Dense kernels. Everything funnels into one dot-product kernel C += A·Bᵀ over rows of A and B
 * (both read contiguously), register-blocked 4x2 and cache-blocked over k and B's rows: the
 * WebAssembly SIMD kernel of gemm.ts where it pays (~13 GFLOP/s), else this JavaScript loop
 * (~3.5 GFLOP/s in V8 on 1024³; bench/linalg.ts). The other products transpose first, which
 * costs O(size) against the O(size·k) product. Gram matrices have a kernel of their own where
 * WebAssembly serves (wasmGramUpper: rank-1 updates of the upper triangle's tiles, no transposes;
 * 1.5 to 2.5 times the product kernel's speed at 256 wide, bench/linalg.ts --gram); the
 * JavaScript fallback is the product loop.
 */
import { wasmGramUpper, wasmProductTransB } from './gemm.js';
import { type Matrix, type RowMajor, zeros } from './matrix.js';

const K_BLOCK = 512;
const B_ROWS_BLOCK = 64;

/**
 * out[i*n + j] += Σ_p a[i*k + p] · b[j*k + p] for i < m, j < n.
 * With upperOnly, blocks entirely below the diagonal are skipped (callers mirror them).
 */
function accumulateProductTransB(
  a: Float64Array, b: Float64Array, out: Float64Array, m: number, n: number, k: number, upperOnly: boolean,
): void {
  if (wasmProductTransB(a, b, out, m, n, k, upperOnly)) return;
  for (let p0 = 0; p0 < k; p0 += K_BLOCK) {
    const p1 = Math.min(k, p0 + K_BLOCK);
    for (let j0 = 0; j0 < n; j0 += B_ROWS_BLOCK) {
      const j1 = Math.min(n, j0 + B_ROWS_BLOCK);
      const iEnd = upperOnly ? Math.min(m, j1) : m;
      let i = 0;
      for (; i + 4 <= iEnd; i += 4) {
        const a0 = i * k, a1 = a0 + k, a2 = a1 + k, a3 = a2 + k;
        let j = j0;
        for (; j + 2 <= j1; j += 2) {
          const b0 = j * k, b1 = b0 + k;
          let c00 = 0, c01 = 0, c10 = 0, c11 = 0, c20 = 0, c21 = 0, c30 = 0, c31 = 0;
          for (let p = p0; p < p1; p++) {
            const x0 = b[b0 + p]!, x1 = b[b1 + p]!;
            const y0 = a[a0 + p]!, y1 = a[a1 + p]!, y2 = a[a2 + p]!, y3 = a[a3 + p]!;
            c00 += y0 * x0; c01 += y0 * x1;
            c10 += y1 * x0; c11 += y1 * x1;
            c20 += y2 * x0; c21 += y2 * x1;
            c30 += y3 * x0; c31 += y3 * x1;
          }
          const r = i * n + j;
          out[r] += c00; out[r + 1] += c01;
          out[r + n] += c10; out[r + n + 1] += c11;
          out[r + 2 * n] += c20; out[r + 2 * n + 1] += c21;
          out[r + 3 * n] += c30; out[r + 3 * n + 1] += c31;
        }
        for (; j < j1; j++) {
          const b0 = j * k;
          let c0 = 0, c1 = 0, c2 = 0, c3 = 0;
          for (let p = p0; p < p1; p++) {
            const x = b[b0 + p]!;
            c0 += a[a0 + p]! * x; c1 += a[a1 + p]! * x; c2 += a[a2 + p]! * x; c3 += a[a3 + p]! * x;
          }
          const r = i * n + j;
          out[r] += c0; out[r + n] += c1; out[r + 2 * n] += c2; out[r + 3 * n] += c3;
        }
      }
      for (; i < iEnd; i++) {
        const a0 = i * k;
        for (let j = j0; j < j1; j++) {
          const b0 = j * k;
          let c = 0;
          for (let p = p0; p < p1; p++) c += a[a0 + p]! * b[b0 + p]!;
          out[i * n + j] += c;
        }
      }
    }
  }
}

function requireSameShape(a: Matrix, b: Matrix, what: string): void {
  if (a.rows !== b.rows || a.cols !== b.cols) {
    throw new RangeError(`${what}: shapes ${a.rows}x${a.cols} and ${b.rows}x${b.cols} differ`);
  }
}

/** A·Bᵀ for A m×k, B n×k. */
export function matmulTransB(a: Matrix, b: Matrix): Matrix {
  if (a.cols !== b.cols) throw new RangeError(`matmulTransB: inner sizes ${a.cols} and ${b.cols} differ`);
  const out = zeros(a.rows, b.rows);
  accumulateProductTransB(a.data, b.data, out.data, a.rows, b.rows, a.cols, false);
  return out;
}

/** A·B for A m×k, B k×n. */
export function matmul(a: Matrix, b: Matrix): Matrix {
  if (a.cols !== b.rows) throw new RangeError(`matmul: inner sizes ${a.cols} and ${b.rows} differ`);
  return matmulTransB(a, transpose(b));
}

/** Rows of A per block in matmulTransA: each block's transpose stays small, the kernel's work per call large. */
const TRANSPOSE_ROWS = 256;

/**
 * Aᵀ·B for A k×m, B k×n, without a k×m transpose of A: A's rows are taken in blocks, each block
 * transposed and multiplied in the fast kernel, the block products summed. Where A is large and
 * B thin this saves the copy of Aᵀ, its memory, and its strided writes.
 */
export function matmulTransA(a: Matrix, b: Matrix): Matrix {
  if (a.rows !== b.rows) throw new RangeError(`matmulTransA: inner sizes ${a.rows} and ${b.rows} differ`);
  const k = a.rows, m = a.cols, n = b.cols;
  const out = zeros(m, n);
  for (let i0 = 0; i0 < k; i0 += TRANSPOSE_ROWS) {
    const i1 = Math.min(k, i0 + TRANSPOSE_ROWS), rows = i1 - i0;
    const aBlock = transpose({ rows, cols: m, data: a.data.subarray(i0 * m, i1 * m) }); // m×rows
    const bBlock = transpose({ rows, cols: n, data: b.data.subarray(i0 * n, i1 * n) }); // n×rows
    const part = matmulTransB(aBlock, bBlock).data;
    for (let p = 0; p < part.length; p++) out.data[p]! += part[p]!;
  }
  return out;
}

/** A·x for a vector x of length A.cols. */
export function matVec(a: Matrix, x: ArrayLike<number>): Float64Array {
  if (x.length !== a.cols) throw new RangeError(`matVec: vector length ${x.length}, matrix has ${a.cols} columns`);
  const out = new Float64Array(a.rows);
  const { cols, data } = a;
  for (let i = 0; i < a.rows; i++) {
    let s = 0;
    const r = i * cols;
    for (let j = 0; j < cols; j++) s += data[r + j]! * x[j]!;
    out[i] = s;
  }
  return out;
}

/** Row-gram X·Xᵀ computed on the upper triangle and mirrored (exactly symmetric). */
export function rowGram(x: Matrix): Matrix {
  const n = x.rows;
  const out = zeros(n, n);
  if (!wasmGramUpper(x.data, x.rows, x.cols, 'AAt', out.data)) accumulateProductTransB(x.data, x.data, out.data, n, n, x.cols, true);
  return mirrorUpper(out);
}

/** The lower triangle of a square matrix set from its upper one (in place). */
function mirrorUpper(m: Matrix): Matrix {
  const n = m.rows, d = m.data;
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) d[i * n + j] = d[j * n + i]!;
  return m;
}

export interface Gram {
  readonly matrix: Matrix;
  /** 'AtA': matrix = AᵀA (cols×cols); 'AAt': matrix = A·Aᵀ (rows×rows). */
  readonly side: 'AtA' | 'AAt';
}

/** The smaller of AᵀA and A·Aᵀ (AᵀA on ties); both share A's nonzero singular values squared. */
export function gram(a: Matrix): Gram {
  return a.cols <= a.rows ? { matrix: columnGram(a), side: 'AtA' } : { matrix: rowGram(a), side: 'AAt' };
}

/** Rows of A per block in columnGram. */
const GRAM_ROWS = 1024;

/**
 * AᵀA, upper triangle mirrored. Without the Gram kernel: summed over blocks of A's rows, each
 * block transposed on its own, so no transposed copy of the whole of A (a tall A's transpose was
 * a third of its Gram's time).
 */
function columnGram(a: Matrix): Matrix {
  const n = a.cols;
  const out = zeros(n, n);
  if (wasmGramUpper(a.data, a.rows, a.cols, 'AtA', out.data)) return mirrorUpper(out);
  for (let i0 = 0; i0 < a.rows; i0 += GRAM_ROWS) {
    const i1 = Math.min(a.rows, i0 + GRAM_ROWS);
    const blockT = transpose({ rows: i1 - i0, cols: n, data: a.data.subarray(i0 * n, i1 * n) });
    accumulateProductTransB(blockT.data, blockT.data, out.data, n, n, i1 - i0, true);
  }
  return mirrorUpper(out);
}

const TRANSPOSE_BLOCK = 32;

export function transpose(a: RowMajor): Matrix {
  const { rows, cols, data } = a;
  const out = new Float64Array(rows * cols);
  for (let i0 = 0; i0 < rows; i0 += TRANSPOSE_BLOCK) {
    const i1 = Math.min(rows, i0 + TRANSPOSE_BLOCK);
    for (let j0 = 0; j0 < cols; j0 += TRANSPOSE_BLOCK) {
      const j1 = Math.min(cols, j0 + TRANSPOSE_BLOCK);
      for (let i = i0; i < i1; i++) {
        for (let j = j0; j < j1; j++) out[j * rows + i] = data[i * cols + j]!;
      }
    }
  }
  return { rows: cols, cols: rows, data: out };
}

/** Frobenius norm, rescaled on the fly so huge or tiny entries neither overflow nor underflow. */
export function frobeniusNorm(a: Matrix): number {
  return euclideanNorm(a.data);
}

/** 2-norm of a vector with LAPACK dnrm2-style scaling. */
export function euclideanNorm(v: ArrayLike<number>, start = 0, end = v.length): number {
  let scale = 0;
  let sumSquares = 1;
  for (let i = start; i < end; i++) {
    const x = v[i]!;
    if (x === 0) continue;
    const ax = Math.abs(x);
    if (scale < ax) {
      const r = scale / ax;
      sumSquares = 1 + sumSquares * r * r;
      scale = ax;
    } else {
      const r = ax / scale;
      sumSquares += r * r;
    }
  }
  return scale * Math.sqrt(sumSquares);
}

export function scale(a: Matrix, factor: number): Matrix {
  const out = new Float64Array(a.data.length);
  for (let i = 0; i < out.length; i++) out[i] = a.data[i]! * factor;
  return { rows: a.rows, cols: a.cols, data: out };
}

export function add(a: Matrix, b: Matrix): Matrix {
  requireSameShape(a, b, 'add');
  const out = new Float64Array(a.data.length);
  for (let i = 0; i < out.length; i++) out[i] = a.data[i]! + b.data[i]!;
  return { rows: a.rows, cols: a.cols, data: out };
}

export function sub(a: Matrix, b: Matrix): Matrix {
  requireSameShape(a, b, 'sub');
  const out = new Float64Array(a.data.length);
  for (let i = 0; i < out.length; i++) out[i] = a.data[i]! - b.data[i]!;
  return { rows: a.rows, cols: a.cols, data: out };
}

/** Rows [rowStart, rowEnd) and columns [colStart, colEnd), copied. */
export function subMatrix(a: Matrix, rowStart: number, rowEnd: number, colStart: number, colEnd: number): Matrix {
  if (!(0 <= rowStart && rowStart <= rowEnd && rowEnd <= a.rows && 0 <= colStart && colStart <= colEnd && colEnd <= a.cols)) {
    throw new RangeError(`subMatrix [${rowStart},${rowEnd})x[${colStart},${colEnd}) outside ${a.rows}x${a.cols}`);
  }
  const rows = rowEnd - rowStart, cols = colEnd - colStart;
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const from = (rowStart + i) * a.cols + colStart;
    out.set(a.data.subarray(from, from + cols), i * cols);
  }
  return { rows, cols, data: out };
}

function checkIndices(indices: ArrayLike<number>, limit: number, what: string): void {
  for (let i = 0; i < indices.length; i++) {
    const x = indices[i]!;
    if (!(Number.isInteger(x) && x >= 0 && x < limit)) throw new RangeError(`${what}: index ${x} outside 0..${limit - 1}`);
  }
}

/** The rows listed in `indices` (repeats allowed), in that order. */
export function selectRows(a: Matrix, indices: ArrayLike<number>): Matrix {
  checkIndices(indices, a.rows, 'selectRows');
  const out = new Float64Array(indices.length * a.cols);
  for (let i = 0; i < indices.length; i++) {
    const from = indices[i]! * a.cols;
    out.set(a.data.subarray(from, from + a.cols), i * a.cols);
  }
  return { rows: indices.length, cols: a.cols, data: out };
}

/** The columns listed in `indices` (repeats allowed), in that order. */
export function selectCols(a: Matrix, indices: ArrayLike<number>): Matrix {
  checkIndices(indices, a.cols, 'selectCols');
  const k = indices.length;
  const out = new Float64Array(a.rows * k);
  for (let i = 0; i < a.rows; i++) {
    const r = i * a.cols;
    for (let j = 0; j < k; j++) out[i * k + j] = a.data[r + indices[j]!]!;
  }
  return { rows: a.rows, cols: k, data: out };
}

/**
 * Dot product of x[a, a + length) and y[b, b + length) in four running sums: a single sum waits
 * on every addition's latency, four keep the multiplier busy (about twice as fast); the result
 * differs from a single sum's only by rounding.
 */
export function spanDot(x: Float64Array, a: number, y: Float64Array, b: number, length: number): number {
  let d0 = 0, d1 = 0, d2 = 0, d3 = 0, q = 0;
  for (; q + 4 <= length; q += 4) {
    d0 += x[a + q]! * y[b + q]!;
    d1 += x[a + q + 1]! * y[b + q + 1]!;
    d2 += x[a + q + 2]! * y[b + q + 2]!;
    d3 += x[a + q + 3]! * y[b + q + 3]!;
  }
  for (; q < length; q++) d0 += x[a + q]! * y[b + q]!;
  return (d0 + d1) + (d2 + d3);
}
