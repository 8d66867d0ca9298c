/**
 * Linear assignment (minimum-cost perfect matching on a dense n×n cost matrix) by
 * Jonker–Volgenant (LAPJV): column reduction with reduction transfer, two rounds of augmenting
 * row reduction, then Dijkstra-like shortest augmenting paths with dual updates. The early
 * phases settle nearly-permutation costs (the common case when matching neurons) in O(n²).
 */

export type CostMatrix = Float64Array | Float32Array;

export interface AssignmentOptions {
  /** Maximise total cost instead of minimising it. */
  readonly maximize?: boolean;
}

export interface Assignment {
  /** rowToCol[i] = column assigned to row i. */
  readonly rowToCol: Int32Array;
  /** colToRow[j] = row assigned to column j. */
  readonly colToRow: Int32Array;
  /** Σ_i cost[i][rowToCol[i]] in the caller's sign. */
  readonly totalCost: number;
}

/** Solve for a row-major n×n cost (cost[i*n + j] = cost of row i to column j). */
export function linearAssignment(cost: CostMatrix, n: number, options: AssignmentOptions = {}): Assignment {
  if (!(Number.isInteger(n) && n >= 0) || cost.length !== n * n) {
    throw new RangeError(`linearAssignment: cost has ${cost.length} entries, expected ${n}x${n}`);
  }
  for (let i = 0; i < cost.length; i++) {
    if (!Number.isFinite(cost[i]!)) throw new RangeError(`linearAssignment: cost[${i}] = ${cost[i]} is not finite`);
  }
  // Maximising c is minimising −c; the sign is applied on read so a huge matrix is never copied.
  const sign = options.maximize ? -1 : 1;
  const rowToCol = new Int32Array(n).fill(-1);
  const colToRow = new Int32Array(n).fill(-1);
  const v = new Float64Array(n);
  if (n > 0) {
    const freeRows = new Int32Array(n);
    let freeCount = columnReduction(cost, sign, n, freeRows, rowToCol, colToRow, v);
    for (let round = 0; round < 2 && freeCount > 0; round++) {
      freeCount = augmentingRowReduction(cost, sign, n, freeRows, freeCount, rowToCol, colToRow, v);
    }
    if (freeCount > 0) augmentAlongShortestPaths(cost, sign, n, freeRows, freeCount, rowToCol, colToRow, v);
  }
  let totalCost = 0;
  for (let i = 0; i < n; i++) totalCost += cost[i * n + rowToCol[i]!]!;
  return { rowToCol, colToRow, totalCost };
}

/** Column reduction and reduction transfer; returns how many rows are left unassigned. */
function columnReduction(
  cost: CostMatrix, sign: number, n: number, freeRows: Int32Array,
  rowToCol: Int32Array, colToRow: Int32Array, v: Float64Array,
): number {
  v.fill(Infinity);
  const bestRow = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const r = i * n;
    for (let j = 0; j < n; j++) {
      const c = sign * cost[r + j]!;
      if (c < v[j]!) {
        v[j] = c;
        bestRow[j] = i;
      }
    }
  }
  const unique = new Uint8Array(n).fill(1);
  for (let j = n - 1; j >= 0; j--) {
    const i = bestRow[j]!;
    if (rowToCol[i]! < 0) {
      rowToCol[i] = j;
      colToRow[j] = i;
    } else {
      unique[i] = 0;
    }
  }
  let freeCount = 0;
  for (let i = 0; i < n; i++) {
    const assigned = rowToCol[i]!;
    if (assigned < 0) {
      freeRows[freeCount++] = i;
    } else if (unique[i]) {
      // Reduction transfer: lower v on this row's column by its second-best reduced cost.
      const r = i * n;
      let min = Infinity;
      for (let j = 0; j < n; j++) {
        if (j === assigned) continue;
        const c = sign * cost[r + j]! - v[j]!;
        if (c < min) min = c;
      }
      if (min !== Infinity) v[assigned]! -= min;
    }
  }
  return freeCount;
}

/** One round of augmenting row reduction; returns the count of rows still free (moved to freeRows' front). */
function augmentingRowReduction(
  cost: CostMatrix, sign: number, n: number, freeRows: Int32Array, freeCount: number,
  rowToCol: Int32Array, colToRow: Int32Array, v: Float64Array,
): number {
  let current = 0;
  let newFree = 0;
  let steps = 0;
  while (current < freeCount) {
    steps++;
    const row = freeRows[current++]!;
    const r = row * n;
    // Best and second-best reduced cost in this row.
    let j1 = 0;
    let u1 = sign * cost[r]! - v[0]!;
    let j2 = -1;
    let u2 = Infinity;
    for (let j = 1; j < n; j++) {
      const c = sign * cost[r + j]! - v[j]!;
      if (c < u2) {
        if (c >= u1) {
          u2 = c;
          j2 = j;
        } else {
          u2 = u1;
          u1 = c;
          j2 = j1;
          j1 = j;
        }
      }
    }
    let displaced = colToRow[j1]!;
    const lowered = v[j1]! - (u2 - u1);
    const lowers = lowered < v[j1]!;
    // The step bound stops cycling among rows with tied costs.
    if (steps < current * n) {
      if (lowers) {
        v[j1] = lowered;
      } else if (displaced >= 0 && j2 >= 0) {
        j1 = j2;
        displaced = colToRow[j2]!;
      }
      if (displaced >= 0) {
        if (lowers) freeRows[--current] = displaced;
        else freeRows[newFree++] = displaced;
      }
    } else if (displaced >= 0) {
      freeRows[newFree++] = displaced;
    }
    if (displaced >= 0) rowToCol[displaced] = -1;
    rowToCol[row] = j1;
    colToRow[j1] = row;
  }
  return newFree;
}

/** Augment each free row along a shortest alternating path (JV's modified Dijkstra). */
function augmentAlongShortestPaths(
  cost: CostMatrix, sign: number, n: number, freeRows: Int32Array, freeCount: number,
  rowToCol: Int32Array, colToRow: Int32Array, v: Float64Array,
): void {
  const pred = new Int32Array(n);
  const cols = new Int32Array(n);
  const dist = new Float64Array(n);
  for (let f = 0; f < freeCount; f++) {
    const start = freeRows[f]!;
    const end = shortestPathToFreeColumn(cost, sign, n, start, colToRow, v, pred, cols, dist);
    // Flip the path: each column on it takes its predecessor row.
    let j = end;
    for (;;) {
      const i = pred[j]!;
      colToRow[j] = i;
      const previous = rowToCol[i]!;
      rowToCol[i] = j;
      if (i === start) break;
      j = previous;
    }
  }
}

/**
 * Shortest augmenting path from `start` on reduced costs; updates the duals of the columns
 * finished before the path's end. `cols` is partitioned as [ready | scan | todo].
 */
function shortestPathToFreeColumn(
  cost: CostMatrix, sign: number, n: number, start: number, colToRow: Int32Array, v: Float64Array,
  pred: Int32Array, cols: Int32Array, dist: Float64Array,
): number {
  const rs = start * n;
  for (let j = 0; j < n; j++) {
    cols[j] = j;
    pred[j] = start;
    dist[j] = sign * cost[rs + j]! - v[j]!;
  }
  let lo = 0; // cols[0, lo): ready (final distance)
  let hi = 0; // cols[lo, hi): to scan, all at the current minimum distance
  let readyCount = 0;
  let levelMin = 0; // distance shared by every column on the scan list
  let end = -1;
  while (end < 0) {
    if (lo === hi) {
      // Move every todo column at the minimum distance onto the scan list.
      readyCount = lo;
      hi = lo + 1;
      levelMin = dist[cols[lo]!]!;
      for (let k = hi; k < n; k++) {
        const j = cols[k]!;
        const d = dist[j]!;
        if (d <= levelMin) {
          if (d < levelMin) {
            hi = lo;
            levelMin = d;
          }
          cols[k] = cols[hi]!;
          cols[hi++] = j;
        }
      }
      for (let k = lo; k < hi; k++) {
        if (colToRow[cols[k]!]! < 0) {
          end = cols[k]!;
          break;
        }
      }
      if (end >= 0) break;
    }
    // Scan one column: relax the todo columns through the row assigned to it.
    const j0 = cols[lo++]!;
    const i = colToRow[j0]!;
    const ri = i * n;
    const h = sign * cost[ri + j0]! - v[j0]! - levelMin;
    for (let k = hi; k < n; k++) {
      const j = cols[k]!;
      const reduced = sign * cost[ri + j]! - v[j]! - h;
      if (reduced < dist[j]!) {
        dist[j] = reduced;
        pred[j] = i;
        if (reduced === levelMin) {
          if (colToRow[j]! < 0) {
            end = j;
            break;
          }
          cols[k] = cols[hi]!;
          cols[hi++] = j;
        }
      }
    }
  }
  for (let k = 0; k < readyCount; k++) {
    const j = cols[k]!;
    v[j]! += dist[j]! - levelMin;
  }
  return end;
}
