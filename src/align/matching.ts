import { linearAssignment } from '../linalg/assignment.js';
import type { Matrix } from '../linalg/matrix.js';
import { matmulTransB, subMatrix } from '../linalg/ops.js';

/** Rows centred and scaled to unit length, so dot products are Pearson correlations. */
export function standardizeRows(a: Matrix): Matrix {
  const out = new Float64Array(a.data.length);
  for (let i = 0; i < a.rows; i++) {
    const o = i * a.cols;
    let mean = 0;
    for (let j = 0; j < a.cols; j++) mean += a.data[o + j]!;
    mean /= a.cols;
    let ss = 0;
    for (let j = 0; j < a.cols; j++) {
      const d = a.data[o + j]! - mean;
      out[o + j] = d;
      ss += d * d;
    }
    const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
    for (let j = 0; j < a.cols; j++) out[o + j]! *= inv;
  }
  return { rows: a.rows, cols: a.cols, data: out };
}

/**
 * Correlation of every row of A with every row of B (A.rows x B.rows, float32 to halve the
 * memory of n = 11008 neuron matchings). `absolute` folds sign flips (a row scaled by -c).
 */
export function rowCorrelations(a: Matrix, b: Matrix, absolute: boolean): Float32Array {
  if (a.cols !== b.cols) throw new RangeError(`rowCorrelations: ${a.cols} vs ${b.cols} columns`);
  const sa = standardizeRows(a);
  const sb = standardizeRows(b);
  const out = new Float32Array(a.rows * b.rows);
  const block = 256;
  for (let r0 = 0; r0 < a.rows; r0 += block) {
    const r1 = Math.min(a.rows, r0 + block);
    const part = matmulTransB(subMatrix(sa, r0, r1, 0, sa.cols), sb).data;
    for (let i = 0; i < part.length; i++) out[r0 * b.rows + i] = absolute ? Math.abs(part[i]!) : part[i]!;
  }
  return out;
}

export interface RowMatch {
  /** permutation[i] = row of B matched to row i of A. */
  readonly permutation: Int32Array;
  /** Mean matched correlation. */
  readonly quality: number;
  /** Matched correlation of each row of A. */
  readonly matched: Float64Array;
}

/** Maximum-total-correlation one-to-one matching of the rows of A to the rows of B. */
export function matchRows(a: Matrix, b: Matrix, absolute: boolean): RowMatch {
  if (a.rows !== b.rows) throw new RangeError(`matchRows: ${a.rows} vs ${b.rows} rows`);
  return matchFromCorrelations(rowCorrelations(a, b, absolute), a.rows);
}

/** The matching from a ready n x n correlation (or similarity) matrix. */
export function matchFromCorrelations(similarity: Float32Array | Float64Array, n: number): RowMatch {
  const { rowToCol } = linearAssignment(similarity, n, { maximize: true });
  const matched = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    matched[i] = similarity[i * n + rowToCol[i]!]!;
    sum += matched[i]!;
  }
  return { permutation: rowToCol, quality: n > 0 ? sum / n : 1, matched };
}

/** Number of positions a permutation moves. */
export function movedCount(permutation: ArrayLike<number>): number {
  let moved = 0;
  for (let i = 0; i < permutation.length; i++) if (permutation[i] !== i) moved++;
  return moved;
}

/** True when every row's own counterpart is its best match: the cheap identity check. */
export function identityIsBest(similarity: Float32Array | Float64Array, n: number): boolean {
  for (let i = 0; i < n; i++) {
    const own = similarity[i * n + i]!;
    for (let j = 0; j < n; j++) if (j !== i && similarity[i * n + j]! >= own) return false;
    for (let j = 0; j < n; j++) if (j !== i && similarity[j * n + i]! >= own) return false;
  }
  return true;
}
