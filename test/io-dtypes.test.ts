import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bf16Table, decodeInto, f16Table, f8e4m3Table, f8e5m2Table, float32ToBf16Bits, float32ToF16Bits,
  roundToDtype, ulpOf, unitRoundoff,
} from '../src/io/dtypes.js';
import { encodeValues } from '../src/io/writer.js';
import type { DType } from '../src/io/types.js';

/** Same value, telling -0 from +0 and accepting any NaN for NaN. */
function assertSameFloat(actual: number, expected: number, what: string): void {
  if (Number.isNaN(expected)) assert.ok(Number.isNaN(actual), `${what}: expected NaN, got ${actual}`);
  else assert.ok(Object.is(actual, expected), `${what}: expected ${expected}, got ${actual}`);
}

function decodePatterns(dtype: DType, patterns: number[]): Float32Array {
  const bytesPer = dtype === 'F8_E4M3' || dtype === 'F8_E5M2' ? 1 : 2;
  const bytes = new Uint8Array(patterns.length * bytesPer);
  const view = new DataView(bytes.buffer);
  patterns.forEach((p, i) => (bytesPer === 1 ? view.setUint8(i, p) : view.setUint16(2 * i, p, true)));
  const out = new Float32Array(patterns.length);
  decodeInto(dtype, bytes, patterns.length, out, 0);
  return out;
}

const BF16_CASES: [number, number][] = [
  [0x0000, 0], [0x8000, -0], [0x3f80, 1], [0xbf80, -1], [0x4049, 3.140625],
  [0x0001, 2 ** -133], [0x007f, 127 * 2 ** -133], [0x8001, -(2 ** -133)], [0x0080, 2 ** -126],
  [0x7f7f, (2 - 2 ** -7) * 2 ** 127], [0x7f80, Infinity], [0xff80, -Infinity], [0x7fc0, NaN], [0xffc1, NaN],
];

const F16_CASES: [number, number][] = [
  [0x0000, 0], [0x8000, -0], [0x3c00, 1], [0xc000, -2], [0x3555, 0.333251953125],
  [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24], [0x8001, -(2 ** -24)], [0x0400, 2 ** -14],
  [0x7bff, 65504], [0xfbff, -65504], [0x7c00, Infinity], [0xfc00, -Infinity], [0x7e00, NaN], [0x7c01, NaN],
];

const E4M3_CASES: [number, number][] = [
  [0x00, 0], [0x80, -0], [0x38, 1], [0xb8, -1], [0x01, 2 ** -9], [0x07, 7 * 2 ** -9], [0x08, 2 ** -6],
  [0x7e, 448], [0xfe, -448], [0x7f, NaN], [0xff, NaN], [0x78, 256],
];

const E5M2_CASES: [number, number][] = [
  [0x00, 0], [0x80, -0], [0x3c, 1], [0xc0, -2], [0x01, 2 ** -16], [0x03, 3 * 2 ** -16], [0x04, 2 ** -14],
  [0x7b, 57344], [0x7c, Infinity], [0xfc, -Infinity], [0x7d, NaN], [0xff, NaN],
];

for (const [dtype, cases] of [['BF16', BF16_CASES], ['F16', F16_CASES], ['F8_E4M3', E4M3_CASES], ['F8_E5M2', E5M2_CASES]] as const) {
  test(`${dtype} bit patterns decode exactly (subnormals, extremes, inf, nan, signed zero)`, () => {
    const out = decodePatterns(dtype, cases.map(([p]) => p));
    cases.forEach(([pattern, expected], i) => assertSameFloat(out[i]!, expected, `${dtype} 0x${pattern.toString(16)}`));
  });
}

test('bf16 table is the top half of float32 for every pattern; f16 table is monotone over positives', () => {
  const bf16 = bf16Table();
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (let h = 0; h < 65536; h += 7) {
    u32[0] = h << 16;
    assertSameFloat(bf16[h]!, f32[0]!, `bf16 0x${h.toString(16)}`);
  }
  const f16 = f16Table();
  for (let h = 1; h < 0x7c00; h++) assert.ok(f16[h]! > f16[h - 1]!, `f16 0x${h.toString(16)} not above its predecessor`);
  assert.equal(f8e4m3Table().length, 256);
  assert.equal(f8e5m2Table().length, 256);
});

test('wide floats and integer dtypes decode as numbers', () => {
  const cases: [DType, number[], number[]][] = [
    ['F64', [0.1, -2.5, 1e300], [Math.fround(0.1), -2.5, Infinity]],
    ['F32', [Math.fround(0.1), -0, 3.4028234663852886e38], [Math.fround(0.1), -0, 3.4028234663852886e38]],
    ['I8', [-128, 127, 0, -1], [-128, 127, 0, -1]],
    ['U8', [0, 255, 7], [0, 255, 7]],
    ['I16', [-32768, 32767], [-32768, 32767]],
    ['U16', [65535, 1], [65535, 1]],
    ['I32', [-(2 ** 31), 2 ** 31 - 1, 5], [-(2 ** 31), 2 ** 31, 5]],
    ['U32', [2 ** 32 - 1], [2 ** 32]],
    ['I64', [-(2 ** 40), 3], [-(2 ** 40), 3]],
    ['U64', [2 ** 50], [2 ** 50]],
    ['BOOL', [0, 1, 1], [0, 1, 1]],
  ];
  for (const [dtype, values, expected] of cases) {
    const bytes = encodeValues(dtype, values);
    const out = new Float32Array(values.length);
    decodeInto(dtype, bytes, values.length, out, 0);
    expected.forEach((e, i) => assertSameFloat(out[i]!, e, `${dtype}[${i}]`));
  }
  const boolBytes = new Uint8Array([0, 1, 2, 255]);
  const out = new Float32Array(4);
  decodeInto('BOOL', boolBytes, 4, out, 0);
  assert.deepEqual([...out], [0, 1, 1, 1]);
});

test('decoding into an offset of the output leaves the rest untouched', () => {
  const out = new Float32Array([9, 9, 9, 9]);
  decodeInto('BF16', new Uint8Array([0x80, 0x3f, 0x00, 0x40]), 2, out, 1);
  assert.deepEqual([...out], [9, 1, 2, 9]);
});

test('roundToDtype BF16: ties to even, overflow to inf, NaN kept, tiny to zero', () => {
  const input = new Float32Array([
    1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -(1 + 2 ** -8), 3.4028234663852886e38, NaN, 2 ** -140, -(2 ** -140), 0.1,
  ]);
  const expected = [1, 1 + 2 ** -6, 1 + 2 ** -7, -1, Infinity, NaN, 0, -0, 0.10009765625];
  const out = roundToDtype(input, 'BF16');
  expected.forEach((e, i) => assertSameFloat(out[i]!, e, `bf16 round of ${input[i]}`));
  assert.equal(float32ToBf16Bits(0.1), 0x3dcd);
});

test('roundToDtype F16: ties to even, subnormals, overflow threshold', () => {
  const input = new Float32Array([
    1 + 2 ** -11, 1 + 3 * 2 ** -11, 1024.5, 1025.5, 65519, 65520, -65520, 2 ** -25, 3 * 2 ** -25, 2 ** -14 - 2 ** -25, NaN, -0, 1e-10,
  ]);
  const expected = [1, 1 + 2 ** -9, 1024, 1026, 65504, Infinity, -Infinity, 0, 2 ** -23, 2 ** -14, NaN, -0, 0];
  const out = roundToDtype(input, 'F16');
  expected.forEach((e, i) => assertSameFloat(out[i]!, e, `f16 round of ${input[i]}`));
  assert.equal(float32ToF16Bits(0.1), 0x2e66);
});

test('roundToDtype F16 and BF16 pick the nearest grid value (brute force over sorted grids)', () => {
  let state = 12345;
  const random = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  for (const [dtype, table] of [['F16', f16Table()], ['BF16', bf16Table()]] as const) {
    const grid = [...table].filter((v) => Number.isFinite(v) && v >= 0 && !Object.is(v, -0)).sort((a, b) => a - b);
    const values = new Float32Array(4000).map(() => Math.fround((random() - 0.5) * 2 ** Math.floor(random() * 40 - 26)));
    const rounded = roundToDtype(values, dtype);
    values.forEach((v, i) => {
      const magnitude = Math.abs(v);
      let lo = 0, hi = grid.length - 1;
      while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (grid[mid]! <= magnitude) lo = mid; else hi = mid; }
      const below = Math.abs(grid[lo]! - magnitude), above = Math.abs(grid[hi]! - magnitude);
      if (below === above) {
        // A tie: the even bit pattern wins.
        const bits = dtype === 'F16' ? float32ToF16Bits(rounded[i]!) : float32ToBf16Bits(rounded[i]!);
        assert.ok([grid[lo], grid[hi]].includes(Math.abs(rounded[i]!)) && (bits & 1) === 0, `${dtype} tie round of ${v}`);
      } else {
        assert.equal(Math.abs(rounded[i]!), below < above ? grid[lo]! : grid[hi]!, `${dtype} round of ${v}`);
      }
      assert.ok(Math.abs(rounded[i]! - v) <= ulpOf(v, dtype) / 2, `${dtype} error of ${v} exceeds half an ulp`);
    });
  }
  assert.deepEqual([...roundToDtype(new Float32Array([0.1, -3]), 'F32')], [Math.fround(0.1), -3]);
});

test('unitRoundoff and ulpOf describe each grid', () => {
  assert.equal(unitRoundoff('BF16'), 2 ** -8);
  assert.equal(unitRoundoff('F16'), 2 ** -11);
  assert.equal(unitRoundoff('F32'), 2 ** -24);
  assert.equal(unitRoundoff('F64'), 2 ** -53);
  assert.equal(unitRoundoff('F8_E4M3'), 2 ** -4);
  assert.equal(unitRoundoff('F8_E5M2'), 2 ** -3);
  assert.equal(ulpOf(1, 'BF16'), 2 ** -7);
  assert.equal(ulpOf(1.99, 'BF16'), 2 ** -7);
  assert.equal(ulpOf(2, 'BF16'), 2 ** -6);
  assert.equal(ulpOf(-0.99, 'BF16'), 2 ** -8);
  assert.equal(ulpOf(0, 'F16'), 2 ** -24);
  assert.equal(ulpOf(1e-6, 'F16'), 2 ** -24);
  assert.equal(ulpOf(65504, 'F16'), 32);
  assert.equal(ulpOf(1, 'F32'), 2 ** -23);
  assert.equal(ulpOf(448, 'F8_E4M3'), 32);
  assert.equal(ulpOf(0, 'F8_E4M3'), 2 ** -9);
  assert.ok(Number.isNaN(ulpOf(Infinity, 'BF16')));
  assert.ok(Number.isNaN(ulpOf(NaN, 'F32')));
});

test('8-bit encoders round to the nearest code and round-trip every finite code', () => {
  for (const [dtype, table] of [['F8_E4M3', f8e4m3Table()], ['F8_E5M2', f8e5m2Table()]] as const) {
    const finite = [...table.keys()].filter((code) => Number.isFinite(table[code]!));
    const bytes = encodeValues(dtype, finite.map((code) => table[code]!));
    finite.forEach((code, i) => assert.equal(bytes[i], code, `${dtype} code 0x${code.toString(16)}`));
  }
  // 1.0625 lies halfway between 1 (0x38, even) and 1.125 (0x39): ties to even.
  assert.equal(encodeValues('F8_E4M3', [1.0625])[0], 0x38);
  assert.equal(encodeValues('F8_E4M3', [1.1])[0], 0x39);
});
