/**
 * GGML tensor types: block geometry of every type a GGUF file may name, and dequantizers for the
 * ones read here. Each dequantizer reproduces llama.cpp's reference (gguf-py's quants.py, which
 * computes in float32) bit for bit: every product and sum is rounded to float32 in the order the
 * reference performs it (Math.fround), so the decoded weights are exactly what llama.cpp reads.
 *
 * Each decoder can also give every element's rounding variance (step^2 / 12, the step being the
 * spacing of its block's grid): the noise floor quantization put on the weight, as ulp^2 / 12 is
 * for a float grid.
 */
import { BadInputError } from './errors.js';
import { bf16Table, f16Table, roundingVarianceTable } from './dtypes.js';
import { GGUF_WASM_BASE64 } from './gguf-wasm.js';
import { dequantExport, WASM_DEQUANT_TYPES, type WasmDequantType } from './gguf-wat.js';

/** GGML type ids (ggml.h) with their block geometry; a type outside this table cannot even be sized. */
const GGML_TYPES: ReadonlyArray<readonly [id: number, name: string, blockElements: number, blockBytes: number]> = [
  [0, 'F32', 1, 4], [1, 'F16', 1, 2], [2, 'Q4_0', 32, 18], [3, 'Q4_1', 32, 20],
  [6, 'Q5_0', 32, 22], [7, 'Q5_1', 32, 24], [8, 'Q8_0', 32, 34], [9, 'Q8_1', 32, 36],
  [10, 'Q2_K', 256, 84], [11, 'Q3_K', 256, 110], [12, 'Q4_K', 256, 144], [13, 'Q5_K', 256, 176],
  [14, 'Q6_K', 256, 210], [15, 'Q8_K', 256, 292], [16, 'IQ2_XXS', 256, 66], [17, 'IQ2_XS', 256, 74],
  [18, 'IQ3_XXS', 256, 98], [19, 'IQ1_S', 256, 50], [20, 'IQ4_NL', 32, 18], [21, 'IQ3_S', 256, 110],
  [22, 'IQ2_S', 256, 82], [23, 'IQ4_XS', 256, 136], [24, 'I8', 1, 1], [25, 'I16', 1, 2],
  [26, 'I32', 1, 4], [27, 'I64', 1, 8], [28, 'F64', 1, 8], [29, 'IQ1_M', 256, 56],
  [30, 'BF16', 1, 2], [34, 'TQ1_0', 256, 54], [35, 'TQ2_0', 256, 66], [39, 'MXFP4', 32, 17],
  [40, 'NVFP4', 64, 36],
];

/** The types decoded here (the list); the dtype strings a GGUF TensorInfo carries. */
export const GGUF_DECODED_TYPES = [
  'F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1',
  'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K', 'IQ4_NL', 'IQ4_XS',
] as const;
export type GgufDecodedType = (typeof GGUF_DECODED_TYPES)[number];
/** Quantized storage (block-scaled grids), as a TensorInfo's dtype. */
export type QuantType = Exclude<GgufDecodedType, 'F32' | 'F16' | 'BF16'>;

export interface GgmlType {
  readonly id: number;
  readonly name: string;
  readonly blockElements: number;
  readonly blockBytes: number;
}

const BY_ID = new Map<number, GgmlType>(GGML_TYPES.map(([id, name, blockElements, blockBytes]) => [id, { id, name, blockElements, blockBytes }]));
const BY_NAME = new Map<string, GgmlType>([...BY_ID.values()].map((t) => [t.name, t]));

/** The type of a GGML type id, or null when the id is unknown (the file cannot be sized). */
export function ggmlTypeById(id: number): GgmlType | null {
  return BY_ID.get(id) ?? null;
}

export function ggmlTypeByName(name: string): GgmlType | null {
  return BY_NAME.get(name) ?? null;
}

const QUANT_TYPES: ReadonlySet<string> = new Set(GGUF_DECODED_TYPES.filter((t) => t !== 'F32' && t !== 'F16' && t !== 'BF16'));

export function isQuantType(dtype: string): dtype is QuantType {
  return QUANT_TYPES.has(dtype);
}

export function isDecodedGgufType(name: string): name is GgufDecodedType {
  return (GGUF_DECODED_TYPES as readonly string[]).includes(name);
}

/**
 * Decode `blocks` whole blocks of `type` stored at src[at...] into out[outAt...]; when `variance`
 * is given, also write each element's rounding variance there (same positions). Throws
 * BadInputError "unsupported tensor type T in tensor N" for a type without a decoder.
 */
export function dequantizeBlocks(
  type: string, src: Uint8Array, at: number, blocks: number, out: Float32Array, outAt: number,
  variance: Float32Array | null, where: { file?: string; tensor?: string } = {},
): void {
  const decoder = DECODERS[type];
  if (!decoder) throw new BadInputError(`unsupported tensor type ${type} in tensor ${where.tensor ?? '?'}`, where);
  const { blockElements, blockBytes } = BY_NAME.get(type)!;
  // Callers pass whole blocks they read; the WebAssembly path would otherwise decode stale staging bytes.
  if (at + blocks * blockBytes > src.length || outAt + blocks * blockElements > out.length || (variance && outAt + blocks * blockElements > variance.length)) {
    throw new RangeError(`${blocks} ${type} blocks at byte ${at} of ${src.length}, into ${out.length} values from ${outAt}`);
  }
  const simd = wasmDecoder(type);
  if (simd) simd(src, at, blocks, out, outAt, variance);
  else decoder(src, at, blocks, out, outAt, variance);
}

let wasmEnabled = true;

/** Turn the WebAssembly dequantizers off or on (tests and benchmarks compare them with the JavaScript ones). */
export function useWasmDequantizers(on: boolean): void {
  wasmEnabled = on;
}

/** Elements one call of a WebAssembly kernel decodes at most: its staging in the module's memory. */
const WASM_CHUNK_ELEMENTS = 1 << 16;
/** Staging in the module's memory: stored blocks (at most 128 KiB: 2048 Q8_0 blocks), then their values, then their variances. */
const WASM_SRC = 0, WASM_OUT = 1 << 17, WASM_VARIANCE = WASM_OUT + 4 * WASM_CHUNK_ELEMENTS;

let wasmDecoders: Map<string, BlockDecoder> | null | undefined;

/** The WebAssembly decoder of `type` (same values, bit for bit), or null: not a hot type, turned off, or no SIMD here. */
function wasmDecoder(type: string): BlockDecoder | null {
  if (!wasmEnabled) return null;
  wasmDecoders ??= instantiateDecoders();
  return wasmDecoders?.get(type) ?? null;
}

function instantiateDecoders(): Map<string, BlockDecoder> | null {
  let exports: WebAssembly.Exports;
  try {
    exports = new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(GGUF_WASM_BASE64, 'base64')), {}).exports;
  } catch {
    return null; // a runtime without WebAssembly SIMD keeps the JavaScript decoders
  }
  const memory = exports['memory'] as WebAssembly.Memory;
  const staging = WASM_VARIANCE + 4 * WASM_CHUNK_ELEMENTS;
  memory.grow(Math.ceil(Math.max(0, staging - memory.buffer.byteLength) / 65536));
  return new Map(WASM_DEQUANT_TYPES.map((type) => [type, stagedDecoder(type, memory, exports[dequantExport(type)] as (src: number, blocks: number, out: number, variance: number) => void)]));
}

/** A BlockDecoder over a kernel: blocks copied into the module's memory a staging's worth at a time, the results copied out. */
function stagedDecoder(type: WasmDequantType, memory: WebAssembly.Memory, kernel: (src: number, blocks: number, out: number, variance: number) => void): BlockDecoder {
  const { blockElements, blockBytes } = BY_NAME.get(type)!;
  const perCall = WASM_CHUNK_ELEMENTS / blockElements;
  const heap = new Uint8Array(memory.buffer), values = new Float32Array(memory.buffer);
  return (src, at, blocks, out, outAt, variance) => {
    for (let done = 0; done < blocks; done += perCall) {
      const count = Math.min(perCall, blocks - done), elements = count * blockElements;
      heap.set(src.subarray(at + done * blockBytes, at + (done + count) * blockBytes), WASM_SRC);
      kernel(WASM_SRC, count, WASM_OUT, variance ? WASM_VARIANCE : 0);
      out.set(values.subarray(WASM_OUT / 4, WASM_OUT / 4 + elements), outAt + done * blockElements);
      variance?.set(values.subarray(WASM_VARIANCE / 4, WASM_VARIANCE / 4 + elements), outAt + done * blockElements);
    }
  };
}

/** Whether `type` has a dequantizer here. */
export function hasDecoder(type: string): boolean {
  return DECODERS[type] !== undefined;
}

type BlockDecoder = (src: Uint8Array, at: number, blocks: number, out: Float32Array, outAt: number, variance: Float32Array | null) => void;

const fr = Math.fround;

function half(src: Uint8Array, at: number): number {
  return f16Table()[src[at]! | (src[at + 1]! << 8)]!;
}

/** Step^2 / 12 of a uniform grid of spacing `step` (as float32, like the variances of float grids). */
function stepVariance(step: number): number {
  return fr((step * step) / 12);
}

function fillVariance(variance: Float32Array | null, at: number, count: number, step: number): void {
  if (variance) variance.fill(stepVariance(step), at, at + count);
}

/** Float storage's variance is the float grid's (ulp^2 / 12 by exponent). */
function floatVariance(grid: 'F32' | 'F16' | 'BF16', out: Float32Array, outAt: number, count: number, variance: Float32Array): void {
  const table = roundingVarianceTable(grid);
  const bits = new Uint32Array(out.buffer, out.byteOffset + outAt * 4, count);
  for (let i = 0; i < count; i++) variance[outAt + i] = table[(bits[i]! >>> 23) & 0xff]!;
}

// IQ4_NL / IQ4_XS: a fixed non-uniform 16-level grid (ggml-common.h kvalues_iq4nl).
const IQ4_LEVELS = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];
/** Half the distance between a level's neighbours: the width of the interval that rounds to it. */
const IQ4_STEPS = IQ4_LEVELS.map((v, i) => {
  const below = i > 0 ? v - IQ4_LEVELS[i - 1]! : IQ4_LEVELS[1]! - v;
  const above = i < 15 ? IQ4_LEVELS[i + 1]! - v : v - IQ4_LEVELS[14]!;
  return (below + above) / 2;
});

const DECODERS: Readonly<Record<string, BlockDecoder>> = {
  F32(src, at, blocks, out, outAt, variance) {
    const view = new DataView(src.buffer, src.byteOffset + at, blocks * 4);
    for (let i = 0; i < blocks; i++) out[outAt + i] = view.getFloat32(i * 4, true);
    if (variance) floatVariance('F32', out, outAt, blocks, variance);
  },
  F16(src, at, blocks, out, outAt, variance) {
    const table = f16Table();
    for (let i = 0; i < blocks; i++) out[outAt + i] = table[src[at + 2 * i]! | (src[at + 2 * i + 1]! << 8)]!;
    if (variance) floatVariance('F16', out, outAt, blocks, variance);
  },
  BF16(src, at, blocks, out, outAt, variance) {
    const table = bf16Table();
    for (let i = 0; i < blocks; i++) out[outAt + i] = table[src[at + 2 * i]! | (src[at + 2 * i + 1]! << 8)]!;
    if (variance) floatVariance('BF16', out, outAt, blocks, variance);
  },
  Q8_0(src, at, blocks, out, outAt, variance) {
    for (let b = 0; b < blocks; b++, at += 34, outAt += 32) {
      const d = half(src, at);
      for (let j = 0; j < 32; j++) out[outAt + j] = fr(d * ((src[at + 2 + j]! << 24) >> 24));
      fillVariance(variance, outAt, 32, d);
    }
  },
  Q4_0(src, at, blocks, out, outAt, variance) {
    for (let b = 0; b < blocks; b++, at += 18, outAt += 32) {
      const d = half(src, at);
      for (let j = 0; j < 16; j++) {
        const q = src[at + 2 + j]!;
        out[outAt + j] = fr(d * ((q & 0xf) - 8));
        out[outAt + j + 16] = fr(d * ((q >> 4) - 8));
      }
      fillVariance(variance, outAt, 32, d);
    }
  },
  Q4_1(src, at, blocks, out, outAt, variance) {
    for (let b = 0; b < blocks; b++, at += 20, outAt += 32) {
      const d = half(src, at), m = half(src, at + 2);
      for (let j = 0; j < 16; j++) {
        const q = src[at + 4 + j]!;
        out[outAt + j] = fr(fr(d * (q & 0xf)) + m);
        out[outAt + j + 16] = fr(fr(d * (q >> 4)) + m);
      }
      fillVariance(variance, outAt, 32, d);
    }
  },
  Q5_0(src, at, blocks, out, outAt, variance) {
    for (let b = 0; b < blocks; b++, at += 22, outAt += 32) {
      const d = half(src, at);
      const qh = (src[at + 2]! | (src[at + 3]! << 8) | (src[at + 4]! << 16) | (src[at + 5]! << 24)) >>> 0;
      for (let j = 0; j < 16; j++) {
        const q = src[at + 6 + j]!;
        out[outAt + j] = fr(d * (((q & 0xf) | (((qh >>> j) & 1) << 4)) - 16));
        out[outAt + j + 16] = fr(d * (((q >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16));
      }
      fillVariance(variance, outAt, 32, d);
    }
  },
  Q5_1(src, at, blocks, out, outAt, variance) {
    for (let b = 0; b < blocks; b++, at += 24, outAt += 32) {
      const d = half(src, at), m = half(src, at + 2);
      const qh = (src[at + 4]! | (src[at + 5]! << 8) | (src[at + 6]! << 16) | (src[at + 7]! << 24)) >>> 0;
      for (let j = 0; j < 16; j++) {
        const q = src[at + 8 + j]!;
        out[outAt + j] = fr(fr(d * ((q & 0xf) | (((qh >>> j) & 1) << 4))) + m);
        out[outAt + j + 16] = fr(fr(d * ((q >> 4) | (((qh >>> (j + 16)) & 1) << 4))) + m);
      }
      fillVariance(variance, outAt, 32, d);
    }
  },
  // Q2_K: scales[16] (low nibble scale, high nibble min), qs[64] (2 bits), f16 d, f16 dmin.
  Q2_K(src, at, blocks, out, outAt, variance) {
    for (let b = 0; b < blocks; b++, at += 84, outAt += 256) {
      const d = half(src, at + 80), dmin = half(src, at + 82);
      for (let e = 0; e < 256; e++) {
        const half128 = e >> 7, shift = (e >> 5) & 3, l = e & 31;
        const q = (src[at + 16 + half128 * 32 + l]! >> (2 * shift)) & 3;
        const sc = src[at + (e >> 4)]!;
        out[outAt + e] = fr(fr(fr(d * (sc & 0xf)) * q) - fr(dmin * (sc >> 4)));
      }
      if (variance) for (let g = 0; g < 16; g++) fillVariance(variance, outAt + g * 16, 16, fr(d * (src[at + g]! & 0xf)));
    }
  },
  // Q3_K: hmask[32], qs[64] (2 low bits), scales[12] (sixteen 6-bit scales), f16 d.
  Q3_K(src, at, blocks, out, outAt, variance) {
    const scales = new Float32Array(16);
    for (let b = 0; b < blocks; b++, at += 110, outAt += 256) {
      const d = half(src, at + 108);
      for (let i = 0; i < 16; i++) {
        const low = (src[at + 96 + (i & 7)]! >> (4 * (i >> 3))) & 0xf;
        const high = (src[at + 104 + (i & 3)]! >> (2 * (i >> 2))) & 3;
        scales[i] = fr(d * ((low | (high << 4)) - 32));
      }
      for (let e = 0; e < 256; e++) {
        const l = e & 31;
        const low = (src[at + 32 + (e >> 7) * 32 + l]! >> (2 * ((e >> 5) & 3))) & 3;
        const high = (src[at + l]! >> (e >> 5)) & 1;
        out[outAt + e] = fr(scales[e >> 4]! * (low - (high ? 0 : 4)));
      }
      if (variance) for (let g = 0; g < 16; g++) fillVariance(variance, outAt + g * 16, 16, scales[g]!);
    }
  },
  Q4_K(src, at, blocks, out, outAt, variance) {
    decodeK4(src, at, blocks, out, outAt, variance, false);
  },
  Q5_K(src, at, blocks, out, outAt, variance) {
    decodeK4(src, at, blocks, out, outAt, variance, true);
  },
  // Q6_K: ql[128] (4 low bits), qh[64] (2 high bits), int8 scales[16], f16 d.
  Q6_K(src, at, blocks, out, outAt, variance) {
    const scales = new Float32Array(16);
    for (let b = 0; b < blocks; b++, at += 210, outAt += 256) {
      const d = half(src, at + 208);
      for (let i = 0; i < 16; i++) scales[i] = fr(d * ((src[at + 192 + i]! << 24) >> 24));
      for (let e = 0; e < 256; e++) {
        const h = e >> 7, r = e & 127;
        const low = (src[at + h * 64 + (r & 63)]! >> (4 * (r >> 6))) & 0xf;
        const high = (src[at + 128 + h * 32 + (r & 31)]! >> (2 * (r >> 5))) & 3;
        out[outAt + e] = fr(scales[e >> 4]! * ((low | (high << 4)) - 32));
      }
      if (variance) for (let g = 0; g < 16; g++) fillVariance(variance, outAt + g * 16, 16, scales[g]!);
    }
  },
  IQ4_NL(src, at, blocks, out, outAt, variance) {
    for (let b = 0; b < blocks; b++, at += 18, outAt += 32) {
      const d = half(src, at);
      for (let j = 0; j < 16; j++) {
        const q = src[at + 2 + j]!;
        out[outAt + j] = fr(d * IQ4_LEVELS[q & 0xf]!);
        out[outAt + j + 16] = fr(d * IQ4_LEVELS[q >> 4]!);
        if (variance) {
          variance[outAt + j] = stepVariance(d * IQ4_STEPS[q & 0xf]!);
          variance[outAt + j + 16] = stepVariance(d * IQ4_STEPS[q >> 4]!);
        }
      }
    }
  },
  // IQ4_XS: f16 d, u16 scales_h, scales_l[4], qs[128]: eight sub-blocks of 32 on the IQ4 grid.
  IQ4_XS(src, at, blocks, out, outAt, variance) {
    for (let b = 0; b < blocks; b++, at += 136, outAt += 256) {
      const d = half(src, at);
      const scalesHigh = src[at + 2]! | (src[at + 3]! << 8);
      for (let j = 0; j < 8; j++) {
        const low = (src[at + 4 + (j >> 1)]! >> (4 * (j & 1))) & 0xf;
        const high = (scalesHigh >> (2 * j)) & 3;
        const dl = fr(d * ((low | (high << 4)) - 32));
        for (let l = 0; l < 16; l++) {
          const q = src[at + 8 + j * 16 + l]!;
          const o = outAt + j * 32 + l;
          out[o] = fr(dl * IQ4_LEVELS[q & 0xf]!);
          out[o + 16] = fr(dl * IQ4_LEVELS[q >> 4]!);
          if (variance) {
            variance[o] = stepVariance(dl * IQ4_STEPS[q & 0xf]!);
            variance[o + 16] = stepVariance(dl * IQ4_STEPS[q >> 4]!);
          }
        }
      }
    }
  },
};

/**
 * Q4_K (f16 d, f16 dmin, scales[12], qs[128]) and Q5_K (the same with qh[32] before qs): eight
 * sub-blocks of 32 with 6-bit scale and min each; in each 64-element chunk the low nibbles use
 * sub-block 2c and the high nibbles 2c + 1.
 */
function decodeK4(src: Uint8Array, at: number, blocks: number, out: Float32Array, outAt: number, variance: Float32Array | null, fifthBit: boolean): void {
  const blockBytes = fifthBit ? 176 : 144, qsAt = fifthBit ? 48 : 16;
  for (let b = 0; b < blocks; b++, at += blockBytes, outAt += 256) {
    const d = half(src, at), dmin = half(src, at + 2);
    const s = at + 4;
    for (let j = 0; j < 8; j++) {
      const sc = j < 4 ? src[s + j]! & 63 : (src[s + j + 4]! & 0xf) | ((src[s + j - 4]! >> 6) << 4);
      const m = j < 4 ? src[s + j + 4]! & 63 : (src[s + j + 4]! >> 4) | ((src[s + j]! >> 6) << 4);
      const dl = fr(d * sc), ml = fr(dmin * m);
      const chunk = j >> 1, shift = 4 * (j & 1);
      for (let l = 0; l < 32; l++) {
        let q = (src[at + qsAt + chunk * 32 + l]! >> shift) & 0xf;
        if (fifthBit) q |= ((src[at + 16 + l]! >> j) & 1) << 4;
        out[outAt + j * 32 + l] = fr(fr(dl * q) - ml);
      }
      fillVariance(variance, outAt + j * 32, 32, dl);
    }
  }
}
