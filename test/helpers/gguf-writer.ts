/**
 * Fixture writer for tests: GGUF files (v2/v3, any alignment, every metadata value type) with F32,
 * F16, BF16, Q8_0 and Q4_0 tensors quantized as llama.cpp's reference quantizer does, raw bytes for
 * anything else, and Llama models laid out as llama.cpp's converter lays them out (names, dims
 * innermost first, q/k rows permuted).
 */
import * as fs from 'node:fs';
import { float32ToBf16Bits, float32ToF16Bits, f16Table } from '../../src/io/dtypes.js';
import { ggmlTypeByName } from '../../src/io/gguf-quants.js';
import type { LlamaConfig, LlamaState } from './synthetic-llama.js';

/** A typed metadata value (GGUF value type ids 0-12). */
export type GgufMeta =
  | { readonly t: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64'; readonly v: number }
  | { readonly t: 'u64' | 'i64'; readonly v: bigint }
  | { readonly t: 'bool'; readonly v: boolean }
  | { readonly t: 'str'; readonly v: string }
  | { readonly t: 'arr'; readonly of: Exclude<GgufMeta['t'], 'arr'>; readonly v: ReadonlyArray<number | bigint | boolean | string> };

const TYPE_ID: Readonly<Record<GgufMeta['t'], number>> = {
  u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, str: 8, arr: 9, u64: 10, i64: 11, f64: 12,
};

export interface GgufTensorSpec {
  readonly name: string;
  /** GGML type name (F32, F16, BF16, Q8_0, Q4_0 are encoded from `data`; others need `bytes`). */
  readonly type: string;
  /** Row-major shape (outermost first); written innermost first as GGUF does. */
  readonly shape: readonly number[];
  readonly data?: ArrayLike<number>;
  readonly bytes?: Uint8Array;
  /** Data offset to write instead of the packed one (for hostile files). */
  readonly offset?: bigint;
  /** Type id to write instead of the type's (for hostile files). */
  readonly typeId?: number;
}

export interface GgufSpec {
  readonly version?: number;
  readonly metadata?: ReadonlyArray<readonly [string, GgufMeta]>;
  readonly tensors: readonly GgufTensorSpec[];
  /** Data alignment; written as general.alignment when not 32. */
  readonly alignment?: number;
}

class ByteWriter {
  private readonly chunks: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  u32(v: number): void { const b = Buffer.alloc(4); b.writeUInt32LE(v >>> 0); this.push(b); }
  u64(v: bigint): void { const b = Buffer.alloc(8); b.writeBigUInt64LE(v); this.push(b); }
  str(s: string): void { const t = Buffer.from(s, 'utf8'); this.u64(BigInt(t.length)); this.push(t); }
  value(t: GgufMeta['t'], v: unknown): void {
    const b = Buffer.alloc(8);
    switch (t) {
      case 'u8': b.writeUInt8(v as number); this.push(b.subarray(0, 1)); return;
      case 'i8': b.writeInt8(v as number); this.push(b.subarray(0, 1)); return;
      case 'u16': b.writeUInt16LE(v as number); this.push(b.subarray(0, 2)); return;
      case 'i16': b.writeInt16LE(v as number); this.push(b.subarray(0, 2)); return;
      case 'u32': b.writeUInt32LE(v as number); this.push(b.subarray(0, 4)); return;
      case 'i32': b.writeInt32LE(v as number); this.push(b.subarray(0, 4)); return;
      case 'f32': b.writeFloatLE(v as number); this.push(b.subarray(0, 4)); return;
      case 'bool': this.push(Buffer.from([v ? 1 : 0])); return;
      case 'str': this.str(v as string); return;
      case 'u64': b.writeBigUInt64LE(v as bigint); this.push(b); return;
      case 'i64': b.writeBigInt64LE(v as bigint); this.push(b); return;
      case 'f64': b.writeDoubleLE(v as number); this.push(b); return;
      case 'arr': throw new Error('nested array');
    }
  }
  meta(m: GgufMeta): void {
    if (m.t === 'arr') {
      this.u32(TYPE_ID[m.of]);
      this.u64(BigInt(m.v.length));
      for (const e of m.v) this.value(m.of, e);
    } else this.value(m.t, m.v);
  }
  concat(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** The stored bytes of `data` as `type` (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K). */
export function encodeTensor(type: string, data: ArrayLike<number>): Uint8Array {
  const n = data.length;
  switch (type) {
    case 'F32': return new Uint8Array(Float32Array.from(data).buffer);
    case 'F16': return new Uint8Array(Uint16Array.from({ length: n }, (_, i) => float32ToF16Bits(data[i]!)).buffer);
    case 'BF16': return new Uint8Array(Uint16Array.from({ length: n }, (_, i) => float32ToBf16Bits(data[i]!)).buffer);
    case 'Q8_0': return quantizeQ8_0(data);
    case 'Q4_0': return quantizeQ4_0(data);
    case 'Q4_K': return quantizeQ4K(data);
    case 'Q6_K': return quantizeQ6K(data);
    default: throw new Error(`the test writer does not encode ${type}`);
  }
}

/** ggml's quantize_row_q8_0_ref: d = max|x| / 127, q = round(x / d). */
function quantizeQ8_0(x: ArrayLike<number>): Uint8Array {
  const out = Buffer.alloc((x.length / 32) * 34);
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
    const d = amax / 127, id = d ? 1 / d : 0;
    out.writeUInt16LE(float32ToF16Bits(d), b * 34);
    for (let j = 0; j < 32; j++) out.writeInt8(Math.round(x[b * 32 + j]! * id), b * 34 + 2 + j);
  }
  return out;
}

/** ggml's quantize_row_q4_0_ref: d = (value of largest magnitude) / -8, q = min(15, trunc(x / d + 8.5)). */
function quantizeQ4_0(x: ArrayLike<number>): Uint8Array {
  const out = Buffer.alloc((x.length / 32) * 18);
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0, max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[b * 32 + j]!;
      if (Math.abs(v) > amax) [amax, max] = [Math.abs(v), v];
    }
    const d = max / -8, id = d ? 1 / d : 0;
    out.writeUInt16LE(float32ToF16Bits(d), b * 18);
    const q = (v: number) => Math.min(15, Math.trunc(v * id + 8.5));
    for (let j = 0; j < 16; j++) out[b * 18 + 2 + j] = q(x[b * 32 + j]!) | (q(x[b * 32 + 16 + j]!) << 4);
  }
  return out;
}

/**
 * Q4_K by a plain min/max quantizer (as the GGUF test set's; llama.cpp's searches scales, the
 * layout is the same): per 32-element sub-block scale (max - min) / 15 and min -min(0, min), both
 * as 6-bit multiples of the block's f16 d and dmin.
 */
function quantizeQ4K(x: ArrayLike<number>): Uint8Array {
  const out = Buffer.alloc((x.length / 256) * 144);
  const scale = new Float64Array(8), min = new Float64Array(8), sc = new Uint8Array(8), m = new Uint8Array(8);
  for (let b = 0; b < x.length / 256; b++) {
    const at = b * 144, from = b * 256;
    for (let j = 0; j < 8; j++) {
      let lo = 0, hi = -Infinity;
      for (let l = 0; l < 32; l++) {
        const v = x[from + j * 32 + l]!;
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
      scale[j] = (hi - lo) / 15;
      min[j] = -lo;
    }
    const d = halfValue(float32ToF16Bits(Math.max(...scale) / 63)), dmin = halfValue(float32ToF16Bits(Math.max(...min) / 63));
    out.writeUInt16LE(float32ToF16Bits(d), at);
    out.writeUInt16LE(float32ToF16Bits(dmin), at + 2);
    for (let j = 0; j < 8; j++) {
      sc[j] = d > 0 ? Math.min(63, Math.round(scale[j]! / d)) : 0;
      m[j] = dmin > 0 ? Math.min(63, Math.round(min[j]! / dmin)) : 0;
    }
    for (let j = 0; j < 4; j++) {
      out[at + 4 + j] = sc[j]! | ((sc[j + 4]! >> 4) << 6);
      out[at + 8 + j] = m[j]! | ((m[j + 4]! >> 4) << 6);
      out[at + 12 + j] = (sc[j + 4]! & 0xf) | ((m[j + 4]! & 0xf) << 4);
    }
    for (let j = 0; j < 8; j++) {
      const step = d * sc[j]!, offset = dmin * m[j]!;
      for (let l = 0; l < 32; l++) {
        const q = step > 0 ? Math.max(0, Math.min(15, Math.round((x[from + j * 32 + l]! + offset) / step))) : 0;
        out[at + 16 + (j >> 1) * 32 + l]! |= q << (4 * (j & 1));
      }
    }
  }
  return out;
}

/**
 * Q6_K as llama.cpp's first pass (make_qx_quants with nmax 32): per 16 elements a signed scale
 * that maps the largest-magnitude element to -32 exactly, an int8 multiple of the block's f16 d,
 * q in -32..31. (Scales of amax / 31.5 clip the largest positive elements by up to a step: a
 * structured error no real file has.)
 */
function quantizeQ6K(x: ArrayLike<number>): Uint8Array {
  const out = Buffer.alloc((x.length / 256) * 210);
  const scale = new Float64Array(16);
  for (let b = 0; b < x.length / 256; b++) {
    const at = b * 210, from = b * 256;
    let largest = 0;
    for (let g = 0; g < 16; g++) {
      let peak = 0;
      for (let l = 0; l < 16; l++) {
        const v = x[from + g * 16 + l]!;
        if (Math.abs(v) > Math.abs(peak)) peak = v;
      }
      scale[g] = peak / -32;
      largest = Math.max(largest, Math.abs(scale[g]!));
    }
    const d = halfValue(float32ToF16Bits(largest / 127));
    out.writeUInt16LE(float32ToF16Bits(d), at + 208);
    for (let g = 0; g < 16; g++) {
      const sc = d > 0 ? Math.max(-128, Math.min(127, Math.round(scale[g]! / d))) : 0;
      out.writeInt8(sc, at + 192 + g);
      for (let l = 0; l < 16; l++) {
        const e = g * 16 + l, step = d * sc;
        const q = (step !== 0 ? Math.max(-32, Math.min(31, Math.round(x[from + e]! / step))) : 0) + 32;
        const h = e >> 7, r = e & 127;
        out[at + h * 64 + (r & 63)]! |= (q & 0xf) << (4 * (r >> 6));
        out[at + 128 + h * 32 + (r & 31)]! |= (q >> 4) << (2 * (r >> 5));
      }
    }
  }
  return out;
}

/** Values of a half-precision bit pattern (for expected values in tests). */
export function halfValue(bits: number): number {
  return f16Table()[bits]!;
}

/** Stored bytes of a tensor of `type` and `shape`, from the type's block geometry. */
function storedBytes(type: string, shape: readonly number[]): number {
  const t = ggmlTypeByName(type)!;
  return (shape.reduce((p, d) => p * d, 1) / t.blockElements) * t.blockBytes;
}

/** The header (padded to the alignment) of a GGUF file whose tensors take `sizes` bytes each. */
function encodeHeader(spec: GgufSpec, sizes: readonly number[]): Buffer {
  const alignment = spec.alignment ?? 32;
  const metadata = [...(spec.metadata ?? [])];
  if (alignment !== 32) metadata.push(['general.alignment', { t: 'u32', v: alignment }]);
  const w = new ByteWriter();
  w.push(Buffer.from('GGUF', 'latin1'));
  w.u32(spec.version ?? 3);
  w.u64(BigInt(spec.tensors.length));
  w.u64(BigInt(metadata.length));
  for (const [key, value] of metadata) {
    w.str(key);
    w.u32(TYPE_ID[value.t]);
    w.meta(value);
  }
  let offset = 0;
  spec.tensors.forEach((t, i) => {
    w.str(t.name);
    w.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) w.u64(BigInt(d));
    w.u32(t.typeId ?? ggmlTypeByName(t.type)!.id);
    w.u64(t.offset ?? BigInt(offset));
    offset += Math.ceil(sizes[i]! / alignment) * alignment;
  });
  const header = w.concat();
  return Buffer.concat([header, Buffer.alloc(Math.ceil(header.length / alignment) * alignment - header.length)]);
}

/** A GGUF file's bytes. */
export function encodeGguf(spec: GgufSpec): Buffer {
  const alignment = spec.alignment ?? 32;
  const payloads = spec.tensors.map((t) => t.bytes ?? encodeTensor(t.type, t.data ?? []));
  const parts: Buffer[] = [encodeHeader(spec, payloads.map((p) => p.length))];
  for (const p of payloads) parts.push(Buffer.from(p), Buffer.alloc(Math.ceil(p.length / alignment) * alignment - p.length));
  return Buffer.concat(parts);
}

/**
 * Write a GGUF file tensor by tensor, each one's bytes made by `produce` only when written (for
 * models too large to hold): memory is one tensor's.
 */
export function writeGgufStreaming(file: string, spec: GgufSpec, produce: (tensor: GgufTensorSpec, index: number) => Uint8Array): void {
  const alignment = spec.alignment ?? 32;
  const sizes = spec.tensors.map((t) => storedBytes(t.type, t.shape));
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, encodeHeader(spec, sizes));
    spec.tensors.forEach((t, i) => {
      const bytes = produce(t, i);
      if (bytes.length !== sizes[i]) throw new Error(`${t.name}: ${bytes.length} bytes for [${t.shape}] of ${t.type}`);
      fs.writeSync(fd, bytes);
      fs.writeSync(fd, Buffer.alloc(Math.ceil(bytes.length / alignment) * alignment - bytes.length));
    });
  } finally {
    fs.closeSync(fd);
  }
}

export function writeGguf(file: string, spec: GgufSpec): void {
  fs.writeFileSync(file, encodeGguf(spec));
}

/** llama.cpp's converter order of q/k rows: w.reshape(heads, 2, rows / heads / 2, cols).swapaxes(1, 2). */
export function permuteQkRows(data: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  const out = new Float32Array(data.length);
  const headDim = rows / heads, half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < half; j++) {
      for (let s = 0; s < 2; s++) {
        const from = h * headDim + s * half + j, to = h * headDim + 2 * j + s;
        out.set(data.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return out;
}

/** `general.file_type` of the files written here (llama.h LLAMA_FTYPE_*). */
const FILE_TYPE_IDS: Readonly<Record<string, number>> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7, Q4_K_M: 15, Q6_K: 18 };

const GGUF_NAMES: ReadonlyArray<readonly [hf: string, gguf: string]> = [
  ['self_attn.q_proj.weight', 'attn_q.weight'], ['self_attn.k_proj.weight', 'attn_k.weight'],
  ['self_attn.v_proj.weight', 'attn_v.weight'], ['self_attn.o_proj.weight', 'attn_output.weight'],
  ['mlp.gate_proj.weight', 'ffn_gate.weight'], ['mlp.up_proj.weight', 'ffn_up.weight'],
  ['mlp.down_proj.weight', 'ffn_down.weight'], ['input_layernorm.weight', 'attn_norm.weight'],
  ['post_attention_layernorm.weight', 'ffn_norm.weight'],
];

/** The GGUF name of a Hugging Face Llama tensor name. */
export function ggufName(hf: string): string {
  if (hf === 'model.embed_tokens.weight') return 'token_embd.weight';
  if (hf === 'lm_head.weight') return 'output.weight';
  if (hf === 'model.norm.weight') return 'output_norm.weight';
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hf);
  const suffix = m && GGUF_NAMES.find(([from]) => from === m[2]);
  if (!m || !suffix) throw new Error(`no GGUF name for ${hf}`);
  return `blk.${m[1]}.${suffix[1]}`;
}

/**
 * A synthetic Llama as llama.cpp's converter writes it: 2-D weights as `type` (or the type a
 * function gives each GGUF name, for mixes such as Q4_K_M), norms F32, q/k rows permuted unless
 * `arch` is not Llama-style (e.g. "qwen2"), `llama.*`-style metadata, a tokenizer.
 */
export function writeLlamaGguf(file: string, config: LlamaConfig, state: LlamaState, type: string | ((name: string) => string), arch = 'llama', version = 3): void {
  const typeOf = typeof type === 'string' ? () => type : type;
  const fileType = typeof type === 'string' ? type : 'Q4_K_M';
  const permuted = arch === 'llama';
  const tensors: GgufTensorSpec[] = [...state.keys()].sort().map((name) => {
    const t = state.get(name)!;
    let data = t.data;
    if (permuted && /self_attn\.(q|k)_proj/.test(name)) {
      const heads = name.includes('q_proj') ? config.heads : config.kvHeads;
      data = permuteQkRows(data, t.shape[0]!, t.shape[1]!, heads);
    }
    return { name: ggufName(name), type: t.shape.length === 1 ? 'F32' : typeOf(ggufName(name)), shape: t.shape, data };
  });
  writeGguf(file, { version, metadata: llamaGgufMetadata(config, fileType, arch), tensors });
}

/** The `{arch}.*`, file type and tokenizer metadata llama.cpp's converter writes for a Llama-style model. */
export function llamaGgufMetadata(config: LlamaConfig, fileType: string, arch = 'llama'): Array<readonly [string, GgufMeta]> {
  const u32 = (v: number): GgufMeta => ({ t: 'u32', v });
  return [
    ['general.architecture', { t: 'str', v: arch }],
    ['general.name', { t: 'str', v: 'synthetic' }],
    [`${arch}.embedding_length`, u32(config.hidden)],
    [`${arch}.block_count`, u32(config.layers)],
    [`${arch}.feed_forward_length`, u32(config.intermediate)],
    [`${arch}.attention.head_count`, u32(config.heads)],
    [`${arch}.attention.head_count_kv`, u32(config.kvHeads)],
    [`${arch}.attention.layer_norm_rms_epsilon`, { t: 'f32', v: 1e-5 }],
    ['general.file_type', u32(FILE_TYPE_IDS[fileType] ?? 0)],
    ['tokenizer.ggml.model', { t: 'str', v: 'llama' }],
    ['tokenizer.ggml.tokens', { t: 'arr', of: 'str', v: Array.from({ length: config.vocab }, (_, i) => `tok${i}`) }],
  ];
}