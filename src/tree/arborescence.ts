/**
 * Chu-Liu/Edmonds minimum spanning arborescence on a dense cost matrix.
 *
 * cost[i][j] is the cost of the edge i -> j (i is the parent of j). Non-finite or missing
 * entries (Infinity, NaN) mean "no such edge"; the diagonal is ignored.
 *
 * Free root: a virtual root is added with an edge to every node. Two uses:
 * - `minimumArborescence`: the virtual edges cost more than any difference of real edge sums,
 *   so the optimum has as few roots as the finite edges allow (one whenever a spanning
 *   arborescence exists) and, among those, the least real cost. Trying every root would give
 *   the same answer at n times the work.
 * - `minimumSpanningForest`: every root costs `rootCost`, so an edge is only used when it is
 *   cheaper than starting a new tree: the minimum branching with a per-tree price.
 *
 * Order independence: the nodes are first put in the order of the caller's `tieKeys`
 * (e.g. model content hashes; ties between equal keys fall back to input order), and every
 * choice between equal costs picks the lower position in that order. The result is thus a
 * function of the costs and the keys alone: reordering or renaming the inputs cannot change
 * it, and no position (like "first given") is favoured.
 */

export interface ArborescenceResult {
  /** parent[j] = index of j's parent, or -1 for a root. Indices are the caller's. */
  readonly parent: number[];
  /** Roots in the caller's indices, ascending. */
  readonly roots: number[];
  /** Sum of the costs of the chosen edges (roots cost nothing here). */
  readonly cost: number;
}

export interface ArborescenceOptions {
  /** Stable secondary keys, one per node, that decide between equal costs. */
  readonly tieKeys?: readonly string[];
}

export type CostMatrix = ReadonlyArray<ArrayLike<number>>;

/** Minimum spanning arborescence with a free root (fewest roots first, then least cost). */
export function minimumArborescence(cost: CostMatrix, options: ArborescenceOptions = {}): ArborescenceResult {
  const n = checkSquare(cost);
  let maxAbs = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const c = cost[i]![j]!;
      if (i !== j && Number.isFinite(c)) maxAbs = Math.max(maxAbs, Math.abs(c));
    }
  }
  // Any two branchings' real-edge sums differ by less than 2 n maxAbs, so one more root
  // always costs more than any saving on real edges.
  const rootCost = 2 * n * maxAbs + 1;
  return solveWithVirtualRoot(cost, n, rootCost, options);
}

/** Minimum spanning forest (branching): each tree's root costs `rootCost`. */
export function minimumSpanningForest(
  cost: CostMatrix,
  rootCost: number,
  options: ArborescenceOptions = {},
): ArborescenceResult {
  const n = checkSquare(cost);
  if (!Number.isFinite(rootCost)) throw new RangeError('rootCost must be finite');
  return solveWithVirtualRoot(cost, n, rootCost, options);
}

function checkSquare(cost: CostMatrix): number {
  const n = cost.length;
  for (const row of cost) {
    if (row.length !== n) throw new RangeError(`cost matrix must be square: ${n} rows, a row of ${row.length}`);
  }
  return n;
}

/** Positions of the nodes when sorted by key (stable), i.e. order[pos] = caller index. */
export function canonicalOrder(n: number, tieKeys: readonly string[] | undefined): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  if (!tieKeys) return order;
  if (tieKeys.length !== n) throw new RangeError(`expected ${n} tie keys, got ${tieKeys.length}`);
  return order.sort((a, b) => (tieKeys[a]! < tieKeys[b]! ? -1 : tieKeys[a]! > tieKeys[b]! ? 1 : a - b));
}

function solveWithVirtualRoot(
  cost: CostMatrix,
  n: number,
  rootCost: number,
  options: ArborescenceOptions,
): ArborescenceResult {
  if (n === 0) return { parent: [], roots: [], cost: 0 };
  const order = canonicalOrder(n, options.tieKeys);
  // Canonical graph: node 0 is the virtual root, node p + 1 is order[p].
  const size = n + 1;
  const w = new Float64Array(size * size).fill(Infinity);
  for (let p = 0; p < n; p++) {
    w[p + 1] = rootCost;
    for (let q = 0; q < n; q++) {
      if (p === q) continue;
      const c = cost[order[p]!]![order[q]!]!;
      if (Number.isFinite(c)) w[(p + 1) * size + q + 1] = c;
    }
  }
  const canonicalParent = edmonds(w, size, 0);
  const parent = new Array<number>(n).fill(-1);
  let total = 0;
  for (let q = 0; q < n; q++) {
    const p = canonicalParent[q + 1]!;
    if (p === 0) continue;
    const child = order[q]!;
    const par = order[p - 1]!;
    parent[child] = par;
    total += cost[par]![child]!;
  }
  const roots = parent.flatMap((p, i) => (p === -1 ? [i] : []));
  return { parent, roots, cost: total };
}

/**
 * Edmonds' algorithm on a dense matrix w (size x size, Infinity = no edge) rooted at `root`.
 * Every non-root node must have a finite incoming edge. Returns parent per node (-1 at root).
 * O(size^3): contraction rebuilds a dense matrix each time a cycle is found.
 */
function edmonds(w: Float64Array, size: number, root: number): number[] {
  // Cheapest incoming edge per node; ties go to the lowest parent index.
  const best = new Array<number>(size).fill(-1);
  for (let v = 0; v < size; v++) {
    if (v === root) continue;
    let bestCost = Infinity;
    for (let u = 0; u < size; u++) {
      if (u === v) continue;
      const c = w[u * size + v]!;
      if (c < bestCost) {
        bestCost = c;
        best[v] = u;
      }
    }
    if (best[v] === -1) throw new Error(`node ${v} has no incoming edge`);
  }
  const cycle = findCycle(best, size, root);
  if (cycle === null) return best;

  // Contract the cycle into one node; the others keep their relative order.
  const inCycle = new Uint8Array(size);
  for (const v of cycle) inCycle[v] = 1;
  const newIndex = new Array<number>(size).fill(-1);
  let next = 0;
  for (let v = 0; v < size; v++) if (!inCycle[v]) newIndex[v] = next++;
  const cycleNode = next;
  const newSize = next + 1;
  const nw = new Float64Array(newSize * newSize).fill(Infinity);
  // For an edge into the cycle: which cycle node it enters; for an edge out: which one leaves.
  const enters = new Int32Array(newSize).fill(-1);
  const leaves = new Int32Array(newSize).fill(-1);
  for (let u = 0; u < size; u++) {
    for (let v = 0; v < size; v++) {
      if (u === v) continue;
      const c = w[u * size + v]!;
      if (c === Infinity) continue;
      if (inCycle[u] && inCycle[v]) continue;
      if (inCycle[v]) {
        const reduced = c - w[best[v]! * size + v]!;
        const nu = newIndex[u]!;
        const at = nu * newSize + cycleNode;
        if (reduced < nw[at]!) {
          nw[at] = reduced;
          enters[nu] = v;
        }
      } else if (inCycle[u]) {
        const nv = newIndex[v]!;
        const at = cycleNode * newSize + nv;
        if (c < nw[at]!) {
          nw[at] = c;
          leaves[nv] = u;
        }
      } else {
        nw[newIndex[u]! * newSize + newIndex[v]!] = c;
      }
    }
  }
  const inner = edmonds(nw, newSize, newIndex[root]!);

  const parent = best.slice();
  for (let v = 0; v < size; v++) {
    if (inCycle[v] || v === root) continue;
    const p = inner[newIndex[v]!]!;
    parent[v] = p === cycleNode ? leaves[newIndex[v]!]! : oldIndexOf(newIndex, p);
  }
  // The edge entering the contracted node breaks the cycle at the node it enters.
  const entryFrom = inner[cycleNode]!;
  const entered = enters[entryFrom]!;
  parent[entered] = oldIndexOf(newIndex, entryFrom);
  return parent;
}

function oldIndexOf(newIndex: number[], contracted: number): number {
  const v = newIndex.indexOf(contracted);
  if (v < 0) throw new Error('internal: contracted index not found');
  return v;
}

/** A cycle among the chosen parent edges (nodes in cycle order), or null. */
function findCycle(parent: number[], size: number, root: number): number[] | null {
  const state = new Uint8Array(size); // 0 unseen, 1 on current walk, 2 done
  for (let start = 0; start < size; start++) {
    if (state[start]) continue;
    const walk: number[] = [];
    let v = start;
    while (v !== root && v !== -1 && state[v] === 0) {
      state[v] = 1;
      walk.push(v);
      v = parent[v]!;
    }
    if (v !== root && v !== -1 && state[v] === 1) {
      const from = walk.indexOf(v);
      for (const u of walk) state[u] = 2;
      return walk.slice(from);
    }
    for (const u of walk) state[u] = 2;
  }
  return null;
}
