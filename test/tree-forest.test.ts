import { test } from 'node:test';
import assert from 'node:assert/strict';
import { recoverForest, relatednessThreshold, type ForestEvidence, type PairEvidence } from '../src/tree/forest.js';
import { seededRandom } from './helpers/tree-synthetic.js';
import type { LineageResult } from '../src/tree/types.js';

const RELATED = -50;
const UNRELATED = -0.3;

/**
 * Family P: P -> F (full), P -> L (LoRA r8 q,v), F -> FL (LoRA r4 v,o), plus two exact copies
 * D1, D2 of L (identical weights: all their mutual costs tie, so only the keys can decide).
 * Family Q: Q -> Q1 (full). Lone model Z, related to nobody.
 */
function familyEvidence(): ForestEvidence {
  const models = [
    { name: 'P', key: 'k-P', kurtosis: 10 },
    { name: 'F', key: 'k-F', kurtosis: 8 },
    { name: 'L', key: 'k-L', kurtosis: 9.5 },
    { name: 'FL', key: 'k-FL', kurtosis: 7.9 },
    { name: 'Q', key: 'k-Q', kurtosis: 6 },
    { name: 'Q1', key: 'k-Q1', kurtosis: 5 },
    { name: 'Z', key: 'k-Z', kurtosis: 4 },
    { name: 'D1', key: 'k-D1', kurtosis: 9.5 },
    { name: 'D2', key: 'k-D2', kurtosis: 9.5 },
  ];
  const index = (name: string) => models.findIndex((m) => m.name === name);
  const lowRank = (rank: number, modules: string[], rankSum: number) => ({ rank, modules, rankSum });
  const within: Record<string, [number, ReturnType<typeof lowRank> | null]> = {
    'P-F': [1.0, null],
    'P-L': [0.3, lowRank(8, ['q_proj', 'v_proj'], 16)],
    'P-FL': [1.05, null],
    'F-L': [1.04, null],
    'F-FL': [0.2, lowRank(4, ['o_proj', 'v_proj'], 8)],
    'L-FL': [1.09, null],
    'Q-Q1': [0.8, null],
  };
  // The copies of L inherit L's pairs; among L, D1, D2 everything is identical.
  for (const copy of ['D1', 'D2']) {
    for (const [pair, value] of Object.entries(within)) {
      const [a, b] = pair.split('-');
      if (a === 'L') within[`${copy}-${b}`] = value;
      if (b === 'L') within[`${a}-${copy}`] = value;
    }
  }
  for (const pair of ['L-D1', 'L-D2', 'D1-D2']) within[pair] = [0, lowRank(0, [], 0)];
  const pairs: PairEvidence[] = [];
  for (let a = 0; a < models.length; a++) {
    for (let b = a + 1; b < models.length; b++) {
      const known = within[`${models[a]!.name}-${models[b]!.name}`] ?? within[`${models[b]!.name}-${models[a]!.name}`];
      pairs.push(
        known
          ? { a, b, log10PValue: RELATED, distance: known[0], lowRank: known[1] }
          : { a, b, log10PValue: UNRELATED, distance: 5, lowRank: null },
      );
    }
  }
  assert.equal(index('Z'), 6);
  return { models, pairs };
}

const parents = (result: LineageResult) => Object.fromEntries(result.edges.map((e) => [e.child, e.parent]));

test('recoverForest splits unrelated models and recovers labelled edges', () => {
  const result = recoverForest(familyEvidence());
  assert.equal(result.method, 'lineage');
  assert.deepEqual(result.trees.map((t) => t.root), ['P', 'Q', 'Z']);
  assert.deepEqual(result.trees[1], { root: 'Q', members: ['Q', 'Q1'] });
  assert.deepEqual(result.trees[2], { root: 'Z', members: ['Z'] });
  const p = parents(result);
  assert.equal(p.F, 'P');
  assert.equal(p.L, 'P');
  assert.equal(p.FL, 'F');
  assert.equal(p.Q1, 'Q');
  // The two copies hang off the L/D1/D2 group, which is joined to P by one edge.
  const copies = ['L', 'D1', 'D2'];
  assert.equal(copies.filter((c) => p[c] === 'P').length, 1);
  for (const c of copies) assert.ok(p[c] === 'P' || copies.includes(p[c]!), `${c} <- ${p[c]}`);
  const edgeTo = (child: string) => result.edges.find((e) => e.child === child)!;
  assert.deepEqual(edgeTo('F'), { parent: 'P', child: 'F', kind: 'full', rank: null, modules: [], distance: 1, directionMargin: 2 });
  assert.deepEqual(edgeTo('FL'), {
    parent: 'F', child: 'FL', kind: 'lora', rank: 4, modules: ['o_proj', 'v_proj'], distance: 0.2, directionMargin: 8 - 7.9,
  });
});

test('recoverForest: same forest after shuffling the input order and renaming every model', () => {
  const evidence = familyEvidence();
  const byKey = (ev: ForestEvidence, result: LineageResult) => {
    const keyOf = new Map(ev.models.map((m) => [m.name, m.key]));
    return result.edges.map((e) => `${keyOf.get(e.parent)}>${keyOf.get(e.child)}:${e.kind}:${e.rank}`).sort();
  };
  const reference = byKey(evidence, recoverForest(evidence));
  const referenceTrees = recoverForest(evidence).trees.map((t) => t.members.length).sort();
  for (let seed = 1; seed <= 30; seed++) {
    const random = seededRandom(seed);
    const n = evidence.models.length;
    const perm = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [perm[i], perm[j]] = [perm[j]!, perm[i]!];
    }
    const newIndexOf = new Array<number>(n);
    perm.forEach((old, k) => (newIndexOf[old] = k));
    // New names sort in a random order relative to the old ones.
    const models = perm.map((old) => ({ ...evidence.models[old]!, name: `m${Math.floor(random() * 1e9)}-${old}` }));
    const pairs = evidence.pairs
      .map((pair) => {
        const swap = random() < 0.5;
        const a = newIndexOf[pair.a]!, b = newIndexOf[pair.b]!;
        return swap ? { ...pair, a: b, b: a } : { ...pair, a, b };
      })
      .sort(() => random() - 0.5);
    const shuffled = { models, pairs };
    const result = recoverForest(shuffled);
    assert.deepEqual(byKey(shuffled, result), reference, `seed ${seed}`);
    assert.deepEqual(result.trees.map((t) => t.members.length).sort(), referenceTrees);
  }
});

test('the per-pair kurtosis margin is read in the pair direction and may be flipped', () => {
  const models = [
    { name: 'child', key: 'a', kurtosis: 100 }, // model-level kurtosis says the opposite...
    { name: 'parent', key: 'b', kurtosis: 1 },
  ];
  // ...but the margin measured on the changed matrices says b is the parent (ku(a) - ku(b) < 0).
  const pairs = [{ a: 0, b: 1, log10PValue: RELATED, distance: 0.1, lowRank: null, kurtosisMargin: -0.5 }];
  const falls = recoverForest({ models, pairs });
  assert.deepEqual(parents(falls), { child: 'parent' });
  assert.equal(falls.edges[0]!.directionMargin, 0.5);
  const rises = recoverForest({ models, pairs }, { kurtosisRises: true });
  assert.deepEqual(parents(rises), { parent: 'child' });
  assert.equal(rises.edges[0]!.directionMargin, 0.5);
  // Without a per-pair margin the models' kurtosis decides.
  const { kurtosisMargin: _unused, ...withoutMargin } = pairs[0]!;
  assert.deepEqual(parents(recoverForest({ models, pairs: [withoutMargin] })), { parent: 'child' });
});

test('relatedness threshold is Bonferroni-corrected and missing pairs are unrelated', () => {
  assert.equal(relatednessThreshold(5, 1e-3), Math.log10(1e-3 / 10));
  const threshold = relatednessThreshold(3);
  const models = [
    { name: 'x', key: 'x', kurtosis: 3 },
    { name: 'y', key: 'y', kurtosis: 1 },
    { name: 'z', key: 'z', kurtosis: 2 },
  ];
  const pair = (a: number, b: number, log10PValue: number) => ({ a, b, log10PValue, distance: 1, lowRank: null });
  // x-y just above the threshold (not related), y-z just below it, x-z missing.
  const result = recoverForest({ models, pairs: [pair(0, 1, threshold + 0.01), pair(1, 2, threshold - 0.01)] });
  assert.deepEqual(result.trees, [
    { root: 'x', members: ['x'] },
    { root: 'z', members: ['z', 'y'] },
  ]);
  // Single linkage: x-z related chains x into the y-z tree although x-y is not; the
  // missing x-y pair can then not be an edge.
  const chained = recoverForest({ models, pairs: [pair(1, 2, -20), pair(0, 2, -20)] });
  assert.deepEqual(chained.trees.map((t) => t.members.length), [3]);
  assert.deepEqual(parents(chained), { z: 'x', y: 'z' });
});

test('recoverForest rejects malformed evidence', () => {
  const models = [{ name: 'x', key: 'x', kurtosis: 1 }, { name: 'y', key: 'y', kurtosis: 0 }];
  const pair = { a: 0, b: 1, log10PValue: -10, distance: 1, lowRank: null };
  assert.throws(() => recoverForest({ models, pairs: [pair, { ...pair, a: 1, b: 0 }] }), /given twice/);
  assert.throws(() => recoverForest({ models, pairs: [{ ...pair, b: 2 }] }), /does not name/);
  assert.throws(() => recoverForest({ models, pairs: [{ ...pair, b: 0 }] }), /does not name/);
  assert.deepEqual(recoverForest({ models: [], pairs: [] }), { method: 'lineage', trees: [], edges: [] });
});
