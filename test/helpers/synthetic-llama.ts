/**
 * Synthetic Llama checkpoints written as Hugging Face folders, for tests and benchmarks.
 *
 * Families for the tree: heavy-tailed (Laplace) random roots, LoRA children (parent + U diag(s) V^T
 * on some modules, orthonormal U, V, so every one of the r directions stands clear of the rounding
 * noise), full fine-tunes (parent + dense Gaussian update), stored in bf16 or f32. Children are
 * built from the parent's stored (rounded) values, as a fine-tune of a downloaded checkpoint would be.
 *
 * Single models for verify: a complete random base (embed, untied lm_head, norms, GQA attention),
 * LoRA and full fine-tune children, and the function-preserving obfuscations of the project's test
 * zoo generator (same kinds, same order, same semantics, GQA aware), plus PEFT adapter folders.
 * Everything is seeded, so equal seeds give equal models.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MODULE_NAMES, type ModuleName } from '../../src/arch/types.js';
import { roundToDtype } from '../../src/io/dtypes.js';
import type { DType } from '../../src/io/types.js';
import { orthonormalize } from '../../src/linalg/qr.js';
import { Rng } from '../../src/linalg/rng.js';
import { writeModelFolder, writeSafetensors, type FixtureTensor } from './safetensors-writer.js';

export interface LlamaDims {
  readonly hidden: number;
  readonly intermediate: number;
  readonly layers: number;
  readonly heads: number;
}

export const MODULES = MODULE_NAMES;
export type Module = ModuleName;

export type FamilySpec =
  | { readonly name: string; readonly kind: 'root'; readonly dtype?: 'BF16' | 'F16' | 'F32' }
  | { readonly name: string; readonly kind: 'full'; readonly parent: string; readonly scale?: number; readonly dtype?: 'BF16' | 'F16' | 'F32' }
  | {
      readonly name: string; readonly kind: 'lora'; readonly parent: string; readonly rank: number | ((layer: number, module: Module) => number);
      readonly modules: readonly Module[]; readonly dtype?: 'BF16' | 'F16' | 'F32';
    };

/**
 * A merge computed from the parents as stored, the way mergekit computes it: linear
 * sum w_i P_i; task arithmetic B + lambda sum w_i (P_i - B); TIES: each task vector trimmed to its
 * `density` largest magnitudes, the sign elected by the weighted sum, agreeing entries averaged
 * (weighted), times lambda; DARE: entries kept with probability `density` and divided by it, then
 * B + lambda sum w_i tau_i.
 */
export interface MergeSpec {
  readonly name: string;
  readonly kind: 'merge';
  readonly method: 'linear' | 'task_arithmetic' | 'ties' | 'dare';
  readonly parents: readonly string[];
  readonly weights?: readonly number[];
  /** Task arithmetic, TIES and DARE. */
  readonly base?: string;
  readonly density?: number;
  readonly lambda?: number;
  readonly dtype?: 'BF16' | 'F32';
}

type Weights = Map<string, { shape: [number, number]; data: Float32Array }>;

function shapes(d: LlamaDims): Record<Module, [number, number]> {
  return {
    q_proj: [d.hidden, d.hidden], k_proj: [d.hidden, d.hidden], v_proj: [d.hidden, d.hidden], o_proj: [d.hidden, d.hidden],
    gate_proj: [d.intermediate, d.hidden], up_proj: [d.intermediate, d.hidden], down_proj: [d.hidden, d.intermediate],
  };
}

/** Full tensor name of a linear module of a layer, e.g. `model.layers.0.self_attn.q_proj.weight`. */
export function tensorName(layer: number, module: Module): string {
  return `${modulePath(layer, module)}.weight`;
}

/** Module path without `.weight`, as PEFT names it under `base_model.model.`. */
export function modulePath(layer: number, module: Module): string {
  const block = module === 'gate_proj' || module === 'up_proj' || module === 'down_proj' ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${block}.${module}`;
}

function laplace(rng: Rng): number {
  const u = rng.uniform() - 0.5;
  return -Math.sign(u) * Math.log(1 - 2 * Math.abs(u) || Number.MIN_VALUE);
}

function rms(values: Float32Array): number {
  let s = 0;
  for (const v of values) s += v * v;
  return Math.sqrt(s / values.length);
}

/** Builds every model of `specs` (parents first) and writes each to dir/name. Returns the folders. */
export function writeFamily(dir: string, specs: ReadonlyArray<FamilySpec | MergeSpec>, dims: LlamaDims, seed: number): Map<string, string> {
  const rng = new Rng(seed);
  const models = new Map<string, Weights>();
  const folders = new Map<string, string>();
  const shape = shapes(dims);
  for (const spec of specs) {
    const dtype = spec.dtype ?? 'BF16';
    const weights: Weights = new Map();
    for (let layer = 0; layer < dims.layers; layer++) {
      for (const module of MODULES) {
        const name = tensorName(layer, module);
        const [rows, cols] = shape[module];
        let data: Float32Array;
        if (spec.kind === 'root') {
          data = new Float32Array(rows * cols);
          const scale = 1 / Math.sqrt(cols);
          for (let i = 0; i < data.length; i++) data[i] = scale * laplace(rng);
        } else if (spec.kind === 'merge') {
          const stored = (model: string) => {
            const w = models.get(model)?.get(name);
            if (!w) throw new Error(`parent ${model} of ${spec.name} must come first`);
            return w.data;
          };
          data = mergeMatrix(spec, spec.parents.map(stored), spec.base === undefined ? null : stored(spec.base), rng);
        } else {
          const parent = models.get(spec.parent)?.get(name);
          if (!parent) throw new Error(`parent ${spec.parent} of ${spec.name} must come first`);
          data = parent.data.slice();
          const base = rms(parent.data);
          if (spec.kind === 'full') {
            const step = (spec.scale ?? 0.1) * base;
            for (let i = 0; i < data.length; i++) data[i] += step * rng.gaussian();
          } else if (spec.modules.includes(module)) {
            const rank = typeof spec.rank === 'number' ? spec.rank : spec.rank(layer, module);
            addLowRank(data, rows, cols, rank, 8 * base, rng);
          }
        }
        weights.set(name, { shape: [rows, cols], data: roundToDtype(data, dtype) });
      }
    }
    models.set(spec.name, weights);
    const folder = path.join(dir, spec.name);
    writeLlamaFolder(folder, dims, weights, dtype, rng);
    folders.set(spec.name, folder);
  }
  return folders;
}

function mergeMatrix(spec: MergeSpec, parents: readonly Float32Array[], base: Float32Array | null, rng: Rng): Float32Array {
  const weights = spec.weights ?? parents.map(() => 1);
  const size = parents[0]!.length;
  const out = new Float32Array(size);
  if (spec.method === 'linear') {
    parents.forEach((p, k) => { for (let i = 0; i < size; i++) out[i] += weights[k]! * p[i]!; });
    return out;
  }
  if (!base) throw new Error(`merge ${spec.name} needs a base`);
  const lambda = spec.lambda ?? 1;
  const density = spec.density ?? 1;
  const tasks = parents.map((p) => Float64Array.from(p, (v, i) => v - base[i]!));
  if (spec.method === 'dare') {
    for (const t of tasks) for (let i = 0; i < size; i++) t[i] = rng.uniform() < density ? t[i]! / density : 0;
  }
  if (spec.method === 'ties') {
    for (const t of tasks) {
      const cut = [...t].map(Math.abs).sort((a, b) => b - a)[Math.max(0, Math.ceil(density * size) - 1)]!;
      for (let i = 0; i < size; i++) if (Math.abs(t[i]!) < cut) t[i] = 0;
    }
    for (let i = 0; i < size; i++) {
      let elected = 0;
      tasks.forEach((t, k) => { elected += weights[k]! * t[i]!; });
      let sum = 0, weight = 0;
      tasks.forEach((t, k) => {
        if (t[i] !== 0 && Math.sign(t[i]!) === Math.sign(elected)) (sum += weights[k]! * t[i]!), (weight += weights[k]!);
      });
      out[i] = base[i]! + lambda * (weight > 0 ? sum / weight : 0);
    }
    return out;
  }
  for (let i = 0; i < size; i++) {
    let sum = 0;
    tasks.forEach((t, k) => { sum += weights[k]! * t[i]!; });
    out[i] = base[i]! + lambda * sum;
  }
  return out;
}

/** data += U diag(strength) V^T with U (rows x r), V (cols x r) random orthonormal. */
function addLowRank(data: Float32Array, rows: number, cols: number, rank: number, strength: number, rng: Rng): void {
  const u = orthonormalize(rng.gaussianMatrix(rows, rank)).data;
  const v = orthonormalize(rng.gaussianMatrix(cols, rank)).data;
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      let s = 0;
      for (let t = 0; t < rank; t++) s += u[i * rank + t]! * v[j * rank + t]!;
      data[i * cols + j] += strength * s;
    }
  }
}

function writeLlamaFolder(folder: string, dims: LlamaDims, weights: Weights, dtype: DType, rng: Rng): void {
  const vocab = 32;
  const tensors: Record<string, FixtureTensor> = {};
  const random = (n: number) => Float32Array.from({ length: n }, () => 0.02 * rng.gaussian());
  tensors['model.embed_tokens.weight'] = { shape: [vocab, dims.hidden], data: random(vocab * dims.hidden) };
  for (let layer = 0; layer < dims.layers; layer++) {
    tensors[`model.layers.${layer}.input_layernorm.weight`] = { shape: [dims.hidden], data: new Float32Array(dims.hidden).fill(1) };
    tensors[`model.layers.${layer}.post_attention_layernorm.weight`] = { shape: [dims.hidden], data: new Float32Array(dims.hidden).fill(1) };
    for (const module of MODULES) {
      const w = weights.get(tensorName(layer, module))!;
      tensors[tensorName(layer, module)] = { shape: w.shape, data: w.data };
    }
  }
  tensors['model.norm.weight'] = { shape: [dims.hidden], data: new Float32Array(dims.hidden).fill(1) };
  tensors['lm_head.weight'] = { shape: [vocab, dims.hidden], data: random(vocab * dims.hidden) };
  const config = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: dims.hidden, intermediate_size: dims.intermediate,
    num_attention_heads: dims.heads, num_key_value_heads: dims.heads, num_hidden_layers: dims.layers, vocab_size: vocab,
    tie_word_embeddings: false,
  };
  writeModelFolder(folder, config, tensors, { dtype });
}

// ---------------------------------------------------------------- single models for verify

export interface LlamaConfig {
  readonly hidden: number;
  readonly intermediate: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly vocab: number;
}

export interface StateTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Tensor name -> float32 values, Hugging Face LlamaForCausalLM names. */
export type LlamaState = Map<string, StateTensor>;

export type ObfuscationKind = 'perm_residual' | 'perm_mlp' | 'perm_heads' | 'scale_norm' | 'scale_vo' | 'scale_qk' | 'scale_mlp';
export const OBFUSCATION_KINDS: readonly ObfuscationKind[] = ['perm_residual', 'perm_mlp', 'perm_heads', 'scale_norm', 'scale_vo', 'scale_qk', 'scale_mlp'];

const layerPrefix = (layer: number) => `model.layers.${layer}.`;

/** (rows, cols) of a linear module, PyTorch (out, in) convention. */
export function moduleShape(config: LlamaConfig, module: Module): [number, number] {
  const { hidden: d, intermediate: ff, heads, kvHeads, headDim } = config;
  switch (module) {
    case 'q_proj': return [heads * headDim, d];
    case 'k_proj':
    case 'v_proj': return [kvHeads * headDim, d];
    case 'o_proj': return [d, heads * headDim];
    case 'gate_proj':
    case 'up_proj': return [ff, d];
    case 'down_proj': return [d, ff];
  }
}

/** config.json with the keys of the zoo generator's hf_config. */
export function hfConfig(config: LlamaConfig, dtype: 'BF16' | 'F32'): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: config.hidden,
    intermediate_size: config.intermediate, num_attention_heads: config.heads, num_key_value_heads: config.kvHeads,
    head_dim: config.headDim, num_hidden_layers: config.layers, vocab_size: config.vocab, rms_norm_eps: 1e-5,
    rope_theta: 10000.0, max_position_embeddings: 256, hidden_act: 'silu', tie_word_embeddings: false,
    torch_dtype: dtype === 'BF16' ? 'bfloat16' : 'float32',
  };
}

export function cloneState(state: LlamaState): LlamaState {
  return new Map([...state].map(([name, t]) => [name, { shape: t.shape, data: Float32Array.from(t.data) }]));
}

/** `state` with `share` of each layer's MLP neurons pruned: their gate and up rows and down columns zeroed. */
export function pruneNeurons(state: LlamaState, config: LlamaConfig, share: number, seed: number): { state: LlamaState; perLayer: number } {
  const out = cloneState(state);
  const rng = new Rng(seed);
  const { hidden, intermediate } = config;
  const count = Math.round(share * intermediate);
  for (let layer = 0; layer < config.layers; layer++) {
    const neurons = rng.permutation(intermediate).subarray(0, count);
    const gate = tensor(out, tensorName(layer, 'gate_proj')).data, up = tensor(out, tensorName(layer, 'up_proj')).data;
    const down = tensor(out, tensorName(layer, 'down_proj')).data;
    for (const n of neurons) {
      gate.fill(0, n * hidden, (n + 1) * hidden);
      up.fill(0, n * hidden, (n + 1) * hidden);
      for (let d = 0; d < hidden; d++) down[d * intermediate + n] = 0;
    }
  }
  return { state: out, perLayer: count };
}

function tensor(state: LlamaState, name: string): StateTensor {
  const t = state.get(name);
  if (!t) throw new Error(`synthetic state has no tensor ${name}`);
  return t;
}

/**
 * N(0, 0.02) weights shaped like trained ones: every matrix gets exp(0.3 N) row and column
 * magnitude factors, so rows and columns differ in scale as they do after training.
 */
function structuredMatrix(rows: number, cols: number, rng: Rng): StateTensor {
  const rowScale = Float64Array.from({ length: rows }, () => Math.exp(0.3 * rng.gaussian()));
  const colScale = Float64Array.from({ length: cols }, () => Math.exp(0.3 * rng.gaussian()));
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) data[i * cols + j] = 0.02 * rng.gaussian() * rowScale[i]! * colScale[j]!;
  }
  return { shape: [rows, cols], data };
}

/** RMSNorm weights around 1 with a spread, always positive. */
function normVector(size: number, rng: Rng): StateTensor {
  return { shape: [size], data: Float32Array.from({ length: size }, () => Math.exp(0.2 * rng.gaussian())) };
}

/** The random tensors of one layer: the seven linears and the two RMSNorms. */
export function randomLayer(config: LlamaConfig, layer: number, rng: Rng): LlamaState {
  const state: LlamaState = new Map();
  for (const module of MODULES) {
    const [rows, cols] = moduleShape(config, module);
    state.set(tensorName(layer, module), structuredMatrix(rows, cols, rng));
  }
  state.set(`${layerPrefix(layer)}input_layernorm.weight`, normVector(config.hidden, rng));
  state.set(`${layerPrefix(layer)}post_attention_layernorm.weight`, normVector(config.hidden, rng));
  return state;
}

/** The random tensors outside the layers: embed, final norm, untied lm_head. */
export function randomGlobals(config: LlamaConfig, rng: Rng): LlamaState {
  return new Map([
    ['model.embed_tokens.weight', structuredMatrix(config.vocab, config.hidden, rng)],
    ['model.norm.weight', normVector(config.hidden, rng)],
    ['lm_head.weight', structuredMatrix(config.vocab, config.hidden, rng)],
  ]);
}

/** A random Llama base: embed, untied lm_head, final norm, and per layer the seven linears and two RMSNorms. */
export function randomLlama(config: LlamaConfig, seed: number): LlamaState {
  const rng = new Rng(seed);
  const globals = randomGlobals(config, rng);
  const state: LlamaState = new Map();
  for (let layer = 0; layer < config.layers; layer++) for (const entry of randomLayer(config, layer, rng)) state.set(...entry);
  for (const entry of globals) state.set(...entry);
  return state;
}

export interface LoraSpec {
  readonly rank: number;
  readonly targets: readonly Module[];
  /** Layers that get the adapter (default: all). */
  readonly layers?: readonly number[];
  /** ||B A||_F / ||W||_F of every merged delta (e.g. 0.1). */
  readonly scale: number;
  /**
   * Trained adapters' spectra decay: B's column t is scaled by decay^(t / (rank - 1)), so the last
   * direction is about `decay` times the first (default 1: all alike).
   */
  readonly decay?: number;
}

export interface LoraFactors {
  /** rank x in, float32 as stored in the adapter. */
  readonly A: Float32Array;
  /** out x rank, float32 as stored in the adapter. */
  readonly B: Float32Array;
  readonly rows: number;
  readonly cols: number;
}

export interface LoraAdded {
  /** The merged child: W + (alpha / rank) B A on every target. */
  readonly state: LlamaState;
  readonly rank: number;
  /** PEFT lora_alpha; the zoo uses alpha = 2 rank. */
  readonly alpha: number;
  readonly targets: readonly Module[];
  readonly layers: readonly number[];
  /** Module path (e.g. `model.layers.0.self_attn.q_proj`) -> stored factors. */
  readonly factors: ReadonlyMap<string, LoraFactors>;
}

function frobenius(values: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i]! * values[i]!;
  return Math.sqrt(s);
}

/**
 * Merge a random LoRA into a copy of `state`. B and A are Gaussian, B pre-scaled so that the merged
 * (alpha / rank) B A has ||.||_F = scale ||W||_F; the delta is formed in float64 from the float32
 * factors, exactly what merging the written adapter gives before float32 rounding.
 */
export function addLora(state: LlamaState, spec: LoraSpec, seed: number): LoraAdded {
  const rng = new Rng(seed);
  const out = cloneState(state);
  const alpha = 2 * spec.rank;
  const merge = alpha / spec.rank;
  const layers = spec.layers ?? layersIn(state);
  const targets = MODULES.filter((m) => spec.targets.includes(m));
  const factors = new Map<string, LoraFactors>();
  for (const layer of layers) {
    for (const module of targets) {
      const w = tensor(out, tensorName(layer, module));
      const [rows, cols] = w.shape as [number, number];
      const r = spec.rank;
      const a = Float32Array.from({ length: r * cols }, () => rng.gaussian() / Math.sqrt(cols));
      const b = new Float64Array(rows * r);
      for (let i = 0; i < b.length; i++) b[i] = rng.gaussian() * (spec.decay ?? 1) ** ((i % r) / Math.max(1, r - 1));
      const product = (bValues: ArrayLike<number>) => {
        const delta = new Float64Array(rows * cols);
        for (let i = 0; i < rows; i++) {
          for (let t = 0; t < r; t++) {
            const coef = bValues[i * r + t]! * merge;
            for (let j = 0; j < cols; j++) delta[i * cols + j]! += coef * a[t * cols + j]!;
          }
        }
        return delta;
      };
      const want = spec.scale * frobenius(w.data);
      const factor = want / frobenius(product(b));
      const storedB = Float32Array.from(b, (v) => v * factor);
      const delta = product(storedB);
      for (let i = 0; i < delta.length; i++) w.data[i] = w.data[i]! + delta[i]!;
      factors.set(modulePath(layer, module), { A: a, B: storedB, rows, cols });
    }
  }
  return { state: out, rank: spec.rank, alpha, targets, layers, factors };
}

/**
 * A full fine-tune: every weight matrix gets dense Gaussian noise of RMS `rel` times its own RMS,
 * and the norm weights a multiplicative jitter of the same relative size.
 */
export function fullFineTune(state: LlamaState, rel: number, seed: number): LlamaState {
  const rng = new Rng(seed);
  const out = cloneState(state);
  for (const t of out.values()) {
    if (t.shape.length === 1) {
      for (let i = 0; i < t.data.length; i++) t.data[i] = t.data[i]! * (1 + rel * rng.gaussian());
      continue;
    }
    const rms = frobenius(t.data) / Math.sqrt(t.data.length);
    for (let i = 0; i < t.data.length; i++) t.data[i] = t.data[i]! + rel * rms * rng.gaussian();
  }
  return out;
}

/** Indices of the layers that have tensors in `state`, ascending. */
function layersIn(state: LlamaState): number[] {
  const layers = new Set<number>();
  for (const name of state.keys()) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m) layers.add(Number(m[1]));
  }
  return [...layers].sort((a, b) => a - b);
}

/** What obfuscate did, to compare with what verify recovers. Per-layer lists follow the layers present, ascending. */
export interface ObfuscationApplied {
  /** Residual permutation: new dimension k holds old dimension residual[k] (null when not applied). */
  readonly residual: Int32Array | null;
  /** Per layer MLP permutation: new neuron k is old neuron mlp[layer][k]. */
  readonly mlp: readonly Int32Array[] | null;
  /** Per layer: new KV group k is old group groups[layer][k]; new query head k is old head queries[layer][k]. */
  readonly heads: { readonly groups: readonly Int32Array[]; readonly queries: readonly Int32Array[] } | null;
}

export interface Obfuscated {
  readonly state: LlamaState;
  readonly applied: ObfuscationApplied;
}

/** Rows of a row-major matrix in a new order: out row k = in row order[k]. */
function permuteRows(t: StateTensor, order: ArrayLike<number>): StateTensor {
  const cols = t.shape.length === 1 ? 1 : t.shape[1]!;
  const data = new Float32Array(t.data.length);
  for (let k = 0; k < order.length; k++) data.set(t.data.subarray(order[k]! * cols, (order[k]! + 1) * cols), k * cols);
  return { shape: t.shape, data };
}

/** Columns in a new order: out column k = in column order[k]. */
function permuteCols(t: StateTensor, order: ArrayLike<number>): StateTensor {
  const [rows, cols] = t.shape as [number, number];
  const data = new Float32Array(t.data.length);
  for (let i = 0; i < rows; i++) for (let k = 0; k < cols; k++) data[i * cols + k] = t.data[i * cols + order[k]!]!;
  return { shape: t.shape, data };
}

function scaleRows(t: StateTensor, from: number, to: number, factor: number): void {
  const cols = t.shape[1]!;
  for (let i = from * cols; i < to * cols; i++) t.data[i] = t.data[i]! * factor;
}

/** Divide column j of every row by scale[j]. */
function divideCols(t: StateTensor, scale: ArrayLike<number>, from = 0, to = scale.length): void {
  const [rows, cols] = t.shape as [number, number];
  for (let i = 0; i < rows; i++) for (let j = from; j < to; j++) t.data[i * cols + j] = t.data[i * cols + j]! / scale[j]!;
}

/** Block index lists [b*size, (b+1)*size) for blocks in `order`. */
function blockRows(order: ArrayLike<number>, size: number): Int32Array {
  const rows = new Int32Array(order.length * size);
  for (let k = 0; k < order.length; k++) for (let t = 0; t < size; t++) rows[k * size + t] = order[k]! * size + t;
  return rows;
}

export interface ObfuscateOptions {
  /**
   * The residual permutation to apply instead of drawing one: lets a model too big for memory be
   * transformed piecewise (one layer, then the globals), every piece with the same permutation.
   */
  readonly residual?: Int32Array;
}

/**
 * Function-preserving transforms, as the zoo generator's `obfuscate`: the same kinds applied in the
 * same order with the same semantics (norm gamma *= s with the consumers' columns /= s; per KV
 * head V rows *= c with the O columns of the group's query heads /= c; per KV head K rows /= c with
 * the group's Q rows *= c; up rows *= c with down columns /= c; MLP neuron, KV group and
 * within-group query head, and residual permutations). Scales are exp(0.5 N), per head exp(0.7 N).
 * Applies to the layers present in `state`, and to the global tensors when present.
 */
export function obfuscate(
  state: LlamaState, config: LlamaConfig, kinds: readonly ObfuscationKind[], seed: number, options: ObfuscateOptions = {},
): Obfuscated {
  const rng = new Rng(seed);
  const s = cloneState(state);
  const { hidden: d, heads: h, kvHeads: kv, headDim: hd, intermediate: ff } = config;
  const rep = h / kv;
  const layers = layersIn(s);
  const hasGlobals = s.has('lm_head.weight');
  const get = (name: string) => tensor(s, name);
  const at = (layer: number, name: string) => get(`${layerPrefix(layer)}${name}.weight`);
  const logNormal = (n: number, sigma: number) => Float64Array.from({ length: n }, () => Math.exp(rng.gaussian() * sigma));
  const scaleVector = (t: StateTensor, scale: ArrayLike<number>) => {
    for (let i = 0; i < t.data.length; i++) t.data[i] = t.data[i]! * scale[i]!;
  };
  if (kinds.includes('scale_norm')) {
    for (const i of layers) {
      for (const [norm, consumers] of [
        ['input_layernorm', ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj']],
        ['post_attention_layernorm', ['mlp.gate_proj', 'mlp.up_proj']],
      ] as const) {
        const sc = logNormal(d, 0.5);
        scaleVector(at(i, norm), sc);
        for (const consumer of consumers) divideCols(at(i, consumer), sc);
      }
    }
    if (hasGlobals) {
      const sc = logNormal(d, 0.5);
      scaleVector(get('model.norm.weight'), sc);
      divideCols(get('lm_head.weight'), sc);
    }
  }
  if (kinds.includes('scale_vo')) {
    for (const i of layers) {
      for (let j = 0; j < kv; j++) {
        const c = Math.exp(rng.gaussian() * 0.7);
        scaleRows(at(i, 'self_attn.v_proj'), j * hd, (j + 1) * hd, c);
        const inverse = new Float64Array(h * hd).fill(c);
        divideCols(at(i, 'self_attn.o_proj'), inverse, j * rep * hd, (j + 1) * rep * hd);
      }
    }
  }
  if (kinds.includes('scale_qk')) {
    for (const i of layers) {
      for (let j = 0; j < kv; j++) {
        const c = Math.exp(rng.gaussian() * 0.7);
        scaleRows(at(i, 'self_attn.k_proj'), j * hd, (j + 1) * hd, 1 / c);
        scaleRows(at(i, 'self_attn.q_proj'), j * rep * hd, (j + 1) * rep * hd, c);
      }
    }
  }
  if (kinds.includes('scale_mlp')) {
    for (const i of layers) {
      const sc = logNormal(ff, 0.5);
      const up = at(i, 'mlp.up_proj');
      for (let r = 0; r < ff; r++) scaleRows(up, r, r + 1, sc[r]!);
      divideCols(at(i, 'mlp.down_proj'), sc);
    }
  }
  let mlp: Int32Array[] | null = null;
  if (kinds.includes('perm_mlp')) {
    mlp = [];
    for (const i of layers) {
      const pm = rng.permutation(ff);
      mlp.push(pm);
      for (const name of ['mlp.gate_proj', 'mlp.up_proj']) s.set(`${layerPrefix(i)}${name}.weight`, permuteRows(at(i, name), pm));
      s.set(`${layerPrefix(i)}mlp.down_proj.weight`, permuteCols(at(i, 'mlp.down_proj'), pm));
    }
  }
  let heads: ObfuscationApplied['heads'] = null;
  if (kinds.includes('perm_heads')) {
    const groups: Int32Array[] = [];
    const queries: Int32Array[] = [];
    for (const i of layers) {
      const gp = rng.permutation(kv);
      const qorder: number[] = [];
      for (const j of gp) for (const w of rng.permutation(rep)) qorder.push(j * rep + w);
      groups.push(gp);
      queries.push(Int32Array.from(qorder));
      const kvRows = blockRows(gp, hd);
      const qRows = blockRows(qorder, hd);
      const p = layerPrefix(i);
      s.set(`${p}self_attn.k_proj.weight`, permuteRows(at(i, 'self_attn.k_proj'), kvRows));
      s.set(`${p}self_attn.v_proj.weight`, permuteRows(at(i, 'self_attn.v_proj'), kvRows));
      s.set(`${p}self_attn.q_proj.weight`, permuteRows(at(i, 'self_attn.q_proj'), qRows));
      s.set(`${p}self_attn.o_proj.weight`, permuteCols(at(i, 'self_attn.o_proj'), qRows));
    }
    heads = { groups, queries };
  }
  let residual: Int32Array | null = null;
  if (kinds.includes('perm_residual')) {
    const pr = options.residual ?? rng.permutation(d);
    residual = pr;
    if (hasGlobals) {
      s.set('model.embed_tokens.weight', permuteCols(get('model.embed_tokens.weight'), pr));
      s.set('model.norm.weight', permuteRows(get('model.norm.weight'), pr));
      s.set('lm_head.weight', permuteCols(get('lm_head.weight'), pr));
    }
    for (const i of layers) {
      const p = layerPrefix(i);
      for (const n of ['input_layernorm', 'post_attention_layernorm']) s.set(`${p}${n}.weight`, permuteRows(at(i, n), pr));
      for (const n of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'mlp.gate_proj', 'mlp.up_proj']) {
        s.set(`${p}${n}.weight`, permuteCols(at(i, n), pr));
      }
      for (const n of ['self_attn.o_proj', 'mlp.down_proj']) s.set(`${p}${n}.weight`, permuteRows(at(i, n), pr));
    }
  }
  return { state: s, applied: { residual, mlp, heads } };
}

/** Tensors in sorted name order, as the zoo generator writes them. */
function fixtureTensors(state: LlamaState, dtype: 'BF16' | 'F32'): Record<string, FixtureTensor> {
  const names = [...state.keys()].sort();
  return Object.fromEntries(names.map((name) => {
    const t = state.get(name)!;
    return [name, { dtype, shape: t.shape, data: t.data }];
  }));
}

/** A Hugging Face model folder: config.json + model.safetensors (or `shards` files and an index). */
export function writeLlama(dir: string, config: LlamaConfig, state: LlamaState, dtype: 'BF16' | 'F32', shards = 1): void {
  writeModelFolder(dir, hfConfig(config, dtype), fixtureTensors(state, dtype), { shards, dtype });
}

/**
 * A PEFT adapter folder for a LoRA made by addLora: adapter_config.json (keys as the zoo writes
 * them) + adapter_model.safetensors with F32 `base_model.model.<module>.lora_A.weight` / `lora_B.weight`.
 */
export function writeAdapter(dir: string, lora: LoraAdded, baseModel = 'base'): void {
  fs.mkdirSync(dir, { recursive: true });
  const tensors: Record<string, FixtureTensor> = {};
  for (const [module, f] of lora.factors) {
    tensors[`base_model.model.${module}.lora_A.weight`] = { dtype: 'F32', shape: [lora.rank, f.cols], data: f.A };
    tensors[`base_model.model.${module}.lora_B.weight`] = { dtype: 'F32', shape: [f.rows, lora.rank], data: f.B };
  }
  const sorted = Object.fromEntries(Object.keys(tensors).sort().map((k) => [k, tensors[k]!]));
  writeSafetensors(path.join(dir, 'adapter_model.safetensors'), sorted, undefined, 'F32');
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({
    peft_type: 'LORA', r: lora.rank, lora_alpha: lora.alpha, target_modules: lora.targets, bias: 'none',
    base_model_name_or_path: baseModel, task_type: 'CAUSAL_LM', fan_in_fan_out: false, use_rslora: false, use_dora: false,
  }, null, 2));
}

/** Inverse permutation: inverse[order[k]] = k. */
export function inversePermutation(order: ArrayLike<number>): number[] {
  const inverse = new Array<number>(order.length);
  for (let k = 0; k < order.length; k++) inverse[order[k]!] = k;
  return inverse;
}

/** Number of positions a permutation moves. */
export function movedCount(order: ArrayLike<number>): number {
  let moved = 0;
  for (let k = 0; k < order.length; k++) if (order[k] !== k) moved++;
  return moved;
}
