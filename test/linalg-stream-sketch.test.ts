/**
 * The streaming CountSketch kernel (src/linalg/stream-sketch.ts): committed bytes current, the
 * WebAssembly and JavaScript paths bit-identical, and both equal to the defining sums.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileSketch } from '../scripts/build-gemm-wasm.js';
import { SKETCH_WASM_BASE64 } from '../src/linalg/sketch-wasm.js';
import { signMasks, StreamSketcher, type SketchKernelMode, type StreamedView } from '../src/linalg/stream-sketch.js';
import { Rng } from '../src/linalg/rng.js';
import { decodeInto, roundingVarianceTable } from '../src/io/dtypes.js';
import { encodeValues } from '../src/io/writer.js';

const BF16_GRID = { precision: 8, minExponent: -126 };
const F32_GRID = { precision: 24, minExponent: -126 };
const F16_GRID = { precision: 11, minExponent: -14 };

test('stream sketch: the committed WebAssembly is compiled from the current text', async () => {
  assert.equal(Buffer.from(await compileSketch()).toString('base64'), SKETCH_WASM_BASE64);
});

/** Random float32 values with a spread of magnitudes, some exact zeros. */
function randomValues(count: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = i % 17 === 0 ? 0 : rng.gaussian() * 0.02 * 2 ** (rng.int(8) - 4);
  return out;
}

function bf16Bytes(values: Float32Array): Uint8Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = bits[i]! >>> 16; // truncation: any bf16 values will do
  return new Uint8Array(out.buffer);
}

function bf16Values(bytes: Uint8Array): Float32Array {
  const half = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
  const bits = new Uint32Array(half.length);
  for (let i = 0; i < half.length; i++) bits[i] = half[i]! << 16;
  return new Float32Array(bits.buffer);
}

function sketchOf(bytes: Uint8Array, rows: number, cols: number, k: number, mode: SketchKernelMode, capture: number[], wasm: boolean) {
  const grid = mode === 'f32' ? F32_GRID : mode === 'f16' ? F16_GRID : BF16_GRID;
  const sketcher = new StreamSketcher(rows, cols, k, [{ mode, grid }], capture, wasm);
  const rowBytes = bytes.length / rows;
  // Blocks of uneven size, as a reader at the end of a tensor gives them.
  for (let start = 0, step = 1; start < rows; start += step, step = Math.min(sketcher.rowsPerBlock, step * 3)) {
    const count = Math.min(step, rows - start);
    sketcher.input(count).set(bytes.subarray(start * rowBytes, (start + count) * rowBytes));
    sketcher.process(start, count);
  }
  return { sketcher, ...sketcher.finish() };
}

test('stream sketch: WebAssembly and JavaScript paths agree bit for bit in every mode', () => {
  const rows = 301, cols = 520, k = 128;
  const values = randomValues(rows * cols, 7);
  const inputs: Array<[SketchKernelMode, Uint8Array]> = [
    ['bf16', bf16Bytes(values)], ['f32', new Uint8Array(values.buffer)], ['f32_bf16', new Uint8Array(values.buffer)],
    ['f16', encodeValues('F16', values)], ['f16_bf16', encodeValues('F16', values)],
  ];
  for (const [mode, bytes] of inputs) {
    const a = sketchOf(bytes, rows, cols, k, mode, [0, 150, 300], true);
    const b = sketchOf(bytes, rows, cols, k, mode, [0, 150, 300], false);
    const [va, vb] = [a.views[0]!, b.views[0]!];
    assert.deepEqual(Array.from(va.sketch), Array.from(vb.sketch), mode);
    assert.deepEqual(va.sums, vb.sums, mode);
    assert.deepEqual(Array.from(va.rowVariance), Array.from(vb.rowVariance), mode);
    assert.deepEqual(Array.from(va.columnVariance), Array.from(vb.columnVariance), mode);
    assert.deepEqual(Array.from(a.captured), Array.from(b.captured), mode);
  }
});

/** The defining sums in float64: S[i mod k1][j mod k2] += σ_i τ_j w_ij, and the variance sums. */
function reference(values: Float32Array, rows: number, cols: number, k: number, variance: Float64Array) {
  const k1 = Math.min(rows, k), k2 = Math.min(cols, k);
  const rowSign = signMasks('row', rows, k1), colSign = signMasks('column', cols, k2);
  const sketch = new Float64Array(k1 * k2), rowVariance = new Float64Array(k1), columnVariance = new Float64Array(k2);
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  let s1 = 0, s2 = 0, s4 = 0;
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const w = values[i * cols + j]!;
      const sign = (rowSign[i] ? -1 : 1) * (colSign[j] ? -1 : 1);
      sketch[(i % k1) * k2 + (j % k2)]! += sign * w;
      const v = variance[(bits[i * cols + j]! >>> 23) & 0xff]!;
      rowVariance[i % k1]! += v;
      columnVariance[j % k2]! += v;
      s1 += w;
      s2 += w * w;
      s4 += w ** 4;
    }
  }
  return { sketch, rowVariance, columnVariance, s1, s2, s4 };
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, relative: number, what: string): void {
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i]! - expected[i]!) <= relative * scale, `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
}

function checkAgainstDefinition(view: StreamedView, values: Float32Array, rows: number, cols: number, k: number, what: string): void {
  const ref = reference(values, rows, cols, k, roundingVarianceTable('BF16'));
  assertClose(view.sketch, ref.sketch, 1e-5, `${what} sketch`);
  assertClose(view.rowVariance, ref.rowVariance, 1e-5, `${what} row variance`);
  assertClose(view.columnVariance, ref.columnVariance, 1e-5, `${what} column variance`);
  assert.ok(Math.abs(view.sums.s2 - ref.s2) <= 1e-5 * ref.s2, `${what} ||W||²`);
  assert.ok(Math.abs(view.sums.s4 - ref.s4) <= 1e-5 * ref.s4, `${what} Σw⁴`);
  assert.ok(Math.abs(view.sums.s1 - ref.s1) <= 1e-5 * Math.sqrt(ref.s2 * rows * cols), `${what} Σw`);
}

test('stream sketch: both sides projected, and sides kept whole, equal the defining sums', () => {
  for (const [rows, cols, seed] of [[300, 520, 1], [97, 64, 2], [64, 1024, 3], [1000, 132, 4]] as const) {
    const bytes = bf16Bytes(randomValues(rows * cols, seed));
    const values = bf16Values(bytes);
    const { views, sketcher } = sketchOf(bytes, rows, cols, 128, 'bf16', [], true);
    assert.equal(sketcher.sketchRows, Math.min(rows, 128));
    assert.equal(sketcher.sketchCols, Math.min(cols, 128));
    checkAgainstDefinition(views[0]!, values, rows, cols, 128, `${rows}x${cols}`);
  }
});

test('stream sketch: a side kept whole is the matrix itself; the bf16 view of f32 values rounds to nearest even', () => {
  const rows = 40, cols = 64;
  const values = randomValues(rows * cols, 9);
  const { views } = sketchOf(new Uint8Array(values.buffer), rows, cols, 128, 'f32', [], true);
  assert.deepEqual(Array.from(views[0]!.sketch), Array.from(values));
  const rounded = sketchOf(new Uint8Array(values.buffer), rows, cols, 128, 'f32_bf16', [], true).views[0]!;
  const bits = new Uint32Array(values.buffer);
  rounded.sketch.forEach((x, i) => {
    const b = bits[i]!;
    const expected = new Float32Array(new Uint32Array([((b + 0x7fff + ((b >>> 16) & 1)) & 0xffff0000) >>> 0]).buffer)[0]!;
    assert.equal(x, expected);
  });
});

test('stream sketch: the sketch of a difference is the difference of sketches, and its squared norm estimates ||D||²', () => {
  const rows = 512, cols = 768, k = 128;
  const rng = new Rng(21);
  // A rank-4 change: E ||S(D)||² = ||D||², with relative spread about sqrt(2 / 4) at worst.
  const left = rng.gaussianMatrix(rows, 4).data, right = rng.gaussianMatrix(4, cols).data;
  const delta = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) for (let t = 0; t < 4; t++) delta[i * cols + j]! += left[i * 4 + t]! * right[t * cols + j]!;
  const s = sketchOf(new Uint8Array(delta.buffer), rows, cols, k, 'f32', [], true).views[0]!;
  let sketchNorm = 0, norm = 0;
  for (const x of s.sketch) sketchNorm += x * x;
  for (const x of delta) norm += x * x;
  assert.ok(Math.abs(sketchNorm / norm - 1) < 0.5, `||S||²/||D||² = ${sketchNorm / norm}`);
});

test('stream sketch: NaN and infinity make the sums non-finite; capture keeps the fold of the asked rows', () => {
  const rows = 8, cols = 256;
  const values = randomValues(rows * cols, 4);
  values[5 * cols + 200] = NaN;
  const { views, captured } = sketchOf(new Uint8Array(values.buffer), rows, cols, 128, 'f32', [2, 7], true);
  assert.ok(!Number.isFinite(views[0]!.roundingVariance));
  const colSign = signMasks('column', cols, 128);
  for (const [slot, row] of [[0, 2], [1, 7]] as const) {
    const expected = new Float64Array(128);
    for (let j = 0; j < cols; j++) expected[j % 128]! += (colSign[j] ? -1 : 1) * values[row * cols + j]!;
    assertClose(captured.subarray(slot * 128, (slot + 1) * 128), expected, 1e-6, `row ${row}`);
  }
});

test('stream sketch: f16 storage decodes as the io decoder does (subnormals included), its bf16 view rounds that, NaN and infinity are caught', () => {
  const rows = 16, cols = 64;
  const values = randomValues(rows * cols, 12);
  values[3] = 3e-6; values[4] = -5.96e-8; values[5] = 65504; values[6] = -0; // f16 subnormals, the largest normal, a signed zero
  const bytes = encodeValues('F16', values);
  const decoded = new Float32Array(rows * cols);
  decodeInto('F16', bytes, rows * cols, decoded, 0);
  const { views } = sketchOf(bytes, rows, cols, 128, 'f16', [], true);
  // The fold adds into zeros, so -0 comes out as +0.
  assert.deepEqual(Array.from(views[0]!.sketch), Array.from(decoded, (x) => x + 0));
  const rounded = sketchOf(bytes, rows, cols, 128, 'f16_bf16', [], true).views[0]!;
  const expected = sketchOf(new Uint8Array(decoded.buffer), rows, cols, 128, 'f32_bf16', [], true).views[0]!;
  assert.deepEqual(Array.from(rounded.sketch), Array.from(expected.sketch));
  for (const bad of [0x7c00, 0xfc00, 0x7e01]) {
    const poisoned = Uint8Array.from(bytes);
    new Uint16Array(poisoned.buffer)[77] = bad;
    for (const wasm of [true, false]) assert.ok(!Number.isFinite(sketchOf(poisoned, rows, cols, 128, 'f16', [], wasm).views[0]!.roundingVariance));
  }
});
