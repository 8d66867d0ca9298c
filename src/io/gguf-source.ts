/**
 * A GGUF model (one file, or the parts of a split) as a lazy TensorSource: headers are read up
 * front, tensor bytes on demand through one bounded reusable buffer, dequantized to float32 block
 * by block. A tensor's shape is GGUF's dims reversed (row-major, outermost first), so a 2-D
 * weight is (out, in) as in safetensors and its quantization blocks run along each row.
 */
import * as path from 'node:path';
import { BadInputError } from './errors.js';
import { checkSplitMetadata, ggufSplitFiles, readGgufHeader, type GgufHeader } from './gguf.js';
import { dequantizeBlocks, ggmlTypeByName, type GgmlType } from './gguf-quants.js';
import { decodeInto, isDType } from './dtypes.js';
import { DEFAULT_BUFFER_BYTES, FileTensorSource, matrixShape, type OpenOptions } from './file-source.js';
import { checkIndices, rowRuns } from './source.js';
import type { GgufValue, StorageType, TensorInfo } from './types.js';

/** A GGUF tensor: its GGML type's block geometry beside the common info. */
export interface GgufTensor extends TensorInfo {
  readonly ggml: GgmlType;
}

export class GgufSource extends FileTensorSource<GgufTensor> {
  readonly config = null;
  readonly ggufMetadata: ReadonlyMap<string, GgufValue>;
  /** GGUF version of the (first) file. */
  readonly version: number;

  constructor(file: string, options: OpenOptions = {}) {
    const files = ggufSplitFiles(file);
    // At least one block of the largest type fits the buffer.
    super(file, modelName(files[0]!, files.length > 1), files, Math.max(1024, options.bufferBytes ?? DEFAULT_BUFFER_BYTES), options.onBytes);
    const tensors = new Map<string, GgufTensor>();
    let headers: GgufHeader[];
    try {
      headers = files.map((f) => readGgufHeader(f, this.fd(f)));
      checkSplitMetadata(headers);
      for (const header of headers) {
        for (const t of header.tensors) {
          const seen = tensors.get(t.name);
          if (seen) throw new BadInputError(`tensor appears in two files (also in ${seen.file})`, { file: header.file, tensor: t.name });
          const ggml = ggmlTypeByName(t.type)!;
          tensors.set(t.name, { name: t.name, dtype: t.type as StorageType, shape: t.shape, file: header.file, start: t.start, byteLength: t.byteLength, ggml });
        }
      }
    } catch (err) {
      this.close();
      throw err;
    }
    this.ggufMetadata = headers[0]!.metadata;
    this.version = headers[0]!.version;
    this.setTensors(tensors);
  }

  /**
   * readRowsInto, and each element's rounding variance on its storage grid into `variance` (the
   * quantization noise floor: step^2 / 12 of its block's grid; ulp^2 / 12 for float types, as
   * their dtype's grid gives).
   */
  readRowsWithVarianceInto(name: string, rowStart: number, rowEnd: number, out: Float32Array, variance: Float32Array): void {
    const info = this.info(name);
    const { cols } = this.checkRows(info, rowStart, rowEnd, out.length);
    if (variance.length !== out.length) throw new RangeError(`${out.length} values of ${name} with ${variance.length} variances`);
    this.decodeWithVariance(info, rowStart * cols, out.length, out, 0, variance);
  }

  readSelectionInto(name: string, rows: ArrayLike<number> | null, cols: ArrayLike<number> | null, out: Float32Array): void {
    this.selection(name, rows, cols, out, null);
  }

  readSelectionWithVarianceInto(name: string, rows: ArrayLike<number> | null, cols: ArrayLike<number> | null, out: Float32Array, variance: Float32Array): void {
    this.selection(name, rows, cols, out, variance);
  }

  /**
   * The selected rows and columns: whole rows decoded (a block is the unit of decoding) a few at a
   * time into a scratch small enough to stay in cache, then picked.
   */
  private selection(name: string, rows: ArrayLike<number> | null, cols: ArrayLike<number> | null, out: Float32Array, variance: Float32Array | null): void {
    const info = this.info(name);
    const shape = matrixShape(info);
    const rowCount = rows ? rows.length : shape.rows, colCount = cols ? cols.length : shape.cols;
    checkIndices(rows, shape.rows, 'row', name);
    checkIndices(cols, shape.cols, 'column', name);
    if (out.length !== rowCount * colCount || (variance && variance.length !== out.length)) {
      throw new RangeError(`${rowCount}x${colCount} selection of ${name} read into ${out.length} values`);
    }
    const perDecode = Math.max(1, Math.floor(SELECTION_SCRATCH_ELEMENTS / Math.max(1, shape.cols)));
    const scratch = new Float32Array(Math.min(perDecode, shape.rows) * shape.cols);
    const scratchVariance = variance ? new Float32Array(scratch.length) : null;
    const columns = cols ? Int32Array.from(cols) : null;
    for (const run of rowRuns(rows, shape.rows)) {
      for (let done = 0; done < run.length; done += perDecode) {
        const count = Math.min(perDecode, run.length - done), first = run.start + done;
        this.decodeWithVariance(info, first * shape.cols, count * shape.cols, scratch, 0, scratchVariance);
        for (let t = 0; t < count; t++) {
          const at = run.outRows[done + t]! * colCount, from = t * shape.cols;
          if (!columns) {
            out.set(scratch.subarray(from, from + shape.cols), at);
            if (variance) variance.set(scratchVariance!.subarray(from, from + shape.cols), at);
            continue;
          }
          for (let q = 0; q < colCount; q++) out[at + q] = scratch[from + columns[q]!]!;
          if (variance) for (let q = 0; q < colCount; q++) variance[at + q] = scratchVariance![from + columns[q]!]!;
        }
      }
    }
  }

  /** Stored bytes of one row of the tensor viewed as 2-D (fractional when a row holds part of a block: 1-D tensors). */
  protected storedRowBytes(info: GgufTensor): number {
    return (matrixShape(info).cols / info.ggml.blockElements) * info.ggml.blockBytes;
  }

  protected decodeElements(info: GgufTensor, elemStart: number, out: Float32Array): void {
    this.decodeWithVariance(info, elemStart, out.length, out, 0, null);
  }

  /**
   * Decode flat elements [elemStart, elemStart + count) into out[outAt...] (and their variances):
   * the blocks holding them are read a bounded buffer at a time; a block cut by the range's ends
   * is decoded whole into a scratch and the part inside copied.
   */
  private decodeWithVariance(info: GgufTensor, elemStart: number, count: number, out: Float32Array, outAt: number, variance: Float32Array | null): void {
    if (count === 0) return;
    const { blockElements, blockBytes } = info.ggml;
    const where = { file: info.file, tensor: info.name };
    const firstBlock = Math.floor(elemStart / blockElements), endBlock = Math.ceil((elemStart + count) / blockElements);
    const perRead = Math.max(1, Math.floor(this.bufferBytes / blockBytes));
    let edge: Float32Array | null = null, edgeVariance: Float32Array | null = null;
    for (let block = firstBlock; block < endBlock; block += perRead) {
      const blocks = Math.min(perRead, endBlock - block);
      const bytes = this.readStored(info, info.start + block * blockBytes, blocks * blockBytes);
      const chunkStart = block * blockElements, chunkEnd = (block + blocks) * blockElements;
      const from = Math.max(chunkStart, elemStart), to = Math.min(chunkEnd, elemStart + count);
      if (from === chunkStart && to === chunkEnd) {
        decodeBlocks(info, bytes, blocks, out, outAt + (chunkStart - elemStart), variance, where);
        continue;
      }
      edge ??= new Float32Array(perRead * blockElements);
      if (variance) edgeVariance ??= new Float32Array(edge.length);
      decodeBlocks(info, bytes, blocks, edge, 0, variance ? edgeVariance : null, where);
      out.set(edge.subarray(from - chunkStart, to - chunkStart), outAt + (from - elemStart));
      if (variance) variance.set(edgeVariance!.subarray(from - chunkStart, to - chunkStart), outAt + (from - elemStart));
    }
  }
}

/**
 * Values a selection decodes at a time before picking its columns: a scratch (and its variances)
 * that stays in cache, so the picking reads what the decoder just wrote.
 */
const SELECTION_SCRATCH_ELEMENTS = 1 << 16;

/** Integer storage (GGUF's I8-I64, F64) goes through the safetensors decoder; the rest through the dequantizers. */
function decodeBlocks(info: GgufTensor, bytes: Uint8Array, blocks: number, out: Float32Array, outAt: number, variance: Float32Array | null, where: { file: string; tensor: string }): void {
  const dtype = info.ggml.name;
  if (isDType(dtype) && dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16') {
    decodeInto(dtype, bytes, blocks, out, outAt);
    variance?.fill(0, outAt, outAt + blocks);
    return;
  }
  dequantizeBlocks(dtype, bytes, 0, blocks, out, outAt, variance, where);
}

/** The model's name: the file name without `.gguf` (and without `-00001-of-00003` for a split). */
function modelName(first: string, split: boolean): string {
  const base = path.basename(first).replace(/\.gguf$/i, '');
  return split ? base.replace(/-\d{5}-of-\d{5}$/, '') : base;
}
