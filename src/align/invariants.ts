import type { Matrix } from '../linalg/matrix.js';
import { matmulTransB } from '../linalg/ops.js';
import { Rng } from '../linalg/rng.js';
import { svdViaGram, topSingularValue } from '../linalg/svd.js';
import type { HeadLayout, LayerWeights } from './llama.js';
import type { NoisyMatrix } from './noisy.js';

/**
 * Evidence that needs no head or neuron alignment: the attention products W_q^h W_k^h^T summed
 * over heads and W_v W_o (GQA-expanded) are unchanged by head permutations, Q/K and V/O scalings
 * and any per-group invertible map between V and O. They are compared through random probe
 * inputs P (in the base's residual order), which is also what the Origin-Tracer probe does: with
 * one-token inputs attention is linear, z = x + h(x) W_v W_o, so the change of a layer's
 * attention output over many probes spans rank(delta of W_v W_o).
 * Needs the rounding variances of v and o (NoisyMatrix) for the probe noise floor.
 */
export interface AttentionInvariants {
  /** Cosine similarity of P (sum_h Wq_h^T Wk_h) P^T, base vs candidate. */
  readonly qk: number;
  /** Cosine similarity of P Wv^T Wo^T, base vs candidate. */
  readonly vo: number;
  /** Rank of the change of the one-token attention output over the probes. */
  readonly probeRank: number;
}

function asMatrix(m: NoisyMatrix): Matrix {
  return { rows: m.rows, cols: m.cols, data: m.values };
}

function cosine(a: Float64Array, b: Float64Array): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : aa === bb ? 1 : 0;
}

/** Columns [h*size, (h+1)*size) of every row. */
function blockColumns(m: Matrix, block: number, size: number): Matrix {
  const out = new Float64Array(m.rows * size);
  for (let i = 0; i < m.rows; i++) out.set(m.data.subarray(i * m.cols + block * size, i * m.cols + (block + 1) * size), i * size);
  return { rows: m.rows, cols: size, data: out };
}

function queryKeyForm(layer: LayerWeights, layout: HeadLayout, probes: Matrix): Float64Array {
  const pq = matmulTransB(probes, asMatrix(layer.q));
  const pk = matmulTransB(probes, asMatrix(layer.k));
  const perGroup = layout.heads / layout.kvHeads;
  const n = probes.rows;
  const sum = new Float64Array(n * n);
  for (let h = 0; h < layout.heads; h++) {
    const s = matmulTransB(blockColumns(pq, h, layout.headDim), blockColumns(pk, Math.floor(h / perGroup), layout.headDim));
    for (let i = 0; i < sum.length; i++) sum[i]! += s.data[i]!;
  }
  return sum;
}

function valueOutput(layer: LayerWeights, layout: HeadLayout, probes: Matrix): Matrix {
  const pv = matmulTransB(probes, asMatrix(layer.v));
  const perGroup = layout.heads / layout.kvHeads;
  const hd = layout.headDim;
  const expanded = new Float64Array(probes.rows * layout.heads * hd);
  const width = layout.heads * hd;
  for (let i = 0; i < probes.rows; i++) {
    for (let h = 0; h < layout.heads; h++) {
      const g = Math.floor(h / perGroup);
      expanded.set(pv.data.subarray(i * pv.cols + g * hd, i * pv.cols + (g + 1) * hd), i * width + h * hd);
    }
  }
  return matmulTransB({ rows: probes.rows, cols: width, data: expanded }, asMatrix(layer.o));
}

export function attentionInvariants(base: LayerWeights, candidate: LayerWeights, layout: HeadLayout, probes: Matrix): AttentionInvariants {
  const qk = cosine(queryKeyForm(base, layout, probes), queryKeyForm(candidate, layout, probes));
  const yb = valueOutput(base, layout, probes);
  const yc = valueOutput(candidate, layout, probes);
  const vo = cosine(yb.data, yc.data);
  const diff = new Float64Array(yb.data.length);
  let nonzero = false;
  for (let i = 0; i < diff.length; i++) {
    diff[i] = yc.data[i]! - yb.data[i]!;
    if (diff[i] !== 0) nonzero = true;
  }
  let probeRank = 0;
  if (nonzero) {
    const s = svdViaGram({ rows: yb.rows, cols: yb.cols, data: diff }, { vectors: false }).s;
    const tau = probeNoiseFloor(base, candidate, layout, probes);
    while (probeRank < s.length && s[probeRank]! > tau) probeRank++;
  }
  return { qk, vo, probeRank };
}

/** Independent draws of the rounding noise when setting the probe threshold. */
const NOISE_DRAWS = 3;

/**
 * The probe outputs' noise floor, simulated: each model's storage rounding of V and O (uniform
 * within each element's rounding interval, the distribution of a rounding error; variances known
 * per element) pushed through that model's own products to first order,
 * P (E_v W_o + W_v E_o); the largest singular value over a few draws is the threshold.
 * The noise is coloured by W_o and W_v, so no closed-form bulk edge applies.
 */
function probeNoiseFloor(base: LayerWeights, candidate: LayerWeights, layout: HeadLayout, probes: Matrix): number {
  const rng = new Rng(20240531);
  // Values stored identically in both models carry the same rounding error: it cancels in the
  // difference, so only elements (and norm weights) that differ get simulated noise.
  const draw = (role: 'v' | 'o', layer: LayerWeights): NoisyMatrix | null => {
    const otherLayer = layer === base ? candidate : base;
    const m = layer[role];
    const other = otherLayer[role];
    const values = new Float64Array(m.values.length);
    let any = false;
    for (let i = 0; i < values.length; i++) {
      if (m.values[i] !== other.values[i]) {
        values[i] = (rng.uniform() - 0.5) * Math.sqrt(12 * m.variance[i]!);
        any = true;
      }
    }
    if (role === 'v' && layer.inputNormVariance) {
      // V was folded with the stored input norm: its rounding is a relative error per column.
      for (let j = 0; j < m.cols; j++) {
        const g = layer.inputNorm[j]!;
        if (g === 0 || g === otherLayer.inputNorm[j]) continue;
        const rel = ((rng.uniform() - 0.5) * Math.sqrt(12 * layer.inputNormVariance[j]!)) / Math.abs(g);
        for (let i = 0; i < m.rows; i++) values[i * m.cols + j]! += m.values[i * m.cols + j]! * rel;
        any = true;
      }
    }
    // Nothing differs: no noise survives the difference, and the product can be skipped.
    return any ? { rows: m.rows, cols: m.cols, values, variance: m.variance } : null;
  };
  let floor = 0;
  for (let d = 0; d < NOISE_DRAWS; d++) {
    const total = new Float64Array(probes.rows * base.o.rows);
    for (const layer of [base, candidate]) {
      const v = draw('v', layer), o = draw('o', layer);
      for (const noisy of [v && { ...layer, v }, o && { ...layer, o }]) {
        if (!noisy) continue;
        const y = valueOutput(noisy, layout, probes);
        for (let i = 0; i < total.length; i++) total[i]! += y.data[i]!;
      }
    }
    floor = Math.max(floor, topSingularValue({ rows: probes.rows, cols: base.o.rows, data: total }, { rng, iters: 200, tolerance: 1e-6 }));
  }
  return floor;
}
