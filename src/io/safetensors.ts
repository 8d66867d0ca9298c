/**
 * The safetensors container: an 8-byte little-endian header length N, N bytes of JSON, then the
 * tensor payload. The header is validated fully before any tensor is trusted: files come from
 * strangers, so every length and offset is checked against the file before anything is allocated.
 */
import * as fs from 'node:fs';
import { BadInputError } from './errors.js';
import { DTYPE_BYTES, isDType } from './dtypes.js';
import type { SafetensorsTensorInfo } from './types.js';

/** Headers above this are refused before allocating (the Rust reference uses the same bound). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;
/** A single readSync must stay below 2 GiB; chunks this size keep far away from it. */
export const MAX_READ_BYTES = 1024 * 1024 * 1024;

export interface SafetensorsHeader {
  readonly file: string;
  readonly fileSize: number;
  /** Absolute position of the payload (8 + header length). */
  readonly dataStart: number;
  /** Tensors in payload order. */
  readonly tensors: readonly SafetensorsTensorInfo[];
  readonly metadata: Readonly<Record<string, string>> | null;
}

/** Parse and validate the header of one safetensors file. Uses `fd` if given, else opens the file. */
export function readSafetensorsHeader(file: string, fd?: number): SafetensorsHeader {
  const ownFd = fd === undefined;
  const handle = fd ?? openForReading(file);
  try {
    const fileSize = fs.fstatSync(handle).size;
    if (fileSize < 8) throw new BadInputError(`truncated safetensors file: ${fileSize} bytes, shorter than the 8-byte header length`, { file });
    const lengthBytes = Buffer.alloc(8);
    readFully(handle, lengthBytes, 8, 0, file);
    const headerLength = lengthBytes.readBigUInt64LE(0);
    if (headerLength > BigInt(MAX_HEADER_BYTES)) {
      throw new BadInputError(`safetensors header length ${headerLength} exceeds the ${MAX_HEADER_BYTES / 1024 / 1024} MB limit`, { file });
    }
    const n = Number(headerLength);
    if (8 + n > fileSize) {
      throw new BadInputError(`truncated safetensors file: header length ${n} exceeds the file size ${fileSize}`, { file });
    }
    const headerBytes = Buffer.alloc(n);
    readFully(handle, headerBytes, n, 8, file);
    return parseHeaderJson(file, fileSize, headerBytes);
  } finally {
    if (ownFd) fs.closeSync(handle);
  }
}

/** Validate header JSON bytes; exported for tests of the rules without files. */
export function parseHeaderJson(file: string, fileSize: number, headerBytes: Uint8Array): SafetensorsHeader {
  const dataStart = 8 + headerBytes.length;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new BadInputError('malformed safetensors header: not valid UTF-8', { file });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new BadInputError(`malformed safetensors header: bad JSON (${(err as Error).message})`, { file });
  }
  if (!isPlainObject(parsed)) throw new BadInputError('malformed safetensors header: JSON is not an object', { file });
  // JSON.parse keeps the last of repeated keys: a repeated tensor name would hide a tensor's bytes.
  const repeated = repeatedTopLevelKey(text);
  if (repeated !== null) throw new BadInputError('malformed safetensors header: tensor name appears twice', { file, tensor: repeated });

  let metadata: Record<string, string> | null = null;
  const entries: { info: SafetensorsTensorInfo; begin: number; end: number }[] = [];
  for (const [name, entry] of Object.entries(parsed)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(file, entry);
      continue;
    }
    const where = { file, tensor: name };
    if (!isPlainObject(entry)) throw new BadInputError('malformed safetensors header: tensor entry is not an object', where);
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== 'string') throw new BadInputError('malformed safetensors header: dtype is not a string', where);
    if (!isDType(dtype)) throw new BadInputError(`unsupported dtype ${dtype}`, where);
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      throw new BadInputError('malformed safetensors header: shape is not a list of non-negative integers', where);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger)) {
      throw new BadInputError('malformed safetensors header: data_offsets is not a pair of non-negative integers', where);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) throw new BadInputError(`bad data_offsets [${begin}, ${end}]: end before begin`, where);
    const elements = shape.reduce((product: number, d: number) => product * d, 1);
    const expected = elements * DTYPE_BYTES[dtype];
    if (!Number.isSafeInteger(expected)) throw new BadInputError(`shape [${shape.join(', ')}] is too large`, where);
    if (expected !== end - begin) {
      throw new BadInputError(
        `size mismatch: shape [${shape.join(', ')}] of ${dtype} needs ${expected} bytes but data_offsets span ${end - begin}`, where);
    }
    if (dataStart + end > fileSize) {
      throw new BadInputError(`truncated safetensors file: data_offsets end ${end} lies past the end of the file (payload is ${fileSize - dataStart} bytes)`, where);
    }
    entries.push({ info: { name, dtype, shape: shape.slice(), file, start: dataStart + begin, byteLength: end - begin }, begin, end });
  }

  if (entries.length === 0) throw new BadInputError('safetensors header lists no tensors', { file });
  // Sorted by position, non-empty byte ranges must not overlap (empty tensors occupy nothing).
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let previous: { name: string; end: number } | null = null;
  for (const { info, begin, end } of entries) {
    if (begin === end) continue;
    if (previous && begin < previous.end) {
      throw new BadInputError(`overlapping tensors: ${info.name} starts at ${begin}, inside ${previous.name} (ends at ${previous.end})`,
        { file, tensor: info.name });
    }
    previous = { name: info.name, end };
  }
  return { file, fileSize, dataStart, tensors: entries.map((e) => e.info), metadata };
}

/** The first key the top-level object of valid JSON `text` repeats, or null; one linear scan. */
function repeatedTopLevelKey(text: string): string | null {
  const seen = new Set<string>();
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) {
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        if (seen.has(key)) return key;
        seen.add(key);
        expectKey = false;
      }
      i = end;
    } else if (c === '{' || c === '[') {
      depth++;
      expectKey = depth === 1 && c === '{';
    } else if (c === '}' || c === ']') depth--;
    else if (c === ',' && depth === 1) expectKey = true;
  }
  return null;
}

function parseMetadata(file: string, value: unknown): Record<string, string> {
  if (!isPlainObject(value)) throw new BadInputError('malformed safetensors header: __metadata__ is not an object', { file });
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw new BadInputError(`malformed safetensors header: __metadata__ value of "${key}" is not a string`, { file });
  }
  return { ...(value as Record<string, string>) };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Open a regular file (or a symlink to one) for reading. The open itself is non-blocking and the
 * type is checked on the open descriptor before any read: a named pipe would otherwise block
 * forever, a directory fail with EISDIR at the first read, a device stream endless bytes.
 */
export function openForReading(file: string): number {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (err) {
    throw new BadInputError(`cannot open: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { file });
  }
  const stat = fs.fstatSync(fd);
  if (!stat.isFile()) {
    fs.closeSync(fd);
    throw new BadInputError(`not a regular file (${stat.isDirectory() ? 'a folder' : stat.isFIFO() ? 'a named pipe' : 'a device or socket'})`, { file });
  }
  return fd;
}

/** The whole of a small regular file (JSON files beside the weights), refused above `maxBytes`. */
export function readRegularFile(file: string, maxBytes: number): Buffer {
  const fd = openForReading(file);
  try {
    const size = fs.fstatSync(fd).size;
    if (size > maxBytes) throw new BadInputError(`file too large: ${size} bytes, above the ${maxBytes}-byte limit`, { file });
    const bytes = Buffer.alloc(size);
    readFully(fd, bytes, size, 0, file);
    return bytes;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Read exactly `length` bytes at absolute `position` into buffer[0..length), in calls below
 * 2 GiB each; a short file (changed since its header was read) is a BadInputError.
 */
export function readFully(fd: number, buffer: Uint8Array, length: number, position: number, file: string, tensor?: string): void {
  let done = 0;
  while (done < length) {
    const want = Math.min(length - done, MAX_READ_BYTES);
    const got = fs.readSync(fd, buffer, done, want, position + done);
    if (got === 0) {
      throw new BadInputError(`truncated file: expected ${length} bytes at position ${position}, got ${done}`, { file, tensor });
    }
    done += got;
  }
}
