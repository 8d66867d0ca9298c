/**
 * One streaming pass over a model's linear weights -> ModelSketch.
 *
 * Per linear role matrix W (m x n), for its stored values and, when stored finer than bf16,
 * for its bf16 rounding too (always: rounding later would need a second read):
 * - the two-sided sketch S = L^T W R, L (m x k) and R (n x k) seeded by shape (Gaussian with
 *   orthogonalised columns, see sketchProjection); a side
 *   no longer than k is kept whole (identity), so small matrices are sketched exactly;
 * - ||W||^2 and the sum of ulp(w)^2/12 (the rounding variance of the grid);
 * and the moments of the stored values, plus projected gate/up rows of a few layers.
 * Rows are read in blocks (one matrix's block at a time), so memory is bounded by the
 * largest block plus the k x k sketches, never by the model.
 */
import type { TensorSource } from '../io/types.js';
import { roundingVarianceTable, roundToDtype, type FloatDType } from '../io/dtypes.js';
import { readRole } from '../arch/map.js';
import { LINEAR_ROLES, type LayerRole, type ModelMap, type RoleRef } from '../arch/types.js';
import { MomentAccumulator } from '../stats/moments.js';
import { BadInputError } from '../io/errors.js';
import { gaussianProjection, sketchProjection } from './projection.js';
import {
  SKETCH_FORMAT, resolveSketchOptions, type MatrixSketch, type ModelSketch, type NeuronSketch, type SketchOptions,
  type SketchView,
} from './types.js';

const BLOCK_BYTES = 8 * 1024 * 1024;

export function sketchModel(source: TensorSource, map: ModelMap, fingerprint: string, options: SketchOptions = {}): ModelSketch {
  const resolved = resolveSketchOptions(options);
  const neuronLayers = evenlySpaced(map.layers.length, resolved.neuronLayers);
  const matrices: MatrixSketch[] = [];
  const neurons: NeuronSketch[] = [];
  map.layers.forEach((roles, layer) => {
    const keepNeurons = neuronLayers.includes(layer) && roles.gate !== undefined && roles.up !== undefined;
    const neuronRows: Partial<Record<LayerRole, Float32Array>> = {};
    for (const role of LINEAR_ROLES) {
      const ref = roles[role];
      if (!ref) continue;
      const rowsSink = keepNeurons && (role === 'gate' || role === 'up') ? neuronSink(ref, resolved.maxNeurons, resolved.neuronDim) : null;
      matrices.push(sketchMatrix(source, ref, layer, role, resolved.sketchSize, rowsSink));
      if (rowsSink) neuronRows[role] = rowsSink.result();
    }
    if (keepNeurons) {
      const gate = neuronRows.gate!, up = neuronRows.up!;
      neurons.push({ layer, count: gate.length / resolved.neuronDim, dim: resolved.neuronDim, gate, up });
    }
  });
  if (matrices.length === 0) throw new BadInputError('no linear layer weights found to compare', { file: source.path });
  return {
    format: SKETCH_FORMAT,
    fingerprint,
    family: map.family,
    architecture: map.architecture ?? null,
    dims: map.dims,
    options: resolved,
    totalBytes: source.totalBytes,
    matrices,
    neurons,
  };
}

/** `count` indices spread evenly over 0..n-1 (all of them when count >= n). */
export function evenlySpaced(n: number, count: number): number[] {
  if (count >= n) return Array.from({ length: n }, (_, i) => i);
  return Array.from({ length: count }, (_, i) => Math.floor(((i + 0.5) * n) / count));
}

interface RowSink {
  add(rowStart: number, rowEnd: number, cols: number, data: Float32Array): void;
  result(): Float32Array;
}

/** Collects the projected rows of evenly spaced neurons as the blocks stream by. */
function neuronSink(ref: RoleRef, maxNeurons: number, dim: number): RowSink {
  const [rows, cols] = ref.shape!;
  const picked = evenlySpaced(rows, maxNeurons);
  const projection = gaussianProjection('neuron', cols, dim);
  const out = new Float32Array(picked.length * dim);
  let next = 0;
  return {
    add(rowStart, rowEnd, n, data) {
      while (next < picked.length && picked[next]! < rowEnd) {
        const base = (picked[next]! - rowStart) * n;
        const acc = new Float64Array(dim);
        for (let j = 0; j < n; j++) {
          const w = data[base + j]!;
          if (w === 0) continue;
          const p = j * dim;
          for (let c = 0; c < dim; c++) acc[c] += w * projection[p + c]!;
        }
        out.set(acc, next * dim);
        next++;
      }
    },
    result: () => out,
  };
}

/** Streams a role's rows in blocks: plain tensors block by block, fused/transposed roles whole. */
function forEachRowBlock(source: TensorSource, ref: RoleRef, visit: (rowStart: number, rowEnd: number, cols: number, data: Float32Array) => void): void {
  if (!ref.rows && !ref.rowRanges && !ref.transposed) {
    for (const block of source.rowBlocks(ref.tensor, BLOCK_BYTES)) visit(block.rowStart, block.rowEnd, block.cols, block.data);
    return;
  }
  const weight = readRole(source, ref);
  visit(0, weight.rows, weight.cols, weight.data);
}

class ViewAccumulator {
  readonly sketch: Float64Array;
  squaredNorm = 0;
  roundingVariance = 0;
  private maxRowVariance = 0;
  private readonly columnVariance: Float64Array;
  private readonly table: Float64Array;
  private scratch = new Float64Array(0);

  constructor(
    readonly dtype: FloatDType,
    cols: number,
    private readonly k1: number,
    private readonly k2: number,
    private readonly left: Float64Array | null,
    private readonly right: Float64Array | null,
  ) {
    this.sketch = new Float64Array(k1 * k2);
    this.columnVariance = new Float64Array(cols);
    this.table = roundingVarianceTable(dtype);
  }

  add(rowStart: number, rowEnd: number, cols: number, data: Float32Array): void {
    const count = (rowEnd - rowStart) * cols;
    const bits = new Uint32Array(data.buffer, data.byteOffset, count);
    const table = this.table;
    const columnVariance = this.columnVariance;
    let sq = 0, noise = 0;
    for (let r = 0, i = 0; r < rowEnd - rowStart; r++) {
      let rowNoise = 0;
      for (let j = 0; j < cols; j++, i++) {
        const w = data[i]!;
        sq += w * w;
        const v = table[(bits[i]! >>> 23) & 0xff]!;
        rowNoise += v;
        columnVariance[j] += v;
      }
      noise += rowNoise;
      if (rowNoise > this.maxRowVariance) this.maxRowVariance = rowNoise;
    }
    this.squaredNorm += sq;
    this.roundingVariance += noise;
    this.project(rowStart, rowEnd, cols, data);
  }

  /** S += L[rows]^T (B R) for the block B; an identity side copies instead of projecting. */
  private project(rowStart: number, rowEnd: number, cols: number, data: Float32Array): void {
    const blockRows = rowEnd - rowStart;
    const k1 = this.k1, k2 = this.k2, right = this.right, left = this.left, s = this.sketch;
    if (this.scratch.length < k2) this.scratch = new Float64Array(k2);
    const t = this.scratch;
    for (let i = 0; i < blockRows; i++) {
      const base = i * cols;
      if (right) {
        t.fill(0, 0, k2);
        for (let j = 0; j < cols; j++) {
          const w = data[base + j]!;
          if (w === 0) continue;
          const p = j * k2;
          for (let c = 0; c < k2; c++) t[c] += w * right[p + c]!;
        }
      } else {
        for (let c = 0; c < k2; c++) t[c] = data[base + c]!;
      }
      const row = rowStart + i;
      if (left) {
        const lp = row * k1;
        for (let a = 0; a < k1; a++) {
          const l = left[lp + a]!;
          const o = a * k2;
          for (let c = 0; c < k2; c++) s[o + c] += l * t[c]!;
        }
      } else {
        const o = row * k2;
        for (let c = 0; c < k2; c++) s[o + c] = t[c]!;
      }
    }
  }

  finish(where: { file: string; tensor: string }): SketchView {
    // One check per matrix instead of per element: any NaN or infinity poisons the sum.
    if (!Number.isFinite(this.squaredNorm)) throw new BadInputError('non-finite weight', where);
    const sketch = Float32Array.from(this.sketch);
    const roundingTable = roundingVarianceTable('F32');
    const bits = new Uint32Array(sketch.buffer);
    let rounding = 0;
    for (let i = 0; i < bits.length; i++) rounding += roundingTable[(bits[i]! >>> 23) & 0xff]!;
    return {
      dtype: this.dtype,
      sketch,
      squaredNorm: this.squaredNorm,
      roundingVariance: this.roundingVariance,
      maxRowVariance: this.maxRowVariance,
      maxColumnVariance: this.columnVariance.reduce((m, v) => Math.max(m, v), 0),
      sketchRounding: bits.length ? rounding / bits.length : 0,
    };
  }
}

function storedGrid(dtype: string): FloatDType {
  if (dtype === 'BF16' || dtype === 'F16' || dtype === 'F32' || dtype === 'F64' || dtype === 'F8_E4M3' || dtype === 'F8_E5M2') return dtype;
  throw new BadInputError(`linear weight stored as ${dtype}, expected a float dtype`);
}

function sketchMatrix(source: TensorSource, ref: RoleRef, layer: number, role: LayerRole, k: number, rowsSink: RowSink | null): MatrixSketch {
  const [rows, cols] = ref.shape!;
  const info = source.tensors.get(ref.tensor)!;
  const stored = storedGrid(info.dtype);
  const leftProjected = rows > k, rightProjected = cols > k;
  const k1 = leftProjected ? k : rows, k2 = rightProjected ? k : cols;
  const left = leftProjected ? sketchProjection('left', rows, k) : null;
  const right = rightProjected ? sketchProjection('right', cols, k) : null;
  const views = [new ViewAccumulator(stored, cols, k1, k2, left, right)];
  // bf16 is the coarsest common grid the zoo and hub models share; finer models also get it.
  const finer = stored === 'F32' || stored === 'F64' || stored === 'F16';
  if (finer) views.push(new ViewAccumulator('BF16', cols, k1, k2, left, right));
  const moments = new MomentAccumulator();
  forEachRowBlock(source, ref, (rowStart, rowEnd, n, data) => {
    const count = (rowEnd - rowStart) * n;
    const values = data.length === count ? data : data.subarray(0, count);
    moments.add(values);
    views[0]!.add(rowStart, rowEnd, n, values);
    if (finer) views[1]!.add(rowStart, rowEnd, n, roundToDtype(values, 'BF16'));
    rowsSink?.add(rowStart, rowEnd, n, values);
  });
  return {
    layer, role, rows, cols, sketchRows: k1, sketchCols: k2, leftProjected, rightProjected,
    storedDtype: info.dtype, moments: moments.result(), views: views.map((v) => v.finish({ file: info.file, tensor: ref.tensor })),
  };
}
