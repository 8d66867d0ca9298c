/**
 * Splitting models into trees. Both functions return clusters as ascending index lists,
 * ordered by their smallest member's position in `tieKeys` order, so the partition and its
 * order depend on the data and the keys only.
 */
import { canonicalOrder, type CostMatrix } from './arborescence.js';

/**
 * Connected components of the "related" graph (single linkage at a fixed threshold), over every
 * pair or only over the candidate `pairs` given. `related` is asked only of pairs not yet joined.
 */
export function singleLinkage(
  n: number,
  related: (i: number, j: number) => boolean,
  tieKeys?: readonly string[],
  pairs: Iterable<readonly [number, number]> = allPairs(n),
): number[][] {
  const leader = Array.from({ length: n }, (_, i) => i);
  const find = (v: number): number => {
    while (leader[v] !== v) {
      leader[v] = leader[leader[v]!]!;
      v = leader[v]!;
    }
    return v;
  };
  for (const [i, j] of pairs) {
    if (find(i) !== find(j) && related(i, j)) leader[find(i)] = find(j);
  }
  return groupsInKeyOrder(n, (v) => find(v), tieKeys);
}

function* allPairs(n: number): Iterable<readonly [number, number]> {
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) yield [i, j];
}

/**
 * Ward linkage on a distance matrix (scipy's Lance-Williams update, which treats the
 * distances as Euclidean), cut at `k` clusters: the paper's clustering when K is given.
 * Equal merge distances are resolved by key order.
 */
export function wardClusters(distance: CostMatrix, k: number, tieKeys?: readonly string[]): number[][] {
  const n = distance.length;
  if (!Number.isInteger(k) || k < 1 || k > Math.max(n, 1)) throw new RangeError(`cannot cut ${n} models into ${k} trees`);
  const order = canonicalOrder(n, tieKeys);
  // Work in canonical positions so ties never depend on input order.
  const d = order.map((a) => order.map((b) => symmetric(distance, a, b)));
  const size = new Array<number>(n).fill(1);
  const alive = new Array<boolean>(n).fill(true);
  const label = Array.from({ length: n }, (_, i) => i);
  for (let clusters = n; clusters > k; clusters--) {
    let bi = -1, bj = -1, best = Infinity;
    for (let i = 0; i < n; i++) {
      if (!alive[i]) continue;
      for (let j = i + 1; j < n; j++) {
        if (alive[j] && d[i]![j]! < best) {
          best = d[i]![j]!;
          bi = i;
          bj = j;
        }
      }
    }
    if (bi < 0) break; // only infinite distances left: keep those apart
    for (let m = 0; m < n; m++) {
      if (!alive[m] || m === bi || m === bj) continue;
      const t = size[bi]! + size[bj]! + size[m]!;
      const merged = Math.sqrt(
        ((size[bi]! + size[m]!) * d[bi]![m]! ** 2 + (size[bj]! + size[m]!) * d[bj]![m]! ** 2 - size[m]! * best ** 2) / t,
      );
      d[bi]![m] = merged;
      d[m]![bi] = merged;
    }
    size[bi] += size[bj]!;
    alive[bj] = false;
    for (let v = 0; v < n; v++) if (label[v] === bj) label[v] = bi;
  }
  return groupsInKeyOrder(n, (v) => order[label[order.indexOf(v)]!]!, tieKeys);
}

function symmetric(distance: CostMatrix, a: number, b: number): number {
  if (a === b) return 0;
  const x = distance[a]![b]!, y = distance[b]![a]!;
  const v = Number.isFinite(x) ? (Number.isFinite(y) ? (x + y) / 2 : x) : y;
  return Number.isFinite(v) ? v : Infinity;
}

function groupsInKeyOrder(n: number, groupOf: (v: number) => number, tieKeys?: readonly string[]): number[][] {
  const groups = new Map<number, number[]>();
  for (const v of canonicalOrder(n, tieKeys)) {
    const g = groupOf(v);
    const list = groups.get(g);
    if (list) list.push(v);
    else groups.set(g, [v]);
  }
  return [...groups.values()].map((list) => list.sort((a, b) => a - b));
}
