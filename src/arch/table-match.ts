/** Which naming table (names.ts) a model's tensors follow, and where its layer stack and globals are. */
import { NAMING_TABLES, splitLayerName, type LayerPattern, type NamingTable } from './names.js';
import type { LayerRole } from './types.js';

export interface LayerTensor {
  readonly name: string;
  readonly layer: number;
  readonly pattern: LayerPattern;
}

export interface TableMatch {
  readonly table: NamingTable;
  readonly prefix: string;
  readonly tensors: readonly LayerTensor[];
}

/** The naming table and layer stack matching most tensors (ties: earlier table, first stack). */
export function bestMatch(names: readonly string[], tables: readonly NamingTable[] = NAMING_TABLES): TableMatch | null {
  let best: TableMatch | null = null;
  for (const table of tables) {
    const byPrefix = new Map<string, LayerTensor[]>();
    for (const name of names) {
      const split = splitLayerName(name);
      if (!split) continue;
      const pattern = table.layer[split.suffix];
      if (!pattern) continue;
      let list = byPrefix.get(split.prefix);
      if (!list) byPrefix.set(split.prefix, (list = []));
      list.push({ name, layer: split.layer, pattern });
    }
    for (const [prefix, tensors] of byPrefix) {
      // A stack must hold a layer-defining tensor, not only norms shared with other tables.
      if (!tensors.some((t) => t.pattern.fused || isLinear(t.pattern.role))) continue;
      if (!best || tensors.length > best.tensors.length) best = { table, prefix, tensors };
    }
  }
  return best;
}

function isLinear(role: LayerRole | undefined): boolean {
  return role !== undefined && role !== 'input_norm' && role !== 'post_norm';
}

/**
 * Find a global tensor by suffix outside the layer stack, preferring the one beside the stack
 * (`model.language_model.norm.weight` for stack `model.language_model.layers`), else the shortest.
 */
export function findGlobal(names: readonly string[], suffix: string, stackParent: string): string | undefined {
  const candidates = names.filter((n) => (n === suffix || n.endsWith('.' + suffix)) && !splitLayerName(n));
  if (candidates.length === 0) return undefined;
  const beside = candidates.find((n) => n === stackParent + suffix);
  if (beside) return beside;
  return [...candidates].sort((a, b) => a.length - b.length || (a < b ? -1 : 1))[0];
}

