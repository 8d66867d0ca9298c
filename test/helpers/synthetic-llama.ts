/**
 * Synthetic Llama families written as Hugging Face folders, for tree tests and the benchmark:
 * heavy-tailed (Laplace) random roots, LoRA children (parent + U diag(s) V^T on some modules,
 * orthonormal U, V, so every one of the r directions stands clear of the rounding noise), full
 * fine-tunes (parent + dense Gaussian update), stored in bf16 or f32. Children are built from
 * the parent's stored (rounded) values, as a fine-tune of a downloaded checkpoint would be.
 */
import * as path from 'node:path';
import { roundToDtype } from '../../src/io/dtypes.js';
import type { DType } from '../../src/io/types.js';
import { orthonormalize } from '../../src/linalg/qr.js';
import { Rng } from '../../src/linalg/rng.js';
import { writeModelFolder, type FixtureTensor } from './safetensors-writer.js';

export interface LlamaDims {
  readonly hidden: number;
  readonly intermediate: number;
  readonly layers: number;
  readonly heads: number;
}

export const MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type Module = (typeof MODULES)[number];

export type FamilySpec =
  | { readonly name: string; readonly kind: 'root'; readonly dtype?: 'BF16' | 'F32' }
  | { readonly name: string; readonly kind: 'full'; readonly parent: string; readonly scale?: number; readonly dtype?: 'BF16' | 'F32' }
  | {
      readonly name: string; readonly kind: 'lora'; readonly parent: string; readonly rank: number | ((layer: number, module: Module) => number);
      readonly modules: readonly Module[]; readonly dtype?: 'BF16' | 'F32';
    };

type Weights = Map<string, { shape: [number, number]; data: Float32Array }>;

function shapes(d: LlamaDims): Record<Module, [number, number]> {
  return {
    q_proj: [d.hidden, d.hidden], k_proj: [d.hidden, d.hidden], v_proj: [d.hidden, d.hidden], o_proj: [d.hidden, d.hidden],
    gate_proj: [d.intermediate, d.hidden], up_proj: [d.intermediate, d.hidden], down_proj: [d.hidden, d.intermediate],
  };
}

function tensorName(layer: number, module: Module): string {
  const group = module.endsWith('proj') && ['gate_proj', 'up_proj', 'down_proj'].includes(module) ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${group}.${module}.weight`;
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
export function writeFamily(dir: string, specs: readonly FamilySpec[], dims: LlamaDims, seed: number): Map<string, string> {
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
