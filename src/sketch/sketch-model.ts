/**
 * One streaming pass over a model's linear weights -> ModelSketch.
 *
 * Per linear role matrix W (m x n), for its stored values and, when stored finer than bf16, for
 * their bf16 rounding too (always: rounding later would need a second read):
 * - the two-sided CountSketch S = Lᵀ W R (k x k; a side no longer than k kept whole), made by the
 *   WebAssembly kernel of linalg/stream-sketch.ts at one add per stored value;
 * - ||W||², and the rounding variance ulp(w)²/12 of the grid summed per sketch row and column
 *   (the exact variance profile of the rounding noise in the sketch);
 * and the moments of the stored values, plus the column CountSketch of evenly spaced gate/up
 * rows of a few layers (the neuron rows of the relatedness test).
 * A matrix is one job: jobs run in the order the tensors are stored (one forward pass over the
 * files), in this thread or spread over worker threads (parallel.ts), and are assembled in the
 * canonical layer and role order.
 */
import { gatherDecode, gridGeometry, isFloatDType, isIntegerDType, roundingVarianceTable, type FloatDType } from '../io/dtypes.js';
import type { DType } from '../io/types.js';
import type { StoredRoleReader } from '../arch/reader.js';
import { LINEAR_ROLES, type LayerRole, type ModelMap, type RoleRef } from '../arch/types.js';
import { MomentAccumulator } from '../stats/moments.js';
import { BadInputError } from '../io/errors.js';
import { signMasks, StreamSketcher, type ViewSpec } from '../linalg/stream-sketch.js';
import {
  SKETCH_FORMAT, type MatrixSketch, type ModelSketch, type NeuronSketch, type ResolvedSketchOptions, type SketchView,
} from './types.js';

/**
 * One linear role matrix to sketch. The relatedness test keeps two views of a few neurons: for a
 * gated MLP the column sketch of their gate and up rows (`capture`: rows); for a non-gated one
 * (fc_in, fc_out) the column sketch of their fc_in rows and the row sketch of their fc_out columns
 * (`captureColumns`), the same hidden units seen from both sides.
 */
export interface MatrixJob {
  readonly layer: number;
  readonly role: LayerRole;
  readonly ref: RoleRef;
  readonly capture: readonly number[];
  readonly captureColumns?: readonly number[];
  /** Stored payload bytes the job reads (for progress). */
  readonly bytes: number;
}

/** What one job yields: the matrix's sketch and its captured rows (capture.length x sketchCols) or columns (captureColumns.length x sketchRows). */
export interface MatrixResult {
  readonly matrix: MatrixSketch;
  readonly captured: Float32Array;
}

/** `count` indices spread evenly over 0..n-1 (all of them when count >= n). */
export function evenlySpaced(n: number, count: number): number[] {
  if (count >= n) return Array.from({ length: n }, (_, i) => i);
  return Array.from({ length: count }, (_, i) => Math.floor(((i + 0.5) * n) / count));
}

/** The model's matrix jobs, in the order their bytes are stored. */
export function matrixJobs(reader: StoredRoleReader, options: ResolvedSketchOptions): MatrixJob[] {
  const { map } = reader;
  const neuronLayers = evenlySpaced(map.layers.length, options.neuronLayers);
  const jobs: MatrixJob[] = [];
  map.layers.forEach((roles, layer) => {
    const pair = neuronLayers.includes(layer) ? neuronViews(roles) : null;
    for (const role of LINEAR_ROLES) {
      const ref = roles[role];
      if (!ref) continue;
      const bytes = reader.storage(layer, role).byteLength;
      if (pair && role === pair[1] && pair[1] === 'fc_out') {
        jobs.push({ layer, role, ref, capture: [], captureColumns: evenlySpaced(ref.shape![1], options.maxNeurons), bytes });
        continue;
      }
      const capture = pair && (role === pair[0] || role === pair[1]) ? evenlySpaced(ref.shape![0], options.maxNeurons) : [];
      jobs.push({ layer, role, ref, capture, bytes });
    }
  });
  if (jobs.length === 0) throw new BadInputError('no linear layer weights found to compare', { file: reader.path });
  const place = (job: MatrixJob) => {
    const stored = reader.storage(job.layer, job.role);
    return [stored.fileIndex, stored.start] as const;
  };
  return jobs
    .map((job, i) => ({ job, i, at: place(job) }))
    .sort((x, y) => x.at[0] - y.at[0] || x.at[1] - y.at[1] || x.i - y.i)
    .map((x) => x.job);
}

/**
 * The float grid a stored tensor's values lie on; block-quantized storage (GGUF) decodes to
 * float32 values whose noise is its blocks' steps, added per element (sourceVariance).
 */
/** The roles whose views of the MLP's neurons the relatedness test compares, or null. */
function neuronViews(roles: ModelMap['layers'][number]): readonly [LayerRole, LayerRole] | null {
  if (roles.gate && roles.up) return ['gate', 'up'];
  if (roles.fc_in && roles.fc_out) return ['fc_in', 'fc_out'];
  return null;
}

function storedGrid(dtype: string, reader: StoredRoleReader, where: { file: string; tensor: string }): { grid: FloatDType; quantized: boolean } {
  if (isFloatDType(dtype)) return { grid: dtype, quantized: false };
  if (reader.readRowsWithVarianceInto && !isIntegerDType(dtype)) return { grid: 'F32', quantized: true };
  throw new BadInputError(`linear weight stored as ${dtype}, expected a float or quantized type`, where);
}

/** Sketch one matrix from the reader: the plain stored bytes straight into the kernel where it can decode them. */
export function sketchMatrix(reader: StoredRoleReader, job: MatrixJob, k: number): MatrixResult {
  const { ref } = job;
  const [rows, cols] = ref.shape!;
  const info = reader.storage(job.layer, job.role);
  const where = { file: info.file, tensor: ref.tensor };
  const { grid: stored, quantized } = storedGrid(info.dtype, reader, where);
  // bf16 is the coarsest common grid hub models share; finer (and quantized) models also keep their bf16 view.
  const finer = stored === 'F32' || stored === 'F64' || stored === 'F16';
  const plain = !quantized && !ref.rows && !ref.rowRanges && !ref.transposed && cols % 4 === 0 && reader.readStoredRowsInto !== undefined;
  // The kernel decodes bf16, f16 and f32 storage itself; other storage comes decoded to f32.
  const raw = plain && (stored === 'BF16' || stored === 'F32' || stored === 'F16');
  const input = raw && stored === 'BF16' ? 'bf16' : raw && stored === 'F16' ? 'f16' : 'f32';
  const views: ViewSpec[] = [{ mode: input, grid: gridGeometry(stored) }];
  if (finer) views.push({ mode: input === 'f16' ? 'f16_bf16' : 'f32_bf16', grid: gridGeometry('BF16') });
  // Decoded rows are padded to a multiple of 4 columns with zeros, which change no sum or rank.
  const paddedCols = Math.ceil(cols / 4) * 4;
  const sketcher = new StreamSketcher(rows, paddedCols, k, views, job.capture);
  const noise = quantized ? new QuantizationNoise(cols, sketcher.sketchRows, sketcher.sketchCols) : null;
  const columns = job.captureColumns?.length ? new ColumnCapture(job.captureColumns, rows, sketcher.sketchRows) : null;
  try {
    if (raw) {
      for (let start = 0; start < rows; start += sketcher.rowsPerBlock) {
        const count = Math.min(sketcher.rowsPerBlock, rows - start);
        const bytes = sketcher.input(count);
        reader.readStoredRowsInto!(job.layer, job.role, start, start + count, bytes);
        columns?.addStored(info.dtype as DType, bytes, start, count, cols);
        sketcher.process(start, count);
      }
    } else {
      forEachDecodedRowBlock(reader, job, noise, (rowStart, rowEnd, data) => {
        columns?.addDecoded(data, rowStart, rowEnd - rowStart, cols);
        for (let start = rowStart; start < rowEnd; start += sketcher.rowsPerBlock) {
          const count = Math.min(sketcher.rowsPerBlock, rowEnd - start);
          const bytes = sketcher.input(count);
          const input = new Float32Array(bytes.buffer, bytes.byteOffset, count * paddedCols);
          for (let r = 0; r < count; r++) input.set(data.subarray((start - rowStart + r) * cols, (start - rowStart + r + 1) * cols), r * paddedCols);
          sketcher.process(start, count);
        }
      });
    }
  } catch (err) {
    sketcher.abandon();
    throw err;
  }
  const result = sketcher.finish();
  const sketchViews = result.views.map((v, i): SketchView => {
    // A NaN or infinity makes both sums non-finite; a magnitude of 2^64 or more overflows the float32
    // squares: the same refusal as verify's (io's LARGEST_WEIGHT).
    if (!(Number.isFinite(v.sums.s2) && Number.isFinite(v.roundingVariance))) {
      throw new BadInputError('non-finite weight (NaN or infinity) or one of magnitude 2^64 or more (refused: no trained weight is near)', where);
    }
    const sketch = Float32Array.from(v.sketch);
    return {
      dtype: i === 0 ? stored : 'BF16',
      sketch,
      squaredNorm: v.sums.s2,
      roundingVariance: v.roundingVariance + (noise?.total ?? 0),
      rowVariance: Array.from(v.rowVariance, (x, r) => x + (noise?.rows[r] ?? 0)),
      columnVariance: Array.from(v.columnVariance, (x, c) => x + (noise?.columns[c] ?? 0)),
      sketchRounding: float32StorageVariance(sketch),
    };
  });
  const stats = result.views[0]!.sums;
  const moments = MomentAccumulator.fromSums({ shift: 0, n: rows * cols, s1: stats.s1, s2: stats.s2, s3: stats.s3, s4: stats.s4 }).result();
  return {
    matrix: {
      layer: job.layer, role: job.role, rows, cols, sketchRows: sketcher.sketchRows, sketchCols: sketcher.sketchCols,
      leftProjected: rows > k, rightProjected: paddedCols > k, storedDtype: info.dtype, moments, views: sketchViews,
    },
    captured: columns ? columns.result() : result.captured,
  };
}

/**
 * The row-side CountSketch of a few columns (row i to bucket i mod k1 with the sketch's own row
 * sign), gathered from the blocks as they stream by: the fc_out view of a non-gated MLP's neurons.
 */
class ColumnCapture {
  private readonly sums: Float64Array;
  private readonly picked: Int32Array;
  private readonly signs: Uint32Array;
  private gathered = new Float32Array(0);

  constructor(picked: readonly number[], rows: number, private readonly k1: number) {
    this.picked = Int32Array.from(picked);
    this.sums = new Float64Array(picked.length * k1);
    this.signs = signMasks('row', rows, k1);
  }

  addStored(dtype: DType, bytes: Uint8Array, rowStart: number, count: number, cols: number): void {
    const n = this.picked.length;
    if (this.gathered.length < count * n) this.gathered = new Float32Array(count * n);
    gatherDecode(dtype, bytes, cols, this.picked, this.gathered, Int32Array.from({ length: count }, (_, r) => r));
    this.add(rowStart, count, (r, p) => this.gathered[r * n + p]!);
  }

  addDecoded(data: Float32Array, rowStart: number, count: number, cols: number): void {
    this.add(rowStart, count, (r, p) => data[r * cols + this.picked[p]!]!);
  }

  private add(rowStart: number, count: number, value: (row: number, picked: number) => number): void {
    const k1 = this.k1;
    for (let r = 0; r < count; r++) {
      const row = rowStart + r, bucket = row % k1, sign = this.signs[row] ? -1 : 1;
      for (let p = 0; p < this.picked.length; p++) this.sums[p * k1 + bucket]! += sign * value(r, p);
    }
  }

  result(): Float32Array {
    return Float32Array.from(this.sums);
  }
}

/** Mean per-entry variance of having stored the sketch itself in float32. */
function float32StorageVariance(sketch: Float32Array): number {
  const table = roundingVarianceTable('F32');
  const bits = new Uint32Array(sketch.buffer, sketch.byteOffset, sketch.length);
  let total = 0;
  for (let i = 0; i < bits.length; i++) total += table[(bits[i]! >>> 23) & 0xff]!;
  return bits.length ? total / bits.length : 0;
}

/**
 * Block-quantized storage's rounding noise (each element's step² / 12, as the source decodes it)
 * summed into the sketch's row and column buckets, as the kernel sums a float grid's.
 */
class QuantizationNoise {
  readonly rows: Float64Array;
  readonly columns: Float64Array;
  total = 0;

  constructor(private readonly matrixCols: number, k1: number, k2: number) {
    this.rows = new Float64Array(k1);
    this.columns = new Float64Array(k2);
  }

  add(rowStart: number, variance: Float32Array): void {
    const cols = this.matrixCols, k1 = this.rows.length, k2 = this.columns.length;
    for (let r = 0; r * cols < variance.length; r++) {
      let sum = 0;
      for (let j = 0; j < cols; j++) {
        const v = variance[r * cols + j]!;
        sum += v;
        this.columns[j % k2]! += v;
      }
      this.rows[(rowStart + r) % k1]! += sum;
      this.total += sum;
    }
  }
}

/**
 * Decoded rows of a role: plain tensors block by block (with their quantization noise when
 * `noise` is given), fused or transposed roles whole.
 */
function forEachDecodedRowBlock(
  reader: StoredRoleReader, job: MatrixJob, noise: QuantizationNoise | null, visit: (rowStart: number, rowEnd: number, data: Float32Array) => void,
): void {
  const { layer, role, ref } = job;
  if (noise && !ref.rows && !ref.transposed) {
    const [rows, cols] = ref.shape!;
    // Row ranges (GGUF's q/k read back in trained order) are read range by range.
    const ranges = ref.rowRanges ?? [[0, rows] as const];
    const perBlock = Math.max(1, Math.floor((1 << 20) / (cols * 4)));
    let at = 0;
    for (const [start, end] of ranges) {
      for (let r = start; r < end; r += perBlock) {
        const count = Math.min(perBlock, end - r);
        const data = new Float32Array(count * cols), variance = new Float32Array(count * cols);
        reader.readRowsWithVarianceInto!(layer, role, r, r + count, data, variance);
        noise.add(at, variance);
        visit(at, at + count, data);
        at += count;
      }
    }
    return;
  }
  if (!ref.rows && !ref.rowRanges && !ref.transposed) {
    for (const block of reader.storedRowBlocks(layer, role)) visit(block.rowStart, block.rowEnd, block.data);
    return;
  }
  const weight = reader.layer(layer, role);
  visit(0, weight.rows, weight.data);
}

/** The model's sketch from its jobs' results (any order of completion). */
export function assembleSketch(
  source: { readonly totalBytes: number }, map: ModelMap, fingerprint: string, options: ResolvedSketchOptions,
  jobs: readonly MatrixJob[], results: readonly MatrixResult[],
): ModelSketch {
  const byKey = new Map(jobs.map((job, i) => [`${job.layer}.${job.role}`, results[i]!]));
  const matrices: MatrixSketch[] = [];
  const neurons: NeuronSketch[] = [];
  map.layers.forEach((roles, layer) => {
    for (const role of LINEAR_ROLES) {
      const result = roles[role] ? byKey.get(`${layer}.${role}`) : undefined;
      if (result) matrices.push(result.matrix);
    }
    const pair = neuronViews(roles);
    const first = pair ? byKey.get(`${layer}.${pair[0]}`) : undefined, second = pair ? byKey.get(`${layer}.${pair[1]}`) : undefined;
    const dim = first?.matrix.sketchCols ?? 0;
    const count = dim > 0 ? first!.captured.length / dim : 0;
    if (first && second && count > 0 && second.captured.length === first.captured.length) {
      neurons.push({ layer, count, dim, gate: first.captured, up: second.captured });
    }
  });
  return {
    format: SKETCH_FORMAT, fingerprint, family: map.family, architecture: map.architecture ?? null, dims: map.dims, options,
    totalBytes: source.totalBytes, matrices, neurons,
  };
}

/** The whole sketch in this thread (parallel.ts spreads the same jobs over workers). */
export function sketchModel(reader: StoredRoleReader, fingerprint: string, options: ResolvedSketchOptions): ModelSketch {
  const jobs = matrixJobs(reader, options);
  const results = jobs.map((job) => sketchMatrix(reader, job, options.sketchSize));
  return assembleSketch(reader, reader.map, fingerprint, options, jobs, results);
}
