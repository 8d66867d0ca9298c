/** Attention invariants: evidence of a change that needs no head or neuron alignment (see AttentionInvariants). */
import type { Matrix } from '../linalg/matrix.js';
import { matmul, matmulTransB, rowGram } from '../linalg/ops.js';
import { symmetricEigenvalues } from '../linalg/eig.js';
import { svdViaGram } from '../linalg/svd.js';
import type { HeadLayout, LayerWeights } from '../align/llama-block.js';
import { sameValues, type NoisyMatrix } from '../noise/noisy-matrix.js';

/** What the invariants read of a layer (any block with attention). */
export type AttentionWeights = Pick<LayerWeights, 'q' | 'k' | 'v' | 'o' | 'inputNorm' | 'inputNormVariance'>;

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

export function attentionInvariants(base: AttentionWeights, candidate: AttentionWeights, layout: HeadLayout, probes: Matrix): AttentionInvariants {
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
    const tau = probeNoiseEdge([base, candidate], values, same, layout, probes);
    while (probeRank < s.length && s[probeRank]! > tau) probeRank++;
  }
  return { qk, vo, probeRank };
}

/** Squared norm of every column of m. */
function columnSquares(m: Matrix): Float64Array {
  const out = new Float64Array(m.cols);
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < m.cols; j++) out[j]! += m.data[i * m.cols + j]! ** 2;
  return out;
}

/** into += A diag(w) Aᵀ (w >= 0): the row Gram of A with its columns weighted. */
function addWeightedRowGram(into: Float64Array, a: Matrix, weight: Float64Array): void {
  const scaled = new Float64Array(a.data.length);
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < a.cols; j++) scaled[i * a.cols + j] = a.data[i * a.cols + j]! * Math.sqrt(weight[j]!);
  const g = rowGram({ rows: a.rows, cols: a.cols, data: scaled }).data;
  for (let i = 0; i < into.length; i++) into[i]! += g[i]!;
}

/**
 * W_o with the columns of the query heads of each KV group summed (o x kvHeads*headDim): the
 * GQA expansion of P E_v^T, times W_o^T, is P E_v^T times this, transposed.
 */
function groupSummedColumns(o: Matrix, layout: HeadLayout): Matrix {
  const perGroup = layout.heads / layout.kvHeads, hd = layout.headDim, width = layout.kvHeads * hd;
  const out = new Float64Array(o.rows * width);
  for (let t = 0; t < o.rows; t++) {
    for (let h = 0; h < layout.heads; h++) {
      const g = Math.floor(h / perGroup);
      for (let e = 0; e < hd; e++) out[t * width + g * hd + e]! += o.data[t * o.cols + h * hd + e]!;
    }
  }
  return { rows: o.rows, cols: width, data: out };
}

function largestEigenvalue(m: Float64Array, n: number): number {
  return n === 0 ? 0 : Math.max(0, symmetricEigenvalues({ rows: n, cols: n, data: m })[0]!);
}

/**
 * Weighted sums of the rounding variances of `own` over the elements where it differs from
 * `other` (an identical element's error cancels in the change): per row, weighted by
 * `columnWeight`; per column, weighted by `rowWeight` (1 when null).
 */
function maskedVarianceSums(own: NoisyMatrix, other: NoisyMatrix, rowWeight: Float64Array | null, columnWeight: Float64Array): { rows: Float64Array; columns: Float64Array } {
  const { rows: m, cols: n } = own;
  const rows = new Float64Array(m), columns = new Float64Array(n);
  const ownValues = own.values, otherValues = other.values, variance = own.variance;
  for (let i = 0; i < m; i++) {
    const weight = rowWeight ? rowWeight[i]! : 1, row = i * n;
    let sum = 0;
    for (let j = 0; j < n; j++) {
      if (ownValues[row + j] === otherValues[row + j]) continue;
      const s = variance[row + j]!;
      columns[j]! += s * weight;
      sum += s * columnWeight[j]!;
    }
    rows[i] = sum;
  }
  return { rows, columns };
}

/**
 * Variance of each folded input-norm gain's relative rounding error (it rescales V's column j),
 * on the columns where the two models' gains differ (an identical gain's error cancels); null
 * when there are none.
 */
function normErrorVariance(layer: AttentionWeights, other: AttentionWeights): Float64Array | null {
  if (!layer.inputNormVariance) return null;
  const out = new Float64Array(layer.inputNorm.length);
  let any = false;
  for (let j = 0; j < out.length; j++) {
    const g = layer.inputNorm[j]!;
    if (g === 0 || g === other.inputNorm[j]) continue;
    out[j] = layer.inputNormVariance[j]! / (g * g);
    any = true;
  }
  return any ? out : null;
}

/**
 * The probe outputs' noise floor: the largest singular value the storage rounding alone gives
 * the change of P W_v^T W_o^T (probes x outputs). To first order that noise is a sum of
 * independent per-element errors, each model's own, pushed through that model's products:
 * P E_v^T W_o^T (V's errors, and the folded input norm's, which rescale V's columns) and
 * P W_v^T E_o^T (O's). Elements stored identically in both models carry the same error, which
 * cancels in the change. The bound is the bulk edge used for the weight deltas (Bandeira and van
 * Handel), sqrt(||E N N^T||) + sqrt(||E N^T N||), both second moments in closed form from the
 * per-element variances: each error source adds a weighted Gram of the factors around it. No
 * simulation, so no draws to trust; on the zoo and synthetic layers it sits 1.1 to 1.8 times
 * above the largest of three simulated draws (the bound is tight for white noise, conservative
 * for noise coloured by W_o and W_v).
 */
export function probeNoiseEdge(
  layers: readonly [AttentionWeights, AttentionWeights], values: readonly [Matrix, Matrix],
  same: { readonly v: boolean; readonly o: boolean }, layout: HeadLayout, probes: Matrix,
): number {
  const p = probes.rows, outputs = layers[0].o.rows;
  const left = new Float64Array(p * p), right = new Float64Array(outputs * outputs);
  const probeSquares = columnSquares(probes);
  for (const m of [0, 1] as const) {
    const own = layers[m], other = layers[1 - m]!;
    const oSummed = groupSummedColumns(asMatrix(own.o), layout);
    if (!same.v) {
      // E_v (kv x residual), between P and the group-summed W_o (O'): left += P diag(.) P^T, right += O' diag(.) O'^T.
      const sums = maskedVarianceSums(own.v, other.v, columnSquares(oSummed), probeSquares);
      addWeightedRowGram(left, probes, sums.columns);
      addWeightedRowGram(right, oSummed, sums.rows);
    }
    const normError = normErrorVariance(own, other);
    if (normError) {
      // One error per column j, along P[:, j] and (O' W_v)[:, j].
      const q = matmul(oSummed, asMatrix(own.v));
      const qSquares = columnSquares(q);
      addWeightedRowGram(left, probes, Float64Array.from(normError, (e, j) => e * qSquares[j]!));
      addWeightedRowGram(right, q, Float64Array.from(normError, (e, j) => e * probeSquares[j]!));
    }
    if (!same.o) {
      // E_o (outputs x width), after the values P W_v^T: left += V diag(.) V^T; right is diagonal.
      const vm = values[m];
      const sums = maskedVarianceSums(own.o, other.o, null, columnSquares(vm));
      for (let t = 0; t < outputs; t++) right[t * outputs + t]! += sums.rows[t]!;
      addWeightedRowGram(left, vm, sums.columns);
    }
  }
  return Math.sqrt(largestEigenvalue(left, p)) + Math.sqrt(largestEigenvalue(right, outputs));
}
