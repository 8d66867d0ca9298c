import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BadInputError } from '../src/io/errors.js';
import { describeAdapter, isAdapter, mapAdapter } from '../src/arch/peft.js';
import { FakeSource } from './arch-fake-source.js';

const P = 'base_model.model.model.layers.';

/** LoRA factor shapes of one module: A (r x in), B (out x r). */
function lora(module: string, r: number, inF: number, outF: number, adapterName = ''): Record<string, readonly number[]> {
  return { [`${module}.lora_A${adapterName}.weight`]: [r, inF], [`${module}.lora_B${adapterName}.weight`]: [outF, r] };
}

test('q/v adapter: factors per layer and role, scale = alpha / r', () => {
  const specs = {};
  for (let l = 0; l < 3; l++) Object.assign(specs, lora(`${P}${l}.self_attn.q_proj`, 8, 128, 128), lora(`${P}${l}.self_attn.v_proj`, 8, 128, 64));
  const source = new FakeSource(specs, { peft_type: 'LORA', r: 8, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'], base_model_name_or_path: 'p0' });
  assert.equal(isAdapter(source), true);
  const adapter = mapAdapter(source);
  assert.equal(adapter.layers.length, 3);
  const q2 = adapter.layers[2]!.q!;
  assert.equal(q2.A, `${P}2.self_attn.q_proj.lora_A.weight`);
  assert.equal(q2.B, `${P}2.self_attn.q_proj.lora_B.weight`);
  assert.deepEqual([q2.rank, q2.alpha, q2.scale, q2.inFeatures, q2.outFeatures, q2.layer, q2.moduleName], [8, 16, 2, 128, 128, 2, 'q_proj']);
  assert.equal(adapter.layers[0]!.v!.outFeatures, 64);
  assert.equal(adapter.layers[0]!.k, undefined);
  assert.deepEqual(describeAdapter(adapter), {
    peftType: 'LORA', baseModel: 'p0', ranks: [8], alphas: [16], scales: [2], useRslora: false,
    targets: ['q_proj', 'v_proj'], targetModules: ['q_proj', 'v_proj'], layers: [0, 1, 2], factors: 6,
  });
});

test('rslora scales by alpha / sqrt(r); rank_pattern and alpha_pattern match module suffixes', () => {
  const specs = {
    ...lora(`${P}0.self_attn.q_proj`, 4, 16, 16),
    ...lora(`${P}0.mlp.down_proj`, 16, 24, 16, '.default'),
    ...lora(`${P}1.self_attn.q_proj`, 4, 16, 16),
    ...lora(`${P}1.mlp.down_proj`, 2, 24, 16),
  };
  const source = new FakeSource(specs, {
    peft_type: 'LORA', r: 4, lora_alpha: 8, use_rslora: true, target_modules: 'all-linear',
    rank_pattern: { 'model.layers.1.mlp.down_proj': 2, down_proj: 16 }, alpha_pattern: { 'layers.0.mlp.down_proj': 32 },
  });
  const adapter = mapAdapter(source);
  const [l0, l1] = [adapter.layers[0]!, adapter.layers[1]!];
  assert.deepEqual([l0.q!.rank, l0.q!.alpha, l0.q!.scale], [4, 8, 4]);
  assert.deepEqual([l0.down!.rank, l0.down!.alpha, l0.down!.scale], [16, 32, 8]);
  assert.deepEqual([l1.down!.rank, l1.down!.alpha, l1.down!.scale], [2, 8, 8 / Math.sqrt(2)]);
  assert.equal(l0.down!.A, `${P}0.mlp.down_proj.lora_A.default.weight`);
  const summary = describeAdapter(adapter);
  assert.deepEqual(summary.ranks, [2, 4, 16]);
  assert.deepEqual(summary.alphas, [8, 32]);
  assert.deepEqual(summary.targets, ['q_proj', 'down_proj']);
  assert.equal(summary.targetModules, 'all-linear');
  assert.equal(summary.useRslora, true);
});

test('fan_in_fan_out is recorded; modules outside the layers and non-LoRA tensors are kept apart', () => {
  const specs = {
    ...lora('base_model.model.transformer.h.0.attn.c_proj', 2, 6, 6),
    ...lora('base_model.model.lm_head', 2, 6, 11),
    'base_model.model.transformer.h.0.attn.c_proj.lora_magnitude_vector': [6],
  };
  const adapter = mapAdapter(new FakeSource(specs, { peft_type: 'LORA', r: 2, lora_alpha: 4, fan_in_fan_out: true }));
  assert.equal(adapter.layers[0]!.o!.fanInFanOut, true);
  const head = adapter.factors.find((f) => f.moduleName === 'lm_head')!;
  assert.deepEqual([head.layer, head.role, head.outFeatures], [null, null, 11]);
  assert.deepEqual(adapter.ignored, ['base_model.model.transformer.h.0.attn.c_proj.lora_magnitude_vector']);
});

test('mismatched or unpaired factors are BadInputErrors naming the tensor', () => {
  const config = { peft_type: 'LORA', r: 8, lora_alpha: 16 };
  const badB = { [`${P}0.self_attn.q_proj.lora_A.weight`]: [8, 16], [`${P}0.self_attn.q_proj.lora_B.weight`]: [16, 4] };
  assert.throws(() => mapAdapter(new FakeSource(badB, config)), (err: unknown) =>
    err instanceof BadInputError && err.tensor === `${P}0.self_attn.q_proj.lora_B.weight` && /rank 8/.test(err.message));
  const wrongRank = lora(`${P}0.self_attn.q_proj`, 4, 16, 16);
  assert.throws(() => mapAdapter(new FakeSource(wrongRank, config)), (err: unknown) =>
    err instanceof BadInputError && err.tensor === `${P}0.self_attn.q_proj.lora_A.weight` && /r = 8/.test(err.message));
  const lonely = { [`${P}0.self_attn.q_proj.lora_A.weight`]: [8, 16] };
  assert.throws(() => mapAdapter(new FakeSource(lonely, config)), /without its lora_B partner/);
  assert.throws(() => mapAdapter(new FakeSource({}, { peft_type: 'IA3' })), /unsupported PEFT type IA3/);
  assert.equal(isAdapter(new FakeSource({ 'model.layers.0.self_attn.q_proj.weight': [4, 4] })), false);
});
