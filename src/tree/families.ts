/**
 * The default method's families as they really are: a forest of fine-tunes, merges with one edge
 * per parent, and virtual nodes for absent common parents.
 *
 * 1. Relatedness clusters (as the forest's); in each, merges are read off the sketches (merges.ts).
 * 2. The forest (recoverForest) with each merge's only allowed incoming edge from one of its
 *    parents and no edge from a merge to its own sources: fine-tunes of a merge find it as their
 *    parent like any other. With no merge and no absent base this is the whole answer, as before.
 * 3. Each merge gets an edge from each parent.
 * 4. Siblings of an absent base (siblings.ts) lose their forest parents to a virtual node.
 */
import { singleLinkage } from './cluster.js';
import { recoverForest, relatednessThreshold, type ForestEvidence } from './forest.js';
import { detectMerges, sketchGram, type MergeReading } from './merges.js';
import { detectMissingBases } from './siblings.js';
import type { SketchComparison } from './sketch-evidence.js';
import type { EdgeLabel } from './result.js';
import type { LineageEdge, LineageResult, LineageTree, MergeEntry, VirtualNode } from './types.js';
import type { ModelSketch } from '../sketch/types.js';

/** A merge weight below this (in absolute value) is reported as doubtful. */
export const SMALL_MERGE_WEIGHT = 0.05;
/** Two parents closer than this share of the merge's distance to them are reported as near-identical. */
export const NEAR_IDENTICAL_PARENTS = 0.2;

interface Input {
  readonly names: readonly string[];
  readonly sketches: readonly ModelSketch[];
  readonly evidence: ForestEvidence;
  readonly pairOf: (i: number, j: number) => SketchComparison;
  readonly alpha?: number;
}

export function recoverFamilies(input: Input): LineageResult {
  const { names, sketches, evidence, pairOf } = input;
  const n = names.length;
  const keys = sketches.map((s) => s.fingerprint);
  const threshold = relatednessThreshold(n, input.alpha);
  const clusters = singleLinkage(n, (i, j) => pairOf(i, j).log10PValue <= threshold, keys);
  const merges = clusters.flatMap((c) => (c.length >= 3 ? familyMerges(c, sketches, keys) : []));

  const forest = mergeAwareForest(evidence, merges, keys, pairOf, input.alpha);
  const index = new Map(names.map((name, i) => [name, i]));
  const parent = names.map(() => -1);
  const labels = new Map<number, EdgeLabel>();
  for (const { parent: p, child, ...label } of forest.edges) {
    parent[index.get(child)!] = index.get(p)!;
    labels.set(index.get(child)!, label);
  }

  const merged = new Set(merges.map((m) => m.target));
  const missing = clusters.flatMap((c) => detectMissingBases(c.filter((i) => !merged.has(i)), pairOf));
  if (merges.length === 0 && missing.length === 0) return { ...forest, merges: [] };

  const allNames = [...names];
  const virtualNodes: VirtualNode[] = [];
  for (const group of missing) {
    const children = group.children.map((c) => names[c.index]!).sort();
    const v = allNames.length;
    allNames.push(`base(${children.join(',')})`);
    parent.push(-1);
    for (const child of group.children) {
      parent[child.index] = v;
      labels.set(child.index, { kind: 'lora', rank: child.rank, modules: child.modules, distance: child.distance, directionMargin: 0 });
    }
    virtualNodes.push({ name: allNames[v]!, virtual: true, children });
  }

  const mergeEdges: Array<{ parent: number; child: number; label: EdgeLabel }> = [];
  for (const m of merges) {
    for (const [k, p] of m.parents.entries()) {
      const c = pairOf(p, m.target);
      mergeEdges.push({
        parent: p, child: m.target,
        label: { kind: 'merge', rank: null, modules: [], distance: c.relativeDistance, directionMargin: growth(c, p, m.target), weight: m.weights[k]! },
      });
    }
  }
  const assembled = assembleFamilies(allNames, parent, labels, mergeEdges);
  const entries = merges.map((m) => mergeEntry(m, names));
  const notes = merges.flatMap((m) => mergeNotes(m, names, parent, pairOf));
  for (const v of virtualNodes) {
    notes.push(`${v.children.join(', ')} are siblings whose common parent is not among the inputs (pairwise changes add their ranks, `
      + `none is the others' parent): shown as ${v.name}`);
  }
  return {
    ...assembled,
    method: 'lineage',
    merges: entries.sort((a, b) => (a.child < b.child ? -1 : 1)),
    ...(virtualNodes.length ? { virtualNodes } : {}),
    ...(notes.length ? { notes } : {}),
  };
}

/**
 * The forest with each merge hung under one parent (the first by key), never above its own
 * sources, and its children only fine-tunes of it (norm growth > 0). A descendant of a merge
 * carries the merge's mixture and can still look like a parent of the merge's sources (it sits
 * between them); while some source of a merge lies in the merge's subtree, the edge on the path
 * down to it that goes most against norm growth is forbidden and the forest recomputed.
 */
function mergeAwareForest(
  evidence: ForestEvidence, merges: readonly MergeReading[], keys: readonly string[],
  pairOf: (i: number, j: number) => SketchComparison, alpha: number | undefined,
): LineageResult {
  const base = { ...(alpha !== undefined ? { alpha } : {}), direction: 'norm-growth' as const };
  if (merges.length === 0) return recoverForest(evidence, base);
  const n = evidence.models.length;
  const ancestors = mergeAncestors(merges);
  const isMerge = new Set(merges.map((m) => m.target));
  const fixedParents = new Map(merges.map((m) => [m.target, [...m.parents].sort((a, b) => (keys[a]! < keys[b]! ? -1 : 1))[0]!]));
  const banned = new Set<number>();
  const forbidden = (p: number, c: number) =>
    banned.has(p * n + c) || (ancestors.get(p)?.has(c) ?? false) || (isMerge.has(p) && !isMerge.has(c) && growth(pairOf(p, c), p, c) <= 0);
  const index = new Map(evidence.models.map((m, i) => [m.name, i]));
  for (;;) {
    const forest = recoverForest(evidence, { ...base, fixedParents, forbidden });
    const parent = new Array<number>(n).fill(-1);
    for (const e of forest.edges) parent[index.get(e.child)!] = index.get(e.parent)!;
    const path = mergeCycle(merges, parent);
    if (!path) return forest;
    // The edge on the path that goes most against norm growth (ties: the costliest, then the
    // lowest), never a merge's fixed edge.
    let worst: [number, number] | null = null;
    for (let k = 1; k < path.length; k++) {
      const [p, c] = [path[k - 1]!, path[k]!];
      if (fixedParents.get(c) === p) continue;
      const [g, worstG] = [growth(pairOf(p, c), p, c), worst ? growth(pairOf(worst[0], worst[1]), worst[0], worst[1]) : Infinity];
      if (g < worstG || (g === worstG && !cheaper(pairOf(p, c), pairOf(worst![0], worst![1])))) worst = [p, c];
    }
    if (!worst) return forest;
    banned.add(worst[0] * n + worst[1]);
  }
}

/** A path (merge, ..., source) down the forest from a merge to one of its own sources, or null. */
function mergeCycle(merges: readonly MergeReading[], parent: readonly number[]): number[] | null {
  for (const m of merges) {
    for (const source of m.base === null ? m.parents : [...m.parents, m.base]) {
      const up = [source];
      for (let v = parent[source]!; v >= 0 && up.length <= parent.length; v = parent[v]!) {
        up.push(v);
        if (v === m.target) return up.reverse();
      }
    }
  }
  return null;
}

/** The forest's order of edges: low rank before dense, then the rank sum or the distance. */
function cheaper(x: SketchComparison, y: SketchComparison): boolean {
  if ((x.lowRank === null) !== (y.lowRank === null)) return x.lowRank !== null;
  return x.lowRank && y.lowRank ? x.lowRank.rankSum < y.lowRank.rankSum : x.relativeDistance < y.relativeDistance;
}

/** The merges of one family, from the inner products of its members' sketches only. */
function familyMerges(members: readonly number[], sketches: readonly ModelSketch[], keys: readonly string[]): MergeReading[] {
  const local = members.map((_, i) => i);
  return detectMerges(sketchGram(members.map((m) => sketches[m]!)), [local], members.map((m) => keys[m]!)).map((r) => ({
    ...r,
    target: members[r.target]!,
    parents: r.parents.map((p) => members[p]!),
    base: r.base === null ? null : members[r.base]!,
  }));
}

/** Norm growth g(parent -> child) of the pair. */
function growth(c: SketchComparison, parent: number, child: number): number {
  const g = c.normGrowth ?? 0;
  return parent < child ? g : -g;
}

/** Each merge's sources (parents and base), and theirs through other merges, transitively. */
function mergeAncestors(merges: readonly MergeReading[]): Map<number, Set<number>> {
  const byTarget = new Map(merges.map((m) => [m.target, m]));
  const result = new Map<number, Set<number>>();
  for (const m of merges) {
    const seen = new Set<number>();
    const stack = [m.target];
    while (stack.length) {
      const merge = byTarget.get(stack.pop()!);
      if (!merge) continue;
      for (const s of merge.base === null ? merge.parents : [...merge.parents, merge.base]) {
        if (!seen.has(s)) {
          seen.add(s);
          stack.push(s);
        }
      }
    }
    result.set(m.target, seen);
  }
  return result;
}

function mergeEntry(m: MergeReading, names: readonly string[]): MergeEntry {
  const order = m.parents.map((p, k) => ({ name: names[p]!, weight: m.weights[k]! })).sort((a, b) => (a.name < b.name ? -1 : 1));
  return {
    child: names[m.target]!,
    parents: order.map((o) => o.name),
    method: m.method,
    weights: order.map((o) => o.weight),
    base: m.base === null ? null : names[m.base]!,
    ...(m.density !== null ? { density: m.density } : {}),
    residual: m.residualShare,
    residualOverRounding: m.residualOverRounding,
  };
}

/** What the weights leave open about a merge: an equivalent reading, a doubtful parent. */
function mergeNotes(m: MergeReading, names: readonly string[], parent: readonly number[], pairOf: (i: number, j: number) => SketchComparison): string[] {
  const notes: string[] = [];
  const child = names[m.target]!;
  const order = m.parents.map((p, k) => ({ p, k })).sort((x, y) => (names[x.p]! < names[y.p]! ? -1 : 1));
  const terms = order.map(({ p, k }) => `${m.weights[k]!.toFixed(2)} ${names[p]}`).join(' + ');
  const commonParent = parent[m.parents[0]!]!;
  if (m.method === 'linear' && commonParent >= 0 && m.parents.every((p) => parent[p] === commonParent)) {
    notes.push(`${child} = ${terms} exactly: a linear merge, or the same as task arithmetic over their common parent `
      + `${names[commonParent]} with these weights (the weights cannot tell them apart)`);
  }
  m.parents.forEach((p, k) => {
    if (Math.abs(m.weights[k]!) < SMALL_MERGE_WEIGHT) {
      notes.push(`${child}: the weight of ${names[p]} is near 0 (${m.weights[k]!.toFixed(3)}): it may not be a parent`);
    }
  });
  for (let a = 0; a < m.parents.length; a++) {
    for (let b = a + 1; b < m.parents.length; b++) {
      const [pa, pb] = [m.parents[a]!, m.parents[b]!];
      const apart = pairOf(pa, pb).relativeDistance;
      const reach = Math.max(pairOf(pa, m.target).relativeDistance, pairOf(pb, m.target).relativeDistance);
      if (apart < NEAR_IDENTICAL_PARENTS * reach) {
        notes.push(`${child}: parents ${names[pa]} and ${names[pb]} are nearly identical (distance ${apart.toFixed(3)}): their weights are uncertain`);
      }
    }
  }
  if (!m.exact) {
    notes.push(`${child}: not an exact combination of ${order.map(({ p }) => names[p]).join(', ')} over ${names[m.base!]}: entries trimmed or `
      + `dropped; read as ${m.method.toUpperCase()} from the kept entries' scale (${m.residualShare.toFixed(2)} of the nearest single member's residual left)`);
  }
  return notes;
}

/**
 * The JSON shape for a DAG: `parent` is each node's tree parent (-1: a root), `extra` the merge
 * edges. A merge hangs in the tree under its first parent by name; the others reach it by extra
 * edges. Families are the connected components; each lists its roots by name.
 */
export function assembleFamilies(
  names: readonly string[], treeParent: readonly number[], labels: ReadonlyMap<number, EdgeLabel>,
  mergeEdges: ReadonlyArray<{ parent: number; child: number; label: EdgeLabel }>,
): Pick<LineageResult, 'trees' | 'edges'> {
  const byName = (a: number, b: number) => (names[a]! < names[b]! ? -1 : names[a]! > names[b]! ? 1 : a - b);
  const parent = [...treeParent];
  const incoming = new Map<number, Array<{ parent: number; label: EdgeLabel }>>();
  for (const e of mergeEdges) incoming.set(e.child, [...(incoming.get(e.child) ?? []), { parent: e.parent, label: e.label }]);
  for (const [child, list] of incoming) {
    list.sort((x, y) => byName(x.parent, y.parent));
    parent[child] = list[0]!.parent;
  }
  const children = names.map(() => [] as number[]);
  parent.forEach((p, c) => {
    if (p >= 0) children[p]!.push(c);
  });
  for (const list of children) list.sort(byName);
  const otherMergeChildren = names.map(() => [] as number[]);
  for (const [child, list] of incoming) for (const { parent: p } of list.slice(1)) otherMergeChildren[p]!.push(child);
  for (const list of otherMergeChildren) list.sort(byName);

  // Families: connected components over tree and merge edges.
  const family = names.map((_, i) => i);
  const find = (v: number): number => (family[v] === v ? v : (family[v] = find(family[v]!)));
  parent.forEach((p, c) => { if (p >= 0) family[find(c)] = find(p); });
  for (const e of mergeEdges) family[find(e.child)] = find(e.parent);
  const roots = parent.flatMap((p, i) => (p < 0 ? [i] : [])).sort(byName);
  const rootsOf = new Map<number, number[]>();
  for (const r of roots) rootsOf.set(find(r), [...(rootsOf.get(find(r)) ?? []), r]);

  const edgeOf = (p: number, c: number): LineageEdge => {
    const merge = incoming.get(c)?.find((x) => x.parent === p);
    return { parent: names[p]!, child: names[c]!, ...(merge ? merge.label : labels.get(c)!) };
  };
  const trees: LineageTree[] = [];
  const edges: LineageEdge[] = [];
  const done = new Set<number>();
  const seen = new Set<number>();
  // A family without a root (a cycle, which the forest's constraints should prevent) starts at its first node by name.
  const starts = [...roots, ...names.map((_, i) => i).sort(byName)];
  for (const r of starts) {
    const id = find(r);
    if (done.has(id)) continue;
    done.add(id);
    const familyRoots = rootsOf.get(id) ?? [r];
    const members: string[] = [];
    const visit = (v: number): void => {
      if (seen.has(v)) return;
      seen.add(v);
      members.push(names[v]!);
      const next = [...children[v]!.map((c) => ({ c, tree: true })), ...otherMergeChildren[v]!.map((c) => ({ c, tree: false }))]
        .sort((x, y) => byName(x.c, y.c));
      for (const { c, tree } of next) {
        edges.push(edgeOf(v, c));
        if (tree) visit(c);
      }
    };
    for (const root of familyRoots) visit(root);
    trees.push({ root: names[familyRoots[0]!]!, ...(familyRoots.length > 1 ? { roots: familyRoots.map((x) => names[x]!) } : {}), members });
  }
  return { trees, edges };
}

/**
 * Trees and edges again after the single-parent edges of the real models changed (e.g. members
 * placed by alignment): `parent` and `labels` cover `names` (the real models); the virtual nodes
 * and merge edges of `result` are put back as they were.
 */
export function reassembleFamilies(
  result: LineageResult, names: readonly string[], parent: readonly number[], labels: ReadonlyMap<number, EdgeLabel>,
): Pick<LineageResult, 'trees' | 'edges'> {
  const allNames = [...names, ...(result.virtualNodes ?? []).map((v) => v.name)];
  const index = new Map(allNames.map((name, i) => [name, i]));
  const treeParent = [...parent, ...(result.virtualNodes ?? []).map(() => -1)];
  const allLabels = new Map(labels);
  const mergeEdges: Array<{ parent: number; child: number; label: EdgeLabel }> = [];
  for (const { parent: p, child, ...label } of result.edges) {
    if (label.kind === 'merge') mergeEdges.push({ parent: index.get(p)!, child: index.get(child)!, label });
    else if (index.get(p)! >= names.length) {
      treeParent[index.get(child)!] = index.get(p)!;
      allLabels.set(index.get(child)!, label);
    }
  }
  return assembleFamilies(allNames, treeParent, allLabels, mergeEdges);
}
