import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadSketch } from '../src/store/load-sketches.js';
import { compareMatrix } from '../src/tree/sketch-evidence.js';
import { MODULES, writeFamily, type Module } from './helpers/synthetic-llama.js';

// hidden 256 > k = 128: every side of every matrix goes through the Gaussian sketch.
const DIMS = { hidden: 256, intermediate: 384, layers: 5, heads: 4 };

test('sketch ranks: LoRA ranks 1..64 on bf16 weights are read exactly through the two-sided sketch', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-sketch-rank-'));
  try {
    // Two children x 5 layers x 7 modules = 70 matrices cover every rank 1..64.
    const rankOf = (child: number) => (layer: number, module: Module) => 1 + ((child * 35 + layer * 7 + MODULES.indexOf(module)) % 64);
    const folders = writeFamily(dir, [
      { name: 'base', kind: 'root' },
      { name: 'c0', kind: 'lora', parent: 'base', rank: rankOf(0), modules: MODULES },
      { name: 'c1', kind: 'lora', parent: 'base', rank: rankOf(1), modules: MODULES },
    ], DIMS, 11);
    const sketch = (n: string) => loadSketch(folders.get(n)!, { cacheDir: null }).sketch;
    const base = sketch('base');
    const seen = new Set<number>();
    ['c0', 'c1'].forEach((name, child) => {
      const s = sketch(name);
      s.matrices.forEach((m, i) => {
        assert.ok(m.leftProjected && m.rightProjected);
        const expected = rankOf(child)(m.layer, `${m.role}_proj` as Module);
        assert.equal(compareMatrix(base.matrices[i]!, m).rank, expected, `${name} layer ${m.layer} ${m.role}`);
        seen.add(expected);
      });
    });
    assert.equal(seen.size, 64);
    // Unchanged weights: bit-equal sketches, rank 0; a model against itself likewise.
    const same = compareMatrix(base.matrices[0]!, base.matrices[0]!);
    assert.deepEqual([same.changed, same.rank, same.deltaSquared], [false, 0, 0]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
