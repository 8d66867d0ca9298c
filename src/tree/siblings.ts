/**
 * Missing ancestors: siblings whose common parent is not among the inputs. Each sibling is the
 * absent base B plus a low-rank change of its own, so in every matrix the change between two
 * siblings has rank r_i + r_j (independent updates add their ranks), while a present parent
 * differs from each child by that child's rank alone. Given a group of three or more members
 * that are pairwise low-rank apart, the star model R_ij = r_i + r_j is solved for each member's
 * own rank r_i (least squares; exact when it holds). When it fits every pair and every member
 * has a change of its own (r_i >= 1), no member can be the others' parent and the base is absent.
 */
import { MODULE_NAME } from '../arch/types.js';
import { mostCommon, type SketchComparison } from './sketch-evidence.js';

/** Largest misfit |R_ij - r_i - r_j| of the star model, in ranks, per matrix: 1 plus this share of R_ij. */
export const STAR_RANK_TOLERANCE = 0.1;

export interface VirtualChild {
  readonly index: number;
  /** The rank most of its changed matrices agree on, and the modules it changes. */
  readonly rank: number;
  readonly modules: readonly string[];
  /** Relative Frobenius distance to the absent base, from the star model on the pairs' distances. */
  readonly distance: number;
  /** Its own rank in each matrix, in the sketches' matrix order (what base recovery fits). */
  readonly matrixRanks: readonly number[];
}

export interface MissingBase {
  readonly children: readonly VirtualChild[];
}

type PairLookup = (i: number, j: number) => SketchComparison;

/**
 * Star solution for n >= 3 members: r_i = (sum_j R_ij - S / (n - 1)) / (n - 2), S the sum over
 * pairs (least squares of R_ij = r_i + r_j over all pairs).
 */
function starSolve(members: readonly number[], value: (i: number, j: number) => number): number[] {
  const n = members.length;
  const rowSums = members.map((a) => members.reduce((s, b) => (a === b ? s : s + value(a, b)), 0));
  const total = rowSums.reduce((s, x) => s + x, 0) / 2;
  return rowSums.map((row) => (row - total / (n - 1)) / (n - 2));
}

/** Per matrix, the worst misfit of the star model over pairs, in units of the tolerance (<= 1 fits). */
function starMisfits(members: readonly number[], pairOf: PairLookup): number[] {
  const matrixCount = pairOf(members[0]!, members[1]!).matrices.length;
  const misfit = members.map(() => 0);
  for (let m = 0; m < matrixCount; m++) {
    const r = starSolve(members, (a, b) => pairOf(a, b).matrices[m]!.rank);
    members.forEach((a, i) => {
      members.forEach((b, j) => {
        if (a === b) return;
        const rank = pairOf(a, b).matrices[m]!.rank;
        const bad = Math.abs(rank - r[i]! - r[j]!) / (1 + STAR_RANK_TOLERANCE * rank);
        misfit[i] = Math.max(misfit[i]!, bad);
      });
    });
  }
  return misfit;
}

/**
 * Groups of `members` (one family, merges left out) that are siblings of an absent base. A group
 * is a set of members pairwise low-rank apart; a member the star model misfits most is dropped
 * while more than three remain (e.g. a sibling's own LoRA child).
 */
export function detectMissingBases(members: readonly number[], pairOf: PairLookup): MissingBase[] {
  const groups = lowRankCliques(members, pairOf);
  const found: MissingBase[] = [];
  for (let group of groups) {
    while (group.length >= 3) {
      const misfit = starMisfits(group, pairOf);
      const worst = misfit.indexOf(Math.max(...misfit));
      if (misfit[worst]! <= 1) break;
      group = group.filter((_, i) => i !== worst);
    }
    if (group.length < 3) continue;
    const own = starSolve(group, (a, b) => pairOf(a, b).rankSum);
    if (own.some((r) => r < 1)) continue; // a member with no change of its own is the parent, present
    const distance = starSolve(group, (a, b) => pairOf(a, b).relativeDistance ** 2);
    const matrixCount = pairOf(group[0]!, group[1]!).matrices.length;
    const perMatrix = Array.from({ length: matrixCount }, (_, m) => starSolve(group, (a, b) => pairOf(a, b).matrices[m]!.rank));
    found.push({
      children: group.map((index, i) => {
        const ranks: number[] = [];
        const modules = new Set<string>();
        const matrixRanks = perMatrix.map((r) => Math.max(0, Math.round(r[i]!)));
        perMatrix.forEach((_, m) => {
          const rank = matrixRanks[m]!;
          if (rank < 1) return;
          ranks.push(rank);
          const role = pairOf(group[0]!, group[1]!).matrices[m]!.role;
          modules.add(MODULE_NAME[role] ?? role);
        });
        return { index, rank: mostCommon(ranks), modules: [...modules].sort(), distance: Math.sqrt(Math.max(0, distance[i]!)), matrixRanks };
      }),
    });
  }
  return found;
}

/**
 * Maximal groups of members joined pairwise by low-rank changes: the connected components of the
 * low-rank pairs, kept when every pair inside is low rank (siblings of one base are).
 */
function lowRankCliques(members: readonly number[], pairOf: PairLookup): number[][] {
  const lowRank = (a: number, b: number) => pairOf(a, b).lowRank !== null && pairOf(a, b).rankSum > 0;
  const seen = new Set<number>();
  const groups: number[][] = [];
  for (const start of members) {
    if (seen.has(start)) continue;
    const group: number[] = [];
    const stack = [start];
    seen.add(start);
    while (stack.length) {
      const v = stack.pop()!;
      group.push(v);
      for (const w of members) {
        if (!seen.has(w) && lowRank(v, w)) {
          seen.add(w);
          stack.push(w);
        }
      }
    }
    group.sort((a, b) => a - b);
    if (group.length >= 3 && group.every((a) => group.every((b) => a === b || lowRank(a, b)))) groups.push(group);
  }
  return groups;
}
