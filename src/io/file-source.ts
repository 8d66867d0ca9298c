/**
 * What every file-backed TensorSource shares (safetensors and GGUF): the tensor table, open file
 * descriptors, the one bounded reusable read buffer, the count of payload bytes read, and row
 * reads built on one format-specific decode of a run of flat elements.
 */
import * as fs from 'node:fs';
import { BadInputError } from './errors.js';
import { openForReading, readFully } from './safetensors.js';
import type { RowBlock, TensorInfo, TensorSource } from './types.js';

/**
 * The read buffer: small enough to stay in cache while its bytes are decoded or gathered (a
 * 16 MiB buffer took twice the CPU time for the same bytes: the copy out of the page cache and the
 * decode each went to memory), large enough that a read costs far more than its system call.
 */
export const DEFAULT_BUFFER_BYTES = 1024 * 1024;

export interface OpenOptions {
  /** Size of the one reusable read buffer (default DEFAULT_BUFFER_BYTES, 1 MiB; rounded up to 8 bytes). */
  readonly bufferBytes?: number;
  /** Called after every read from disk with the bytes just read (e.g. to drive a progress display). */
  readonly onBytes?: (byteCount: number) => void;
}

/** Rows x cols view of a tensor: shape[0] x product(rest); a scalar is 1 x 1. */
export function matrixShape(info: TensorInfo): { rows: number; cols: number } {
  if (info.shape.length === 0) return { rows: 1, cols: 1 };
  const cols = info.shape.slice(1).reduce((p, d) => p * d, 1);
  return { rows: info.shape[0]!, cols };
}

export function elementCount(info: TensorInfo): number {
  return info.shape.reduce((p, d) => p * d, 1);
}

export abstract class FileTensorSource<I extends TensorInfo> implements TensorSource {
  abstract readonly config: Readonly<Record<string, unknown>> | null;
  private tensorTable: ReadonlyMap<string, I> = new Map();
  private payloadBytes = 0;
  private readBytes = 0;
  private readonly fds = new Map<string, number>();
  protected readonly bufferBytes: number;
  private sharedBuffer: Buffer | null = null;

  constructor(
    readonly path: string,
    readonly name: string,
    readonly files: readonly string[],
    bufferBytes: number,
    private readonly onBytes: ((byteCount: number) => void) | undefined,
  ) {
    this.bufferBytes = Math.max(8, Math.ceil(bufferBytes / 8) * 8);
  }

  get tensors(): ReadonlyMap<string, I> {
    return this.tensorTable;
  }

  get totalBytes(): number {
    return this.payloadBytes;
  }

  get bytesRead(): number {
    return this.readBytes;
  }

  /** Set once by the constructor of the format, after its headers are validated. */
  protected setTensors(tensors: ReadonlyMap<string, I>): void {
    this.tensorTable = tensors;
    let total = 0;
    for (const info of tensors.values()) total += info.byteLength;
    this.payloadBytes = total;
  }

  info(name: string): I {
    const info = this.tensorTable.get(name);
    if (!info) throw new BadInputError('no such tensor', { file: this.path, tensor: name });
    return info;
  }

  read(name: string): Float32Array {
    const info = this.info(name);
    const out = new Float32Array(elementCount(info));
    this.decodeElements(info, 0, out);
    return out;
  }

  readRows(name: string, rowStart: number, rowEnd: number): Float32Array {
    const out = new Float32Array(Math.max(0, rowEnd - rowStart) * matrixShape(this.info(name)).cols);
    this.readRowsInto(name, rowStart, rowEnd, out);
    return out;
  }

  readRowsInto(name: string, rowStart: number, rowEnd: number, out: Float32Array): void {
    const info = this.info(name);
    const { cols } = this.checkRows(info, rowStart, rowEnd, out.length);
    this.decodeElements(info, rowStart * cols, out);
  }

  *rowBlocks(name: string, maxBytes = DEFAULT_BUFFER_BYTES): Iterable<RowBlock> {
    const info = this.info(name);
    const { rows, cols } = matrixShape(info);
    const rowsPerBlock = Math.max(1, Math.floor(maxBytes / Math.max(1, this.storedRowBytes(info))));
    const scratch = new Float32Array(Math.min(rows, rowsPerBlock) * cols);
    for (let rowStart = 0; rowStart < rows; rowStart += rowsPerBlock) {
      const rowEnd = Math.min(rows, rowStart + rowsPerBlock);
      const data = rowEnd - rowStart === rowsPerBlock ? scratch : scratch.subarray(0, (rowEnd - rowStart) * cols);
      this.decodeElements(info, rowStart * cols, data);
      yield { rowStart, rowEnd, cols, data };
    }
  }

  abstract readSelectionInto(name: string, rows: ArrayLike<number> | null, cols: ArrayLike<number> | null, out: Float32Array): void;

  close(): void {
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
    this.sharedBuffer = null;
  }

  /** Decode flat elements [elemStart, elemStart + out.length) of the tensor into `out`. */
  protected abstract decodeElements(info: I, elemStart: number, out: Float32Array): void;

  /** Stored bytes of one row of the tensor viewed as 2-D. */
  protected abstract storedRowBytes(info: I): number;

  /** The rows [rowStart, rowEnd) are inside the tensor and `length` values hold them; its 2-D view. */
  protected checkRows(info: I, rowStart: number, rowEnd: number, length: number): { rows: number; cols: number } {
    const shape = matrixShape(info);
    if (!(Number.isInteger(rowStart) && Number.isInteger(rowEnd) && 0 <= rowStart && rowStart <= rowEnd && rowEnd <= shape.rows)) {
      throw new RangeError(`rows [${rowStart}, ${rowEnd}) outside 0..${shape.rows} of ${info.name}`);
    }
    if (length !== (rowEnd - rowStart) * shape.cols) throw new RangeError(`rows [${rowStart}, ${rowEnd}) of ${info.name} need ${(rowEnd - rowStart) * shape.cols} values, not ${length}`);
    return shape;
  }

  /** The bounded read buffer (allocated on first use, byteOffset 0). */
  protected buffer(): Buffer {
    return this.sharedBuffer ??= Buffer.allocUnsafeSlow(this.bufferBytes);
  }

  /** Read `length` stored bytes of the tensor at absolute `position` into `into` (default: the bounded buffer); counted. */
  protected readStored(info: I, position: number, length: number, into: Uint8Array = this.buffer()): Uint8Array {
    readFully(this.fd(info.file), into, length, position, info.file, info.name);
    this.readBytes += length;
    this.onBytes?.(length);
    return into.subarray(0, length);
  }

  protected fd(file: string): number {
    let fd = this.fds.get(file);
    if (fd === undefined) {
      fd = openForReading(file);
      this.fds.set(file, fd);
    }
    return fd;
  }
}
