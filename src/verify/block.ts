/**
 * Which kind of block verify analyses in a model: a Llama-style decoder block (RMSNorm, gated MLP;
 * layer.ts) or a LayerNorm block (ViT, BERT, GPT-2, GPT-NeoX: LayerNorm and biases, non-gated
 * GELU MLP; layernorm-layer.ts), with the roles read and the family's own module names.
 */
import { PEFT_MODULE_NAMES } from '../arch/names.js';
import type { RoleReader } from '../arch/reader.js';
import { MODULE_NAME, PLAIN_MODULE_NAME, PLAIN_ROLES, type LayerRole, type ModelMap, type ModuleName } from '../arch/types.js';
import { LineageError } from '../io/errors.js';
import { MODULES } from './layer.js';

export interface Block {
  /** Set for LayerNorm blocks; pre-norm blocks fold their norms into the linears reading them. */
  readonly layerNorm: { readonly preNorm: boolean } | null;
  /** The linear roles analysed, in report order, with their names in verify's canonical vocabulary. */
  readonly modules: ReadonlyArray<readonly [LayerRole, ModuleName]>;
  /** A module's name in the family's own vocabulary (what PEFT's target_modules would name). */
  nativeName(module: ModuleName): string;
}

/** Families whose norm follows the residual addition (post-norm): the norm output is the residual itself. */
const POST_NORM_FAMILIES: ReadonlySet<string> = new Set(['bert']);

/** True when the model's layers are LayerNorm blocks (q, k, v, o, fc_in, fc_out and two norms). */
export function isLayerNormModel(map: ModelMap): boolean {
  const layer0 = map.layers[0] ?? {};
  return Boolean(layer0.input_norm && layer0.post_norm) && PLAIN_ROLES.every((role) => layer0[role]) && !layer0.gate;
}

/** The block kind of a model; a LineageError when verify analyses neither. */
export function blockOf(reader: RoleReader): Block {
  const { family } = reader.map;
  const layer0 = reader.map.layers[0] ?? {};
  const norms = layer0.input_norm && layer0.post_norm;
  if (isLayerNormModel(reader.map)) {
    const modules = PLAIN_ROLES.map((role) => [role, PLAIN_MODULE_NAME[role]] as const);
    const native = PEFT_MODULE_NAMES[family] ?? {};
    return {
      layerNorm: { preNorm: !POST_NORM_FAMILIES.has(family) },
      modules,
      nativeName: (module) => {
        const role = modules.find(([, name]) => name === module)?.[0];
        return (role && native[role]) ?? (role ? MODULE_NAME[role] : undefined) ?? module;
      },
    };
  }
  const missing = MODULES.map(([role]) => role).filter((role) => !layer0[role]);
  if (missing.length > 0 || !norms) {
    throw new LineageError(
      `verify supports Llama-style decoders (q, k, v, o, gate, up, down with RMSNorms) and LayerNorm blocks (q, k, v, o, fc_in, fc_out with LayerNorms); ${reader.name} (family ${family}) lacks ${[...missing, ...(layer0.input_norm ? [] : ['input_norm'])].join(', ') || 'post_norm'}`,
    );
  }
  return { layerNorm: null, modules: MODULES, nativeName: (module) => module };
}
