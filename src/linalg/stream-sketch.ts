/**
 * The streaming two-sided CountSketch of a matrix W (rows x cols) from its stored bytes, one
 * pass, O(1) work per stored value: S = Lᵀ W R with L and R sign-flipped bucket maps (row i to
 * bucket i mod k1 with sign σ_i, column j to j mod k2 with sign τ_j). Each value lands in exactly
 * one sketch entry, so
 * - E ||Lᵀ D R||² = ||D||² for any D (gain 1, the cross terms cancel in the signs' mean), and R's
 *   columns are exactly orthogonal (disjoint supports): even noise stays white in the sketch;
 * - entries of the sketch of independent noise are independent, with variance the sum of the
 *   noise's variances over the entry's block, so the sketch's exact variance profile is known
 *   from the per-row and per-bucket-column sums the kernel gathers (rowVariance, columnVariance);
 * - a side no longer than k is kept whole (identity: bucket i, no sign).
 * The per-value work (decode, rounding variance, fold, power sums) runs in the WebAssembly SIMD
 * kernel of sketch-wat.ts; a JavaScript loop with the same memory layout serves where the module
 * cannot be compiled, and in tests as the reference.
 */
import { Rng } from './rng.js';
import { SKETCH_MODE_BYTES, type SketchKernelMode } from './sketch-wat.js';
import { SKETCH_WASM_BASE64 } from './sketch-wasm.js';
import { float64Heap, instantiateWasm, wasmKernelsEnabled } from './wasm-kernels.js';

export type { SketchKernelMode } from './sketch-wat.js';

/** A float grid: significand bits (with the implicit one) and its smallest normal exponent. */
export interface GridGeometry {
  readonly precision: number;
  readonly minExponent: number;
}

/** One view of the stored values: how they are decoded, and the grid their rounding noise is on. */
export interface ViewSpec {
  readonly mode: SketchKernelMode;
  readonly grid: GridGeometry;
}

export interface PowerSums {
  readonly n: number;
  readonly s1: number;
  readonly s2: number;
  readonly s3: number;
  readonly s4: number;
}

export interface StreamedView {
  /** k1 x k2, row-major, float64. */
  readonly sketch: Float64Array;
  /** Unshifted power sums of the view's values (s2 = ||W||²). */
  readonly sums: PowerSums;
  /** Sum over all values of ulp²/12 on the view's grid. */
  readonly roundingVariance: number;
  /** Those variances summed per sketch row (the rows of W in each row bucket). */
  readonly rowVariance: Float64Array;
  /** Those variances summed per sketch column (the columns of W in each column bucket). */
  readonly columnVariance: Float64Array;
}

/** Stored bytes per kernel call: stays in cache while the kernel runs over it. */
export const SKETCH_BLOCK_BYTES = 1024 * 1024;

type KernelFunction = (
  input: number, rows: number, cols: number, k2: number, signs: number, fold: number, colVar: number, rowVar: number,
  sums: number, rowStart: number, k1: number, rowSigns: number, sketch: number, minNormal: number, ulpScale: number,
) => void;

interface Heap {
  /** Grows the memory to at least `bytes`; returns the buffer to view. */
  ensure(bytes: number): ArrayBuffer;
  readonly run: ((mode: SketchKernelMode) => KernelFunction) | null;
}

let wasmHeap: Heap | null | undefined;

function loadWasmHeap(): Heap | null {
  if (wasmHeap !== undefined) return wasmHeap;
  const exports = instantiateWasm(SKETCH_WASM_BASE64);
  if (!exports) return (wasmHeap = null);
  const memory = exports['memory'] as WebAssembly.Memory;
  const heap: Heap = {
    ensure: (bytes) => float64Heap(memory, bytes).buffer as ArrayBuffer,
    run: (mode) => exports[`sketch_rows_${mode}`] as KernelFunction,
  };
  return (wasmHeap = heap);
}

function javascriptHeap(): Heap {
  let buffer = new ArrayBuffer(0);
  return {
    ensure(bytes) {
      if (buffer.byteLength < bytes) buffer = new ArrayBuffer(bytes);
      return buffer;
    },
    run: null,
  };
}

const SIGN_SALT = { row: 0x6a09e667, column: 0xbb67ae85 } as const;
const signMemo = new Map<string, Uint32Array>();

/**
 * Sign masks (0 or 0x80000000) of a side of `dim` entries sketched to `width`: a function of
 * (side, dim, width) only, so every model of a shape is sketched alike. All zero when the side is
 * kept whole.
 */
export function signMasks(side: 'row' | 'column', dim: number, width: number): Uint32Array {
  const key = `${side}:${dim}:${width}`;
  let masks = signMemo.get(key);
  if (!masks) {
    masks = new Uint32Array(dim);
    if (dim > width) {
      const rng = new Rng((SIGN_SALT[side] ^ Math.imul(dim, 0x9e3779b1) ^ Math.imul(width, 0x85ebca6b)) >>> 0);
      for (let i = 0; i < dim; i += 32) {
        const bits = rng.nextUint32();
        for (let b = 0; b < 32 && i + b < dim; b++) masks[i + b] = ((bits >>> b) & 1) << 31;
      }
    }
    if (signMemo.size > 256) signMemo.clear();
    signMemo.set(key, masks);
  }
  return masks;
}

/** The sketch side of a matrix side: the whole side up to k, else k buckets. */
export function sketchSide(dim: number, k: number): number {
  return dim <= k ? dim : k;
}

let busy = false;

/**
 * Sketches one matrix fed block by block in row order: `input(count)` gives the area to place
 * `count` rows of stored bytes in (row-major, cols values each), `process(rowStart, count)` runs
 * every view over them. One sketcher per thread at a time (they share the kernel's memory).
 * `capture` lists rows (ascending) whose folded columns (k2 values, the column side's
 * CountSketch of that row) are kept: the neuron rows of the relatedness test.
 */
export class StreamSketcher {
  readonly sketchRows: number;
  readonly sketchCols: number;
  readonly rowsPerBlock: number;
  private readonly heap: Heap;
  private readonly layout: ReturnType<typeof planLayout>;
  private readonly rowBuckets: Float64Array[];
  private readonly columnBuckets: Float64Array[];
  private readonly captured: Float32Array;
  private nextCapture = 0;
  private finished = false;

  constructor(
    readonly rows: number,
    readonly cols: number,
    k: number,
    private readonly views: readonly ViewSpec[],
    private readonly capture: readonly number[] = [],
    useWasm = wasmKernelsEnabled(),
  ) {
    if (cols % 4 !== 0 || k % 4 !== 0) throw new RangeError(`stream sketch needs cols and k in multiples of 4, got ${cols} and ${k}`);
    if (views.length === 0) throw new RangeError('stream sketch needs at least one view');
    const bytes = SKETCH_MODE_BYTES[views[0]!.mode];
    if (views.some((v) => SKETCH_MODE_BYTES[v.mode] !== bytes)) throw new RangeError('the views of one sketch must read the same stored width');
    if (busy) throw new Error('one StreamSketcher per thread at a time');
    this.sketchRows = sketchSide(rows, k);
    this.sketchCols = sketchSide(cols, k);
    this.rowsPerBlock = Math.max(1, Math.min(rows, Math.floor(SKETCH_BLOCK_BYTES / (cols * bytes))));
    this.heap = (useWasm ? loadWasmHeap() : null) ?? javascriptHeap();
    this.layout = planLayout(rows, cols, this.sketchRows, this.sketchCols, this.rowsPerBlock, bytes, views.length);
    const buffer = this.heap.ensure(this.layout.end);
    new Uint8Array(buffer, 0, this.layout.end).fill(0);
    new Uint32Array(buffer, this.layout.signs, cols).set(signMasks('column', cols, this.sketchCols));
    new Uint32Array(buffer, this.layout.rowSigns, rows).set(signMasks('row', rows, this.sketchRows));
    this.rowBuckets = views.map(() => new Float64Array(this.sketchRows));
    this.columnBuckets = views.map(() => new Float64Array(this.sketchCols));
    this.captured = new Float32Array(capture.length * this.sketchCols);
    busy = true;
  }

  /** The area for `count` rows of stored bytes (valid until the next call into the kernel). */
  input(count: number): Uint8Array {
    if (!(count >= 1 && count <= this.rowsPerBlock)) throw new RangeError(`${count} rows do not fit a block of ${this.rowsPerBlock}`);
    return new Uint8Array(this.heap.ensure(this.layout.end), this.layout.input, count * this.cols * this.layout.valueBytes);
  }

  /** Runs every view over the `count` rows from `rowStart` placed in input(). */
  process(rowStart: number, count: number): void {
    if (this.finished) throw new Error('sketch already finished');
    const { layout, sketchRows: k1, sketchCols: k2 } = this;
    const buffer = this.heap.ensure(layout.end);
    // The stored view (the first) runs last, so the fold area then holds its folds for capture.
    for (let v = this.views.length - 1; v >= 0; v--) {
      const view = this.views[v]!;
      const at = layout.view[v]!;
      const minNormal = Math.fround(2 ** Math.max(view.grid.minExponent, -126));
      const ulpScale = Math.fround(2 ** (1 - view.grid.precision) / Math.sqrt(12));
      const args = [layout.input, count, this.cols, k2, layout.signs, layout.fold, at.colVar, layout.rowVar, at.sums, rowStart, k1,
        layout.rowSigns, at.sketch, minNormal, ulpScale] as const;
      if (this.heap.run) this.heap.run(view.mode)(...args);
      else sketchRowsJs(buffer, view.mode, ...args);
      const rowVar = new Float64Array(buffer, layout.rowVar, count);
      const buckets = this.rowBuckets[v]!;
      for (let r = 0, b = rowStart % k1; r < count; r++) {
        buckets[b]! += rowVar[r]!;
        if (++b === k1) b = 0;
      }
      const colVar = new Float32Array(buffer, at.colVar, k2);
      const columns = this.columnBuckets[v]!;
      for (let c = 0; c < k2; c++) columns[c]! += colVar[c]!;
      colVar.fill(0);
    }
    const fold = new Float32Array(buffer, layout.fold, count * k2);
    while (this.nextCapture < this.capture.length && this.capture[this.nextCapture]! < rowStart + count) {
      const row = this.capture[this.nextCapture]! - rowStart;
      if (row >= 0) this.captured.set(fold.subarray(row * k2, (row + 1) * k2), this.nextCapture * k2);
      this.nextCapture++;
    }
  }

  finish(): { views: StreamedView[]; captured: Float32Array } {
    if (this.finished) throw new Error('sketch already finished');
    this.finished = true;
    busy = false;
    const buffer = this.heap.ensure(this.layout.end);
    const views = this.views.map((_, v): StreamedView => {
      const at = this.layout.view[v]!;
      const sums = new Float64Array(buffer, at.sums, 4);
      const rowVariance = this.rowBuckets[v]!;
      let roundingVariance = 0;
      for (let i = 0; i < rowVariance.length; i++) roundingVariance += rowVariance[i]!;
      return {
        sketch: new Float64Array(buffer, at.sketch, this.sketchRows * this.sketchCols).slice(),
        sums: { n: this.rows * this.cols, s1: sums[0]!, s2: sums[1]!, s3: sums[2]!, s4: sums[3]! },
        roundingVariance,
        rowVariance,
        columnVariance: this.columnBuckets[v]!,
      };
    });
    return { views, captured: this.captured };
  }

  /** Releases the kernel for the next sketcher of this thread without a result (after an error). */
  abandon(): void {
    if (!this.finished) busy = false;
    this.finished = true;
  }
}

/** Byte offsets of the kernel's areas; per view its sketch (float64), column buckets and sums. */
function planLayout(rows: number, cols: number, k1: number, k2: number, rowsPerBlock: number, valueBytes: number, viewCount: number) {
  let end = 0;
  const take = (bytes: number) => {
    const at = end;
    end += Math.ceil(bytes / 16) * 16;
    return at;
  };
  const view = Array.from({ length: viewCount }, () => ({ sketch: take(k1 * k2 * 8), colVar: take(k2 * 4), sums: take(32) }));
  const signs = take(cols * 4);
  const rowSigns = take(rows * 4);
  const fold = take(rowsPerBlock * k2 * 4);
  const rowVar = take(rowsPerBlock * 8);
  const input = take(rowsPerBlock * cols * valueBytes);
  return { view, signs, rowSigns, fold, rowVar, input, end, valueBytes };
}

/**
 * The kernel's arithmetic in JavaScript, same memory layout and same float32 steps (lane sums are
 * kept per lane, as the SIMD code keeps them, so results agree to rounding).
 */
function sketchRowsJs(
  buffer: ArrayBuffer, mode: SketchKernelMode, input: number, rows: number, cols: number, k2: number, signs: number, fold: number,
  colVar: number, rowVar: number, sums: number, rowStart: number, k1: number, rowSigns: number, sketch: number,
  minNormal: number, ulpScale: number,
): void {
  const f32 = new Float32Array(buffer), u32 = new Uint32Array(buffer), u16 = new Uint16Array(buffer), f64 = new Float64Array(buffer);
  const bitsView = new Uint32Array(1), floatView = new Float32Array(bitsView.buffer);
  const asFloat = (bits: number) => {
    bitsView[0] = bits;
    return floatView[0]!;
  };
  const floatBits = (value: number) => {
    floatView[0] = value;
    return bitsView[0]!;
  };
  const fr = Math.fround;
  const lanes = () => new Float64Array(4);
  let bucket = rowStart % k1;
  for (let r = 0; r < rows; r++) {
    const rowFold = fold / 4 + r * k2;
    f32.fill(0, rowFold, rowFold + k2);
    const vr = lanes(), v1 = lanes(), v2 = lanes(), v3 = lanes(), v4 = lanes();
    for (let j = 0; j < cols; j++) {
      const e = r * cols + j;
      let bits: number;
      if (mode === 'bf16') bits = (u16[input / 2 + e]! << 16) >>> 0;
      else if (mode === 'f16' || mode === 'f16_bf16') {
        const h = u16[input / 2 + e]!;
        bits = (h & 0x7c00) === 0x7c00 ? 0x7f800000 : floatBits(fr(asFloat((h & 0x7fff) << 13) * 2 ** 112));
        bits = (bits | ((h & 0x8000) << 16)) >>> 0;
      } else bits = u32[input / 4 + e]!;
      if (mode === 'f32_bf16' || mode === 'f16_bf16') bits = ((bits + 0x7fff + ((bits >>> 16) & 1)) & 0xffff0000) >>> 0;
      const lane = j & 3, c = j % k2;
      const u = fr(fr(Math.max(asFloat(bits & 0x7f800000), minNormal)) * ulpScale);
      const variance = fr(u * u);
      vr[lane] = fr(vr[lane]! + variance);
      f32[colVar / 4 + c] = fr(f32[colVar / 4 + c]! + variance);
      f32[rowFold + c] = fr(f32[rowFold + c]! + asFloat((bits ^ u32[signs / 4 + j]!) >>> 0));
      const x = asFloat(bits), x2 = fr(x * x);
      v1[lane] = fr(v1[lane]! + x);
      v2[lane] = fr(v2[lane]! + x2);
      v3[lane] = fr(v3[lane]! + fr(x2 * x));
      v4[lane] = fr(v4[lane]! + fr(x2 * x2));
    }
    const laneSum = (v: Float64Array) => (v[0]! + v[1]!) + (v[2]! + v[3]!);
    f64[rowVar / 8 + r] = laneSum(vr);
    f64[sums / 8] += laneSum(v1);
    f64[sums / 8 + 1] += laneSum(v2);
    f64[sums / 8 + 2] += laneSum(v3);
    f64[sums / 8 + 3] += laneSum(v4);
    const flip = u32[rowSigns / 4 + rowStart + r]! !== 0;
    for (let c = 0; c < k2; c++) f64[sketch / 8 + bucket * k2 + c] += flip ? -f32[rowFold + c]! : f32[rowFold + c]!;
    if (++bucket === k1) bucket = 0;
  }
}
