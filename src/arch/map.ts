import { BadInputError } from '../io/errors.js';
import { isQuantType } from '../io/gguf-quants.js';
import { checkIndices } from '../io/source.js';
import type { TensorInfo } from '../io/types.js';
import { ggufConfig, unpermutedQkRows } from './gguf.js';
import {
  GGUF_PERMUTED_QK_ARCHITECTURES,
  ggufNamingTable,
  NAMING_TABLES,
  llamaLikeFamily,
  splitLayerName,
  type FusedLayout,
  type LayerPattern,
  type NamingTable,
} from './names.js';
import type {
  Family,
  GlobalRole,
  LayerRole,
  ModelDims,
  ModelMap,
  RoleRef,
  TensorSource,
  Weight,
  WeightPart,
} from './types.js';

type Config = Readonly<Record<string, unknown>>;
type MutableLayer = Partial<Record<LayerRole, RoleRef>>;

/** A tensor viewed as 2-D, as the io layer does: shape[0] x product(rest) (1-D: n x 1). */
function storedShape(info: TensorInfo): [number, number] {
  const rows = info.shape.length === 0 ? 1 : info.shape[0]!;
  let cols = 1;
  for (let i = 1; i < info.shape.length; i++) cols *= info.shape[i]!;
  return [rows, cols];
}

function tensorInfo(source: TensorSource, name: string): TensorInfo {
  const info = source.tensors.get(name);
  if (!info) throw new BadInputError('tensor not found in the model', { tensor: name });
  return info;
}

/** (out, in) size of a role as `readRole` returns it, computed from the header alone. */
export function roleShape(source: TensorSource, ref: RoleRef): [number, number] {
  const [storedRows, storedCols] = storedShape(tensorInfo(source, ref.tensor));
  const [outFull, inFeatures] = ref.transposed ? [storedCols, storedRows] : [storedRows, storedCols];
  const ranges = roleRanges(ref, outFull);
  return [ranges.reduce((sum, [s, e]) => sum + (e - s), 0), inFeatures];
}

function roleRanges(ref: RoleRef, outFull: number): ReadonlyArray<readonly [number, number]> {
  if (ref.rowRanges) return ref.rowRanges;
  if (ref.rows) return [ref.rows];
  return [[0, outFull]];
}

/**
 * Decode a role's weight to float32 (out, in): only the rows it needs from a fused tensor,
 * and the transpose of Conv1D storage, streamed block by block so memory stays bounded by
 * the result. `into` (of the role's size) is filled instead of a new array.
 */
export function readRole(source: TensorSource, ref: RoleRef, into?: Float32Array): Weight {
  const info = tensorInfo(source, ref.tensor);
  const [storedRows, storedCols] = storedShape(info);
  const [rows, cols] = roleShape(source, ref);
  if (into && into.length !== rows * cols) throw new RangeError(`${ref.tensor}: ${rows}x${cols} role read into ${into.length} values`);
  // Every element is written below, so a reused buffer needs no clearing.
  const data = into ?? new Float32Array(rows * cols);
  const variance = quantizedVariance(source, info, ref, rows * cols);
  if (!ref.transposed) {
    let offset = 0;
    for (const [start, end] of roleRanges(ref, storedRows)) {
      checkRange(ref, start, end, storedRows);
      const at = offset, to = offset + (end - start) * cols;
      if (variance) source.readRowsWithVarianceInto!(ref.tensor, start, end, data.subarray(at, to), variance.subarray(at, to));
      else source.readRowsInto(ref.tensor, start, end, data.subarray(at, to));
      offset = to;
    }
  } else {
    // Logical row j is stored column j: walk stored rows (= logical columns) in blocks.
    const ranges = roleRanges(ref, storedCols);
    for (const [start, end] of ranges) checkRange(ref, start, end, storedCols);
    for (const block of source.rowBlocks(ref.tensor)) {
      const blockData = block.data;
      let outRow = 0;
      for (const [start, end] of ranges) {
        for (let storedCol = start; storedCol < end; storedCol++, outRow++) {
          const outBase = outRow * cols;
          for (let r = block.rowStart; r < block.rowEnd; r++) {
            data[outBase + r] = blockData[(r - block.rowStart) * storedCols + storedCol]!;
          }
        }
      }
    }
  }
  return { rows, cols, data, dtype: info.dtype, tensor: ref.tensor, file: info.file, ...(variance ? { variance } : {}) };
}

/**
 * A role's rounding variances, for block-quantized storage read from a source that gives them
 * (null otherwise: float storage's noise floor is its dtype's grid). A transposed role is never
 * quantized (GGUF stores every weight (out, in)).
 */
function quantizedVariance(source: TensorSource, info: TensorInfo, ref: RoleRef, length: number): Float32Array | null {
  return isQuantType(info.dtype) && !ref.transposed && source.readRowsWithVarianceInto && source.readSelectionWithVarianceInto
    ? new Float32Array(length) : null;
}

/**
 * Part of a role's (out, in) weight: the rows and columns in `part`, each in the order given (null:
 * all). Only the rows kept are read and only the columns kept decoded, so a sample of a wide
 * matrix's columns costs the read of its bytes, not their decode. A transposed (Conv1D) role is
 * read whole first (memory of one role), then picked. `into` (of the part's size) is filled
 * instead of a new array.
 */
export function readRolePart(source: TensorSource, ref: RoleRef, part: WeightPart, into?: Float32Array): Weight {
  const [rows, cols] = roleShape(source, ref);
  checkIndices(part.rows, rows, 'row', ref.tensor);
  checkIndices(part.cols, cols, 'column', ref.tensor);
  const keptRows = part.rows ? part.rows.length : rows, keptCols = part.cols ? part.cols.length : cols;
  if (into && into.length !== keptRows * keptCols) throw new RangeError(`${ref.tensor}: ${keptRows}x${keptCols} part read into ${into.length} values`);
  // Every element is written below, so a reused buffer needs no clearing.
  const data = into ?? new Float32Array(keptRows * keptCols);
  if (ref.transposed) {
    const whole = readRole(source, ref);
    for (let i = 0; i < keptRows; i++) {
      const from = (part.rows ? part.rows[i]! : i) * cols;
      for (let j = 0; j < keptCols; j++) data[i * keptCols + j] = whole.data[from + (part.cols ? part.cols[j]! : j)]!;
    }
    return { ...whole, rows: keptRows, cols: keptCols, data };
  }
  const info = tensorInfo(source, ref.tensor);
  const ranges = roleRanges(ref, storedShape(info)[0]);
  for (const [start, end] of ranges) checkRange(ref, start, end, storedShape(info)[0]);
  // Logical rows of a fused tensor's slices are stored rows of its ranges.
  const whole = ranges.length === 1 && ranges[0]![0] === 0 && ranges[0]![1] === rows;
  const storedRows = whole ? part.rows : storedRowsOf(ranges, part.rows ?? Int32Array.from({ length: rows }, (_, i) => i));
  const variance = quantizedVariance(source, info, ref, data.length);
  if (variance) source.readSelectionWithVarianceInto!(ref.tensor, storedRows, part.cols, data, variance);
  else source.readSelectionInto(ref.tensor, storedRows, part.cols, data);
  return { rows: keptRows, cols: keptCols, data, dtype: info.dtype, tensor: ref.tensor, file: info.file, ...(variance ? { variance } : {}) };
}

/** The stored row of each logical row, for a role made of the row ranges of a tensor. */
function storedRowsOf(ranges: ReadonlyArray<readonly [number, number]>, logical: ArrayLike<number>): Int32Array {
  const starts: number[] = [];
  let total = 0;
  for (const [start, end] of ranges) {
    starts.push(total);
    total += end - start;
  }
  // Binary search: a role made of one-row ranges (GGUF q/k) has as many ranges as rows.
  return Int32Array.from(logical, (l) => {
    let lo = 0, hi = ranges.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= l) lo = mid;
      else hi = mid - 1;
    }
    return ranges[lo]![0] + (l - starts[lo]!);
  });
}

function checkRange(ref: RoleRef, start: number, end: number, limit: number): void {
  if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end && end <= limit)) {
    throw new BadInputError(`row range [${start}, ${end}) outside the tensor's ${limit} rows`, { tensor: ref.tensor });
  }
}

/** The role of one layer; throws a BadInputError when the model has no such role there. */
export function layerRoleRef(map: ModelMap, layer: number, role: LayerRole): RoleRef {
  if (!(Number.isInteger(layer) && layer >= 0 && layer < map.layers.length)) {
    throw new BadInputError(`layer ${layer} does not exist (the model has ${map.layers.length} layers)`);
  }
  const ref = map.layers[layer]![role];
  if (!ref) throw new BadInputError(`layer ${layer} has no ${role} weight (${map.family} model)`);
  return ref;
}

// ---------------------------------------------------------------------------------------
// Config reading

function configSection(config: Config | null): Config | null {
  if (!config) return null;
  // Multimodal wrappers (Gemma 3, Llava, ...) keep the language model's dims in text_config.
  const text = config['text_config'];
  if (text && typeof text === 'object' && !Array.isArray(text)) return { ...config, ...(text as Config) };
  return config;
}

function configInt(config: Config | null, keys: readonly string[]): number | null {
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

function configString(config: Config | null, key: string): string | null {
  const value = config?.[key];
  if (Array.isArray(value)) return typeof value[0] === 'string' ? value[0] : null;
  return typeof value === 'string' ? value : null;
}

// ---------------------------------------------------------------------------------------
// Mapping

interface LayerTensor {
  readonly name: string;
  readonly layer: number;
  readonly pattern: LayerPattern;
}

interface TableMatch {
  readonly table: NamingTable;
  readonly prefix: string;
  readonly tensors: readonly LayerTensor[];
}

/** The naming table and layer stack matching most tensors (ties: earlier table, first stack). */
function bestMatch(names: readonly string[], tables: readonly NamingTable[] = NAMING_TABLES): TableMatch | null {
  let best: TableMatch | null = null;
  for (const table of tables) {
    const byPrefix = new Map<string, LayerTensor[]>();
    for (const name of names) {
      const split = splitLayerName(name);
      if (!split) continue;
      const pattern = table.layer[split.suffix];
      if (!pattern) continue;
      let list = byPrefix.get(split.prefix);
      if (!list) byPrefix.set(split.prefix, (list = []));
      list.push({ name, layer: split.layer, pattern });
    }
    for (const [prefix, tensors] of byPrefix) {
      // A stack must hold a layer-defining tensor, not only norms shared with other tables.
      if (!tensors.some((t) => t.pattern.fused || isLinear(t.pattern.role))) continue;
      if (!best || tensors.length > best.tensors.length) best = { table, prefix, tensors };
    }
  }
  return best;
}

function isLinear(role: LayerRole | undefined): boolean {
  return role !== undefined && role !== 'input_norm' && role !== 'post_norm';
}

/**
 * Find a global tensor by suffix outside the layer stack, preferring the one beside the stack
 * (`model.language_model.norm.weight` for stack `model.language_model.layers`), else the shortest.
 */
function findGlobal(names: readonly string[], suffix: string, stackParent: string): string | undefined {
  const candidates = names.filter((n) => (n === suffix || n.endsWith('.' + suffix)) && !splitLayerName(n));
  if (candidates.length === 0) return undefined;
  const beside = candidates.find((n) => n === stackParent + suffix);
  if (beside) return beside;
  return [...candidates].sort((a, b) => a.length - b.length || (a < b ? -1 : 1))[0];
}

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
  for (const role of ['embed', 'lm_head', 'final_norm'] as const) {
    const suffix = table.global[role];
    const tensor = suffix === undefined ? undefined : findGlobal(names, suffix, stackParent);
    if (tensor) global[role] = { tensor };
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
  const used = new Set<string>();
  for (const ref of Object.values(global)) used.add(ref.tensor);
  for (const layer of layers) for (const ref of Object.values(layer)) used.add(ref.tensor);
  const unmapped = names.filter((n) => !used.has(n) && source.tensors.get(n)!.shape.length === 2).sort();

  return { family, dims, tiedEmbeddings, global, layers, unmapped, layerPrefix: prefix, architecture, modelType };
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

function firstShape(source: TensorSource, match: TableMatch, roles: readonly LayerRole[]): [number, number] | null {
  for (const role of roles) {
    const t = match.tensors.find((x) => x.layer === 0 && x.pattern.role === role);
    if (t) return roleShape(source, { tensor: t.name, ...(t.pattern.transposed ? { transposed: true } : {}) });
  }
  return null;
}

function resolveDims(
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

/** Row ranges of the roles held by a fused tensor, checked against its size. */
function splitFused(source: TensorSource, t: LayerTensor, layout: FusedLayout, dims: ModelDims): MutableLayer {
  const transposed = t.pattern.transposed === true;
  const [storedRows, storedCols] = storedShape(tensorInfo(source, t.name));
  const outRows = transposed ? storedCols : storedRows;
  const ref = (rows: readonly [number, number]): RoleRef => ({ tensor: t.name, rows, ...(transposed ? { transposed: true } : {}) });
  const expect = (expected: number, what: string): void => {
    if (outRows !== expected) {
      throw new BadInputError(`fused tensor has ${outRows} output rows, expected ${expected} (${what})`, { tensor: t.name });
    }
  };
  switch (layout) {
    case 'gate_up': {
      const inter = dims.intermediate ?? outRows / 2;
      expect(2 * inter, `gate + up of ${inter} rows each`);
      return { gate: ref([0, inter]), up: ref([inter, 2 * inter]) };
    }
    case 'qkv_thirds': {
      if (outRows % 3 !== 0) expect(3 * Math.round(outRows / 3), 'q, k, v of equal size');
      const third = outRows / 3;
      return { q: ref([0, third]), k: ref([third, 2 * third]), v: ref([2 * third, outRows]) };
    }
    case 'qkv': {
      if (dims.heads === null || dims.headDim === null) {
        // Without head counts, only equal thirds (no grouped-query attention) can be assumed.
        if (outRows % 3 !== 0) expect(3 * Math.round(outRows / 3), 'q, k, v of equal size; config.json has no head counts');
        const third = outRows / 3;
        return { q: ref([0, third]), k: ref([third, 2 * third]), v: ref([2 * third, outRows]) };
      }
      const q = dims.heads * dims.headDim;
      const kv = (dims.kvHeads ?? dims.heads) * dims.headDim;
      expect(q + 2 * kv, `${dims.heads} query and ${dims.kvHeads} kv heads of ${dims.headDim}`);
      return { q: ref([0, q]), k: ref([q, q + kv]), v: ref([q + kv, q + 2 * kv]) };
    }
    case 'qkv_per_head': {
      if (dims.heads === null || dims.headDim === null) {
        throw new BadInputError('splitting query_key_value needs num_attention_heads in config.json', { tensor: t.name });
      }
      const { heads, headDim } = dims;
      expect(3 * heads * headDim, `${heads} heads x [q, k, v] of ${headDim}`);
      const part = (k: number): Array<readonly [number, number]> =>
        Array.from({ length: heads }, (_, h) => [(3 * h + k) * headDim, (3 * h + k + 1) * headDim] as const);
      return {
        q: { tensor: t.name, rowRanges: part(0) },
        k: { tensor: t.name, rowRanges: part(1) },
        v: { tensor: t.name, rowRanges: part(2) },
      };
    }
  }
}

/** (out, in) shapes each role must have given the dims; null = not known, not checked. */
function expectedShape(role: LayerRole | GlobalRole, dims: ModelDims): [number | null, number | null] {
  const { hidden, heads, kvHeads, headDim, intermediate, vocab } = dims;
  const qRows = heads !== null && headDim !== null ? heads * headDim : null;
  const kvRows = kvHeads !== null && headDim !== null ? kvHeads * headDim : null;
  switch (role) {
    case 'q': return [qRows, hidden];
    case 'k': case 'v': return [kvRows, hidden];
    case 'o': return [hidden, qRows];
    case 'gate': case 'up': case 'fc_in': return [intermediate, hidden];
    case 'down': case 'fc_out': return [hidden, intermediate];
    case 'input_norm': case 'post_norm': case 'final_norm': return [hidden, 1];
    case 'embed': case 'lm_head': return [vocab, hidden];
  }
}

function checkShapes(
  source: TensorSource,
  dims: ModelDims,
  global: Partial<Record<GlobalRole, RoleRef>>,
  layers: readonly MutableLayer[],
): void {
  const check = (role: LayerRole | GlobalRole, ref: RoleRef, where: string): void => {
    // Viewed as 2-D any tensor has a shape; a weight that is not stored as one is still malformed.
    const info = tensorInfo(source, ref.tensor);
    const storedRank = role === 'input_norm' || role === 'post_norm' || role === 'final_norm' ? 1 : 2;
    if (info.shape.length !== storedRank) {
      throw new BadInputError(`${role} weight${where} must be ${storedRank}-D, got shape [${info.shape.join(', ')}]`, { tensor: ref.tensor, file: info.file });
    }
    const [rows, cols] = ref.shape!;
    const [wantRows, wantCols] = expectedShape(role, dims);
    if ((wantRows !== null && rows !== wantRows) || (wantCols !== null && cols !== wantCols)) {
      const want = `${wantRows ?? '?'}x${wantCols ?? '?'}`;
      throw new BadInputError(
        `${role} weight${where} is ${rows}x${cols} but the model's dims (config.json or embedding) need ${want}`,
        { tensor: ref.tensor, file: tensorInfo(source, ref.tensor).file },
      );
    }
  };
  for (const [role, ref] of Object.entries(global) as [GlobalRole, RoleRef][]) check(role, ref, '');
  layers.forEach((layer, i) => {
    for (const [role, ref] of Object.entries(layer) as [LayerRole, RoleRef][]) check(role, ref, ` of layer ${i}`);
  });
}

// ---------------------------------------------------------------------------------------
// Comparison

const DIM_WORDS: ReadonlyArray<[keyof ModelDims, string]> = [
  ['hidden', 'hidden size'],
  ['layers', 'layer count'],
  ['heads', 'attention heads'],
  ['kvHeads', 'key/value heads'],
  ['headDim', 'head dim'],
  ['intermediate', 'intermediate (MLP) size'],
  ['vocab', 'vocabulary size'],
];

/** Plain-words reasons why two models cannot be compared weight by weight; empty when they can. */
export function compareArchitectures(a: ModelMap, b: ModelMap): string[] {
  const problems: string[] = [];
  for (const [key, words] of DIM_WORDS) {
    const x = a.dims[key];
    const y = b.dims[key];
    if (x !== null && y !== null && x !== y) problems.push(`${words} differs: ${x} vs ${y}`);
  }
  const shapeText = (ref: RoleRef | undefined): string => (ref?.shape ? ref.shape.join('x') : ref ? '?' : 'absent');
  for (const role of ['embed', 'lm_head', 'final_norm'] as const) {
    const x = a.global[role];
    const y = b.global[role];
    if (!x && !y) continue;
    if (!x || !y || (x.shape && y.shape && x.shape.join('x') !== y.shape.join('x'))) {
      problems.push(`${role} weight: ${shapeText(x)} vs ${shapeText(y)}`);
    }
  }
  // One line per role, naming the first layer and how many differ, so 80 layers stay readable.
  const layerCount = Math.min(a.layers.length, b.layers.length);
  const byRole = new Map<string, { first: number; count: number; text: string }>();
  for (let i = 0; i < layerCount; i++) {
    const la = a.layers[i]!;
    const lb = b.layers[i]!;
    const roles = new Set([...Object.keys(la), ...Object.keys(lb)] as LayerRole[]);
    for (const role of roles) {
      const x = la[role];
      const y = lb[role];
      const differs = !x || !y || (x.shape !== undefined && y.shape !== undefined && x.shape.join('x') !== y.shape.join('x'));
      if (!differs) continue;
      const seen = byRole.get(role);
      if (seen) seen.count++;
      else byRole.set(role, { first: i, count: 1, text: `${shapeText(x)} vs ${shapeText(y)}` });
    }
  }
  for (const [role, { first, count, text }] of byRole) {
    problems.push(`${role} weight of layer ${first}: ${text}${count > 1 ? ` (${count} layers differ)` : ''}`);
  }
  return problems;
}
