/**
 * PEFT LoRA adapters: pair `<module>.lora_A.weight` (r x in) with `<module>.lora_B.weight`
 * (out x r) and attach the scale the adapter is merged with: W + scale * B A.
 * With fan_in_fan_out (GPT-2 Conv1D targets) PEFT still stores A and B as for a Linear layer
 * and transposes B A when merging into the (in, out) weight; since roles are read as (out, in),
 * B A applies to the role directly.
 * A factor on a fused module (GPT-2 `c_attn`, GPT-NeoX `query_key_value`, Phi-3 `qkv_proj`,
 * `gate_up_proj`) changes each role the module holds: the role's rows of B are the rows the
 * base's split (src/arch/fused.ts) gives the role in the fused weight; A is shared.
 */
import { BadInputError } from '../io/errors.js';
import { FUSED_ROLES } from './fused.js';
import { compileModulePattern, PatternSyntaxError, type ModulePattern } from './module-pattern.js';
import { anyLayerPattern, splitLayerName, type FusedLayout } from './names.js';
import { LINEAR_ROLES, MODULE_NAME, type LayerRole, type TensorSource } from './types.js';

/** One LoRA pair of an adapter file: A, B and the scale it is merged with. */
export interface LoraFactor {
  /** Module path as in the adapter file, e.g. `base_model.model.model.layers.0.self_attn.q_proj`. */
  readonly module: string;
  /** Last component of the module path, e.g. `q_proj` (what target_modules names). */
  readonly moduleName: string;
  /** Layer index, or null for modules outside the layer stack (lm_head, ...). */
  readonly layer: number | null;
  /** Canonical role, or null when the module is not one linear role (fused qkv, lm_head, ...). */
  readonly role: LayerRole | null;
  /** How the module's output rows split into roles when it is a fused module, else null. */
  readonly fused: FusedLayout | null;
  /** The roles the factor changes: its role, each role of its fused module, or none (lm_head, ...). */
  readonly roles: readonly LayerRole[];
  /** Tensor names of the factors. */
  readonly A: string;
  readonly B: string;
  readonly rank: number;
  readonly alpha: number;
  /** lora_alpha / rank, or lora_alpha / sqrt(rank) with use_rslora. */
  readonly scale: number;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly fanInFanOut: boolean;
}

export interface AdapterMap {
  readonly peftType: string;
  readonly baseModel: string | null;
  readonly useRslora: boolean;
  /** target_modules as configured: a list of names, or a regex / `all-linear` string. */
  readonly targetModules: readonly string[] | string | null;
  /** Per layer (index = layer number), the factor of each linear role the adapter changes (a fused module's factor under each of its roles). */
  readonly layers: ReadonlyArray<Readonly<Partial<Record<LayerRole, LoraFactor>>>>;
  /** Every factor pair, including those outside `layers`, in tensor-name order. */
  readonly factors: readonly LoraFactor[];
  /** Tensors that are not LoRA factors (DoRA magnitudes, modules_to_save copies, ...). */
  readonly ignored: readonly string[];
}

export interface AdapterSummary {
  readonly peftType: string;
  readonly baseModel: string | null;
  /** Distinct ranks, ascending. */
  readonly ranks: number[];
  readonly alphas: number[];
  readonly scales: number[];
  readonly useRslora: boolean;
  /** Module names the adapter actually changes (e.g. q_proj, v_proj), in canonical role order. */
  readonly targets: string[];
  readonly targetModules: readonly string[] | string | null;
  /** Layer indices with at least one factor. */
  readonly layers: number[];
  readonly factors: number;
}

const LORA_TENSOR = /^(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$/;

/** True when the source is a PEFT adapter (adapter_config.json or lora_A/lora_B tensors). */
export function isAdapter(source: TensorSource): boolean {
  if (source.config && typeof source.config['peft_type'] === 'string') return true;
  for (const name of source.tensors.keys()) if (LORA_TENSOR.test(name)) return true;
  return false;
}

function numberField(config: Readonly<Record<string, unknown>>, key: string, fallback: number): number {
  const value = config[key];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new BadInputError(`adapter_config.json: ${key} must be a positive number, got ${JSON.stringify(value)}`);
  }
  return value;
}

function patternField(config: Readonly<Record<string, unknown>>, key: string): ReadonlyArray<[ModulePattern, number]> {
  const value = config[key];
  if (value === undefined || value === null) return [];
  if (typeof value !== 'object' || Array.isArray(value)) throw new BadInputError(`adapter_config.json: ${key} must be an object`);
  return Object.entries(value as Record<string, unknown>).map(([pattern, v]) => {
    if (typeof v !== 'number' || !(v > 0)) throw new BadInputError(`adapter_config.json: ${key}.${pattern} must be a positive number`);
    try {
      return [compileModulePattern(pattern), v];
    } catch (err) {
      if (!(err instanceof PatternSyntaxError)) throw err;
      throw new BadInputError(`adapter_config.json: ${key} key ${JSON.stringify(pattern)} is not a pattern read here: ${err.message}`);
    }
  });
}

/**
 * The value of the first pattern matching the module as PEFT does: the key is a regular
 * expression that must match the whole module name or a dot-separated suffix of it.
 */
function patternValue(patterns: ReadonlyArray<[ModulePattern, number]>, modulePath: string): number | undefined {
  return patterns.find(([pattern]) => pattern.matches(modulePath))?.[1];
}

/** PEFT matches patterns against the base model's module names, without the wrapper prefix. */
function baseModulePath(module: string): string {
  return module.startsWith('base_model.model.') ? module.slice('base_model.model.'.length) : module;
}

/** Pair the LoRA factors of an adapter and attach ranks and scales from adapter_config.json. */
export function mapAdapter(source: TensorSource): AdapterMap {
  const config = source.config ?? {};
  const peftType = typeof config['peft_type'] === 'string' ? (config['peft_type'] as string) : 'LORA';
  if (peftType.toUpperCase() !== 'LORA') throw new BadInputError(`unsupported PEFT type ${peftType} (only LORA adapters are read)`);
  const defaultRank = numberField(config, 'r', 8);
  const defaultAlpha = numberField(config, 'lora_alpha', 8);
  const useRslora = config['use_rslora'] === true;
  const fanInFanOut = config['fan_in_fan_out'] === true;
  const rankPattern = patternField(config, 'rank_pattern');
  const alphaPattern = patternField(config, 'alpha_pattern');
  const rawTargets = config['target_modules'];
  const targetModules = Array.isArray(rawTargets)
    ? rawTargets.filter((t): t is string => typeof t === 'string')
    : typeof rawTargets === 'string' ? rawTargets : null;

  const pairs = new Map<string, { A?: string; B?: string }>();
  const ignored: string[] = [];
  for (const name of [...source.tensors.keys()].sort()) {
    const m = LORA_TENSOR.exec(name);
    if (!m) {
      ignored.push(name);
      continue;
    }
    const module = m[1]!;
    const entry = pairs.get(module) ?? {};
    entry[m[2] as 'A' | 'B'] = name;
    pairs.set(module, entry);
  }

  const factors: LoraFactor[] = [];
  for (const [module, { A, B }] of pairs) {
    if (!A || !B) {
      const present = (A ?? B)!;
      throw new BadInputError(`LoRA factor without its ${A ? 'lora_B' : 'lora_A'} partner`, { tensor: present });
    }
    const shapeA = source.tensors.get(A)!.shape;
    const shapeB = source.tensors.get(B)!.shape;
    if (shapeA.length !== 2) throw new BadInputError(`lora_A must be 2-D (rank x in), got [${shapeA.join(', ')}]`, { tensor: A });
    if (shapeB.length !== 2) throw new BadInputError(`lora_B must be 2-D (out x rank), got [${shapeB.join(', ')}]`, { tensor: B });
    const rank = shapeA[0]!;
    if (shapeB[1] !== rank) {
      throw new BadInputError(`lora_B is [${shapeB.join(', ')}] but its lora_A has rank ${rank} ([${shapeA.join(', ')}])`, { tensor: B });
    }
    const basePath = baseModulePath(module);
    const configuredRank = patternValue(rankPattern, basePath) ?? defaultRank;
    if (configuredRank !== rank) {
      throw new BadInputError(`lora_A has rank ${rank} but adapter_config.json gives r = ${configuredRank} for ${basePath}`, { tensor: A });
    }
    const alpha = patternValue(alphaPattern, basePath) ?? defaultAlpha;
    const split = splitLayerName(module + '.weight');
    const pattern = split ? anyLayerPattern(split.suffix) : undefined;
    const role = pattern?.role && !pattern.fused && LINEAR_ROLES.includes(pattern.role) ? pattern.role : null;
    const fused = pattern?.fused ?? null;
    factors.push({
      module,
      moduleName: module.slice(module.lastIndexOf('.') + 1),
      layer: split && pattern ? split.layer : null,
      role,
      fused,
      roles: fused ? FUSED_ROLES[fused] : role ? [role] : [],
      A,
      B,
      rank,
      alpha,
      scale: useRslora ? alpha / Math.sqrt(rank) : alpha / rank,
      inFeatures: shapeA[1]!,
      outFeatures: shapeB[0]!,
      fanInFanOut,
    });
  }

  const layerCount = factors.reduce((max, f) => (f.layer !== null && f.roles.length > 0 ? Math.max(max, f.layer + 1) : max), 0);
  const layers: Array<Partial<Record<LayerRole, LoraFactor>>> = Array.from({ length: layerCount }, () => ({}));
  for (const f of factors) {
    if (f.layer === null) continue;
    const layer = layers[f.layer]!;
    for (const role of f.roles) {
      if (layer[role]) throw new BadInputError(`two LoRA factors for ${role} of layer ${f.layer} (a second layer stack?)`, { tensor: f.A });
      layer[role] = f;
    }
  }
  const baseModel = typeof config['base_model_name_or_path'] === 'string' ? (config['base_model_name_or_path'] as string) : null;
  return { peftType, baseModel, useRslora, targetModules, layers, factors, ignored };
}

const ascending = (values: Iterable<number>): number[] => [...new Set(values)].sort((a, b) => a - b);

/** Ranks, alphas, scales, targeted modules and layers of an adapter, for reports. */
export function describeAdapter(adapter: AdapterMap): AdapterSummary {
  const roleOrder = (name: string): number => {
    const index = LINEAR_ROLES.findIndex((role) => MODULE_NAME[role] === name);
    return index < 0 ? LINEAR_ROLES.length : index;
  };
  const targets = [...new Set(adapter.factors.map((f) => f.moduleName))].sort(
    (a, b) => roleOrder(a) - roleOrder(b) || (a < b ? -1 : a > b ? 1 : 0),
  );
  return {
    peftType: adapter.peftType,
    baseModel: adapter.baseModel,
    ranks: ascending(adapter.factors.map((f) => f.rank)),
    alphas: ascending(adapter.factors.map((f) => f.alpha)),
    scales: ascending(adapter.factors.map((f) => f.scale)),
    useRslora: adapter.useRslora,
    targets,
    targetModules: adapter.targetModules,
    layers: ascending(adapter.factors.flatMap((f) => (f.layer === null ? [] : [f.layer]))),
    factors: adapter.factors.length,
  };
}

