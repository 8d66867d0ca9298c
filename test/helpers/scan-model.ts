/**
 * One streaming moments pass over every floating-point weight of a model, on all cores.
 *
 * The model is cut into units (element ranges of one tensor, 16 MiB of payload at most);
 * workers each open the model themselves and take units as they finish. Every unit yields its
 * own MomentSums and the main thread merges them in unit order, so results are bit-identical
 * whatever the worker count. Within a unit, 1- and 2-byte floats are decoded through their
 * lookup table inside the moments loop (no intermediate float32 array); power sums are taken
 * in blocks of 4,096 and the block sums added with compensation, so accuracy does not decay
 * with tensor size.
 */
import * as os from 'node:os';
import { Worker } from 'node:worker_threads';
import { deserializeError, serializeError, type SerializedError } from '../../src/io/errors.js';
import { decodeInto, decodeTable, DTYPE_BYTES, isFloatDType } from '../../src/io/dtypes.js';
import { assertFinite, elementCount, openSafetensorsSource, type SafetensorsSource } from '../../src/io/source.js';
import type { SafetensorsTensorInfo, TensorInfo } from '../../src/io/types.js';
import { MomentAccumulator, type Moments, type MomentSums } from '../../src/stats/moments.js';

export interface ScanOptions {
  /** Worker threads (default: all cores). 0 scans in the calling thread. */
  readonly workers?: number;
  /** Which tensors to include (default: all floating-point tensors). */
  readonly tensorFilter?: (info: TensorInfo) => boolean;
  /** Read buffer per worker (default 16 MiB). */
  readonly bufferBytes?: number;
  /** Largest unit of work (default SCAN_UNIT_BYTES); results depend on it, not on `workers`. */
  readonly unitBytes?: number;
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

/** Fixed, not derived from the worker count: the same units give the same rounding. */
export const SCAN_UNIT_BYTES = 16 * 1024 * 1024;

/** Cut the selected floating-point tensors into units of at most SCAN_UNIT_BYTES, in tensor order. */
export function planScanUnits(tensors: Iterable<SafetensorsTensorInfo>, filter?: (info: SafetensorsTensorInfo) => boolean, unitBytes = SCAN_UNIT_BYTES): ScanUnit[] {
  const selected = [...tensors].filter((t) => isFloatDType(t.dtype) && (filter ? filter(t) : true));
  const target = unitBytes;
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

const BLOCK = 4096;

/** Moment sums of one unit. Throws BadInputError "non-finite weight" on NaN or infinity. */
export function scanUnit(source: SafetensorsSource, unit: ScanUnit): MomentSums {
  const info = source.info(unit.tensor);
  const table = decodeTable(info.dtype);
  const sums = new BlockedSums();
  for (const chunk of source.rawChunks(unit.tensor, unit.elemStart, unit.elemCount)) {
    const { buffer, byteOffset } = chunk.bytes;
    const count = chunk.elemCount;
    const wide = table ? null
      : info.dtype === 'F64' ? new Float64Array(buffer, byteOffset, count) : new Float32Array(buffer, byteOffset, count);
    if (wide) {
      sums.add(count, (from, to, shift, out) => valuePowerSums(wide, shift, from, to, out));
    } else {
      const codes = table!.length === 65536 ? new Uint16Array(buffer, byteOffset, count) : new Uint8Array(buffer, byteOffset, count);
      sums.add(count, (from, to, shift, out) => codedPowerSums(codes, table!, shift, from, to, out));
    }
    if (!sums.finite()) {
      // Find the culprit. Huge finite F64 weights can overflow the fourth power; those pass.
      let values: ArrayLike<number> | null = wide;
      if (!values) {
        const decoded = new Float32Array(count);
        decodeInto(info.dtype, chunk.bytes, count, decoded, 0);
        values = decoded;
      }
      assertFinite(values, info.file, info.name, chunk.elemStart, count);
    }
  }
  return sums.result();
}

type BlockKernel = (from: number, to: number, shift: number, out: Float64Array) => void;

/**
 * Power sums of (x - shift), shift = mean of the unit's first block. Each block's sums are
 * added to the totals with Neumaier compensation.
 */
class BlockedSums {
  private shift: number | null = null;
  private n = 0;
  private readonly partial = new Float64Array(4);
  private readonly totals = new Float64Array(4);
  private readonly compensation = new Float64Array(4);

  add(count: number, kernel: BlockKernel): void {
    const partial = this.partial, totals = this.totals, compensation = this.compensation;
    for (let from = 0; from < count; from += BLOCK) {
      const to = Math.min(count, from + BLOCK);
      if (this.shift === null) {
        kernel(from, to, 0, partial);
        this.shift = partial[0]! / (to - from);
      }
      kernel(from, to, this.shift, partial);
      for (let k = 0; k < 4; k++) {
        const x = partial[k]!, sum = totals[k]!;
        const t = sum + x;
        compensation[k]! += Math.abs(sum) >= Math.abs(x) ? (sum - t) + x : (x - t) + sum;
        totals[k] = t;
      }
      this.n += to - from;
    }
  }

  finite(): boolean {
    return Number.isFinite(this.totals[1]! + this.totals[3]!);
  }

  result(): MomentSums {
    const s = (k: number) => this.totals[k]! + this.compensation[k]!;
    return { shift: this.shift, n: this.n, s1: s(0), s2: s(1), s3: s(2), s4: s(3) };
  }
}

// The two kernels differ only in how an element is fetched; a shared callback would cost V8
// an indirect call per element, which is most of the time here.
function codedPowerSums(codes: Uint16Array | Uint8Array, table: Float32Array, shift: number, from: number, to: number, out: Float64Array): void {
  let s1 = 0, s2 = 0, s3 = 0, s4 = 0;
  for (let i = from; i < to; i++) {
    const d = table[codes[i]!]! - shift;
    const d2 = d * d;
    s1 += d; s2 += d2; s3 += d2 * d; s4 += d2 * d2;
  }
  out[0] = s1; out[1] = s2; out[2] = s3; out[3] = s4;
}

function valuePowerSums(values: Float32Array | Float64Array, shift: number, from: number, to: number, out: Float64Array): void {
  let s1 = 0, s2 = 0, s3 = 0, s4 = 0;
  for (let i = from; i < to; i++) {
    const d = values[i]! - shift;
    const d2 = d * d;
    s1 += d; s2 += d2; s3 += d2 * d; s4 += d2 * d2;
  }
  out[0] = s1; out[1] = s2; out[2] = s3; out[3] = s4;
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
  | ({ type: 'error' } & SerializedError);

export interface ScanWorkerData {
  readonly path: string;
  readonly bufferBytes: number | undefined;
}

export async function scanMoments(modelPath: string, options: ScanOptions = {}): Promise<ScanResult> {
  const started = performance.now();
  const source = openSafetensorsSource(modelPath, { bufferBytes: options.bufferBytes });
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  const requested = options.workers ?? cores;
  const units = planScanUnits(source.tensors.values(), options.tensorFilter, options.unitBytes);
  const tensorOrder = [...new Set(
    [...source.tensors.values()].filter((t) => isFloatDType(t.dtype) && (options.tensorFilter ? options.tensorFilter(t) : true)).map((t) => t.name),
  )];
  const workers = Math.min(requested, units.length);
  let sums: MomentSums[];
  let bytes: number;
  if (workers <= 0) {
    try {
      sums = units.map((unit) => scanUnit(source, unit));
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
            fail(deserializeError(reply, 'scan worker failed'));
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
  return { type: 'error', ...serializeError(err) };
}
