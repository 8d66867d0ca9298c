/** Whether two mapped models can be compared weight by weight, with the reasons in plain words when not. */
import { GLOBAL_ROLES, type LayerRole, type ModelDims, type ModelMap, type RoleRef } from './types.js';

const DIM_WORDS: ReadonlyArray<[keyof ModelDims, string]> = [
  ['hidden', 'hidden size'],
  ['layers', 'layer count'],
  ['heads', 'attention heads'],
  ['kvHeads', 'key/value heads'],
  ['headDim', 'head dim'],
  ['intermediate', 'intermediate (MLP) size'],
  ['vocab', 'vocabulary size'],
];

/**
 * Plain-words reasons why two models cannot be compared weight by weight; empty when they can.
 * `bodies`: the task heads are not compared (a resized vocabulary: vocab, the embedding's rows,
 * lm_head; unmapped tensors never are), so models differing only there are one architecture.
 */
export function compareArchitectures(a: ModelMap, b: ModelMap, options: { readonly bodies?: boolean } = {}): string[] {
  const problems: string[] = [];
  for (const [key, words] of DIM_WORDS) {
    if (options.bodies && key === 'vocab') continue;
    const x = a.dims[key];
    const y = b.dims[key];
    if (x !== null && y !== null && x !== y) problems.push(`${words} differs: ${x} vs ${y}`);
  }
  const shapeText = (ref: RoleRef | undefined): string => (ref?.shape ? ref.shape.join('x') : ref ? '?' : 'absent');
  for (const role of GLOBAL_ROLES) {
    if (options.bodies && role === 'lm_head') continue;
    const x = a.global[role];
    const y = b.global[role];
    if (!x && !y) continue;
    // A body's embedding is compared by its columns (the residual), not its token rows.
    const from = options.bodies && role === 'embed' ? 1 : 0;
    if (!x || !y || (x.shape && y.shape && x.shape.slice(from).join('x') !== y.shape.slice(from).join('x'))) {
      problems.push(`${role} weight: ${shapeText(x)} vs ${shapeText(y)}`);
    }
  }
  // One line per role, naming the first layer and how many differ, so 80 layers stay readable.
  const layerCount = Math.min(a.layers.length, b.layers.length);
  const byRole = new Map<string, { first: number; count: number; text: string }>();
  for (let i = 0; i < layerCount; i++) {
    const la = a.layers[i]!;
    const lb = b.layers[i]!;
    const roles = new Set([...Object.keys(la), ...Object.keys(lb)] as LayerRole[]);
    for (const role of roles) {
      const x = la[role];
      const y = lb[role];
      const differs = !x || !y || (x.shape !== undefined && y.shape !== undefined && x.shape.join('x') !== y.shape.join('x'));
      if (!differs) continue;
      const seen = byRole.get(role);
      if (seen) seen.count++;
      else byRole.set(role, { first: i, count: 1, text: `${shapeText(x)} vs ${shapeText(y)}` });
    }
  }
  for (const [role, { first, count, text }] of byRole) {
    problems.push(`${role} weight of layer ${first}: ${text}${count > 1 ? ` (${count} layers differ)` : ''}`);
  }
  return problems;
}

/**
 * What a comparison of the bodies leaves out: each model's unmapped 2-D tensors (task heads) and,
 * when the vocabularies differ, the embedding rows and lm_head beyond the shared tokens; null when
 * nothing is left out.
 */
export function headLeftOut(a: ModelMap, b: ModelMap): { readonly tensors: readonly string[]; readonly note: string } | null {
  const tensors = [...new Set([...a.unmapped, ...b.unmapped])].sort();
  const parts: string[] = [];
  if (tensors.length > 0) parts.push(`${tensors.join(', ')} (unmapped: outside the layer stack, such as a task head)`);
  const [va, vb] = [a.dims.vocab, b.dims.vocab];
  if (va !== null && vb !== null && va !== vb) parts.push(`the vocabulary beyond the ${Math.min(va, vb)} shared tokens (${va} vs ${vb})`);
  if (parts.length === 0) return null;
  return { tensors, note: `left out of the comparison: ${parts.join('; ')}; the verdict rests on the shared layer stack` };
}
