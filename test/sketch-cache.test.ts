import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cacheFileName, decodeSketch, encodeSketch } from '../src/store/sketch-cache.js';
import { loadSketch } from '../src/store/load-sketches.js';
import { contentFingerprint, sketchCacheKey } from '../src/io/fingerprint.js';
import { openTensorSource } from '../src/io/source.js';
import { BadInputError } from '../src/io/errors.js';
import { resolveSketchOptions } from '../src/sketch/types.js';
import { writeFamily } from './helpers/synthetic-llama.js';

const DIMS = { hidden: 64, intermediate: 160, layers: 2, heads: 4 };

function withTempDir(run: (dir: string) => void): () => void {
  return () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-sketch-cache-'));
    try {
      run(dir);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
}

test('sketch cache: encode/decode is bit-exact', withTempDir((dir) => {
  const folders = writeFamily(dir, [{ name: 'a', kind: 'root', dtype: 'F32' }], DIMS, 3);
  const { sketch } = loadSketch(folders.get('a')!, { cacheDir: null });
  const back = decodeSketch(encodeSketch(sketch));
  assert.equal(back.fingerprint, sketch.fingerprint);
  assert.equal(back.matrices.length, sketch.matrices.length);
  sketch.matrices.forEach((m, i) => {
    const b = back.matrices[i]!;
    assert.equal(b.views.length, 2); // F32 keeps its bf16 rounding too
    m.views.forEach((v, j) => {
      assert.deepEqual(Array.from(b.views[j]!.sketch), Array.from(v.sketch));
      assert.equal(b.views[j]!.squaredNorm, v.squaredNorm);
      assert.deepEqual(b.views[j]!.rowVariance, v.rowVariance);
    });
    assert.equal(b.moments.excessKurtosis, m.moments.excessKurtosis);
  });
  assert.deepEqual(back.neurons.map((n) => Array.from(n.gate)), sketch.neurons.map((n) => Array.from(n.gate)));
}));

test('sketch cache: a second run reads no tensor bytes, an added model reads only itself, a corrupt file is rebuilt', withTempDir((dir) => {
  const folders = writeFamily(dir, [
    { name: 'a', kind: 'root' },
    { name: 'b', kind: 'full', parent: 'a' },
    { name: 'c', kind: 'lora', parent: 'a', rank: 2, modules: ['q_proj'] },
  ], DIMS, 5);
  const cacheDir = path.join(dir, 'cache');
  const first = ['a', 'b'].map((n) => loadSketch(folders.get(n)!, { cacheDir }));
  for (const l of first) {
    assert.equal(l.fromCache, false);
    // Every weight exactly once: the linear ones sketched (2 layers x (4 x 64^2 + 3 x 160 x 64)
    // bf16 values), the rest (embeddings, lm_head, norms) checked for NaN and infinity.
    assert.equal(l.tensorBytesRead, l.sketch.totalBytes);
    assert.ok(l.tensorBytesRead > 2 * (4 * 64 * 64 + 3 * 160 * 64) * 2);
  }
  const again = ['a', 'b', 'c'].map((n) => loadSketch(folders.get(n)!, { cacheDir }));
  assert.deepEqual(again.map((l) => l.tensorBytesRead === 0), [true, true, false]);
  assert.deepEqual(again.map((l) => l.fromCache), [true, true, false]);
  assert.ok(again.every((l) => l.fingerprintBytesRead > 0 && l.fingerprintBytesRead <= 8 + 4096 + 3 * 65536));
  assert.deepEqual(Array.from(again[0]!.sketch.matrices[0]!.views[0]!.sketch), Array.from(first[0]!.sketch.matrices[0]!.views[0]!.sketch));

  const source = openTensorSource(folders.get('a')!);
  const key = sketchCacheKey(source, contentFingerprint(source), false).hash;
  source.close();
  const file = path.join(cacheDir, cacheFileName(key, resolveSketchOptions()));
  for (const corrupt of [Buffer.from('garbage'), fs.readFileSync(file).subarray(0, 200), Buffer.alloc(0)]) {
    fs.writeFileSync(file, corrupt);
    const rebuilt = loadSketch(folders.get('a')!, { cacheDir });
    assert.equal(rebuilt.fromCache, false);
    assert.ok(rebuilt.tensorBytesRead > 0);
    assert.equal(loadSketch(folders.get('a')!, { cacheDir }).fromCache, true);
  }
}));

test('fingerprint: the same weights in another folder share it; a changed tensor changes it', withTempDir((dir) => {
  const one = writeFamily(path.join(dir, 'x'), [{ name: 'a', kind: 'root' }], DIMS, 9);
  const two = writeFamily(path.join(dir, 'y'), [{ name: 'renamed', kind: 'root' }], DIMS, 9);
  const three = writeFamily(path.join(dir, 'z'), [{ name: 'a', kind: 'root' }], DIMS, 10);
  const key = (p: string) => loadSketch(p, { cacheDir: null }).sketch.fingerprint;
  assert.equal(key(one.get('a')!), key(two.get('renamed')!));
  assert.notEqual(key(one.get('a')!), key(three.get('a')!));
}));

test('an adapter folder is refused as bad input', withTempDir((dir) => {
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 2 }));
  fs.copyFileSync(path.join(writeFamily(dir, [{ name: 'a', kind: 'root' }], DIMS, 1).get('a')!, 'model.safetensors'), path.join(dir, 'adapter_model.safetensors'));
  assert.throws(() => loadSketch(dir, { cacheDir: null }), /PEFT adapter/);
}));

test('sketch cache: a touched weight file misses; with rehash its unchanged content still hits; a changed config misses and is checked on a hit', withTempDir((dir) => {
  const folder = writeFamily(dir, [{ name: 'a', kind: 'root' }], DIMS, 4).get('a')!;
  const weights = path.join(folder, 'model.safetensors');
  const cacheDir = path.join(dir, 'cache');
  const touch = (seconds: number) => fs.utimesSync(weights, seconds, seconds);
  assert.equal(loadSketch(folder, { cacheDir }).fromCache, false);
  assert.equal(loadSketch(folder, { cacheDir }).fromCache, true);
  touch(1_000_000);
  assert.equal(loadSketch(folder, { cacheDir }).fromCache, false, 'a new modification time is a miss');
  assert.equal(loadSketch(folder, { cacheDir, rehash: true }).fromCache, false);
  touch(2_000_000);
  const rehashed = loadSketch(folder, { cacheDir, rehash: true });
  assert.equal(rehashed.fromCache, true, 'the same content is a hit with rehash');
  assert.equal(rehashed.fingerprintBytesRead > fs.statSync(weights).size, true, 'rehash reads the whole file');

  const configFile = path.join(folder, 'config.json');
  const config = JSON.parse(fs.readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(configFile, JSON.stringify({ ...config, rope_theta: 12345 }));
  assert.equal(loadSketch(folder, { cacheDir }).fromCache, false, 'another config is a miss');
  assert.equal(loadSketch(folder, { cacheDir }).fromCache, true);
  fs.writeFileSync(configFile, JSON.stringify({ ...config, rope_theta: 12345, hidden_size: 32 }));
  assert.throws(() => loadSketch(folder, { cacheDir }), (err: unknown) => err instanceof BadInputError && /need/.test(err.message));
}));

test('sketch cache: an in-place edit the content fingerprint cannot see (same size and header, outside its sampled blocks) is a miss', withTempDir((dir) => {
  const folders = writeFamily(dir, [{ name: 'a', kind: 'root' }, { name: 'b', kind: 'root' }], { hidden: 128, intermediate: 320, layers: 6, heads: 4 }, 6);
  const cacheDir = path.join(dir, 'cache');
  const first = loadSketch(folders.get('a')!, { cacheDir });
  const weights = path.join(folders.get('a')!, 'model.safetensors');
  const source = openTensorSource(folders.get('a')!);
  const donor = openTensorSource(folders.get('b')!);
  const before = contentFingerprint(source).hash;
  // A tensor of the middle layers that no sampled block touches, overwritten with another model's bytes.
  const payloadStart = Math.min(...[...source.tensors.values()].map((t) => t.start));
  const end = fs.statSync(weights).size, middle = payloadStart + Math.floor((end - payloadStart - 65536) / 2);
  const sampled = [[payloadStart, payloadStart + 65536], [middle, middle + 65536], [end - 65536, end]];
  const target = [...source.tensors.values()].find((t) => /layers\.[1-4]\.self_attn\.q_proj/.test(t.name)
    && sampled.every(([s, e]) => t.start + t.byteLength <= s! || t.start >= e!))!;
  assert.ok(target, 'a q_proj outside the sampled blocks');
  const bytes = fs.readFileSync(path.join(folders.get('b')!, 'model.safetensors')).subarray(donor.tensors.get(target.name)!.start).subarray(0, target.byteLength);
  const fd = fs.openSync(weights, 'r+');
  fs.writeSync(fd, bytes, 0, bytes.length, target.start);
  fs.closeSync(fd);
  assert.equal(contentFingerprint(source).hash, before, 'the edit is invisible to the content fingerprint');
  source.close();
  donor.close();
  const cached = loadSketch(folders.get('a')!, { cacheDir });
  const fresh = loadSketch(folders.get('a')!, { cacheDir: null });
  assert.equal(cached.fromCache, false);
  const matrix = (l: typeof first) => Array.from(l.sketch.matrices.find((m) => m.role === 'q' && target.name.includes(`layers.${m.layer}.`))!.views[0]!.sketch);
  assert.deepEqual(matrix(cached), matrix(fresh));
  assert.notDeepEqual(matrix(cached), matrix(first));
}));
