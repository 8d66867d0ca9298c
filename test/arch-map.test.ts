import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BadInputError } from '../src/io/errors.js';
import { compareArchitectures, layerRoleRef, mapModel, readRole, readRolePart, roleShape } from '../src/arch/map.js';
import type { RoleRef, TensorSource } from '../src/arch/types.js';
import { FakeSource } from './arch-fake-source.js';
import { SourceRoleReader } from '../src/arch/reader.js';

type Specs = Record<string, readonly number[]>;

/** Llama-named tensors: hidden h, heads x headDim queries, kv heads, MLP i, vocab v. */
function llamaSpecs(opts: { prefix?: string; layers?: number; h?: number; heads?: number; kv?: number; hd?: number; i?: number; vocab?: number; lmHead?: boolean } = {}): Specs {
  const { prefix = 'model.', layers = 2, h = 16, heads = 4, kv = 2, hd = 4, i = 24, vocab = 10, lmHead = true } = opts;
  const specs: Specs = { [`${prefix}embed_tokens.weight`]: [vocab, h], [`${prefix}norm.weight`]: [h] };
  if (lmHead) specs['lm_head.weight'] = [vocab, h];
  for (let l = 0; l < layers; l++) {
    const p = `${prefix}layers.${l}.`;
    specs[`${p}self_attn.q_proj.weight`] = [heads * hd, h];
    specs[`${p}self_attn.k_proj.weight`] = [kv * hd, h];
    specs[`${p}self_attn.v_proj.weight`] = [kv * hd, h];
    specs[`${p}self_attn.o_proj.weight`] = [h, heads * hd];
    specs[`${p}mlp.gate_proj.weight`] = [i, h];
    specs[`${p}mlp.up_proj.weight`] = [i, h];
    specs[`${p}mlp.down_proj.weight`] = [h, i];
    specs[`${p}input_layernorm.weight`] = [h];
    specs[`${p}post_attention_layernorm.weight`] = [h];
  }
  return specs;
}

const LLAMA_CONFIG = {
  model_type: 'llama', architectures: ['LlamaForCausalLM'], hidden_size: 16, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 24, vocab_size: 10, tie_word_embeddings: false,
};

/** Reference transpose-and-slice of a row-major (rows x cols) array: rows of the transpose in [start, end). */
function transposedRows(data: Float32Array, rows: number, cols: number, start: number, end: number): number[] {
  const out: number[] = [];
  for (let j = start; j < end; j++) for (let r = 0; r < rows; r++) out.push(data[r * cols + j]!);
  return out;
}

/** readRolePart of a role equals the same rows and columns picked from the whole role (any order, repeats). */
function assertPartsMatch(source: TensorSource, ref: RoleRef): void {
  const whole = readRole(source, ref);
  const rows = [whole.rows - 1, 0, 1, 1], cols = [whole.cols - 1, 2, 0];
  for (const part of [{ rows, cols }, { rows: null, cols }, { rows, cols: null }]) {
    const got = readRolePart(source, ref, part);
    const keptRows = part.rows ?? Array.from({ length: whole.rows }, (_, i) => i), keptCols = part.cols ?? Array.from({ length: whole.cols }, (_, j) => j);
    assert.deepEqual([got.rows, got.cols], [keptRows.length, keptCols.length], ref.tensor);
    assert.deepEqual([...got.data], keptRows.flatMap((i) => keptCols.map((j) => whole.data[i * whole.cols + j]!)), `${ref.tensor} part ${JSON.stringify(part)}`);
  }
  assert.throws(() => readRolePart(source, ref, { rows: [whole.rows], cols: null }), RangeError);
}

test('llama names: every role, dims from config.json, GQA shapes', () => {
  const source = new FakeSource(llamaSpecs(), LLAMA_CONFIG);
  const map = mapModel(source);
  assert.equal(map.family, 'llama');
  assert.deepEqual(map.dims, { hidden: 16, layers: 2, heads: 4, kvHeads: 2, headDim: 4, intermediate: 24, vocab: 10 });
  assert.equal(map.tiedEmbeddings, false);
  assert.equal(map.global.embed?.tensor, 'model.embed_tokens.weight');
  assert.equal(map.global.lm_head?.tensor, 'lm_head.weight');
  assert.equal(map.global.final_norm?.tensor, 'model.norm.weight');
  assert.equal(map.layers.length, 2);
  assert.deepEqual(Object.keys(map.layers[1]!).sort(), ['down', 'gate', 'input_norm', 'k', 'o', 'post_norm', 'q', 'up', 'v']);
  assert.equal(map.layers[1]!.k!.tensor, 'model.layers.1.self_attn.k_proj.weight');
  assert.deepEqual(map.layers[1]!.k!.shape, [8, 16]);
  assert.deepEqual(map.layers[0]!.input_norm!.shape, [16, 1]);
  assert.deepEqual(map.unmapped, []);
  assert.equal(map.layerPrefix, 'model.layers');
  assert.equal(map.architecture, 'LlamaForCausalLM');
  assert.equal(layerRoleRef(map, 1, 'down').tensor, 'model.layers.1.mlp.down_proj.weight');
  assert.throws(() => layerRoleRef(map, 2, 'q'), BadInputError);
  assert.throws(() => layerRoleRef(map, 0, 'fc_in'), /layer 0 has no fc_in/);
});

test('model_type names the llama-like family; missing lm_head ties it to the embedding', () => {
  for (const [modelType, family] of [['mistral', 'mistral'], ['qwen2', 'qwen2'], ['gemma2', 'gemma']] as const) {
    const map = mapModel(new FakeSource(llamaSpecs({ lmHead: false }), { ...LLAMA_CONFIG, model_type: modelType }));
    assert.equal(map.family, family);
    assert.equal(map.tiedEmbeddings, true);
    assert.equal(map.global.lm_head?.tensor, 'model.embed_tokens.weight');
  }
  // tie_word_embeddings: true wins over a stored lm_head, which is then left unmapped.
  const tied = mapModel(new FakeSource(llamaSpecs(), { ...LLAMA_CONFIG, tie_word_embeddings: true }));
  assert.equal(tied.global.lm_head?.tensor, 'model.embed_tokens.weight');
  assert.deepEqual(tied.unmapped, ['lm_head.weight']);
});

test('prefixes: PEFT base_model.model. and multimodal model.language_model. beside a vision tower', () => {
  const peftStyle = mapModel(new FakeSource(llamaSpecs({ prefix: 'base_model.model.model.' }), LLAMA_CONFIG));
  assert.equal(peftStyle.layers[0]!.q!.tensor, 'base_model.model.model.layers.0.self_attn.q_proj.weight');
  assert.equal(peftStyle.global.embed?.tensor, 'base_model.model.model.embed_tokens.weight');

  const specs: Specs = {
    ...llamaSpecs({ prefix: 'model.language_model.', layers: 3 }),
    'model.vision_tower.encoder.layers.0.self_attn.q_proj.weight': [8, 8],
    'model.vision_tower.encoder.layers.0.mlp.fc1.weight': [12, 8],
    'model.vision_tower.norm.weight': [8],
  };
  const config = { model_type: 'gemma3', architectures: ['Gemma3ForConditionalGeneration'], text_config: { ...LLAMA_CONFIG, num_hidden_layers: 3, model_type: 'gemma3_text' } };
  const map = mapModel(new FakeSource(specs, config));
  assert.equal(map.family, 'gemma');
  assert.equal(map.layerPrefix, 'model.language_model.layers');
  assert.equal(map.layers.length, 3);
  assert.equal(map.global.final_norm?.tensor, 'model.language_model.norm.weight');
  assert.equal(map.dims.hidden, 16);
  assert.deepEqual(map.unmapped, [
    'model.vision_tower.encoder.layers.0.mlp.fc1.weight',
    'model.vision_tower.encoder.layers.0.self_attn.q_proj.weight',
  ]);
});

test('no config.json: dims inferred from shapes', () => {
  const map = mapModel(new FakeSource(llamaSpecs({ layers: 3, h: 12, i: 20, vocab: 7 })));
  assert.deepEqual(map.dims, { hidden: 12, layers: 3, heads: null, kvHeads: null, headDim: null, intermediate: 20, vocab: 7 });
  assert.equal(map.family, 'llama');
});

test('config that contradicts the shapes is a BadInputError naming the tensor', () => {
  const wrongHeads = new FakeSource(llamaSpecs(), { ...LLAMA_CONFIG, num_key_value_heads: 4 });
  assert.throws(() => mapModel(wrongHeads), (err: unknown) =>
    err instanceof BadInputError && err.tensor === 'model.layers.0.self_attn.k_proj.weight' && /8x16 .* need 16x16/.test(err.message));
  const wrongInter = new FakeSource(llamaSpecs(), { ...LLAMA_CONFIG, intermediate_size: 32 });
  assert.throws(() => mapModel(wrongInter), (err: unknown) => err instanceof BadInputError && err.tensor === 'model.layers.0.mlp.gate_proj.weight');
  const wrongLayers = new FakeSource(llamaSpecs(), { ...LLAMA_CONFIG, num_hidden_layers: 3 });
  assert.throws(() => mapModel(wrongLayers), /config.json says 3 layers but the weights have 2/);
  const badValue = new FakeSource(llamaSpecs(), { ...LLAMA_CONFIG, hidden_size: '16' });
  assert.throws(() => mapModel(badValue), /hidden_size must be a positive integer/);
  const specs = llamaSpecs({ layers: 3 });
  for (const name of Object.keys(specs)) if (name.includes('layers.1.')) delete specs[name];
  assert.throws(() => mapModel(new FakeSource(specs)), /layer 1 of model.layers has no weights/);
});

test('Phi-3 fused qkv_proj and gate_up_proj split by row ranges', () => {
  const h = 16, heads = 4, kv = 2, hd = 4, i = 6;
  const specs: Specs = {
    'model.embed_tokens.weight': [10, h], 'model.norm.weight': [h], 'lm_head.weight': [10, h],
    'model.layers.0.self_attn.qkv_proj.weight': [(heads + 2 * kv) * hd, h],
    'model.layers.0.self_attn.o_proj.weight': [h, heads * hd],
    'model.layers.0.mlp.gate_up_proj.weight': [2 * i, h],
    'model.layers.0.mlp.down_proj.weight': [h, i],
    'model.layers.0.input_layernorm.weight': [h], 'model.layers.0.post_attention_layernorm.weight': [h],
  };
  const source = new FakeSource(specs, { model_type: 'phi3', hidden_size: h, num_hidden_layers: 1, num_attention_heads: heads, num_key_value_heads: kv, intermediate_size: i, vocab_size: 10 });
  const map = mapModel(source);
  assert.equal(map.family, 'phi3');
  const layer = map.layers[0]!;
  assert.deepEqual([layer.q!.rows, layer.k!.rows, layer.v!.rows], [[0, 16], [16, 24], [24, 32]]);
  assert.deepEqual([layer.gate!.rows, layer.up!.rows], [[0, 6], [6, 12]]);
  assert.deepEqual(layer.k!.shape, [8, 16]);
  const fused = source.read('model.layers.0.self_attn.qkv_proj.weight');
  const k = readRole(source, layer.k!);
  assert.deepEqual([k.rows, k.cols], [8, 16]);
  assert.deepEqual([...k.data], [...fused.slice(16 * h, 24 * h)]);
  const up = readRole(source, layer.up!);
  assert.deepEqual([...up.data], [...source.read('model.layers.0.mlp.gate_up_proj.weight').slice(6 * h)]);
  for (const role of ['q', 'k', 'v', 'up', 'down'] as const) assertPartsMatch(source, layer[role]!);
  // A qkv_proj whose size does not fit the head counts names the tensor.
  const bad = new FakeSource({ ...specs, 'model.layers.0.self_attn.qkv_proj.weight': [3 * h, h] }, { hidden_size: h, num_attention_heads: heads, num_key_value_heads: kv });
  assert.throws(() => mapModel(bad), (err: unknown) => err instanceof BadInputError && err.tensor === 'model.layers.0.self_attn.qkv_proj.weight');
});

test('GPT-NeoX query_key_value: interleaved per head, q/k/v as per-head row ranges', () => {
  const h = 8, heads = 2, hd = 4;
  const specs: Specs = {
    'gpt_neox.embed_in.weight': [10, h], 'embed_out.weight': [10, h], 'gpt_neox.final_layer_norm.weight': [h],
    'gpt_neox.layers.0.attention.query_key_value.weight': [3 * h, h],
    'gpt_neox.layers.0.attention.dense.weight': [h, h],
    'gpt_neox.layers.0.mlp.dense_h_to_4h.weight': [4 * h, h],
    'gpt_neox.layers.0.mlp.dense_4h_to_h.weight': [h, 4 * h],
    'gpt_neox.layers.0.input_layernorm.weight': [h], 'gpt_neox.layers.0.post_attention_layernorm.weight': [h],
  };
  const source = new FakeSource(specs, { model_type: 'gpt_neox', hidden_size: h, num_hidden_layers: 1, num_attention_heads: heads, intermediate_size: 4 * h, vocab_size: 10 });
  const map = mapModel(source);
  assert.equal(map.family, 'gpt_neox');
  assert.equal(map.global.lm_head?.tensor, 'embed_out.weight');
  assert.equal(map.tiedEmbeddings, false);
  const layer = map.layers[0]!;
  assert.deepEqual(layer.q!.rowRanges, [[0, 4], [12, 16]]);
  assert.deepEqual(layer.k!.rowRanges, [[4, 8], [16, 20]]);
  assert.deepEqual(layer.v!.rowRanges, [[8, 12], [20, 24]]);
  assert.deepEqual([layer.o!.tensor, layer.fc_in!.tensor], ['gpt_neox.layers.0.attention.dense.weight', 'gpt_neox.layers.0.mlp.dense_h_to_4h.weight']);
  const fused = source.read('gpt_neox.layers.0.attention.query_key_value.weight');
  const v = readRole(source, layer.v!);
  assert.deepEqual([v.rows, v.cols], [8, 8]);
  assert.deepEqual([...v.data], [...fused.slice(8 * h, 12 * h), ...fused.slice(20 * h, 24 * h)]);
  for (const role of ['q', 'v', 'o'] as const) assertPartsMatch(source, layer[role]!);
  assert.throws(() => mapModel(new FakeSource(specs)), /needs num_attention_heads/);
});

test('GPT-2 Conv1D weights are transposed when read; c_attn splits into thirds; wte is tied', () => {
  const h = 6;
  const specs: Specs = {
    'transformer.wte.weight': [11, h], 'transformer.wpe.weight': [16, h], 'transformer.ln_f.weight': [h],
    'transformer.h.0.attn.c_attn.weight': [h, 3 * h], 'transformer.h.0.attn.c_proj.weight': [h, h],
    'transformer.h.0.mlp.c_fc.weight': [h, 4 * h], 'transformer.h.0.mlp.c_proj.weight': [4 * h, h],
    'transformer.h.0.ln_1.weight': [h], 'transformer.h.0.ln_2.weight': [h],
  };
  const source = new FakeSource(specs, { model_type: 'gpt2', n_embd: h, n_layer: 1, n_head: 2, n_inner: null, vocab_size: 11 });
  const map = mapModel(source);
  assert.equal(map.family, 'gpt2');
  assert.deepEqual(map.dims, { hidden: h, layers: 1, heads: 2, kvHeads: 2, headDim: 3, intermediate: 24, vocab: 11 });
  assert.equal(map.tiedEmbeddings, true);
  assert.equal(map.global.lm_head?.tensor, 'transformer.wte.weight');
  assert.deepEqual(map.unmapped, ['transformer.wpe.weight']);
  const layer = map.layers[0]!;
  assert.deepEqual([layer.q!.rows, layer.k!.rows, layer.v!.rows], [[0, 6], [6, 12], [12, 18]]);
  assert.equal(layer.k!.transposed, true);
  const stored = source.read('transformer.h.0.attn.c_attn.weight');
  const k = readRole(source, layer.k!);
  assert.deepEqual([k.rows, k.cols], [6, 6]);
  assert.deepEqual([...k.data], transposedRows(stored, h, 3 * h, 6, 12));
  // c_fc is 6 stored rows: the fake yields 3-row blocks, so the transpose crosses a block border.
  const fcIn = readRole(source, layer.fc_in!);
  assert.deepEqual([fcIn.rows, fcIn.cols], [24, 6]);
  assert.deepEqual([...fcIn.data], transposedRows(source.read('transformer.h.0.mlp.c_fc.weight'), h, 4 * h, 0, 4 * h));
  assert.deepEqual(roleShape(source, layer.fc_out!), [6, 24]);
  for (const role of ['k', 'fc_in', 'fc_out'] as const) assertPartsMatch(source, layer[role]!);
});

test('ViT and BERT names map to q, k, v, o, fc_in, fc_out', () => {
  const vitSpecs: Specs = { 'vit.layernorm.weight': [8], 'vit.embeddings.patch_embeddings.projection.weight': [8, 3, 2, 2] };
  const bertSpecs: Specs = { 'bert.embeddings.word_embeddings.weight': [30, 8], 'bert.pooler.dense.weight': [8, 8] };
  for (const l of [0, 1]) {
    const v = `vit.encoder.layer.${l}.`;
    Object.assign(vitSpecs, {
      [`${v}attention.attention.query.weight`]: [8, 8], [`${v}attention.attention.key.weight`]: [8, 8],
      [`${v}attention.attention.value.weight`]: [8, 8], [`${v}attention.output.dense.weight`]: [8, 8],
      [`${v}intermediate.dense.weight`]: [32, 8], [`${v}output.dense.weight`]: [8, 32],
      [`${v}layernorm_before.weight`]: [8], [`${v}layernorm_after.weight`]: [8],
    });
    const b = `bert.encoder.layer.${l}.`;
    Object.assign(bertSpecs, {
      [`${b}attention.self.query.weight`]: [8, 8], [`${b}attention.self.key.weight`]: [8, 8],
      [`${b}attention.self.value.weight`]: [8, 8], [`${b}attention.output.dense.weight`]: [8, 8],
      [`${b}attention.output.LayerNorm.weight`]: [8], [`${b}intermediate.dense.weight`]: [32, 8],
      [`${b}output.dense.weight`]: [8, 32], [`${b}output.LayerNorm.weight`]: [8],
    });
  }
  const vit = mapModel(new FakeSource(vitSpecs, { model_type: 'vit', hidden_size: 8, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32 }));
  assert.equal(vit.family, 'vit');
  assert.equal(vit.layers[1]!.fc_out!.tensor, 'vit.encoder.layer.1.output.dense.weight');
  assert.equal(vit.layers[1]!.o!.tensor, 'vit.encoder.layer.1.attention.output.dense.weight');
  assert.equal(vit.layers[0]!.k!.tensor, 'vit.encoder.layer.0.attention.attention.key.weight');
  assert.equal(vit.global.final_norm?.tensor, 'vit.layernorm.weight');
  assert.equal(vit.global.lm_head, undefined);
  assert.equal(vit.tiedEmbeddings, false);

  const bert = mapModel(new FakeSource(bertSpecs, { model_type: 'bert', hidden_size: 8, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32, vocab_size: 30 }));
  assert.equal(bert.family, 'bert');
  assert.deepEqual(Object.keys(bert.layers[0]!).sort(), ['fc_in', 'fc_out', 'input_norm', 'k', 'o', 'post_norm', 'q', 'v']);
  assert.equal(bert.layers[0]!.v!.tensor, 'bert.encoder.layer.0.attention.self.value.weight');
  assert.equal(bert.global.embed?.tensor, 'bert.embeddings.word_embeddings.weight');
  assert.deepEqual(bert.unmapped, ['bert.pooler.dense.weight']);
});

test('unknown names: generic family keeps every 2-D weight by name', () => {
  const map = mapModel(new FakeSource({ 'net.0.weight': [5, 3], 'net.0.bias': [5], 'net.2.weight': [2, 5] }));
  assert.equal(map.family, 'generic');
  assert.deepEqual(map.unmapped, ['net.0.weight', 'net.2.weight']);
  assert.deepEqual(map.layers, []);
  assert.equal(map.dims.hidden, 3);
});

test('compareArchitectures: nothing for twins, plain words for differences', () => {
  const a = mapModel(new FakeSource(llamaSpecs(), LLAMA_CONFIG));
  assert.deepEqual(compareArchitectures(a, mapModel(new FakeSource(llamaSpecs(), LLAMA_CONFIG))), []);
  const wider = mapModel(new FakeSource(llamaSpecs({ i: 32 }), { ...LLAMA_CONFIG, intermediate_size: 32 }));
  assert.deepEqual(compareArchitectures(a, wider), [
    'intermediate (MLP) size differs: 24 vs 32',
    'gate weight of layer 0: 24x16 vs 32x16 (2 layers differ)',
    'up weight of layer 0: 24x16 vs 32x16 (2 layers differ)',
    'down weight of layer 0: 16x24 vs 16x32 (2 layers differ)',
  ]);
  const deeper = mapModel(new FakeSource(llamaSpecs({ layers: 3 }), { ...LLAMA_CONFIG, num_hidden_layers: 3 }));
  assert.deepEqual(compareArchitectures(a, deeper), ['layer count differs: 2 vs 3']);
});

test('fake source slices rows of its known values', () => {
  const source = new FakeSource({ a: [2, 2], b: [4, 3] });
  assert.deepEqual([...source.readRows('b', 1, 3)], [100003, 100004, 100005, 100006, 100007, 100008]);
  assert.deepEqual([...source.rowBlocks('b')].map((b) => [b.rowStart, b.rowEnd]), [[0, 3], [3, 4]]);
});

test('storageOrder: a layer\'s roles by file position, whatever order they are asked in; missing roles last', () => {
  // Stored in the name order safetensors writers use: mlp before self_attn, down before gate.
  const specs = llamaSpecs();
  const sorted = Object.fromEntries(Object.keys(specs).sort().map((name) => [name, specs[name]!]));
  const reader = new SourceRoleReader(new FakeSource(sorted, LLAMA_CONFIG));
  assert.deepEqual(reader.storageOrder(0, ['q', 'k', 'v', 'o', 'gate', 'up', 'down']), ['down', 'gate', 'up', 'k', 'o', 'q', 'v']);
  // In the order written when it is not sorted; a role the layer lacks goes last.
  const asWritten = new SourceRoleReader(new FakeSource(specs, LLAMA_CONFIG));
  assert.deepEqual(asWritten.storageOrder(0, ['down', 'fc_in', 'q', 'gate']), ['q', 'gate', 'down', 'fc_in']);
});
