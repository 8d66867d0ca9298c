/**
 * The candidate search that splits many models into families before the pairwise analysis
 * (src/tree/candidates.ts): on real sketches the forest equals the all-pairs one; permuted copies
 * are still found; unrelated models share no candidate pair.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadSketches, type LoadedSketch } from '../src/store/load-sketches.js';
import { recoverLineageByArchitecture } from '../src/tree/architectures.js';
import { candidatePairs, neuronCodes } from '../src/tree/candidates.js';
import type { SketchedModel } from '../src/tree/lineage.js';
import { Rng } from '../src/linalg/rng.js';
import type { NeuronSketch } from '../src/sketch/types.js';
import { writeFamily, type FamilySpec } from './helpers/synthetic-llama.js';
import { REPO_ROOT } from './cli-child-process.js';

function sketched(folders: ReadonlyMap<string, string>): SketchedModel[] {
  const names = [...folders.keys()];
  return loadSketches(names.map((n) => folders.get(n)!), { cacheDir: null }).map((l, i) => ({ name: names[i]!, sketch: (l as LoadedSketch).sketch }));
}

function sameForest(models: readonly SketchedModel[]): void {
  const allPairs = recoverLineageByArchitecture(models, { candidateSearchFrom: Infinity });
  const searched = recoverLineageByArchitecture(models, { candidateSearchFrom: 1 });
  const strip = (r: typeof allPairs) => JSON.parse(JSON.stringify({ ...r, notes: [] })) as unknown;
  assert.deepEqual(strip(searched), strip(allPairs));
  assert.ok((searched.notes ?? []).some((n) => /candidate search/.test(n)));
}

test('candidate search: synthetic forests of three families give the all-pairs forest', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-candidates-'));
  try {
    const specs: FamilySpec[] = [
      { name: 'a', kind: 'root' }, { name: 'a1', kind: 'lora', parent: 'a', rank: 4, modules: ['q_proj', 'v_proj'] },
      { name: 'a2', kind: 'full', parent: 'a' }, { name: 'a21', kind: 'lora', parent: 'a2', rank: 8, modules: ['o_proj'] },
      { name: 'b', kind: 'root' }, { name: 'b1', kind: 'full', parent: 'b' }, { name: 'c', kind: 'root' },
    ];
    sameForest(sketched(writeFamily(dir, specs, { hidden: 128, intermediate: 256, layers: 3, heads: 4 }, 5)));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const ZOO = path.join(REPO_ROOT, '..', 'shared', 'zoo');

test('candidate search: the zoo (and its obfuscated copies as singletons or found) gives the all-pairs forest', { skip: !fs.existsSync(path.join(ZOO, 'zoo.json')) && '../shared/zoo is absent' }, () => {
  const names = ['p0', 'p1', 'p2', 'p3', 'p4', 'p1a', 'p2a', 'p4a', 'q0', 'q1', 'q2', 'o2'];
  sameForest(sketched(new Map(names.map((n) => [n, path.join(ZOO, n)]))));
});

test('neuron codes: a permuted, slightly moved copy shares codes; independent rows share none', () => {
  const rng = new Rng(3);
  const count = 256, dim = 128;
  const base = Float32Array.from({ length: count * dim }, () => rng.gaussian());
  const order = rng.permutation(count);
  const moved = new Float32Array(base.length);
  for (let n = 0; n < count; n++) for (let c = 0; c < dim; c++) moved[n * dim + c] = base[order[n]! * dim + c]! + 0.15 * rng.gaussian();
  const other = Float32Array.from({ length: count * dim }, () => rng.gaussian());
  const neurons = (gate: Float32Array): NeuronSketch[] => [{ layer: 0, count, dim, gate, up: gate }];
  const pairs = candidatePairs([neuronCodes(neurons(base)), neuronCodes(neurons(moved)), neuronCodes(neurons(other))]);
  assert.deepEqual(pairs, [[0, 1]]);
});
