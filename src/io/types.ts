/** What io hands upward: tensor descriptions, dtypes and the TensorSource a model is read through. */
/** Storage dtypes named as in the safetensors header. */
export type DType =
  | 'F64' | 'F32' | 'F16' | 'BF16' | 'F8_E4M3' | 'F8_E5M2'
  | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

/**
 * GGML block-quantized types as a GGUF file names them (src/io/gguf-quants.ts decodes Q8_0, Q4_0,
 * Q4_1, Q5_0, Q5_1, Q2_K-Q6_K, IQ4_NL and IQ4_XS; reading any other is a BadInputError).
 */
export type GgmlQuantType =
  | 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'Q8_0' | 'Q8_1' | 'Q2_K' | 'Q3_K' | 'Q4_K' | 'Q5_K' | 'Q6_K' | 'Q8_K'
  | 'IQ2_XXS' | 'IQ2_XS' | 'IQ3_XXS' | 'IQ1_S' | 'IQ4_NL' | 'IQ3_S' | 'IQ2_S' | 'IQ4_XS' | 'IQ1_M'
  | 'TQ1_0' | 'TQ2_0' | 'MXFP4' | 'NVFP4';

/** How a tensor is stored: a safetensors dtype (GGUF's float and integer types use the same names) or a GGML quantized type. */
export type StorageType = DType | GgmlQuantType;

/** Where one tensor's bytes live. Offsets are absolute positions in `file`. */
export interface TensorInfo {
  readonly name: string;
  readonly dtype: StorageType;
  readonly shape: readonly number[];
  readonly file: string;
  readonly start: number;
  readonly byteLength: number;
}

/** A GGUF metadata value as stored: numbers (64-bit integers as bigint when not exactly representable), text, flags, arrays. */
export type GgufValue = number | bigint | boolean | string | readonly GgufValue[];

/** A tensor of a safetensors file: always one of its element dtypes. */
export interface SafetensorsTensorInfo extends TensorInfo {
  readonly dtype: DType;
}

/** A block of consecutive rows of a tensor viewed as 2-D (shape[0] x product(rest)). */
export interface RowBlock {
  readonly rowStart: number;
  readonly rowEnd: number;
  readonly cols: number;
  /** (rowEnd - rowStart) * cols decoded values; valid only until the next block is produced. */
  readonly data: Float32Array;
}

/**
 * A set of tensors read lazily from safetensors files (a bare file, a sharded model, a Hugging
 * Face model folder, or the weights file of an adapter folder) or from a GGUF model.
 * Nothing is read until asked for; reads go through one bounded buffer.
 */
export interface TensorSource {
  /** What the user gave (file or folder), resolved. */
  readonly path: string;
  /** Base name of the folder or file, used to name the model in reports. */
  readonly name: string;
  /** Weight files, in index order. */
  readonly files: readonly string[];
  /** Parsed config.json (models) or adapter_config.json (adapters), or null. */
  readonly config: Readonly<Record<string, unknown>> | null;
  /** A GGUF model's key-value metadata (of its first file); absent for safetensors. */
  readonly ggufMetadata?: ReadonlyMap<string, GgufValue>;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** Total payload bytes of all tensors. */
  readonly totalBytes: number;
  /** Tensor payload bytes read from disk so far (for benchmarks and the one-read goal). */
  readonly bytesRead: number;
  /** Decode a whole tensor to float32. Throws BadInputError naming file and tensor. */
  read(name: string): Float32Array;
  /** Decode rows [rowStart, rowEnd) of the tensor viewed as 2-D. */
  readRows(name: string, rowStart: number, rowEnd: number): Float32Array;
  /** readRows into `out` (exactly (rowEnd - rowStart) x cols long): no allocation, no copy. */
  readRowsInto(name: string, rowStart: number, rowEnd: number, out: Float32Array): void;
  /**
   * The sub-matrix of the tensor viewed as 2-D at `rows` and `cols` (each in the order given; null:
   * all), decoded into `out` (rows x cols, row-major). Only the selected rows are read, and only the
   * selected columns decoded: a sample of a wide matrix's columns costs its bytes' read, not a decode.
   */
  readSelectionInto(name: string, rows: ArrayLike<number> | null, cols: ArrayLike<number> | null, out: Float32Array): void;
  /**
   * The stored bytes of rows [rowStart, rowEnd) of the tensor viewed as 2-D, undecoded, into `out`
   * (exactly that many bytes): for consumers that decode plain float storage themselves. Sources
   * whose storage is not plain floats (quantized blocks) leave it out.
   */
  readStoredRowsInto?(name: string, rowStart: number, rowEnd: number, out: Uint8Array): void;
  /**
   * Block-quantized storage (GGUF): readRowsInto, and into `variance` each element's rounding
   * variance on its block's grid (step^2 / 12): the noise floor quantization put on the weight.
   */
  readRowsWithVarianceInto?(name: string, rowStart: number, rowEnd: number, out: Float32Array, variance: Float32Array): void;
  /** readSelectionInto with the selected elements' rounding variances, as readRowsWithVarianceInto. */
  readSelectionWithVarianceInto?(name: string, rows: ArrayLike<number> | null, cols: ArrayLike<number> | null, out: Float32Array, variance: Float32Array): void;
  /** Walk a tensor in row blocks whose raw bytes fit `maxBytes` (default DEFAULT_BUFFER_BYTES, 1 MiB). */
  rowBlocks(name: string, maxBytes?: number): Iterable<RowBlock>;
  /** Release file descriptors. */
  close(): void;
}
