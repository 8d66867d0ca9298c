/** Tensor names to canonical roles and dims: the model map every analysis reads through. */
import { BadInputError } from '../io/errors.js';
import { compareArchitectures } from './compare.js';
import { configInt, configSection, configString, resolveDims, type Config } from './config-dims.js';
import { splitFused, type MutableLayer } from './fused.js';
import { ggufConfig, unpermutedQkRows } from './gguf.js';
import { GGUF_PERMUTED_QK_ARCHITECTURES, ggufNamingTable, llamaLikeFamily, splitLayerName } from './names.js';
import { layerRoleRef, readRole, readRolePart, roleShape, storedShape, tensorInfo } from './read-role.js';
import { checkShapes } from './shapes.js';
import { bestMatch, findGlobal } from './table-match.js';
import { GLOBAL_ROLES, type Family, type GlobalRole, type LayerRole, type ModelDims, type ModelMap, type RoleRef, type TensorSource } from './types.js';

// Reading roles and comparing maps live in their own files; re-exported here, where they were first.
export { compareArchitectures, layerRoleRef, readRole, readRolePart, roleShape };

/** Map tensor names to canonical roles and dims; checks config.json against the shapes. */
export function mapModel(source: TensorSource): ModelMap {
  const names = [...source.tensors.keys()];
  // A GGUF model's metadata stands in for config.json, and its architecture picks the names table.
  const gguf = source.ggufMetadata ?? null;
  const rawConfig = gguf ? ggufConfig(gguf, source.path) : source.config;
  const config = configSection(rawConfig);
  const modelType = configString(config, 'model_type');
  const architecture = configString(rawConfig, 'architectures') ?? modelType;
  const match = gguf ? bestMatch(names, [ggufNamingTable(modelType)]) : bestMatch(names);
  if (!match) return genericMap(source, config, architecture, modelType);

  const { table, prefix } = match;
  const family: Family = table.family === 'llama' ? llamaLikeFamily(modelType) : table.family;
  const stackParent = prefix.slice(0, prefix.lastIndexOf('.') + 1);
  const global: Partial<Record<GlobalRole, RoleRef>> = {};
  for (const role of GLOBAL_ROLES) {
    const suffix = table.global[role];
    const tensor = suffix === undefined ? undefined : findGlobal(names, suffix, stackParent);
    // A patch projection is stored (hidden, channels, p, p): its rows are the residual dimensions.
    if (tensor) global[role] = { tensor, ...(role === 'patch_embed' ? { transposed: true } : {}) };
  }

  const layerCount = Math.max(...match.tensors.map((t) => t.layer)) + 1;
  const layerHas = new Array<boolean>(layerCount).fill(false);
  for (const t of match.tensors) layerHas[t.layer] = true;
  const missing = layerHas.indexOf(false);
  if (missing >= 0) throw new BadInputError(`layer ${missing} of ${prefix} has no weights (layers 0-${layerCount - 1} expected)`);

  const dims = resolveDims(source, config, family, match, global, layerCount);
  const layers: MutableLayer[] = Array.from({ length: layerCount }, () => ({}));
  for (const t of match.tensors) {
    const layer = layers[t.layer]!;
    if (t.pattern.fused) Object.assign(layer, splitFused(source, t, t.pattern.fused, dims));
    else layer[t.pattern.role!] = { tensor: t.name, ...(t.pattern.transposed ? { transposed: true } : {}) };
  }
  if (gguf && modelType !== null && GGUF_PERMUTED_QK_ARCHITECTURES.has(modelType)) unpermuteQk(source, layers, dims);

  const tieFlag = config?.['tie_word_embeddings'];
  let tiedEmbeddings = false;
  if (table.decoder && global.embed && (!global.lm_head || tieFlag === true)) {
    global.lm_head = { tensor: global.embed.tensor };
    tiedEmbeddings = true;
  }

  const withShapes = (ref: RoleRef): RoleRef => ({ ...ref, shape: roleShape(source, ref) });
  for (const role of Object.keys(global) as GlobalRole[]) global[role] = withShapes(global[role]!);
  for (const layer of layers) for (const role of Object.keys(layer) as LayerRole[]) layer[role] = withShapes(layer[role]!);

  checkShapes(source, dims, global, layers);
  const layerBiases = layers.map((layer) => biasesOf(source, layer));
  const used = new Set<string>();
  for (const ref of Object.values(global)) used.add(ref.tensor);
  for (const layer of layers) for (const ref of Object.values(layer)) used.add(ref.tensor);
  const unmapped = names.filter((n) => !used.has(n) && source.tensors.get(n)!.shape.length === 2).sort();

  return {
    family, dims, tiedEmbeddings, global, layers, unmapped, layerPrefix: prefix, architecture, modelType,
    ...(layerBiases.some((b) => Object.keys(b).length > 0) ? { layerBiases } : {}),
  };
}

/**
 * The bias of each role of a layer stored with one: `<module>.bias` beside `<module>.weight`, 1-D,
 * one value per output row of the whole (fused) tensor, read with the role's rows.
 */
function biasesOf(source: TensorSource, layer: MutableLayer): MutableLayer {
  const biases: MutableLayer = {};
  for (const [role, ref] of Object.entries(layer) as [LayerRole, RoleRef][]) {
    if (!ref.tensor.endsWith('.weight')) continue;
    const tensor = ref.tensor.slice(0, -'.weight'.length) + '.bias';
    const info = source.tensors.get(tensor);
    if (!info) continue;
    const [storedRows, storedCols] = storedShape(tensorInfo(source, ref.tensor));
    const outFull = ref.transposed ? storedCols : storedRows;
    if (info.shape.length !== 1 || info.shape[0] !== outFull) {
      throw new BadInputError(`bias of ${role} must be 1-D of ${outFull} values, got shape [${info.shape.join(', ')}]`, { tensor, file: info.file });
    }
    const bias: RoleRef = { tensor, ...(ref.rows ? { rows: ref.rows } : {}), ...(ref.rowRanges ? { rowRanges: ref.rowRanges } : {}) };
    biases[role] = { ...bias, shape: roleShape(source, bias) };
  }
  return biases;
}

/** q and k of a GGUF Llama-style model read in the trained row order (see unpermutedQkRows). */
function unpermuteQk(source: TensorSource, layers: MutableLayer[], dims: ModelDims): void {
  for (const layer of layers) {
    for (const [role, heads] of [['q', dims.heads], ['k', dims.kvHeads]] as const) {
      const ref = layer[role];
      if (!ref || ref.rows || ref.rowRanges || ref.transposed) continue;
      if (heads === null) throw new BadInputError(`undoing llama.cpp's q/k row order needs the head counts (attention.head_count metadata)`, { tensor: ref.tensor });
      layer[role] = { tensor: ref.tensor, rowRanges: unpermutedQkRows(storedShape(tensorInfo(source, ref.tensor))[0], heads, ref.tensor) };
    }
  }
}

function genericMap(source: TensorSource, config: Config | null, architecture: string | null, modelType: string | null): ModelMap {
  const matrices = [...source.tensors.values()].filter((t) => t.shape.length === 2);
  const layerIndices = [...source.tensors.keys()].map((n) => splitLayerName(n)?.layer ?? -1);
  const dims: ModelDims = {
    hidden: configInt(config, ['hidden_size', 'n_embd', 'd_model']) ?? (matrices.length ? Math.min(...matrices.map((t) => t.shape[1]!)) : 0),
    layers: configInt(config, ['num_hidden_layers', 'n_layer', 'num_layers']) ?? Math.max(-1, ...layerIndices) + 1,
    heads: configInt(config, ['num_attention_heads', 'n_head']),
    kvHeads: configInt(config, ['num_key_value_heads']) ?? configInt(config, ['num_attention_heads', 'n_head']),
    headDim: configInt(config, ['head_dim']),
    intermediate: configInt(config, ['intermediate_size', 'n_inner', 'ffn_dim']),
    vocab: configInt(config, ['vocab_size']),
  };
  return {
    family: 'generic',
    dims,
    tiedEmbeddings: false,
    global: {},
    layers: [],
    unmapped: matrices.map((t) => t.name).sort(),
    architecture,
    modelType,
  };
}
