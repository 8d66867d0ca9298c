/**
 * PEFT adapters as members of a forest: an adapter is a LoRA child of its base by definition,
 * so it needs no sketch. It is placed under the model its adapter_config.json names (the caller
 * resolves the name to a model given), its rank and modules read from its own factors; it is
 * refused when its factors do not fit that model's matrices (another model of the same name).
 */
import type { LayerRole } from '../arch/types.js';
import { mergeResults } from './architectures.js';
import type { SketchedModel } from './lineage.js';
import { mostCommon } from './sketch-evidence.js';
import type { LineageEdge, LineageResult } from './types.js';

/** One LoRA factor pair of an adapter: the update scale * B A of one module. */
export interface AdapterFactor {
  /** PEFT module name, e.g. `q_proj`. */
  readonly moduleName: string;
  /** Layer, or null for modules outside the layer stack (lm_head, ...). */
  readonly layer: number | null;
  /**
   * The canonical roles the update changes: one for a plain linear, each role a fused module
   * holds (GPT-2 `c_attn`: q, k, v), whose output rows are the roles' rows in turn; none for
   * modules outside the layer stack.
   */
  readonly roles: readonly LayerRole[];
  readonly rank: number;
  /** (out, in) of the module the update applies to. */
  readonly rows: number;
  readonly cols: number;
  /** ||scale * B A||_F^2, exact. */
  readonly deltaSquared: number;
}

export interface AdapterMember {
  readonly name: string;
  /** Name of the model given that the adapter names as its base. */
  readonly base: string;
  readonly factors: readonly AdapterFactor[];
}

export interface RefusedAdapter {
  readonly name: string;
  readonly reason: string;
}

/**
 * The edge base -> adapter: `rank` the one most factors have, `modules` those carrying factors,
 * `distance` sqrt(sum ||scale B A||^2 / sum ||W||^2) over the layer-stack matrices the adapter
 * changes and the base's matrices (the sketch pairs' relative distance, with the base's norms
 * for the pair's mean); or the reason the adapter does not fit the base. Factors whose layer
 * and role the module name does not tell can be neither checked nor counted.
 */
export function adapterEdge(adapter: AdapterMember, base: SketchedModel): LineageEdge | RefusedAdapter {
  const matrices = new Map(base.sketch.matrices.map((m) => [`${m.layer}.${m.role}`, m]));
  let delta = 0, located = 0;
  for (const f of adapter.factors) {
    if (f.layer === null || f.roles.length === 0) continue;
    const held = f.roles.map((role) => matrices.get(`${f.layer}.${role}`));
    if (held.some((m) => !m)) return { name: adapter.name, reason: `its ${f.moduleName} factors of layer ${f.layer} have no matrix in ${base.name}` };
    // A fused module's update spans its roles' rows, stacked; every role reads the same inputs.
    const rows = held.reduce((sum, m) => sum + m!.rows, 0);
    if (rows !== f.rows || held.some((m) => m!.cols !== f.cols)) {
      const shapes = held.map((m) => `${m!.rows}x${m!.cols}`).join(' + ');
      return {
        name: adapter.name,
        reason: `its ${f.moduleName} factors of layer ${f.layer} make a ${f.rows}x${f.cols} update, but ${base.name}'s ${held.length > 1 ? `matrices (${f.roles.join(', ')}) are` : 'matrix is'} ${shapes}`,
      };
    }
    delta += f.deltaSquared;
    located++;
  }
  let norms = 0;
  for (const m of base.sketch.matrices) norms += m.views[0]!.squaredNorm;
  return {
    parent: base.name,
    child: adapter.name,
    kind: 'lora',
    rank: mostCommon(adapter.factors.map((f) => f.rank)),
    modules: [...new Set(adapter.factors.map((f) => f.moduleName))].sort(),
    // Unknown (NaN, null in JSON) when no module's layer and role could be read from its name.
    distance: located === 0 ? NaN : norms > 0 ? Math.sqrt(delta / norms) : 0,
    // Not read from the weights: an adapter is applied to its base, so the direction is given.
    directionMargin: 0,
    adapter: true,
  };
}

/** The result with each adapter under its base; adapters whose base is missing or misfit are refused. */
export function attachAdapters(
  result: LineageResult, models: readonly SketchedModel[], adapters: readonly AdapterMember[],
): { result: LineageResult; refused: RefusedAdapter[] } {
  const byName = new Map(models.map((m) => [m.name, m]));
  const edges: LineageEdge[] = [];
  const refused: RefusedAdapter[] = [];
  for (const adapter of adapters) {
    const base = byName.get(adapter.base);
    const placed = base ? adapterEdge(adapter, base) : { name: adapter.name, reason: `its base ${adapter.base} is not in the forest` };
    if ('reason' in placed) refused.push(placed);
    else edges.push(placed);
  }
  if (edges.length === 0) return { result, refused };
  return { result: mergeResults([result, { method: result.method, trees: [], edges }]), refused };
}
