import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeModelFolder, writeSafetensors, type FixtureTensor } from './helpers/safetensors-writer.js';
import { openTensorSource } from '../src/io/source.js';
import { mapModel, readRole } from '../src/arch/map.js';
import type { InspectReport } from '../src/reports/inspect-report.js';
import { runLineage } from './cli-child-process.js';

const HIDDEN = 8, HEADS = 2, KV = 1, HEAD_DIM = 4, INTER = 12, VOCAB = 16, LAYERS = 3;

function tinyLlama(): Record<string, FixtureTensor> {
  const t = (shape: number[]): FixtureTensor => ({ shape, data: Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => (i % 7) - 3) });
  const tensors: Record<string, FixtureTensor> = { 'model.embed_tokens.weight': t([VOCAB, HIDDEN]), 'model.norm.weight': t([HIDDEN]) };
  for (let l = 0; l < LAYERS; l++) {
    const p = `model.layers.${l}.`;
    Object.assign(tensors, {
      [`${p}self_attn.q_proj.weight`]: t([HEADS * HEAD_DIM, HIDDEN]),
      [`${p}self_attn.k_proj.weight`]: t([KV * HEAD_DIM, HIDDEN]),
      [`${p}self_attn.v_proj.weight`]: t([KV * HEAD_DIM, HIDDEN]),
      [`${p}self_attn.o_proj.weight`]: t([HIDDEN, HEADS * HEAD_DIM]),
      [`${p}mlp.gate_proj.weight`]: t([INTER, HIDDEN]),
      [`${p}mlp.up_proj.weight`]: t([INTER, HIDDEN]),
      [`${p}mlp.down_proj.weight`]: { ...t([HIDDEN, INTER]), dtype: 'F32' },
      [`${p}input_layernorm.weight`]: t([HIDDEN]),
      [`${p}post_attention_layernorm.weight`]: t([HIDDEN]),
    });
  }
  return tensors;
}

const CONFIG = {
  architectures: ['MistralForCausalLM'], model_type: 'mistral', hidden_size: HIDDEN, num_hidden_layers: LAYERS,
  num_attention_heads: HEADS, num_key_value_heads: KV, intermediate_size: INTER, vocab_size: VOCAB, tie_word_embeddings: true,
};

function withTempDir(body: (dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-inspect-'));
    try {
      await body(dir);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
}

test('inspect --json on a sharded bf16 model folder: dims, dtypes, shards, tied embeddings', withTempDir(async (dir) => {
  const tensors = tinyLlama();
  writeModelFolder(dir, CONFIG, tensors, { shards: 2, dtype: 'BF16' });
  const run = await runLineage(['inspect', dir, '--json']);
  assert.equal(run.code, 0, run.stderr);
  const report = JSON.parse(run.stdout) as InspectReport;
  assert.equal(report.kind, 'model');
  assert.deepEqual(report.files, ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
  assert.equal(report.shards, 2);
  assert.equal(report.tensors, Object.keys(tensors).length);
  const perLayer = 2 * HEADS * HEAD_DIM * HIDDEN + 2 * KV * HEAD_DIM * HIDDEN + 3 * INTER * HIDDEN + 2 * HIDDEN;
  assert.equal(report.parameters, VOCAB * HIDDEN + HIDDEN + LAYERS * perLayer);
  assert.deepEqual(report.dtypes, {
    BF16: { tensors: Object.keys(tensors).length - LAYERS, parameters: report.parameters - LAYERS * HIDDEN * INTER },
    F32: { tensors: LAYERS, parameters: LAYERS * HIDDEN * INTER },
  });
  assert.equal(report.adapter, null);
  const m = report.model!;
  assert.deepEqual(
    [m.family, m.architecture, m.layers, m.hidden, m.heads, m.kvHeads, m.headDim, m.intermediate, m.vocab, m.tiedEmbeddings],
    ['mistral', 'MistralForCausalLM', LAYERS, HIDDEN, HEADS, KV, HEAD_DIM, INTER, VOCAB, true],
  );
  assert.deepEqual(m.globalRoles, ['embed', 'lm_head', 'final_norm']);
  assert.deepEqual(m.roles, [{ layers: '0-2', roles: ['q', 'k', 'v', 'o', 'gate', 'up', 'down', 'input_norm', 'post_norm'] }]);

  const table = await runLineage(['inspect', dir]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /MistralForCausalLM \(family mistral\)/);
  assert.match(table.stdout, /2 \/ 1 \(head dim 4\)/);
  assert.match(table.stdout, /0-2: q k v o gate up down input_norm post_norm/);
}));

test('readRole through the real reader returns the stored bf16 values', withTempDir(async (dir) => {
  writeModelFolder(dir, CONFIG, tinyLlama(), { dtype: 'BF16' });
  const source = openTensorSource(dir);
  try {
    const k = readRole(source, mapModel(source).layers[2]!.k!);
    assert.deepEqual([k.rows, k.cols, k.dtype], [KV * HEAD_DIM, HIDDEN, 'BF16']);
    assert.deepEqual([...k.data], Array.from({ length: KV * HEAD_DIM * HIDDEN }, (_, i) => (i % 7) - 3));
  } finally {
    source.close();
  }
}));

test('inspect on an adapter folder: rank, alpha, scale, targets, layers', withTempDir(async (dir) => {
  const tensors: Record<string, FixtureTensor> = {};
  for (const l of [0, 1]) {
    for (const [module, out] of [['self_attn.v_proj', KV * HEAD_DIM], ['self_attn.o_proj', HIDDEN]] as const) {
      const base = `base_model.model.model.layers.${l}.${module}`;
      tensors[`${base}.lora_A.weight`] = { shape: [4, HIDDEN], data: new Array(4 * HIDDEN).fill(0.5) };
      tensors[`${base}.lora_B.weight`] = { shape: [out, 4], data: new Array(out * 4).fill(0) };
    }
  }
  writeSafetensors(path.join(dir, 'adapter_model.safetensors'), tensors);
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({
    peft_type: 'LORA', r: 4, lora_alpha: 16, use_rslora: true, target_modules: ['v_proj', 'o_proj'], base_model_name_or_path: 'tiny',
  }));
  const run = await runLineage(['inspect', '--json', dir]);
  assert.equal(run.code, 0, run.stderr);
  const report = JSON.parse(run.stdout) as InspectReport;
  assert.equal(report.kind, 'adapter');
  assert.equal(report.model, null);
  assert.deepEqual(report.adapter, {
    peftType: 'LORA', baseModel: 'tiny', ranks: [4], alphas: [16], scales: [8], useRslora: true,
    targets: ['v_proj', 'o_proj'], targetModules: ['v_proj', 'o_proj'], layers: [0, 1], factors: 4,
  });
  const table = await runLineage(['inspect', dir]);
  assert.match(table.stdout, /scale +│ 8 \(rslora\)/);
  assert.match(table.stdout, /targets +│ v_proj o_proj/);
}));

test('inspect reports a config that contradicts the weights as bad input naming the tensor', withTempDir(async (dir) => {
  writeModelFolder(dir, { ...CONFIG, intermediate_size: INTER + 1 }, tinyLlama());
  const run = await runLineage(['inspect', dir]);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /^error: gate weight of layer 0 is 12x8 .*tensor model\.layers\.0\.mlp\.gate_proj\.weight\)\n$/);
}));
