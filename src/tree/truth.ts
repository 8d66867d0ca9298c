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
  /** A merge's parents (zoo.json `parents`): each is a true edge. */
  readonly parents?: readonly string[];
}

export interface Truth {
  readonly models: readonly TruthModel[];
  /** Models the truth marks `"kind": "obfuscated"`: left out of the score unless asked for. */
  readonly obfuscated?: ReadonlySet<string>;
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
  const obfuscated = new Set(models.filter((m) => (m as { kind?: unknown } | null)?.kind === 'obfuscated').map((m) => String((m as { name?: unknown }).name)));
  return {
    obfuscated,
    models: models.map((m, i) => {
      const { name, parent, parents } = (m ?? {}) as { name?: unknown; parent?: unknown; parents?: unknown };
      if (typeof name !== 'string') throw new BadInputError(`truth model #${i} has no name`);
      if (parent !== undefined && parent !== null && typeof parent !== 'string') {
        throw new BadInputError(`truth model ${name}: parent must be a name`);
      }
      if (parents !== undefined && !(Array.isArray(parents) && parents.every((p) => typeof p === 'string'))) {
        throw new BadInputError(`truth model ${name}: parents must be a list of names`);
      }
      return { name, parent: (parent as string | null | undefined) ?? null, ...(parents ? { parents: parents as string[] } : {}) };
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

/**
 * Merges (truth `parents`): one true edge per parent (each mapped to its nearest present
 * ancestor). Virtual nodes (a result's absent bases): an edge from one to X is right when X's true
 * parent is absent, and counts as one of the true edges then; they are not models to score.
 */
export function scoreAgainstTruth(result: LineageResult, truth: Truth): TruthScore {
  const virtual = new Set((result.virtualNodes ?? []).map((v) => v.name));
  const names = result.trees.flatMap((t) => t.members).filter((m) => !virtual.has(m));
  const trueParent = restrictTruth(truth, names);
  const present = new Set(names);
  const fullParent = new Map(truth.models.map((m) => [m.name, m.parent ?? m.parents?.[0] ?? null]));
  const nearestPresent = (name: string): string | null => {
    let p: string | null = name;
    for (let steps = 0; p !== null && !present.has(p) && steps <= fullParent.size; steps++) p = fullParent.get(p) ?? null;
    return p !== null && present.has(p) ? p : null;
  };
  const mergeParents = new Map(truth.models.flatMap((m) => (m.parents ? [[m.name, m.parents] as const] : [])));
  const trueParents = (child: string): string[] => {
    const listed = mergeParents.get(child);
    if (!listed) return trueParent.get(child) ? [trueParent.get(child)!] : [];
    return [...new Set(listed.flatMap((p) => nearestPresent(p) ?? []))];
  };
  const absentParent = (child: string) => !mergeParents.has(child) && trueParent.get(child) === null
    && (truth.models.find((m) => m.name === child)?.parent ?? null) !== null;
  const predicted = new Set(result.edges.map((e) => `${e.parent}\u0000${e.child}`));

  let correct = 0;
  const wrongEdges: { parent: string; child: string; problem: EdgeProblem; trueParent: string | null }[] = [];
  for (const e of result.edges) {
    const right = virtual.has(e.parent) ? absentParent(e.child) : trueParents(e.child).includes(e.parent);
    if (right) correct++;
    else {
      const problem: EdgeProblem = !virtual.has(e.parent) && trueParents(e.parent).includes(e.child) ? 'reversed' : 'wrong-parent';
      wrongEdges.push({ parent: e.parent, child: e.child, problem, trueParent: trueParents(e.child)[0] ?? null });
    }
  }
  const missedEdges: { parent: string; child: string }[] = [];
  let trueEdges = 0;
  for (const name of names) {
    for (const p of trueParents(name)) {
      trueEdges++;
      if (!predicted.has(`${p}\u0000${name}`)) missedEdges.push({ parent: p, child: name });
    }
    if (absentParent(name)) {
      trueEdges++;
      if (!result.edges.some((e) => e.child === name && virtual.has(e.parent))) missedEdges.push({ parent: '(absent)', child: name });
    }
  }

  const predictedTree = new Map<string, number>();
  result.trees.forEach((t, i) => t.members.forEach((m) => predictedTree.set(m, i)));
  // True families from the whole truth: siblings of an absent base are one family.
  const trueTree = new Map(names.map((n) => [n, rootOf(n, fullParent)]));
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
  // Bounded: a cycle through absent models is not checked by restrictTruth.
  for (let p = parentOf.get(v), steps = 0; p && steps <= parentOf.size; p = parentOf.get(v), steps++) v = p;
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

/** Models left out of the score: obfuscated ones (unless asked for) and adapters the truth does not list. */
export interface Unscored {
  readonly obfuscated: readonly string[];
  readonly adapters: readonly string[];
}

/**
 * The forest's score against the truth, without the models the truth cannot judge (obfuscated
 * ones unless `includeObfuscated`, adapters it does not list), and which those were.
 */
export function scoreForest(result: LineageResult, truth: Truth, includeObfuscated: boolean): { readonly score: TruthScore; readonly unscored: Unscored } {
  const names = result.trees.flatMap((t) => t.members);
  const listed = new Set(truth.models.map((m) => m.name));
  const unscored: Unscored = {
    obfuscated: includeObfuscated ? [] : names.filter((n) => truth.obfuscated?.has(n) ?? false),
    adapters: result.edges.filter((e) => e.adapter && !listed.has(e.child)).map((e) => e.child),
  };
  const score = scoreAgainstTruth(withoutModels(result, new Set([...unscored.obfuscated, ...unscored.adapters])), truth);
  return { score, unscored };
}

/** The result without some models (and their edges), for scoring. */
function withoutModels(result: LineageResult, drop: ReadonlySet<string>): LineageResult {
  return {
    ...result,
    trees: result.trees.map((t) => ({ ...t, members: t.members.filter((m) => !drop.has(m)) })).filter((t) => t.members.length > 0),
    edges: result.edges.filter((e) => !drop.has(e.parent) && !drop.has(e.child)),
  };
}
