/**
 * Spectral DeTuning (Horwitz et al., ICML 2024): the weights of an absent base from its LoRA
 * children. Each child is W_i = B + L_i with L_i of rank r_i; alternate (1) L_i = the best rank-r_i
 * approximation of W_i - B and (2) B = the mean of the de-tuned children W_i - L_i, from B = the
 * mean of the children. Each step can only lower sum ||W_i - B - L_i||^2, and the error left in B
 * shrinks by the share of it that falls in the children's own low-rank subspaces: tens to a few
 * hundred rounds recover B to the rounding of the inputs when the children's changes are independent.
 * One matrix at a time: the caller reads each matrix of every child and writes the result.
 */
import type { Matrix } from '../linalg/matrix.js';
import { matmulTransB } from '../linalg/ops.js';
import { randomizedSvd, svd } from '../linalg/svd.js';

export interface DetuneOptions {
  /** At most this many rounds (default 1000). */
  readonly maxRounds?: number;
  /** Stop when a round moves B by less than this relative amount (default 1e-7: far below bf16's 4e-3). */
  readonly tolerance?: number;
  /**
   * Over-relaxation of the mean step, B += w (mean - B) (default 1.5): the plain step (1) crawls
   * where the children's subspaces overlap; on the zoo's q, v matrices 1.5 needs a third fewer rounds.
   */
  readonly relaxation?: number;
}

export interface DetunedMatrix {
  readonly base: Matrix;
  readonly rounds: number;
  /** Relative change of B in the last round. */
  readonly lastChange: number;
}

/** The best rank-r approximation of `a` (randomized range finder; exact SVD when r is near the size). */
function lowRankPart(a: Matrix, rank: number): Matrix {
  const parts = rank + 10 >= Math.min(a.rows, a.cols) ? svd(a) : randomizedSvd(a, rank, { powerIters: 4 });
  const u = parts.u!, v = parts.v!;
  const left = { rows: a.rows, cols: rank, data: new Float64Array(a.rows * rank) };
  const right = { rows: a.cols, cols: rank, data: new Float64Array(a.cols * rank) };
  for (let i = 0; i < a.rows; i++) for (let t = 0; t < rank; t++) left.data[i * rank + t] = u.data[i * u.cols + t]! * parts.s[t]!;
  for (let j = 0; j < a.cols; j++) for (let t = 0; t < rank; t++) right.data[j * rank + t] = v.data[j * v.cols + t]!;
  return matmulTransB(left, right);
}

/** The base of `children` (one matrix each, equal shapes) given each child's rank in it (0: unchanged). */
export function detuneBase(children: readonly Matrix[], ranks: readonly number[], options: DetuneOptions = {}): DetunedMatrix {
  if (children.length < 2 || ranks.length !== children.length) throw new RangeError('detuneBase needs two or more children and one rank each');
  const { rows, cols } = children[0]!;
  if (children.some((c) => c.rows !== rows || c.cols !== cols)) throw new RangeError('detuneBase: children of different shapes');
  const size = rows * cols;
  const mean = (term: (i: number) => Float64Array) => {
    const out = new Float64Array(size);
    children.forEach((_, i) => { const t = term(i); for (let k = 0; k < size; k++) out[k] += t[k]! / children.length; });
    return out;
  };
  let base = mean((i) => children[i]!.data);
  const maxRounds = options.maxRounds ?? 1000, tolerance = options.tolerance ?? 1e-7;
  let rounds = 0, lastChange = Infinity;
  while (rounds < maxRounds && lastChange > tolerance) {
    const current = base;
    const detuned = children.map((child, i) => {
      if (ranks[i]! <= 0) return child.data;
      const delta = { rows, cols, data: child.data.map((w, k) => w - current[k]!) };
      const part = lowRankPart(delta, Math.min(ranks[i]!, rows, cols));
      return child.data.map((w, k) => w - part.data[k]!);
    });
    const target = mean((i) => detuned[i]!);
    const step = options.relaxation ?? 1.5;
    base = target.map((x, k) => current[k]! + step * (x - current[k]!));
    let moved = 0, norm = 0;
    for (let k = 0; k < size; k++) (moved += (base[k]! - current[k]!) ** 2), (norm += base[k]! ** 2);
    lastChange = norm > 0 ? Math.sqrt(moved / norm) : 0;
    rounds++;
  }
  return { base: { rows, cols, data: base }, rounds, lastChange };
}
