/**
 * PEFT adapters on fused modules (GPT-2 `c_attn`, a Conv1D with fan_in_fan_out; GPT-NeoX
 * `query_key_value`, q, k, v interleaved per head): each role the module holds takes its own rows
 * of B, merged exactly, and verify reads the adapter's rank on q, k and v; adapters that do not fit
 * the base are refused.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { MergedAdapterReader } from '../src/arch/adapter-reader.js';
import { mapAdapter } from '../src/arch/peft.js';
import { SourceRoleReader } from '../src/arch/reader.js';
import { verify } from '../src/api/verify.js';
import { EXIT, IncompatibleModelsError } from '../src/io/errors.js';
import { Rng } from '../src/linalg/rng.js';
import { openTensorSource } from '../src/io/source.js';
import type { LayerRole } from '../src/arch/types.js';
import { FakeSource } from './arch-fake-source.js';
import { runLineage } from './cli-child-process.js';
import {
  CANONICAL, randomLayerNormModel, writeLayerNormAdapter, writeLayerNormModel, type LayerNormShape, type PlainModule, type WrittenFactor,
} from './helpers/layernorm-models.js';

const GPT2: LayerNormShape = { family: 'gpt2', hidden: 48, heads: 3, layers: 3, ff: 192, vocab: 400, patch: 0, positions: 32, labels: 0 };
const NEOX: LayerNormShape = { family: 'gpt_neox', hidden: 40, heads: 5, layers: 2, ff: 120, vocab: 350, patch: 0, positions: 0, labels: 350 };
const RANK = 3;

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-fused-adapter-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

function writeBase(name: string, shape: LayerNormShape, seed: number): string {
  const dir = path.join(root, name);
  writeLayerNormModel(dir, randomLayerNormModel(shape, seed));
  return dir;
}

/** The rows of the fused module's B that hold `role` of head-interleaved (NeoX) or thirds (GPT-2) layouts, as the model writers lay them out. */
function fusedRows(shape: LayerNormShape, role: 'q' | 'k' | 'v'): number[] {
  const h = shape.hidden, k = ['q', 'k', 'v'].indexOf(role);
  if (shape.family === 'gpt2') return Array.from({ length: h }, (_, i) => k * h + i);
  const hd = h / shape.heads;
  return Array.from({ length: h }, (_, i) => (3 * Math.floor(i / hd) + k) * hd + (i % hd));
}

/** The merged role equals the base's plus B's rows of the role times A (scale 1), to float32. */
function assertMerged(baseDir: string, adapterDir: string, shape: LayerNormShape, module: string, factor: WrittenFactor, layer: number): void {
  const base = SourceRoleReader.open(baseDir);
  const merged = new MergedAdapterReader(SourceRoleReader.open(baseDir), openTensorSource(adapterDir));
  try {
    for (const role of ['q', 'k', 'v'] as const) {
      const before = base.layer(layer, role as LayerRole), after = merged.layer(layer, role as LayerRole);
      const rows = fusedRows(shape, role);
      let worst = 0;
      for (let i = 0; i < before.rows; i++) {
        for (let j = 0; j < before.cols; j++) {
          let delta = 0;
          for (let t = 0; t < RANK; t++) delta += factor.B[rows[i]! * RANK + t]! * factor.A[t * factor.in + j]!;
          worst = Math.max(worst, Math.abs(after.data[i * before.cols + j]! - (before.data[i * before.cols + j]! + delta)));
        }
      }
      assert.ok(worst < 1e-5, `${module} ${role}: merged differs from W + B_${role} A by ${worst}`);
      // A part (as residual samples read) is the same rows and columns of the merged role.
      const keptRows = Int32Array.from([before.rows - 1, 0, 7]), keptCols = Int32Array.from([2, before.cols - 1]);
      const part = merged.layerPart(layer, role, { rows: keptRows, cols: keptCols });
      keptRows.forEach((r, i) => keptCols.forEach((c, j) => {
        assert.ok(Math.abs(part.data[i * keptCols.length + j]! - after.data[r * after.cols + c]!) < 1e-6, `${module} ${role}: part (${r}, ${c})`);
      }));
    }
  } finally {
    merged.close();
    base.close();
  }
}

function assertDerived(result: Awaited<ReturnType<typeof verify>>, targets: readonly PlainModule[], native: readonly string[], what: string): void {
  assert.equal(result.relation, 'derived', `${what}: ${result.reason}`);
  assert.ok(result.lora, `${what}: no LoRA read (${result.reason})`);
  assert.equal(result.lora.rank, RANK, `${what}: rank`);
  assert.deepEqual([...result.lora.targets].sort(), targets.map((t) => CANONICAL[t]).sort(), `${what}: targets`);
  assert.deepEqual([...(result.lora.nativeTargets ?? [])].sort(), [...native].sort(), `${what}: native targets`);
}

describe('PEFT adapters on fused modules', () => {
  const gpt2Base = writeBase('gpt2-base', GPT2, 21);
  const neoxBase = writeBase('neox-base', NEOX, 31);

  test('mapAdapter: a c_attn factor changes q, k and v; c_proj is o or fc_out by its path', () => {
    const dir = path.join(root, 'gpt2-map');
    writeLayerNormAdapter(dir, GPT2, ['c_attn', 'c_proj'], RANK, 22);
    const source = openTensorSource(dir);
    try {
      const adapter = mapAdapter(source);
      const attn = adapter.factors.find((f) => f.module.endsWith('h.1.attn.c_attn'))!;
      assert.equal(attn.role, null);
      assert.equal(attn.fused, 'qkv_thirds');
      assert.deepEqual(attn.roles, ['q', 'k', 'v']);
      assert.equal(attn.fanInFanOut, true);
      assert.deepEqual(Object.keys(adapter.layers[1]!).sort(), ['fc_out', 'k', 'o', 'q', 'v']);
      assert.equal(adapter.layers[1]!.q, attn);
    } finally {
      source.close();
    }
  });

  test('GPT-2 c_attn + c_proj (fan_in_fan_out): merged rows exact; derived, rank 3 on q, k, v, o, down', async () => {
    const dir = path.join(root, 'gpt2-adapter');
    const factors = writeLayerNormAdapter(dir, GPT2, ['c_attn', 'c_proj'], RANK, 23);
    assertMerged(gpt2Base, dir, GPT2, 'transformer.h.2.attn.c_attn', factors.get('transformer.h.2.attn.c_attn')!, 2);
    assertDerived(await verify(gpt2Base, dir), ['q', 'k', 'v', 'o', 'fc_out'], ['c_attn', 'attn.c_proj', 'mlp.c_proj'], 'gpt2 c_attn + c_proj');
  });

  test('GPT-2 c_attn only, through the CLI: exit 0, derived, rank 3 on q, k, v', async () => {
    const dir = path.join(root, 'gpt2-attn-only');
    writeLayerNormAdapter(dir, GPT2, ['c_attn'], RANK, 24);
    const run = await runLineage(['verify', gpt2Base, dir, '--json', '--workers', '0', '--quiet']);
    assert.equal(run.code, EXIT.ok, run.stderr);
    assertDerived(JSON.parse(run.stdout), ['q', 'k', 'v'], ['c_attn'], 'gpt2 c_attn (CLI)');
  });

  test('GPT-NeoX query_key_value (per-head interleave) + dense_4h_to_h: merged rows exact; derived, rank 3 on q, k, v, down', async () => {
    const dir = path.join(root, 'neox-adapter');
    const factors = writeLayerNormAdapter(dir, NEOX, ['query_key_value', 'dense_4h_to_h'], RANK, 32);
    assertMerged(neoxBase, dir, NEOX, 'gpt_neox.layers.1.attention.query_key_value', factors.get('gpt_neox.layers.1.attention.query_key_value')!, 1);
    assertDerived(await verify(neoxBase, dir), ['q', 'k', 'v', 'fc_out'], ['query_key_value', 'dense_4h_to_h'], 'neox qkv + dense_4h_to_h');
  });

  for (const [label, baseOf, shape, modules] of [
    ['a c_attn adapter for a wider GPT-2', () => gpt2Base, { ...GPT2, hidden: 60, heads: 4 }, ['c_attn']],
    ['a query_key_value adapter for a GPT-NeoX of other heads', () => neoxBase, { ...NEOX, hidden: 48, heads: 6 }, ['query_key_value']],
    ['a GPT-NeoX query_key_value adapter on a GPT-2 of the same width', () => gpt2Base, { ...NEOX, hidden: GPT2.hidden, heads: GPT2.heads, layers: GPT2.layers }, ['query_key_value']],
  ] as const) {
    test(`${label}: IncompatibleModelsError, exit code ${EXIT.incompatible}`, async () => {
      const dir = path.join(root, label.replace(/\W+/g, '-'));
      writeLayerNormAdapter(dir, shape, modules, RANK, 41);
      await assert.rejects(verify(baseOf(), dir), (err: unknown) => {
        assert.ok(err instanceof IncompatibleModelsError, String(err));
        assert.equal(err.exitCode, EXIT.incompatible);
        assert.match(err.message, /adapter factor .*(query_key_value|c_attn)/);
        return true;
      });
    });
  }
});

test('Phi-3 qkv_proj with grouped-query attention and gate_up_proj: each role merges its own rows of B', () => {
  const h = 16, heads = 4, kv = 2, hd = 4, inter = 6, rank = 2;
  const qkvRows = (heads + 2 * kv) * hd;
  const base = new SourceRoleReader(new FakeSource({
    'model.embed_tokens.weight': [10, h], 'model.norm.weight': [h], 'lm_head.weight': [10, h],
    'model.layers.0.self_attn.qkv_proj.weight': [qkvRows, h],
    'model.layers.0.self_attn.o_proj.weight': [h, heads * hd],
    'model.layers.0.mlp.gate_up_proj.weight': [2 * inter, h],
    'model.layers.0.mlp.down_proj.weight': [h, inter],
    'model.layers.0.input_layernorm.weight': [h], 'model.layers.0.post_attention_layernorm.weight': [h],
  }, { model_type: 'phi3', hidden_size: h, num_hidden_layers: 1, num_attention_heads: heads, num_key_value_heads: kv, intermediate_size: inter, vocab_size: 10 }));
  const rng = new Rng(5);
  const factor = (out: number) => ({
    A: Float32Array.from({ length: rank * h }, () => Math.round(8 * rng.gaussian())),
    B: Float32Array.from({ length: out * rank }, () => Math.round(8 * rng.gaussian())),
  });
  const qkv = factor(qkvRows), gateUp = factor(2 * inter);
  const lora = (module: string, f: { A: Float32Array; B: Float32Array }, out: number) => ({
    [`base_model.model.model.layers.0.${module}.lora_A.weight`]: { shape: [rank, h], data: f.A },
    [`base_model.model.model.layers.0.${module}.lora_B.weight`]: { shape: [out, rank], data: f.B },
  });
  const merged = new MergedAdapterReader(base, new FakeSource(
    { ...lora('self_attn.qkv_proj', qkv, qkvRows), ...lora('mlp.gate_up_proj', gateUp, 2 * inter) },
    { peft_type: 'LORA', r: rank, lora_alpha: rank, target_modules: ['qkv_proj', 'gate_up_proj'] },
  ));
  // Rows of each role in its fused module: q 0..15, k 16..23, v 24..31; gate 0..5, up 6..11.
  for (const [role, f, first] of [['q', qkv, 0], ['k', qkv, 16], ['v', qkv, 24], ['gate', gateUp, 0], ['up', gateUp, inter]] as const) {
    const before = base.layer(0, role), after = merged.layer(0, role);
    for (let i = 0; i < before.rows; i++) {
      for (let j = 0; j < h; j++) {
        let delta = 0;
        for (let t = 0; t < rank; t++) delta += f.B[(first + i) * rank + t]! * f.A[t * h + j]!;
        // Integer factors: the delta is exact; the base's values are exact in float32.
        assert.equal(after.data[i * h + j]! - before.data[i * h + j]!, delta, `${role} (${i}, ${j})`);
      }
    }
  }
  merged.close();
});
