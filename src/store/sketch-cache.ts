/**
 * The on-disk sketch cache: one file per model sketch, named by its cache key (io/fingerprint.ts:
 * content fingerprint, config and the weight files' stamps or full hashes) and the sketch
 * options, in a folder (default `.lineage-cache/` in the current directory).
 *
 * File layout (little-endian), version SKETCH_FORMAT:
 *   8 bytes  magic "LINSKTCH"
 *   u32      format version
 *   u32      JSON header length L
 *   L bytes  JSON header: the sketch's scalars, matrix and neuron descriptors whose arrays are
 *            given as float offsets into the payload
 *   padding  to a multiple of 4 bytes
 *   payload  float32 values
 * Anything unreadable (wrong magic or version, truncated, bad JSON, offsets out of range,
 * another fingerprint) is treated as a miss and rebuilt, never an error. A cache path that is not
 * a folder, or a folder that cannot be written, is bad input.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BadInputError } from '../io/errors.js';
import { readRegularFile } from '../io/safetensors.js';
import type { Moments } from '../stats/moments.js';
import { SKETCH_FORMAT, type MatrixSketch, type ModelSketch, type NeuronSketch, type ResolvedSketchOptions, type SketchView } from '../sketch/types.js';

const MAGIC = Buffer.from('LINSKTCH', 'latin1');

export const DEFAULT_CACHE_DIR = '.lineage-cache';

/** Cache files above this are not sketches of this program (a 70B model's is about 80 MB). */
const MAX_CACHE_FILE_BYTES = 1024 * 1024 * 1024;

/** File name of a sketch in the cache: its key plus the options it was made with. */
export function cacheFileName(key: string, options: ResolvedSketchOptions): string {
  const o = options;
  return `${key}-v${SKETCH_FORMAT}-k${o.sketchSize}-n${o.maxNeurons}x${o.neuronLayers}.sketch`;
}

interface ArrayRef { readonly offset: number; readonly length: number }
type ViewHeader = Omit<SketchView, 'sketch'> & { sketch: ArrayRef };
type MatrixHeader = Omit<MatrixSketch, 'views' | 'moments'> & { views: ViewHeader[]; moments: Record<keyof Moments, number | null> };
type NeuronHeader = Omit<NeuronSketch, 'gate' | 'up'> & { gate: ArrayRef; up: ArrayRef };
type SketchHeader = Omit<ModelSketch, 'matrices' | 'neurons'> & { matrices: MatrixHeader[]; neurons: NeuronHeader[]; payloadFloats: number };

export function encodeSketch(sketch: ModelSketch): Buffer {
  const arrays: Float32Array[] = [];
  let floats = 0;
  const place = (a: Float32Array): ArrayRef => {
    arrays.push(a);
    const ref = { offset: floats, length: a.length };
    floats += a.length;
    return ref;
  };
  const header: SketchHeader = {
    ...sketch,
    matrices: sketch.matrices.map((m) => ({
      ...m,
      moments: Object.fromEntries(Object.entries(m.moments).map(([k, v]) => [k, Number.isFinite(v) ? v : null])) as MatrixHeader['moments'],
      views: m.views.map((v) => ({ ...v, sketch: place(v.sketch) })),
    })),
    neurons: sketch.neurons.map((n) => ({ ...n, gate: place(n.gate), up: place(n.up) })),
    payloadFloats: 0,
  };
  header.payloadFloats = floats;
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const headBytes = 16 + json.length;
  const padding = (4 - (headBytes % 4)) % 4;
  const out = Buffer.alloc(headBytes + padding + floats * 4);
  MAGIC.copy(out, 0);
  out.writeUInt32LE(SKETCH_FORMAT, 8);
  out.writeUInt32LE(json.length, 12);
  json.copy(out, 16);
  const payload = new Float32Array(out.buffer, out.byteOffset + headBytes + padding, floats);
  let at = 0;
  for (const a of arrays) {
    payload.set(a, at);
    at += a.length;
  }
  return out;
}

/** Parses a cache file; throws on anything malformed (callers treat that as a miss). */
export function decodeSketch(bytes: Buffer): ModelSketch {
  if (bytes.length < 16 || !bytes.subarray(0, 8).equals(MAGIC)) throw new Error('not a sketch file');
  if (bytes.readUInt32LE(8) !== SKETCH_FORMAT) throw new Error('other sketch format version');
  const jsonLength = bytes.readUInt32LE(12);
  if (16 + jsonLength > bytes.length) throw new Error('truncated header');
  const header = JSON.parse(bytes.subarray(16, 16 + jsonLength).toString('utf8')) as SketchHeader;
  const headBytes = 16 + jsonLength;
  const start = headBytes + ((4 - (headBytes % 4)) % 4);
  const floats = header.payloadFloats;
  if (!Number.isInteger(floats) || start + floats * 4 !== bytes.length) throw new Error('payload size mismatch');
  // Copy into an aligned buffer: a Buffer's byteOffset need not be a multiple of 4.
  const payload = new Float32Array(floats);
  new Uint8Array(payload.buffer).set(bytes.subarray(start, start + floats * 4));
  const take = (ref: ArrayRef): Float32Array => {
    if (!(Number.isInteger(ref?.offset) && Number.isInteger(ref?.length) && ref.offset >= 0 && ref.offset + ref.length <= floats)) {
      throw new Error('array out of range');
    }
    return payload.subarray(ref.offset, ref.offset + ref.length);
  };
  if (!Array.isArray(header.matrices) || !Array.isArray(header.neurons) || typeof header.fingerprint !== 'string') throw new Error('bad header');
  const { payloadFloats: _unused, ...rest } = header;
  void _unused;
  const sketch: ModelSketch = {
    ...rest,
    format: SKETCH_FORMAT,
    matrices: header.matrices.map((m) => {
      const views = m.views.map((v) => {
        const s = take(v.sketch);
        if (s.length !== m.sketchRows * m.sketchCols) throw new Error('sketch size mismatch');
        return { ...v, sketch: s };
      });
      const moments = Object.fromEntries(Object.entries(m.moments).map(([k, v]) => [k, v ?? NaN])) as unknown as Moments;
      return { ...m, views, moments };
    }),
    neurons: header.neurons.map((n) => {
      const gate = take(n.gate), up = take(n.up);
      if (gate.length !== n.count * n.dim || up.length !== gate.length) throw new Error('neuron size mismatch');
      return { ...n, gate, up };
    }),
  };
  return sketch;
}

/** A folder of sketch files; `null` folder = no caching. */
export class SketchCache {
  constructor(readonly dir: string | null) {
    if (dir !== null && fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) {
      throw new BadInputError('the sketch cache path is not a folder', { file: path.resolve(dir) });
    }
  }

  /** The sketch stored under `key`, if it is intact and was made from `fingerprint` with `options`. */
  load(key: string, fingerprint: string, options: ResolvedSketchOptions): ModelSketch | null {
    if (this.dir === null) return null;
    const file = path.join(this.dir, cacheFileName(key, options));
    try {
      const sketch = decodeSketch(readRegularFile(file, MAX_CACHE_FILE_BYTES));
      if (sketch.fingerprint !== fingerprint || JSON.stringify(sketch.options) !== JSON.stringify(options)) return null;
      return sketch;
    } catch {
      return null; // missing or corrupt: rebuild
    }
  }

  /** Writes atomically (temporary file then rename), so a crash never leaves a half file. */
  store(key: string, sketch: ModelSketch): void {
    if (this.dir === null) return;
    const file = path.join(this.dir, cacheFileName(key, sketch.options));
    const temporary = `${file}.${process.pid}.tmp`;
    try {
      fs.mkdirSync(this.dir, { recursive: true });
      fs.writeFileSync(temporary, encodeSketch(sketch));
      fs.renameSync(temporary, file);
    } catch (err) {
      try {
        fs.rmSync(temporary, { force: true });
      } catch {
        // whatever stands at that path is not ours to remove
      }
      throw new BadInputError(`cannot write the sketch cache: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { file: path.resolve(this.dir) });
    }
  }
}
