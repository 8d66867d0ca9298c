/** Reading a model by canonical role (RoleReader), the seam between files and the analyses. */
import { openTensorSource } from '../io/source.js';
import type { RowBlock, TensorSource } from '../io/types.js';
import { assertFinite, assertTensorFinite } from '../io/source.js';
import { storageQuantization, type StorageQuantization } from './gguf.js';
import { mapModel } from './map.js';
import { layerRoleRef, readRole, readRolePart } from './read-role.js';
import type { GlobalRole, LayerRole, ModelMap, RoleRef, Weight, WeightPart } from './types.js';
import { BadInputError } from '../io/errors.js';

/**
 * What the analyses see of a model: weights by canonical role, read lazily. Analyses depend on
 * this interface, never on files, so a merged adapter or an in-memory test model can stand in.
 */
export interface RoleReader {
  readonly name: string;
  readonly path: string;
  readonly map: ModelMap;
  /** Storage dtypes present (e.g. ["BF16"]; GGUF: also quantized types such as "Q4_K"). */
  readonly dtypes: readonly string[];
  /** A GGUF model's storage: file type and tensors per type (null or absent: safetensors). */
  readonly quantization?: StorageQuantization | null;
  readonly parameters: number;
  /**
   * `into`, when given, is a buffer of the role's size (`map` shape) that may be decoded into
   * instead of a new array; a reader may ignore it (then it is left untouched).
   */
  layer(index: number, role: LayerRole, into?: Float32Array): Weight;
  /** The bias stored with a layer role (map.layerBiases), as (n, 1); null when it has none. */
  layerBias?(index: number, role: LayerRole): Weight | null;
  global(role: GlobalRole): Weight;
  /**
   * Part of a layer role (rows and columns kept, each in the order given): only that is read and
   * decoded; into `into` (of the part's size) when given, as layer() does.
   */
  layerPart(index: number, role: LayerRole, part: WeightPart, into?: Float32Array): Weight;
  /** Part of a global role (e.g. a sample of the embedding's token rows). */
  globalPart(role: GlobalRole, part: WeightPart): Weight;
  /**
   * Roles of a layer in the order their bytes are stored (by file, then offset; roles it lacks
   * last): read in this order, a layer is one forward pass over each file, which the operating
   * system's readahead streams (a cold read of the sampled 7B layers in module order, q to down,
   * took 1.5 times as long).
   */
  storageOrder<R extends LayerRole>(index: number, roles: readonly R[]): R[];
  /** Payload bytes read so far. */
  readonly bytesRead: number;
  close(): void;
}

/** Where a layer role's tensor is stored: what a one-pass reader plans its reads by. */
export interface RoleStorage {
  /** The tensor's stored dtype (a float dtype, or a GGUF block type). */
  readonly dtype: string;
  readonly file: string;
  /** The file's place among the model's weight files, and the tensor's payload offset and length in it. */
  readonly fileIndex: number;
  readonly start: number;
  readonly byteLength: number;
}

/**
 * A RoleReader over stored weights, as the sketch reads them: one pass in storage order, plain
 * rows streamed as stored bytes into the caller's buffer (a kernel that decodes them itself pays
 * no copy and no decode in JS). A merged adapter has no stored form, so this is a separate face.
 * Row indices are those of the role's stored tensor (RoleRef: a fused role's rows, row ranges or
 * a transposed layout say how the role sits in it).
 */
export interface StoredRoleReader extends RoleReader {
  /** Total payload bytes of all tensors. */
  readonly totalBytes: number;
  storage(index: number, role: LayerRole): RoleStorage;
  /** Stored bytes of rows [rowStart, rowEnd) of the role's tensor; absent when the storage is not plain floats. */
  readStoredRowsInto?(index: number, role: LayerRole, rowStart: number, rowEnd: number, out: Uint8Array): void;
  /** Block-quantized storage: the rows decoded, with each element's rounding variance (step^2 / 12). */
  readRowsWithVarianceInto?(index: number, role: LayerRole, rowStart: number, rowEnd: number, out: Float32Array, variance: Float32Array): void;
  /** The role's tensor decoded in blocks of rows. */
  storedRowBlocks(index: number, role: LayerRole): Iterable<RowBlock>;
  /** Checks a stored tensor no role is read from (norms, biases, unmapped ones) for NaN and infinity. */
  checkUnreadTensor(tensor: string): void;
}

/** A RoleReader over a safetensors model; every weight read is checked for NaN/Inf. */
export class SourceRoleReader implements StoredRoleReader {
  readonly map: ModelMap;
  readonly quantization: StorageQuantization | null;
  readonly readStoredRowsInto?: StoredRoleReader['readStoredRowsInto'];
  readonly readRowsWithVarianceInto?: StoredRoleReader['readRowsWithVarianceInto'];
  constructor(readonly source: TensorSource) {
    this.map = mapModel(source);
    this.quantization = storageQuantization(source);
    // Present exactly when the source offers them: their presence is what tells plain and quantized storage apart.
    if (source.readStoredRowsInto) {
      const read = source.readStoredRowsInto.bind(source);
      this.readStoredRowsInto = (index, role, rowStart, rowEnd, out) => read(this.tensorOf(index, role), rowStart, rowEnd, out);
    }
    if (source.readRowsWithVarianceInto) {
      const read = source.readRowsWithVarianceInto.bind(source);
      this.readRowsWithVarianceInto = (index, role, rowStart, rowEnd, out, variance) => read(this.tensorOf(index, role), rowStart, rowEnd, out, variance);
    }
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
  get totalBytes(): number {
    return this.source.totalBytes;
  }
  storage(index: number, role: LayerRole): RoleStorage {
    const info = this.source.tensors.get(this.tensorOf(index, role))!;
    const fileIndex = this.source.files.indexOf(info.file);
    return { dtype: info.dtype, file: info.file, fileIndex: fileIndex < 0 ? 0 : fileIndex, start: info.start, byteLength: info.byteLength };
  }
  storedRowBlocks(index: number, role: LayerRole): Iterable<RowBlock> {
    return this.source.rowBlocks(this.tensorOf(index, role));
  }
  checkUnreadTensor(tensor: string): void {
    assertTensorFinite(this.source, tensor);
  }
  private tensorOf(index: number, role: LayerRole): string {
    return layerRoleRef(this.map, index, role).tensor;
  }
  layer(index: number, role: LayerRole, into?: Float32Array): Weight {
    return checked(readRole(this.source, layerRoleRef(this.map, index, role), into));
  }
  layerBias(index: number, role: LayerRole): Weight | null {
    const ref = this.map.layerBiases?.[index]?.[role];
    return ref ? checked(readRole(this.source, ref)) : null;
  }
  layerPart(index: number, role: LayerRole, part: WeightPart, into?: Float32Array): Weight {
    return checked(readRolePart(this.source, layerRoleRef(this.map, index, role), part, into));
  }
  globalPart(role: GlobalRole, part: WeightPart): Weight {
    return checked(readRolePart(this.source, this.globalRef(role), part));
  }
  global(role: GlobalRole): Weight {
    return checked(readRole(this.source, this.globalRef(role)));
  }
  storageOrder<R extends LayerRole>(index: number, roles: readonly R[]): R[] {
    const position = (role: R): readonly [string, number] => {
      const ref = this.map.layers[index]?.[role];
      const info = ref ? this.source.tensors.get(ref.tensor) : undefined;
      return info ? [info.file, info.start] : ['\uffff', 0];
    };
    const keyed = roles.map((role) => ({ role, at: position(role) }));
    keyed.sort((a, b) => (a.at[0] < b.at[0] ? -1 : a.at[0] > b.at[0] ? 1 : a.at[1] - b.at[1]));
    return keyed.map((k) => k.role);
  }
  private globalRef(role: GlobalRole): RoleRef {
    const ref = this.map.global[role];
    if (!ref) throw new BadInputError(`the model has no ${role} weight`, { file: this.source.path });
    return ref;
  }
  close(): void {
    this.source.close();
  }
}

function checked(w: Weight): Weight {
  assertFinite(w.data, w.file, w.tensor);
  return w;
}
