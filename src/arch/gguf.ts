/**
 * What a GGUF model's metadata says of its architecture, in the words of config.json (so the
 * model map reads dims one way for both formats), and the undoing of llama.cpp's q/k row order.
 */
import { BadInputError } from '../io/errors.js';
import { ggufFileTypeName } from '../io/gguf.js';
import { isQuantType } from '../io/gguf-quants.js';
import type { GgufValue, TensorSource } from '../io/types.js';
import { GGUF_PERMUTED_QK_ARCHITECTURES } from './names.js';

/** `{arch}.*` keys (llama-arch.cpp) -> the config.json key mapModel reads. */
const DIM_KEYS: ReadonlyArray<readonly [ggufSuffix: string, configKey: string]> = [
  ['embedding_length', 'hidden_size'],
  ['block_count', 'num_hidden_layers'],
  ['feed_forward_length', 'intermediate_size'],
  ['attention.head_count', 'num_attention_heads'],
  ['attention.head_count_kv', 'num_key_value_heads'],
  ['attention.key_length', 'head_dim'],
  ['vocab_size', 'vocab_size'],
];

/** The GGUF model's architecture name (`general.architecture`), or null. */
export function ggufArchitecture(metadata: ReadonlyMap<string, GgufValue>): string | null {
  const arch = metadata.get('general.architecture');
  return typeof arch === 'string' && arch !== '' ? arch : null;
}

/**
 * A config.json equivalent of GGUF metadata: model_type and architectures from
 * `general.architecture`, dims from `{arch}.*`. A per-layer list (a dim that varies by layer) is
 * left out, as a dim the weights' shapes then tell; a dim that is not a positive integer is a
 * BadInputError naming the key.
 */
export function ggufConfig(metadata: ReadonlyMap<string, GgufValue>, file: string): Record<string, unknown> {
  const arch = ggufArchitecture(metadata);
  const config: Record<string, unknown> = {};
  if (!arch) return config;
  config['model_type'] = arch;
  config['architectures'] = [arch];
  for (const [suffix, key] of DIM_KEYS) {
    const value = metadata.get(`${arch}.${suffix}`);
    if (value === undefined || Array.isArray(value)) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      throw new BadInputError(`GGUF metadata ${arch}.${suffix} must be a positive integer, got ${String(value)}`, { file });
    }
    config[key] = value;
  }
  const tokens = metadata.get('tokenizer.ggml.tokens');
  if (config['vocab_size'] === undefined && Array.isArray(tokens) && tokens.length > 0) config['vocab_size'] = tokens.length;
  return config;
}

/**
 * Stored rows of q (or k) in the order the trained model has them, as one-row ranges. llama.cpp's
 * converter interleaves each head's two rotary halves: it stores
 * `w.reshape(heads, 2, rows / heads / 2, cols).swapaxes(1, 2)`, so trained row h*d + s*d/2 + j
 * (head h of d rows, half s, index j) lies at stored row h*d + 2j + s.
 */
export function unpermutedQkRows(rows: number, heads: number, tensor: string): Array<readonly [number, number]> {
  const headDim = rows / heads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new BadInputError(`${rows} rows do not split into ${heads} heads of an even size (undoing llama.cpp's rotary row order)`, { tensor });
  }
  const half = headDim / 2;
  return Array.from({ length: rows }, (_, r) => {
    const h = Math.floor(r / headDim), within = r % headDim;
    const stored = h * headDim + 2 * (within % half) + Math.floor(within / half);
    return [stored, stored + 1] as const;
  });
}

/** How a GGUF model is stored: its nominal file type and how many tensors each storage type holds. */
export interface StorageQuantization {
  /** `general.file_type` by name (e.g. "Q4_K_M"), or null when the file does not say. */
  readonly fileType: string | null;
  /** Tensors per storage type (e.g. { Q4_K: 12, Q6_K: 2, F32: 5 }). */
  readonly tensorTypes: Readonly<Record<string, number>>;
  /** Whether any tensor is block-quantized (else the model is stored on float grids only). */
  readonly quantized: boolean;
}

/** The storage quantization of a GGUF source; null for safetensors. */
export function storageQuantization(source: TensorSource): StorageQuantization | null {
  if (!source.ggufMetadata) return null;
  const tensorTypes: Record<string, number> = {};
  for (const info of [...source.tensors.values()].sort((a, b) => (a.dtype < b.dtype ? -1 : a.dtype > b.dtype ? 1 : 0))) {
    tensorTypes[info.dtype] = (tensorTypes[info.dtype] ?? 0) + 1;
  }
  return {
    fileType: ggufFileTypeName(source.ggufMetadata.get('general.file_type')),
    tensorTypes,
    quantized: Object.keys(tensorTypes).some(isQuantType),
  };
}

/** What `inspect` shows of a GGUF model beyond its dims and tensor types. */
export interface GgufDescription {
  /** `general.name`, or null. */
  readonly name: string | null;
  readonly architecture: string | null;
  readonly fileType: string | null;
  /** Tokens in `tokenizer.ggml.tokens` (the vocabulary the file carries), or null. */
  readonly tokenizerTokens: number | null;
  /** Whether q/k rows are read back from llama.cpp's rotary order (Llama-style architectures). */
  readonly qkRowsUnpermuted: boolean;
}

export function describeGguf(source: TensorSource): GgufDescription | null {
  const metadata = source.ggufMetadata;
  if (!metadata) return null;
  const name = metadata.get('general.name');
  const tokens = metadata.get('tokenizer.ggml.tokens');
  const architecture = ggufArchitecture(metadata);
  return {
    name: typeof name === 'string' ? name : null,
    architecture,
    fileType: ggufFileTypeName(metadata.get('general.file_type')),
    tokenizerTokens: Array.isArray(tokens) ? tokens.length : null,
    qkRowsUnpermuted: architecture !== null && GGUF_PERMUTED_QK_ARCHITECTURES.has(architecture),
  };
}
