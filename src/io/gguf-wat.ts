/**
 * WebAssembly text of the SIMD dequantizers of the hot GGUF types (Q4_0, Q8_0, Q4_K, Q5_K, Q6_K),
 * generated here; scripts/build-gemm-wasm.ts compiles it into gguf-wasm.ts. Each kernel
 * dequant_<type>(src, blocks, out, variance) decodes `blocks` whole blocks stored at `src` into
 * float32 at `out` and, when `variance` is not 0, each element's rounding variance there; the
 * same values, bit for bit, as the JavaScript decoders of gguf-quants.ts: a float32 product or
 * difference in WebAssembly is the correctly rounded one that Math.fround of the float64 one gives
 * (float64 holds the exact product of two float32, and rounding a float64 sum of two float32 to
 * float32 is innocuous), and the variance step^2 / 12 is computed in float64 as there.
 * Pointers are byte offsets, unaligned loads are fine.
 */

/** The kernels' types, with each one's block geometry (as in gguf-quants.ts). */
export const WASM_DEQUANT_TYPES = ['Q4_0', 'Q8_0', 'Q4_K', 'Q5_K', 'Q6_K'] as const;
export type WasmDequantType = (typeof WASM_DEQUANT_TYPES)[number];

/** The exported function of a type. */
export function dequantExport(type: WasmDequantType): string {
  return `dequant_${type.toLowerCase()}`;
}

const get = (name: string) => `(local.get $${name})`;
const at = (base: string, offset: number) => (offset === 0 ? get(base) : `(i32.add ${get(base)} (i32.const ${offset}))`);
const byte = (offset: number) => `(i32.load8_u ${at('p', offset)})`;

/** Four f32x4 from the sixteen 8-bit lanes of `v` (unsigned or signed). */
function toFloats(v: string, signed: boolean): [string, string, string, string] {
  const s = signed ? 's' : 'u';
  const halves = [`(i16x8.extend_low_i8x16_${s} ${v})`, `(i16x8.extend_high_i8x16_${s} ${v})`];
  return halves.flatMap((h) => [`(i32x4.extend_low_i16x8_${s} ${h})`, `(i32x4.extend_high_i16x8_${s} ${h})`])
    .map((i) => `(f32x4.convert_i32x4_${s} ${i})`) as [string, string, string, string];
}

/**
 * Store 16 decoded values (the 8-bit lanes of local $q, signed or not) at element `element` of the
 * block's output: scale * q, minus `min` when given (all f32x4 locals).
 */
function storeSixteen(element: number, signed: boolean, scale: string, min: string | null): string {
  return toFloats(get('q'), signed).map((f, k) => {
    const product = `(f32x4.mul ${get(scale)} ${f})`;
    return `(v128.store offset=${4 * (element + 4 * k)} ${get('o')} ${min ? `(f32x4.sub ${product} ${get(min)})` : product})`;
  }).join('\n      ');
}

/** The rounding variance of a grid of step local $<step> (f32) over `count` elements from `element`, when wanted. */
function storeVariance(element: number, count: number, step: string): string {
  const variance = `(f32.demote_f64 (f64.div (f64.mul (f64.promote_f32 ${get(step)}) (f64.promote_f32 ${get(step)})) (f64.const 12)))`;
  const stores = Array.from({ length: count / 4 }, (_, k) => `(v128.store offset=${4 * (element + 4 * k)} ${get('v')} ${get('vs')})`);
  return `(if ${get('v')} (then (local.set $vs (f32x4.splat ${variance}))
      ${stores.join('\n      ')}))`;
}

const splat8 = (value: number) => `(i8x16.splat (i32.const ${value}))`;

/** The body decoding one block at $p into $o (and $v), per type. */
function blockBody(type: WasmDequantType): string {
  switch (type) {
    case 'Q8_0': // f16 d, int8 qs[32]
      return `(local.set $d (call $half ${get('p')}))
      (local.set $ds (f32x4.splat ${get('d')}))
      ${[0, 1].map((g) => `(local.set $q (v128.load ${at('p', 2 + 16 * g)}))
      ${storeSixteen(16 * g, true, 'ds', null)}`).join('\n      ')}
      ${storeVariance(0, 32, 'd')}`;
    case 'Q4_0': // f16 d, qs[16]: low nibbles are elements 0..15, high ones 16..31, both minus 8
      return `(local.set $d (call $half ${get('p')}))
      (local.set $ds (f32x4.splat ${get('d')}))
      (local.set $x (v128.load ${at('p', 2)}))
      (local.set $q (i8x16.sub (v128.and ${get('x')} ${splat8(15)}) ${splat8(8)}))
      ${storeSixteen(0, true, 'ds', null)}
      (local.set $q (i8x16.sub (i8x16.shr_u ${get('x')} (i32.const 4)) ${splat8(8)}))
      ${storeSixteen(16, true, 'ds', null)}
      ${storeVariance(0, 32, 'd')}`;
    case 'Q4_K':
    case 'Q5_K':
      return kQuantBody(type === 'Q5_K');
    case 'Q6_K':
      return q6kBody();
  }
}

/**
 * Q4_K (f16 d, f16 dmin, scales[12], qs[128]) and Q5_K (qh[32] before qs): sub-block j of 32 has
 * 6-bit scale sc and min m; dl = d * sc, ml = dmin * m, value = dl * q - ml; in each 64-element
 * chunk c the low nibbles are sub-block 2c, the high ones 2c + 1; Q5_K's fifth bit of element l of
 * sub-block j is bit j of qh[l].
 */
function kQuantBody(fifthBit: boolean): string {
  const qsAt = fifthBit ? 48 : 16;
  const parts = [`(local.set $d (call $half ${get('p')}))`, `(local.set $dmin (call $half ${at('p', 2)}))`];
  for (let j = 0; j < 8; j++) {
    const s = 4;
    const sc = j < 4 ? `(i32.and ${byte(s + j)} (i32.const 63))`
      : `(i32.or (i32.and ${byte(s + j + 4)} (i32.const 15)) (i32.shl (i32.shr_u ${byte(s + j - 4)} (i32.const 6)) (i32.const 4)))`;
    const m = j < 4 ? `(i32.and ${byte(s + j + 4)} (i32.const 63))`
      : `(i32.or (i32.shr_u ${byte(s + j + 4)} (i32.const 4)) (i32.shl (i32.shr_u ${byte(s + j)} (i32.const 6)) (i32.const 4)))`;
    parts.push(`(local.set $dl (f32.mul ${get('d')} (f32.convert_i32_u ${sc})))`,
      `(local.set $ds (f32x4.splat ${get('dl')}))`,
      `(local.set $ms (f32x4.splat (f32.mul ${get('dmin')} (f32.convert_i32_u ${m}))))`);
    const chunk = j >> 1;
    for (let g = 0; g < 2; g++) {
      const stored = `(v128.load ${at('p', qsAt + chunk * 32 + g * 16)})`;
      let q = j & 1 ? `(i8x16.shr_u ${stored} (i32.const 4))` : `(v128.and ${stored} ${splat8(15)})`;
      if (fifthBit) {
        const qh = `(v128.load ${at('p', 16 + g * 16)})`;
        q = `(v128.or ${q} (v128.and (i8x16.shl ${j === 0 ? qh : `(i8x16.shr_u ${qh} (i32.const ${j}))`} (i32.const 4)) ${splat8(16)}))`;
      }
      parts.push(`(local.set $q ${q})`, storeSixteen(j * 32 + g * 16, false, 'ds', 'ms'));
    }
    parts.push(storeVariance(j * 32, 32, 'dl'));
  }
  return parts.join('\n      ');
}

/**
 * Q6_K: ql[128] (4 low bits), qh[64] (2 high bits), int8 scales[16], f16 d. Element e = 128h + 32k
 * + l: low bits from ql[64h + 32(k & 1) + l] (high nibble when k >= 2), high bits 2k.. of
 * qh[32h + l], value (q - 32) * (d * scales[e / 16]).
 */
function q6kBody(): string {
  const parts = [`(local.set $d (call $half ${at('p', 208)}))`];
  for (let h = 0; h < 2; h++) {
    for (let k = 0; k < 4; k++) {
      for (let g = 0; g < 2; g++) {
        const ql = `(v128.load ${at('p', 64 * h + 32 * (k & 1) + 16 * g)})`;
        const low = k >= 2 ? `(i8x16.shr_u ${ql} (i32.const 4))` : `(v128.and ${ql} ${splat8(15)})`;
        const qh = `(v128.load ${at('p', 128 + 32 * h + 16 * g)})`;
        const high = `(i8x16.shl ${k === 0 ? qh : `(i8x16.shr_u ${qh} (i32.const ${2 * k}))`} (i32.const 4))`;
        const element = 128 * h + 32 * k + 16 * g;
        parts.push(`(local.set $q (i8x16.sub (v128.or ${low} (v128.and ${high} ${splat8(48)})) ${splat8(32)}))`,
          `(local.set $dl (f32.mul ${get('d')} (f32.convert_i32_s (i32.load8_s ${at('p', 192 + element / 16)}))))`,
          `(local.set $ds (f32x4.splat ${get('dl')}))`,
          storeSixteen(element, true, 'ds', null),
          storeVariance(element, 16, 'dl'));
      }
    }
  }
  return parts.join('\n      ');
}

const BLOCK: Readonly<Record<WasmDequantType, readonly [elements: number, bytes: number]>> = {
  Q4_0: [32, 18], Q8_0: [32, 34], Q4_K: [256, 144], Q5_K: [256, 176], Q6_K: [256, 210],
};

function kernel(type: WasmDequantType): string {
  const [elements, bytes] = BLOCK[type];
  return `(func (export "${dequantExport(type)}") (param $src i32) (param $blocks i32) (param $out i32) (param $variance i32)
  (local $b i32) (local $p i32) (local $o i32) (local $v i32)
  (local $d f32) (local $dmin f32) (local $dl f32)
  (local $x v128) (local $q v128) (local $ds v128) (local $ms v128) (local $vs v128)
  (local.set $p (local.get $src))
  (local.set $o (local.get $out))
  (local.set $v (local.get $variance))
  (block $done (loop $eachBlock
    (br_if $done (i32.ge_u (local.get $b) (local.get $blocks)))
      ${blockBody(type)}
    (local.set $p (i32.add (local.get $p) (i32.const ${bytes})))
    (local.set $o (i32.add (local.get $o) (i32.const ${4 * elements})))
    (if (local.get $v) (then (local.set $v (i32.add (local.get $v) (i32.const ${4 * elements})))))
    (local.set $b (i32.add (local.get $b) (i32.const 1)))
    (br $eachBlock)))
)`;
}

/**
 * An f16 to f32, exact: the magnitude bits moved to f32's places and scaled by 2^112 (normal and
 * subnormal alike); an all-ones exponent keeps its mantissa (infinity stays infinity, NaN NaN).
 */
const HALF = `(func $half (param $p i32) (result f32)
  (local $h i32) (local $mag i32)
  (local.set $h (i32.load16_u (local.get $p)))
  (local.set $mag (i32.and (local.get $h) (i32.const 0x7fff)))
  (f32.reinterpret_i32
    (i32.or
      (i32.shl (i32.and (local.get $h) (i32.const 0x8000)) (i32.const 16))
      (if (result i32) (i32.ge_u (local.get $mag) (i32.const 0x7c00))
        (then (i32.or (i32.const 0x7f800000) (i32.shl (i32.and (local.get $mag) (i32.const 0x3ff)) (i32.const 13))))
        (else (i32.reinterpret_f32 (f32.mul (f32.reinterpret_i32 (i32.shl (local.get $mag) (i32.const 13))) (f32.const 0x1p112))))))))`;

export function ggufWat(): string {
  return `(module
(memory (export "memory") 1)
${HALF}
${WASM_DEQUANT_TYPES.map(kernel).join('\n')}
)`;
}
