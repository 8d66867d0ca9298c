import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BadInputError } from '../src/io/errors.js';
import { renderTruthScore } from '../src/reports/tree-render.js';
import { parseTruth, restrictTruth, scoreAgainstTruth, scoreForest } from '../src/tree/truth.js';
import type { LineageEdge, LineageResult } from '../src/tree/types.js';

const TRUTH = parseTruth({
  models: [
    { name: 'p0', kind: 'root' },
    { name: 'p1', parent: 'p0' },
    { name: 'p2', parent: 'p0' },
    { name: 'p1a', parent: 'p1' },
    { name: 'q0' },
    { name: 'q1', parent: 'q0' },
  ],
});

const edge = (parent: string, child: string): LineageEdge => ({
  parent, child, kind: 'full', rank: null, modules: [], distance: 1, directionMargin: 1,
});

test('scores edges, directions and clustering against the truth', () => {
  const result: LineageResult = {
    method: 'lineage',
    trees: [
      { root: 'p0', members: ['p0', 'p1', 'p2'] },
      { root: 'p1a', members: ['p1a'] },
      { root: 'q1', members: ['q1', 'q0'] },
    ],
    edges: [edge('p0', 'p1'), edge('p1', 'p2'), edge('q1', 'q0')],
  };
  const score = scoreAgainstTruth(result, TRUTH);
  assert.equal(score.trueEdges, 4);
  assert.equal(score.correctEdges, 1);
  assert.equal(score.edgeAccuracy, 0.25);
  assert.deepEqual(score.wrongEdges, [
    { parent: 'p1', child: 'p2', problem: 'wrong-parent', trueParent: 'p0' },
    { parent: 'q1', child: 'q0', problem: 'reversed', trueParent: null },
  ]);
  assert.deepEqual(score.missedEdges, [
    { parent: 'p0', child: 'p2' },
    { parent: 'p1', child: 'p1a' },
    { parent: 'q0', child: 'q1' },
  ]);
  // 15 pairs; only p1a's three pairs with p0, p1, p2 disagree.
  assert.equal(score.clusteringAccuracy, 12 / 15);
  const expected = (4 * 7) / 15;
  assert.ok(Math.abs(score.adjustedRandIndex - (4 - expected) / (5.5 - expected)) < 1e-12);
});

test('a perfect result scores 1 everywhere', () => {
  const result: LineageResult = {
    method: 'mother',
    trees: [
      { root: 'p0', members: ['p0', 'p1', 'p1a', 'p2'] },
      { root: 'q0', members: ['q0', 'q1'] },
    ],
    edges: [edge('p0', 'p1'), edge('p1', 'p1a'), edge('p0', 'p2'), edge('q0', 'q1')],
  };
  const score = scoreAgainstTruth(result, TRUTH);
  assert.deepEqual(
    [score.edgeAccuracy, score.clusteringAccuracy, score.adjustedRandIndex, score.wrongEdges.length, score.missedEdges.length],
    [1, 1, 1, 0, 0],
  );
});

test('truth restricted to the present models skips absent ancestors', () => {
  const restricted = restrictTruth(TRUTH, ['p0', 'p1a', 'q1']);
  assert.deepEqual([...restricted], [['p0', null], ['p1a', 'p0'], ['q1', null]]);
  assert.throws(() => restrictTruth(TRUTH, ['nope']), BadInputError);
});

test('malformed truth files are bad input', () => {
  assert.throws(() => parseTruth({}), BadInputError);
  assert.throws(() => parseTruth({ models: [{ parent: 'x' }] }), BadInputError);
  assert.throws(() => parseTruth({ models: [{ name: 'a', parent: 3 }] }), BadInputError);
  const cyclic = parseTruth({ models: [{ name: 'a', parent: 'b' }, { name: 'b', parent: 'c' }, { name: 'c', parent: 'b' }] });
  assert.throws(() => restrictTruth(cyclic, ['a']), /cycle/);
});

test('the shared zoo truth file parses and scores its own tree perfectly', (t) => {
  const zooFile = fileURLToPath(new URL('../../../shared/zoo/zoo.json', import.meta.url));
  if (!existsSync(zooFile)) {
    t.skip('../shared/zoo is absent beside the repository');
    return;
  }
  const truth = parseTruth(JSON.parse(readFileSync(zooFile, 'utf8')));
  const names = truth.models.map((m) => m.name);
  const parentOf = new Map(truth.models.map((m) => [m.name, m.parent ?? null]));
  const roots = names.filter((n) => parentOf.get(n) === null);
  assert.ok(roots.length >= 2, 'the zoo has at least two families');
  const members = (root: string): string[] => [root, ...names.filter((n) => parentOf.get(n) === root).flatMap(members)];
  const result: LineageResult = {
    method: 'lineage',
    trees: roots.map((root) => ({ root, members: members(root) })),
    edges: names.flatMap((n) => (parentOf.get(n) ? [edge(parentOf.get(n)!, n)] : [])),
  };
  const score = scoreAgainstTruth(result, truth);
  assert.equal(score.trueEdges, names.length - roots.length);
  assert.equal(score.edgeAccuracy, 1);
  assert.equal(score.clusteringAccuracy, 1);
});

test('scoreForest leaves out obfuscated models (unless asked) and adapters the truth does not list', () => {
  const truth = parseTruth({
    models: [{ name: 'p0' }, { name: 'p2', parent: 'p0' }, { name: 'o1', parent: 'p2', kind: 'obfuscated' }],
  });
  assert.deepEqual([...truth.obfuscated!], ['o1']);
  const result: LineageResult = {
    method: 'lineage',
    trees: [{ root: 'p0', members: ['p0', 'p2', 'o1', 'p2-adapter'] }],
    // o1 misplaced under p0: wrong only when the obfuscated model is scored.
    edges: [edge('p0', 'p2'), edge('p0', 'o1'), { ...edge('p0', 'p2-adapter'), kind: 'lora', rank: 8, adapter: true }],
  };
  const { score, unscored } = scoreForest(result, truth, false);
  assert.deepEqual(unscored, { obfuscated: ['o1'], adapters: ['p2-adapter'] });
  assert.equal(score.correctEdges, 1);
  assert.equal(score.trueEdges, 1);
  const withObfuscated = scoreForest(result, truth, true);
  assert.deepEqual(withObfuscated.unscored, { obfuscated: [], adapters: ['p2-adapter'] });
  assert.equal(withObfuscated.score.trueEdges, 2);
  assert.deepEqual(withObfuscated.score.wrongEdges.map((e) => `${e.parent}->${e.child}`), ['p0->o1']);
  const text = renderTruthScore(score, unscored);
  assert.match(text, /^edge accuracy: 1\/1 = 100\.0%\n/);
  assert.match(text, /not scored \(obfuscated; use --include-obfuscated\): o1\n/);
  assert.match(text, /not scored \(adapters the truth does not list\): p2-adapter\n$/);
});
