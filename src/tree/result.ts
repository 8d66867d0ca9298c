/** Turns a parent array into the JSON contract: trees in a name-stable order, edges per tree. */
import type { LineageEdge, LineageResult, LineageTree } from './types.js';

export type EdgeLabel = Omit<LineageEdge, 'parent' | 'child'>;

const byName = (names: readonly string[]) => (a: number, b: number) =>
  names[a]! < names[b]! ? -1 : names[a]! > names[b]! ? 1 : a - b;

export function assembleResult(
  method: LineageResult['method'],
  names: readonly string[],
  parent: readonly number[],
  labelEdge: (parentIndex: number, childIndex: number) => EdgeLabel,
): LineageResult {
  const order = byName(names);
  const children = names.map(() => [] as number[]);
  parent.forEach((p, c) => {
    if (p >= 0) children[p]!.push(c);
  });
  for (const list of children) list.sort(order);
  const roots = parent.flatMap((p, i) => (p < 0 ? [i] : [])).sort(order);
  const trees: LineageTree[] = [];
  const edges: LineageEdge[] = [];
  for (const root of roots) {
    const members: string[] = [];
    const visit = (v: number): void => {
      members.push(names[v]!);
      for (const c of children[v]!) {
        edges.push({ parent: names[v]!, child: names[c]!, ...labelEdge(v, c) });
        visit(c);
      }
    };
    visit(root);
    trees.push({ root: names[root]!, members });
  }
  return { method, trees, edges };
}
