/**
 * Scoring a recovered forest against a ground-truth file (the zoo.json shape:
 * `models[]` with `name` and `parent`, no parent for roots).
 *
 * The truth is restricted to the models of the result: a model whose true parent is absent
 * gets its nearest present ancestor as parent (or becomes a root).
 * - edge accuracy: recovered edges with the right parent and direction / true edges;
 * - clustering accuracy: the Rand index, the fraction of model pairs whose same-tree /
 *   different-tree status matches the truth (the adjusted Rand index is reported too).
 */
import { BadInputError } from '../io/errors.js';
import type { LineageResult } from './types.js';

export interface TruthModel {
  readonly name: string;
  readonly parent?: string | null;
}

export interface Truth {
  readonly models: readonly TruthModel[];
}

export type EdgeProblem = 'reversed' | 'wrong-parent';

export interface TruthScore {
  readonly edgeAccuracy: number;
  readonly correctEdges: number;
  readonly trueEdges: number;
  /** Rand index over model pairs. */
  readonly clusteringAccuracy: number;
  readonly adjustedRandIndex: number;
  /** Recovered edges that are not true edges. */
  readonly wrongEdges: ReadonlyArray<{ parent: string; child: string; problem: EdgeProblem; trueParent: string | null }>;
  /** True edges the result lacks. */
  readonly missedEdges: ReadonlyArray<{ parent: string; child: string }>;
}

/** Validates an untyped object (e.g. a parsed zoo.json) as a Truth. */
export function parseTruth(value: unknown): Truth {
  const models = (value as { models?: unknown } | null)?.models;
  if (!Array.isArray(models)) throw new BadInputError('truth file has no "models" list');
  return {
    models: models.map((m, i) => {
      const { name, parent } = (m ?? {}) as { name?: unknown; parent?: unknown };
      if (typeof name !== 'string') throw new BadInputError(`truth model #${i} has no name`);
      if (parent !== undefined && parent !== null && typeof parent !== 'string') {
        throw new BadInputError(`truth model ${name}: parent must be a name`);
      }
      return { name, parent: (parent as string | null | undefined) ?? null };
    }),
  };
}

/** Each present model's true parent among the present models (nearest present ancestor). */
export function restrictTruth(truth: Truth, present: readonly string[]): Map<string, string | null> {
  const parentOf = new Map<string, string | null>();
  for (const m of truth.models) parentOf.set(m.name, m.parent ?? null);
  const inSet = new Set(present);
  const restricted = new Map<string, string | null>();
  for (const name of present) {
    if (!parentOf.has(name)) throw new BadInputError(`model ${name} is not in the truth file`);
    let p = parentOf.get(name) ?? null;
    const seen = new Set([name]);
    while (p !== null && !inSet.has(p)) {
      if (seen.has(p)) throw new BadInputError(`truth file has a parent cycle through ${p}`);
      seen.add(p);
      p = parentOf.get(p) ?? null;
    }
    restricted.set(name, p);
  }
  return restricted;
}

export function scoreAgainstTruth(result: LineageResult, truth: Truth): TruthScore {
  const names = result.trees.flatMap((t) => t.members);
  const trueParent = restrictTruth(truth, names);
  const predictedParent = new Map<string, string>();
  for (const e of result.edges) predictedParent.set(e.child, e.parent);

  let correct = 0;
  const wrongEdges: { parent: string; child: string; problem: EdgeProblem; trueParent: string | null }[] = [];
  for (const e of result.edges) {
    const truthParent = trueParent.get(e.child) ?? null;
    if (truthParent === e.parent) correct++;
    else {
      const problem: EdgeProblem = trueParent.get(e.parent) === e.child ? 'reversed' : 'wrong-parent';
      wrongEdges.push({ parent: e.parent, child: e.child, problem, trueParent: truthParent });
    }
  }
  const missedEdges: { parent: string; child: string }[] = [];
  let trueEdges = 0;
  for (const name of names) {
    const p = trueParent.get(name) ?? null;
    if (p === null) continue;
    trueEdges++;
    if (predictedParent.get(name) !== p) missedEdges.push({ parent: p, child: name });
  }

  const predictedTree = new Map<string, number>();
  result.trees.forEach((t, i) => t.members.forEach((m) => predictedTree.set(m, i)));
  const trueTree = new Map(names.map((n) => [n, rootOf(n, trueParent)]));
  const { rand, adjusted } = randIndices(names, (n) => predictedTree.get(n)!, (n) => trueTree.get(n)!);
  return {
    edgeAccuracy: trueEdges ? correct / trueEdges : 1,
    correctEdges: correct,
    trueEdges,
    clusteringAccuracy: rand,
    adjustedRandIndex: adjusted,
    wrongEdges,
    missedEdges,
  };
}

function rootOf(name: string, parentOf: ReadonlyMap<string, string | null>): string {
  let v = name;
  for (let p = parentOf.get(v); p; p = parentOf.get(v)) v = p;
  return v;
}

function randIndices<A, B>(items: readonly string[], labelA: (s: string) => A, labelB: (s: string) => B) {
  const n = items.length;
  const pairs = (n * (n - 1)) / 2;
  if (pairs === 0) return { rand: 1, adjusted: 1 };
  let agree = 0, sameA = 0, sameB = 0, sameBoth = 0;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const a = labelA(items[i]!) === labelA(items[j]!);
      const b = labelB(items[i]!) === labelB(items[j]!);
      if (a === b) agree++;
      if (a) sameA++;
      if (b) sameB++;
      if (a && b) sameBoth++;
    }
  }
  // ARI in pair-counting form: (index - expected) / (max - expected).
  const expected = (sameA * sameB) / pairs;
  const max = (sameA + sameB) / 2;
  const adjusted = max === expected ? (agree === pairs ? 1 : 0) : (sameBoth - expected) / (max - expected);
  return { rand: agree / pairs, adjusted };
}
