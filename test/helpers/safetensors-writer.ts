/**
 * Fixture writers for tests: small safetensors files and Hugging Face style model folders.
 * Floats are rounded to the stored dtype by round-to-nearest-even (bf16 as PyTorch casts it).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { encodeValues, writeSafetensorsStreaming, type TensorSpec } from '../../src/io/writer.js';
import { DTYPE_BYTES } from '../../src/io/dtypes.js';
import type { DType } from '../../src/io/types.js';

export interface FixtureTensor {
  /** Storage dtype; writeModelFolder falls back to its `dtype` option, then F32. */
  readonly dtype?: DType;
  readonly shape: readonly number[];
  /** Values, rounded/converted to the dtype. Ignored when `bytes` is given. */
  readonly data?: ArrayLike<number>;
  /** Exact stored little-endian bytes, for bit-pattern tests. */
  readonly bytes?: Uint8Array;
}

/** Write one safetensors file holding `tensors` in the given key order. */
export function writeSafetensors(
  file: string,
  tensors: Readonly<Record<string, FixtureTensor>>,
  metadata?: Readonly<Record<string, string>>,
  defaultDtype: DType = 'F32',
): void {
  const entries = Object.entries(tensors);
  const specs: TensorSpec[] = entries.map(([name, t]) => ({ name, dtype: t.dtype ?? defaultDtype, shape: t.shape }));
  writeSafetensorsStreaming(file, specs, (spec, write) => {
    const tensor = tensors[spec.name]!;
    const bytes = tensor.bytes ?? encodeValues(spec.dtype, tensor.data ?? []);
    const expected = spec.shape.reduce((p, d) => p * d, 1) * DTYPE_BYTES[spec.dtype];
    if (bytes.length !== expected) throw new Error(`fixture ${spec.name}: ${bytes.length} bytes for shape [${spec.shape}] of ${spec.dtype}`);
    write(bytes);
  }, metadata);
}

/**
 * A Hugging Face style folder: config.json plus model.safetensors, or with `shards` > 1
 * model-0000i-of-0000n.safetensors and model.safetensors.index.json (tensors kept in order,
 * split into shards of about equal bytes). Returns the weight file paths.
 */
export function writeModelFolder(
  dir: string,
  config: Readonly<Record<string, unknown>> | null,
  tensors: Readonly<Record<string, FixtureTensor>>,
  options: { shards?: number; dtype?: DType } = {},
): string[] {
  fs.mkdirSync(dir, { recursive: true });
  if (config) fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const dtype = options.dtype ?? 'F32';
  const shards = Math.max(1, options.shards ?? 1);
  if (shards === 1) {
    const file = path.join(dir, 'model.safetensors');
    writeSafetensors(file, tensors, { format: 'pt' }, dtype);
    return [file];
  }
  const entries = Object.entries(tensors);
  const sizes = entries.map(([, t]) => t.shape.reduce((p, d) => p * d, 1) * DTYPE_BYTES[t.dtype ?? dtype]);
  const total = sizes.reduce((a, b) => a + b, 0);
  const groups: [string, FixtureTensor][][] = Array.from({ length: shards }, () => []);
  let before = 0;
  entries.forEach((entry, i) => {
    const shard = Math.min(shards - 1, Math.floor((before / Math.max(total, 1)) * shards));
    groups[shard]!.push(entry);
    before += sizes[i]!;
  });
  const pad = (k: number) => String(k).padStart(5, '0');
  const weightMap: Record<string, string> = {};
  const files: string[] = [];
  groups.forEach((group, k) => {
    const name = `model-${pad(k + 1)}-of-${pad(shards)}.safetensors`;
    const file = path.join(dir, name);
    writeSafetensors(file, Object.fromEntries(group), { format: 'pt' }, dtype);
    for (const [tensor] of group) weightMap[tensor] = name;
    files.push(file);
  });
  const sortedMap = Object.fromEntries(Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'),
    JSON.stringify({ metadata: { total_size: total }, weight_map: sortedMap }, null, 2));
  return files;
}
