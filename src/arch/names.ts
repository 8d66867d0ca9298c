/**
 * Naming tables: tensor names of each supported family -> canonical roles.
 * Shared by the model map and the PEFT adapter reader, so both agree on what a module is.
 */
import type { Family, GlobalRole, LayerRole } from './types.js';

/** How a fused tensor splits into roles (the split itself needs the model's dims). */
export type FusedLayout =
  /** Phi-3 `qkv_proj`: q rows, then k rows, then v rows. */
  | 'qkv'
  /** Phi-3 `gate_up_proj`: gate rows, then up rows. */
  | 'gate_up'
  /** GPT-NeoX `query_key_value`: per head, [q_h, k_h, v_h] blocks of head_dim rows. */
  | 'qkv_per_head'
  /** GPT-2 `c_attn` (Conv1D, stored (in, out)): q, k, v thirds of the output dimension. */
  | 'qkv_thirds';

export interface LayerPattern {
  /** The role, or the roles a fused tensor holds. */
  readonly role?: LayerRole;
  readonly fused?: FusedLayout;
  /** Stored (in, out), as GPT-2 Conv1D. */
  readonly transposed?: boolean;
}

/** Tensor-name tables of one naming family: layer suffixes (after `<stack>.N.`) and global suffixes. */
export interface NamingTable {
  readonly family: Family;
  readonly layer: Readonly<Record<string, LayerPattern>>;
  readonly global: Readonly<Partial<Record<GlobalRole, string>>>;
  /** Decoder language models tie lm_head to the embedding when lm_head is absent. */
  readonly decoder: boolean;
}

const LLAMA_LAYER: Record<string, LayerPattern> = {
  'self_attn.q_proj.weight': { role: 'q' },
  'self_attn.k_proj.weight': { role: 'k' },
  'self_attn.v_proj.weight': { role: 'v' },
  'self_attn.o_proj.weight': { role: 'o' },
  'mlp.gate_proj.weight': { role: 'gate' },
  'mlp.up_proj.weight': { role: 'up' },
  'mlp.down_proj.weight': { role: 'down' },
  'input_layernorm.weight': { role: 'input_norm' },
  'post_attention_layernorm.weight': { role: 'post_norm' },
};

const LLAMA_GLOBAL = { embed: 'embed_tokens.weight', lm_head: 'lm_head.weight', final_norm: 'norm.weight' } as const;

/** In order of preference when two tables match equally many tensors. */
export const NAMING_TABLES: readonly NamingTable[] = [
  { family: 'llama', decoder: true, layer: LLAMA_LAYER, global: LLAMA_GLOBAL },
  {
    family: 'phi3',
    decoder: true,
    layer: {
      ...LLAMA_LAYER,
      'self_attn.qkv_proj.weight': { fused: 'qkv' },
      'mlp.gate_up_proj.weight': { fused: 'gate_up' },
    },
    global: LLAMA_GLOBAL,
  },
  {
    family: 'gpt_neox',
    decoder: true,
    layer: {
      'attention.query_key_value.weight': { fused: 'qkv_per_head' },
      'attention.dense.weight': { role: 'o' },
      'mlp.dense_h_to_4h.weight': { role: 'fc_in' },
      'mlp.dense_4h_to_h.weight': { role: 'fc_out' },
      'input_layernorm.weight': { role: 'input_norm' },
      'post_attention_layernorm.weight': { role: 'post_norm' },
    },
    global: { embed: 'embed_in.weight', lm_head: 'embed_out.weight', final_norm: 'final_layer_norm.weight' },
  },
  {
    family: 'gpt2',
    decoder: true,
    layer: {
      'attn.c_attn.weight': { fused: 'qkv_thirds', transposed: true },
      'attn.c_proj.weight': { role: 'o', transposed: true },
      'mlp.c_fc.weight': { role: 'fc_in', transposed: true },
      'mlp.c_proj.weight': { role: 'fc_out', transposed: true },
      'ln_1.weight': { role: 'input_norm' },
      'ln_2.weight': { role: 'post_norm' },
    },
    global: { embed: 'wte.weight', lm_head: 'lm_head.weight', final_norm: 'ln_f.weight' },
  },
  {
    family: 'vit',
    decoder: false,
    layer: {
      'attention.attention.query.weight': { role: 'q' },
      'attention.attention.key.weight': { role: 'k' },
      'attention.attention.value.weight': { role: 'v' },
      'attention.output.dense.weight': { role: 'o' },
      'intermediate.dense.weight': { role: 'fc_in' },
      'output.dense.weight': { role: 'fc_out' },
      'layernorm_before.weight': { role: 'input_norm' },
      'layernorm_after.weight': { role: 'post_norm' },
      // transformers 5 names ViT's modules so in memory, which is what PEFT adapters store.
      'attention.q_proj.weight': { role: 'q' },
      'attention.k_proj.weight': { role: 'k' },
      'attention.v_proj.weight': { role: 'v' },
      'attention.o_proj.weight': { role: 'o' },
      'mlp.fc1.weight': { role: 'fc_in' },
      'mlp.fc2.weight': { role: 'fc_out' },
    },
    global: { final_norm: 'layernorm.weight', patch_embed: 'embeddings.patch_embeddings.projection.weight' },
  },
  {
    family: 'bert',
    decoder: false,
    layer: {
      'attention.self.query.weight': { role: 'q' },
      'attention.self.key.weight': { role: 'k' },
      'attention.self.value.weight': { role: 'v' },
      'attention.output.dense.weight': { role: 'o' },
      'intermediate.dense.weight': { role: 'fc_in' },
      'output.dense.weight': { role: 'fc_out' },
      // BERT is post-LN: the norm after attention sits where Llama's post_attention_layernorm
      // does; the norm after the MLP normalises the next layer's input, hence input_norm.
      'attention.output.LayerNorm.weight': { role: 'post_norm' },
      'output.LayerNorm.weight': { role: 'input_norm' },
    },
    global: { embed: 'embeddings.word_embeddings.weight', lm_head: 'cls.predictions.decoder.weight' },
  },
];

/**
 * llama.cpp's names in GGUF files (`blk.N.` layers, llama-arch.cpp). Not among NAMING_TABLES: a
 * GGUF model is mapped with the table of its `general.architecture` (ggufNamingTable), since the
 * same `ffn_up` is a plain up projection in Llama and the fused gate + up of Phi-3.
 */
const GGUF_LAYER: Record<string, LayerPattern> = {
  'attn_q.weight': { role: 'q' },
  'attn_k.weight': { role: 'k' },
  'attn_v.weight': { role: 'v' },
  'attn_qkv.weight': { fused: 'qkv' },
  'attn_output.weight': { role: 'o' },
  'ffn_gate.weight': { role: 'gate' },
  'ffn_up.weight': { role: 'up' },
  'ffn_down.weight': { role: 'down' },
  'attn_norm.weight': { role: 'input_norm' },
  'ffn_norm.weight': { role: 'post_norm' },
};

const GGUF_GLOBAL = { embed: 'token_embd.weight', lm_head: 'output.weight', final_norm: 'output_norm.weight' } as const;

/** The naming table of a GGUF model of llama.cpp architecture `arch`. */
export function ggufNamingTable(arch: string | null): NamingTable {
  if (arch === 'phi3') return { family: 'phi3', decoder: true, layer: { ...GGUF_LAYER, 'ffn_up.weight': { fused: 'gate_up' } }, global: GGUF_GLOBAL };
  return { family: 'llama', decoder: true, layer: GGUF_LAYER, global: GGUF_GLOBAL };
}

/**
 * llama.cpp architectures whose converter (convert_hf_to_gguf.py, LlamaModel and its kin) permutes
 * the rows of q and k for its rotary layout; Qwen2, Phi-3, Gemma and the rest are stored as trained.
 */
export const GGUF_PERMUTED_QK_ARCHITECTURES: ReadonlySet<string> = new Set(['llama', 'mistral', 'granite', 'granitemoe', 'deci', 'llama4']);

/** Llama-style names are shared by several families; config.json's model_type tells them apart. */
export function llamaLikeFamily(modelType: string | null): Family {
  if (!modelType) return 'llama';
  if (modelType.startsWith('mistral') || modelType.startsWith('mixtral')) return 'mistral';
  if (modelType.startsWith('qwen')) return 'qwen2';
  if (modelType.startsWith('gemma')) return 'gemma';
  return 'llama';
}

/** A tensor name split at its layer index: `<prefix>.<layer>.<suffix>`. */
export interface LayerName {
  readonly prefix: string;
  readonly layer: number;
  readonly suffix: string;
}

// The first `layers.N.` / `h.N.` / `layer.N.` / `blocks.N.` / `blk.N.` (GGUF) in the name; any prefix before it
// (`base_model.model.`, `model.language_model.`, ...) is kept as the stack's prefix.
const LAYER_NAME = /^((?:.*?\.)?(?:layers|layer|h|blocks|blk))\.(\d+)\.(.+)$/;

export function splitLayerName(name: string): LayerName | null {
  const m = LAYER_NAME.exec(name);
  if (!m) return null;
  return { prefix: m[1]!, layer: Number(m[2]), suffix: m[3]! };
}

/** The pattern of a layer suffix in any family (suffixes never conflict across tables). */
export function anyLayerPattern(suffix: string): LayerPattern | undefined {
  for (const table of NAMING_TABLES) {
    const pattern = table.layer[suffix];
    if (pattern) return pattern;
  }
  return undefined;
}

const VIT_BERT_MODULES = {
  q: 'query', k: 'key', v: 'value', o: 'attention.output.dense', fc_in: 'intermediate.dense', fc_out: 'output.dense',
} as const;

/**
 * A family's own names of its linear modules, as PEFT's target_modules gives them (a name matches
 * a module path ending in it), where they differ from MODULE_NAME. Fused q, k, v share one module.
 */
export const PEFT_MODULE_NAMES: Readonly<Partial<Record<Family, Readonly<Partial<Record<LayerRole, string>>>>>> = {
  vit: VIT_BERT_MODULES,
  bert: VIT_BERT_MODULES,
  gpt2: { q: 'c_attn', k: 'c_attn', v: 'c_attn', o: 'attn.c_proj', fc_in: 'c_fc', fc_out: 'mlp.c_proj' },
  gpt_neox: { q: 'query_key_value', k: 'query_key_value', v: 'query_key_value', o: 'attention.dense', fc_in: 'dense_h_to_4h', fc_out: 'dense_4h_to_h' },
};
