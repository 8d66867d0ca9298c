/**
 * C += A·Bᵀ and Gram matrices through the WebAssembly SIMD kernels of gemm-wat.ts: about 13
 * GFLOP/s against about 3 for the register-blocked JavaScript loops of ops.ts (bench/linalg.ts).
 * Operands are copied into the module's memory (O(size) against the O(size·k) product), so small
 * products stay in JavaScript. One module instance per thread, created on first use.
 */
import { GEMM_WASM_BASE64 } from './gemm-wasm.js';
import { GRAM_PANEL } from './gemm-wat.js';
import { float64Heap, instantiateWasm, wasmKernelsEnabled } from './wasm-kernels.js';

export { useWasmKernels } from './wasm-kernels.js';

/** The instantiated module's exports. */
interface Kernel {
  readonly gemm: (a: number, b: number, out: number, m: number, n: number, k: number, j0: number, j1: number, p0: number, p1: number) => void;
  readonly gramPack: (src: number, dst: number, panels: number, rows: number, rowStride: number, columnStride: number) => void;
  readonly gramUpper: (x: number, out: number, n: number, rows: number) => void;
  readonly memory: WebAssembly.Memory;
}

let kernel: Kernel | null | undefined;

function load(): Kernel | null {
  if (kernel !== undefined) return kernel;
  const exports = instantiateWasm(GEMM_WASM_BASE64); // null: the JavaScript loop serves
  kernel = exports && {
    gemm: exports['gemm_nt'] as Kernel['gemm'],
    gramPack: exports['gram_pack'] as Kernel['gramPack'],
    gramUpper: exports['gram_upper'] as Kernel['gramUpper'],
    memory: exports['memory'] as WebAssembly.Memory,
  };
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
  const heap = float64Heap(kern.memory, bytes);
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

/** Bytes of a packed block of X's rows in wasmGramUpper: with its staging copy, in the core's L2 cache. */
const GRAM_BLOCK_BYTES = 1 << 17;
/** Fewest rows a block, so each pass over the output tiles is paid by enough work at wide n. */
const GRAM_MIN_ROWS = 64;
/**
 * Bytes of X staged at a time for A·Aᵀ, whose rows of X are columns of A: each row of A is copied
 * in one piece per slab of several blocks (a copy per row and block cost a third of the time).
 */
const GRAM_SLAB_BYTES = 1 << 20;

/**
 * The upper triangle (diagonal included) of XᵀX set in out (n×n), X = A for side 'AtA' (A k×n)
 * or Aᵀ for 'AAt' (A n×k), A row-major in a. X's rows go through the module in blocks: copied,
 * packed into panels (gram_pack), accumulated into the tiles of the upper triangle (gram_upper),
 * n padded with zero columns to a multiple of the panel. Returns false (nothing done) when the
 * kernel is off, missing or the product too small or too large for it.
 */
export function wasmGramUpper(a: Float64Array, rows: number, cols: number, side: 'AtA' | 'AAt', out: Float64Array): boolean {
  const n = side === 'AtA' ? cols : rows, k = side === 'AtA' ? rows : cols;
  if (!wasmKernelsEnabled() || n * n * k < MIN_WORK) return false;
  const width = Math.ceil(n / GRAM_PANEL) * GRAM_PANEL;
  const blockRows = Math.min(k, Math.max(GRAM_MIN_ROWS, Math.floor(GRAM_BLOCK_BYTES / (8 * width))));
  const slabRows = side === 'AtA' ? blockRows : Math.min(k, blockRows * Math.max(1, Math.floor(GRAM_SLAB_BYTES / (8 * width * blockRows))));
  const stageAt = width * width, packedAt = stageAt + slabRows * n;
  const bytes = (packedAt + blockRows * width) * 8;
  if (bytes > MAX_BYTES) return false;
  const kern = load();
  if (!kern) return false;
  const heap = float64Heap(kern.memory, bytes);
  heap.fill(0, 0, stageAt);
  for (let s0 = 0; s0 < k; s0 += slabRows) {
    const s1 = Math.min(k, s0 + slabRows);
    if (side === 'AtA') heap.set(a.subarray(s0 * n, s1 * n), stageAt);
    // Columns s0..s1 of A: row i's part of them at stageAt + i·slabRows.
    else for (let i = 0; i < n; i++) heap.set(a.subarray(i * k + s0, i * k + s1), stageAt + i * slabRows);
    for (let t0 = s0; t0 < s1; t0 += blockRows) {
      const t1 = Math.min(s1, t0 + blockRows);
      if (side === 'AtA') kern.gramPack(8 * (stageAt + (t0 - s0) * n), 8 * packedAt, n, t1 - t0, 8 * n, 8);
      else kern.gramPack(8 * (stageAt + t0 - s0), 8 * packedAt, n, t1 - t0, 8, 8 * slabRows);
      kern.gramUpper(8 * packedAt, 0, width, t1 - t0);
    }
  }
  for (let i = 0; i < n; i++) out.set(heap.subarray(i * width + i, i * width + n), i * n + i);
  return true;
}
