/**
 * The O(n³) and O(n²·k) loops of symmetricEigen (eig.ts), on one float64 workspace: the
 * WebAssembly SIMD kernels of eig-wat.ts, working in the module's memory, or the JavaScript
 * loops below on an ordinary array when WebAssembly is off, missing or the workspace too large.
 * Offsets and counts are in float64 elements of the workspace.
 */
import { EIG_WASM_BASE64 } from './eig-wasm.js';
import { float64Heap, instantiateWasm, wasmKernelsEnabled } from './wasm-kernels.js';

/** The loops symmetricEigen runs, on one float64 workspace (offsets and counts in elements). */
export interface EigenKernels {
  /** The workspace, at least `length` long, earlier contents kept; views taken before are stale after it. */
  reserve(length: number): Float64Array;
  /** p[from..n) = B·v[from..n), B the trailing block from `from` of the n×n matrix at w, read from its upper triangle. */
  symvUpper(w: number, v: number, p: number, n: number, from: number): void;
  /** B_ij −= v_i·z_j + z_i·v_j for from ≤ i ≤ j < n: the upper triangle of B as above. */
  rank2Upper(w: number, v: number, z: number, n: number, from: number): void;
  /**
   * One QL sweep on the vectors in `panels` panels from x (see LANE_CHUNK): for i = l..m−1,
   * (x_i, x_i+1) ← (c·x_i + s·x_i+1, c·x_i+1 − s·x_i), the rotation for i at c − (i − l), s − (i − l).
   */
  rotateSweep(x: number, panels: number, n: number, c: number, s: number, l: number, m: number): void;
  /** Entries from..n−1 of the vectors (as above) ← (I − t·v·vᵀ)·x, v read from v[from..n). */
  reflect(x: number, panels: number, n: number, v: number, t: number, from: number): void;
}

/**
 * Vectors of n entries go LANE_CHUNK to a panel of n rows: entry i of vector q of panel P at
 * x + (P·n + i)·LANE_CHUNK + q. A rotation mixes neighbouring rows, and a sweep down a panel
 * reads memory in order (rows of a whole n-by-k block would be pages apart at large k).
 */
export const LANE_CHUNK = 8;

/** Largest workspace placed in the module's memory (its address arithmetic is signed 32-bit). */
const MAX_BYTES = 2 ** 31;

/** Kernels for a workspace of at most `length` elements. */
export function eigenKernels(length: number): EigenKernels {
  if (wasmKernelsEnabled() && length * 8 <= MAX_BYTES) {
    const wasm = loadWasm();
    if (wasm) return wasm;
  }
  return new JsEigenKernels();
}

let wasmKernels: EigenKernels | null | undefined;

function loadWasm(): EigenKernels | null {
  if (wasmKernels !== undefined) return wasmKernels;
  const exports = instantiateWasm(EIG_WASM_BASE64);
  if (!exports) return (wasmKernels = null);
  const memory = exports['memory'] as WebAssembly.Memory;
  const symv = exports['symv_upper'] as EigenKernels['symvUpper'];
  const rank2 = exports['rank2_upper'] as EigenKernels['rank2Upper'];
  const rotate = exports['rotate_sweep'] as EigenKernels['rotateSweep'];
  const reflect = exports['reflect'] as EigenKernels['reflect'];
  wasmKernels = {
    reserve: (length) => float64Heap(memory, length * 8).subarray(0, length),
    symvUpper: (w, v, p, n, from) => symv(8 * w, 8 * v, 8 * p, n, from),
    rank2Upper: (w, v, z, n, from) => rank2(8 * w, 8 * v, 8 * z, n, from),
    rotateSweep: (x, panels, n, c, s, l, m) => rotate(8 * x, panels, n, 8 * c, 8 * s, l, m),
    reflect: (x, panels, n, v, t, from) => reflect(8 * x, panels, n, 8 * v, t, from),
  };
  return wasmKernels;
}

class JsEigenKernels implements EigenKernels {
  private heap = new Float64Array(0);
  private readonly dots = new Float64Array(LANE_CHUNK);

  reserve(length: number): Float64Array {
    if (this.heap.length < length) {
      const grown = new Float64Array(length);
      grown.set(this.heap);
      this.heap = grown;
    }
    return this.heap;
  }

  symvUpper(w: number, v: number, p: number, n: number, from: number): void {
    // Each stored B_ij (j > i) adds to p_i and to p_j.
    const h = this.heap;
    h.fill(0, p + from, p + n);
    for (let i = from; i < n; i++) {
      const bi = w + i * n, vi = h[v + i]!;
      let s = h[bi + i]! * vi;
      for (let j = i + 1; j < n; j++) {
        const b = h[bi + j]!;
        s += b * h[v + j]!;
        h[p + j]! += b * vi;
      }
      h[p + i]! += s;
    }
  }

  rank2Upper(w: number, v: number, z: number, n: number, from: number): void {
    const h = this.heap;
    for (let i = from; i < n; i++) {
      const bi = w + i * n, vi = h[v + i]!, zi = h[z + i]!;
      for (let j = i; j < n; j++) h[bi + j]! -= vi * h[z + j]! + zi * h[v + j]!;
    }
  }

  rotateSweep(x: number, panels: number, n: number, c: number, s: number, l: number, m: number): void {
    // Row i+1 after rotation i is the row rotation i+1 mixes: carried, one load and store per row.
    // Four lanes at a time share the loads of c and s and overlap their dependency chains.
    const h = this.heap;
    for (let panel = x; panel < x + panels * n * LANE_CHUNK; panel += n * LANE_CHUNK) {
      for (let lane = panel; lane < panel + LANE_CHUNK; lane += 4) {
        let at = lane + l * LANE_CHUNK;
        let carry0 = h[at]!, carry1 = h[at + 1]!, carry2 = h[at + 2]!, carry3 = h[at + 3]!;
        for (let t = 0; t < m - l; t++) {
          const cc = h[c - t]!, ss = h[s - t]!, below = at + LANE_CHUNK;
          const next0 = h[below]!, next1 = h[below + 1]!, next2 = h[below + 2]!, next3 = h[below + 3]!;
          h[at] = cc * carry0 + ss * next0;
          h[at + 1] = cc * carry1 + ss * next1;
          h[at + 2] = cc * carry2 + ss * next2;
          h[at + 3] = cc * carry3 + ss * next3;
          carry0 = cc * next0 - ss * carry0;
          carry1 = cc * next1 - ss * carry1;
          carry2 = cc * next2 - ss * carry2;
          carry3 = cc * next3 - ss * carry3;
          at = below;
        }
        h[at] = carry0;
        h[at + 1] = carry1;
        h[at + 2] = carry2;
        h[at + 3] = carry3;
      }
    }
  }

  reflect(x: number, panels: number, n: number, v: number, t: number, from: number): void {
    const h = this.heap;
    const dots = this.dots;
    for (let panel = x; panel < x + panels * n * LANE_CHUNK; panel += n * LANE_CHUNK) {
      dots.fill(0);
      for (let i = from; i < n; i++) {
        const vi = h[v + i]!, o = panel + i * LANE_CHUNK;
        for (let q = 0; q < LANE_CHUNK; q++) dots[q]! += vi * h[o + q]!;
      }
      for (let q = 0; q < LANE_CHUNK; q++) dots[q]! *= t;
      for (let i = from; i < n; i++) {
        const vi = h[v + i]!, o = panel + i * LANE_CHUNK;
        for (let q = 0; q < LANE_CHUNK; q++) h[o + q]! -= vi * dots[q]!;
      }
    }
  }
}
