/**
 * Householder QR. Work happens on the transpose (each column of A is a contiguous row), so
 * every reflector application is a dot product plus an axpy over contiguous memory.
 */
import { type Matrix, zeros } from './matrix.js';
import { euclideanNorm, gram, matmul, transpose } from './ops.js';

/** Compact Householder factorisation of a column-stored m×n matrix (LAPACK dgeqrf/dgeqp3 layout). */
export interface HouseholderFactors {
  readonly m: number;
  readonly n: number;
  /** Column j at [j*m, (j+1)*m): R above/on the diagonal, reflector tails below it. */
  readonly columns: Float64Array;
  /** Reflector H_j = I − tau_j·v_j·v_jᵀ with v_j = (0..0, 1, tail). */
  readonly tau: Float64Array;
  /** Column j of the factored matrix is column permutation[j] of the input (identity without pivoting). */
  readonly permutation: Int32Array;
}

/**
 * Factor column-stored data in place. With pivoting, the remaining column of largest norm
 * goes next (dgeqp3), so |R_jj| decreases, which grades R for Jacobi SVD and rank decisions.
 */
export function householderFactor(columns: Float64Array, m: number, n: number, pivot: boolean): HouseholderFactors {
  const k = Math.min(m, n);
  const tau = new Float64Array(k);
  const permutation = new Int32Array(n);
  for (let j = 0; j < n; j++) permutation[j] = j;
  const norms = new Float64Array(n);
  const referenceNorms = new Float64Array(n);
  if (pivot) {
    for (let j = 0; j < n; j++) norms[j] = referenceNorms[j] = euclideanNorm(columns, j * m, (j + 1) * m);
  }
  const rescaleTolerance = Math.sqrt(Number.EPSILON);
  for (let j = 0; j < k; j++) {
    if (pivot) {
      let best = j;
      for (let c = j + 1; c < n; c++) if (norms[c]! > norms[best]!) best = c;
      if (best !== j) {
        const a = j * m, b = best * m;
        for (let i = 0; i < m; i++) {
          const t = columns[a + i]!;
          columns[a + i] = columns[b + i]!;
          columns[b + i] = t;
        }
        swap(permutation, j, best);
        swap(norms, j, best);
        swap(referenceNorms, j, best);
      }
    }
    const col = j * m;
    const alpha = columns[col + j]!;
    const tailNorm = euclideanNorm(columns, col + j + 1, col + m);
    if (tailNorm === 0) {
      tau[j] = 0; // already upper triangular in this column: H_j = I
    } else {
      const norm = Math.hypot(alpha, tailNorm);
      const beta = alpha >= 0 ? -norm : norm;
      const inv = 1 / (alpha - beta);
      for (let i = j + 1; i < m; i++) columns[col + i]! *= inv;
      tau[j] = (beta - alpha) / beta;
      columns[col + j] = beta;
      const t = tau[j]!;
      for (let c = j + 1; c < n; c++) applyReflector(columns, col, columns, c * m, j, m, t);
    }
    if (pivot) {
      for (let c = j + 1; c < n; c++) {
        if (norms[c] === 0) continue;
        const ratio = Math.abs(columns[c * m + j]!) / norms[c]!;
        const remaining = Math.max(0, (1 - ratio) * (1 + ratio));
        const estimate = norms[c]! * Math.sqrt(remaining);
        // Downdating loses accuracy once most of the norm is gone: recompute then.
        norms[c] = estimate / referenceNorms[c]! < rescaleTolerance
          ? (referenceNorms[c] = euclideanNorm(columns, c * m + j + 1, (c + 1) * m))
          : estimate;
      }
    }
  }
  return { m, n, columns, tau, permutation };
}

/**
 * target <- (I - tau·u·uᵀ)·target on rows j..m-1 of one stored column, where u is the reflector
 * stored at `reflector[r0 + j + 1 ..]` with its leading 1 implied at row j.
 */
function applyReflector(reflector: Float64Array, r0: number, target: Float64Array, t0: number, j: number, m: number, tau: number): void {
  let w = target[t0 + j]!;
  for (let i = j + 1; i < m; i++) w += reflector[r0 + i]! * target[t0 + i]!;
  w *= tau;
  target[t0 + j]! -= w;
  for (let i = j + 1; i < m; i++) target[t0 + i]! -= w * reflector[r0 + i]!;
}

function swap(a: Float64Array | Int32Array, i: number, j: number): void {
  const t = a[i]!;
  a[i] = a[j]!;
  a[j] = t;
}

/** The k×n upper-triangular (trapezoidal when wide) R, row-major, k = min(m, n). */
export function extractR(f: HouseholderFactors): Matrix {
  const k = Math.min(f.m, f.n);
  const r = zeros(k, f.n);
  for (let i = 0; i < k; i++) {
    for (let j = i; j < f.n; j++) r.data[i * f.n + j] = f.columns[j * f.m + i]!;
  }
  return r;
}

/**
 * The first `count` columns of Q = H_0·H_1···H_{k−1}, column-stored (count×m), built backwards
 * so each reflector only touches the part that is not still identity.
 */
export function formQColumns(f: HouseholderFactors, count: number): Float64Array {
  const { m, columns, tau } = f;
  const k = Math.min(f.m, f.n);
  const q = new Float64Array(count * m);
  for (let c = 0; c < count; c++) q[c * m + c] = 1;
  for (let j = k - 1; j >= 0; j--) {
    const t = tau[j]!;
    if (t === 0) continue;
    const v = j * m;
    for (let c = j; c < count; c++) applyReflector(columns, v, q, c * m, j, m, t);
  }
  return q;
}

export interface QR {
  /** m×k with orthonormal columns, k = min(m, n). */
  readonly q: Matrix;
  /** k×n upper triangular (k×k for tall input). */
  readonly r: Matrix;
}

export interface PivotedQR extends QR {
  /** A[:, permutation] = Q·R. */
  readonly permutation: Int32Array;
}

function factorAndForm(a: Matrix, pivot: boolean): PivotedQR {
  const f = householderFactor(transpose(a).data, a.rows, a.cols, pivot);
  const k = Math.min(a.rows, a.cols);
  const q = transpose({ rows: k, cols: a.rows, data: formQColumns(f, k) });
  return { q, r: extractR(f), permutation: f.permutation };
}

/** Thin Householder QR: A = Q·R. */
export function qr(a: Matrix): QR {
  const { q, r } = factorAndForm(a, false);
  return { q, r };
}

/** Householder QR with column pivoting: A[:, permutation] = Q·R, |R_jj| non-increasing. */
export function qrPivoted(a: Matrix): PivotedQR {
  return factorAndForm(a, true);
}

/**
 * An orthonormal basis (m×min(m,n)) whose first j columns span A's first j columns, for every
 * j where those are independent. Dependent columns still yield orthonormal (arbitrary) columns.
 */
export function orthonormalize(a: Matrix): Matrix {
  return factorAndForm(a, false).q;
}

/**
 * Cholesky factor of a symmetric positive definite w×w matrix (row-major), G = RᵀR with R upper
 * triangular, or null when a pivot falls below `relativePivot` times its diagonal entry (the
 * columns behind G are numerically dependent at that precision).
 */
function choleskyUpper(g: Matrix, relativePivot: number): Float64Array | null {
  const w = g.rows;
  const r = new Float64Array(w * w);
  for (let j = 0; j < w; j++) {
    let pivot = g.data[j * w + j]!;
    for (let k = 0; k < j; k++) pivot -= r[k * w + j]! * r[k * w + j]!;
    if (!(pivot > relativePivot * g.data[j * w + j]!)) return null;
    const d = Math.sqrt(pivot);
    r[j * w + j] = d;
    for (let c = j + 1; c < w; c++) {
      let s = g.data[j * w + c]!;
      for (let k = 0; k < j; k++) s -= r[k * w + j]! * r[k * w + c]!;
      r[j * w + c] = s / d;
    }
  }
  return r;
}

/** Inverse of an upper-triangular w×w matrix (row-major, nonzero diagonal), upper triangular too. */
function invertUpper(r: Float64Array, w: number): Matrix {
  const inv = zeros(w, w);
  const x = inv.data;
  for (let j = w - 1; j >= 0; j--) {
    x[j * w + j] = 1 / r[j * w + j]!;
    for (let i = j - 1; i >= 0; i--) {
      let s = 0;
      for (let k = i + 1; k <= j; k++) s += r[i * w + k]! * x[k * w + j]!;
      x[i * w + j] = -s / r[i * w + i]!;
    }
  }
  return inv;
}

/** One CholeskyQR pass: Y·R⁻¹ with YᵀY = g = RᵀR, or null when the Cholesky factorisation breaks down. */
function choleskyQrPass(y: Matrix, g: Matrix): Matrix | null {
  const r = choleskyUpper(g, CHOLESKY_RELATIVE_PIVOT);
  return r ? matmul(y, invertUpper(r, y.cols)) : null;
}

/** Pivots this small against their diagonal mean cond(Y) above ~1e6: the first pass loses too much orthogonality. */
const CHOLESKY_RELATIVE_PIVOT = 1e-12;
/** Largest max |Q₁ᵀQ₁ − I| after the first pass that the second pass still repairs to working precision. */
const SECOND_PASS_TOLERANCE = 0.1;

/**
 * Same contract as `orthonormalize` for a tall m×w matrix (m ≥ w), faster when w is large:
 * CholeskyQR2 (Fukaya, Nakatsukasa, Yanagisawa, Yamamoto), whose work is two Gram products and
 * two products with a w×w triangle, all in the fast product kernel, instead of Householder
 * reflections applied column by column. The first pass leaves an orthogonality error of about
 * eps·cond(A)², the second removes it; an ill-conditioned A (Cholesky breakdown, or a first pass
 * too far from orthonormal) falls back to Householder. Columns may differ from `orthonormalize`'s
 * in sign (R's diagonal is positive here).
 */
export function orthonormalizeTall(a: Matrix): Matrix {
  if (a.rows < a.cols) throw new RangeError(`orthonormalizeTall: ${a.rows}x${a.cols} is wide`);
  const first = choleskyQrPass(a, gram(a).matrix);
  const firstGram = first ? gram(first).matrix : null;
  if (first && firstGram && maxDeviationFromIdentity(firstGram) <= SECOND_PASS_TOLERANCE) {
    const second = choleskyQrPass(first, firstGram);
    if (second) return second;
  }
  return orthonormalize(a);
}

/** max |G − I| of a square matrix. */
function maxDeviationFromIdentity(g: Matrix): number {
  let worst = 0;
  for (let i = 0; i < g.rows; i++) {
    for (let j = 0; j < g.cols; j++) worst = Math.max(worst, Math.abs(g.data[i * g.cols + j]! - (i === j ? 1 : 0)));
  }
  return worst;
}
