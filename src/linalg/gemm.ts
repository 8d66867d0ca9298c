import { GEMM_WASM_BASE64 } from './gemm-wasm.js';
import { instantiateWasm, wasmKernelsEnabled } from './wasm-kernels.js';

export { useWasmKernels } from './wasm-kernels.js';

/**
 * C += A·Bᵀ through the WebAssembly SIMD kernel of gemm-wat.ts: about 13 GFLOP/s against about 3
 * for the register-blocked JavaScript loop (bench/linalg.ts). Operands are copied into the
 * module's memory (O(size) against the O(size·k) product), so small products stay in JavaScript.
 * One module instance per thread, created on first use.
 */
interface Kernel {
  readonly gemm: (a: number, b: number, out: number, m: number, n: number, k: number, j0: number, j1: number, p0: number, p1: number) => void;
  readonly memory: WebAssembly.Memory;
}

let kernel: Kernel | null | undefined;

function load(): Kernel | null {
  if (kernel !== undefined) return kernel;
  const exports = instantiateWasm(GEMM_WASM_BASE64); // null: the JavaScript loop serves
  kernel = exports && { gemm: exports['gemm_nt'] as Kernel['gemm'], memory: exports['memory'] as WebAssembly.Memory };
  return kernel;
}

/** Products below this many multiply-adds are not worth the copies. */
const MIN_WORK = 1 << 16;
/** Largest working set (A, B and C) placed in the module's 32-bit memory. */
const MAX_BYTES = 2 ** 31;
const K_BLOCK = 512;
const B_ROWS_BLOCK = 64;

/**
 * out[i*n + j] += Σ_p a[i*k + p] · b[j*k + p]; with upperOnly, blocks entirely below the diagonal
 * may be skipped. Returns false (nothing done) when the kernel is off, missing or the product is
 * too small or too large for it.
 */
export function wasmProductTransB(
  a: Float64Array, b: Float64Array, out: Float64Array, m: number, n: number, k: number, upperOnly: boolean,
): boolean {
  if (!wasmKernelsEnabled() || m * n * k < MIN_WORK || m < 4 || n < 2) return false;
  // A Gram product (b is a, as rowGram passes it) copies its operand once.
  const shared = a === b && m === n;
  const bytes = (m * k + (shared ? 0 : n * k) + m * n) * 8;
  if (bytes > MAX_BYTES) return false;
  const kern = load();
  if (!kern) return false;
  const have = kern.memory.buffer.byteLength;
  if (have < bytes) kern.memory.grow(Math.ceil((bytes - have) / 65536));
  const heap = new Float64Array(kern.memory.buffer);
  const aAt = 0, bAt = shared ? 0 : m * k, outAt = m * k + (shared ? 0 : n * k);
  heap.set(a.subarray(0, m * k), aAt);
  if (!shared) heap.set(b.subarray(0, n * k), bAt);
  heap.set(out.subarray(0, m * n), outAt);
  for (let p0 = 0; p0 < k; p0 += K_BLOCK) {
    const p1 = Math.min(k, p0 + K_BLOCK);
    for (let j0 = 0; j0 < n; j0 += B_ROWS_BLOCK) {
      const j1 = Math.min(n, j0 + B_ROWS_BLOCK);
      const rows = upperOnly ? Math.min(m, j1) : m;
      kern.gemm(aAt * 8, bAt * 8, outAt * 8, rows, n, k, j0, j1, p0, p1);
    }
  }
  out.set(heap.subarray(outAt, outAt + m * n));
  return true;
}
