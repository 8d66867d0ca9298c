/**
 * Noise thresholds for reading the numerical rank of an m×n matrix Y = X + σZ (Z iid unit
 * noise): singular values of the noise alone concentrate below (√m + √n)·σ; Gavish & Donoho
 * (2014) give the MSE-optimal hard threshold; Johnstone (2001) centres and scales the largest
 * noise eigenvalue so a threshold can sit at a Tracy–Widom quantile.
 */

import { medianInPlace } from './median.js';

/** Largest singular value of an m×n pure-noise matrix with entry std sigma, to first order. */
export function marchenkoPasturEdge(m: number, n: number, sigma: number): number {
  return (Math.sqrt(m) + Math.sqrt(n)) * sigma;
}

/** Aspect ratio β = min/max in (0, 1]. */
export function aspectRatio(m: number, n: number): number {
  if (!(m > 0 && n > 0)) throw new RangeError(`aspectRatio: sizes must be positive, got ${m}x${n}`);
  return Math.min(m, n) / Math.max(m, n);
}

/** Gavish–Donoho λ*(β) for known noise: threshold = λ*(β)·√max(m,n)·σ; λ*(1) = 4/√3. */
export function gavishDonohoLambda(beta: number): number {
  checkBeta(beta);
  return Math.sqrt(2 * (beta + 1) + (8 * beta) / (beta + 1 + Math.sqrt(beta * beta + 14 * beta + 1)));
}

/** Optimal hard threshold on singular values when the noise std sigma is known. */
export function gavishDonohoThresholdKnownSigma(m: number, n: number, sigma: number): number {
  return gavishDonohoLambda(aspectRatio(m, n)) * Math.sqrt(Math.max(m, n)) * sigma;
}

/** ω(β) = λ*(β)/√μ_β, μ_β the Marchenko–Pastur median; ω(1) ≈ 2.858. */
export function gavishDonohoOmega(beta: number): number {
  return gavishDonohoLambda(beta) / Math.sqrt(marchenkoPasturMedian(beta));
}

/** Optimal hard threshold when sigma is unknown: ω(β) × median singular value. */
export function gavishDonohoThreshold(singularValues: ArrayLike<number>, m: number, n: number): number {
  if (singularValues.length === 0) throw new RangeError('gavishDonohoThreshold: no singular values');
  return gavishDonohoOmega(aspectRatio(m, n)) * median(singularValues);
}

/** Noise std implied by the median singular value: y_med / √(max(m,n)·μ_β). */
export function estimateNoiseSigma(singularValues: ArrayLike<number>, m: number, n: number): number {
  return median(singularValues) / Math.sqrt(Math.max(m, n) * marchenkoPasturMedian(aspectRatio(m, n)));
}

function median(values: ArrayLike<number>): number {
  return medianInPlace(Float64Array.from(values));
}

function checkBeta(beta: number): void {
  if (!(beta > 0 && beta <= 1)) throw new RangeError(`aspect ratio β must be in (0, 1], got ${beta}`);
}

/**
 * CDF of the Marchenko–Pastur law (ratio β ≤ 1, unit variance) at x. With x = c + r·cos θ
 * (c, r the support's centre and half-width) the density's square-root endpoints disappear:
 * F(x) = 1/(2πβ) ∫_θx^π r²·sin²θ / (c + r·cos θ) dθ, a smooth integrand for Gauss–Legendre.
 */
export function marchenkoPasturCdf(x: number, beta: number): number {
  checkBeta(beta);
  const lower = (1 - Math.sqrt(beta)) ** 2, upper = (1 + Math.sqrt(beta)) ** 2;
  if (x <= lower) return 0;
  if (x >= upper) return 1;
  const centre = (lower + upper) / 2, half = (upper - lower) / 2;
  const thetaX = Math.acos(Math.max(-1, Math.min(1, (x - centre) / half)));
  const integrand = (theta: number): number => {
    const s = Math.sin(theta);
    // sin²θ/(c + r cos θ) = (1 − cos θ)/2 exactly at β = 1 (c = r = 2); this keeps θ → π finite.
    const denominator = centre + half * Math.cos(theta);
    return denominator > 0 ? (half * half * s * s) / denominator : 0;
  };
  const value = gaussLegendre(integrand, thetaX, Math.PI, 64) / (2 * Math.PI * beta);
  return Math.min(1, Math.max(0, value));
}

// 8-point Gauss–Legendre nodes/weights on [−1, 1], applied on `panels` subintervals.
const GL_NODES = [
  -0.9602898564975363, -0.7966664774136267, -0.5255324099163290, -0.1834346424956498,
  0.1834346424956498, 0.5255324099163290, 0.7966664774136267, 0.9602898564975363,
];
const GL_WEIGHTS = [
  0.1012285362903763, 0.2223810344533745, 0.3137066458778873, 0.3626837833783620,
  0.3626837833783620, 0.3137066458778873, 0.2223810344533745, 0.1012285362903763,
];

function gaussLegendre(f: (t: number) => number, a: number, b: number, panels: number): number {
  const nodes = GL_NODES, weights = GL_WEIGHTS;
  const width = (b - a) / panels;
  let total = 0;
  for (let p = 0; p < panels; p++) {
    const mid = a + (p + 0.5) * width;
    for (let k = 0; k < nodes.length; k++) total += weights[k]! * f(mid + 0.5 * width * nodes[k]!);
  }
  return 0.5 * width * total;
}

/** Median μ_β of the Marchenko–Pastur law, by bisection on its CDF (not the cubic fit). */
export function marchenkoPasturMedian(beta: number): number {
  checkBeta(beta);
  let lo = (1 - Math.sqrt(beta)) ** 2, hi = (1 + Math.sqrt(beta)) ** 2;
  for (let it = 0; it < 100 && hi - lo > 1e-15 * hi; it++) {
    const mid = 0.5 * (lo + hi);
    if (marchenkoPasturCdf(mid, beta) < 0.5) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

/**
 * Upper quantiles of the Tracy–Widom law TW1 (β = 1, GOE): P(TW1 ≤ q) = level. Computed from
 * F1(s) = det(I − K_s), K_s(x, y) = Ai((x + y)/2)/2 on L²(s, ∞) (Bornemann 2010, Gauss–Legendre
 * with 120-200 nodes; digits stable), matching the published 0.9793 and 2.0234.
 */
export const TRACY_WIDOM_1_QUANTILES: Readonly<Record<'0.95' | '0.99' | '0.999', number>> = Object.freeze({
  '0.95': 0.9793,
  '0.99': 2.0234,
  '0.999': 3.2722,
});

export interface JohnstoneScaling {
  /** Centring μ_np of the largest eigenvalue of XᵀX (unit noise). */
  readonly mu: number;
  /** Scale σ_np: (λ_max − μ)/σ → TW1. */
  readonly sigma: number;
}

/**
 * Johnstone (2001): for X n×p with iid N(0,1) entries, the largest eigenvalue λ of XᵀX has
 * (λ − μ)/σ → TW1 with μ = (√(n−1) + √p)², σ = (√(n−1) + √p)·(1/√(n−1) + 1/√p)^{1/3}.
 */
export function johnstoneScaling(n: number, p: number): JohnstoneScaling {
  if (!(n > 1 && p > 0)) throw new RangeError(`johnstoneScaling: need n > 1 and p > 0, got ${n}, ${p}`);
  const a = Math.sqrt(n - 1), b = Math.sqrt(p);
  return { mu: (a + b) ** 2, sigma: (a + b) * Math.cbrt(1 / a + 1 / b) };
}

/**
 * Singular-value threshold for an m×n matrix with noise std sigma at a Tracy–Widom quantile q
 * (e.g. TRACY_WIDOM_1_QUANTILES['0.99']): √(σ²·(μ + q·σ_np)).
 */
export function tracyWidomSingularValueThreshold(m: number, n: number, sigma: number, quantile: number): number {
  const { mu, sigma: scale } = johnstoneScaling(Math.max(m, n), Math.min(m, n));
  return sigma * Math.sqrt(Math.max(0, mu + quantile * scale));
}
