/**
 * Full SVD by one-sided (Hestenes) Jacobi, preconditioned with column-pivoted QR as in
 * Drmač–Veselić: A·P = Q·R, then Jacobi on Rᵀ, whose columns (R's rows, contiguous here) are
 * graded, so few sweeps are needed. Singular values carry an absolute error of order
 * eps·σ_max (that is also how much the rounding of A itself moves them), hence full relative
 * accuracy for every value above ~1e-6·σ_max.
 */
import { type Matrix, zeros } from './matrix.js';
import { euclideanNorm, gram, matmul, matmulTransA, matmulTransB, subMatrix, transpose } from './ops.js';
import { symmetricEigen } from './eig.js';
import { extractR, formQColumns, householderFactor, orthonormalizeTall } from './qr.js';
import { Rng } from './rng.js';

export interface Svd {
  /** m×k left singular vectors (k = min(m, n), or the requested rank), when vectors were requested. */
  readonly u?: Matrix;
  /** Singular values, descending. */
  readonly s: Float64Array;
  /** n×k right singular vectors, when vectors were requested. */
  readonly v?: Matrix;
}

export interface SvdOptions {
  /** Compute U and V (default true). */
  readonly vectors?: boolean;
  /** svdViaGram only: vectors of the `leading` largest values alone (all values are still computed). */
  readonly leading?: number;
}

const MAX_SWEEPS = 40;

export function svd(a: Matrix, options: SvdOptions = {}): Svd {
  const wantVectors = options.vectors ?? true;
  if (a.rows < a.cols) {
    const t = tallSvd(transpose(a), wantVectors);
    return wantVectors ? { u: t.v, s: t.s, v: t.u } : { s: t.s };
  }
  return tallSvd(a, wantVectors);
}

/** Singular values only, descending. */
export function singularValues(a: Matrix): Float64Array {
  return svd(a, { vectors: false }).s;
}

/** SVD of m×n with m ≥ n. */
function tallSvd(a: Matrix, wantVectors: boolean): Svd {
  const m = a.rows, n = a.cols;
  if (n === 0) return wantVectors ? { u: zeros(m, 0), s: new Float64Array(0), v: zeros(0, 0) } : { s: new Float64Array(0) };
  // A·P = Q·R (pivoted), then Rᵀ = Q1·R1: Jacobi on X = R1ᵀ converges in a few sweeps.
  const outer = householderFactor(transpose(a).data, m, n, true);
  const r = extractR(outer);
  const inner = householderFactor(r.data, n, n, false); // R's rows are the columns of Rᵀ
  const work = extractR(inner).data; // rows of R1 = columns of X
  const rotations = wantVectors ? identityData(n) : null;
  jacobiOrthogonalizeRows(work, n, n, rotations);

  const sigma = new Float64Array(n);
  for (let i = 0; i < n; i++) sigma[i] = euclideanNorm(work, i * n, (i + 1) * n);
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => sigma[y]! - sigma[x]!);
  const s = Float64Array.from(order, (i) => sigma[i]!);
  if (!rotations) return { s };

  // X·J = W = Ũ·Σ and R = X·Q1ᵀ  ⇒  A·P = (Q·Ũ)·Σ·(Q1·J)ᵀ.
  const sortedRotationsT = new Float64Array(n * n);
  const leftT = new Float64Array(n * n); // row c = Ũ's column c
  order.forEach((from, to) => {
    sortedRotationsT.set(rotations.subarray(from * n, (from + 1) * n), to * n);
    const inv = sigma[from]! > 0 ? 1 / sigma[from]! : 0;
    for (let k = 0; k < n; k++) leftT[to * n + k] = work[from * n + k]! * inv;
  });
  completeOrthonormalRows(leftT, n, n, s);
  const q = transpose({ rows: n, cols: m, data: formQColumns(outer, n) });
  const u = matmulTransB(q, { rows: n, cols: n, data: leftT });
  const q1T = { rows: n, cols: n, data: formQColumns(inner, n) };
  const rightT = matmul({ rows: n, cols: n, data: sortedRotationsT }, q1T); // (Q1·J)ᵀ
  const v = zeros(n, n);
  for (let c = 0; c < n; c++) {
    for (let k = 0; k < n; k++) v.data[outer.permutation[k]! * n + c] = rightT.data[c * n + k]!;
  }
  return { u, s, v };
}

function identityData(n: number): Float64Array {
  const d = new Float64Array(n * n);
  for (let i = 0; i < n; i++) d[i * n + i] = 1;
  return d;
}

/**
 * Rotate pairs of rows (length `len`) until all are mutually orthogonal to working precision;
 * the same rotations are applied to the rows of `companion` (length count) when given.
 */
function jacobiOrthogonalizeRows(x: Float64Array, count: number, len: number, companion: Float64Array | null): void {
  const tolerance = Math.sqrt(len) * Number.EPSILON;
  const norms = new Float64Array(count);
  for (let sweep = 0; sweep < MAX_SWEEPS; sweep++) {
    for (let i = 0; i < count; i++) {
      const n = euclideanNorm(x, i * len, (i + 1) * len);
      norms[i] = n * n;
    }
    let rotated = 0;
    for (let i = 0; i < count - 1; i++) {
      const ri = i * len;
      for (let j = i + 1; j < count; j++) {
        const a = norms[i]!, b = norms[j]!;
        if (a === 0 || b === 0) continue;
        const rj = j * len;
        let g = 0;
        for (let k = 0; k < len; k++) g += x[ri + k]! * x[rj + k]!;
        if (Math.abs(g) <= tolerance * Math.sqrt(a) * Math.sqrt(b)) continue;
        rotated++;
        const zeta = (b - a) / (2 * g);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let k = 0; k < len; k++) {
          const xi = x[ri + k]!, xj = x[rj + k]!;
          x[ri + k] = c * xi - s * xj;
          x[rj + k] = s * xi + c * xj;
        }
        if (companion) {
          const ci = i * count, cj = j * count;
          for (let k = 0; k < count; k++) {
            const yi = companion[ci + k]!, yj = companion[cj + k]!;
            companion[ci + k] = c * yi - s * yj;
            companion[cj + k] = s * yi + c * yj;
          }
        }
        norms[i] = Math.max(0, a - t * g);
        norms[j] = Math.max(0, b + t * g);
      }
    }
    if (rotated === 0) return;
  }
}

/**
 * Rows whose singular value is exactly zero carry no direction; replace them by unit vectors
 * orthogonal to all other rows (Gram-Schmidt, twice for stability) so the factor stays orthonormal.
 */
function completeOrthonormalRows(rows: Float64Array, count: number, len: number, sigma: Float64Array): void {
  let candidate = 0;
  for (let r = 0; r < count; r++) {
    if (sigma[r]! > 0) continue;
    for (;;) {
      const row = rows.subarray(r * len, (r + 1) * len);
      row.fill(0);
      row[candidate++ % len] = 1;
      for (let pass = 0; pass < 2; pass++) {
        for (let o = 0; o < count; o++) {
          if (o === r || (sigma[o]! === 0 && o > r)) continue;
          const other = rows.subarray(o * len, (o + 1) * len);
          let d = 0;
          for (let k = 0; k < len; k++) d += row[k]! * other[k]!;
          for (let k = 0; k < len; k++) row[k]! -= d * other[k]!;
        }
      }
      const norm = euclideanNorm(row);
      if (norm > 0.5) {
        for (let k = 0; k < len; k++) row[k]! /= norm;
        break;
      }
      if (candidate > 2 * len) throw new Error('svd: could not complete an orthonormal basis');
    }
  }
}

export interface RandomizedSvdOptions {
  /** Extra sketch columns beyond k (default 10). */
  readonly oversample?: number;
  /** Power (subspace) iterations, each re-orthonormalised (default 2). */
  readonly powerIters?: number;
  /** Source of the Gaussian test matrix (default: seed 0, so results are reproducible). */
  readonly rng?: Rng;
}

/**
 * Top-k SVD by the Halko–Martinsson–Tropp range finder: Y = A·Ω, subspace iterations
 * Q ← orth(A·orth(Aᵀ·Q)), then the exact SVD of the small Qᵀ·A. Returns U (m×k), s, V (n×k).
 */
export function randomizedSvd(a: Matrix, k: number, options: RandomizedSvdOptions = {}): Required<Svd> {
  const m = a.rows, n = a.cols;
  const limit = Math.min(m, n);
  if (!(Number.isInteger(k) && k >= 1 && k <= limit)) throw new RangeError(`randomizedSvd: k=${k} outside 1..${limit}`);
  const width = Math.min(limit, k + (options.oversample ?? 10));
  const powerIters = options.powerIters ?? 2;
  const rng = options.rng ?? new Rng(0);
  const omegaT = rng.gaussianMatrix(width, n);
  // Tall-skinny bases (width ≤ min(m, n)): CholeskyQR2 in the product kernel. Aᵀ is never formed.
  let q = orthonormalizeTall(matmulTransB(a, omegaT)); // m×width
  for (let it = 0; it < powerIters; it++) {
    const z = orthonormalizeTall(matmulTransA(a, q)); // n×width
    q = orthonormalizeTall(matmulTransB(a, transpose(z)));
  }
  const small = transpose(matmulTransA(a, q)); // width×n = Qᵀ·A
  // Values needed are the leading ones (well above sqrt(eps)·σ₁): the Gram route is accurate and fast.
  const inner = svdViaGram(small);
  const u = matmul(q, subMatrix(inner.u!, 0, width, 0, k));
  return { u, s: inner.s.slice(0, k), v: subMatrix(inner.v!, 0, n, 0, k) };
}

export interface PowerIterationOptions {
  readonly rng?: Rng;
  /** Maximum iterations (default 100). */
  readonly iters?: number;
  /** Stop when σ changes by less than this relative amount (default 1e-12). */
  readonly tolerance?: number;
}

/**
 * Largest singular value by power iteration on AᵀA (never formed). Converges like
 * (σ₂/σ₁)^(2·iters); without a gap it still returns a lower bound close to σ₁.
 */
export function topSingularValue(a: Matrix, options: PowerIterationOptions = {}): number {
  const m = a.rows, n = a.cols, d = a.data;
  if (m === 0 || n === 0) return 0;
  const rng = options.rng ?? new Rng(0);
  const maxIters = options.iters ?? 100;
  const tolerance = options.tolerance ?? 1e-12;
  let v = new Float64Array(n);
  for (let j = 0; j < n; j++) v[j] = rng.gaussian();
  const av = new Float64Array(m);
  let sigma = 0;
  for (let it = 0; it < maxIters; it++) {
    const vNorm = euclideanNorm(v);
    if (vNorm === 0) return 0;
    for (let j = 0; j < n; j++) v[j]! /= vNorm;
    for (let i = 0; i < m; i++) {
      let s = 0;
      const r = i * n;
      for (let j = 0; j < n; j++) s += d[r + j]! * v[j]!;
      av[i] = s;
    }
    const next = euclideanNorm(av);
    const nextV = new Float64Array(n);
    for (let i = 0; i < m; i++) {
      const x = av[i]!;
      if (x === 0) continue;
      const r = i * n;
      for (let j = 0; j < n; j++) nextV[j]! += x * d[r + j]!;
    }
    v = nextV;
    const converged = Math.abs(next - sigma) <= tolerance * next;
    sigma = next;
    if (converged) break;
  }
  return sigma;
}

/**
 * SVD through the eigendecomposition of the smaller Gram matrix (AᵀA or AAᵀ). Several times faster
 * than one-sided Jacobi, but singular values below about sqrt(eps)·σ₁ lose relative accuracy:
 * use it where only values well above that matter (noise-floor rank tests, subspaces of the
 * leading directions), and `svd` where small singular values must be exact.
 */
export function svdViaGram(a: Matrix, options: SvdOptions = {}): Svd {
  const wantVectors = options.vectors ?? true;
  const half = gramSideSvd(a, wantVectors ? options.leading : 0);
  if (!wantVectors) return { s: half.s };
  const other = otherSideVectors(half);
  return half.tall ? { u: other, s: half.s, v: half.vectors } : { u: half.vectors, s: half.s, v: other };
}

/**
 * The half of an SVD the Gram matrix gives: all singular values, and the singular vectors on the
 * Gram's side (V when tall, U when wide) of the `leading` largest (all by default, none with 0).
 * The other side's (otherSideVectors) costs a product with the whole of A: callers that need
 * only one side, or none, skip it.
 */
export interface GramSideSvd {
  readonly a: Matrix;
  readonly tall: boolean;
  readonly s: Float64Array;
  /** Columns are the singular vectors on the Gram's side. */
  readonly vectors: Matrix;
}

export function gramSideSvd(a: Matrix, leading?: number): GramSideSvd {
  const tall = a.rows >= a.cols;
  const g = gram(a); // n×n (AᵀA) when tall, m×m (AAᵀ) when wide
  const eig = leading === 0
    ? symmetricEigen(g.matrix, { vectors: false })
    : symmetricEigen(g.matrix, { vectors: true, ...(leading !== undefined ? { leading } : {}) });
  const s = Float64Array.from(eig.values, (v) => Math.sqrt(Math.max(v, 0)));
  return { a, tall, s, vectors: eig.vectors ?? zeros(g.matrix.rows, 0) };
}

/** The other side's vectors: A·v / σ (tall) or Aᵀ·u / σ (wide); zero columns where σ = 0. */
export function otherSideVectors(half: GramSideSvd): Matrix {
  const { a, tall, s, vectors: w } = half;
  const k = w.cols;
  const other = tall ? matmul(a, w) : matmulTransA(a, w);
  for (let i = 0; i < other.rows; i++) {
    for (let j = 0; j < k; j++) other.data[i * k + j] = s[j]! > 0 ? other.data[i * k + j]! / s[j]! : 0;
  }
  return other;
}
