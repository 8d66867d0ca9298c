/**
 * Sketching on worker threads (src/sketch/parallel.ts): the same sketches, bit for bit, as in
 * this thread, for any worker count; a model that fails to read is reported and the others are
 * still sketched; progress counts every model's bytes once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadSketches, type LoadedSketch } from '../src/store/load-sketches.js';
import { openTensorSource } from '../src/io/source.js';
import { compareSketches } from '../src/tree/sketch-evidence.js';
import { writeFamily } from './helpers/synthetic-llama.js';

const DIMS = { hidden: 256, intermediate: 384, layers: 3, heads: 4 };

test('sketches on 0, 1 and 3 worker threads are bit-identical; a truncated model fails alone; progress counts every byte', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-sketch-parallel-'));
  try {
    const folders = writeFamily(dir, [
      { name: 'a', kind: 'root' },
      { name: 'b', kind: 'lora', parent: 'a', rank: 4, modules: ['q_proj', 'v_proj'] },
      { name: 'c', kind: 'root', dtype: 'F32' },
      { name: 'd', kind: 'full', parent: 'a', dtype: 'F16', scale: 0.01 },
    ], DIMS, 3);
    const broken = path.join(dir, 'broken');
    fs.cpSync(folders.get('a')!, broken, { recursive: true });
    const file = path.join(broken, 'model.safetensors');
    fs.truncateSync(file, fs.statSync(file).size - 1000);
    // A NaN in a layer's weights fails that model while its matrices are being sketched.
    const poisoned = path.join(dir, 'poisoned');
    fs.cpSync(folders.get('b')!, poisoned, { recursive: true });
    const source = openTensorSource(poisoned);
    const info = source.tensors.get('model.layers.1.mlp.up_proj.weight')!;
    const poisonedBytes = source.totalBytes;
    source.close();
    const fd = fs.openSync(info.file, 'r+');
    fs.writeSync(fd, Buffer.from([0xc0, 0x7f]), 0, 2, info.start + 64);
    fs.closeSync(fd);
    const paths = [folders.get('a')!, broken, folders.get('b')!, folders.get('c')!, poisoned, folders.get('d')!];
    const runs = [0, 1, 3].map((workers) => {
      let counted = 0;
      const loaded = loadSketches(paths, { cacheDir: null, workers, onBytes: (n) => void (counted += n) });
      return { loaded, counted };
    });
    const good = [0, 2, 3, 5];
    for (const { loaded, counted } of runs) {
      assert.ok('error' in loaded[1]!, 'the truncated model is reported as failed');
      assert.match((loaded[1] as { error: Error }).error.message, /truncated/);
      assert.ok('error' in loaded[4]!, 'the model with a NaN is reported as failed');
      assert.match((loaded[4] as { error: Error }).error.message, /non-finite/);
      for (const i of good) assert.ok(!('error' in loaded[i]!), `model ${i} sketched`);
      // Each good model's bytes once; the poisoned one's matrices up to its failure at most.
      const goodBytes = good.reduce((s, i) => s + (loaded[i] as LoadedSketch).tensorBytesRead, 0);
      assert.ok(counted >= goodBytes && counted <= goodBytes + poisonedBytes, `${counted} bytes counted`);
    }
    const reference = runs[0]!.loaded;
    for (const { loaded } of runs.slice(1)) {
      for (const i of good) {
        const a = (reference[i] as LoadedSketch).sketch, b = (loaded[i] as LoadedSketch).sketch;
        assert.equal(b.matrices.length, a.matrices.length);
        a.matrices.forEach((m, j) => {
          const n = b.matrices[j]!;
          assert.deepEqual([n.layer, n.role], [m.layer, m.role]);
          m.views.forEach((v, k) => {
            assert.deepEqual(Array.from(n.views[k]!.sketch), Array.from(v.sketch));
            assert.equal(n.views[k]!.squaredNorm, v.squaredNorm);
            assert.deepEqual(n.views[k]!.rowVariance, v.rowVariance);
          });
        });
        assert.deepEqual(b.neurons.map((x) => Array.from(x.gate)), a.neurons.map((x) => Array.from(x.gate)));
      }
    }
    // The F32 model keeps its bf16 view; the neuron rows are the column sketch of 256 rows.
    const c = (reference[3] as LoadedSketch).sketch;
    assert.deepEqual(c.matrices[0]!.views.map((v) => v.dtype), ['F32', 'BF16']);
    assert.ok(c.neurons.length > 0 && c.neurons.every((n) => n.dim === 128 && n.count === 256));
    // The F16 model too (decoded by the kernel); against its bf16 parent it is compared in bf16.
    const d = (reference[5] as LoadedSketch).sketch;
    assert.deepEqual(d.matrices[0]!.views.map((v) => v.dtype), ['F16', 'BF16']);
    const parent = (reference[0] as LoadedSketch).sketch;
    const comparison = compareSketches(parent, d);
    assert.ok(comparison.lowRank === null && comparison.normGrowth! > 0.5, `dense change, growing: ${comparison.normGrowth}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
