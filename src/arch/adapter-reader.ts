/** A RoleReader that sees a base model with a PEFT adapter merged into it, without writing the merge. */
import { splitLayerName } from './names.js';
import { describeAdapter, mapAdapter, type AdapterMap, type LoraFactor } from './peft.js';
import { tensorRowsOf } from './read-role.js';
import type { RoleReader } from './reader.js';
import type { GlobalRole, LayerRole, Weight, WeightPart } from './types.js';
import { BadInputError, IncompatibleModelsError } from '../io/errors.js';
import type { TensorSource } from '../io/types.js';

/**
 * A base model with a PEFT adapter merged lazily: W + scale * B A for the roles the adapter
 * targets, computed in float64 when a role is read; nothing merged is ever written.
 */
export class MergedAdapterReader implements RoleReader {
  readonly adapter: AdapterMap;
  constructor(private readonly base: RoleReader, private readonly adapterSource: TensorSource) {
    this.adapter = mapAdapter(adapterSource);
    // Merged, an adapter without factors is BASE itself: verify would call it a copy of BASE.
    if (!this.adapter.factors.some((f) => f.layer !== null && f.roles.length > 0)) {
      throw new BadInputError(
        `adapter ${adapterSource.name} has no LoRA factors on a decoder layer's linear modules (no lora_A/lora_B pair): there is no change to verify`,
        { file: adapterSource.path },
      );
    }
    for (const f of this.adapter.factors) {
      if (f.layer === null || f.roles.length === 0) continue;
      if (f.layer >= base.map.layers.length) {
        throw new IncompatibleModelsError(`adapter ${adapterSource.name} targets layer ${f.layer} but ${base.name} has ${base.map.layers.length} layers`);
      }
    }
  }
  get name(): string {
    return this.adapterSource.name;
  }
  get path(): string {
    return this.adapterSource.path;
  }
  get map() {
    return this.base.map;
  }
  get dtypes(): readonly string[] {
    return this.base.dtypes;
  }
  get parameters(): number {
    return this.base.parameters;
  }
  get bytesRead(): number {
    return this.base.bytesRead + this.adapterSource.bytesRead;
  }
  summary() {
    return describeAdapter(this.adapter);
  }
  /** LoRA leaves biases as they are (PEFT's default bias = "none"): the base's. */
  layerBias(index: number, role: LayerRole): Weight | null {
    return this.base.layerBias?.(index, role) ?? null;
  }
  global(role: GlobalRole): Weight {
    return this.base.global(role);
  }
  globalPart(role: GlobalRole, part: WeightPart): Weight {
    return this.base.globalPart(role, part);
  }
  /** The base's: the adapter's factors are small, read wherever the base role is. */
  storageOrder<R extends LayerRole>(index: number, roles: readonly R[]): R[] {
    return this.base.storageOrder(index, roles);
  }
  layer(index: number, role: LayerRole): Weight {
    return this.layerPart(index, role, { rows: null, cols: null });
  }
  /**
   * The row of B that changes each of the role's rows: the same row for a plain module; for a
   * fused one, the row the base's split gives the role in the fused weight. Null for identity.
   */
  private factorRows(index: number, role: LayerRole, factor: LoraFactor): Int32Array | null {
    const layer = this.base.map.layers[index] ?? {};
    const ref = layer[role];
    const shape = ref?.shape;
    const misfit = (theirs: string) =>
      new IncompatibleModelsError(`adapter factor ${factor.module} is ${factor.outFeatures}x${factor.inFeatures} but ${this.base.name}'s ${role} of layer ${index} is ${theirs}`);
    if (!factor.fused) {
      if (shape && (factor.outFeatures !== shape[0] || factor.inFeatures !== shape[1])) throw misfit(`${shape[0]}x${shape[1]}`);
      return null;
    }
    // The base must hold the role in the same fused module, split into exactly the factor's roles.
    const suffix = splitLayerName(`${factor.module}.weight`)?.suffix;
    const sameModule = (r: LayerRole) => {
      const other = layer[r];
      return other !== undefined && other.shape !== undefined && (other.rows !== undefined || other.rowRanges !== undefined) && splitLayerName(other.tensor)?.suffix === suffix;
    };
    if (!ref || !shape || !factor.roles.every(sameModule)) {
      throw new IncompatibleModelsError(`adapter factor ${factor.module} is on a fused module that ${this.base.name}'s layer ${index} does not have (its ${role} is ${ref?.tensor ?? 'missing'})`);
    }
    const fusedRows = factor.roles.reduce((sum, r) => sum + layer[r]!.shape![0], 0);
    if (factor.outFeatures !== fusedRows || factor.inFeatures !== shape[1]) throw misfit(`in a fused ${fusedRows}x${shape[1]} weight`);
    return tensorRowsOf(ref, factor.outFeatures, Int32Array.from({ length: shape[0] }, (_, i) => i));
  }
  /** The merged weight's part: the base's part plus scale times B's kept rows times A's kept columns. */
  layerPart(index: number, role: LayerRole, part: WeightPart, into?: Float32Array): Weight {
    const w = this.base.layerPart(index, role, part, into);
    const factor = this.adapter.layers[index]?.[role];
    if (!factor) return w;
    const rowsOfB = this.factorRows(index, role, factor);
    const a = this.adapterSource.read(factor.A); // rank x in
    const b = this.adapterSource.read(factor.B); // out x rank
    const r = factor.rank, inFeatures = factor.inFeatures;
    // In place: each entry is read before it is written.
    const merged = w.data;
    const row = new Float64Array(w.cols);
    for (let i = 0; i < w.rows; i++) {
      const roleRow = part.rows ? part.rows[i]! : i;
      const from = rowsOfB ? rowsOfB[roleRow]! : roleRow;
      row.fill(0);
      for (let t = 0; t < r; t++) {
        const coef = b[from * r + t]! * factor.scale;
        if (coef === 0) continue;
        for (let j = 0; j < w.cols; j++) row[j]! += coef * a[t * inFeatures + (part.cols ? part.cols[j]! : j)]!;
      }
      for (let j = 0; j < w.cols; j++) merged[i * w.cols + j]! += row[j]!;
    }
    // The merge is exact to float32: the result's grid is F32 whatever the base's storage.
    return { ...w, data: merged, dtype: 'F32', tensor: `${w.tensor} + ${factor.module} (merged)` };
  }
  close(): void {
    this.adapterSource.close();
  }
}
