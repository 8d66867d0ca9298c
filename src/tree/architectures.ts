/**
 * Models of several architectures in one run: each architecture (layer count, roles and shapes
 * of the layer stack, which is what the sketches compare) gets its own forest, since models of
 * different architectures cannot be relatives; the forests are then merged into one result.
 * Embeddings and heads are not part of the architecture here: a fine-tune for another label set
 * or vocabulary stays in its family, compared on the layer stack it shares (and a note says so).
 */
import { recoverLineage, type LineageAnalysis, type LineageOptions, type SketchedModel } from './lineage.js';
import { assembleResult, type EdgeLabel } from './result.js';
import { relatednessLog10P, sketchSignature } from './sketch-evidence.js';
import { candidateFamilies } from './candidates.js';
import { relatednessThreshold } from './forest.js';
import type { LineageResult } from './types.js';
import type { ModelSketch } from '../sketch/types.js';
import { sketchIdentity } from '../sketch/identity.js';

const byText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Models grouped by architecture; members keep their input order, groups come in the order of
 * their smallest content fingerprint, so the grouping does not depend on input order.
 */
export function groupByArchitecture<T extends SketchedModel>(models: readonly T[]): T[][] {
  const groups = new Map<string, T[]>();
  for (const m of models) {
    const signature = sketchSignature(m.sketch);
    const group = groups.get(signature);
    if (group) group.push(m);
    else groups.set(signature, [m]);
  }
  const smallestKey = (group: readonly T[]) => group.map((m) => sketchIdentity(m.sketch)).sort(byText)[0]!;
  return [...groups.values()].sort((a, b) => byText(smallestKey(a), smallestKey(b)));
}

export function describeArchitecture(sketch: ModelSketch): string {
  const d = sketch.dims;
  return `${sketch.architecture ?? sketch.family}, ${d.layers} layers, hidden ${d.hidden}, intermediate ${d.intermediate ?? '?'}`;
}

/** Why the groups were charted apart, and which families differ outside their layer stack. */
export function architectureNotes(groups: ReadonlyArray<readonly SketchedModel[]>): string[] {
  const notes: string[] = [];
  if (groups.length > 1) {
    const kinds = groups.map((g) => `${describeArchitecture(g[0]!.sketch)} (${g.map((m) => m.name).sort(byText).join(', ')})`);
    notes.push(`${groups.length} architectures among the models, each with its own forest (models of different architectures are never related): ${kinds.join('; ')}`);
  }
  for (const group of groups) {
    const note = headShapesNote(group);
    if (note) notes.push(note);
  }
  return notes;
}

/** Tensors outside the layer stack whose shape (or presence) differs within the group. */
function headShapesNote(group: readonly SketchedModel[]): string | null {
  const known = group.filter((m) => m.headShapes !== undefined).sort((a, b) => byText(a.name, b.name));
  if (known.length < 2) return null;
  const tensors = [...new Set(known.flatMap((m) => Object.keys(m.headShapes!)))].sort(byText);
  const differing: string[] = [];
  for (const tensor of tensors) {
    const byShape = new Map<string, string[]>();
    for (const m of known) {
      const shape = m.headShapes![tensor]?.join('x') ?? 'absent';
      byShape.set(shape, [...(byShape.get(shape) ?? []), m.name]);
    }
    if (byShape.size > 1) differing.push(`${tensor}: ${[...byShape].map(([shape, names]) => `${shape} in ${names.join(', ')}`).join('; ')}`);
  }
  if (differing.length === 0) return null;
  return `${known.map((m) => m.name).join(', ')} share one layer stack but differ outside it (${differing.join(' | ')}): `
    + 'compared on the layer stack they share; embeddings and heads are not compared';
}

/**
 * One result from several: every tree and edge of each, trees (and children) in name order as
 * within one result, notes in order, alignment costs summed. Members that only appear as an
 * edge's child (e.g. adapters attached to a tree) join their parent's tree.
 */
export function mergeResults(results: readonly LineageResult[], notes: readonly string[] = []): LineageResult {
  if (results.length === 1) {
    // One forest: kept as it is (merges, virtual nodes and families with several roots included).
    const only = results[0]!;
    const allNotes = [...(only.notes ?? []), ...notes];
    return { ...only, ...(allNotes.length ? { notes: allNotes } : {}) };
  }
  const names = [...new Set(results.flatMap((r) => [...r.trees.flatMap((t) => t.members), ...r.edges.map((e) => e.child)]))];
  const index = new Map(names.map((n, i) => [n, i]));
  const parent = names.map(() => -1);
  const labels = new Map<number, EdgeLabel>();
  for (const result of results) {
    for (const { parent: p, child, ...label } of result.edges) {
      parent[index.get(child)!] = index.get(p)!;
      labels.set(index.get(child)!, label);
    }
  }
  const assembled = assembleResult(results[0]?.method ?? 'lineage', names, parent, (_, child) => labels.get(child)!);
  // A merge has an edge from each parent: the single-parent assembly keeps one, the others come back here.
  const kept = new Set(assembled.edges.map((e) => `${e.parent}\u0000${e.child}`));
  const mergeEdges = results.flatMap((r) => r.edges).filter((e) => e.kind === 'merge' && !kept.has(`${e.parent}\u0000${e.child}`));
  const merges = results.flatMap((r) => r.merges ?? []);
  const virtualNodes = results.flatMap((r) => r.virtualNodes ?? []);
  const merged: LineageResult = {
    ...assembled,
    edges: [...assembled.edges, ...mergeEdges],
    ...(results.some((r) => r.merges) ? { merges } : {}),
    ...(virtualNodes.length ? { virtualNodes } : {}),
  };
  const allNotes = [...results.flatMap((r) => r.notes ?? []), ...notes];
  const costs = results.flatMap((r) => (r.alignment ? [r.alignment] : []));
  return {
    ...merged,
    ...(allNotes.length ? { notes: allNotes } : {}),
    ...(costs.length
      ? {
          alignment: {
            models: costs.flatMap((c) => c.models),
            verifyPasses: costs.reduce((s, c) => s + c.verifyPasses, 0),
            bytesRead: costs.reduce((s, c) => s + c.bytesRead, 0),
          },
        }
      : {}),
  };
}

/**
 * The forest of models of any mix of architectures: recoverLineage on each architecture's
 * group, then `place` (e.g. placing obfuscated members by alignment, which only makes sense
 * within one architecture) on each group's analysis, merged into one result.
 */
export function recoverLineageByArchitecture(
  models: readonly SketchedModel[],
  options: LineageOptions = {},
  place: (group: readonly SketchedModel[], analysis: LineageAnalysis) => LineageResult = (_, analysis) => analysis.result,
): LineageResult {
  const groups = groupByArchitecture(models);
  const from = options.candidateSearchFrom ?? CANDIDATE_SEARCH_FROM;
  const results = groups.flatMap((group) => {
    if (group.length < from) return [place(group, recoverLineage(group, options))];
    return familiesOf(group, options.alpha).map((family) => recoverLineage(family, options).result);
  });
  const searched = groups.filter((g) => g.length >= from);
  const notes = searched.length === 0 ? [] : [
    `${searched.reduce((s, g) => s + g.length, 0)} models split into families by the candidate search before the pairwise analysis `
    + `(from ${from} models of one architecture); unplaced (obfuscated) members are not aligned across families then`,
  ];
  return mergeResults(results, [...architectureNotes(groups), ...notes]);
}

/**
 * Models of one architecture from which the candidate search (candidates.ts) splits them into
 * families before the pairwise analysis: below it every pair is compared (the all-pairs cost of a
 * few hundred models is seconds), above it the families alone are.
 */
export const CANDIDATE_SEARCH_FROM = 64;

/** The group's families: candidate pairs confirmed by the relatedness test at the group's family-wise level. */
function familiesOf(group: readonly SketchedModel[], alpha?: number): SketchedModel[][] {
  const threshold = relatednessThreshold(group.length, alpha);
  const related = (i: number, j: number) => relatednessLog10P(group[i]!.sketch.neurons, group[j]!.sketch.neurons) <= threshold;
  return candidateFamilies(group.map((m) => m.sketch.neurons), related).map((family) => family.map((i) => group[i]!));
}
