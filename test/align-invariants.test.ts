/**
 * The attention invariants and the Origin-Tracer probe rank with known answers: a copy, LoRA on V
 * and/or O of known ranks (the probe rank is r_v + r_o), a function-preserving V/O rescaling (rank
 * 0, VO cosine 1), the two together, saturation when the probes are fewer than the rank, and the
 * probe count sized from the weight-delta ranks.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { attentionInvariants, MIN_PROBES, probesFor } from '../src/align/invariants.js';
import type { HeadLayout, LayerWeights } from '../src/align/llama.js';
import { noisyFromWeight } from '../src/align/noisy.js';
import { Rng } from '../src/linalg/rng.js';
import {
  addLora, obfuscate, randomLlama, tensorName, type LlamaConfig, type LlamaState, type Module,
} from './helpers/synthetic-llama.js';

const GQA: LlamaConfig = { hidden: 96, intermediate: 160, layers: 1, heads: 4, kvHeads: 2, headDim: 16, vocab: 32 };
const MHA: LlamaConfig = { ...GQA, kvHeads: 4 };

function layout(config: LlamaConfig): HeadLayout {
  return { heads: config.heads, kvHeads: config.kvHeads, headDim: config.headDim };
}

/** Layer 0 of a synthetic state as verify analyses it: stored in bf16, with rounding variances. */
function layerWeights(state: LlamaState): LayerWeights {
  const matrix = (module: Module) => {
    const t = state.get(tensorName(0, module))!;
    return noisyFromWeight({ rows: t.shape[0]!, cols: t.shape[1]!, data: t.data, dtype: 'F32', tensor: module, file: 'state' }, 'BF16');
  };
  const norm = (name: string) => Float64Array.from(state.get(`model.layers.0.${name}.weight`)!.data);
  return {
    q: matrix('q_proj'), k: matrix('k_proj'), v: matrix('v_proj'), o: matrix('o_proj'),
    gate: matrix('gate_proj'), up: matrix('up_proj'), down: matrix('down_proj'),
    inputNorm: norm('input_layernorm'), postNorm: norm('post_attention_layernorm'),
  };
}

/** The base with LoRAs of the given ranks merged (each module its own adapter). */
function withLoras(base: LlamaState, ranks: Partial<Record<Module, number>>, seed: number): LlamaState {
  let state = base;
  for (const [module, rank] of Object.entries(ranks) as [Module, number][]) {
    state = addLora(state, { rank, targets: [module], scale: 0.1 }, seed++).state;
  }
  return state;
}

function probes(config: LlamaConfig, count = config.hidden): ReturnType<Rng['gaussianMatrix']> {
  return new Rng(99).gaussianMatrix(count, config.hidden);
}

for (const config of [GQA, MHA]) {
  describe(`attention invariants, ${config.kvHeads < config.heads ? 'GQA' : 'MHA'}`, () => {
    const base = randomLlama(config, 5);
    const b = layerWeights(base);
    const invariantsOf = (candidate: LlamaState, p = probes(config)) => attentionInvariants(b, layerWeights(candidate), layout(config), p);

    test('a copy: probe rank 0, both cosines 1', () => {
      const inv = invariantsOf(base);
      assert.equal(inv.probeRank, 0);
      assert.ok(Math.abs(inv.qk - 1) < 1e-12 && Math.abs(inv.vo - 1) < 1e-12, `${inv.qk} ${inv.vo}`);
    });

    test('LoRA on V (rank 3) and O (rank 2): probe rank 5; Q/K untouched, qk cosine 1', () => {
      const inv = invariantsOf(withLoras(base, { v_proj: 3, o_proj: 2 }, 10));
      assert.equal(inv.probeRank, 5);
      assert.ok(Math.abs(inv.qk - 1) < 1e-12);
      assert.ok(inv.vo < 1 - 1e-4, `vo ${inv.vo}`);
    });

    test('LoRA on V only (rank 4, O identical) and on O only (rank 3, V identical)', () => {
      assert.equal(invariantsOf(withLoras(base, { v_proj: 4 }, 20)).probeRank, 4);
      assert.equal(invariantsOf(withLoras(base, { o_proj: 3 }, 30)).probeRank, 3);
    });

    test('V/O rescaled per head (every element changes, the product does not): rank 0, vo cosine 1', () => {
      const inv = invariantsOf(obfuscate(base, config, ['scale_vo'], 40).state);
      assert.equal(inv.probeRank, 0);
      assert.ok(inv.vo > 0.9999, `vo ${inv.vo}`);
    });

    test('V/O rescaled on top of a rank-4 LoRA on V: the rescaling adds no rank', () => {
      const lora = withLoras(base, { v_proj: 4 }, 50);
      assert.equal(invariantsOf(obfuscate(lora, config, ['scale_vo'], 51).state).probeRank, 4);
    });

    test('fewer probes than the rank: the probe rank saturates at the count', () => {
      assert.equal(invariantsOf(withLoras(base, { v_proj: 3, o_proj: 2 }, 10), probes(config, 3)).probeRank, 3);
    });

    test('probes sized from r_v + r_o give the rank all probes give', () => {
      const candidate = withLoras(base, { v_proj: 6, o_proj: 6 }, 60);
      const all = probes(config);
      const sized = probesFor(all, 12);
      assert.ok(sized.rows < all.rows);
      assert.equal(invariantsOf(candidate, sized).probeRank, 12);
      assert.equal(invariantsOf(candidate, all).probeRank, 12);
    });
  });
}

test('probesFor: four per unit of rank, at least MIN_PROBES, at most all; the first rows of the set', () => {
  const all = new Rng(1).gaussianMatrix(256, 8);
  assert.equal(probesFor(all, 0).rows, MIN_PROBES);
  assert.equal(probesFor(all, 16).rows, Math.max(MIN_PROBES, 64));
  assert.equal(probesFor(all, 40).rows, 160);
  assert.equal(probesFor(all, 100).rows, 256);
  assert.equal(probesFor(all, Infinity), all);
  const few = probesFor(all, 20);
  assert.deepEqual(Array.from(few.data), Array.from(all.data.subarray(0, 80 * 8)));
  assert.equal(probesFor(new Rng(1).gaussianMatrix(40, 8), 0).rows, 40);
});
