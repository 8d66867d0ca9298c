import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cacheFileName, decodeSketch, encodeSketch } from '../src/sketch/cache.js';
import { loadSketch } from '../src/sketch/load.js';
import { contentFingerprint, sketchCacheKey } from '../src/sketch/fingerprint.js';
import { openTensorSource } from '../src/io/source.js';
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
      assert.equal(b.views[j]!.maxRowVariance, v.maxRowVariance);
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
