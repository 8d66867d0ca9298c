/**
 * Placing the members the sketches cannot place. Sketches compare weights position by position,
 * so a permuted or rescaled (obfuscated) copy looks unrelated to its family, or joined to it by a
 * change as large as unrelated weights differ. The verify analysis undoes those transforms: each
 * such model is aligned onto the root of every tree of two or more members to find its tree (a
 * model the sketches' neuron test already put in a tree: onto that root only), then onto the few
 * members whose change from the root best matches its own, to find its parent.
 *
 * This costs extra reads: every verify pass reads both models whole. The sketches' promise of one
 * read per model holds for the models they place; each obfuscated member costs a few passes.
 * The result depends only on the models (fingerprints order every choice), not on input order.
 */
import { MODULE_NAME } from '../arch/types.js';
import type { RoleReader } from '../arch/reader.js';
import { LineageError } from '../io/errors.js';
import { RELATED_P, verifyModels } from '../verify/verify.js';
import type { VerifyResult } from '../verify/types.js';
import type { LineageAnalysis, SketchedModel } from './lineage.js';
import { reassembleFamilies } from './families.js';
import { assembleResult, type EdgeLabel } from './result.js';
import type { SketchComparison } from './sketch-evidence.js';
import type { LineageResult } from './types.js';
import { sketchIdentity } from '../sketch/identity.js';

export interface PlacementOptions {
  /** Opens a model, by the name it has in the result, for one verify pass; placement closes it. */
  readonly openReader: (name: string) => RoleReader;
  /** Members verified as parent candidates, best sketch matches first (default 3). */
  readonly candidates?: number;
  /** Seed of verify's random projections. */
  readonly seed?: number;
  /** Worker threads for a verify pass with this base model (default: none). */
  readonly workers?: (base: RoleReader) => number;
  /** Called before each verify pass (progress displays). */
  readonly onPass?: (base: string, candidate: string) => void;
}

export const DEFAULT_PARENT_CANDIDATES = 3;

/** One module's change as either side reports it: unchanged (rank 0), low rank r, or dense. */
export interface ModuleChange {
  readonly dense: boolean;
  readonly rank: number;
}

export type ChangeProfile = ReadonlyMap<string, ModuleChange>;

const profileKey = (layer: number, module: string) => `${layer}:${module}`;

/** root -> member as the sketches saw it; an absent pair (the root itself) is no change at all. */
function sketchProfile(comparison: SketchComparison | undefined): ChangeProfile {
  const profile = new Map<string, ModuleChange>();
  for (const m of comparison?.matrices ?? []) {
    profile.set(profileKey(m.layer, MODULE_NAME[m.role] ?? m.role), { dense: m.dense, rank: m.changed ? m.rank : 0 });
  }
  return profile;
}

/** root -> model as the aligned comparison saw it. */
function verifyProfile(result: VerifyResult): ChangeProfile {
  const profile = new Map<string, ModuleChange>();
  for (const layer of result.layers) {
    for (const m of layer.modules) profile.set(profileKey(layer.layer, m.module), { dense: m.status === 'full', rank: m.status === 'unchanged' ? 0 : m.rank });
  }
  return profile;
}

/**
 * How badly a member's change from the root explains the model's: per module, 1 when one is
 * dense and the other not, else the relative rank difference. 0: the model is the member (or a
 * copy of it) as far as the sketches can tell.
 */
export function profileMismatch(member: ChangeProfile, model: ChangeProfile): number {
  let mismatch = 0;
  for (const [key, m] of model) {
    const x = member.get(key) ?? { dense: false, rank: 0 };
    if (x.dense !== m.dense) mismatch += 1;
    else if (!m.dense) mismatch += Math.abs(x.rank - m.rank) / Math.max(1, x.rank, m.rank);
  }
  return mismatch;
}

/** Size of an aligned change, for "smallest change" (lexicographic): relative delta of dense modules, then sum of low ranks. */
function changeSize(result: VerifyResult): [number, number] {
  let dense = 0, ranks = 0;
  for (const layer of result.layers) {
    for (const m of layer.modules) {
      if (m.status === 'full') dense += m.relativeDelta;
      else if (m.status === 'low-rank') ranks += m.rank;
    }
  }
  return [dense, ranks];
}

export function isAlignedCopy(result: VerifyResult): boolean {
  return result.relation === 'derived' && result.layers.every((l) => l.modules.every((m) => m.status === 'unchanged'));
}

function isRelated(result: VerifyResult): boolean {
  return (result.relation === 'derived' || result.relation === 'related') && result.pValue <= RELATED_P;
}

/** The edge parent -> child read off verify(parent, child). */
export function alignedEdgeLabel(result: VerifyResult): EdgeLabel {
  const copy = isAlignedCopy(result);
  const dense = result.fullFineTune || result.layers.some((l) => l.modules.some((m) => m.status === 'full'));
  let squares = 0, count = 0;
  for (const layer of result.layers) for (const m of layer.modules) (squares += m.relativeDelta ** 2), count++;
  return {
    kind: dense ? 'full' : 'lora',
    rank: dense ? null : (result.lora?.rank ?? 0),
    modules: dense ? [] : [...(result.lora?.targets ?? [])].sort(),
    distance: count > 0 ? Math.sqrt(squares / count) : 0,
    // A copy has no change to read a direction from.
    directionMargin: copy ? 0 : result.direction.normGrowth,
    aligned: { copy, transform: [...result.transform.summary], log10PValue: result.log10PValue },
  };
}

const byKey = <T extends { key: string }>(a: T, b: T) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/**
 * The analysis' result with its unplaced members placed by alignment: singleton trees (when some
 * tree has two or more members) and the suspects the sketch comparison flagged. Returns the
 * result unchanged when there are none.
 */
export function placeUnplacedMembers(models: readonly SketchedModel[], analysis: LineageAnalysis, options: PlacementOptions): LineageResult {
  const { result, comparisons } = analysis;
  const names = models.map((m) => m.name);
  const index = new Map(names.map((n, i) => [n, i]));
  const key = (i: number) => sketchIdentity(models[i]!.sketch);
  const parent = names.map(() => -1);
  const labels = new Map<number, EdgeLabel>();
  for (const { parent: p, child, ...label } of result.edges) {
    // A merge's edges and a virtual node's are put back after placement (reassembleFamilies).
    if (label.kind === 'merge' || !index.has(p)) continue;
    parent[index.get(child)!] = index.get(p)!;
    labels.set(index.get(child)!, label);
  }

  const hasFamilies = result.trees.some((t) => t.members.length >= 2);
  const singletons = result.trees.length > 1 && hasFamilies ? result.trees.filter((t) => t.members.length === 1).map((t) => index.get(t.root)!) : [];
  const suspects = analysis.suspects.map((s) => index.get(s.model)!);
  const unplaced = [...new Set([...singletons, ...suspects])].map((i) => ({ i, key: key(i) })).sort(byKey).map((u) => u.i);
  if (unplaced.length === 0) return result;
  // A suspect leaves its tree with its subtree: its children were placed relative to it.
  for (const s of suspects) parent[s] = -1;

  const rootOf = (v: number): number => (parent[v]! < 0 ? v : rootOf(parent[v]!));
  const isUnplaced = new Set(unplaced);
  const families = new Map<number, number[]>();
  names.forEach((_, v) => {
    const r = rootOf(v);
    families.set(r, [...(families.get(r) ?? []), v]);
  });
  // Only trees the sketches placed are targets, so one model's placement never depends on another's.
  const targets = [...families].filter(([r, members]) => members.length >= 2 && !isUnplaced.has(r))
    .map(([r, members]) => ({ root: r, members, key: key(r) })).sort(byKey);

  let verifyPasses = 0, bytesRead = 0;
  const verify = (base: number, candidate: number): VerifyResult => {
    options.onPass?.(names[base]!, names[candidate]!);
    const readers: RoleReader[] = [];
    try {
      readers.push(options.openReader(names[base]!));
      readers.push(options.openReader(names[candidate]!));
      verifyPasses++;
      return verifyModels(readers[0]!, readers[1]!, { seed: options.seed ?? 1, workers: options.workers?.(readers[0]!) ?? 0 });
    } finally {
      for (const r of readers) {
        bytesRead += r.bytesRead;
        r.close();
      }
    }
  };
  const pairOf = (i: number, j: number) => (i < j ? comparisons[i]![j] : comparisons[j]![i]) ?? undefined;

  // A suspect's tree is known: the sketches' neuron test put it there. Only its parent is in doubt.
  const suspectTree = new Map(analysis.suspects.map((s) => {
    const root = rootOf(index.get(s.parent)!);
    return [index.get(s.model)!, targets.filter((t) => t.root === root)] as const;
  }));

  /** (a) the model's tree: its most significant relation to a tree's root; (b) its parent there. */
  const findParent = (m: number) => {
    let home: { tree: (typeof targets)[number]; result: VerifyResult } | null = null;
    const suspected = suspectTree.get(m);
    for (const tree of suspected?.length ? suspected : targets) {
      const r = verify(tree.root, m);
      if (isRelated(r) && (!home || r.log10PValue < home.result.log10PValue)) home = { tree, result: r };
    }
    if (!home) return null;
    // (b) its parent: members whose change from the root looks like the model's, verified in turn.
    const root = home.tree.root;
    const wanted = verifyProfile(home.result);
    const ranked = home.tree.members
      .map((x) => ({ x, key: key(x), mismatch: profileMismatch(sketchProfile(x === root ? undefined : pairOf(root, x)), wanted) }))
      .sort((a, b) => a.mismatch - b.mismatch || byKey(a, b))
      .slice(0, options.candidates ?? DEFAULT_PARENT_CANDIDATES);
    const tried: Array<{ x: number; key: string; result: VerifyResult }> = [];
    for (const { x, key: k } of ranked) {
      const r = x === root ? home.result : verify(x, m);
      tried.push({ x, key: k, result: r });
      if (isAlignedCopy(r)) break;
    }
    const best = tried
      .map((t) => ({ ...t, derived: t.result.relation === 'derived' ? 0 : 1, size: changeSize(t.result) }))
      .sort((a, b) => a.derived - b.derived || a.size[0] - b.size[0] || a.size[1] - b.size[1] || byKey(a, b))[0]!;
    return { best, label: alignedEdgeLabel(best.result) };
  };

  const notes = new Map<number, string>();
  const originalNote = new Map(analysis.suspects.map((s) => [index.get(s.model)!, s.note]));
  for (const m of unplaced) {
    const name = names[m]!;
    const restore = (why: string) => {
      const original = analysis.suspects.find((s) => s.model === name);
      if (original) parent[m] = index.get(original.parent)!;
      notes.set(m, `${originalNote.get(m) ?? `could not place ${name}`}; alignment did not place it either: ${why}`);
    };
    let placement: ReturnType<typeof findParent>;
    try {
      placement = findParent(m);
    } catch (err) {
      // Models verify cannot align (another architecture family, no head counts) stay as they were.
      if (!(err instanceof LineageError)) throw err;
      restore(err.message);
      continue;
    }
    if (!placement) {
      restore(`related to no tree's root (p > ${RELATED_P})`);
      continue;
    }
    const { best, label } = placement;
    parent[m] = best.x;
    labels.set(m, label);
    const what = label.aligned!.copy ? 'an obfuscated copy' : best.derived === 0 ? 'derived' : 'related (no candidate derived: direction not established)';
    const undone = best.result.transform.summary.length ? best.result.transform.summary.join('; ') : 'no transform found';
    notes.set(m, `placed ${name} under ${names[best.x]!} after alignment: ${what} (undone: ${undone})`);
  }

  const placed = result.merges?.length || result.virtualNodes?.length
    ? { ...result, ...reassembleFamilies(result, names, parent, labels) }
    : { ...assembleResult(result.method, names, parent, (_, child) => labels.get(child)!), ...(result.merges ? { merges: result.merges } : {}) };
  const otherNotes = (result.notes ?? []).filter((n) => ![...originalNote.values()].includes(n));
  const allNotes = [...otherNotes, ...unplaced.map((m) => notes.get(m)!)];
  return {
    ...placed,
    notes: allNotes,
    alignment: { models: unplaced.map((m) => names[m]!), verifyPasses, bytesRead },
  };
}
