/**
 * Open what a user points at (a .safetensors file, a Hugging Face model folder, sharded or not,
 * or a PEFT adapter folder) as a lazy TensorSource. Only headers are read up front; tensor bytes
 * are read on demand, by byte range, through one bounded reusable buffer.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BadInputError } from './errors.js';
import { DTYPE_BYTES, decodeInto, gatherDecode, gathersFromBytes, isIntegerDType } from './dtypes.js';
import { readRegularFile, readSafetensorsHeader } from './safetensors.js';
import { DEFAULT_BUFFER_BYTES, FileTensorSource, matrixShape, elementCount, type OpenOptions } from './file-source.js';
import { GgufSource } from './gguf-source.js';
import type { RowBlock, SafetensorsTensorInfo, TensorInfo, TensorSource } from './types.js';

export { DEFAULT_BUFFER_BYTES, elementCount, matrixShape, type OpenOptions } from './file-source.js';

/** A chunk of a tensor's stored bytes, holding whole elements; valid until the next chunk. */
export interface RawChunk {
  /** Aligned view of the bounded buffer (byteOffset 0). */
  readonly bytes: Uint8Array;
  /** First flat element index of the chunk within the tensor. */
  readonly elemStart: number;
  readonly elemCount: number;
}

const PICKLE_PATTERN = /\.(bin|pt|pth|pkl|pickle|ckpt)$/i;
const GGUF_PATTERN = /\.gguf$/i;

/**
 * A file name that marks its folder as one model's (safetensors or GGUF weights or shards, or
 * pickle weights, which opening refuses): such a folder is opened as a model, never searched for models.
 */
export function isWeightsFileName(name: string): boolean {
  return name.endsWith('.safetensors') || GGUF_PATTERN.test(name) || PICKLE_PATTERN.test(name);
}

/** Open a model, adapter or weights file: a `.gguf` file (or any part of a split) as GGUF, the rest as safetensors. */
export function openTensorSource(inputPath: string, options: OpenOptions = {}): TensorSource {
  const resolved = path.resolve(inputPath);
  if (GGUF_PATTERN.test(resolved) && isFile(resolved)) return new GgufSource(resolved, options);
  return openSafetensorsSource(resolved, options);
}

function isFile(file: string): boolean {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Open safetensors weights only (a GGUF file is refused as not safetensors). */
export function openSafetensorsSource(inputPath: string, options: OpenOptions = {}): SafetensorsSource {
  const resolved = path.resolve(inputPath);
  let stat: fs.Stats;
  try {
    stat = fs.statSync(resolved);
  } catch {
    throw new BadInputError('no such file or folder', { file: resolved });
  }
  const layout = stat.isDirectory() ? resolveFolder(resolved) : resolveFile(resolved);
  return new SafetensorsSource(resolved, layout, options.bufferBytes ?? DEFAULT_BUFFER_BYTES, options.onBytes);
}

interface Layout {
  readonly files: readonly string[];
  readonly config: Record<string, unknown> | null;
  /** For sharded models: tensor name -> shard file, as the index lists it. */
  readonly index: ReadonlyMap<string, string> | null;
  readonly indexFile: string | null;
}

function resolveFile(file: string): Layout {
  if (PICKLE_PATTERN.test(file)) throw pickleError(file);
  if (!file.endsWith('.safetensors')) throw new BadInputError('not a .safetensors file, .gguf file or model folder', { file });
  return { files: [file], config: null, index: null, indexFile: null };
}

function resolveFolder(dir: string): Layout {
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  if (fs.existsSync(indexFile)) {
    const index = readShardIndex(dir, indexFile);
    const files = [...new Set(index.values())].sort();
    for (const shard of files) {
      if (!fs.existsSync(shard)) throw new BadInputError(`missing shard ${path.basename(shard)} listed in the index`, { file: shard });
    }
    return { files, config: readJsonIfPresent(path.join(dir, 'config.json')), index, indexFile };
  }
  const single = path.join(dir, 'model.safetensors');
  if (fs.existsSync(single)) {
    return { files: [single], config: readJsonIfPresent(path.join(dir, 'config.json')), index: null, indexFile: null };
  }
  const adapter = path.join(dir, 'adapter_model.safetensors');
  if (fs.existsSync(adapter)) {
    return { files: [adapter], config: readJsonIfPresent(path.join(dir, 'adapter_config.json')), index: null, indexFile: null };
  }
  const names = fs.readdirSync(dir).sort();
  const others = names.filter((n) => n.endsWith('.safetensors')).map((n) => path.join(dir, n));
  if (others.length > 0) {
    return { files: others, config: readJsonIfPresent(path.join(dir, 'config.json')), index: null, indexFile: null };
  }
  const gguf = names.filter((n) => GGUF_PATTERN.test(n));
  if (gguf.length > 0) {
    throw new BadInputError(`no safetensors weights in folder; it holds GGUF files: give one of them (${gguf.slice(0, 3).join(', ')}) as the model`, { file: dir });
  }
  const pickle = names.find((n) => PICKLE_PATTERN.test(n));
  if (pickle) throw pickleError(path.join(dir, pickle));
  throw new BadInputError('no safetensors weights in folder (expected model.safetensors, model.safetensors.index.json or adapter_model.safetensors)', { file: dir });
}

function pickleError(file: string): BadInputError {
  return new BadInputError(
    'only pickle weights found: pickles are never executed or parsed here; convert the model to safetensors '
    + '(e.g. save_pretrained(..., safe_serialization=True))', { file });
}

function readJsonIfPresent(file: string): Record<string, unknown> | null {
  if (!fs.existsSync(file)) return null;
  const parsed = readJsonFile(file);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new BadInputError('JSON is not an object', { file });
  return parsed as Record<string, unknown>;
}

/** JSON files beside weights (configs, indexes, truth files) are small; this bounds what is read. */
const MAX_JSON_BYTES = 64 * 1024 * 1024;

/** Parse a JSON file that must be a regular file of at most 64 MiB; anything else is a BadInputError. */
export function readJsonFile(file: string): unknown {
  const bytes = readRegularFile(file, MAX_JSON_BYTES);
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new BadInputError(`bad JSON (${(err as Error).message})`, { file });
  }
}

function readShardIndex(dir: string, indexFile: string): Map<string, string> {
  const parsed = readJsonIfPresent(indexFile)!;
  const weightMap = parsed['weight_map'];
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new BadInputError('index has no weight_map object', { file: indexFile });
  }
  const index = new Map<string, string>();
  for (const [tensor, shard] of Object.entries(weightMap)) {
    // Shard names are plain file names inside the folder; anything else could escape it.
    if (typeof shard !== 'string' || shard === '' || path.isAbsolute(shard) || shard.split(/[\\/]/).includes('..')) {
      throw new BadInputError(`index names a bad shard ${JSON.stringify(shard)}`, { file: indexFile, tensor });
    }
    index.set(tensor, path.join(dir, shard));
  }
  return index;
}

export class SafetensorsSource extends FileTensorSource<SafetensorsTensorInfo> {
  readonly config: Readonly<Record<string, unknown>> | null;

  constructor(resolvedPath: string, layout: Layout, bufferBytes: number, onBytes?: (byteCount: number) => void) {
    super(resolvedPath, path.basename(resolvedPath), layout.files, bufferBytes, onBytes);
    this.config = layout.config;
    const tensors = new Map<string, SafetensorsTensorInfo>();
    try {
      const perFile = new Map<string, readonly SafetensorsTensorInfo[]>();
      for (const file of layout.files) perFile.set(file, readSafetensorsHeader(file, this.fd(file)).tensors);
      if (layout.index) {
        const held = new Map<string, Map<string, SafetensorsTensorInfo>>();
        for (const [file, list] of perFile) held.set(file, new Map(list.map((t) => [t.name, t])));
        const listed: SafetensorsTensorInfo[] = [];
        for (const [tensor, shard] of layout.index) {
          const info = held.get(shard)!.get(tensor);
          if (!info) throw new BadInputError(`index lists this tensor in shard ${path.basename(shard)}, which does not hold it`, { file: shard, tensor });
          listed.push(info);
        }
        // A tensor a shard holds but the index leaves out would silently vanish (an omitted
        // lm_head would then read as tied embeddings): refuse rather than guess.
        for (const [file, byName] of held) {
          for (const tensor of byName.keys()) {
            if (layout.index.get(tensor) !== file) {
              throw new BadInputError(`shard holds a tensor the index ${layout.index.has(tensor) ? 'places in another shard' : 'does not list'}`, { file, tensor });
            }
          }
        }
        // Payload order (file, then position) keeps full passes sequential on disk.
        const fileOrder = new Map(layout.files.map((f, i) => [f, i]));
        listed.sort((a, b) => fileOrder.get(a.file)! - fileOrder.get(b.file)! || a.start - b.start);
        for (const info of listed) tensors.set(info.name, info);
      } else {
        for (const [file, list] of perFile) {
          for (const info of list) {
            const seen = tensors.get(info.name);
            if (seen) throw new BadInputError(`tensor appears in two files (also in ${seen.file})`, { file, tensor: info.name });
            tensors.set(info.name, info);
          }
        }
      }
    } catch (err) {
      this.close();
      throw err;
    }
    this.setTensors(tensors);
  }

  protected storedRowBytes(info: SafetensorsTensorInfo): number {
    return matrixShape(info).cols * DTYPE_BYTES[info.dtype];
  }

  protected decodeElements(info: SafetensorsTensorInfo, elemStart: number, out: Float32Array): void {
    this.readInto(info.name, elemStart, out);
  }

  readStoredRowsInto(name: string, rowStart: number, rowEnd: number, out: Uint8Array): void {
    const info = this.info(name);
    const rowBytes = this.storedRowBytes(info);
    this.checkRows(info, rowStart, rowEnd, (rowEnd - rowStart) * matrixShape(info).cols);
    if (out.length !== (rowEnd - rowStart) * rowBytes) throw new RangeError(`rows [${rowStart}, ${rowEnd}) of ${name} take ${(rowEnd - rowStart) * rowBytes} bytes, not ${out.length}`);
    this.readStored(info, info.start + rowStart * rowBytes, out.length, out);
  }

  /** Decode out.length elements starting at flat element `elemStart` into `out`. */
  readInto(name: string, elemStart: number, out: Float32Array): void {
    const info = this.info(name);
    for (const chunk of this.rawChunks(name, elemStart, out.length)) {
      decodeInto(info.dtype, chunk.bytes, chunk.elemCount, out, chunk.elemStart - elemStart);
    }
  }

  readSelectionInto(name: string, rows: ArrayLike<number> | null, cols: ArrayLike<number> | null, out: Float32Array): void {
    const info = this.info(name);
    const shape = matrixShape(info);
    const rowCount = rows ? rows.length : shape.rows, colCount = cols ? cols.length : shape.cols;
    checkIndices(rows, shape.rows, 'row', name);
    checkIndices(cols, shape.cols, 'column', name);
    if (out.length !== rowCount * colCount) throw new RangeError(`${rowCount}x${colCount} selection of ${name} read into ${out.length} values`);
    const size = DTYPE_BYTES[info.dtype], rowBytes = shape.cols * size;
    const columns = cols ? Int32Array.from(cols) : null;
    const rowScratch = columns && !gathersFromBytes(info.dtype) ? new Float32Array(shape.cols) : null;
    const buffer = this.buffer();
    const perRead = Math.max(1, Math.floor(this.bufferBytes / Math.max(1, rowBytes)));
    // Runs of consecutive stored rows, read in ascending order a bounded buffer at a time.
    for (const run of rowRuns(rows, shape.rows)) {
      for (let done = 0; done < run.length; done += perRead) {
        const count = Math.min(perRead, run.length - done), first = run.start + done;
        const bytes = this.readStored(info, info.start + first * rowBytes, count * rowBytes,
          count * rowBytes <= buffer.length ? buffer : Buffer.allocUnsafeSlow(count * rowBytes));
        const outRows = run.outRows.subarray(done, done + count);
        if (columns && !rowScratch) {
          gatherDecode(info.dtype, bytes, shape.cols, columns, out, outRows);
          continue;
        }
        for (let t = 0; t < count; t++) {
          const at = outRows[t]! * colCount, row = bytes.subarray(t * rowBytes, (t + 1) * rowBytes);
          if (!columns) decodeInto(info.dtype, row, shape.cols, out, at);
          else {
            decodeInto(info.dtype, row, shape.cols, rowScratch!, 0);
            for (let q = 0; q < colCount; q++) out[at + q] = rowScratch![columns[q]!]!;
          }
        }
      }
    }
  }

  /**
   * Stream the stored bytes of elements [elemStart, elemStart + count) through the bounded
   * buffer, undecoded. Each chunk is valid only until the next one is produced.
   */
  *rawChunks(name: string, elemStart = 0, count?: number): Iterable<RawChunk> {
    const info = this.info(name);
    const total = elementCount(info);
    const n = count ?? total - elemStart;
    if (!(Number.isInteger(elemStart) && Number.isInteger(n) && elemStart >= 0 && n >= 0 && elemStart + n <= total)) {
      throw new RangeError(`elements [${elemStart}, ${elemStart + n}) outside 0..${total} of ${name}`);
    }
    const size = DTYPE_BYTES[info.dtype];
    const perChunk = Math.floor(this.bufferBytes / size);
    for (let done = 0; done < n; done += perChunk) {
      const elemCount = Math.min(perChunk, n - done);
      const bytes = this.readStored(info, info.start + (elemStart + done) * size, elemCount * size);
      yield { bytes, elemStart: elemStart + done, elemCount };
    }
  }
}

/**
 * Magnitude from which a weight is refused: no trained weight comes near 2^64, and beyond it the
 * analyses' squares (a bf16 value's rounding variance ulp^2 / 12 reaches float32's range at about
 * 2^74) would overflow and read as no change at all.
 */
export const LARGEST_WEIGHT = 2 ** 64;

/**
 * Throw BadInputError "non-finite weight" at the first NaN or infinity among values[0..count),
 * or "weight too large" at the first of magnitude LARGEST_WEIGHT or more; `indexOffset` is added
 * to the reported element index (for chunks of a larger tensor).
 */
export function assertFinite(values: ArrayLike<number>, file: string, tensor: string, indexOffset = 0, count = values.length): void {
  const bad = values instanceof Float32Array ? firstUnusableFloat32(values, count) : firstUnusable(values, count);
  if (bad < 0) return;
  const v = values[bad]!;
  if (v - v !== 0) throw new BadInputError(`non-finite weight ${v} at element ${indexOffset + bad}`, { file, tensor });
  throw new BadInputError(`weight too large: ${v} at element ${indexOffset + bad} (magnitudes of 2^64 and more are refused: no trained weight is near, and the analysis would overflow)`, { file, tensor });
}

/** Read a whole tensor through the bounded buffer and throw at its first unusable value (integer tensors pass). */
export function assertTensorFinite(source: TensorSource, name: string): void {
  const info = source.tensors.get(name);
  if (!info || isIntegerDType(info.dtype)) return;
  // Row blocks decode any float or quantized storage through the source's bounded buffer.
  for (const block of source.rowBlocks(name)) assertFinite(block.data, info.file, name, block.rowStart * block.cols, block.data.length);
}

/** Index of the first NaN, infinity or value of magnitude LARGEST_WEIGHT or more, or -1. */
function firstUnusable(values: ArrayLike<number>, count: number): number {
  for (let i = 0; i < count; i++) {
    const v = values[i]!;
    if (!(Math.abs(v) < LARGEST_WEIGHT)) return i;
  }
  return -1;
}

/** Exponent field from which a float32 is at least LARGEST_WEIGHT (2^64: 127 + 64); 255 is NaN or infinity. */
const UNUSABLE_EXPONENT = 127 + 64;

/** Float32 is checked on its bits: bit 8 of exponent + (256 - UNUSABLE_EXPONENT) is set exactly from UNUSABLE_EXPONENT up. */
function firstUnusableFloat32(values: Float32Array, count: number): number {
  const bits = new Uint32Array(values.buffer, values.byteOffset, count);
  let seen = 0;
  for (let i = 0; i < count; i++) seen |= ((bits[i]! >>> 23) & 0xff) + (256 - UNUSABLE_EXPONENT);
  return (seen & 0x100) === 0 ? -1 : firstUnusable(values, count);
}

/** Every index (if any) is a whole number in 0..limit-1; else a RangeError naming `what` and `tensor`. */
export function checkIndices(indices: ArrayLike<number> | null, limit: number, what: string, tensor: string): void {
  if (!indices) return;
  for (let i = 0; i < indices.length; i++) {
    const v = indices[i]!;
    if (!(Number.isInteger(v) && v >= 0 && v < limit)) throw new RangeError(`${what} ${v} outside 0..${limit} of ${tensor}`);
  }
}

/** A run of consecutive stored rows [start, start + length), and where each lands in the selection. */
export interface RowRun {
  readonly start: number;
  readonly length: number;
  readonly outRows: Int32Array;
}

/** The selected rows (null: all) as ascending runs of consecutive stored rows; a row selected twice is read twice. */
export function rowRuns(rows: ArrayLike<number> | null, total: number): RowRun[] {
  if (!rows) return total > 0 ? [{ start: 0, length: total, outRows: Int32Array.from({ length: total }, (_, i) => i) }] : [];
  const order = Int32Array.from({ length: rows.length }, (_, i) => i).sort((a, b) => rows[a]! - rows[b]! || a - b);
  const runs: RowRun[] = [];
  for (let i = 0; i < order.length;) {
    let j = i + 1;
    while (j < order.length && rows[order[j]!] === rows[order[j - 1]!]! + 1) j++;
    runs.push({ start: rows[order[i]!]!, length: j - i, outRows: order.slice(i, j) });
    i = j;
  }
  return runs;
}
