/**
 * Attention-invariants benchmark: one layer's attentionInvariants (qk and vo cosines, probe rank
 * and its noise floor) at a bench shape's widths, on random bf16 weights. The candidate is the
 * base plus a rank-16 LoRA on q and v, then V/O rescaled per head (as bench/verify.ts makes it),
 * so v and o differ in every element and the floor simulates the noise of both.
 * Run: npx tsc -p . && node dist/bench/invariants.js [--shape tiny|small|1b|7b-slice] [--repeat N]
 */
import { attentionInvariants, probesFor } from '../src/verify/attention-invariants.js';
import type { HeadLayout, LayerWeights } from '../src/align/llama-block.js';
import { noisyFromWeight, type NoisyMatrix } from '../src/noise/noisy-matrix.js';
import { roundToDtype } from '../src/io/dtypes.js';
import type { Matrix } from '../src/linalg/matrix.js';
import { Rng } from '../src/linalg/rng.js';

const SHAPES: Readonly<Record<string, { hidden: number; heads: number; kvHeads: number; headDim: number }>> = {
  tiny: { hidden: 512, heads: 8, kvHeads: 4, headDim: 64 },
  small: { hidden: 1024, heads: 16, kvHeads: 8, headDim: 64 },
  '1b': { hidden: 2048, heads: 32, kvHeads: 8, headDim: 64 },
  '7b-slice': { hidden: 4096, heads: 32, kvHeads: 32, headDim: 128 },
};
const LORA_RANK = 16;
const MAX_PROBES = 256;

function argument(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function bf16(rows: number, cols: number, values: Float64Array): NoisyMatrix {
  const data = roundToDtype(Float32Array.from(values), 'BF16');
  return noisyFromWeight({ rows, cols, data, dtype: 'BF16', tensor: 'bench', file: 'bench' });
}

/** values + scale * B A with B (rows x r), A (r x cols) Gaussian. */
function plusLowRank(rng: Rng, rows: number, cols: number, values: Float64Array, rank: number, scale: number): Float64Array {
  const b = rng.gaussianMatrix(rows, rank), a = rng.gaussianMatrix(rank, cols);
  const out = Float64Array.from(values);
  for (let i = 0; i < rows; i++) {
    for (let t = 0; t < rank; t++) {
      const f = scale * b.data[i * rank + t]!;
      for (let j = 0; j < cols; j++) out[i * cols + j]! += f * a.data[t * cols + j]!;
    }
  }
  return out;
}

function layerPair(rng: Rng, d: number, layout: HeadLayout): { base: LayerWeights; candidate: LayerWeights } {
  const qRows = layout.heads * layout.headDim, kvRows = layout.kvHeads * layout.headDim;
  const weights = (rows: number, cols: number) => rng.gaussianMatrix(rows, cols, 0.02).data;
  const q = weights(qRows, d), k = weights(kvRows, d), v = weights(kvRows, d), o = weights(d, qRows);
  // A LoRA delta about a tenth of the weights in norm, spread over its rank.
  const loraScale = (0.02 * 0.1) / Math.sqrt(LORA_RANK);
  const qc = plusLowRank(rng, qRows, d, q, LORA_RANK, loraScale);
  const vc = plusLowRank(rng, kvRows, d, v, LORA_RANK, loraScale);
  // V/O rescaling per KV head: function-preserving, but every stored element changes.
  const headScale = Float64Array.from({ length: layout.kvHeads }, () => Math.exp(rng.gaussian() * 0.3));
  const perGroup = layout.heads / layout.kvHeads;
  for (let i = 0; i < kvRows; i++) for (let j = 0; j < d; j++) vc[i * d + j]! *= headScale[Math.floor(i / layout.headDim)]!;
  const oc = Float64Array.from(o, (x, p) => x / headScale[Math.floor(Math.floor((p % qRows) / layout.headDim) / perGroup)]!);
  const norm = new Float64Array(d).fill(1);
  const side = (qv: Float64Array, vv: Float64Array, ov: Float64Array): LayerWeights => ({
    q: bf16(qRows, d, qv), k: bf16(kvRows, d, k), v: bf16(kvRows, d, vv), o: bf16(d, qRows, ov),
    gate: bf16(1, 1, new Float64Array(1)), up: bf16(1, 1, new Float64Array(1)), down: bf16(1, 1, new Float64Array(1)),
    inputNorm: norm, postNorm: norm,
  });
  return { base: side(q, v, o), candidate: side(qc, vc, oc) };
}

const shapeName = argument('--shape') ?? 'small';
const shape = SHAPES[shapeName];
if (!shape) throw new Error(`unknown --shape ${shapeName} (${Object.keys(SHAPES).join(', ')})`);
const repeat = Number(argument('--repeat') ?? 1);
const layout: HeadLayout = { heads: shape.heads, kvHeads: shape.kvHeads, headDim: shape.headDim };
const rng = new Rng(7);
const { base, candidate } = layerPair(rng, shape.hidden, layout);
const probes: Matrix = new Rng(100).gaussianMatrix(Math.min(shape.hidden, MAX_PROBES), shape.hidden);
// The weight-delta ranks verify knows before the invariants run: LoRA rank on v, o unchanged.
const used = probesFor(probes, LORA_RANK);
console.log(`shape ${shapeName}: hidden ${shape.hidden}, ${shape.heads}/${shape.kvHeads} heads x ${shape.headDim}; LoRA rank ${LORA_RANK} on q, v; V/O rescaled; ${used.rows} of ${probes.rows} probes`);
for (let r = 0; r < repeat; r++) {
  const t0 = performance.now();
  const inv = attentionInvariants(base, candidate, layout, used);
  const seconds = (performance.now() - t0) / 1000;
  console.log(`attentionInvariants ${seconds.toFixed(2)} s: qk ${inv.qk.toFixed(4)}, vo ${inv.vo.toFixed(4)}, probe rank ${inv.probeRank}`);
}
