import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BadInputError } from '../src/io/errors.js';
import { encodeHeader } from '../src/io/writer.js';
import { assertFinite, openTensorSource } from '../src/io/source.js';
import type { DType } from '../src/io/types.js';
import { writeModelFolder, writeSafetensors, type FixtureTensor } from './helpers/safetensors-writer.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'io-source-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let counter = 0;
const freshDir = () => {
  const dir = path.join(root, `${counter++}`);
  fs.mkdirSync(dir);
  return dir;
};

/** Values exactly representable in every float dtype here (incl. F8_E5M2: 2 mantissa bits). */
const EXACT = [0, 1, -2, 0.5, 1.5, -0.25, 3, 0.125, -6, 12];

const ALL_DTYPES: [DType, number[]][] = [
  ['F64', EXACT], ['F32', EXACT], ['F16', EXACT], ['BF16', EXACT], ['F8_E4M3', EXACT], ['F8_E5M2', EXACT],
  ['I8', [-128, 127, 0, -5, 9, 1, 2, 3, 4, 5]], ['I32', [-(2 ** 24), 2 ** 24, 0, -7, 1, 2, 3, 4, 5, 6]],
  ['U8', [255, 0, 1, 2, 3, 4, 5, 6, 7, 8]], ['BOOL', [1, 0, 1, 1, 0, 0, 1, 0, 1, 1]],
];

test('a bare file in every dtype reads back exactly; config is null; bytesRead counts payload', () => {
  const file = path.join(freshDir(), 'weights.safetensors');
  const tensors: Record<string, FixtureTensor> = {};
  for (const [dtype, values] of ALL_DTYPES) tensors[`t.${dtype}`] = { dtype, shape: [2, 5], data: values };
  writeSafetensors(file, tensors, { format: 'pt' });
  const source = openTensorSource(file);
  try {
    assert.equal(source.name, 'weights.safetensors');
    assert.equal(source.config, null);
    assert.deepEqual(source.files, [file]);
    assert.equal(source.tensors.size, ALL_DTYPES.length);
    let expectedBytes = 0;
    for (const [dtype, values] of ALL_DTYPES) {
      const info = source.tensors.get(`t.${dtype}`)!;
      assert.equal(info.dtype, dtype);
      assert.deepEqual(info.shape, [2, 5]);
      assert.deepEqual([...source.read(info.name)], values, dtype);
      assert.deepEqual([...source.readRows(info.name, 1, 2)], values.slice(5), `${dtype} row 1`);
      expectedBytes += info.byteLength * 1.5; // read() all, readRows half
    }
    assert.equal(source.bytesRead, expectedBytes);
    assert.equal(source.totalBytes, [...source.tensors.values()].reduce((s, t) => s + t.byteLength, 0));
  } finally {
    source.close();
  }
});

test('sharded folder: config, sorted shard files, payload order, values', () => {
  const dir = freshDir();
  const tensors: Record<string, FixtureTensor> = {};
  for (let i = 0; i < 6; i++) tensors[`layers.${i}.w`] = { shape: [3, 4], data: Array.from({ length: 12 }, (_, k) => i * 8 + k / 4) };
  const files = writeModelFolder(dir, { model_type: 'llama', hidden_size: 4 }, tensors, { shards: 3, dtype: 'BF16' });
  const source = openTensorSource(dir);
  try {
    assert.equal(source.name, path.basename(dir));
    assert.deepEqual(source.files, files);
    assert.equal(source.files.length, 3);
    assert.deepEqual(source.config, { model_type: 'llama', hidden_size: 4 });
    assert.deepEqual([...source.tensors.keys()], Object.keys(tensors));
    for (const [name, t] of Object.entries(tensors)) {
      assert.equal(source.tensors.get(name)!.dtype, 'BF16');
      assert.deepEqual([...source.read(name)], Array.from(t.data!));
    }
    assert.equal(new Set([...source.tensors.values()].map((t) => t.file)).size, 3);
  } finally {
    source.close();
  }
});

test('adapter folder: adapter_model.safetensors with adapter_config.json as config', () => {
  const dir = freshDir();
  writeSafetensors(path.join(dir, 'adapter_model.safetensors'), {
    'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight': { dtype: 'F32', shape: [2, 4], data: [1, 2, 3, 4, 5, 6, 7, 8] },
    'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight': { dtype: 'F32', shape: [4, 2], data: [0, 0, 0, 0, 0, 0, 0, 1] },
  });
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ r: 2, lora_alpha: 4, target_modules: ['q_proj'] }));
  const source = openTensorSource(dir);
  try {
    assert.deepEqual(source.config, { r: 2, lora_alpha: 4, target_modules: ['q_proj'] });
    assert.equal(source.tensors.size, 2);
    assert.deepEqual([...source.read('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight')], [0, 0, 0, 0, 0, 0, 0, 1]);
  } finally {
    source.close();
  }
});

test('rowBlocks and readRows over a tensor bigger than the read buffer match read()', () => {
  const dir = freshDir();
  const rows = 37, cols = 29;
  const values = Array.from({ length: rows * cols }, (_, i) => ((i * 7919) % 1000) / 64 - 7);
  writeModelFolder(dir, null, { big: { shape: [rows, cols], data: values }, vec: { shape: [50], data: values.slice(0, 50) } }, { dtype: 'BF16' });
  // 64-byte buffer: every read of the 2 KB tensor takes many chunks.
  const source = openTensorSource(dir, { bufferBytes: 64 });
  try {
    const whole = source.read('big');
    assert.equal(whole.length, rows * cols);
    for (const maxBytes of [1, 64, 200, 1 << 20]) {
      const gathered = new Float32Array(rows * cols);
      let expectedStart = 0;
      for (const block of source.rowBlocks('big', maxBytes)) {
        assert.equal(block.rowStart, expectedStart);
        assert.equal(block.cols, cols);
        assert.ok(maxBytes < cols * 2 ? block.rowEnd - block.rowStart === 1 : (block.rowEnd - block.rowStart) * cols * 2 <= maxBytes);
        gathered.set(block.data, block.rowStart * cols);
        expectedStart = block.rowEnd;
      }
      assert.equal(expectedStart, rows);
      assert.deepEqual(gathered, whole, `maxBytes ${maxBytes}`);
    }
    assert.deepEqual(source.readRows('big', 5, 11), whole.subarray(5 * cols, 11 * cols));
    assert.deepEqual(source.readRows('big', 3, 3), new Float32Array(0));
    assert.deepEqual([...source.rowBlocks('vec', 8)].map((b) => [b.rowStart, b.rowEnd, b.cols]),
      Array.from({ length: 13 }, (_, k) => [4 * k, Math.min(50, 4 * k + 4), 1]));
    assert.throws(() => source.readRows('big', 30, 40), RangeError);
    assert.throws(() => source.read('nope'), (err: unknown) => err instanceof BadInputError && /no such tensor.*tensor nope/.test(err.message));
  } finally {
    source.close();
  }
});

test('tensors stored past 4 GiB are read at the right position (sparse file)', (t) => {
  const file = path.join(freshDir(), 'model.safetensors');
  const padBytes = 5 * 1024 ** 3;
  const specs = [{ name: 'pad', dtype: 'U8' as const, shape: [padBytes] }, { name: 'far', dtype: 'F32' as const, shape: [4] }];
  const header = encodeHeader(specs);
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, header);
    fs.writeSync(fd, Buffer.from(new Float32Array([1.5, -2, 3.25, 1e-3]).buffer), 0, 16, header.length + padBytes);
  } catch (err) {
    fs.closeSync(fd);
    t.skip(`cannot write a sparse 5 GiB file here: ${(err as Error).message}`);
    return;
  }
  fs.closeSync(fd);
  const source = openTensorSource(file);
  try {
    assert.equal(source.tensors.get('far')!.start, header.length + padBytes);
    assert.deepEqual([...source.read('far')], [1.5, -2, 3.25, Math.fround(1e-3)]);
    assert.equal(source.bytesRead, 16);
  } finally {
    source.close();
    fs.rmSync(file);
  }
});

test('assertFinite names file, tensor and element', () => {
  assert.doesNotThrow(() => assertFinite(new Float32Array([0, -1, 1e19, -1e19]), 'f', 't'));
  for (const bad of [NaN, Infinity, -Infinity]) {
    assert.throws(() => assertFinite(new Float32Array([1, 2, bad]), 'm.safetensors', 'layers.0.w', 100),
      (err: unknown) => err instanceof BadInputError
        && new RegExp(`non-finite weight ${bad} at element 102 \\(file m\\.safetensors, tensor layers\\.0\\.w\\)`).test(err.message));
  }
});

test('assertFinite refuses magnitudes of 2^64 and more (their squares overflow the analysis), float32 and float64 alike', () => {
  const below = 2 ** 64 * (1 - 2 ** -24); // the largest float32 below 2^64
  for (const values of [new Float32Array([1, below, -below]), new Float64Array([1, below, -below])]) assert.doesNotThrow(() => assertFinite(values, 'f', 't'));
  for (const huge of [2 ** 64, -(2 ** 64), 3.3895313892515355e38]) {
    for (const values of [new Float32Array([0.5, huge]), new Float64Array([0.5, huge])]) {
      assert.throws(() => assertFinite(values, 'm.safetensors', 'q', 10), (err: unknown) => err instanceof BadInputError
        && /^weight too large: .* at element 11 .*\(file m\.safetensors, tensor q\)$/.test(err.message), String(huge));
    }
  }
});

test('assertFinite checks any array of numbers, reporting the first bad element', () => {
  assert.throws(() => assertFinite(new Float64Array([1, Infinity, NaN]), 'f', 't'), /non-finite weight Infinity at element 1 /);
  assert.throws(() => assertFinite([0, 0, 0, NaN], 'f', 't', 0, 4), /non-finite weight NaN at element 3 /);
  assert.doesNotThrow(() => assertFinite(new Float32Array([1, NaN]), 'f', 't', 0, 1), 'only the first count elements are checked');
});

test('readRowsInto decodes rows straight into a caller view; its length must match', () => {
  const file = path.join(freshDir(), 'rows.safetensors');
  const data = Array.from({ length: 12 }, (_, i) => i - 5);
  writeSafetensors(file, { w: { dtype: 'BF16', shape: [4, 3], data } });
  const source = openTensorSource(file);
  try {
    const out = new Float32Array(9).fill(99);
    source.readRowsInto('w', 1, 3, out.subarray(2, 8));
    assert.deepEqual([...out], [99, 99, ...data.slice(3, 9), 99]);
    assert.throws(() => source.readRowsInto('w', 1, 3, new Float32Array(5)), RangeError);
    assert.throws(() => source.readRowsInto('w', 3, 5, new Float32Array(6)), RangeError);
  } finally {
    source.close();
  }
});

const zoo = path.join(fileURLToPath(new URL('../..', import.meta.url)), '..', 'shared', 'zoo');

test('zoo models open: sharded p4a and the p2 adapter', (t) => {
  if (!fs.existsSync(zoo)) {
    t.skip(`zoo not found at ../shared/zoo (repo-relative); skipping`);
    return;
  }
  const sharded = openTensorSource(path.join(zoo, 'p4a'));
  try {
    assert.equal(sharded.files.length, 2);
    assert.equal((sharded.config as { model_type?: string }).model_type, 'llama');
    const q = sharded.tensors.get('model.layers.0.self_attn.q_proj.weight')!;
    assert.deepEqual(q.shape, [128, 128]);
    assert.equal(q.dtype, 'BF16');
    const values = sharded.read(q.name);
    assertFinite(values, q.file, q.name);
    assert.ok(values.some((v) => v !== 0));
  } finally {
    sharded.close();
  }
  const adapter = openTensorSource(path.join(zoo, 'p2-adapter'));
  try {
    assert.ok(adapter.config && 'r' in adapter.config);
    assert.ok([...adapter.tensors.keys()].every((name) => /lora_[AB]/.test(name)));
  } finally {
    adapter.close();
  }
});

test('readSelectionInto: the rows and columns asked for, in their order, from every dtype and through a small buffer', () => {
  const dir = freshDir();
  const rows = 23, cols = 17;
  const values = Array.from({ length: rows * cols }, (_, i) => EXACT[(i * 7) % EXACT.length]! * (1 + (i % 3)));
  const tensors: Record<string, FixtureTensor> = {};
  for (const [dtype] of ALL_DTYPES) {
    const data = dtype === 'BOOL' ? values.map((v) => (v !== 0 ? 1 : 0)) : dtype.startsWith('U') ? values.map(Math.abs) : values;
    tensors[`t.${dtype}`] = { dtype, shape: [rows, cols], data };
  }
  writeModelFolder(dir, null, tensors);
  // 40 bytes: fewer than one row for most dtypes, so rows are read one at a time or beyond the buffer.
  for (const bufferBytes of [40, 1 << 20]) {
    const source = openTensorSource(dir, { bufferBytes });
    try {
      for (const [dtype] of ALL_DTYPES) {
        const name = `t.${dtype}`;
        const whole = source.read(name);
        const at = (r: number, c: number) => whole[r * cols + c]!;
        const pickRows = [5, 0, 22, 6, 5, 7], pickCols = [16, 0, 3, 3, 9];
        const cases: Array<[number[] | null, number[] | null]> = [[null, pickCols], [pickRows, null], [pickRows, pickCols], [null, null], [[], pickCols]];
        for (const [r, c] of cases) {
          const keptRows = r ?? Array.from({ length: rows }, (_, i) => i), keptCols = c ?? Array.from({ length: cols }, (_, j) => j);
          const out = new Float32Array(keptRows.length * keptCols.length);
          source.readSelectionInto(name, r, c, out);
          assert.deepEqual([...out], keptRows.flatMap((i) => keptCols.map((j) => at(i, j))), `${dtype} rows ${r} cols ${c}, buffer ${bufferBytes}`);
        }
      }
      const before = source.bytesRead;
      source.readSelectionInto('t.BF16', [3, 4, 5, 9], [1], new Float32Array(4));
      assert.equal(source.bytesRead - before, 4 * cols * 2, 'only the selected rows are read');
      assert.throws(() => source.readSelectionInto('t.F32', [rows], null, new Float32Array(cols)), /row 23 outside 0..23 of t.F32/);
      assert.throws(() => source.readSelectionInto('t.F32', null, [-1], new Float32Array(rows)), /column -1 outside/);
      assert.throws(() => source.readSelectionInto('t.F32', [1], [1], new Float32Array(2)), RangeError);
    } finally {
      source.close();
    }
  }
});
