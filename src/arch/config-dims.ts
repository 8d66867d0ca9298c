/** config.json (or GGUF metadata standing in for it) read, and the model's dims resolved and checked against the shapes. */
import { BadInputError } from '../io/errors.js';
import { roleShape, storedShape, tensorInfo } from './read-role.js';
import type { TableMatch } from './table-match.js';
import type { Family, GlobalRole, LayerRole, ModelDims, RoleRef, TensorSource } from './types.js';

export type Config = Readonly<Record<string, unknown>>;

export function configSection(config: Config | null): Config | null {
  if (!config) return null;
  // Multimodal wrappers (Gemma 3, Llava, ...) keep the language model's dims in text_config.
  const text = config['text_config'];
  if (text && typeof text === 'object' && !Array.isArray(text)) return { ...config, ...(text as Config) };
  return config;
}

export function configInt(config: Config | null, keys: readonly string[]): number | null {
  if (!config) return null;
  for (const key of keys) {
    const value = config[key];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
      throw new BadInputError(`config.json: ${key} must be a positive integer, got ${JSON.stringify(value)}`);
    }
    return value;
  }
  return null;
}

export function configString(config: Config | null, key: string): string | null {
  const value = config?.[key];
  if (Array.isArray(value)) return typeof value[0] === 'string' ? value[0] : null;
  return typeof value === 'string' ? value : null;
}

function firstShape(source: TensorSource, match: TableMatch, roles: readonly LayerRole[]): [number, number] | null {
  for (const role of roles) {
    const t = match.tensors.find((x) => x.layer === 0 && x.pattern.role === role);
    if (t) return roleShape(source, { tensor: t.name, ...(t.pattern.transposed ? { transposed: true } : {}) });
  }
  return null;
}

export function resolveDims(
  source: TensorSource,
  config: Config | null,
  family: Family,
  match: TableMatch,
  global: Partial<Record<GlobalRole, RoleRef>>,
  layerCount: number,
): ModelDims {
  const embedShape = global.embed ? roleShape(source, global.embed) : null;
  const configLayers = configInt(config, ['num_hidden_layers', 'n_layer', 'num_layers']);
  if (configLayers !== null && configLayers !== layerCount) {
    throw new BadInputError(`config.json says ${configLayers} layers but the weights have ${layerCount} (${match.prefix}.0-${layerCount - 1})`);
  }
  const hidden =
    configInt(config, ['hidden_size', 'n_embd', 'd_model']) ??
    embedShape?.[1] ??
    firstShape(source, match, ['input_norm'])?.[0] ??
    firstShape(source, match, ['q', 'fc_in', 'gate'])?.[1] ??
    null;
  if (hidden === null) throw new BadInputError('cannot tell the hidden size: no config.json and no embedding, norm or q weight');
  const heads = configInt(config, ['num_attention_heads', 'n_head']);
  const kvHeads = configInt(config, ['num_key_value_heads']) ?? heads;
  const configHeadDim = configInt(config, ['head_dim']);
  if (heads !== null && configHeadDim === null && hidden % heads !== 0) {
    throw new BadInputError(`config.json: ${heads} attention heads do not divide the hidden size ${hidden} (and no head_dim is given)`);
  }
  if (heads !== null && kvHeads !== null && heads % kvHeads !== 0) {
    throw new BadInputError(`config.json: ${kvHeads} key/value heads do not divide the ${heads} attention heads`);
  }
  const headDim = configHeadDim ?? (heads !== null ? hidden / heads : null);
  const intermediate =
    configInt(config, ['intermediate_size', 'n_inner', 'ffn_dim']) ??
    (family === 'gpt2' && config !== null ? 4 * hidden : null) ??
    firstShape(source, match, ['gate', 'up', 'fc_in'])?.[0] ??
    fusedGateUpRows(source, match) ??
    null;
  const vocab = configInt(config, ['vocab_size']) ?? embedShape?.[0] ?? null;
  return { hidden, layers: layerCount, heads, kvHeads, headDim, intermediate, vocab };
}

function fusedGateUpRows(source: TensorSource, match: TableMatch): number | null {
  const t = match.tensors.find((x) => x.layer === 0 && x.pattern.fused === 'gate_up');
  return t ? storedShape(tensorInfo(source, t.name))[0] / 2 : null;
}

