import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { BadInputError, printable } from '../src/io/errors.js';
import { MAX_HEADER_BYTES, readSafetensorsHeader } from '../src/io/safetensors.js';
import { openTensorSource } from '../src/io/source.js';
import { writeModelFolder, writeSafetensors } from './helpers/safetensors-writer.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'io-safetensors-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

let counter = 0;
function fresh(name: string): string {
  const dir = path.join(root, `${counter++}`);
  fs.mkdirSync(dir);
  return path.join(dir, name);
}

/** A file with a hand-written header: 8-byte length (or `declaredLength`), header text, payload. */
function rawFile(header: string, payloadBytes: number, declaredLength?: bigint): string {
  const file = fresh('model.safetensors');
  const json = Buffer.from(header, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(declaredLength ?? BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([prefix, json, Buffer.alloc(payloadBytes, 1)]));
  return file;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Opening `target` fails with a BadInputError whose message matches `reason` and names file and tensor. */
function assertBadInput(target: string, reason: RegExp, file: string, tensor?: string): void {
  assert.throws(() => openTensorSource(target).close(), (err: unknown) => {
    assert.ok(err instanceof BadInputError, `expected BadInputError, got ${String(err)}`);
    assert.match(err.message, reason);
    assert.match(err.message, new RegExp(`file ${escape(file)}`));
    if (tensor) assert.match(err.message, new RegExp(`tensor ${escape(tensor)}`));
    return true;
  });
}

const goodEntry = (dtype: string, shape: number[], begin: number, end: number) => ({ dtype, shape, data_offsets: [begin, end] });

test('a valid hand-written file parses: metadata, payload order, absolute offsets', () => {
  const header = JSON.stringify({
    b: goodEntry('F32', [2], 8, 16), a: goodEntry('BF16', [2, 2], 0, 8), empty: goodEntry('F32', [0, 3], 8, 8),
    __metadata__: { format: 'pt' },
  });
  const file = rawFile(header, 16);
  const parsed = readSafetensorsHeader(file);
  assert.deepEqual(parsed.metadata, { format: 'pt' });
  assert.deepEqual(parsed.tensors.map((t) => t.name), ['a', 'empty', 'b']);
  const dataStart = 8 + Buffer.byteLength(header);
  assert.equal(parsed.dataStart, dataStart);
  assert.deepEqual(parsed.tensors.map((t) => [t.start, t.byteLength]), [[dataStart, 8], [dataStart + 8, 0], [dataStart + 8, 8]]);
});

test('truncated files: shorter than the length prefix, and payload cut short', () => {
  const tiny = fresh('model.safetensors');
  fs.writeFileSync(tiny, Buffer.from([1, 2, 3, 4, 5]));
  assertBadInput(tiny, /truncated safetensors file: 5 bytes/, tiny);

  const whole = fresh('model.safetensors');
  writeSafetensors(whole, { w: { dtype: 'F32', shape: [4, 4], data: new Float32Array(16) } });
  const bytes = fs.readFileSync(whole);
  fs.writeFileSync(whole, bytes.subarray(0, bytes.length - 10));
  assertBadInput(whole, /truncated safetensors file: data_offsets end 64 lies past the end/, whole, 'w');
});

test('header length 2^60 is refused before allocating', () => {
  const file = rawFile('{}', 0, 2n ** 60n);
  assertBadInput(file, new RegExp(`header length ${2n ** 60n} exceeds the ${MAX_HEADER_BYTES / 1024 / 1024} MB limit`), file);
});

test('header length beyond the file size', () => {
  const file = rawFile('{}', 10, 1000n);
  assertBadInput(file, /header length 1000 exceeds the file size 20/, file);
});

test('data offsets past the end of the file', () => {
  const file = rawFile(JSON.stringify({ w: goodEntry('F32', [4], 0, 16) }), 8);
  assertBadInput(file, /past the end of the file/, file, 'w');
});

test('overlapping tensors', () => {
  const file = rawFile(JSON.stringify({ a: goodEntry('F32', [2], 0, 8), b: goodEntry('F32', [2], 4, 12) }), 12);
  assertBadInput(file, /overlapping tensors: b starts at 4, inside a/, file, 'b');
});

test('shape and byte size disagree', () => {
  const file = rawFile(JSON.stringify({ w: goodEntry('F32', [3], 0, 8) }), 8);
  assertBadInput(file, /size mismatch: shape \[3\] of F32 needs 12 bytes but data_offsets span 8/, file, 'w');
});

test('bad JSON, JSON that is not an object, bad UTF-8', () => {
  const badJson = rawFile('{"w": {"dtype": "F32",', 0);
  assertBadInput(badJson, /malformed safetensors header: bad JSON/, badJson);
  const array = rawFile('[1, 2, 3]', 0);
  assertBadInput(array, /JSON is not an object/, array);
  const nullHeader = rawFile('null', 0);
  assertBadInput(nullHeader, /JSON is not an object/, nullHeader);
  const file = fresh('model.safetensors');
  fs.writeFileSync(file, Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from([0xff, 0xfe])]));
  assertBadInput(file, /not valid UTF-8/, file);
});

test('unknown dtype', () => {
  const file = rawFile(JSON.stringify({ w: goodEntry('F4', [2], 0, 1) }), 1);
  assertBadInput(file, /unsupported dtype F4/, file, 'w');
});

test('wrongly typed entry fields and metadata', () => {
  const cases: [unknown, RegExp, string | undefined][] = [
    [{ w: 5 }, /tensor entry is not an object/, 'w'],
    [{ w: { dtype: 7, shape: [1], data_offsets: [0, 4] } }, /dtype is not a string/, 'w'],
    [{ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, /shape is not a list of non-negative integers/, 'w'],
    [{ w: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }, /shape is not a list/, 'w'],
    [{ w: { dtype: 'F32', shape: '1', data_offsets: [0, 4] } }, /shape is not a list/, 'w'],
    [{ w: { dtype: 'F32', shape: [1], data_offsets: [0] } }, /data_offsets is not a pair/, 'w'],
    [{ w: { dtype: 'F32', shape: [1], data_offsets: ['0', '4'] } }, /data_offsets is not a pair/, 'w'],
    [{ w: { dtype: 'F32', shape: [1] } }, /data_offsets is not a pair/, 'w'],
    [{ w: { dtype: 'F32', shape: [0], data_offsets: [4, 0] } }, /end before begin/, 'w'],
    [{ w: { dtype: 'U8', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 4] } }, /too large/, 'w'],
    [{ __metadata__: { format: 1 } }, /__metadata__ value of "format" is not a string/, undefined],
    [{ __metadata__: ['pt'] }, /__metadata__ is not an object/, undefined],
  ];
  for (const [header, reason, tensor] of cases) {
    const file = rawFile(JSON.stringify(header), 4);
    assertBadInput(file, reason, file, tensor);
  }
});

test('sharded folder: a missing shard and a tensor the shard does not hold', () => {
  const dir = path.dirname(fresh('x'));
  const tensors = {
    a: { shape: [4], data: [1, 2, 3, 4] }, b: { shape: [4], data: [5, 6, 7, 8] }, c: { shape: [2], data: [9, 10] },
  };
  const [first, second] = writeModelFolder(dir, { model_type: 'llama' }, tensors, { shards: 2 });
  assert.ok(first && second);
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  const index = JSON.parse(fs.readFileSync(indexFile, 'utf8'));

  index.weight_map.ghost = path.basename(first);
  fs.writeFileSync(indexFile, JSON.stringify(index));
  assertBadInput(dir, /index lists this tensor in shard model-00001-of-00002\.safetensors, which does not hold it/, first, 'ghost');

  delete index.weight_map.ghost;
  fs.writeFileSync(indexFile, JSON.stringify(index));
  fs.rmSync(second);
  assertBadInput(dir, /missing shard model-00002-of-00002\.safetensors listed in the index/, second);

  index.weight_map.a = '../outside.safetensors';
  fs.writeFileSync(indexFile, JSON.stringify(index));
  assertBadInput(dir, /index names a bad shard/, indexFile, 'a');
});

test('pickle-only folders and files are refused without being read', () => {
  const dir = path.dirname(fresh('x'));
  fs.writeFileSync(path.join(dir, 'config.json'), '{}');
  fs.writeFileSync(path.join(dir, 'pytorch_model.bin'), 'not read');
  assertBadInput(dir, /pickles are never executed.*convert the model to safetensors/, path.join(dir, 'pytorch_model.bin'));
  const pt = fresh('weights.pt');
  fs.writeFileSync(pt, 'not read');
  assertBadInput(pt, /pickles are never executed/, pt);
});

test('missing path, empty folder, non-safetensors file, bad config.json', () => {
  const missing = path.join(root, 'does-not-exist');
  assertBadInput(missing, /no such file or folder/, missing);
  const empty = path.dirname(fresh('x'));
  assertBadInput(empty, /no safetensors weights in folder/, empty);
  const text = fresh('notes.txt');
  fs.writeFileSync(text, 'hello');
  assertBadInput(text, /not a \.safetensors file/, text);
  const dir = path.dirname(fresh('x'));
  writeModelFolder(dir, null, { w: { shape: [1], data: [1] } });
  fs.writeFileSync(path.join(dir, 'config.json'), '{"hidden_size": ');
  assertBadInput(dir, /bad JSON/, path.join(dir, 'config.json'));
});

test('a file cut short after its header was read fails the read, naming file and tensor', () => {
  const file = fresh('model.safetensors');
  writeSafetensors(file, { w: { dtype: 'F32', shape: [8], data: new Float32Array(8) } });
  const source = openTensorSource(file);
  try {
    fs.truncateSync(file, fs.statSync(file).size - 4);
    assert.throws(() => source.read('w'), (err: unknown) =>
      err instanceof BadInputError && /truncated file/.test(err.message) && err.message.includes(`file ${file}`) && /tensor w/.test(err.message));
  } finally {
    source.close();
  }
});

test('a tensor name given twice is refused, however its key is spelled; nested keys and values may repeat', () => {
  const entry = (begin: number) => `{"dtype":"U8","shape":[1],"data_offsets":[${begin},${begin + 1}]}`;
  for (const header of [`{"ab":${entry(0)},"ab":${entry(1)}}`, `{"ab":${entry(0)}, "a\\u0062" :${entry(1)}}`, `{"a\\"b":${entry(0)},"a\\"b":${entry(1)}}`]) {
    assert.throws(() => readSafetensorsHeader(rawFile(header, 2)), (err: unknown) => err instanceof BadInputError && /appears twice/.test(err.message), header);
  }
  const nested = `{"__metadata__":{"x":"ab","y":"ab"},"ab":${entry(0)},"x":${entry(1)}}`;
  assert.deepEqual(readSafetensorsHeader(rawFile(nested, 2)).tensors.map((t) => t.name), ['ab', 'x']);
});

test('a header without tensors, and a weights path that is a folder or a named pipe, are bad input at once', () => {
  assert.throws(() => readSafetensorsHeader(rawFile('{"__metadata__":{"format":"pt"}}', 0)), /lists no tensors/);
  const folder = fresh('model.safetensors');
  fs.mkdirSync(folder);
  assert.throws(() => readSafetensorsHeader(folder), (err: unknown) => err instanceof BadInputError && /not a regular file \(a folder\)/.test(err.message));
  const fifo = fresh('model.safetensors');
  try {
    execFileSync('mkfifo', [fifo]);
  } catch {
    return; // no mkfifo here: the folder case above stands for both
  }
  assert.throws(() => readSafetensorsHeader(fifo), /not a regular file \(a named pipe\)/);
});

test('printable escapes control characters, separators and bidirectional overrides, idempotently', () => {
  const hostile = 'a\nb\r\t\u0000\u001b[31m\u007f\u009b\u2028\u202e.';
  assert.equal(printable(hostile), 'a\\nb\\r\\t\\u0000\\u001b[31m\\u007f\\u009b\\u2028\\u202e.');
  assert.equal(printable(printable(hostile)), printable(hostile));
  assert.equal(new BadInputError('bad\nerror: forged', { tensor: 'x\u001b' }).message, 'bad\\nerror: forged (tensor x\\u001b)');
});
