/**
 * The GGUF container (llama.cpp): magic "GGUF", version (2 or 3), tensor and metadata counts, the
 * metadata key-values, the tensor infos, then the data section at the next multiple of
 * `general.alignment` (default 32). Every count, length and offset comes from a stranger's file,
 * so each is checked against the bytes left in the file before anything is allocated or looped
 * over; the header is read through one bounded, refilled buffer.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BadInputError } from './errors.js';
import { ggmlTypeById } from './gguf-quants.js';
import { openForReading, readFully } from './safetensors.js';
import type { GgufValue } from './types.js';


export interface GgufTensorInfo {
  readonly name: string;
  /** GGML type name (e.g. "Q4_K"). */
  readonly type: string;
  /** Row-major shape (outermost first): GGUF's dims reversed. */
  readonly shape: readonly number[];
  /** Absolute position of the tensor's bytes in the file. */
  readonly start: number;
  readonly byteLength: number;
}

export interface GgufHeader {
  readonly file: string;
  readonly version: number;
  readonly fileSize: number;
  readonly metadata: ReadonlyMap<string, GgufValue>;
  readonly alignment: number;
  /** Absolute position of the data section. */
  readonly dataStart: number;
  /** Tensors in payload order. */
  readonly tensors: readonly GgufTensorInfo[];
}

const MAGIC = 0x46554747; // "GGUF" read little-endian
const DEFAULT_ALIGNMENT = 32;
/** One key or string value above this is refused (a tokenizer's longest token is far shorter). */
const MAX_STRING_BYTES = 16 * 1024 * 1024;
/**
 * Elements of one metadata array, and tensors, held in memory at most (tokenizer vocabularies and
 * merges run to a few hundred thousand, tensors to tens of thousands): a file of many small
 * entries would otherwise cost far more memory than its size.
 */
const MAX_ARRAY_ELEMENTS = 1 << 22;
/** Tensor rank GGML supports. */
const MAX_DIMS = 4;
const HEADER_BUFFER_BYTES = 1024 * 1024;

/** Value type ids (gguf.h) with their fixed size in bytes (strings and arrays: their smallest). */
const VALUE_TYPES: ReadonlyArray<readonly [name: string, minBytes: number]> = [
  ['UINT8', 1], ['INT8', 1], ['UINT16', 2], ['INT16', 2], ['UINT32', 4], ['INT32', 4], ['FLOAT32', 4],
  ['BOOL', 1], ['STRING', 8], ['ARRAY', 12], ['UINT64', 8], ['INT64', 8], ['FLOAT64', 8],
];

/** Sequential little-endian reads of the header through one refilled buffer, bounded by the file. */
class HeaderCursor {
  private readonly buffer = Buffer.allocUnsafe(HEADER_BUFFER_BYTES);
  private bufferStart = 0;
  private bufferEnd = 0;
  position = 0;
  constructor(private readonly fd: number, readonly file: string, readonly fileSize: number) {}

  get remaining(): number {
    return this.fileSize - this.position;
  }

  /** Make `n` bytes at the position available in the buffer (n <= buffer size); returns their offset there. */
  private need(n: number, what: string): number {
    if (n > this.remaining) throw new BadInputError(`truncated GGUF file: ${what} needs ${n} bytes at position ${this.position}, the file ends at ${this.fileSize}`, { file: this.file });
    if (this.position < this.bufferStart || this.position + n > this.bufferEnd) {
      const length = Math.min(this.buffer.length, this.fileSize - this.position);
      readFully(this.fd, this.buffer, length, this.position, this.file);
      this.bufferStart = this.position;
      this.bufferEnd = this.position + length;
    }
    const at = this.position - this.bufferStart;
    this.position += n;
    return at;
  }

  u8(what: string): number { return this.buffer[this.need(1, what)]!; }
  u32(what: string): number { return this.buffer.readUInt32LE(this.need(4, what)); }
  u64(what: string): bigint { return this.buffer.readBigUInt64LE(this.need(8, what)); }

  /** A u64 count or size that must fit in what is left of the file at `unitBytes` each. */
  count(what: string, unitBytes: number): number {
    const n = this.u64(what);
    if (n * BigInt(Math.max(1, unitBytes)) > BigInt(this.remaining)) {
      throw new BadInputError(`bad GGUF header: ${what} ${n} cannot fit in the ${this.remaining} bytes left of the file`, { file: this.file });
    }
    return Number(n);
  }

  string(what: string): string {
    const n = this.count(`${what} length`, 1);
    if (n > MAX_STRING_BYTES) throw new BadInputError(`bad GGUF header: ${what} length ${n} exceeds ${MAX_STRING_BYTES} bytes`, { file: this.file });
    let bytes: Uint8Array;
    if (n <= this.buffer.length) {
      const at = this.need(n, what);
      bytes = this.buffer.subarray(at, at + n);
    } else {
      // Longer than the header buffer (count() checked it fits the file): read it on its own.
      bytes = Buffer.allocUnsafe(n);
      readFully(this.fd, bytes, n, this.position, this.file);
      this.position += n;
    }
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw new BadInputError(`bad GGUF header: ${what} is not valid UTF-8`, { file: this.file });
    }
  }

  value(type: number, what: string): GgufValue {
    switch (type) {
      case 0: return this.buffer.readUInt8(this.need(1, what));
      case 1: return this.buffer.readInt8(this.need(1, what));
      case 2: return this.buffer.readUInt16LE(this.need(2, what));
      case 3: return this.buffer.readInt16LE(this.need(2, what));
      case 4: return this.buffer.readUInt32LE(this.need(4, what));
      case 5: return this.buffer.readInt32LE(this.need(4, what));
      case 6: return this.buffer.readFloatLE(this.need(4, what));
      case 7: {
        const b = this.u8(what);
        if (b > 1) throw new BadInputError(`bad GGUF header: ${what} is a BOOL of value ${b}`, { file: this.file });
        return b === 1;
      }
      case 8: return this.string(what);
      case 9: {
        const elementType = this.u32(`${what} element type`);
        if (elementType >= VALUE_TYPES.length) throw new BadInputError(`bad GGUF header: ${what} has unknown element type ${elementType}`, { file: this.file });
        if (elementType === 9) throw new BadInputError(`bad GGUF header: ${what} is an array of arrays`, { file: this.file });
        const n = this.count(`${what} element count`, VALUE_TYPES[elementType]![1]);
        if (n > MAX_ARRAY_ELEMENTS) throw new BadInputError(`bad GGUF header: ${what} has ${n} elements, more than the ${MAX_ARRAY_ELEMENTS} read`, { file: this.file });
        const values: GgufValue[] = new Array(n);
        for (let i = 0; i < n; i++) values[i] = this.value(elementType, what);
        return values;
      }
      case 10: return exactNumber(this.buffer.readBigUInt64LE(this.need(8, what)));
      case 11: return exactNumber(this.buffer.readBigInt64LE(this.need(8, what)));
      case 12: return this.buffer.readDoubleLE(this.need(8, what));
      default: throw new BadInputError(`bad GGUF header: ${what} has unknown value type ${type}`, { file: this.file });
    }
  }
}

function exactNumber(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Parse and validate the header of one GGUF file (fd: an open descriptor of it, else opened here). */
export function readGgufHeader(file: string, fd?: number): GgufHeader {
  const ownFd = fd === undefined;
  const handle = fd ?? openForReading(file);
  try {
    const fileSize = fs.fstatSync(handle).size;
    const cursor = new HeaderCursor(handle, file, fileSize);
    if (fileSize < 4 || cursor.u32('magic') !== MAGIC) throw new BadInputError('not a GGUF file (no "GGUF" magic)', { file });
    const version = cursor.u32('version');
    if (version !== 2 && version !== 3) {
      // The version is written in the file's byte order: a big-endian file's 3 reads as 3 << 24.
      const swapped = ((version & 0xff) << 24 | (version & 0xff00) << 8 | (version >>> 8) & 0xff00 | version >>> 24) >>> 0;
      if (swapped >= 1 && swapped <= 3) throw new BadInputError('big-endian GGUF file: only little-endian GGUF files are read', { file });
      if (version === 1) throw new BadInputError('GGUF version 1 is not supported (only versions 2 and 3)', { file });
      throw new BadInputError(`unsupported GGUF version ${version} (only versions 2 and 3)`, { file });
    }
    // Smallest tensor info: name length, rank, one dim, type, offset; smallest key-value: key length, type, one byte.
    const tensorCount = cursor.count('tensor count', 8 + 4 + 8 + 4 + 8);
    if (tensorCount > MAX_ARRAY_ELEMENTS) throw new BadInputError(`bad GGUF header: ${tensorCount} tensors, more than the ${MAX_ARRAY_ELEMENTS} read`, { file });
    const metadataCount = cursor.count('metadata count', 8 + 4 + 1);
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < metadataCount; i++) {
      const key = cursor.string(`metadata key ${i}`);
      if (metadata.has(key)) throw new BadInputError(`bad GGUF header: metadata key ${key} appears twice`, { file });
      const type = cursor.u32(`type of metadata ${key}`);
      metadata.set(key, cursor.value(type, `metadata ${key}`));
    }
    const alignment = alignmentOf(metadata.get('general.alignment'), file);
    const raw: { name: string; type: string; shape: number[]; offset: number; byteLength: number }[] = [];
    const names = new Set<string>();
    for (let i = 0; i < tensorCount; i++) {
      const name = cursor.string(`name of tensor ${i}`);
      const where = { file, tensor: name };
      if (names.has(name)) throw new BadInputError('bad GGUF header: tensor appears twice', where);
      names.add(name);
      const rank = cursor.u32('tensor rank');
      if (rank > MAX_DIMS) throw new BadInputError(`bad GGUF header: tensor rank ${rank} exceeds ${MAX_DIMS}`, where);
      const dims: number[] = [];
      let elements = 1;
      for (let d = 0; d < rank; d++) {
        const dim = cursor.u64('tensor dim');
        if (dim > BigInt(fileSize) * 8n) throw new BadInputError(`bad GGUF header: dimension ${dim} cannot fit in the file`, where);
        dims.push(Number(dim));
        elements *= Number(dim);
      }
      const typeId = cursor.u32('tensor type');
      const type = ggmlTypeById(typeId);
      if (!type) throw new BadInputError(`unknown GGML tensor type id ${typeId}`, where);
      const offset = cursor.u64('tensor offset');
      const rowLength = dims[0] ?? 1;
      if (rowLength % type.blockElements !== 0) {
        throw new BadInputError(`row length ${rowLength} is not a multiple of the ${type.name} block of ${type.blockElements}`, where);
      }
      const byteLength = (elements / type.blockElements) * type.blockBytes;
      if (!Number.isSafeInteger(byteLength) || offset > BigInt(fileSize)) {
        throw new BadInputError(`bad GGUF header: tensor of ${elements} elements at offset ${offset} cannot fit in the file`, where);
      }
      if (Number(offset) % alignment !== 0) throw new BadInputError(`misaligned tensor data: offset ${offset} is not a multiple of the alignment ${alignment}`, where);
      raw.push({ name, type: type.name, shape: dims.slice().reverse(), offset: Number(offset), byteLength });
    }
    const dataStart = Math.ceil(cursor.position / alignment) * alignment;
    raw.sort((a, b) => a.offset - b.offset || a.byteLength - b.byteLength);
    let previous: { name: string; end: number } | null = null;
    const tensors: GgufTensorInfo[] = [];
    for (const t of raw) {
      const where = { file, tensor: t.name };
      if (dataStart + t.offset + t.byteLength > fileSize) {
        throw new BadInputError(`truncated GGUF file: tensor data [${t.offset}, ${t.offset + t.byteLength}) lies past the end of the file (data section is ${Math.max(0, fileSize - dataStart)} bytes)`, where);
      }
      if (t.byteLength > 0) {
        if (previous && t.offset < previous.end) {
          throw new BadInputError(`overlapping tensors: ${t.name} starts at ${t.offset}, inside ${previous.name} (ends at ${previous.end})`, where);
        }
        previous = { name: t.name, end: t.offset + t.byteLength };
      }
      tensors.push({ name: t.name, type: t.type, shape: t.shape, start: dataStart + t.offset, byteLength: t.byteLength });
    }
    return { file, version, fileSize, metadata, alignment, dataStart, tensors };
  } finally {
    if (ownFd) fs.closeSync(handle);
  }
}

function alignmentOf(value: GgufValue | undefined, file: string): number {
  if (value === undefined) return DEFAULT_ALIGNMENT;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > 1 << 30 || (value & (value - 1)) !== 0) {
    throw new BadInputError(`bad GGUF header: general.alignment ${String(value)} is not a power of two`, { file });
  }
  return value;
}

// ---------------------------------------------------------------------------------------
// Split files: NAME-00001-of-00003.gguf ... read as one model.

const SPLIT_NAME = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/i;

/**
 * The files of the model `file` belongs to: all of its split's parts in order (any part may be
 * given), else the file alone. A missing part is a BadInputError naming it.
 */
export function ggufSplitFiles(file: string): string[] {
  const m = SPLIT_NAME.exec(path.basename(file));
  if (!m) return [file];
  const count = Number(m[3]);
  if (count < 1 || Number(m[2]) < 1 || Number(m[2]) > count) throw new BadInputError(`split file number ${m[2]} of ${m[3]} is out of range`, { file });
  const files: string[] = [];
  for (let i = 1; i <= count; i++) {
    const part = path.join(path.dirname(file), `${m[1]}-${String(i).padStart(5, '0')}-of-${m[3]}.gguf`);
    if (!fs.existsSync(part)) throw new BadInputError(`missing split part ${path.basename(part)} of ${count}`, { file: part });
    files.push(part);
  }
  return files;
}

/** Checks each part's `split.no` / `split.count` (when present) against its place in the split. */
export function checkSplitMetadata(headers: readonly GgufHeader[]): void {
  headers.forEach((h, i) => {
    const no = h.metadata.get('split.no'), count = h.metadata.get('split.count');
    if (headers.length === 1 && no === undefined) return;
    if ((no !== undefined && no !== i) || (count !== undefined && count !== headers.length)) {
      throw new BadInputError(`split metadata says part ${String(no)} of ${String(count)}, but the file is part ${i} of ${headers.length} by name`, { file: h.file });
    }
  });
  const total = headers[0]?.metadata.get('split.tensors.count');
  if (typeof total === 'number') {
    const held = headers.reduce((n, h) => n + h.tensors.length, 0);
    if (held !== total) throw new BadInputError(`split.tensors.count says ${total} tensors, the parts hold ${held}`, { file: headers[0]!.file });
  }
}

/** llama.cpp's `general.file_type` values (llama.h, LLAMA_FTYPE_*): the model's nominal quantization. */
const FILE_TYPES: Readonly<Record<number, string>> = {
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 7: 'Q8_0', 8: 'Q5_0', 9: 'Q5_1', 10: 'Q2_K', 11: 'Q3_K_S',
  12: 'Q3_K_M', 13: 'Q3_K_L', 14: 'Q4_K_S', 15: 'Q4_K_M', 16: 'Q5_K_S', 17: 'Q5_K_M', 18: 'Q6_K',
  19: 'IQ2_XXS', 20: 'IQ2_XS', 21: 'Q2_K_S', 22: 'IQ3_XS', 23: 'IQ3_XXS', 24: 'IQ1_S', 25: 'IQ4_NL',
  26: 'IQ3_S', 27: 'IQ3_M', 28: 'IQ2_S', 29: 'IQ2_M', 30: 'IQ4_XS', 31: 'IQ1_M', 32: 'BF16',
  36: 'TQ1_0', 37: 'TQ2_0', 38: 'MXFP4_MOE',
};

/** The name of a `general.file_type` value (e.g. 15 -> "Q4_K_M"); null when absent or unknown. */
export function ggufFileTypeName(value: GgufValue | undefined): string | null {
  return typeof value === 'number' ? FILE_TYPES[value] ?? null : null;
}
