/**
 * Synthetic LayerNorm/GELU models (ViT, BERT and GPT-2 naming and layouts) with known lineage: a
 * random base, LoRA children with a known B·A on chosen modules, full fine-tunes, unrelated models,
 * and the function-preserving obfuscations of a LayerNorm block (residual permutation, LayerNorm
 * scale and shift folded into the readers, head permutation, Q/K and V/O per-head scalings, MLP
 * neuron permutation), each alone or combined. Written as `save_pretrained` would: GPT-2's Conv1D
 * weights stored (in, out), its q, k, v fused in `c_attn`; GPT-NeoX's q, k, v interleaved per head in
 * `query_key_value`; ViT's patch projection (hidden, 3, p, p).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Rng } from '../../src/linalg/rng.js';
import { writeModelFolder, writeSafetensors, type FixtureTensor } from './safetensors-writer.js';

export type LayerNormFamily = 'vit' | 'bert' | 'gpt2' | 'gpt_neox';
/** The linear modules, by canonical role. */
export type PlainModule = 'q' | 'k' | 'v' | 'o' | 'fc_in' | 'fc_out';
export const PLAIN_MODULES: readonly PlainModule[] = ['q', 'k', 'v', 'o', 'fc_in', 'fc_out'];
/** verify's canonical names of the modules (lora.targets). */
export const CANONICAL: Readonly<Record<PlainModule, string>> = { q: 'q_proj', k: 'k_proj', v: 'v_proj', o: 'o_proj', fc_in: 'up_proj', fc_out: 'down_proj' };

export interface LayerNormShape {
  readonly family: LayerNormFamily;
  readonly hidden: number;
  readonly heads: number;
  readonly layers: number;
  readonly ff: number;
  /** Token rows of the embedding (BERT, GPT-2), or the patch size (ViT: 3 p^2 rows). */
  readonly vocab: number;
  readonly patch: number;
  readonly positions: number;
  readonly labels: number;
}

/** A matrix (out, in), row-major, float64. */
interface Mat {
  rows: number;
  cols: number;
  data: Float64Array;
}

interface Layer {
  w: Record<PlainModule, Mat>;
  b: Record<PlainModule, Float64Array>;
  /** Norm before attention and before the MLP (BERT: after them), gamma and beta. */
  ln1: [Float64Array, Float64Array];
  ln2: [Float64Array, Float64Array];
}

/** A model in canonical form: `embed` (tokens or pixel values x hidden), positions (x hidden). */
export interface LayerNormModel {
  readonly shape: LayerNormShape;
  embed: Mat;
  positions: Mat;
  finalNorm: [Float64Array, Float64Array];
  head: Mat;
  layers: Layer[];
}

function mat(rows: number, cols: number, f: () => number): Mat {
  return { rows, cols, data: Float64Array.from({ length: rows * cols }, f) };
}
const vec = (n: number, f: () => number) => Float64Array.from({ length: n }, f);
const cloneMat = (m: Mat): Mat => ({ rows: m.rows, cols: m.cols, data: m.data.slice() });

export function randomLayerNormModel(shape: LayerNormShape, seed: number): LayerNormModel {
  const rng = new Rng(seed);
  const g = (scale: number) => () => scale * rng.gaussian();
  const h = shape.hidden;
  const tokens = shape.family === 'vit' ? 3 * shape.patch * shape.patch : shape.vocab;
  const lin = (rows: number, cols: number) => mat(rows, cols, g(1 / Math.sqrt(cols)));
  const layers: Layer[] = Array.from({ length: shape.layers }, () => ({
    w: { q: lin(h, h), k: lin(h, h), v: lin(h, h), o: lin(h, h), fc_in: lin(shape.ff, h), fc_out: lin(h, shape.ff) },
    b: { q: vec(h, g(0.1)), k: vec(h, g(0.1)), v: vec(h, g(0.1)), o: vec(h, g(0.1)), fc_in: vec(shape.ff, g(0.1)), fc_out: vec(h, g(0.1)) },
    ln1: [vec(h, () => 1 + 0.2 * rng.gaussian()), vec(h, g(0.1))],
    ln2: [vec(h, () => 1 + 0.2 * rng.gaussian()), vec(h, g(0.1))],
  }));
  return {
    shape, embed: mat(tokens, h, g(0.5)), positions: mat(shape.positions, h, g(0.1)),
    finalNorm: [vec(h, () => 1 + 0.2 * rng.gaussian()), vec(h, g(0.1))], head: lin(shape.labels, h), layers,
  };
}

function cloneModel(m: LayerNormModel): LayerNormModel {
  return {
    shape: m.shape, embed: cloneMat(m.embed), positions: cloneMat(m.positions), head: cloneMat(m.head),
    finalNorm: [m.finalNorm[0].slice(), m.finalNorm[1].slice()],
    layers: m.layers.map((l) => ({
      w: Object.fromEntries(PLAIN_MODULES.map((r) => [r, cloneMat(l.w[r])])) as Record<PlainModule, Mat>,
      b: Object.fromEntries(PLAIN_MODULES.map((r) => [r, l.b[r].slice()])) as Record<PlainModule, Float64Array>,
      ln1: [l.ln1[0].slice(), l.ln1[1].slice()], ln2: [l.ln2[0].slice(), l.ln2[1].slice()],
    })),
  };
}

/** W + B A on each target of each layer, with a fresh rank-`rank` product per module; biases untouched (PEFT's bias = "none"). */
export function loraChild(base: LayerNormModel, targets: readonly PlainModule[], rank: number, seed: number, strength = 0.3): LayerNormModel {
  const rng = new Rng(seed);
  const out = cloneModel(base);
  for (const layer of out.layers) {
    for (const role of targets) {
      const w = layer.w[role];
      const B = vec(w.rows * rank, () => rng.gaussian()), A = vec(rank * w.cols, () => rng.gaussian());
      const scale = strength / Math.sqrt(rank * w.cols);
      for (let i = 0; i < w.rows; i++) for (let j = 0; j < w.cols; j++) {
        let s = 0;
        for (let t = 0; t < rank; t++) s += B[i * rank + t]! * A[t * w.cols + j]!;
        w.data[i * w.cols + j]! += scale * s;
      }
    }
  }
  return out;
}

/**
 * Every weight, bias and norm moved by `step` of its own scale (a full fine-tune; the head replaced
 * by `labels` new rows). `shrink` < 1 first scales every weight and bias
 * it, as decoupled weight decay does, or training that shrinks weights.
 */
export function fullFineTune(base: LayerNormModel, seed: number, step = 0.05, labels = base.shape.labels, shrink = 1): LayerNormModel {
  const rng = new Rng(seed);
  const out = cloneModel(base);
  const move = (x: Float64Array, scale: number) => { for (let i = 0; i < x.length; i++) x[i] = shrink * x[i]! + step * scale * rng.gaussian(); };
  for (const l of out.layers) {
    for (const r of PLAIN_MODULES) {
      move(l.w[r].data, 1 / Math.sqrt(l.w[r].cols));
      move(l.b[r], 0.1);
    }
    for (const v of [...l.ln1, ...l.ln2]) for (let i = 0; i < v.length; i++) v[i]! += step * 0.2 * rng.gaussian();
  }
  move(out.embed.data, 0.5);
  out.head = mat(labels, base.shape.hidden, () => rng.gaussian() / Math.sqrt(base.shape.hidden));
  return out;
}

export interface Obfuscation {
  readonly residual?: boolean;
  /** LayerNorm gamma and beta rescaled and beta shifted, compensated in the readers (pre-norm families only). */
  readonly norms?: boolean;
  readonly heads?: boolean;
  readonly qk?: boolean;
  readonly vo?: boolean;
  readonly neurons?: boolean;
}

export const OBFUSCATIONS: readonly (keyof Obfuscation)[] = ['residual', 'norms', 'heads', 'qk', 'vo', 'neurons'];

function permutation(n: number, rng: Rng): Int32Array {
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}
/** Row i of the result is row order[i] of m. */
function permuteRows(m: Mat, order: Int32Array): void {
  const src = m.data.slice();
  for (let i = 0; i < m.rows; i++) m.data.set(src.subarray(order[i]! * m.cols, (order[i]! + 1) * m.cols), i * m.cols);
}
function permuteCols(m: Mat, order: Int32Array): void {
  const src = m.data.slice();
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < m.cols; j++) m.data[i * m.cols + j] = src[i * m.cols + order[j]!]!;
}
function permuteVec(v: Float64Array, order: Int32Array): void {
  const src = v.slice();
  for (let i = 0; i < v.length; i++) v[i] = src[order[i]!]!;
}
function scaleRows(m: Mat, s: Float64Array): void {
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < m.cols; j++) m.data[i * m.cols + j]! *= s[i]!;
}
function scaleCols(m: Mat, s: Float64Array): void {
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < m.cols; j++) m.data[i * m.cols + j]! *= s[j]!;
}
/** bias -= W x. */
function subtractProduct(bias: Float64Array, w: Mat, x: Float64Array): void {
  for (let i = 0; i < w.rows; i++) {
    let s = 0;
    for (let j = 0; j < w.cols; j++) s += w.data[i * w.cols + j]! * x[j]!;
    bias[i]! -= s;
  }
}

/** The same function under the chosen transforms. */
export function obfuscate(model: LayerNormModel, how: Obfuscation, seed: number): LayerNormModel {
  const rng = new Rng(seed);
  const out = cloneModel(model);
  const { hidden: h, heads, ff } = model.shape;
  const hd = h / heads;
  const positive = (n: number) => vec(n, () => Math.exp(0.5 * rng.gaussian()));
  if (how.residual) {
    const p = permutation(h, rng);
    for (const m of [out.embed, out.positions, out.head]) permuteCols(m, p);
    for (const v of out.finalNorm) permuteVec(v, p);
    for (const l of out.layers) {
      for (const r of ['q', 'k', 'v', 'fc_in'] as const) permuteCols(l.w[r], p);
      for (const r of ['o', 'fc_out'] as const) {
        permuteRows(l.w[r], p);
        permuteVec(l.b[r], p);
      }
      for (const v of [...l.ln1, ...l.ln2]) permuteVec(v, p);
    }
  }
  if (how.norms) {
    if (model.shape.family === 'bert') throw new Error('a post-norm block has no norm folding to obfuscate');
    for (const l of out.layers) {
      for (const [ln, readers] of [[l.ln1, ['q', 'k', 'v']], [l.ln2, ['fc_in']]] as const) {
        const s = positive(h), shift = vec(h, () => 0.3 * rng.gaussian());
        for (let j = 0; j < h; j++) {
          ln[0][j]! *= s[j]!;
          ln[1][j] = ln[1][j]! * s[j]! + shift[j]!;
        }
        for (const r of readers) {
          scaleCols(l.w[r], Float64Array.from(s, (x) => 1 / x));
          // W' (beta' ) = W beta + W' shift: take W' shift off the bias.
          subtractProduct(l.b[r], l.w[r], shift);
        }
      }
    }
  }
  for (const l of out.layers) {
    if (how.heads) {
      const hp = permutation(heads, rng);
      const rows = Int32Array.from({ length: h }, (_, i) => hp[Math.floor(i / hd)]! * hd + (i % hd));
      for (const r of ['q', 'k', 'v'] as const) {
        permuteRows(l.w[r], rows);
        permuteVec(l.b[r], rows);
      }
      permuteCols(l.w.o, rows);
    }
    const perHead = () => {
      const s = positive(heads);
      return Float64Array.from({ length: h }, (_, i) => s[Math.floor(i / hd)]!);
    };
    if (how.qk) {
      const s = perHead();
      const inverse = Float64Array.from(s, (x) => 1 / x);
      scaleRows(l.w.q, s);
      l.b.q.forEach((x, i) => (l.b.q[i] = x * s[i]!));
      scaleRows(l.w.k, inverse);
      l.b.k.forEach((x, i) => (l.b.k[i] = x * inverse[i]!));
    }
    if (how.vo) {
      const s = perHead();
      scaleRows(l.w.v, s);
      l.b.v.forEach((x, i) => (l.b.v[i] = x * s[i]!));
      scaleCols(l.w.o, Float64Array.from(s, (x) => 1 / x));
    }
    if (how.neurons) {
      const p = permutation(ff, rng);
      permuteRows(l.w.fc_in, p);
      permuteVec(l.b.fc_in, p);
      permuteCols(l.w.fc_out, p);
    }
  }
  return out;
}

function transposed(m: Mat): Float64Array {
  const t = new Float64Array(m.data.length);
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < m.cols; j++) t[j * m.rows + i] = m.data[i * m.cols + j]!;
  return t;
}

const tensor = (shape: readonly number[], data: ArrayLike<number>): FixtureTensor => ({ shape, data });

/** The model with `extra` new token rows (a resized vocabulary; BERT, GPT-2, GPT-NeoX). */
export function withResizedVocabulary(model: LayerNormModel, extra: number, seed: number): LayerNormModel {
  const rng = new Rng(seed);
  const out = cloneModel(model);
  const added = Float64Array.from({ length: extra * model.embed.cols }, () => 0.5 * rng.gaussian());
  out.embed = { rows: model.embed.rows + extra, cols: model.embed.cols, data: Float64Array.from([...model.embed.data, ...added]) };
  // An untied output embedding (GPT-NeoX's embed_out) grows with it.
  if (model.head.rows === model.embed.rows) {
    const head = Float64Array.from({ length: extra * model.head.cols }, () => rng.gaussian() / Math.sqrt(model.head.cols));
    out.head = { rows: model.head.rows + extra, cols: model.head.cols, data: Float64Array.from([...model.head.data, ...head]) };
  }
  return out;
}

/** The model with one module's biases moved in every layer (a bias-only fine-tune of it). */
export function withBiasChange(model: LayerNormModel, module: PlainModule, seed: number, step = 0.05): LayerNormModel {
  const rng = new Rng(seed);
  const out = cloneModel(model);
  for (const l of out.layers) l.b[module].forEach((x, i) => (l.b[module][i] = x + step * rng.gaussian()));
  return out;
}

/** The model as a Hugging Face folder of its family (config.json + model.safetensors). */
export function writeLayerNormModel(dir: string, model: LayerNormModel, options: { dtype?: 'F32' | 'BF16' } = {}): void {
  const s = model.shape, h = s.hidden;
  const t: Record<string, FixtureTensor> = {};
  const linear = (name: string, w: Mat, b: Float64Array) => {
    t[`${name}.weight`] = tensor([w.rows, w.cols], w.data);
    t[`${name}.bias`] = tensor([b.length], b);
  };
  const norm = (name: string, [gamma, beta]: [Float64Array, Float64Array]) => {
    t[`${name}.weight`] = tensor([h], gamma);
    t[`${name}.bias`] = tensor([h], beta);
  };
  let config: Record<string, unknown>;
  if (s.family === 'gpt2') {
    t['transformer.wte.weight'] = tensor([model.embed.rows, h], model.embed.data);
    t['transformer.wpe.weight'] = tensor([s.positions, h], model.positions.data);
    model.layers.forEach((l, i) => {
      const p = `transformer.h.${i}.`;
      norm(`${p}ln_1`, l.ln1);
      norm(`${p}ln_2`, l.ln2);
      // Conv1D: stored (in, out); c_attn holds q, k, v side by side along out.
      const qkv = new Float64Array(h * 3 * h);
      (['q', 'k', 'v'] as const).forEach((r, k) => {
        for (let a = 0; a < h; a++) for (let o = 0; o < h; o++) qkv[a * 3 * h + k * h + o] = l.w[r].data[o * h + a]!;
      });
      t[`${p}attn.c_attn.weight`] = tensor([h, 3 * h], qkv);
      t[`${p}attn.c_attn.bias`] = tensor([3 * h], Float64Array.from([...l.b.q, ...l.b.k, ...l.b.v]));
      t[`${p}attn.c_proj.weight`] = tensor([h, h], transposed(l.w.o));
      t[`${p}attn.c_proj.bias`] = tensor([h], l.b.o);
      t[`${p}mlp.c_fc.weight`] = tensor([h, s.ff], transposed(l.w.fc_in));
      t[`${p}mlp.c_fc.bias`] = tensor([s.ff], l.b.fc_in);
      t[`${p}mlp.c_proj.weight`] = tensor([s.ff, h], transposed(l.w.fc_out));
      t[`${p}mlp.c_proj.bias`] = tensor([h], l.b.fc_out);
    });
    norm('transformer.ln_f', model.finalNorm);
    config = { model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], n_embd: h, n_layer: s.layers, n_head: s.heads, n_inner: s.ff, vocab_size: model.embed.rows, n_positions: s.positions };
  } else if (s.family === 'gpt_neox') {
    t['gpt_neox.embed_in.weight'] = tensor([model.embed.rows, h], model.embed.data);
    model.layers.forEach((l, i) => {
      const p = `gpt_neox.layers.${i}.`;
      norm(`${p}input_layernorm`, l.ln1);
      norm(`${p}post_attention_layernorm`, l.ln2);
      // Per head: head_dim rows of q, then of k, then of v.
      const hd = h / s.heads;
      const rows = Array.from({ length: s.heads }, (_, head) => (['q', 'k', 'v'] as const).map((r) => [r, head] as const)).flat();
      const qkv = new Float64Array(3 * h * h), bias = new Float64Array(3 * h);
      rows.forEach(([r, head], block) => {
        qkv.set(l.w[r].data.subarray(head * hd * h, (head + 1) * hd * h), block * hd * h);
        bias.set(l.b[r].subarray(head * hd, (head + 1) * hd), block * hd);
      });
      t[`${p}attention.query_key_value.weight`] = tensor([3 * h, h], qkv);
      t[`${p}attention.query_key_value.bias`] = tensor([3 * h], bias);
      linear(`${p}attention.dense`, l.w.o, l.b.o);
      linear(`${p}mlp.dense_h_to_4h`, l.w.fc_in, l.b.fc_in);
      linear(`${p}mlp.dense_4h_to_h`, l.w.fc_out, l.b.fc_out);
    });
    norm('gpt_neox.final_layer_norm', model.finalNorm);
    t['embed_out.weight'] = tensor([model.head.rows, h], model.head.data);
    config = { model_type: 'gpt_neox', architectures: ['GPTNeoXForCausalLM'], hidden_size: h, num_hidden_layers: s.layers, num_attention_heads: s.heads, intermediate_size: s.ff, vocab_size: model.embed.rows };
  } else if (s.family === 'bert') {
    t['bert.embeddings.word_embeddings.weight'] = tensor([model.embed.rows, h], model.embed.data);
    t['bert.embeddings.position_embeddings.weight'] = tensor([s.positions, h], model.positions.data);
    norm('bert.embeddings.LayerNorm', model.finalNorm);
    model.layers.forEach((l, i) => {
      const p = `bert.encoder.layer.${i}.`;
      linear(`${p}attention.self.query`, l.w.q, l.b.q);
      linear(`${p}attention.self.key`, l.w.k, l.b.k);
      linear(`${p}attention.self.value`, l.w.v, l.b.v);
      linear(`${p}attention.output.dense`, l.w.o, l.b.o);
      norm(`${p}attention.output.LayerNorm`, l.ln1);
      linear(`${p}intermediate.dense`, l.w.fc_in, l.b.fc_in);
      linear(`${p}output.dense`, l.w.fc_out, l.b.fc_out);
      norm(`${p}output.LayerNorm`, l.ln2);
    });
    linear('classifier', model.head, new Float64Array(model.head.rows));
    config = { model_type: 'bert', architectures: ['BertForSequenceClassification'], hidden_size: h, num_hidden_layers: s.layers, num_attention_heads: s.heads, intermediate_size: s.ff, vocab_size: model.embed.rows };
  } else {
    // The patch projection (hidden, 3, p, p): the canonical embed is its transpose.
    t['vit.embeddings.patch_embeddings.projection.weight'] = tensor([h, 3, s.patch, s.patch], transposed(model.embed));
    t['vit.embeddings.patch_embeddings.projection.bias'] = tensor([h], new Float64Array(h));
    t['vit.embeddings.position_embeddings'] = tensor([1, s.positions, h], model.positions.data);
    t['vit.embeddings.cls_token'] = tensor([1, 1, h], new Float64Array(h));
    model.layers.forEach((l, i) => {
      const p = `vit.encoder.layer.${i}.`;
      linear(`${p}attention.attention.query`, l.w.q, l.b.q);
      linear(`${p}attention.attention.key`, l.w.k, l.b.k);
      linear(`${p}attention.attention.value`, l.w.v, l.b.v);
      linear(`${p}attention.output.dense`, l.w.o, l.b.o);
      norm(`${p}layernorm_before`, l.ln1);
      norm(`${p}layernorm_after`, l.ln2);
      linear(`${p}intermediate.dense`, l.w.fc_in, l.b.fc_in);
      linear(`${p}output.dense`, l.w.fc_out, l.b.fc_out);
    });
    norm('vit.layernorm', model.finalNorm);
    linear('classifier', model.head, new Float64Array(model.head.rows));
    config = { model_type: 'vit', architectures: ['ViTForImageClassification'], hidden_size: h, num_hidden_layers: s.layers, num_attention_heads: s.heads, intermediate_size: s.ff, patch_size: s.patch, num_channels: 3 };
  }
  writeModelFolder(dir, config, t, { dtype: options.dtype ?? 'F32' });
}

/** One module's LoRA factors as written: A (rank, in) and B (out, rank), row-major, and the merge scale. */
export interface WrittenFactor {
  readonly out: number;
  readonly in: number;
  readonly A: Float32Array;
  readonly B: Float32Array;
}

/** PEFT module paths (after the layer prefix) of the decoder families, with their (out, in) sizes. */
function adapterModules(s: LayerNormShape): { prefix: (layer: number) => string; modules: Record<string, [number, number]> } {
  const h = s.hidden;
  if (s.family === 'gpt2') {
    return {
      prefix: (i) => `transformer.h.${i}.`,
      modules: { 'attn.c_attn': [3 * h, h], 'attn.c_proj': [h, h], 'mlp.c_fc': [s.ff, h], 'mlp.c_proj': [h, s.ff] },
    };
  }
  if (s.family === 'gpt_neox') {
    return {
      prefix: (i) => `gpt_neox.layers.${i}.`,
      modules: { 'attention.query_key_value': [3 * h, h], 'attention.dense': [h, h], 'mlp.dense_h_to_4h': [s.ff, h], 'mlp.dense_4h_to_h': [h, s.ff] },
    };
  }
  throw new Error(`no adapter modules for ${s.family}`);
}

/**
 * A PEFT adapter folder for a GPT-2 or GPT-NeoX model of `shape`: a rank-`rank` pair on each module
 * whose path ends with one of `modules` (e.g. `c_attn`, `c_proj`), in every layer, lora_alpha = rank
 * (scale 1), as PEFT writes it: A (rank, in) and B (out, rank) also for GPT-2's Conv1D modules
 * (fan_in_fan_out: true). Returns the factors by module path (without `base_model.model.`).
 */
export function writeLayerNormAdapter(dir: string, shape: LayerNormShape, modules: readonly string[], rank: number, seed: number, strength = 0.3): Map<string, WrittenFactor> {
  const rng = new Rng(seed);
  const { prefix, modules: sizes } = adapterModules(shape);
  const written = new Map<string, WrittenFactor>();
  const tensors: Record<string, FixtureTensor> = {};
  for (let layer = 0; layer < shape.layers; layer++) {
    for (const [suffix, [out, inFeatures]] of Object.entries(sizes)) {
      if (!modules.some((m) => suffix === m || suffix.endsWith(`.${m}`))) continue;
      const A = Float32Array.from({ length: rank * inFeatures }, () => (strength / Math.sqrt(rank * inFeatures)) * rng.gaussian());
      const B = Float32Array.from({ length: out * rank }, () => rng.gaussian());
      const module = `${prefix(layer)}${suffix}`;
      written.set(module, { out, in: inFeatures, A, B });
      tensors[`base_model.model.${module}.lora_A.weight`] = { dtype: 'F32', shape: [rank, inFeatures], data: A };
      tensors[`base_model.model.${module}.lora_B.weight`] = { dtype: 'F32', shape: [out, rank], data: B };
    }
  }
  const sorted = Object.fromEntries(Object.keys(tensors).sort().map((k) => [k, tensors[k]!]));
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, 'adapter_model.safetensors'), sorted, undefined, 'F32');
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({
    peft_type: 'LORA', r: rank, lora_alpha: rank, target_modules: [...modules], bias: 'none', base_model_name_or_path: 'base',
    task_type: 'CAUSAL_LM', fan_in_fan_out: shape.family === 'gpt2', use_rslora: false, use_dora: false,
  }, null, 2));
  return written;
}
