/**
 * Symmetric eigendecomposition: Householder reduction to tridiagonal form, then implicit QL
 * with Wilkinson-type shifts (EISPACK tql2), whose rotations are logged, then replayed with
 * the reflectors on the wanted eigenvectors alone. Eigenvalues are accurate to about eps·‖A‖ in
 * absolute terms. The reduction and the vectors run on the kernels of eig-kernels.ts
 * (WebAssembly where available), in one workspace: the matrix and its reflectors from 0, then a
 * vector of n, then the eigenvectors and a stage for the rotation log.
 */
import { type EigenKernels, LANE_CHUNK, eigenKernels } from './eig-kernels.js';
import { type Matrix } from './matrix.js';
import { euclideanNorm } from './ops.js';

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
   * Only the eigenvectors of the `leading` largest values (all values are still computed):
   * O(n²·leading) for them instead of O(n³) for the whole basis.
   */
  readonly leading?: number;
}

export function symmetricEigen(a: Matrix, options: SymmetricEigenOptions = {}): SymmetricEigen {
  const n = a.rows;
  if (a.cols !== n) throw new RangeError(`symmetricEigen needs a square matrix, got ${a.rows}x${a.cols}`);
  const wantVectors = options.vectors ?? true;
  const vectorCount = !wantVectors ? 0 : options.leading !== undefined && options.leading < n ? Math.max(0, options.leading) : n;
  const kernels = eigenKernels(n * n + n + Math.ceil(vectorCount / LANE_CHUNK) * LANE_CHUNK * n + 2 * rotationStage(n));
  const work = kernels.reserve(n * n + n);
  work.set(a.data.subarray(0, n * n));
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
  tridiagonalize(kernels, work, n, diag, offDiag, tau);
  const rotations = wantVectors ? new RotationLog() : null;
  implicitQL(diag, offDiag, rotations, n);

  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => diag[y]! - diag[x]!);
  const values = Float64Array.from(order, (i) => diag[i]!);
  if (!rotations) return { values };
  return { values, vectors: eigenvectors(kernels, n, tau, rotations, order.slice(0, vectorCount)) };
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
function tridiagonalize(kernels: EigenKernels, w: Float64Array, n: number, diag: Float64Array, offDiag: Float64Array, tau: Float64Array): void {
  const p = n * n; // the workspace vector after the matrix
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
    kernels.symvUpper(0, row, p, n, k + 1);
    let pv = 0;
    for (let i = k + 1; i < n; i++) {
      w[p + i]! *= t;
      pv += w[p + i]! * w[row + i]!;
    }
    const half = 0.5 * t * pv;
    for (let i = k + 1; i < n; i++) w[p + i]! -= half * w[row + i]!;
    kernels.rank2Upper(0, row, p, n, k + 1);
  }
  if (n >= 2) {
    diag[n - 2] = w[(n - 2) * n + n - 2]!;
    offDiag[n - 2] = w[(n - 2) * n + n - 1]!;
  }
  if (n >= 1) diag[n - 1] = w[(n - 1) * n + n - 1]!;
  offDiag[n - 1] = 0;
}

const MAX_QL_ITERATIONS = 60;

/** a, or a copy twice as long when it has no room for `needed` entries. */
function withRoom<T extends Int32Array | Float64Array>(a: T, needed: number, make: (length: number) => T): T {
  if (needed <= a.length) return a;
  const out = make(Math.max(needed, 2 * a.length));
  out.set(a);
  return out;
}

/**
 * The plane rotations of implicitQL in order, by sweep: a sweep (l, m) mixes rows i and i + 1 of
 * the basis for i = m−1 down to l, as (row_i, row_i+1) ← (c·row_i − s·row_i+1, s·row_i + c·row_i+1).
 */
class RotationLog {
  c = new Float64Array(1024);
  s = new Float64Array(1024);
  count = 0;
  /** Per sweep: l, m and the index of its first rotation. */
  sweeps = new Int32Array(3 * 64);
  sweepCount = 0;

  beginSweep(l: number, m: number): void {
    this.sweeps = withRoom(this.sweeps, 3 * this.sweepCount + 3, (n) => new Int32Array(n));
    this.sweeps.set([l, m, this.count], 3 * this.sweepCount++);
  }

  add(c: number, s: number): void {
    if (this.count === this.c.length) {
      this.c = withRoom(this.c, this.count + 1, (n) => new Float64Array(n));
      this.s = withRoom(this.s, this.count + 1, (n) => new Float64Array(n));
    }
    this.c[this.count] = c;
    this.s[this.count++] = s;
  }
}

/** Rotations staged in the workspace at a time: at least one sweep (up to n − 1). */
function rotationStage(n: number): number {
  return Math.max(n, 1 << 16);
}

/**
 * Eigenvectors for the given rows of the final rotated basis (Z·Qᵀ, Z the product of the logged
 * rotations): row r is e_rᵀ·Z·Qᵀ, so e_r takes the rotations transposed in reverse order, then
 * the reflectors H_k (Q = H_0···H_{n−3}) from the last. Returns n×rows.length, column q for rows[q].
 */
function eigenvectors(kernels: EigenKernels, n: number, tau: Float64Array, log: RotationLog, rows: readonly number[]): Matrix {
  const k = rows.length;
  const panels = Math.ceil(k / LANE_CHUNK); // the padding lanes stay zero
  const stage = Math.min(rotationStage(n), log.count);
  const x = n * n + n, c = x + panels * n * LANE_CHUNK, s = c + stage;
  const at = (i: number, q: number) => x + (Math.floor(q / LANE_CHUNK) * n + i) * LANE_CHUNK + (q % LANE_CHUNK);
  const work = kernels.reserve(s + stage);
  work.fill(0, x, c);
  rows.forEach((r, q) => (work[at(r, q)] = 1));
  const sweeps = log.sweeps;
  // Replay from the last sweep, staging as many whole sweeps as fit at a time.
  for (let last = log.sweepCount - 1, end = log.count; last >= 0;) {
    let first = last;
    while (first > 0 && end - sweeps[3 * (first - 1) + 2]! <= stage) first--;
    const begin = sweeps[3 * first + 2]!;
    work.set(log.c.subarray(begin, end), c);
    work.set(log.s.subarray(begin, end), s);
    for (let sweep = last; sweep >= first; sweep--) {
      const l = sweeps[3 * sweep]!, m = sweeps[3 * sweep + 1]!;
      const forL = sweeps[3 * sweep + 2]! - begin + m - 1 - l; // logged last
      kernels.rotateSweep(x, panels, n, c + forL, s + forL, l, m);
    }
    last = first - 1;
    end = begin;
  }
  for (let r = n - 3; r >= 0; r--) {
    // v[r+1] = 1 is stored explicitly in row r of the reduced matrix.
    if (tau[r] !== 0) kernels.reflect(x, panels, n, r * n, tau[r]!, r + 1);
  }
  const vectors = new Float64Array(n * k);
  for (let i = 0; i < n; i++) for (let q = 0; q < k; q++) vectors[i * k + q] = work[at(i, q)]!;
  return { rows: n, cols: k, data: vectors };
}

/** √(a² + b²); Math.hypot, whose scaling took over half of QL's time, only where the squares over- or underflow. */
function hypot(a: number, b: number): number {
  const squares = a * a + b * b;
  return squares > 1e-300 && squares < 1e300 ? Math.sqrt(squares) : Math.hypot(a, b);
}

/** EISPACK tql2 on (d, e); rotations logged when a log is given. */
function implicitQL(d: Float64Array, e: Float64Array, log: RotationLog | null, n: number): void {
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
        let r = hypot(p, 1);
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
        log?.beginSweep(l, m);
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i]!;
          h = c * p;
          r = hypot(p, e[i]!);
          e[i + 1] = s * r;
          s = e[i]! / r;
          c = p / r;
          p = c * d[i]! - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]!);
          log?.add(c, s);
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
