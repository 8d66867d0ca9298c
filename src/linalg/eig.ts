import { type Matrix } from './matrix.js';
import { euclideanNorm } from './ops.js';

/*
 * Symmetric eigendecomposition: Householder reduction to tridiagonal form, then implicit QL
 * with Wilkinson-type shifts (EISPACK tql2). The orthogonal factor is kept transposed so that
 * each Givens rotation combines two contiguous rows. Eigenvalues are accurate to about
 * eps·‖A‖ in absolute terms.
 */

export interface SymmetricEigen {
  /** Sorted descending. */
  readonly values: Float64Array;
  /** n×n (n×leading with `leading`), column j is the unit eigenvector of values[j]; absent when not requested. */
  readonly vectors?: Matrix;
}

export interface SymmetricEigenOptions {
  /** Compute eigenvectors (default true). */
  readonly vectors?: boolean;
  /**
   * Only the eigenvectors of the `leading` largest values (all values are still computed): QL's
   * rotations are recorded and replayed on those vectors alone, then the reflectors applied to
   * them, O(n²·leading) instead of the O(n³) accumulation of the whole basis.
   */
  readonly leading?: number;
}

export function symmetricEigen(a: Matrix, options: SymmetricEigenOptions = {}): SymmetricEigen {
  const n = a.rows;
  if (a.cols !== n) throw new RangeError(`symmetricEigen needs a square matrix, got ${a.rows}x${a.cols}`);
  const wantVectors = options.vectors ?? true;
  const leading = wantVectors && options.leading !== undefined && options.leading < n ? Math.max(0, options.leading) : null;
  const work = a.data.slice();
  // Symmetrise exactly: the reduction reads rows, so it must not depend on which triangle is right.
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) {
      const mean = 0.5 * (work[i * n + j]! + work[j * n + i]!);
      work[i * n + j] = mean;
      work[j * n + i] = mean;
    }
  }
  const diag = new Float64Array(n);
  const offDiag = new Float64Array(n);
  const tau = new Float64Array(n);
  tridiagonalize(work, n, diag, offDiag, tau);
  const basisT = wantVectors && leading === null ? accumulateTransposedBasis(work, n, tau) : null;
  const rotations = leading !== null ? new RotationLog() : null;
  implicitQL(diag, offDiag, basisT ?? rotations, n);

  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => diag[y]! - diag[x]!);
  const values = Float64Array.from(order, (i) => diag[i]!);
  if (rotations) return { values, vectors: leadingVectors(work, n, tau, rotations, order.slice(0, leading!)) };
  if (!basisT) return { values };
  const vectors = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const row = order[j]! * n;
    for (let i = 0; i < n; i++) vectors[i * n + j] = basisT[row + i]!;
  }
  return { values, vectors: { rows: n, cols: n, data: vectors } };
}

/** Eigenvalues only, sorted descending. */
export function symmetricEigenvalues(a: Matrix): Float64Array {
  return symmetricEigen(a, { vectors: false }).values;
}

/**
 * In place: A = Q·T·Qᵀ. Leaves diag/offDiag of T (offDiag[k] couples k and k+1) and the
 * reflector of step k in row k, columns k+1.. (leading 1 implied), with tau[k]. Only the upper
 * triangle is read and updated (the trailing block is symmetric): half the work of full rows.
 */
function tridiagonalize(w: Float64Array, n: number, diag: Float64Array, offDiag: Float64Array, tau: Float64Array): void {
  const p = new Float64Array(n);
  for (let k = 0; k + 2 < n; k++) {
    const row = k * n;
    const alpha = w[row + k + 1]!;
    const tailNorm = euclideanNorm(w, row + k + 2, row + n);
    diag[k] = w[row + k]!;
    if (tailNorm === 0) {
      offDiag[k] = alpha;
      tau[k] = 0;
      continue;
    }
    const norm = Math.hypot(alpha, tailNorm);
    const beta = alpha >= 0 ? -norm : norm;
    const inv = 1 / (alpha - beta);
    w[row + k + 1] = 1;
    for (let i = k + 2; i < n; i++) w[row + i]! *= inv;
    const t = (beta - alpha) / beta;
    tau[k] = t;
    offDiag[k] = beta;
    // Trailing block B (rows/cols k+1..): B ← B − v·zᵀ − z·vᵀ with p = t·B·v, z = p − (t/2)(pᵀv)·v.
    // B·v from the upper triangle: each stored B_ij (j > i) adds to p_i and to p_j.
    p.fill(0, k + 1, n);
    for (let i = k + 1; i < n; i++) {
      const bi = i * n, vi = w[row + i]!;
      let s = w[bi + i]! * vi;
      for (let j = i + 1; j < n; j++) {
        const b = w[bi + j]!;
        s += b * w[row + j]!;
        p[j]! += b * vi;
      }
      p[i]! += s;
    }
    let pv = 0;
    for (let i = k + 1; i < n; i++) {
      p[i]! *= t;
      pv += p[i]! * w[row + i]!;
    }
    const half = 0.5 * t * pv;
    for (let i = k + 1; i < n; i++) p[i]! -= half * w[row + i]!;
    for (let i = k + 1; i < n; i++) {
      const bi = i * n;
      const vi = w[row + i]!, zi = p[i]!;
      for (let j = i; j < n; j++) w[bi + j]! -= vi * p[j]! + zi * w[row + j]!;
    }
  }
  if (n >= 2) {
    diag[n - 2] = w[(n - 2) * n + n - 2]!;
    offDiag[n - 2] = w[(n - 2) * n + n - 1]!;
  }
  if (n >= 1) diag[n - 1] = w[(n - 1) * n + n - 1]!;
  offDiag[n - 1] = 0;
}

/** Qᵀ (row i = column i of Q) from the reflectors, accumulated backwards. */
function accumulateTransposedBasis(w: Float64Array, n: number, tau: Float64Array): Float64Array {
  // Backward accumulation gives Q = H_0···H_{n−3} row-major; its transpose is what QL rotates.
  const q = new Float64Array(n * n);
  for (let i = 0; i < n; i++) q[i * n + i] = 1;
  const combo = new Float64Array(n);
  for (let k = n - 3; k >= 0; k--) {
    const t = tau[k]!;
    if (t === 0) continue;
    const v = k * n; // v[k+1] = 1 stored explicitly
    combo.fill(0, k + 1, n);
    for (let r = k + 1; r < n; r++) {
      const vr = w[v + r]!;
      const qr = r * n;
      for (let c = k + 1; c < n; c++) combo[c]! += vr * q[qr + c]!;
    }
    for (let r = k + 1; r < n; r++) {
      const f = t * w[v + r]!;
      const qr = r * n;
      for (let c = k + 1; c < n; c++) q[qr + c]! -= f * combo[c]!;
    }
  }
  const qt = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) qt[j * n + i] = q[i * n + j]!;
  return qt;
}

const MAX_QL_ITERATIONS = 60;

/**
 * The plane rotations of implicitQL in order: rotation t mixes rows at[t] and at[t] + 1 of the
 * basis as (row_i, row_i+1) ← (c·row_i − s·row_i+1, s·row_i + c·row_i+1).
 */
class RotationLog {
  at = new Int32Array(1024);
  c = new Float64Array(1024);
  s = new Float64Array(1024);
  count = 0;

  add(i: number, c: number, s: number): void {
    if (this.count === this.at.length) {
      const grow = <T extends Int32Array | Float64Array>(a: T, make: (n: number) => T): T => {
        const out = make(2 * a.length);
        out.set(a);
        return out;
      };
      this.at = grow(this.at, (n) => new Int32Array(n));
      this.c = grow(this.c, (n) => new Float64Array(n));
      this.s = grow(this.s, (n) => new Float64Array(n));
    }
    this.at[this.count] = i;
    this.c[this.count] = c;
    this.s[this.count++] = s;
  }
}

/**
 * Eigenvectors for the given rows of the final rotated basis (Z·Qᵀ, Z the product of the logged
 * rotations): row r is e_rᵀ·Z·Qᵀ, so e_r takes the rotations transposed in reverse order, then
 * the reflectors H_k (Q = H_0···H_{n−3}) from the last. Returns n×rows.length, column q for rows[q].
 */
function leadingVectors(w: Float64Array, n: number, tau: Float64Array, log: RotationLog, rows: readonly number[]): Matrix {
  const k = rows.length;
  const x = new Float64Array(n * k); // entry-major: the two entries a rotation mixes are contiguous rows
  rows.forEach((r, q) => (x[r * k + q] = 1));
  for (let t = log.count - 1; t >= 0; t--) {
    const c = log.c[t]!, s = log.s[t]!, ri = log.at[t]! * k, rj = ri + k;
    for (let q = 0; q < k; q++) {
      const xi = x[ri + q]!, xj = x[rj + q]!;
      x[ri + q] = c * xi + s * xj;
      x[rj + q] = c * xj - s * xi;
    }
  }
  const dots = new Float64Array(k);
  for (let r = n - 3; r >= 0; r--) {
    const t = tau[r]!;
    if (t === 0) continue;
    const v = r * n; // v[r+1] = 1 stored explicitly
    dots.fill(0);
    for (let i = r + 1; i < n; i++) {
      const vi = w[v + i]!, o = i * k;
      for (let q = 0; q < k; q++) dots[q]! += vi * x[o + q]!;
    }
    for (let i = r + 1; i < n; i++) {
      const f = t * w[v + i]!, o = i * k;
      for (let q = 0; q < k; q++) x[o + q]! -= f * dots[q]!;
    }
  }
  return { rows: n, cols: k, data: x };
}

/** EISPACK tql2 on (d, e); rotations applied to rows of basisT, or logged, when given. */
function implicitQL(d: Float64Array, e: Float64Array, basisT: Float64Array | RotationLog | null, n: number): void {
  let shiftTotal = 0;
  let scale = 0;
  const eps = Number.EPSILON;
  for (let l = 0; l < n; l++) {
    scale = Math.max(scale, Math.abs(d[l]!) + Math.abs(e[l]!));
    let m = l;
    while (m < n - 1 && Math.abs(e[m]!) > eps * scale) m++;
    if (m > l) {
      let iterations = 0;
      do {
        if (++iterations > MAX_QL_ITERATIONS) throw new Error('symmetricEigen: QL iteration did not converge');
        let g = d[l]!;
        let p = (d[l + 1]! - g) / (2 * e[l]!);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l]! / (p + r);
        d[l + 1] = e[l]! * (p + r);
        const dl1 = d[l + 1]!;
        let h = g - d[l]!;
        for (let i = l + 2; i < n; i++) d[i]! -= h;
        shiftTotal += h;
        p = d[m]!;
        let c = 1, c2 = 1, c3 = 1;
        const el1 = e[l + 1]!;
        let s = 0, s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i]!;
          h = c * p;
          r = Math.hypot(p, e[i]!);
          e[i + 1] = s * r;
          s = e[i]! / r;
          c = p / r;
          p = c * d[i]! - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]!);
          if (basisT instanceof RotationLog) basisT.add(i, c, s);
          else if (basisT) {
            const ri = i * n, rj = ri + n;
            for (let k = 0; k < n; k++) {
              const x = basisT[rj + k]!, y = basisT[ri + k]!;
              basisT[rj + k] = s * y + c * x;
              basisT[ri + k] = c * y - s * x;
            }
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]!) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]!) > eps * scale);
    }
    d[l]! += shiftTotal;
    e[l] = 0;
  }
}
