import { useWasmKernels } from '../src/linalg/gemm.js';
import { type Matrix, diagonal } from '../src/linalg/matrix.js';
import { matmul, matmulTransA, matmulTransB } from '../src/linalg/ops.js';
import { qr } from '../src/linalg/qr.js';
import { type Rng } from '../src/linalg/rng.js';

/** f with the WebAssembly kernels off, then on: [JavaScript result, WebAssembly result]. */
export function bothPaths<T>(f: () => T): [T, T] {
  useWasmKernels(false);
  try {
    const js = f();
    useWasmKernels(true);
    return [js, f()];
  } finally {
    useWasmKernels(true);
  }
}

/** m×k with orthonormal columns drawn from Haar-like Gaussian QR. */
export function randomOrthonormal(rng: Rng, m: number, k: number): Matrix {
  return qr(rng.gaussianMatrix(m, k)).q;
}

/** U·diag(s)·Vᵀ with random orthonormal U (m×k) and V (n×k), k = s.length. */
export function withSpectrum(rng: Rng, m: number, n: number, s: ArrayLike<number>): Matrix {
  const k = s.length;
  return matmulTransB(matmul(randomOrthonormal(rng, m, k), diagonal(s)), randomOrthonormal(rng, n, k));
}

/** k geometric values from 1 down to smallest. */
export function geometric(k: number, smallest: number): Float64Array {
  return Float64Array.from({ length: k }, (_, i) => Math.pow(smallest, i / (k - 1)));
}

export function maxAbsDiff(a: Matrix, b: Matrix): number {
  let worst = 0;
  for (let i = 0; i < a.data.length; i++) worst = Math.max(worst, Math.abs(a.data[i]! - b.data[i]!));
  return worst;
}

/** max |QᵀQ − I|. */
export function orthonormalityError(q: Matrix): number {
  const g = matmulTransA(q, q);
  let worst = 0;
  for (let i = 0; i < g.rows; i++) {
    for (let j = 0; j < g.cols; j++) worst = Math.max(worst, Math.abs(g.data[i * g.cols + j]! - (i === j ? 1 : 0)));
  }
  return worst;
}

export function naiveMatmul(a: Matrix, b: Matrix): Matrix {
  const out = new Float64Array(a.rows * b.cols);
  for (let i = 0; i < a.rows; i++) {
    for (let j = 0; j < b.cols; j++) {
      let s = 0;
      for (let p = 0; p < a.cols; p++) s += a.data[i * a.cols + p]! * b.data[p * b.cols + j]!;
      out[i * b.cols + j] = s;
    }
  }
  return { rows: a.rows, cols: b.cols, data: out };
}
