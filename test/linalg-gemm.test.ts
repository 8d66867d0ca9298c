/**
 * The WebAssembly product kernels (src/linalg/gemm.ts): their committed bytes are the current
 * compilation of gemm-wat.ts, and they give the JavaScript loops' products (to rounding) on shapes
 * with every remainder (rows mod 4, columns mod 2, odd inner sizes, blocks of k and of B's rows;
 * for the Gram kernel, sizes mod its panel and partial blocks and slabs of the summed side).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileGemm } from '../scripts/build-gemm-wasm.js';
import { GEMM_WASM_BASE64 } from '../src/linalg/gemm-wasm.js';
import { wasmGramUpper, wasmProductTransB } from '../src/linalg/gemm.js';
import type { Matrix } from '../src/linalg/matrix.js';
import { gram, matmulTransB } from '../src/linalg/ops.js';
import { Rng } from '../src/linalg/rng.js';
import { bothPaths } from './linalg-helpers.js';

test('committed WebAssembly bytes are the compilation of gemm-wat.ts (npm run build:wasm)', async () => {
  assert.equal(Buffer.from(await compileGemm()).toString('base64'), GEMM_WASM_BASE64);
});

function assertClose(a: Float64Array, b: Float64Array, what: string): void {
  assert.equal(a.length, b.length, what);
  let scale = 0, diff = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(a[i]!));
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
  }
  assert.ok(diff <= 1e-12 * Math.max(scale, 1), `${what}: max difference ${diff} at scale ${scale}`);
}

test('A·Bᵀ: WebAssembly and JavaScript agree on shapes with every remainder', () => {
  const rng = new Rng(5);
  for (const [m, n, k] of [[4, 2, 4096], [7, 5, 3], [33, 17, 1], [130, 67, 1031], [257, 129, 600], [64, 200, 513]] as const) {
    const a = rng.gaussianMatrix(m, k), b = rng.gaussianMatrix(n, k);
    const [js, wasm] = bothPaths(() => matmulTransB(a, b));
    assertClose(js.data, wasm.data, `${m}x${k} by ${n}x${k}`);
  }
});

test('the Gram matrix (upper blocks only, mirrored) and accumulation into a non-zero output', () => {
  const rng = new Rng(6);
  const x = rng.gaussianMatrix(301, 77);
  const [js, wasm] = bothPaths(() => gram(x).matrix);
  assertClose(js.data, wasm.data, 'gram');
  const a = rng.gaussianMatrix(40, 300), b = rng.gaussianMatrix(30, 300);
  const out = Float64Array.from({ length: 40 * 30 }, (_, i) => i);
  const expected = matmulTransB(a, b).data.map((v, i) => v + i);
  assert.equal(wasmProductTransB(a.data, b.data, out, 40, 30, 300, false), true, 'large enough for the kernel');
  assertClose(expected, out, 'accumulated');
});

/** AᵀA (tall or square A) or A·Aᵀ (wide A) by the defining sums, in plain order. */
function naiveGram(a: Matrix): Float64Array {
  const tall = a.cols <= a.rows, n = tall ? a.cols : a.rows, k = tall ? a.rows : a.cols;
  const at = (t: number, i: number) => (tall ? a.data[t * a.cols + i]! : a.data[i * a.cols + t]!);
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += at(t, i) * at(t, j);
      out[i * n + j] = s;
    }
  }
  return out;
}

test('Gram kernel: WebAssembly, JavaScript and the defining sums agree; the result is exactly symmetric', () => {
  const rng = new Rng(7);
  // Tall and wide, n = 1, 2, 3 and not a multiple of 4; the summed side in partial blocks (64 rows)
  // and, for A·Aᵀ, partial slabs; one side 256 wide as the library calls it.
  for (const [rows, cols] of [
    [70000, 1], [1, 70000], [40000, 2], [3, 30000], [3000, 5], [301, 77], [77, 3001], [4099, 64], [255, 1030], [1100, 256], [256, 1100],
  ] as const) {
    const a = rng.gaussianMatrix(rows, cols);
    const tall = cols <= rows, n = tall ? cols : rows;
    const upper = new Float64Array(n * n);
    assert.equal(wasmGramUpper(a.data, rows, cols, tall ? 'AtA' : 'AAt', upper), true, `${rows}x${cols} is large enough for the kernel`);
    const [js, wasm] = bothPaths(() => gram(a).matrix);
    const expected = naiveGram(a);
    assertClose(expected, js.data, `${rows}x${cols} JavaScript`);
    assertClose(expected, wasm.data, `${rows}x${cols} WebAssembly`);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) assert.equal(wasm.data[i * n + j], wasm.data[j * n + i], `${rows}x${cols} symmetric at ${i},${j}`);
    }
  }
});

test('Gram kernel: a second call with a smaller matrix is not disturbed by the first one\'s data', () => {
  const rng = new Rng(8);
  gram(rng.gaussianMatrix(3000, 130));
  for (const a of [rng.gaussianMatrix(2000, 129), rng.gaussianMatrix(127, 2001)]) {
    assertClose(naiveGram(a), gram(a).matrix.data, `${a.rows}x${a.cols} after a larger one`);
  }
});
