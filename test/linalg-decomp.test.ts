import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileEig } from '../scripts/build-gemm-wasm.js';
import { Rng } from '../src/linalg/rng.js';
import { type Matrix, diagonal, fromRows, zeros } from '../src/linalg/matrix.js';
import { EIG_WASM_BASE64 } from '../src/linalg/eig-wasm.js';
import { add, gram, matmul, matmulTransA, matmulTransB, sub, frobeniusNorm, transpose } from '../src/linalg/ops.js';
import { orthonormalize, orthonormalizeTall, qr, qrPivoted } from '../src/linalg/qr.js';
import { symmetricEigen, symmetricEigenvalues } from '../src/linalg/eig.js';
import { randomizedSvd, singularValues, svd, svdViaGram, topSingularValue } from '../src/linalg/svd.js';
import { bothPaths, geometric, maxAbsDiff, orthonormalityError, randomOrthonormal, withSpectrum } from './linalg-helpers.js';

test('QR reconstructs tall and wide matrices with orthonormal Q', () => {
  const rng = new Rng(10);
  for (const [m, n] of [[300, 40], [40, 300], [17, 17], [5, 1]] as const) {
    const a = rng.gaussianMatrix(m, n);
    const { q, r } = qr(a);
    const k = Math.min(m, n);
    assert.equal(q.cols, k);
    assert.ok(maxAbsDiff(matmul(q, r), a) < 1e-12, `QR reconstruction ${m}x${n}`);
    assert.ok(orthonormalityError(q) < 1e-12, `Q orthonormal ${m}x${n}`);
    for (let i = 0; i < k; i++) for (let j = 0; j < i; j++) assert.equal(r.data[i * n + j], 0);
  }
});

test('pivoted QR orders |R_jj| and reveals rank; orthonormalize spans the input', () => {
  const rng = new Rng(11);
  const a = withSpectrum(rng, 80, 30, geometric(6, 1e-3)); // rank 6
  const { q, r, permutation } = qrPivoted(a);
  // Ordering holds exactly through the signal; past rank 6 the diagonal is rounding noise.
  for (let j = 1; j <= 6; j++) assert.ok(Math.abs(r.data[j * 30 + j]!) <= Math.abs(r.data[(j - 1) * 30 + j - 1]!) * (1 + 1e-12));
  assert.ok(Math.abs(r.data[6 * 30 + 6]!) < 1e-13, 'trailing block is numerically zero');
  const permuted = zeros(80, 30);
  for (let i = 0; i < 80; i++) for (let j = 0; j < 30; j++) permuted.data[i * 30 + j] = a.data[i * 30 + permutation[j]!]!;
  assert.ok(maxAbsDiff(matmul(q, r), permuted) < 1e-13);
  const basis = orthonormalize(rng.gaussianMatrix(50, 8));
  assert.ok(orthonormalityError(basis) < 1e-13);
});

test('CholeskyQR2 basis: orthonormal, nested spans (QᵀA upper triangular, positive diagonal), Householder fallback when ill-conditioned', () => {
  const rng = new Rng(21);
  for (const [label, a] of [
    ['Gaussian 600x40', rng.gaussianMatrix(600, 40)],
    ['cond 1e5', withSpectrum(rng, 500, 30, geometric(30, 1e-5))],
    ['cond 1e12 (fallback)', withSpectrum(rng, 500, 30, geometric(30, 1e-12))],
    ['rank 5 of 12 (fallback)', withSpectrum(rng, 200, 12, geometric(5, 1e-2))],
  ] as const) {
    const q = orthonormalizeTall(a);
    assert.equal(q.rows, a.rows);
    assert.equal(q.cols, a.cols);
    assert.ok(orthonormalityError(q) < 1e-13, `${label}: orthonormal`);
    const r = matmulTransA(q, a); // A = Q·R with R upper triangular: each first j columns share one span
    const scale = frobeniusNorm(a);
    for (let i = 0; i < r.rows; i++) for (let j = 0; j < i; j++) assert.ok(Math.abs(r.data[i * r.cols + j]!) < 1e-12 * scale, `${label}: R[${i}][${j}]`);
    if (!label.includes('fallback')) {
      assert.ok(maxAbsDiff(matmul(q, r), a) < 1e-13 * scale, `${label}: reconstruction`);
      for (let j = 0; j < r.cols; j++) assert.ok(r.data[j * r.cols + j]! > 0, `${label}: positive diagonal`);
    }
  }
  // The same basis as Householder's up to column signs.
  const a = rng.gaussianMatrix(300, 20);
  const fast = orthonormalizeTall(a), reference = orthonormalize(a);
  for (let j = 0; j < 20; j++) {
    let d = 0;
    for (let i = 0; i < 300; i++) d += fast.data[i * 20 + j]! * reference.data[i * 20 + j]!;
    assert.ok(Math.abs(Math.abs(d) - 1) < 1e-12, `column ${j}`);
  }
  assert.throws(() => orthonormalizeTall(rng.gaussianMatrix(5, 8)), RangeError);
});

test('symmetric eigen recovers known spectra and vectors', () => {
  const rng = new Rng(12);
  for (const n of [1, 2, 3, 40, 150]) {
    const expected = Float64Array.from({ length: n }, (_, i) => (i % 3 === 0 ? -1 : 1) * (1 + i) * 0.37);
    const v = randomOrthonormal(rng, n, n);
    const a = matmulTransB(matmul(v, diagonal(expected)), v);
    const { values, vectors } = symmetricEigen(a);
    const sorted = [...expected].sort((x, y) => y - x);
    for (let i = 0; i < n; i++) assert.ok(Math.abs(values[i]! - sorted[i]!) < 1e-12 * n, `eigenvalue ${i} of ${n}`);
    assert.ok(orthonormalityError(vectors!) < 1e-12);
    assert.ok(maxAbsDiff(matmul(a, vectors!), matmul(vectors!, diagonal(values))) < 1e-11);
    assert.deepEqual([...symmetricEigenvalues(a)], [...values]);
  }
  // Repeated eigenvalues and an exactly diagonal input.
  const repeated = symmetricEigenvalues(fromRows([[2, 0, 0], [0, 5, 0], [0, 0, 2]]));
  assert.deepEqual([...repeated], [5, 2, 2]);
  assert.throws(() => symmetricEigen(zeros(2, 3)), RangeError);
});

test('symmetric eigen with leading vectors: the same values, the same leading vectors as the whole basis', () => {
  const rng = new Rng(13);
  for (const n of [1, 2, 3, 40, 256]) {
    const a = matmulTransA(rng.gaussianMatrix(n + 5, n), rng.gaussianMatrix(n + 5, n));
    const sym = add(a, transpose(a));
    const whole = symmetricEigen(sym);
    const leading = Math.max(1, Math.floor(n / 4));
    const top = symmetricEigen(sym, { leading });
    assert.deepEqual([...top.values], [...whole.values]);
    assert.equal(top.vectors!.cols, leading);
    for (let q = 0; q < leading; q++) {
      let dot = 0;
      for (let i = 0; i < n; i++) dot += top.vectors!.data[i * leading + q]! * whole.vectors!.data[i * n + q]!;
      assert.ok(Math.abs(Math.abs(dot) - 1) < 1e-12, `vector ${q} of ${n}`);
    }
    assert.ok(orthonormalityError(top.vectors!) < 1e-12);
  }
});

test('committed eigen WebAssembly bytes are the compilation of eig-wat.ts (npm run build:wasm)', async () => {
  assert.equal(Buffer.from(await compileEig()).toString('base64'), EIG_WASM_BASE64);
});

/** V·diag(spectrum)·Vᵀ for a random orthonormal V, with V. */
function withEigenpairs(rng: Rng, spectrum: readonly number[]): { a: Matrix; v: Matrix } {
  const v = randomOrthonormal(rng, spectrum.length, spectrum.length);
  return { a: matmulTransB(matmul(v, diagonal(spectrum)), v), v };
}

function assertValuesClose(actual: Float64Array, expected: ArrayLike<number>, tolerance: number, label: string): void {
  assert.equal(actual.length, expected.length, label);
  for (let i = 0; i < actual.length; i++) assert.ok(Math.abs(actual[i]! - expected[i]!) <= tolerance, `${label}: value ${i}, ${actual[i]} vs ${expected[i]}`);
}

/** Column q of x (n×k) against column `of` of y (n×cols): equal up to sign. */
function assertSameVectors(x: Matrix, y: Matrix, tolerance: number, label: string): void {
  for (let q = 0; q < x.cols; q++) {
    let dot = 0;
    for (let i = 0; i < x.rows; i++) dot += x.data[i * x.cols + q]! * y.data[i * y.cols + q]!;
    for (let i = 0; i < x.rows; i++) {
      const gap = Math.abs(x.data[i * x.cols + q]! - Math.sign(dot) * y.data[i * y.cols + q]!);
      assert.ok(gap <= tolerance, `${label}: vector ${q}, entry ${i} differs by ${gap}`);
    }
  }
}

test('symmetric eigen: the WebAssembly and JavaScript kernels give the same values and leading vectors', () => {
  const rng = new Rng(15);
  const cases: Array<[string, Matrix]> = [];
  for (const n of [1, 2, 3, 8, 9, 127, 256]) cases.push([`Gram ${n}`, gram(rng.gaussianMatrix(n + 3, n)).matrix]);
  const a = rng.gaussianMatrix(127, 127);
  cases.push(['indefinite 127', add(a, transpose(a))]);
  for (const [label, a] of cases) {
    const n = a.rows;
    let norm = 0;
    for (const x of a.data) norm = Math.max(norm, Math.abs(x) * n); // bounds ‖A‖₂
    const [jsValues, wasmValues] = bothPaths(() => symmetricEigen(a, { vectors: false }).values);
    assertValuesClose(wasmValues, jsValues, 1e-12 * norm, `${label}, values only`);
    for (const leading of [...new Set([0, 1, 5, 24, 64].filter((k) => k < n)), undefined]) {
      const [js, wasm] = bothPaths(() => symmetricEigen(a, leading === undefined ? {} : { leading }));
      const what = `${label}, ${leading === undefined ? 'all vectors' : `leading ${leading}`}`;
      assertValuesClose(wasm.values, js.values, 1e-12 * norm, what);
      assert.deepEqual([wasm.vectors!.rows, wasm.vectors!.cols], [n, leading ?? n]);
      if (leading === undefined) {
        // Only the leading vectors are well separated in a Gram matrix; all must still be eigenvectors.
        assert.ok(orthonormalityError(wasm.vectors!) < 1e-12, what);
        assert.ok(maxAbsDiff(matmul(a, wasm.vectors!), matmul(wasm.vectors!, diagonal(wasm.values))) < 1e-12 * norm, what);
      } else {
        assertSameVectors(wasm.vectors!, js.vectors!, 1e-10, what);
      }
    }
  }
});

test('symmetric eigen, leading vectors on both kernels: known spectra and vectors, repeated values, a diagonal input', () => {
  const rng = new Rng(16);
  for (const n of [3, 127, 256]) {
    // Distinct values with gaps of 0.37, either sign: the vectors are determined up to sign.
    const spectrum = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? -1 : 1) * (1 + i) * 0.37);
    const { a, v } = withEigenpairs(rng, spectrum);
    const descending = spectrum.map((value, column) => ({ value, column })).sort((x, y) => y.value - x.value);
    const leading = Math.min(n - 1, 24);
    const expected: Matrix = { rows: n, cols: leading, data: new Float64Array(n * leading) };
    for (let i = 0; i < n; i++) for (let q = 0; q < leading; q++) expected.data[i * leading + q] = v.data[i * n + descending[q]!.column]!;
    for (const top of bothPaths(() => symmetricEigen(a, { leading }))) {
      assertValuesClose(top.values, descending.map((d) => d.value), 1e-12 * 0.37 * n * n, `spectrum ${n}`);
      assertSameVectors(top.vectors!, expected, 1e-10, `spectrum ${n}`);
    }
  }
  // Repeated values: the leading 3 span the eigenspace of 5 (only the span is determined).
  const n = 40;
  const spectrum = Array.from({ length: n }, (_, i) => (i < 3 ? 5 : i < 7 ? 2 : 1 - i / n));
  const { a, v } = withEigenpairs(rng, spectrum);
  for (const top of bothPaths(() => symmetricEigen(a, { leading: 3 }))) {
    assertValuesClose(top.values.subarray(0, 7), [5, 5, 5, 2, 2, 2, 2], 1e-13 * n, 'repeated');
    const projection = matmulTransA(v, top.vectors!); // rows 0..2 hold all of it
    for (let q = 0; q < 3; q++) {
      let inside = 0;
      for (let i = 0; i < 3; i++) inside += projection.data[i * 3 + q]! ** 2;
      assert.ok(Math.abs(inside - 1) < 1e-12, `repeated: vector ${q} in the eigenspace of 5`);
    }
    assert.ok(orthonormalityError(top.vectors!) < 1e-13);
  }
  // Diagonal: no reflections, no rotations; ties keep their order.
  const values = [3, -1, 7, 3, 0, 7, 2, -4, 1];
  const order = values.map((value, i) => ({ value, i })).sort((x, y) => y.value - x.value);
  for (const top of bothPaths(() => symmetricEigen(diagonal(values), { leading: 4 }))) {
    assert.deepEqual([...top.values], order.map((o) => o.value));
    for (let q = 0; q < 4; q++) {
      for (let i = 0; i < values.length; i++) assert.equal(Math.abs(top.vectors!.data[i * 4 + q]!), i === order[q]!.i ? 1 : 0);
    }
  }
});

test('SVD via the Gram matrix, leading vectors: values to 1e-10 relative down to 1e-4 of the largest, at 4096 x 256 and 256 x 4096', () => {
  const rng = new Rng(14);
  const truth = Float64Array.from({ length: 256 }, (_, i) => (i < 16 ? 300 / (1 + i) : 1 - i / 512) * 1e-2);
  for (const [m, n] of [[4096, 256], [256, 4096]] as const) {
    const a = withSpectrum(rng, m, n, truth);
    const { u, s, v } = svdViaGram(a, { leading: 24 });
    const exact = singularValues(a);
    for (let i = 0; i < 256; i++) assert.ok(Math.abs(s[i]! - exact[i]!) <= 1e-10 * exact[i]!, `σ${i} ${s[i]} vs ${exact[i]}`);
    assert.equal(u!.cols, 24);
    assert.equal(v!.cols, 24);
    assert.ok(orthonormalityError(u!) < 1e-10 && orthonormalityError(v!) < 1e-10);
    // A·v_q = σ_q·u_q.
    const av = matmul(a, v!);
    for (let p = 0; p < av.data.length; p++) assert.ok(Math.abs(av.data[p]! - u!.data[p]! * s[p % 24]!) < 1e-12 * s[0]!);
  }
});

function assertSvdMatches(a: ReturnType<typeof zeros>, expected: ArrayLike<number>, label: string): void {
  const k = Math.min(a.rows, a.cols);
  const sorted = Float64Array.from(expected).sort().reverse();
  const result = svd(a);
  const { u, s, v } = result;
  assert.equal(s.length, k);
  for (let i = 0; i < k; i++) {
    const truth = sorted[i] ?? 0;
    // Rounding A (entries ~1/√n) moves every σ by ~eps·σ_max, so small σ are held to that floor.
    const allowed = Math.max(1e-10 * truth, 1e-13 * (sorted[0] ?? 0));
    assert.ok(Math.abs(s[i]! - truth) <= allowed, `${label}: σ${i} = ${s[i]} vs ${truth}`);
  }
  assert.ok(orthonormalityError(u!) < 1e-12, `${label}: U orthonormal`);
  assert.ok(orthonormalityError(v!) < 1e-12, `${label}: V orthonormal`);
  assert.ok(maxAbsDiff(matmulTransB(matmul(u!, diagonal(s)), v!), a) < 1e-13, `${label}: U·S·Vᵀ = A`);
  assert.deepEqual([...singularValues(a)].map((x) => x.toPrecision(8)), [...s].map((x) => x.toPrecision(8)));
}

test('SVD: singular values to 1e-10 relative on known spectra, tall, wide, square', () => {
  const rng = new Rng(13);
  const moderate = geometric(40, 1e-4);
  assertSvdMatches(withSpectrum(rng, 300, 40, moderate), moderate, 'tall 300x40');
  assertSvdMatches(withSpectrum(rng, 40, 300, moderate), moderate, 'wide 40x300');
  const wideRange = geometric(40, 1e-8);
  assertSvdMatches(withSpectrum(rng, 300, 40, wideRange), wideRange, 'tall 1e-8..1');
  assertSvdMatches(withSpectrum(rng, 40, 300, wideRange), wideRange, 'wide 1e-8..1');
  const square = geometric(60, 1e-6);
  assertSvdMatches(withSpectrum(rng, 60, 60, square), square, 'square 60');
  // Strict relative check where the input's own rounding allows it (σ ≥ 1e-4).
  const s = singularValues(withSpectrum(rng, 300, 40, moderate));
  for (let i = 0; i < 40; i++) assert.ok(Math.abs(s[i]! / moderate[i]! - 1) < 1e-10, `relative σ${i}`);
});

test('SVD: rank-deficient, repeated values, zero matrix, tiny shapes', () => {
  const rng = new Rng(14);
  assertSvdMatches(withSpectrum(rng, 120, 30, [5, 4, 3, 2, 1]), [5, 4, 3, 2, 1], 'rank 5 tall');
  assertSvdMatches(withSpectrum(rng, 30, 120, [2, 2, 2, 1e-3]), [2, 2, 2, 1e-3], 'rank 4 wide repeated');
  assertSvdMatches(zeros(6, 4), [], 'zero');
  assertSvdMatches(fromRows([[3]]), [3], '1x1');
  assertSvdMatches(fromRows([[3, 4]]), [5], '1x2');
  const { s } = svd(fromRows([[2, 0], [0, -3]]));
  assert.deepEqual([...s], [3, 2]);
});

test('randomized SVD finds the top-k of low rank plus noise within 1e-6', () => {
  const rng = new Rng(15);
  const m = 400, n = 250, k = 8;
  const spectrum = Float64Array.from({ length: k }, (_, i) => 100 / (i + 1));
  const noise = rng.gaussianMatrix(m, n, 1e-4);
  const a = add(withSpectrum(rng, m, n, spectrum), noise);
  const exact = singularValues(a);
  const approx = randomizedSvd(a, k, { rng: new Rng(1), oversample: 10, powerIters: 2 });
  for (let i = 0; i < k; i++) assert.ok(Math.abs(approx.s[i]! / exact[i]! - 1) < 1e-6, `σ${i}: ${approx.s[i]} vs ${exact[i]}`);
  assert.ok(orthonormalityError(approx.u) < 1e-12);
  assert.ok(orthonormalityError(approx.v) < 1e-12);
  const residual = sub(a, matmulTransB(matmul(approx.u, diagonal(approx.s)), approx.v));
  // Best rank-k error is the noise's Frobenius norm (~1e-4·√(mn) ≈ 0.03).
  assert.ok(frobeniusNorm(residual) < 1.05 * frobeniusNorm(noise));
  assert.throws(() => randomizedSvd(a, 0), RangeError);
});

test('matmulTransA: Aᵀ·B by row blocks equals the plain product (row counts around the block size)', () => {
  const rng = new Rng(22);
  for (const [m, n, k] of [[1, 3, 2], [255, 40, 7], [256, 9, 1], [700, 33, 12]] as const) {
    const a = rng.gaussianMatrix(m, n), b = rng.gaussianMatrix(m, k);
    const got = matmulTransA(a, b);
    assert.equal(got.rows, n);
    assert.equal(got.cols, k);
    assert.ok(maxAbsDiff(got, matmulTransB(transpose(a), transpose(b))) < 1e-12 * Math.sqrt(m), `${m}x${n}, k=${k}`);
  }
  assert.throws(() => matmulTransA(zeros(3, 2), zeros(4, 2)), RangeError);
});

test('topSingularValue by power iteration', () => {
  const rng = new Rng(16);
  const a = withSpectrum(rng, 90, 60, [10, 5, 1, 0.5]);
  assert.ok(Math.abs(topSingularValue(a, { rng: new Rng(2), iters: 200 }) - 10) < 1e-9);
  assert.equal(topSingularValue(zeros(3, 3)), 0);
});
