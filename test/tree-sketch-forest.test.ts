import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadSketch } from '../src/store/load-sketches.js';
import { recoverLineage, type SketchedModel } from '../src/tree/lineage.js';
import { scoreAgainstTruth } from '../src/tree/truth.js';
import { writeFamily, type FamilySpec } from './helpers/synthetic-llama.js';
import { runLineage } from './cli-child-process.js';

const DIMS = { hidden: 96, intermediate: 256, layers: 2, heads: 4 };

// Three independent families: LoRA and full fine-tunes, grandchildren, and an F32 full
// fine-tune with a bf16 LoRA child (mixed precision).
const SPECS: FamilySpec[] = [
  { name: 'a0', kind: 'root' },
  { name: 'a1', kind: 'full', parent: 'a0' },
  { name: 'a2', kind: 'lora', parent: 'a0', rank: 4, modules: ['q_proj', 'v_proj'] },
  { name: 'a1a', kind: 'full', parent: 'a1' },
  { name: 'a2a', kind: 'lora', parent: 'a2', rank: 8, modules: ['q_proj', 'v_proj'] },
  { name: 'b0', kind: 'root' },
  { name: 'b1', kind: 'full', parent: 'b0', dtype: 'F32' },
  { name: 'b1a', kind: 'lora', parent: 'b1', rank: 2, modules: ['v_proj', 'o_proj'] },
  { name: 'b2', kind: 'lora', parent: 'b0', rank: 16, modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] },
  { name: 'c0', kind: 'root' },
  { name: 'c1', kind: 'full', parent: 'c0' },
];
const TRUTH = { models: SPECS.map((s) => ({ name: s.name, parent: s.kind === 'root' ? null : s.parent })) };

test('synthetic forest from safetensors: recovered exactly, labelled, independent of order and names; CLI agrees', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-tree-forest-'));
  try {
    const folders = writeFamily(dir, SPECS, DIMS, 21);
    const sketches = new Map(SPECS.map((s) => [s.name, loadSketch(folders.get(s.name)!, { cacheDir: null }).sketch]));
    const models: SketchedModel[] = SPECS.map((s) => ({ name: s.name, sketch: sketches.get(s.name)! }));
    const { result } = recoverLineage(models);
    const score = scoreAgainstTruth(result, TRUTH);
    assert.deepEqual(score.wrongEdges, []);
    assert.equal(score.edgeAccuracy, 1);
    assert.equal(score.clusteringAccuracy, 1);
    assert.deepEqual(result.trees.map((t) => t.root).sort(), ['a0', 'b0', 'c0']);
    const label = (child: string) => {
      const e = result.edges.find((x) => x.child === child)!;
      return `${e.kind}:${e.rank}:${e.modules.join(',')}`;
    };
    assert.equal(label('a1'), 'full:null:');
    assert.equal(label('a2'), 'lora:4:q_proj,v_proj');
    assert.equal(label('a2a'), 'lora:8:q_proj,v_proj');
    assert.equal(label('b1a'), 'lora:2:o_proj,v_proj');
    assert.equal(label('b2'), 'lora:16:down_proj,gate_proj,k_proj,o_proj,q_proj,up_proj,v_proj');
    for (const e of result.edges) assert.ok(e.directionMargin > 0.5, `${e.parent}->${e.child} norm growth ${e.directionMargin}`);

    // Reversed order and other names: the same forest up to the renaming.
    const renamed = [...models].reverse().map((m) => ({ name: `x-${m.name}`, sketch: m.sketch }));
    const again = recoverLineage(renamed).result;
    const edges = (r: typeof result, strip = '') => r.edges.map((e) => `${e.parent.replace(strip, '')}>${e.child.replace(strip, '')}:${e.kind}:${e.rank}`).sort();
    assert.deepEqual(edges(again, 'x-'), edges(result));

    const mother = recoverLineage(models, { method: 'mother' }).result;
    assert.equal(mother.trees.flatMap((t) => t.members).length, SPECS.length);
    assert.equal(mother.edges.length, SPECS.length - mother.trees.length);

    const cli = await runLineage(['tree', '--json', '--no-cache', ...SPECS.map((s) => folders.get(s.name)!)]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.deepEqual(edges(JSON.parse(cli.stdout)), edges(result));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('tree charts models of different architectures as separate forests, never related, with a note', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-tree-arch-'));
  try {
    const small = writeFamily(dir, [{ name: 'a', kind: 'root' }, { name: 'b', kind: 'full', parent: 'a' }], DIMS, 2);
    const other = writeFamily(path.join(dir, 'o'), [{ name: 'odd', kind: 'root' }], { ...DIMS, layers: 3 }, 2);
    const cli = await runLineage(['tree', '--json', '--no-cache', small.get('a')!, other.get('odd')!, small.get('b')!]);
    assert.equal(cli.code, 0, cli.stderr);
    const result = JSON.parse(cli.stdout) as { trees: Array<{ root: string; members: string[] }>; edges: Array<{ parent: string; child: string }>; notes: string[] };
    assert.deepEqual(result.trees, [{ root: 'a', members: ['a', 'b'] }, { root: 'odd', members: ['odd'] }]);
    assert.deepEqual(result.edges.map((e) => `${e.parent}->${e.child}`), ['a->b']);
    assert.ok(result.notes.some((n) => /^2 architectures among the models/.test(n) && n.includes('3 layers')), result.notes.join('\n'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
