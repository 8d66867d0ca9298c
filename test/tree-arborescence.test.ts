import { test } from 'node:test';
import assert from 'node:assert/strict';
import { minimumArborescence, minimumSpanningForest } from '../src/tree/arborescence.js';
import { seededRandom } from './helpers/tree-synthetic.js';

type Costs = number[][];

/** Every parent assignment that forms a branching (no cycles, finite edges). */
function* allBranchings(cost: Costs): Generator<number[]> {
  const n = cost.length;
  const parent = new Array<number>(n).fill(-1);
  function* assign(v: number): Generator<number[]> {
    if (v === n) {
      if (isAcyclic(parent)) yield parent.slice();
      return;
    }
    for (let p = -1; p < n; p++) {
      if (p === v || (p >= 0 && !Number.isFinite(cost[p]![v]!))) continue;
      parent[v] = p;
      yield* assign(v + 1);
    }
    parent[v] = -1;
  }
  yield* assign(0);
}

function isAcyclic(parent: readonly number[]): boolean {
  for (let start = 0; start < parent.length; start++) {
    let v = start;
    for (let steps = 0; v !== -1; steps++) {
      if (steps > parent.length) return false;
      v = parent[v]!;
    }
  }
  return true;
}

function edgeSum(cost: Costs, parent: readonly number[]): number {
  let s = 0;
  parent.forEach((p, v) => {
    if (p >= 0) s += cost[p]![v]!;
  });
  return s;
}

function rootCount(parent: readonly number[]): number {
  return parent.filter((p) => p === -1).length;
}

function randomCosts(random: () => number, n: number, style: number): Costs {
  return Array.from({ length: n }, (_, i) =>
    Array.from({ length: n }, (_, j) => {
      if (i === j) return random() < 0.5 ? 0 : Infinity; // diagonal must be ignored
      if (random() < (style === 2 ? 0.65 : 0.15)) return Infinity;
      // Small integers make many ties; floats exercise the general case; some negative.
      return style === 0 ? Math.floor(random() * 4) : (random() - 0.2) * 10;
    }),
  );
}

function permuted(cost: Costs, perm: readonly number[]): Costs {
  // New node k is old node perm[k].
  return perm.map((pi) => perm.map((pj) => cost[pi]![pj]!));
}

function shuffle(random: () => number, n: number): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

test('minimumArborescence equals brute force on random digraphs of 2..6 nodes (ties, infinite entries)', () => {
  let graphs = 0;
  let multiRoot = 0;
  for (let seed = 1; seed <= 400; seed++) {
    const random = seededRandom(seed);
    const n = 2 + (seed % 5);
    const cost = randomCosts(random, n, seed % 3);
    let bestRoots = Infinity;
    let bestCost = Infinity;
    for (const parent of allBranchings(cost)) {
      const r = rootCount(parent);
      const c = edgeSum(cost, parent);
      if (r < bestRoots || (r === bestRoots && c < bestCost - 1e-9)) {
        bestRoots = r;
        bestCost = c;
      }
    }
    const result = minimumArborescence(cost);
    assert.ok(isAcyclic(result.parent), `seed ${seed}: cycle in ${result.parent}`);
    result.parent.forEach((p, v) => {
      if (p >= 0) assert.ok(p !== v && Number.isFinite(cost[p]![v]!), `seed ${seed}: bad edge ${p}->${v}`);
    });
    assert.equal(rootCount(result.parent), bestRoots, `seed ${seed}: roots`);
    assert.ok(Math.abs(result.cost - bestCost) < 1e-9, `seed ${seed}: cost ${result.cost} vs ${bestCost}`);
    assert.ok(Math.abs(edgeSum(cost, result.parent) - result.cost) < 1e-9);
    assert.deepEqual(result.roots, result.parent.flatMap((p, i) => (p === -1 ? [i] : [])));
    graphs++;
    if (bestRoots > 1) multiRoot++;
  }
  assert.equal(graphs, 400);
  assert.ok(multiRoot > 10, `infinite entries should force some forests, got ${multiRoot}`);
});

test('minimumSpanningForest equals brute force with a per-root price', () => {
  for (let seed = 1000; seed < 1300; seed++) {
    const random = seededRandom(seed);
    const n = 2 + (seed % 5);
    const cost = randomCosts(random, n, seed % 3);
    const rootCost = [0, 1.5, 3, 8][seed % 4]!;
    let best = Infinity;
    for (const parent of allBranchings(cost)) {
      best = Math.min(best, edgeSum(cost, parent) + rootCost * rootCount(parent));
    }
    const result = minimumSpanningForest(cost, rootCost);
    assert.ok(isAcyclic(result.parent));
    const total = result.cost + rootCost * result.roots.length;
    assert.ok(Math.abs(total - best) < 1e-9, `seed ${seed}: ${total} vs ${best}`);
  }
});

test('ties are broken by the caller keys, not by input order', () => {
  let tiedCases = 0;
  for (let seed = 2000; seed < 2200; seed++) {
    const random = seededRandom(seed);
    const n = 3 + (seed % 4);
    const cost = randomCosts(random, n, 0); // integer costs: ties everywhere
    const keys = Array.from({ length: n }, (_, i) => `hash-${(i * 7919 + seed) % 1000}-${i}`);
    const reference = minimumArborescence(cost, { tieKeys: keys });
    const perm = shuffle(random, n);
    const shuffled = minimumArborescence(permuted(cost, perm), { tieKeys: perm.map((i) => keys[i]!) });
    // Map the shuffled result back to original indices.
    const back = new Array<number>(n);
    shuffled.parent.forEach((p, k) => {
      back[perm[k]!] = p === -1 ? -1 : perm[p]!;
    });
    assert.deepEqual(back, reference.parent, `seed ${seed}`);
    const plain = minimumArborescence(cost);
    if (plain.parent.join() !== reference.parent.join()) tiedCases++;
  }
  // The keys must actually have decided some ties for this test to mean anything.
  assert.ok(tiedCases > 0);
});

test('a known small case: chain beats star, root is free', () => {
  const inf = Infinity;
  // 2 -> 0 -> 1 is cheapest (1 + 1); from 0 as root the star would cost 1 + 5.
  const cost = [
    [inf, 1, 5],
    [9, inf, 9],
    [1, 4, inf],
  ];
  const result = minimumArborescence(cost);
  assert.deepEqual(result.parent, [2, 0, -1]);
  assert.equal(result.cost, 2);
  assert.deepEqual(minimumArborescence([]).parent, []);
  assert.deepEqual(minimumArborescence([[0]]).roots, [0]);
  assert.throws(() => minimumArborescence([[0, 1]]), RangeError);
});
