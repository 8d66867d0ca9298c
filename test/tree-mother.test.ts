import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  directionMatrix, loraRankDistance, motherCosts, recoverMother, rmsDistance,
} from '../src/tree/mother.js';
import { wardClusters } from '../src/tree/cluster.js';

const parents = (result: ReturnType<typeof recoverMother>) =>
  Object.fromEntries(result.edges.map((e) => [e.child, e.parent]));

test('rmsDistance is the mean over layers of the per-layer RMS', () => {
  assert.equal(rmsDistance([[3, 4], [0, 0, 0, 0]]), Math.sqrt(12.5) / 2);
  assert.equal(rmsDistance([Float32Array.of(2, -2, 2, -2)]), 2);
  assert.equal(rmsDistance([]), 0);
});

test('loraRankDistance sums the per-layer ranks', () => {
  assert.equal(loraRankDistance([8, 8, 16, 0]), 32);
  assert.equal(loraRankDistance([]), 0);
});

test('T marks edges toward a model of higher kurtosis; kurtosisRises flips it', () => {
  assert.deepEqual(directionMatrix([3, 1, 2]), [
    [0, 0, 0],
    [1, 0, 1],
    [1, 0, 0],
  ]);
  assert.deepEqual(directionMatrix([3, 1, 2], true), [
    [0, 1, 1],
    [0, 0, 0],
    [0, 1, 0],
  ]);
  assert.deepEqual(directionMatrix([1, 1]), [[0, 0], [0, 0]]);
});

test('M = D + lambda * mean(D) * T with an infinite diagonal', () => {
  const d = [
    [0, 1, 2],
    [1, 0, 3],
    [2, 3, 0],
  ];
  // mean of off-diagonal entries = 2; T from kurtosis [3, 1, 2] as above.
  const m = motherCosts(d, [3, 1, 2], { lambda: 0.5 });
  assert.deepEqual(m, [
    [Infinity, 1, 2],
    [2, Infinity, 4],
    [3, 3, Infinity],
  ]);
});

test('recoverMother: distances give the undirected tree, kurtosis the direction', () => {
  const names = ['mid', 'leaf', 'top'];
  const distance = [
    [0, 1, 1],
    [1, 0, 2],
    [1, 2, 0],
  ];
  const falls = recoverMother({ names, kind: 'full', distance, kurtosis: [4, 3, 5] });
  assert.deepEqual(parents(falls), { mid: 'top', leaf: 'mid' });
  assert.deepEqual(falls.trees, [{ root: 'top', members: ['top', 'mid', 'leaf'] }]);
  assert.equal(falls.method, 'mother');
  for (const e of falls.edges) {
    assert.equal(e.kind, 'full');
    assert.equal(e.rank, null);
    assert.equal(e.directionMargin, 1);
    assert.equal(e.distance, 1);
  }
  const rises = recoverMother({ names, kind: 'full', distance, kurtosis: [4, 3, 5] }, { kurtosisRises: true });
  assert.deepEqual(parents(rises), { mid: 'leaf', top: 'mid' });
});

test('recoverMother: the direction term can overrule a slightly shorter edge', () => {
  // The shortest undirected tree is the path a - b - c (1.9), but kurtosis orders a > c > b,
  // so every orientation of that path pays the direction term: a -> c -> b (1.95) wins.
  const names = ['a', 'b', 'c'];
  const distance = [
    [0, 1, 1.05],
    [1, 0, 0.9],
    [1.05, 0.9, 0],
  ];
  const kurtosis = [3, 1, 2];
  assert.deepEqual(parents(recoverMother({ names, kind: 'full', distance, kurtosis })), { c: 'a', b: 'c' });
  // Without the direction term the shortest undirected tree is kept whatever the kurtosis.
  const plain = recoverMother({ names, kind: 'full', distance, kurtosis }, { lambda: 0 });
  const undirected = plain.edges.map((e) => [e.parent, e.child].sort().join('-')).sort();
  assert.deepEqual(undirected, ['a-b', 'b-c']);
});

test('recoverMother labels LoRA edges with the given rank and splits K trees by Ward linkage', () => {
  const names = ['p', 'p1', 'p2', 'q', 'q1'];
  const far = 100;
  const distance = [
    [0, 16, 8, far, far],
    [16, 0, 24, far, far],
    [8, 24, 0, far, far],
    [far, far, far, 0, 32],
    [far, far, far, 32, 0],
  ];
  const rank = distance.map((row) => row.map((d) => d / 2));
  const result = recoverMother({ names, kind: 'lora', distance, rank, kurtosis: [9, 8, 8.5, 7, 6] }, { trees: 2 });
  assert.deepEqual(result.trees.map((t) => t.root), ['p', 'q']);
  assert.deepEqual(parents(result), { p1: 'p', p2: 'p', q1: 'q' });
  assert.deepEqual(
    result.edges.map((e) => [e.child, e.kind, e.rank]),
    [['p1', 'lora', 8], ['p2', 'lora', 4], ['q1', 'lora', 16]],
  );
});

test('wardClusters matches hand-computed Lance-Williams merges', () => {
  // Points on a line at 0, 1, 5, 6, 20: Ward merges (0,1), (5,6), then those two, then 20.
  const x = [0, 1, 5, 6, 20];
  const d = x.map((a) => x.map((b) => Math.abs(a - b)));
  assert.deepEqual(wardClusters(d, 3), [[0, 1], [2, 3], [4]]);
  assert.deepEqual(wardClusters(d, 2), [[0, 1, 2, 3], [4]]);
  assert.deepEqual(wardClusters(d, 1), [[0, 1, 2, 3, 4]]);
  assert.deepEqual(wardClusters(d, 5), [[0], [1], [2], [3], [4]]);
  assert.throws(() => wardClusters(d, 0), RangeError);
});

test('recoverMother with keys does not depend on input order or names, even on ties', () => {
  // Three equidistant models with equal kurtosis: every tree ties, only the keys decide.
  const keys = ['k2', 'k0', 'k1', 'k3'];
  const distance = [
    [0, 1, 1, 9],
    [1, 0, 1, 9],
    [1, 1, 0, 9],
    [9, 9, 9, 0],
  ];
  const kurtosis = [2, 2, 2, 1];
  const byKey = (names: readonly string[], ks: readonly string[], result: ReturnType<typeof recoverMother>) =>
    result.edges.map((e) => `${ks[names.indexOf(e.parent)]}>${ks[names.indexOf(e.child)]}`).sort();
  const names = ['a', 'b', 'c', 'd'];
  const reference = byKey(names, keys, recoverMother({ names, tieKeys: keys, kind: 'full', distance, kurtosis }, { trees: 1 }));
  for (const perm of [[3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]]) {
    const newNames = perm.map((i) => `z${9 - i}`);
    const newKeys = perm.map((i) => keys[i]!);
    const result = recoverMother({
      names: newNames,
      tieKeys: newKeys,
      kind: 'full',
      distance: perm.map((i) => perm.map((j) => distance[i]![j]!)),
      kurtosis: perm.map((i) => kurtosis[i]!),
    });
    assert.deepEqual(byKey(newNames, newKeys, result), reference, `perm ${perm}`);
  }
});
