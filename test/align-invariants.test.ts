/**
 * The attention invariants and the Origin-Tracer probe rank with known answers: a copy, LoRA on V
 * and/or O of known ranks (the probe rank is r_v + r_o), a function-preserving V/O rescaling (rank
 * 0, VO cosine 1), the two together, saturation when the probes are fewer than the rank, and the
 * probe count sized from the weight-delta ranks.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { attentionInvariants, MIN_PROBES, probeNoiseEdge, probesFor } from '../src/verify/attention-invariants.js';
import { svdViaGram } from '../src/linalg/svd.js';
import type { HeadLayout, LayerWeights } from '../src/align/llama-block.js';
import { noisyFromWeight } from '../src/noise/noisy-matrix.js';
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

/**
 * The closed-form probe noise floor against the noise it bounds, simulated: per-element rounding
 * errors (uniform, the stored variances) of V and O in both models, pushed through the probes by
 * plain loops (GQA expansion written out), largest singular value per draw.
 */
describe('probe noise edge', () => {
  const draws = 6;
  type Probes = ReturnType<Rng['gaussianMatrix']>;
  /** P M^T for a (kvHeads * headDim) x residual M, each KV row repeated for the query heads of its group. */
  function expandedProduct(p: Probes, m: Float64Array, lay: HeadLayout): Float64Array {
    const perGroup = lay.heads / lay.kvHeads, hd = lay.headDim, width = lay.heads * hd, residual = p.cols;
    const out = new Float64Array(p.rows * width);
    for (let a = 0; a < p.rows; a++) {
      for (let col = 0; col < width; col++) {
        const kvRow = Math.floor(Math.floor(col / hd) / perGroup) * hd + (col % hd);
        for (let j = 0; j < residual; j++) out[a * width + col]! += p.data[a * residual + j]! * m[kvRow * residual + j]!;
      }
    }
    return out;
  }
  function simulatedTops(b: LayerWeights, c: LayerWeights, lay: HeadLayout, p: Probes): number[] {
    const rng = new Rng(7);
    const width = lay.heads * lay.headDim, outputs = b.o.rows;
    const error = (own: LayerWeights['v'], other: LayerWeights['v']) =>
      Float64Array.from(own.values, (v, e) => (v === other.values[e] ? 0 : (rng.uniform() - 0.5) * Math.sqrt(12 * own.variance[e]!)));
    const tops: number[] = [];
    for (let d = 0; d < draws; d++) {
      const n = new Float64Array(p.rows * outputs);
      for (const [own, other] of [[b, c], [c, b]] as const) {
        const ev = error(own.v, other.v), eo = error(own.o, other.o);
        // P W_v^T and P E_v^T, expanded to the query heads.
        const value = expandedProduct(p, own.v.values, lay), noise = expandedProduct(p, ev, lay);
        for (let a = 0; a < p.rows; a++) {
          for (let t = 0; t < outputs; t++) {
            let sum = 0;
            for (let col = 0; col < width; col++) sum += noise[a * width + col]! * own.o.values[t * width + col]! + value[a * width + col]! * eo[t * width + col]!;
            n[a * outputs + t]! += sum;
          }
        }
      }
      tops.push(svdViaGram({ rows: p.rows, cols: outputs, data: n }, { vectors: false }).s[0]!);
    }
    return tops;
  }

  for (const config of [GQA, MHA]) {
    const base = randomLlama(config, 5);
    const b = layerWeights(base);
    const cases: Array<[string, LlamaState]> = [
      ['LoRA on V (O identical)', withLoras(base, { v_proj: 4 }, 20)],
      ['V/O rescaled (every element of both differs)', obfuscate(base, config, ['scale_vo'], 40).state],
    ];
    for (const [name, state] of cases) {
      test(`${config.kvHeads < config.heads ? 'GQA' : 'MHA'}, ${name}: above every simulated draw, within twice the largest`, () => {
        const c = layerWeights(state);
        const p = probes(config, 48);
        const lay = layout(config);
        const valuesOf = (w: LayerWeights) => ({ rows: p.rows, cols: lay.heads * lay.headDim, data: expandedProduct(p, w.v.values, lay) });
        const same = { v: b.v.values.every((v, e) => v === c.v.values[e]), o: b.o.values.every((v, e) => v === c.o.values[e]) };
        const edge = probeNoiseEdge([b, c], [valuesOf(b), valuesOf(c)], same, lay, p);
        const tops = simulatedTops(b, c, lay, p);
        const largest = Math.max(...tops);
        assert.ok(edge > largest, `edge ${edge} vs simulated ${tops.join(', ')}`);
        assert.ok(edge < 2 * largest, `edge ${edge} vs simulated ${tops.join(', ')}`);
      });
    }
  }
});
