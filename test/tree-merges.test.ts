/**
 * Merges and missing ancestors on the sketches: synthetic merges of known weights (linear, task
 * arithmetic, TIES, DARE, a merge of LoRA children, a fine-tune of a merge), siblings of an
 * absent base, and sets without either (today's forest, unchanged); then ../shared/zoo-merge.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadSketch } from '../src/store/load-sketches.js';
import { recoverLineage, type SketchedModel } from '../src/tree/lineage.js';
import { recoverForest } from '../src/tree/forest.js';
import { forestEvidence, compareAll } from '../src/tree/lineage.js';
import { renderDot, renderMermaid, renderTerminal } from '../src/reports/tree-render.js';
import { assembleFamilies, reassembleFamilies } from '../src/tree/families.js';
import { detuneBase } from '../src/tree/detune.js';
import { writeRecoveredBases } from '../src/api/recover-base.js';
import { SourceRoleReader } from '../src/arch/reader.js';
import { openTensorSource } from '../src/io/source.js';
import { verifyModels } from '../src/verify/verify.js';
import { Rng } from '../src/linalg/rng.js';
import type { Matrix } from '../src/linalg/matrix.js';
import type { LineageResult } from '../src/tree/types.js';
import { parseTruth, scoreAgainstTruth } from '../src/tree/truth.js';
import { REPO_ROOT, runLineage } from './cli-child-process.js';
import { writeFamily, type FamilySpec, type MergeSpec, type Module } from './helpers/synthetic-llama.js';

const DIMS = { hidden: 96, intermediate: 256, layers: 2, heads: 4 };
const ATTENTION: Module[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];

function sketchAll(specs: ReadonlyArray<FamilySpec | MergeSpec>, seed: number, leaveOut: readonly string[] = []): SketchedModel[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-merges-'));
  try {
    const folders = writeFamily(dir, specs, DIMS, seed);
    return specs.filter((s) => !leaveOut.includes(s.name)).map((s) => ({ name: s.name, sketch: loadSketch(folders.get(s.name)!, { cacheDir: null }).sketch }));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Every incoming edge of each model, as "parent>child:kind". */
function edgeSet(result: LineageResult): string[] {
  return result.edges.map((e) => `${e.parent}>${e.child}:${e.kind}`).sort();
}

function mergeOf(result: LineageResult, child: string) {
  const m = result.merges?.find((x) => x.child === child);
  assert.ok(m, `${child} should be a merge; merges: ${JSON.stringify(result.merges)}`);
  return m;
}

const FAMILY: ReadonlyArray<FamilySpec | MergeSpec> = [
  { name: 'r0', kind: 'root' },
  { name: 'f1', kind: 'full', parent: 'r0' },
  { name: 'f2', kind: 'full', parent: 'r0', scale: 0.12 },
  { name: 'f3', kind: 'full', parent: 'r0', scale: 0.08 },
  { name: 'f4', kind: 'full', parent: 'r0' },
  { name: 'l1', kind: 'lora', parent: 'r0', rank: 4, modules: ['q_proj', 'v_proj'] },
  { name: 'l2', kind: 'lora', parent: 'r0', rank: 8, modules: ATTENTION },
  { name: 'mlin', kind: 'merge', method: 'linear', parents: ['f1', 'f2'], weights: [0.7, 0.3] },
  { name: 'mtask', kind: 'merge', method: 'task_arithmetic', base: 'r0', parents: ['f1', 'f2', 'f3'], weights: [1, 1, 1], lambda: 0.7 },
  { name: 'mties', kind: 'merge', method: 'ties', base: 'r0', parents: ['f2', 'f3', 'f4'], density: 0.3 },
  { name: 'mdare', kind: 'merge', method: 'dare', base: 'r0', parents: ['f1', 'f4'], weights: [0.8, 1], density: 0.7 },
  { name: 'mlora', kind: 'merge', method: 'linear', parents: ['l1', 'l2'], weights: [0.5, 0.5] },
  { name: 'mlin_ft', kind: 'full', parent: 'mlin', scale: 0.05 },
];

test('synthetic merges: each method gets exactly its parents and its kind; a fine-tune of a merge is its ordinary child', () => {
  const models = sketchAll(FAMILY, 31);
  const { result } = recoverLineage(models);
  assert.equal(result.trees.length, 1);
  assert.deepEqual(result.merges!.map((m) => m.child).sort(), ['mdare', 'mlin', 'mlora', 'mtask', 'mties']);

  const lin = mergeOf(result, 'mlin');
  assert.deepEqual(lin.parents, ['f1', 'f2']);
  assert.equal(lin.method, 'linear');
  assert.ok(Math.abs(lin.weights[0]! - 0.7) < 0.01 && Math.abs(lin.weights[1]! - 0.3) < 0.01, `weights ${lin.weights}`);
  assert.equal(lin.base, null);

  const task = mergeOf(result, 'mtask');
  assert.deepEqual(task.parents, ['f1', 'f2', 'f3']);
  assert.equal(task.method, 'task_arithmetic');
  assert.equal(task.base, 'r0');
  for (const w of task.weights) assert.ok(Math.abs(w - 0.7) < 0.01, `task weights ${task.weights}`);

  const ties = mergeOf(result, 'mties');
  assert.deepEqual(ties.parents, ['f2', 'f3', 'f4']);
  assert.equal(ties.base, 'r0');
  assert.equal(ties.method, 'ties');

  const dare = mergeOf(result, 'mdare');
  assert.deepEqual(dare.parents, ['f1', 'f4']);
  assert.equal(dare.base, 'r0');
  assert.equal(dare.method, 'dare');
  assert.ok(Math.abs(dare.density! - 0.7) < 0.05, `density ${dare.density}`);
  assert.ok(Math.abs(dare.weights[0]! - 0.8) < 0.05 && Math.abs(dare.weights[1]! - 1) < 0.05, `dare weights ${dare.weights}`);

  const lora = mergeOf(result, 'mlora');
  assert.deepEqual(lora.parents, ['l1', 'l2']);
  assert.equal(lora.method, 'linear');

  // One edge per parent for every merge; every other model has its true single parent.
  const expected = [
    ...['f1', 'f2', 'f3', 'f4'].map((c) => `r0>${c}:full`), 'r0>l1:lora', 'r0>l2:lora',
    ...FAMILY.filter((s): s is MergeSpec => s.kind === 'merge').flatMap((s) => s.parents.map((p) => `${p}>${s.name}:merge`)),
    'mlin>mlin_ft:full',
  ].sort();
  assert.deepEqual(edgeSet(result), expected);
  for (const e of result.edges) if (e.kind !== 'merge') assert.ok(e.directionMargin > 0.3, `${e.parent}->${e.child} margin ${e.directionMargin}`);
  assert.equal(result.virtualNodes, undefined);

  // Independent of input order and names.
  const renamed = [...models].reverse().map((m) => ({ name: `x-${m.name}`, sketch: m.sketch }));
  const again = recoverLineage(renamed).result;
  assert.deepEqual(edgeSet(again).map((e) => e.replace(/x-/g, '')), expected);

  // Renderers: several incoming edges, merge edges drawn apart.
  const dot = renderDot(result);
  assert.match(dot, /"f1" -> "mlin" \[label="merge linear w=0\.70\d*\\nd=[^"]*", style=bold\]/);
  assert.match(renderMermaid(result), /==>\|"merge ties/);
  const terminal = renderTerminal(result);
  assert.match(terminal, /mlin_ft {2}full FT/);
  assert.match(terminal, /\(merge: shown above\)/);
});

test('synthetic merges of other shapes: 2-4 parents, other weights and densities, each method', () => {
  const specs: ReadonlyArray<FamilySpec | MergeSpec> = [
    { name: 'r0', kind: 'root' },
    { name: 'f1', kind: 'full', parent: 'r0', scale: 0.06 },
    { name: 'f2', kind: 'full', parent: 'r0', scale: 0.1 },
    { name: 'f3', kind: 'full', parent: 'r0', scale: 0.14 },
    { name: 'f4', kind: 'full', parent: 'r0', scale: 0.09 },
    { name: 'l1', kind: 'lora', parent: 'r0', rank: 6, modules: ['q_proj', 'k_proj'] },
    { name: 'l2', kind: 'lora', parent: 'r0', rank: 12, modules: ['v_proj', 'o_proj'] },
    { name: 'l3', kind: 'lora', parent: 'r0', rank: 4, modules: ['gate_proj', 'up_proj'] },
    { name: 'm4', kind: 'merge', method: 'linear', parents: ['f1', 'f2', 'f3', 'f4'], weights: [0.1, 0.2, 0.3, 0.4] },
    { name: 'tsmall', kind: 'merge', method: 'task_arithmetic', base: 'r0', parents: ['f1', 'f3'], lambda: 0.3 },
    { name: 'ties2', kind: 'merge', method: 'ties', base: 'r0', parents: ['f2', 'f4'], density: 0.5 },
    { name: 'dare3', kind: 'merge', method: 'dare', base: 'r0', parents: ['f1', 'f2', 'f3'], density: 0.5 },
    { name: 'lora3', kind: 'merge', method: 'linear', parents: ['l1', 'l2', 'l3'], weights: [0.3, 0.3, 0.4] },
    { name: 'dare_lora', kind: 'merge', method: 'dare', base: 'r0', parents: ['l2', 'l3'], weights: [1, 1], density: 0.6 },
  ];
  const { result } = recoverLineage(sketchAll(specs, 61));
  const merges = specs.filter((x): x is MergeSpec => x.kind === 'merge');
  assert.deepEqual(result.merges!.map((m) => m.child).sort(), merges.map((m) => m.name).sort());
  for (const spec of merges) {
    const found = mergeOf(result, spec.name);
    assert.deepEqual(found.parents, [...spec.parents].sort(), `${spec.name} parents`);
    assert.equal(found.method, spec.method, `${spec.name} method`);
    assert.equal(found.base, spec.base ?? null, `${spec.name} base`);
  }
  for (const [i, w] of [0.1, 0.2, 0.3, 0.4].entries()) assert.ok(Math.abs(mergeOf(result, 'm4').weights[i]! - w) < 0.01);
  for (const w of mergeOf(result, 'tsmall').weights) assert.ok(Math.abs(w - 0.3) < 0.01);
  assert.ok(Math.abs(mergeOf(result, 'dare3').density! - 0.5) < 0.05);
  const expected = [
    ...['f1', 'f2', 'f3', 'f4'].map((c) => `r0>${c}:full`), ...['l1', 'l2', 'l3'].map((c) => `r0>${c}:lora`),
    ...merges.flatMap((m) => m.parents.map((p) => `${p}>${m.name}:merge`)),
  ].sort();
  assert.deepEqual(edgeSet(result), expected);
});

test('a merge of two families\' members joins them into one family with both roots, each family its own tree', () => {
  const specs: ReadonlyArray<FamilySpec | MergeSpec> = [
    { name: 'r0', kind: 'root' },
    { name: 'f1', kind: 'full', parent: 'r0' },
    { name: 'f2', kind: 'full', parent: 'r0' },
    { name: 's0', kind: 'root' },
    { name: 'g1', kind: 'full', parent: 's0' },
    { name: 'g2', kind: 'lora', parent: 's0', rank: 8, modules: ['q_proj', 'v_proj'] },
    { name: 'm', kind: 'merge', method: 'linear', parents: ['f1', 'g1'], weights: [0.6, 0.4] },
  ];
  const { result } = recoverLineage(sketchAll(specs, 71));
  assert.deepEqual(result.trees.map((t) => [t.root, t.roots]), [['r0', ['r0', 's0']]]);
  assert.deepEqual(edgeSet(result), ['f1>m:merge', 'g1>m:merge', 'r0>f1:full', 'r0>f2:full', 's0>g1:full', 's0>g2:lora']);
  assert.deepEqual(result.notes ?? [], []);
});

test('siblings of an absent base: one virtual parent with each child\'s own rank and modules; with the base present, today\'s tree', () => {
  const ranks = [4, 6, 8, 12, 16, 8];
  const moduleSets: Module[][] = [['q_proj', 'v_proj'], ['q_proj', 'v_proj'], ATTENTION, ['q_proj', 'v_proj'], ['v_proj', 'o_proj'], ['gate_proj', 'up_proj']];
  const specs: FamilySpec[] = [
    { name: 's0', kind: 'root' },
    ...ranks.map((rank, i): FamilySpec => ({ name: `s${i + 1}`, kind: 'lora', parent: 's0', rank, modules: moduleSets[i]! })),
  ];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-siblings-'));
  try {
    const folders = writeFamily(dir, specs, DIMS, 41);
    const all = specs.map((s) => ({ name: s.name, sketch: loadSketch(folders.get(s.name)!, { cacheDir: null }).sketch }));
    for (const count of [3, 6]) {
      const children = all.slice(1, 1 + count);
      const { result } = recoverLineage(children);
      const names = children.map((m) => m.name);
      const virtual = `base(${names.join(',')})`;
      assert.deepEqual(result.virtualNodes, [{ name: virtual, virtual: true, children: names }]);
      assert.equal(result.trees.length, 1);
      assert.equal(result.trees[0]!.root, virtual);
      assert.deepEqual(result.merges, []);
      for (const [i, name] of names.entries()) {
        const e = result.edges.find((x) => x.child === name)!;
        assert.equal(e.parent, virtual);
        assert.equal(e.kind, 'lora');
        assert.equal(e.rank, ranks[i], `${name} rank`);
        assert.deepEqual(e.modules, [...moduleSets[i]!].sort(), `${name} modules`);
      }
    }
    // The base present: an ordinary star, exactly the forest of before, no virtual node.
    const { result } = recoverLineage(all);
    const plain = recoverForest(forestEvidence(all, compareAll(all)), { direction: 'norm-growth' });
    assert.deepEqual(result.trees, plain.trees);
    assert.deepEqual(result.edges, plain.edges);
    assert.equal(result.virtualNodes, undefined);
    assert.deepEqual(result.merges, []);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a forest without merges or absent bases comes out exactly as the plain forest', () => {
  const specs: FamilySpec[] = [
    { name: 'a0', kind: 'root' },
    { name: 'a1', kind: 'full', parent: 'a0' },
    { name: 'a2', kind: 'full', parent: 'a0', scale: 0.15 },
    { name: 'a3', kind: 'full', parent: 'a0', scale: 0.07 },
    { name: 'a1a', kind: 'full', parent: 'a1' },
    { name: 'a1b', kind: 'lora', parent: 'a1', rank: 8, modules: ['q_proj', 'v_proj'] },
    { name: 'a2a', kind: 'lora', parent: 'a2', rank: 4, modules: ATTENTION },
    { name: 'a2b', kind: 'lora', parent: 'a2', rank: 2, modules: ['o_proj'] },
    { name: 'b0', kind: 'root' },
    { name: 'b1', kind: 'lora', parent: 'b0', rank: 8, modules: ['q_proj', 'v_proj'] },
    { name: 'b2', kind: 'lora', parent: 'b1', rank: 8, modules: ['q_proj', 'v_proj'] },
    { name: 'b3', kind: 'lora', parent: 'b2', rank: 8, modules: ['q_proj', 'v_proj'] },
  ];
  const models = sketchAll(specs, 51);
  const { result } = recoverLineage(models);
  const plain = recoverForest(forestEvidence(models, compareAll(models)), { direction: 'norm-growth' });
  assert.deepEqual(result.trees, plain.trees);
  assert.deepEqual(result.edges, plain.edges);
  assert.equal(result.virtualNodes, undefined);
  assert.deepEqual(result.merges, []);
  assert.deepEqual(edgeSet(result), specs.filter((s) => s.kind !== 'root').map((s) => `${(s as { parent: string }).parent}>${s.name}:${s.kind}`).sort());
});

const ZOO = path.resolve('..', 'shared', 'zoo-merge');

test('zoo-merge: every merge gets exactly its parents, other edges right with direction; b1-b5 under one virtual base', (t) => {
  if (!fs.existsSync(path.join(ZOO, 'zoo.json'))) {
    t.skip(`no ${ZOO}: the merge test set is not here`);
    return;
  }
  const truth = JSON.parse(fs.readFileSync(path.join(ZOO, 'zoo.json'), 'utf8')) as {
    models: Array<{ name: string; kind: string; parent?: string; parents?: string[]; method?: string }>;
  };
  const names = truth.models.map((m) => m.name).filter((n) => n !== 'b0');
  const models = names.map((name) => ({ name, sketch: loadSketch(path.join(ZOO, name), { cacheDir: null }).sketch }));
  const { result } = recoverLineage(models);
  const expected: string[] = [];
  for (const m of truth.models) {
    if (m.name === 'b0') continue;
    if (m.kind === 'merge') for (const p of m.parents!) expected.push(`${p}>${m.name}:merge`);
    else if (m.parent === 'b0') expected.push(`base(b1,b2,b3,b4,b5)>${m.name}:lora`);
    else if (m.parent) expected.push(`${m.parent}>${m.name}:${m.kind === 'lora' ? 'lora' : 'full'}`);
  }
  assert.deepEqual(edgeSet(result), expected.sort());
  for (const m of truth.models.filter((x) => x.kind === 'merge')) {
    assert.deepEqual(mergeOf(result, m.name).parents, [...m.parents!].sort(), `${m.name} parents`);
  }
  assert.equal(mergeOf(result, 'm_ties').method, 'ties');
  assert.equal(mergeOf(result, 'm_dare').method, 'dare');
  for (const e of result.edges) if (e.kind !== 'merge' && !e.parent.startsWith('base(')) assert.ok(e.directionMargin > 0.3, `${e.parent}->${e.child}`);
  for (const e of result.edges.filter((x) => x.parent.startsWith('base('))) {
    assert.equal(e.rank, 8);
    assert.deepEqual(e.modules, ['q_proj', 'v_proj']);
  }
  assert.deepEqual(result.trees.map((tr) => tr.root).sort(), ['a0', 'base(b1,b2,b3,b4,b5)']);
  // Scored against the truth: a merge's parents are each a true edge, the absent b0 the virtual node's place.
  const score = scoreAgainstTruth(result, parseTruth(truth));
  assert.equal(score.trueEdges, 22);
  assert.equal(score.edgeAccuracy, 1);
  assert.equal(score.clusteringAccuracy, 1);
});

test('a family joined by a merge keeps every root; reassembly after placement keeps merge edges and virtual nodes', () => {
  const label = (kind: 'full' | 'lora' | 'merge', weight?: number) => ({
    kind, rank: kind === 'lora' ? 4 : null, modules: [], distance: 0.1, directionMargin: 1, ...(weight !== undefined ? { weight } : {}),
  });
  // a -> b; base(c1,c2) -> c1, c2 (virtual, index 5); m = merge of b and c1.
  const names = ['a', 'b', 'c1', 'c2', 'm', 'base(c1,c2)'];
  const parent = [-1, 0, 5, 5, -1, -1];
  const labels = new Map([[1, label('full')], [2, label('lora')], [3, label('lora')]]);
  const mergeEdges = [{ parent: 2, child: 4, label: label('merge', 0.5) }, { parent: 1, child: 4, label: label('merge', 0.5) }];
  const assembled = assembleFamilies(names, parent, labels, mergeEdges);
  assert.deepEqual(assembled.trees, [{ root: 'a', roots: ['a', 'base(c1,c2)'], members: ['a', 'b', 'm', 'base(c1,c2)', 'c1', 'c2'] }]);
  assert.deepEqual(assembled.edges.map((e) => `${e.parent}>${e.child}:${e.kind}`), ['a>b:full', 'b>m:merge', 'base(c1,c2)>c1:lora', 'c1>m:merge', 'base(c1,c2)>c2:lora']);
  const result: LineageResult = {
    method: 'lineage', ...assembled,
    merges: [{ child: 'm', parents: ['b', 'c1'], method: 'linear', weights: [0.5, 0.5], base: null, residual: 0, residualOverRounding: 0.5 }],
    virtualNodes: [{ name: 'base(c1,c2)', virtual: true, children: ['c1', 'c2'] }],
  };
  const real = names.slice(0, 5);
  const again = reassembleFamilies(result, real, [-1, 0, -1, -1, -1], new Map([[1, label('full')]]));
  assert.deepEqual(again, assembled);
  assert.match(renderTerminal(result), /base\(c1,c2\) {2}\(virtual: not among the inputs\)/);
  assert.match(renderMermaid(result), /class m3 virtual;/);
  assert.match(renderDot(result), /"base\(c1,c2\)" \[style=dashed\];/);
});

test('Spectral DeTuning recovers an absent base from its LoRA children, matrix by matrix', () => {
  const rng = new Rng(7);
  const [rows, cols] = [64, 48];
  const base: Matrix = { rows, cols, data: Float64Array.from({ length: rows * cols }, () => rng.gaussian() / Math.sqrt(cols)) };
  const ranks = [2, 4, 3, 0, 4];
  const children = ranks.map((r) => {
    const data = base.data.slice();
    for (let t = 0; t < r; t++) {
      const u = Array.from({ length: rows }, () => rng.gaussian()), v = Array.from({ length: cols }, () => rng.gaussian());
      for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) data[i * cols + j] += (0.2 / Math.sqrt(rows * cols)) * u[i]! * v[j]! * 6;
    }
    return { rows, cols, data };
  });
  const distance = (a: Float64Array) => Math.sqrt(a.reduce((s, x, k) => s + (x - base.data[k]!) ** 2, 0) / base.data.reduce((s, x) => s + x * x, 0));
  const mean = children[0]!.data.map((_, k) => children.reduce((s, c) => s + c.data[k]!, 0) / children.length);
  const recovered = detuneBase(children, ranks);
  assert.ok(distance(mean) > 0.05, `the plain mean is off by ${distance(mean)}`);
  assert.ok(distance(recovered.base.data) < 1e-6, `recovered base off by ${distance(recovered.base.data)} after ${recovered.rounds} rounds`);
  assert.throws(() => detuneBase(children.slice(0, 1), [2]), RangeError);
});

test('zoo-merge: the base recovered from b1-b5 is b0 unchanged in every module, as verify reads it', (t) => {
  if (!fs.existsSync(path.join(ZOO, 'b0'))) {
    t.skip(`no ${ZOO}: the merge test set is not here`);
    return;
  }
  const names = ['b1', 'b2', 'b3', 'b4', 'b5'];
  const paths = names.map((n) => path.join(ZOO, n));
  const models = names.map((name, i) => ({ name, sketch: loadSketch(paths[i]!, { cacheDir: null }).sketch }));
  const analysis = recoverLineage(models);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-recovered-'));
  try {
    const [recovered] = writeRecoveredBases(out, models, paths, analysis);
    assert.equal(recovered!.name, 'base(b1,b2,b3,b4,b5)');
    assert.equal(recovered!.detuned, 8); // q and v of 4 layers
    const readers = [path.join(ZOO, 'b0'), recovered!.folder].map((p) => new SourceRoleReader(openTensorSource(p)));
    try {
      const result = verifyModels(readers[0]!, readers[1]!);
      const statuses = result.layers.flatMap((l) => l.modules.map((m) => m.status));
      assert.ok(statuses.length > 0 && statuses.every((s) => s === 'unchanged'), `statuses ${statuses.join(',')}`);
      assert.equal(result.fullFineTune, false);
    } finally {
      for (const r of readers) r.close();
    }
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});

test('lineage tree CLI on zoo-merge: merges and the virtual base survive the command path (one forest per architecture, adapters attached)', async (t) => {
  const root = path.join(REPO_ROOT, '..', 'shared', 'zoo-merge');
  if (!fs.existsSync(path.join(root, 'zoo.json'))) {
    t.skip('../shared/zoo-merge is absent');
    return;
  }
  const names = ['a0', 'a1', 'a2', 'a3', 'a4', 'a5', 'm_linear', 'm_task', 'm_ties', 'm_dare', 'm_lora', 'm_linear_ft', 'b1', 'b2', 'b3', 'b4', 'b5'];
  const run = await runLineage(['tree', '--json', '--quiet', '--no-cache', '--truth', path.join(root, 'zoo.json'), ...names.map((n) => path.join(root, n))]);
  assert.equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout) as LineageResult & { score: { correctEdges: number; trueEdges: number } };
  assert.equal(result.score.correctEdges, result.score.trueEdges);
  assert.deepEqual((result.merges ?? []).map((m) => m.child).sort(), ['m_dare', 'm_linear', 'm_lora', 'm_task', 'm_ties']);
  assert.equal(result.virtualNodes?.length, 1);
  // --recover-base: the absent base of b1-b5, written by the command, is b0 in every module.
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-recover-cli-'));
  try {
    const recover = await runLineage(['tree', '--json', '--quiet', '--no-cache', '--recover-base', out, ...['b1', 'b2', 'b3', 'b4', 'b5'].map((n) => path.join(root, n))]);
    assert.equal(recover.code, 0, recover.stderr);
    const folder = path.join(out, 'base(b1,b2,b3,b4,b5)');
    assert.ok((JSON.parse(recover.stdout) as LineageResult).notes!.some((n) => n.includes(folder)));
    const verify = await runLineage(['verify', path.join(root, 'b0'), folder, '--json', '--quiet', '--workers', '0']);
    assert.equal(verify.code, 0, verify.stderr);
    const verdict = JSON.parse(verify.stdout) as { relation: string; lora: unknown; fullFineTune: boolean };
    assert.deepEqual([verdict.relation, verdict.lora, verdict.fullFineTune], ['derived', null, false]);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});
