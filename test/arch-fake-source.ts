/**
 * An in-memory TensorSource for arch tests (no files); checked itself in arch-map.test.ts.
 * Tensor values are a known function of (tensor index, flat index) so slices can be checked exactly.
 */
import type { DType, RowBlock, TensorInfo, TensorSource } from '../src/io/types.js';

export interface FakeTensor {
  readonly shape: readonly number[];
  readonly dtype?: DType;
  readonly data?: Float32Array;
}

/** Value of element `flat` of the tensor numbered `index`: distinct per tensor, exact in float32. */
export function fakeValue(index: number, flat: number): number {
  return index * 100000 + flat;
}

export class FakeSource implements TensorSource {
  readonly path = '/fake/model';
  readonly name = 'fake';
  readonly files = ['/fake/model/model.safetensors'];
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly totalBytes: number;
  bytesRead = 0;
  private readonly values = new Map<string, Float32Array>();

  constructor(
    specs: Readonly<Record<string, FakeTensor | readonly number[]>>,
    readonly config: Readonly<Record<string, unknown>> | null = null,
  ) {
    const tensors = new Map<string, TensorInfo>();
    let start = 0;
    Object.entries(specs).forEach(([name, spec], index) => {
      const t: FakeTensor = Array.isArray(spec) ? { shape: spec } : (spec as FakeTensor);
      const count = t.shape.reduce((p, d) => p * d, 1);
      const data = t.data ?? Float32Array.from({ length: count }, (_, i) => fakeValue(index, i));
      this.values.set(name, data);
      tensors.set(name, { name, dtype: t.dtype ?? 'F32', shape: t.shape, file: this.files[0]!, start, byteLength: count * 4 });
      start += count * 4;
    });
    this.tensors = tensors;
    this.totalBytes = start;
  }

  private cols(name: string): number {
    return this.tensors.get(name)!.shape.slice(1).reduce((p, d) => p * d, 1);
  }

  read(name: string): Float32Array {
    return this.values.get(name)!.slice();
  }

  readRows(name: string, rowStart: number, rowEnd: number): Float32Array {
    const cols = this.cols(name);
    this.bytesRead += (rowEnd - rowStart) * cols * 4;
    return this.values.get(name)!.slice(rowStart * cols, rowEnd * cols);
  }

  readRowsInto(name: string, rowStart: number, rowEnd: number, out: Float32Array): void {
    out.set(this.readRows(name, rowStart, rowEnd));
  }

  readSelectionInto(name: string, rows: ArrayLike<number> | null, cols: ArrayLike<number> | null, out: Float32Array): void {
    const values = this.values.get(name)!, width = this.cols(name), height = this.tensors.get(name)!.shape[0] ?? 1;
    const keptRows = rows ? rows.length : height, keptCols = cols ? cols.length : width;
    for (let i = 0; i < keptRows; i++) {
      for (let j = 0; j < keptCols; j++) out[i * keptCols + j] = values[(rows ? rows[i]! : i) * width + (cols ? cols[j]! : j)]!;
    }
    this.bytesRead += keptRows * width * 4;
  }

  /** Small blocks (3 rows) so readers are exercised across block borders. */
  *rowBlocks(name: string): Iterable<RowBlock> {
    const rows = this.tensors.get(name)!.shape[0]!;
    const cols = this.cols(name);
    for (let r = 0; r < rows; r += 3) {
      const end = Math.min(rows, r + 3);
      yield { rowStart: r, rowEnd: end, cols, data: this.readRows(name, r, end) };
    }
  }

  close(): void {}
}
