/**
 * One streaming moments pass over every floating-point weight of a model, on all cores.
 *
 * The model is cut into units (element ranges of one tensor, up to 64 MiB); workers each open
 * the model themselves and take units as they finish. Every unit yields its own MomentSums and
 * the main thread merges them in unit order, so the result does not depend on the worker count.
 * 1- and 2-byte floats are counted into a histogram of bit patterns (one increment per element,
 * no decode) and the unit's sums come from the at most 65,536 distinct values exactly.
 */
import * as os from 'node:os';
import { Worker } from 'node:worker_threads';
import { BadInputError, LineageError } from '../io/errors.js';
import { decodeInto, decodeTable, DTYPE_BYTES, isFloatDType } from '../io/dtypes.js';
import { assertFinite, elementCount, openTensorSource, type SafetensorsSource } from '../io/source.js';
import type { TensorInfo } from '../io/types.js';
import { MomentAccumulator, type Moments, type MomentSums } from './moments.js';

export interface ScanOptions {
  /** Worker threads (default: all cores). 0 scans in the calling thread. */
  readonly workers?: number;
  /** Which tensors to include (default: all floating-point tensors). */
  readonly tensorFilter?: (info: TensorInfo) => boolean;
  /** Read buffer per worker (default 16 MiB). */
  readonly bufferBytes?: number;
}

export interface ScanResult {
  readonly perTensor: Map<string, Moments>;
  readonly overall: Moments;
  /** Payload bytes read from disk. */
  readonly bytes: number;
  readonly seconds: number;
}

export interface ScanUnit {
  readonly id: number;
  readonly tensor: string;
  readonly elemStart: number;
  readonly elemCount: number;
}

const MIN_UNIT_BYTES = 1024 * 1024;
const MAX_UNIT_BYTES = 64 * 1024 * 1024;

/** Cut the selected tensors into units small enough to keep every worker busy to the end. */
export function planScanUnits(tensors: Iterable<TensorInfo>, workers: number, filter?: (info: TensorInfo) => boolean): ScanUnit[] {
  const selected = [...tensors].filter((t) => isFloatDType(t.dtype) && (filter ? filter(t) : true));
  const total = selected.reduce((sum, t) => sum + t.byteLength, 0);
  const target = Math.min(MAX_UNIT_BYTES, Math.max(MIN_UNIT_BYTES, Math.ceil(total / (Math.max(1, workers) * 8))));
  const units: ScanUnit[] = [];
  for (const info of selected) {
    const count = elementCount(info);
    const perUnit = Math.max(1, Math.floor(target / DTYPE_BYTES[info.dtype]));
    for (let start = 0; start < count; start += perUnit) {
      units.push({ id: units.length, tensor: info.name, elemStart: start, elemCount: Math.min(perUnit, count - start) });
    }
  }
  return units;
}

/** Reusable per-thread memory for scanUnit. */
export interface ScanScratch {
  readonly counts: Uint32Array;
  readonly values: Float32Array;
}

export function createScanScratch(bufferBytes: number): ScanScratch {
  return { counts: new Uint32Array(65536), values: new Float32Array(Math.ceil(bufferBytes / 2)) };
}

/** Moment sums of one unit. Throws BadInputError "non-finite weight" on NaN or infinity. */
export function scanUnit(source: SafetensorsSource, unit: ScanUnit, scratch: ScanScratch): MomentSums {
  const info = source.info(unit.tensor);
  const table = decodeTable(info.dtype);
  if (table && unit.elemCount >= table.length) {
    const counts = scratch.counts.subarray(0, table.length);
    counts.fill(0);
    for (const chunk of source.rawChunks(unit.tensor, unit.elemStart, unit.elemCount)) {
      const { buffer, byteOffset } = chunk.bytes;
      if (table.length === 65536) countPatterns(new Uint16Array(buffer, byteOffset, chunk.elemCount), counts);
      else countPatterns(new Uint8Array(buffer, byteOffset, chunk.elemCount), counts);
    }
    return sumsFromHistogram(counts, table, info);
  }
  const acc = new MomentAccumulator();
  for (const chunk of source.rawChunks(unit.tensor, unit.elemStart, unit.elemCount)) {
    const { buffer, byteOffset } = chunk.bytes;
    let values: ArrayLike<number>;
    if (info.dtype === 'F32') values = new Float32Array(buffer, byteOffset, chunk.elemCount);
    else if (info.dtype === 'F64') values = new Float64Array(buffer, byteOffset, chunk.elemCount);
    else {
      const decoded = scratch.values.length >= chunk.elemCount ? scratch.values : new Float32Array(chunk.elemCount);
      decodeInto(info.dtype, chunk.bytes, chunk.elemCount, decoded, 0);
      values = decoded;
    }
    acc.add(values, 0, chunk.elemCount);
    // Power sums of finite float32/float64 weights stay finite, so this catches NaN/inf exactly.
    const sums = acc.toSums();
    if (!Number.isFinite(sums.s4) || !Number.isFinite(sums.s1)) {
      assertFinite(values, info.file, info.name, chunk.elemStart, chunk.elemCount);
    }
  }
  return acc.toSums();
}

function countPatterns(patterns: Uint16Array | Uint8Array, counts: Uint32Array): void {
  const n = patterns.length;
  for (let i = 0; i < n; i++) counts[patterns[i]!]!++;
}

/**
 * Shifted power sums of a histogram over decoded values, shifted by its mean. Sums are
 * compensated (Neumaier): odd sums cancel heavily and the bins are few, so this is nearly free.
 */
function sumsFromHistogram(counts: Uint32Array, table: Float32Array, info: TensorInfo): MomentSums {
  let n = 0;
  const total = new CompensatedSum();
  for (let code = 0; code < counts.length; code++) {
    const c = counts[code]!;
    if (c === 0) continue;
    const v = table[code]!;
    if (v - v !== 0) throw new BadInputError(`non-finite weight ${v} (${c} elements)`, { file: info.file, tensor: info.name });
    n += c;
    total.add(c * v);
  }
  const shift = n > 0 ? total.value() / n : null;
  const s1 = new CompensatedSum(), s2 = new CompensatedSum(), s3 = new CompensatedSum(), s4 = new CompensatedSum();
  for (let code = 0; code < counts.length; code++) {
    const c = counts[code]!;
    if (c === 0) continue;
    const d = table[code]! - (shift as number);
    const d2 = d * d;
    s1.add(c * d);
    s2.add(c * d2);
    s3.add(c * d2 * d);
    s4.add(c * d2 * d2);
  }
  return { shift, n, s1: s1.value(), s2: s2.value(), s3: s3.value(), s4: s4.value() };
}

class CompensatedSum {
  private sum = 0;
  private compensation = 0;
  add(x: number): void {
    const t = this.sum + x;
    this.compensation += Math.abs(this.sum) >= Math.abs(x) ? (this.sum - t) + x : (x - t) + this.sum;
    this.sum = t;
  }
  value(): number {
    return this.sum + this.compensation;
  }
}

/** Merge per-unit sums in unit order: per tensor, then overall in tensor order. */
function mergeUnits(tensorOrder: readonly string[], units: readonly ScanUnit[], sums: readonly MomentSums[]): Pick<ScanResult, 'perTensor' | 'overall'> {
  const perTensorAcc = new Map<string, MomentAccumulator>(tensorOrder.map((name) => [name, new MomentAccumulator()]));
  for (const unit of units) perTensorAcc.get(unit.tensor)!.merge(MomentAccumulator.fromSums(sums[unit.id]!));
  const overall = new MomentAccumulator();
  const perTensor = new Map<string, Moments>();
  for (const [name, acc] of perTensorAcc) {
    overall.merge(acc);
    perTensor.set(name, acc.result());
  }
  return { perTensor, overall: overall.result() };
}

export type WorkerRequest = { type: 'unit'; unit: ScanUnit } | { type: 'stop' };
export type WorkerReply =
  | { type: 'ready' }
  | { type: 'result'; id: number; sums: MomentSums }
  | { type: 'done'; bytesRead: number }
  | { type: 'error'; badInput: boolean; reason: string; message: string; file?: string; tensor?: string; stack?: string };

export interface ScanWorkerData {
  readonly path: string;
  readonly bufferBytes: number | undefined;
}

export async function scanMoments(modelPath: string, options: ScanOptions = {}): Promise<ScanResult> {
  const started = performance.now();
  const source = openTensorSource(modelPath, { bufferBytes: options.bufferBytes });
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  const requested = options.workers ?? cores;
  const units = planScanUnits(source.tensors.values(), Math.max(1, requested), options.tensorFilter);
  const tensorOrder = [...new Set(
    [...source.tensors.values()].filter((t) => isFloatDType(t.dtype) && (options.tensorFilter ? options.tensorFilter(t) : true)).map((t) => t.name),
  )];
  const workers = Math.min(requested, units.length);
  let sums: MomentSums[];
  let bytes: number;
  if (workers <= 0) {
    try {
      const scratch = createScanScratch(options.bufferBytes ?? 16 * 1024 * 1024);
      sums = units.map((unit) => scanUnit(source, unit, scratch));
      bytes = source.bytesRead;
    } finally {
      source.close();
    }
  } else {
    source.close();
    ({ sums, bytes } = await runWorkers(source.path, units, workers, options.bufferBytes));
  }
  return { ...mergeUnits(tensorOrder, units, sums), bytes, seconds: (performance.now() - started) / 1000 };
}

function runWorkers(modelPath: string, units: readonly ScanUnit[], count: number, bufferBytes: number | undefined):
  Promise<{ sums: MomentSums[]; bytes: number }> {
  return new Promise((resolve, reject) => {
    const sums: MomentSums[] = new Array(units.length);
    let next = 0;
    let finished = 0;
    let bytes = 0;
    let failed = false;
    const workerData: ScanWorkerData = { path: modelPath, bufferBytes };
    const workers: Worker[] = [];
    const fail = (err: Error) => {
      if (failed) return;
      failed = true;
      for (const w of workers) void w.terminate();
      reject(err);
    };
    const handOut = (worker: Worker) => {
      const request: WorkerRequest = next < units.length ? { type: 'unit', unit: units[next++]! } : { type: 'stop' };
      worker.postMessage(request);
    };
    for (let k = 0; k < count; k++) {
      const worker = new Worker(new URL('./scan-worker.js', import.meta.url), { workerData });
      workers.push(worker);
      worker.on('message', (reply: WorkerReply) => {
        if (failed) return;
        switch (reply.type) {
          case 'ready': handOut(worker); break;
          case 'result': sums[reply.id] = reply.sums; handOut(worker); break;
          case 'done':
            bytes += reply.bytesRead;
            if (++finished === count) resolve({ sums, bytes });
            break;
          case 'error':
            fail(reply.badInput
              ? new BadInputError(reply.reason, { file: reply.file, tensor: reply.tensor })
              : Object.assign(new Error(`scan worker failed: ${reply.message}`), { stack: reply.stack }));
            break;
        }
      });
      worker.on('error', fail);
      worker.on('exit', (code) => {
        if (code !== 0) fail(new Error(`scan worker exited with code ${code}`));
      });
    }
  });
}

/** Serialise an error for the trip from a worker to the main thread. */
export function errorReply(err: unknown): WorkerReply {
  if (err instanceof LineageError) {
    return { type: 'error', badInput: err instanceof BadInputError, reason: err.reason, message: err.message, file: err.file, tensor: err.tensor };
  }
  const e = err instanceof Error ? err : new Error(String(err));
  return { type: 'error', badInput: false, reason: e.message, message: e.message, stack: e.stack };
}
