/**
 * The GGUF reader: metadata of every value type, v2 and v3, alignment, split files, reads by rows,
 * selections and blocks agreeing with whole reads, llama.cpp's names and q/k row order mapped back,
 * and hostile files refused with one BadInputError naming the file (and tensor).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { SourceRoleReader } from '../src/arch/reader.js';
import { BadInputError, EXIT } from '../src/io/errors.js';
import { readGgufHeader } from '../src/io/gguf.js';
import { GgufSource } from '../src/io/gguf-source.js';
import { dequantizeBlocks } from '../src/io/gguf-quants.js';
import { openTensorSource } from '../src/io/source.js';
import { runLineage } from './cli-child-process.js';
import { encodeGguf, encodeTensor, writeGguf, writeGgufStreaming, writeLlamaGguf, type GgufMeta, type GgufSpec } from './helpers/gguf-writer.js';
import { randomLlama, tensorName, writeLlama, type LlamaConfig } from './helpers/synthetic-llama.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-gguf-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let files = 0;
function fresh(name = 'model.gguf'): string {
  const dir = path.join(root, String(files++));
  fs.mkdirSync(dir);
  return path.join(dir, name);
}

function gaussian(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(next())) * Math.cos(2 * Math.PI * next()) * 0.02);
}

/** What the dequantizer gives for `data` stored as `type`: the exact expected read. */
function stored(type: string, data: Float32Array): Float32Array {
  const bytes = encodeTensor(type, data);
  const out = new Float32Array(data.length);
  const blockElements = type === 'Q8_0' || type === 'Q4_0' ? 32 : 1;
  dequantizeBlocks(type, bytes, 0, data.length / blockElements, out, 0, null);
  return out;
}

const EVERY_TYPE: ReadonlyArray<readonly [string, GgufMeta]> = [
  ['a.u8', { t: 'u8', v: 200 }], ['a.i8', { t: 'i8', v: -100 }], ['a.u16', { t: 'u16', v: 60000 }],
  ['a.i16', { t: 'i16', v: -30000 }], ['a.u32', { t: 'u32', v: 4000000000 }], ['a.i32', { t: 'i32', v: -2000000000 }],
  ['a.f32', { t: 'f32', v: 0.5 }], ['a.bool', { t: 'bool', v: true }], ['a.str', { t: 'str', v: 'héllo' }],
  ['a.u64', { t: 'u64', v: 2n ** 60n }], ['a.i64', { t: 'i64', v: -5n }], ['a.f64', { t: 'f64', v: 1e-300 }],
  ['a.strings', { t: 'arr', of: 'str', v: ['<s>', '</s>', '', 'ü'] }], ['a.floats', { t: 'arr', of: 'f32', v: [1, -2.5] }],
];

describe('GGUF container', () => {
  for (const version of [2, 3]) {
    test(`v${version}: metadata of every value type, tensors of F32, F16, BF16, Q8_0, Q4_0 at alignment 64`, () => {
      const file = fresh();
      const shapes: Record<string, number[]> = { F32: [3, 5], F16: [4, 6], BF16: [2, 7], Q8_0: [5, 64], Q4_0: [3, 96] };
      const data = Object.fromEntries(Object.entries(shapes).map(([type, shape], i) => [type, gaussian(shape[0]! * shape[1]!, i + 1)]));
      writeGguf(file, {
        version, alignment: 64, metadata: EVERY_TYPE,
        tensors: Object.entries(shapes).map(([type, shape]) => ({ name: `t.${type}`, type, shape, data: data[type]! })),
      });
      const header = readGgufHeader(file);
      assert.equal(header.version, version);
      assert.equal(header.alignment, 64);
      assert.equal(header.dataStart % 64, 0);
      const expected = new Map<string, unknown>([
        ['a.u8', 200], ['a.i8', -100], ['a.u16', 60000], ['a.i16', -30000], ['a.u32', 4000000000], ['a.i32', -2000000000],
        ['a.f32', 0.5], ['a.bool', true], ['a.str', 'héllo'], ['a.u64', 2n ** 60n], ['a.i64', -5], ['a.f64', 1e-300],
        ['a.strings', ['<s>', '</s>', '', 'ü']], ['a.floats', [1, -2.5]], ['general.alignment', 64],
      ]);
      assert.deepEqual(header.metadata, expected);
      const source = openTensorSource(file);
      try {
        assert.equal(source.name, 'model');
        for (const [type, shape] of Object.entries(shapes)) {
          const info = source.tensors.get(`t.${type}`)!;
          assert.equal(info.dtype, type);
          assert.deepEqual(info.shape, shape);
          assert.deepEqual(source.read(`t.${type}`), type === 'F32' ? data[type] : stored(type, data[type]!));
        }
      } finally {
        source.close();
      }
    });
  }

  test('a column selection of a large K-quantized matrix (many decodes of its scratch) picks what whole rows hold, with their variances', () => {
    const file = fresh();
    const [rowCount, colCount] = [700, 512];
    writeGguf(file, { tensors: [{ name: 'm', type: 'Q4_K', shape: [rowCount, colCount], data: gaussian(rowCount * colCount, 11) }] });
    const source = new GgufSource(file);
    try {
      const whole = new Float32Array(rowCount * colCount), wholeVariance = new Float32Array(whole.length);
      source.readRowsWithVarianceInto('m', 0, rowCount, whole, wholeVariance);
      // Scattered rows, then a run of 350 consecutive ones (three scratch decodes), repeats.
      const rows = [...Array.from({ length: 150 }, (_, i) => 2 * i + 1), ...Array.from({ length: 350 }, (_, i) => 300 + i), 699, 0, 5, 5];
      const cols = [511, 0, 1, 2, 3, 300, 255, 256];
      const picked = new Float32Array(rows.length * cols.length), variance = new Float32Array(picked.length);
      source.readSelectionWithVarianceInto('m', rows, cols, picked, variance);
      rows.forEach((r, i) => cols.forEach((c, j) => {
        assert.equal(picked[i * cols.length + j], whole[r * colCount + c], `value (${r}, ${c})`);
        assert.equal(variance[i * cols.length + j], wholeVariance[r * colCount + c], `variance (${r}, ${c})`);
      }));
      const allColumns = new Float32Array(rows.length * colCount);
      source.readSelectionInto('m', rows, null, allColumns);
      rows.forEach((r, i) => assert.deepEqual(allColumns.subarray(i * colCount, (i + 1) * colCount), whole.subarray(r * colCount, (r + 1) * colCount)));
    } finally {
      source.close();
    }
  });

  test('rows, selections and row blocks agree with whole reads (a small buffer, a 1-D quantized tensor cut mid-block)', () => {
    const file = fresh();
    const matrix = gaussian(40 * 96, 7), vector = gaussian(160, 8);
    writeGguf(file, { tensors: [{ name: 'm', type: 'Q8_0', shape: [40, 96], data: matrix }, { name: 'v', type: 'Q4_0', shape: [160], data: vector }] });
    const source = new GgufSource(file, { bufferBytes: 1024 });
    try {
      const whole = source.read('m');
      assert.deepEqual(source.readRows('m', 7, 31), whole.subarray(7 * 96, 31 * 96));
      const rows = [30, 2, 3, 3, 39], cols = [95, 0, 40, 41];
      const picked = new Float32Array(rows.length * cols.length);
      source.readSelectionInto('m', rows, cols, picked);
      rows.forEach((r, i) => cols.forEach((c, j) => assert.equal(picked[i * cols.length + j], whole[r * 96 + c])));
      const variance = new Float32Array(picked.length);
      source.readSelectionWithVarianceInto('m', rows, cols, picked.fill(0), variance);
      rows.forEach((r, i) => cols.forEach((c, j) => assert.equal(picked[i * cols.length + j], whole[r * 96 + c])));
      assert.ok(variance.every((v) => v > 0));
      let seen = 0;
      for (const block of source.rowBlocks('m', 3 * 102)) {
        assert.equal(block.rowEnd - block.rowStart <= 3, true);
        assert.deepEqual(block.data, whole.subarray(block.rowStart * 96, block.rowEnd * 96));
        seen = block.rowEnd;
      }
      assert.equal(seen, 40);
      const v = source.read('v');
      assert.deepEqual(v, stored('Q4_0', vector));
      assert.deepEqual(source.readRows('v', 5, 70), v.subarray(5, 70));
      assert.equal(source.bytesRead > 0, true);
    } finally {
      source.close();
    }
  });

  test('split files (NAME-0000i-of-0000n.gguf) read as one model from any part; a missing part is named', () => {
    const dir = path.dirname(fresh());
    const a = gaussian(4 * 32, 1), b = gaussian(2 * 32, 2);
    const split = (no: number): ReadonlyArray<readonly [string, GgufMeta]> =>
      [['split.no', { t: 'u16', v: no }], ['split.count', { t: 'u16', v: 2 }], ['split.tensors.count', { t: 'i32', v: 2 }]];
    writeGguf(path.join(dir, 'm-00001-of-00002.gguf'), { metadata: [['general.architecture', { t: 'str', v: 'llama' }], ...split(0)], tensors: [{ name: 'a', type: 'F32', shape: [4, 32], data: a }] });
    writeGguf(path.join(dir, 'm-00002-of-00002.gguf'), { metadata: split(1), tensors: [{ name: 'b', type: 'Q8_0', shape: [2, 32], data: b }] });
    const source = openTensorSource(path.join(dir, 'm-00002-of-00002.gguf'));
    try {
      assert.equal(source.name, 'm');
      assert.equal(source.files.length, 2);
      assert.deepEqual(source.read('a'), a);
      assert.deepEqual(source.read('b'), stored('Q8_0', b));
      assert.equal(source.ggufMetadata?.get('general.architecture'), 'llama');
    } finally {
      source.close();
    }
    fs.rmSync(path.join(dir, 'm-00002-of-00002.gguf'));
    assertBad(() => openTensorSource(path.join(dir, 'm-00001-of-00002.gguf')), /missing split part m-00002-of-00002\.gguf/);
  });

  test('a type without a decoder is listed, and refused by name when read', () => {
    const file = fresh();
    writeGguf(file, { tensors: [{ name: 'odd', type: 'IQ2_XXS', shape: [1, 256], bytes: new Uint8Array(66) }] });
    const source = openTensorSource(file);
    try {
      assert.equal(source.tensors.get('odd')!.dtype, 'IQ2_XXS');
      assertBad(() => source.read('odd'), /^unsupported tensor type IQ2_XXS in tensor odd/);
    } finally {
      source.close();
    }
  });
});

function assertBad(f: () => unknown, pattern: RegExp): void {
  assert.throws(f, (err: unknown) => {
    assert.ok(err instanceof BadInputError, `BadInputError, got ${String(err)}`);
    assert.match(err.message, pattern);
    return true;
  });
}

describe('hostile GGUF files: one BadInputError each', () => {
  const good: GgufSpec = {
    metadata: [['general.architecture', { t: 'str', v: 'llama' }], ['tokenizer.ggml.tokens', { t: 'arr', of: 'str', v: ['a', 'b'] }]],
    tensors: [{ name: 'w', type: 'Q8_0', shape: [2, 32], data: gaussian(64, 3) }, { name: 'n', type: 'F32', shape: [32], data: gaussian(32, 4) }],
  };
  const bytes = encodeGguf(good);
  const cases: Array<[string, Buffer, RegExp]> = [];
  const patch = (at: number, write: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(bytes);
    write(b.subarray(at));
    return b;
  };
  const keyAt = bytes.indexOf(Buffer.from('general.architecture')) - 8;
  const tokensCountAt = bytes.indexOf(Buffer.from('tokenizer.ggml.tokens')) + 'tokenizer.ggml.tokens'.length + 4 + 4;
  cases.push(
    ['not GGUF', patch(0, (b) => b.write('GGUX', 'latin1')), /not a GGUF file/],
    ['big-endian', patch(4, (b) => b.writeUInt32BE(3)), /big-endian GGUF file/],
    ['version 1', patch(4, (b) => b.writeUInt32LE(1)), /version 1 is not supported/],
    ['absurd tensor count', patch(8, (b) => b.writeBigUInt64LE(2n ** 60n)), /tensor count 1152921504606846976 cannot fit/],
    ['absurd metadata count', patch(16, (b) => b.writeBigUInt64LE(2n ** 60n)), /metadata count .* cannot fit/],
    ['absurd key length', patch(keyAt, (b) => b.writeBigUInt64LE(2n ** 60n)), /metadata key 0 length .* cannot fit/],
    ['absurd array count', patch(tokensCountAt, (b) => b.writeBigUInt64LE(2n ** 60n)), /tokenizer\.ggml\.tokens element count .* cannot fit/],
    ['unknown value type', patch(keyAt + 8 + 'general.architecture'.length, (b) => b.writeUInt32LE(77)), /unknown value type 77/],
    ['truncated header', bytes.subarray(0, 140), /name of tensor 0 length 1 cannot fit in the 0 bytes left/],
    ['truncated data', bytes.subarray(0, bytes.length - 10), /truncated GGUF file: tensor data/],
  );
  for (const [name, file, pattern] of cases) {
    test(name, () => {
      const target = fresh();
      fs.writeFileSync(target, file);
      assertBad(() => openTensorSource(target), pattern);
    });
  }
  const specs: Array<[string, GgufSpec, RegExp]> = [
    ['unknown tensor type', { tensors: [{ name: 'w', type: 'F32', typeId: 99, shape: [2, 4], data: gaussian(8, 1) }] }, /unknown GGML tensor type id 99 .*tensor w/],
    ['misaligned data', { tensors: [{ name: 'w', type: 'F32', shape: [2, 4], data: gaussian(8, 1), offset: 4n }] }, /misaligned tensor data: offset 4/],
    ['overlapping tensors', {
      tensors: [{ name: 'a', type: 'F32', shape: [4, 16], data: gaussian(64, 1) }, { name: 'b', type: 'F32', shape: [4, 16], data: gaussian(64, 2), offset: 32n }],
    }, /overlapping tensors: b starts at 32, inside a/],
    ['data past the end', { tensors: [{ name: 'w', type: 'F32', shape: [2, 4], data: gaussian(8, 1), offset: 2n ** 40n }] }, /cannot fit in the file/],
    ['row not whole blocks', { tensors: [{ name: 'w', type: 'Q8_0', shape: [1, 48], bytes: new Uint8Array(51) }] }, /row length 48 is not a multiple of the Q8_0 block of 32/],
    ['duplicate tensor', { tensors: [{ name: 'w', type: 'F32', shape: [8], data: gaussian(8, 1) }, { name: 'w', type: 'F32', shape: [8], data: gaussian(8, 1) }] }, /tensor appears twice/],
    ['alignment not a power of two', { alignment: 48, tensors: [{ name: 'w', type: 'F32', shape: [8], data: gaussian(8, 1) }] }, /general\.alignment 48 is not a power of two/],
  ];
  test('a metadata array too long to hold (5 Mi one-byte entries)', () => {
    const head = Buffer.alloc(24 + 8 + 7 + 4 + 4 + 8);
    head.write('GGUF', 0, 'latin1');
    head.writeUInt32LE(3, 4);
    head.writeBigUInt64LE(0n, 8);
    head.writeBigUInt64LE(1n, 16);
    head.writeBigUInt64LE(7n, 24);
    head.write('a.bytes', 32, 'latin1');
    head.writeUInt32LE(9, 39);
    head.writeUInt32LE(0, 43);
    head.writeBigUInt64LE(5n << 20n, 47);
    const target = fresh();
    fs.writeFileSync(target, Buffer.concat([head, Buffer.alloc(5 << 20)]));
    assertBad(() => openTensorSource(target), /metadata a\.bytes has 5242880 elements, more than the 4194304 read/);
  });
  for (const [name, spec, pattern] of specs) {
    test(name, () => {
      const target = fresh();
      writeGguf(target, spec);
      assertBad(() => openTensorSource(target), pattern);
    });
  }

  test('the CLI prints one error line and exits 2', async () => {
    const target = fresh('hostile.gguf');
    fs.writeFileSync(target, patch(8, (b) => b.writeBigUInt64LE(2n ** 60n)));
    const run = await runLineage(['inspect', target]);
    assert.equal(run.code, EXIT.badInput);
    assert.equal(run.stdout, '');
    const lines = run.stderr.split('\n').filter(Boolean);
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0]!, /^error: bad GGUF header: tensor count .*hostile\.gguf/);
  });

  test('every truncation of a valid file is refused, never a crash or hang', () => {
    const target = fresh();
    for (let cut = 0; cut < bytes.length; cut += 7) {
      fs.writeFileSync(target, bytes.subarray(0, cut));
      assert.throws(() => openTensorSource(target).close(), BadInputError, `cut at ${cut}`);
    }
  });

  test('random byte flips in the header: a BadInputError or a readable model, nothing else', () => {
    const target = fresh();
    let s = 12345;
    const next = (n: number) => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) % n);
    for (let trial = 0; trial < 300; trial++) {
      const b = Buffer.from(bytes);
      for (let k = 0; k < 3; k++) b[next(200)] = next(256);
      fs.writeFileSync(target, b);
      try {
        const source = openTensorSource(target);
        try {
          for (const name of source.tensors.keys()) source.read(name);
        } finally {
          source.close();
        }
      } catch (err) {
        assert.ok(err instanceof BadInputError, `trial ${trial}: ${String(err)}`);
      }
    }
  });
});

describe('llama.cpp names and q/k order mapped back to the roles', () => {
  const config: LlamaConfig = { hidden: 64, intermediate: 96, layers: 2, heads: 4, kvHeads: 2, headDim: 16, vocab: 40 };
  const state = randomLlama(config, 11);
  for (const arch of ['llama', 'qwen2']) {
    test(`${arch}: every role reads as the Hugging Face weight (q/k ${arch === 'llama' ? 'permuted by the converter' : 'as trained'})`, () => {
      const file = fresh(`${arch}.gguf`);
      writeLlamaGguf(file, config, state, 'F32', arch);
      const reader = SourceRoleReader.open(file);
      try {
        assert.equal(reader.name, arch);
        assert.equal(reader.map.family, arch === 'llama' ? 'llama' : 'qwen2');
        assert.deepEqual({ ...reader.map.dims }, { hidden: 64, layers: 2, heads: 4, kvHeads: 2, headDim: 16, intermediate: 96, vocab: 40 });
        for (let layer = 0; layer < 2; layer++) {
          for (const [role, module] of [['q', 'q_proj'], ['k', 'k_proj'], ['v', 'v_proj'], ['o', 'o_proj'], ['gate', 'gate_proj'], ['up', 'up_proj'], ['down', 'down_proj']] as const) {
            assert.deepEqual(reader.layer(layer, role).data, state.get(tensorName(layer, module))!.data, `${role} of layer ${layer}`);
          }
          const part = reader.layerPart(layer, 'q', { rows: [0, 9, 63, 8], cols: [1, 2] });
          const q = state.get(tensorName(layer, 'q_proj'))!.data;
          assert.deepEqual([...part.data], [0, 9, 63, 8].flatMap((r) => [q[r * 64 + 1], q[r * 64 + 2]]));
        }
        assert.deepEqual(reader.global('embed').data, state.get('model.embed_tokens.weight')!.data);
      } finally {
        reader.close();
      }
    });
  }

  test('inspect of a GGUF file: architecture, dims, file type, types, name, tokenizer size', async () => {
    const file = fresh('small.Q8_0.gguf');
    writeLlamaGguf(file, config, state, 'Q8_0');
    const run = await runLineage(['inspect', file, '--json']);
    assert.equal(run.code, EXIT.ok, run.stderr);
    const report = JSON.parse(run.stdout);
    assert.equal(report.name, 'small.Q8_0');
    assert.deepEqual(report.gguf, { name: 'synthetic', architecture: 'llama', fileType: 'Q8_0', tokenizerTokens: 40, qkRowsUnpermuted: true });
    assert.deepEqual(Object.keys(report.dtypes), ['F32', 'Q8_0']);
    assert.equal(report.model.family, 'llama');
    assert.equal(report.model.layers, 2);
    assert.equal(report.model.hidden, 64);
  });

  test('a folder of GGUF files is pointed at the files', () => {
    const file = fresh('x.gguf');
    writeLlamaGguf(file, config, state, 'F32');
    assertBad(() => openTensorSource(path.dirname(file)), /holds GGUF files: give one of them \(x\.gguf\)/);
    const folder = path.join(path.dirname(file), 'st');
    writeLlama(folder, config, state, 'F32');
    assert.equal(openTensorSource(folder).ggufMetadata, undefined);
  });
});

test('tree names a GGUF member by its file name without .gguf (parent folder added when two names clash)', async () => {
  const { modelNames } = await import('../src/api/model-inputs.js');
  assert.deepEqual(modelNames(['z/p0', 'g/p0.Q8_0.gguf', 'g/p2.Q4_K_M.GGUF']), ['p0', 'p0.Q8_0', 'p2.Q4_K_M']);
  assert.deepEqual(modelNames(['a/m.gguf', 'b/m.gguf']), ['a/m', 'b/m']);
});

test('phi3: fused attn_qkv and ffn_up split into q, k, v and gate, up (no q/k reordering)', () => {
  const file = fresh('phi3.gguf');
  const hidden = 32, heads = 4, kvHeads = 2, headDim = 8, ff = 64;
  const qkv = gaussian((heads + 2 * kvHeads) * headDim * hidden, 31), gateUp = gaussian(2 * ff * hidden, 32);
  const u32 = (v: number): GgufMeta => ({ t: 'u32', v });
  writeGguf(file, {
    metadata: [
      ['general.architecture', { t: 'str', v: 'phi3' }], ['phi3.embedding_length', u32(hidden)], ['phi3.block_count', u32(1)],
      ['phi3.feed_forward_length', u32(ff)], ['phi3.attention.head_count', u32(heads)], ['phi3.attention.head_count_kv', u32(kvHeads)],
    ],
    tensors: [
      { name: 'blk.0.attn_qkv.weight', type: 'F32', shape: [(heads + 2 * kvHeads) * headDim, hidden], data: qkv },
      { name: 'blk.0.attn_output.weight', type: 'F32', shape: [hidden, heads * headDim], data: gaussian(hidden * heads * headDim, 33) },
      { name: 'blk.0.ffn_up.weight', type: 'F32', shape: [2 * ff, hidden], data: gateUp },
      { name: 'blk.0.ffn_down.weight', type: 'F32', shape: [hidden, ff], data: gaussian(hidden * ff, 34) },
      { name: 'blk.0.attn_norm.weight', type: 'F32', shape: [hidden], data: gaussian(hidden, 35) },
    ],
  });
  const reader = SourceRoleReader.open(file);
  try {
    assert.equal(reader.map.family, 'phi3');
    const q = heads * headDim * hidden, kv = kvHeads * headDim * hidden;
    assert.deepEqual(reader.layer(0, 'q').data, qkv.subarray(0, q));
    assert.deepEqual(reader.layer(0, 'k').data, qkv.subarray(q, q + kv));
    assert.deepEqual(reader.layer(0, 'v').data, qkv.subarray(q + kv));
    assert.deepEqual(reader.layer(0, 'gate').data, gateUp.subarray(0, ff * hidden));
    assert.deepEqual(reader.layer(0, 'up').data, gateUp.subarray(ff * hidden));
  } finally {
    reader.close();
  }
});

test('the test writer: Q4_K and Q6_K within their grids, the streaming writer byte for byte as the whole one', () => {
  const data = gaussian(4 * 256, 41);
  for (const [type, bound] of [['Q4_K', 0.12], ['Q6_K', 0.03]] as const) {
    const back = new Float32Array(data.length);
    dequantizeBlocks(type, encodeTensor(type, data), 0, 4, back, 0, null);
    let err = 0, norm = 0;
    for (let i = 0; i < data.length; i++) {
      err += (back[i]! - data[i]!) ** 2;
      norm += data[i]! ** 2;
    }
    assert.ok(Math.sqrt(err / norm) < bound, `${type}: relative error ${Math.sqrt(err / norm)}`);
  }
  const spec: GgufSpec = { metadata: EVERY_TYPE, tensors: [{ name: 'a', type: 'Q4_K', shape: [2, 256], data: data.subarray(0, 512) }, { name: 'b', type: 'F32', shape: [3], data: [1, 2, 3] }] };
  const streamed = fresh();
  writeGgufStreaming(streamed, spec, (t) => encodeTensor(t.type, t.data!));
  assert.deepEqual(fs.readFileSync(streamed), encodeGguf(spec));
});

test('a metadata string longer than the header buffer (2 MiB) is read whole', () => {
  const file = fresh();
  const long = 'x'.repeat(2 * 1024 * 1024 + 3);
  writeGguf(file, { metadata: [['a.long', { t: 'str', v: long }], ['a.after', { t: 'u32', v: 7 }]], tensors: [{ name: 'w', type: 'F32', shape: [4], data: [1, 2, 3, 4] }] });
  const header = readGgufHeader(file);
  assert.equal(header.metadata.get('a.long'), long);
  assert.equal(header.metadata.get('a.after'), 7);
  assert.equal(header.tensors[0]!.name, 'w');
});
