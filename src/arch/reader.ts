import { openTensorSource } from '../io/source.js';
import type { RowBlock, TensorSource } from '../io/types.js';
import { assertFinite } from '../io/source.js';
import { layerRoleRef, mapModel, readRole } from './map.js';
import type { GlobalRole, LayerRole, ModelMap, RoleRef, StoredWeight, Weight } from './types.js';
import { DTYPE_BYTES } from '../io/dtypes.js';
import { BadInputError } from '../io/errors.js';

/**
 * What the analyses see of a model: weights by canonical role, read lazily. Analyses depend on
 * this interface, never on files, so a merged adapter or an in-memory test model can stand in.
 */
export interface RoleReader {
  readonly name: string;
  readonly path: string;
  readonly map: ModelMap;
  /** Storage dtypes present (e.g. ["BF16"]). */
  readonly dtypes: readonly string[];
  readonly parameters: number;
  /**
   * `into`, when given, is a buffer of the role's size (`map` shape) that may be decoded into
   * instead of a new array; a reader may ignore it (then it is left untouched).
   */
  layer(index: number, role: LayerRole, into?: Float32Array): Weight;
  global(role: GlobalRole): Weight;
  /**
   * The role's stored bytes when it is a whole tensor stored (out, in), read into memory from
   * `allocate` (given the byte length) when given; null when the role must go through layer()
   * (a slice of a fused tensor, a transposed one, or values not stored as such, e.g. a merged adapter).
   */
  layerStored?(index: number, role: LayerRole, allocate?: (byteLength: number) => Uint8Array): StoredWeight | null;
  /**
   * A global role's rows in bounded blocks (each checked for NaN and infinity, valid until the
   * next), when the role is a whole tensor stored (out, in); null otherwise (use global()).
   */
  globalBlocks?(role: GlobalRole): Iterable<RowBlock> | null;
  /** Payload bytes read so far. */
  readonly bytesRead: number;
  close(): void;
}

/** A RoleReader over a safetensors model; every weight read is checked for NaN/Inf. */
export class SourceRoleReader implements RoleReader {
  readonly map: ModelMap;
  constructor(readonly source: TensorSource) {
    this.map = mapModel(source);
  }
  static open(path: string): SourceRoleReader {
    return new SourceRoleReader(openTensorSource(path));
  }
  get name(): string {
    return this.source.name;
  }
  get path(): string {
    return this.source.path;
  }
  get dtypes(): string[] {
    return [...new Set([...this.source.tensors.values()].map((t) => t.dtype))].sort();
  }
  get parameters(): number {
    let n = 0;
    for (const t of this.source.tensors.values()) n += t.shape.reduce((a, b) => a * b, 1);
    return n;
  }
  get bytesRead(): number {
    return this.source.bytesRead;
  }
  layer(index: number, role: LayerRole, into?: Float32Array): Weight {
    return checked(readRole(this.source, layerRoleRef(this.map, index, role), into));
  }
  layerStored(index: number, role: LayerRole, allocate?: (byteLength: number) => Uint8Array): StoredWeight | null {
    const ref = layerRoleRef(this.map, index, role);
    if (!isWholeTensor(ref)) return null;
    const info = this.source.tensors.get(ref.tensor);
    if (!info || info.shape.length !== 2) return null;
    const [rows, cols] = info.shape as [number, number];
    const byteLength = rows * cols * DTYPE_BYTES[info.dtype];
    const bytes = allocate ? allocate(byteLength) : new Uint8Array(byteLength);
    if (bytes.length !== byteLength) throw new RangeError(`${ref.tensor}: ${byteLength} stored bytes read into ${bytes.length}`);
    this.source.readStoredInto(ref.tensor, 0, bytes);
    return { rows, cols, dtype: info.dtype, bytes, tensor: ref.tensor, file: info.file };
  }
  globalBlocks(role: GlobalRole): Iterable<RowBlock> | null {
    const ref = this.map.global[role];
    if (!ref || !isWholeTensor(ref)) return null;
    const { source } = this;
    const file = source.tensors.get(ref.tensor)?.file ?? source.path;
    return (function* checkedBlocks() {
      for (const block of source.rowBlocks(ref.tensor)) {
        assertFinite(block.data, file, ref.tensor, block.rowStart * block.cols);
        yield block;
      }
    })();
  }
  global(role: GlobalRole): Weight {
    const ref = this.map.global[role];
    if (!ref) throw new BadInputError(`the model has no ${role} weight`, { file: this.source.path });
    return checked(readRole(this.source, ref));
  }
  close(): void {
    this.source.close();
  }
}

/** The role is a whole tensor stored (out, in): its stored rows are the role's rows. */
function isWholeTensor(ref: RoleRef): boolean {
  return !ref.rows && !ref.rowRanges && !ref.transposed;
}

function checked(w: Weight): Weight {
  assertFinite(w.data, w.file, w.tensor);
  return w;
}
