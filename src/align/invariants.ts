import type { Matrix } from '../linalg/matrix.js';
import { matmulTransB } from '../linalg/ops.js';
import { Rng } from '../linalg/rng.js';
import { svdViaGram } from '../linalg/svd.js';
import type { HeadLayout, LayerWeights } from './llama.js';
import { sameValues, type NoisyMatrix } from './noisy.js';

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

/**
 * Probes per unit of the rank they must read. The r-th singular value of P D for a rank-r D
 * through n Gaussian probes is about (sqrt(n) - sqrt(r)) s_r (the smallest singular value of an
 * n x r Gaussian matrix): n = 4r keeps at least half of the sqrt(n) s_r that many probes give.
 */
const PROBES_PER_RANK = 4;
/**
 * Fewest probes a layer uses (V and O unchanged: only the cosines need them). The cosines are
 * sampling estimates: over probe seeds they spread by about 0.01 with 32 probes and 0.005 with 64
 * or more (zoo p0 -> p3), within the two decimals the reports print.
 */
export const MIN_PROBES = 64;

/**
 * The probes a layer needs: the first rows of the shared probe set, enough to read a change of
 * W_v W_o up to `rankBound` (r_v + r_o, the weight-delta ranks; Infinity for a dense change, which
 * takes them all). All costs of the invariants are linear in the count. A true probe rank above
 * the count reads as the count (saturated).
 */
export function probesFor(probes: Matrix, rankBound: number): Matrix {
  const count = Math.min(probes.rows, Math.max(MIN_PROBES, PROBES_PER_RANK * rankBound));
  return count === probes.rows ? probes : { rows: count, cols: probes.cols, data: probes.data.subarray(0, count * probes.cols) };
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

function addInto(total: Float64Array, term: Matrix): void {
  for (let i = 0; i < total.length; i++) total[i]! += term.data[i]!;
}

/** Columns [h*size, (h+1)*size) of every row. */
function blockColumns(m: Matrix, block: number, size: number): Matrix {
  const out = new Float64Array(m.rows * size);
  for (let i = 0; i < m.rows; i++) out.set(m.data.subarray(i * m.cols + block * size, i * m.cols + (block + 1) * size), i * size);
  return { rows: m.rows, cols: size, data: out };
}

/** P Wq^T and P Wk^T to P (sum_h Wq_h^T Wk_h) P^T, keys shared within a GQA group. */
function queryKeyForm(pq: Matrix, pk: Matrix, layout: HeadLayout): Float64Array {
  const perGroup = layout.heads / layout.kvHeads;
  const sum = new Float64Array(pq.rows * pq.rows);
  for (let h = 0; h < layout.heads; h++) {
    addInto(sum, matmulTransB(blockColumns(pq, h, layout.headDim), blockColumns(pk, Math.floor(h / perGroup), layout.headDim)));
  }
  return sum;
}

/** Per-KV-head columns (probes x kvHeads*headDim) repeated for every query head of the group. */
function expandGroups(pv: Matrix, layout: HeadLayout): Matrix {
  const perGroup = layout.heads / layout.kvHeads;
  const hd = layout.headDim;
  const width = layout.heads * hd;
  const expanded = new Float64Array(pv.rows * width);
  for (let i = 0; i < pv.rows; i++) {
    for (let h = 0; h < layout.heads; h++) {
      const g = Math.floor(h / perGroup);
      expanded.set(pv.data.subarray(i * pv.cols + g * hd, i * pv.cols + (g + 1) * hd), i * width + h * hd);
    }
  }
  return { rows: pv.rows, cols: width, data: expanded };
}

/**
 * A product of the probes is computed once per distinct matrix: a role stored identically in
 * both models (untouched by the fine-tune and the obfuscation) shares the base's product.
 */
function sharedProducts(left: readonly [Matrix, Matrix], right: readonly [NoisyMatrix, NoisyMatrix], same: boolean): [Matrix, Matrix] {
  const base = matmulTransB(left[0], asMatrix(right[0]));
  return [base, same && left[0] === left[1] ? base : matmulTransB(left[1], asMatrix(right[1]))];
}

export function attentionInvariants(base: LayerWeights, candidate: LayerWeights, layout: HeadLayout, probes: Matrix): AttentionInvariants {
  const same = {
    q: sameValues(base.q, candidate.q), k: sameValues(base.k, candidate.k),
    v: sameValues(base.v, candidate.v), o: sameValues(base.o, candidate.o),
  };
  const both = [probes, probes] as const;
  const pq = sharedProducts(both, [base.q, candidate.q], same.q);
  const pk = sharedProducts(both, [base.k, candidate.k], same.k);
  const qk = cosine(queryKeyForm(pq[0], pk[0], layout), queryKeyForm(pq[1], pk[1], layout));
  const pv = sharedProducts(both, [base.v, candidate.v], same.v);
  const expandedBase = expandGroups(pv[0], layout);
  const values: [Matrix, Matrix] = [expandedBase, same.v ? expandedBase : expandGroups(pv[1], layout)];
  const [yb, yc] = sharedProducts(values, [base.o, candidate.o], same.o);
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
    const tau = probeNoiseFloor([base, candidate], values, same, layout, probes);
    while (probeRank < s.length && s[probeRank]! > tau) probeRank++;
  }
  return { qk, vo, probeRank };
}

/** Independent draws of the rounding noise when setting the probe threshold. */
const NOISE_DRAWS = 3;
/** Rows of a noise matrix simulated at a time (the whole matrix is never held). */
const NOISE_BLOCK_ROWS = 512;
const TWO_POW_MINUS_32 = 2 ** -32;

/**
 * One model's simulated rounding noise of V or O: uniform within each element's rounding
 * interval (variances known per element), on the elements that differ from the other model's
 * (values stored identically in both carry the same rounding error, which cancels in the
 * difference). For V, also the relative error per column of the stored input norm it was folded
 * with, on the columns whose norm weights differ.
 */
interface NoiseSource {
  readonly own: NoisyMatrix;
  readonly other: NoisyMatrix;
  /** Relative input-norm error per column (this draw), or null. */
  readonly columnError: Float64Array | null;
}

/** Uniform in [-1/2, 1/2) from one 32-bit draw (the bits read as a signed integer). */
function centredUniform(rng: Rng): number {
  return (rng.nextUint32() | 0) * TWO_POW_MINUS_32;
}

function normError(rng: Rng, layer: LayerWeights, other: LayerWeights): Float64Array | null {
  if (!layer.inputNormVariance) return null;
  const error = new Float64Array(layer.inputNorm.length);
  let any = false;
  for (let j = 0; j < error.length; j++) {
    const g = layer.inputNorm[j]!;
    if (g === 0 || g === other.inputNorm[j]) continue;
    error[j] = (centredUniform(rng) * Math.sqrt(12 * layer.inputNormVariance[j]!)) / Math.abs(g);
    any = true;
  }
  return any ? error : null;
}

/** block[t] += a rounding error of element start + t where own and other differ. */
function addRoundingNoise(
  block: Float64Array, own: Float64Array, other: Float64Array, variance: Float32Array, start: number, count: number, rng: Rng,
): void {
  for (let t = 0, p = start; t < count; t++, p++) {
    if (own[p] !== other[p]) block[t]! += centredUniform(rng) * Math.sqrt(12 * variance[p]!);
  }
}

/** The folded input norm's relative error per column, on rows r0..r1 of the block. */
function addColumnError(block: Float64Array, own: Float64Array, error: Float64Array, r0: number, r1: number, cols: number): void {
  for (let i = r0; i < r1; i++) {
    const o = (i - r0) * cols, p = i * cols;
    for (let j = 0; j < cols; j++) block[o + j]! += own[p + j]! * error[j]!;
  }
}

/**
 * left · (sum of the sources' noise)^T (left: probes x cols of the noise), the noise drawn in row
 * blocks; sources sharing the same right-hand factor are summed before the product (linearity).
 */
function timesNoise(left: Matrix, sources: readonly NoiseSource[], rng: Rng): Matrix {
  const { rows, cols } = sources[0]!.own;
  const out = new Float64Array(left.rows * rows);
  const block = new Float64Array(Math.min(rows, NOISE_BLOCK_ROWS) * cols);
  for (let r0 = 0; r0 < rows; r0 += NOISE_BLOCK_ROWS) {
    const r1 = Math.min(rows, r0 + NOISE_BLOCK_ROWS);
    block.fill(0);
    for (const { own, other, columnError } of sources) {
      addRoundingNoise(block, own.values, other.values, own.variance, r0 * cols, (r1 - r0) * cols, rng);
      if (columnError) addColumnError(block, own.values, columnError, r0, r1, cols);
    }
    const part = matmulTransB(left, { rows: r1 - r0, cols, data: block.subarray(0, (r1 - r0) * cols) });
    for (let a = 0; a < left.rows; a++) out.set(part.data.subarray(a * (r1 - r0), (a + 1) * (r1 - r0)), a * rows + r0);
  }
  return { rows: left.rows, cols: rows, data: out };
}

/**
 * The probe outputs' noise floor, simulated: each model's storage rounding of V and O pushed
 * through that model's own products to first order, P (E_v W_o + W_v E_o); the largest singular
 * value over a few draws is the threshold. The noise is coloured by W_o and W_v, so no
 * closed-form bulk edge applies. P W_v^T (GQA-expanded, `values`) is the value output's own;
 * noise terms multiplied by the same factor (O or V identical in both models) share one product.
 */
function probeNoiseFloor(
  layers: readonly [LayerWeights, LayerWeights], values: readonly [Matrix, Matrix],
  same: { readonly v: boolean; readonly o: boolean }, layout: HeadLayout, probes: Matrix,
): number {
  const rng = new Rng(20240531);
  const models = [0, 1] as const;
  let floor = 0;
  for (let d = 0; d < NOISE_DRAWS; d++) {
    const total = new Float64Array(probes.rows * layers[0].o.rows);
    const vSources = models.map((m): NoiseSource | null => {
      const [own, other] = [layers[m], layers[1 - m]!];
      const columnError = normError(rng, own, other);
      return columnError || !same.v ? { own: own.v, other: other.v, columnError } : null;
    });
    const oSources = models.map((m): NoiseSource | null => (same.o ? null : { own: layers[m].o, other: layers[1 - m]!.o, columnError: null }));
    // V's noise: expand(P E_v^T) W_o^T, one product per distinct W_o.
    for (const group of same.o ? [[0, 1] as const] : [[0] as const, [1] as const]) {
      const sources = group.map((m) => vSources[m]).filter((s): s is NoiseSource => s !== null);
      if (sources.length > 0) addInto(total, matmulTransB(expandGroups(timesNoise(probes, sources, rng), layout), asMatrix(layers[group[0]].o)));
    }
    // O's noise: expand(P W_v^T) E_o^T, one product per distinct W_v.
    for (const group of same.v ? [[0, 1] as const] : [[0] as const, [1] as const]) {
      const sources = group.map((m) => oSources[m]).filter((s): s is NoiseSource => s !== null);
      if (sources.length > 0) addInto(total, timesNoise(values[group[0]], sources, rng));
    }
    floor = Math.max(floor, svdViaGram({ rows: probes.rows, cols: layers[0].o.rows, data: total }, { vectors: false }).s[0] ?? 0);
  }
  return floor;
}
