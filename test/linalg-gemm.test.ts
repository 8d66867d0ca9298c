/**
 * The WebAssembly product kernel (src/linalg/gemm.ts): its committed bytes are the current
 * compilation of gemm-wat.ts, and it gives the JavaScript loop's products (to rounding) on shapes
 * with every remainder (rows mod 4, columns mod 2, odd inner sizes, blocks of k and of B's rows).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileGemm } from '../scripts/build-gemm-wasm.js';
import { GEMM_WASM_BASE64 } from '../src/linalg/gemm-wasm.js';
import { wasmProductTransB } from '../src/linalg/gemm.js';
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
