/** The canonical roles, the model map (tensor names to roles, dims) and a weight as read, shared by arch and the analyses. */
import type { TensorSource } from '../io/types.js';

/** Canonical per-layer roles. Linear weights are stored (out, in) as in PyTorch. */
export type LayerRole =
  | 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down'
  | 'input_norm' | 'post_norm'
  /** Non-gated MLPs (GPT-2, BERT, ViT): fc_in / fc_out. */
  | 'fc_in' | 'fc_out';

/**
 * `patch_embed`: a vision transformer's patch projection, a conv (hidden, channels, p, p) read as
 * (channels * p * p, hidden): like a token embedding, one row per input value and one column per
 * residual dimension.
 */
export type GlobalRole = 'embed' | 'lm_head' | 'final_norm' | 'patch_embed';

/** Every global role, in report order. */
export const GLOBAL_ROLES: readonly GlobalRole[] = ['embed', 'lm_head', 'final_norm', 'patch_embed'];

export const ATTENTION_ROLES = ['q', 'k', 'v', 'o'] as const;
export const MLP_ROLES = ['gate', 'up', 'down'] as const;
export const LINEAR_ROLES: readonly LayerRole[] = ['q', 'k', 'v', 'o', 'gate', 'up', 'down', 'fc_in', 'fc_out'];

/**
 * PEFT / Hugging Face module names of the linear roles (what users pass as LoRA targets). The one
 * list of module names: verify's ModuleName, align's ModuleRole and the test helpers derive from it.
 */
const MODULE_NAMES_OF_ROLES = {
  q: 'q_proj', k: 'k_proj', v: 'v_proj', o: 'o_proj',
  gate: 'gate_proj', up: 'up_proj', down: 'down_proj',
  fc_in: 'fc_in', fc_out: 'fc_out',
} as const;
// Indexable by any layer role (norms have no module name), and literal for the linear ones.
export const MODULE_NAME: Readonly<Partial<Record<LayerRole, string>>> & typeof MODULE_NAMES_OF_ROLES = MODULE_NAMES_OF_ROLES;

/** The roles verify analyses in a Llama-style decoder, in report order. */
export type ModuleRole = (typeof ATTENTION_ROLES)[number] | (typeof MLP_ROLES)[number];
/** Their module names: the canonical vocabulary of LoRA targets. */
export type ModuleName = (typeof MODULE_NAME)[ModuleRole];
/** The module names in report order. */
export const MODULE_NAMES: readonly ModuleName[] = [...ATTENTION_ROLES, ...MLP_ROLES].map((role) => MODULE_NAME[role]);

/** A non-gated MLP's linears (GPT-2, BERT, ViT, GPT-NeoX). */
export const PLAIN_MLP_ROLES = ['fc_in', 'fc_out'] as const;
/** The roles verify analyses in a LayerNorm block, in report order. */
export type PlainRole = (typeof ATTENTION_ROLES)[number] | (typeof PLAIN_MLP_ROLES)[number];
export const PLAIN_ROLES: readonly PlainRole[] = [...ATTENTION_ROLES, ...PLAIN_MLP_ROLES];
/**
 * Their names in verify's canonical vocabulary: fc_in and fc_out play the up and down projections
 * of a gated MLP, so a LoRA target reads the same whatever the family.
 */
export const PLAIN_MODULE_NAME: Readonly<Record<PlainRole, ModuleName>> = {
  q: MODULE_NAME.q, k: MODULE_NAME.k, v: MODULE_NAME.v, o: MODULE_NAME.o, fc_in: MODULE_NAME.up, fc_out: MODULE_NAME.down,
};

/**
 * Where a role's matrix lives: a whole tensor, or a row slice of a fused one.
 * Always read it with `readRole` (src/arch/map.ts), which applies `rows`, `rowRanges` and
 * `transposed`; `shape` gives its (out, in) size without reading.
 */
export interface RoleRef {
  readonly tensor: string;
  /**
   * Rows [start, end) of the (out, in) matrix, for fused qkv / gate_up layouts. When
   * `transposed`, these are rows of the transposed matrix (= columns as stored).
   */
  readonly rows?: readonly [number, number];
  /**
   * Several row ranges, concatenated in order: the role is interleaved in a fused tensor,
   * e.g. GPT-NeoX `query_key_value` stores [q_h, k_h, v_h] per head, so q is one range per head.
   * Never set together with `rows`.
   */
  readonly rowRanges?: ReadonlyArray<readonly [number, number]>;
  /** Stored as (in, out), e.g. GPT-2 Conv1D: transpose when read. */
  readonly transposed?: boolean;
  /** (out, in) size of the role as `readRole` returns it; 1-D tensors are (n, 1). Set by mapModel. */
  readonly shape?: readonly [number, number];
}

export interface ModelDims {
  readonly hidden: number;
  readonly layers: number;
  readonly heads: number | null;
  readonly kvHeads: number | null;
  readonly headDim: number | null;
  readonly intermediate: number | null;
  readonly vocab: number | null;
}

export type Family =
  | 'llama' | 'mistral' | 'qwen2' | 'gemma' | 'phi3' | 'gpt_neox' | 'gpt2' | 'vit' | 'bert' | 'generic';

export interface ModelMap {
  readonly family: Family;
  readonly dims: ModelDims;
  readonly tiedEmbeddings: boolean;
  readonly global: Readonly<Partial<Record<GlobalRole, RoleRef>>>;
  readonly layers: ReadonlyArray<Readonly<Partial<Record<LayerRole, RoleRef>>>>;
  /**
   * Per layer, the bias of each role stored with one (`<module>.bias` beside `<module>.weight`, the
   * same rows of a fused tensor; a norm's bias is its LayerNorm beta), as (n, 1). Absent: none.
   */
  readonly layerBiases?: ReadonlyArray<Readonly<Partial<Record<LayerRole, RoleRef>>>>;
  /** 2-D weights that got no role (generic fallback keeps them by name). */
  readonly unmapped: readonly string[];
  /** Tensor-name prefix of the layer stack, e.g. `model.layers` (set by mapModel). */
  readonly layerPrefix?: string;
  /** config.json `architectures[0]` / `model_type`, when given (set by mapModel). */
  readonly architecture?: string | null;
  readonly modelType?: string | null;
}

/** Part of a role's (out, in) weight: the rows and columns kept, each in the order given (null: all). */
export interface WeightPart {
  readonly rows: ArrayLike<number> | null;
  readonly cols: ArrayLike<number> | null;
}

/** A role's weight as read: float32, row-major (out, in), with its storage dtype. */
export interface Weight {
  readonly rows: number;
  readonly cols: number;
  readonly data: Float32Array;
  readonly dtype: string;
  readonly tensor: string;
  readonly file: string;
  /**
   * Block-quantized storage only: each element's rounding variance on its block's grid (step^2 /
   * 12), the noise floor the analyses whiten with; float storage's comes from `dtype`'s grid.
   */
  readonly variance?: Float32Array;
}

export type { TensorSource };
