import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/linalg/rng.js';
import { linearAssignment } from '../src/linalg/assignment.js';
import { matmulTransB } from '../src/linalg/ops.js';

/** Minimum over all n! permutations (Heap's algorithm). */
function bruteForceMinimum(cost: Float64Array, n: number): number {
  const perm = Array.from({ length: n }, (_, i) => i);
  const total = (): number => perm.reduce((s, j, i) => s + cost[i * n + j]!, 0);
  let best = total();
  const c = new Array(n).fill(0);
  let i = 1;
  while (i < n) {
    if (c[i] < i) {
      const k = i % 2 === 0 ? 0 : c[i];
      [perm[k], perm[i]] = [perm[i]!, perm[k]!];
      best = Math.min(best, total());
      c[i]++;
      i = 1;
    } else {
      c[i] = 0;
      i++;
    }
  }
  return best;
}

/** Textbook O(n³) Hungarian algorithm with potentials (independent of the JV code paths). */
function hungarianMinimum(cost: Float64Array, n: number): number {
  const u = new Float64Array(n + 1), v = new Float64Array(n + 1);
  const match = new Int32Array(n + 1), way = new Int32Array(n + 1);
  for (let i = 1; i <= n; i++) {
    match[0] = i;
    let j0 = 0;
    const minv = new Float64Array(n + 1).fill(Infinity);
    const used = new Uint8Array(n + 1);
    do {
      used[j0] = 1;
      const i0 = match[j0]!;
      let delta = Infinity, j1 = 0;
      for (let j = 1; j <= n; j++) {
        if (used[j]) continue;
        const cur = cost[(i0 - 1) * n + j - 1]! - u[i0]! - v[j]!;
        if (cur < minv[j]!) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j]! < delta) {
          delta = minv[j]!;
          j1 = j;
        }
      }
      for (let j = 0; j <= n; j++) {
        if (used[j]) {
          u[match[j]!]! += delta;
          v[j]! -= delta;
        } else {
          minv[j]! -= delta;
        }
      }
      j0 = j1;
    } while (match[j0] !== 0);
    do {
      const j1 = way[j0]!;
      match[j0] = match[j1]!;
      j0 = j1;
    } while (j0);
  }
  let total = 0;
  for (let j = 1; j <= n; j++) total += cost[(match[j]! - 1) * n + j - 1]!;
  return total;
}

function assertPermutation(rowToCol: Int32Array, colToRow: Int32Array): void {
  const n = rowToCol.length;
  for (let i = 0; i < n; i++) assert.equal(colToRow[rowToCol[i]!], i);
  assert.equal(new Set(rowToCol).size, n);
}

function randomCost(rng: Rng, n: number, kind: number): Float64Array {
  // Continuous, heavily tied small integers, and signed values.
  return Float64Array.from({ length: n * n }, () =>
    kind === 0 ? rng.uniform() : kind === 1 ? rng.int(4) : Math.round(10 * rng.gaussian()));
}

test('assignment is optimal against brute force for every n ≤ 7', () => {
  const rng = new Rng(20);
  for (let n = 0; n <= 7; n++) {
    for (let trial = 0; trial < 30; trial++) {
      const cost = randomCost(rng, n, trial % 3);
      const result = linearAssignment(cost, n);
      assertPermutation(result.rowToCol, result.colToRow);
      if (n === 0) assert.equal(result.totalCost, 0);
      else assert.ok(Math.abs(result.totalCost - bruteForceMinimum(cost, n)) < 1e-9, `n=${n} trial ${trial}`);
    }
  }
});

test('assignment matches the Hungarian algorithm on n = 200 and maximise negates', () => {
  const rng = new Rng(21);
  for (let kind = 0; kind < 3; kind++) {
    const n = 200;
    const cost = randomCost(rng, n, kind);
    const result = linearAssignment(cost, n);
    assertPermutation(result.rowToCol, result.colToRow);
    assert.ok(Math.abs(result.totalCost - hungarianMinimum(cost, n)) < 1e-8, `kind ${kind}`);
    const negated = cost.map((c) => -c);
    const max = linearAssignment(negated, n, { maximize: true });
    assert.ok(Math.abs(max.totalCost + result.totalCost) < 1e-8);
    const single = linearAssignment(Float32Array.from(cost), n);
    assert.ok(Math.abs(single.totalCost - result.totalCost) < 1e-3);
  }
  assert.throws(() => linearAssignment(new Float64Array(5), 2), RangeError);
  assert.throws(() => linearAssignment(Float64Array.from([0, NaN, 1, 2]), 2), RangeError);
});

test('assignment recovers a hidden permutation from noisy correlations (neuron matching)', () => {
  const rng = new Rng(22);
  const n = 1500, d = 32;
  const x = rng.gaussianMatrix(n, d);
  const hidden = rng.permutation(n);
  const y = rng.gaussianMatrix(n, d, 0.5);
  for (let i = 0; i < n; i++) for (let k = 0; k < d; k++) y.data[i * d + k]! += x.data[hidden[i]! * d + k]!;
  const similarity = matmulTransB(x, y); // larger = better match
  const result = linearAssignment(similarity.data, n, { maximize: true });
  let recovered = 0;
  for (let i = 0; i < n; i++) if (hidden[result.rowToCol[i]!] === i) recovered++;
  assert.equal(recovered, n);
});
