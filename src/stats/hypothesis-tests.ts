/**
 * Correlations and p-value machinery, accurate far into the tails: evidence of lineage is
 * often a z of 30+ or a combined p far below 1e-300, so tails are computed directly (and in
 * log space) rather than as 1 − cdf.
 */

const LN10 = Math.LN10;
const LOG_SQRT_PI = 0.5 * Math.log(Math.PI);

function requirePaired(x: ArrayLike<number>, y: ArrayLike<number>, what: string): void {
  if (x.length !== y.length) throw new RangeError(`${what}: lengths ${x.length} and ${y.length} differ`);
  if (x.length < 2) throw new RangeError(`${what}: needs at least 2 pairs`);
}

/** Pearson correlation (two-pass, centred); NaN when either side is constant. */
export function pearson(x: ArrayLike<number>, y: ArrayLike<number>): number {
  requirePaired(x, y, 'pearson');
  const n = x.length;
  let mx = 0, my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i]!;
    my += y[i]!;
  }
  mx /= n;
  my /= n;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i]! - mx, dy = y[i]! - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx === 0 || syy === 0) return NaN;
  return Math.max(-1, Math.min(1, sxy / Math.sqrt(sxx * syy)));
}

/** Ranks 1..n, ties receiving the average of the ranks they span. */
export function averageRanks(values: ArrayLike<number>): Float64Array {
  const n = values.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => values[a]! - values[b]!);
  const ranks = new Float64Array(n);
  let start = 0;
  while (start < n) {
    let end = start + 1;
    while (end < n && values[order[end]!] === values[order[start]!]) end++;
    const rank = (start + 1 + end) / 2; // mean of ranks start+1..end
    for (let k = start; k < end; k++) ranks[order[k]!] = rank;
    start = end;
  }
  return ranks;
}

/** Spearman rank correlation: Pearson on average ranks (handles ties). */
export function spearman(x: ArrayLike<number>, y: ArrayLike<number>): number {
  requirePaired(x, y, 'spearman');
  return pearson(averageRanks(x), averageRanks(y));
}

/**
 * erfc(x) for x ≥ 0 by the continued fraction
 *   erfc(x) = exp(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))),
 * evaluated with modified Lentz; returns log(erfc(x)) + x² so callers can stay in log space.
 */
function erfcScaledLogContinuedFraction(x: number): number {
  const tiny = 1e-300;
  let f = x;
  let c = x;
  let d = 0;
  for (let k = 1; k < 5000; k++) {
    const a = k / 2;
    d = x + a * d;
    d = d === 0 ? 1 / tiny : 1 / d;
    c = x + a / c;
    if (c === 0) c = tiny;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return -LOG_SQRT_PI - Math.log(f);
}

/** erf(x) for small |x| by the all-positive series erf(x) = 2/√π·e^{−x²}·Σ 2ⁿx^{2n+1}/(1·3···(2n+1)). */
function erfSeries(x: number): number {
  const x2 = x * x;
  let term = x;
  let sum = x;
  for (let n = 1; n < 500; n++) {
    term *= (2 * x2) / (2 * n + 1);
    sum += term;
    if (term < 1e-17 * sum) break;
  }
  return (2 / Math.sqrt(Math.PI)) * Math.exp(-x2) * sum;
}

// Below this the series is used (no cancellation in 1 − erf there); above it the continued
// fraction converges in well under a hundred terms.
const SERIES_LIMIT = 2.5;

/** Natural log of erfc(x), finite far beyond where erfc underflows. */
export function logErfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x < SERIES_LIMIT) return Math.log(x < 0 ? 1 + erfSeries(-x) : 1 - erfSeries(x));
  return erfcScaledLogContinuedFraction(x) - x * x;
}

export function erfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x < SERIES_LIMIT) return x < 0 ? 1 + erfSeries(-x) : 1 - erfSeries(x);
  return Math.exp(logErfc(x));
}

export function erf(x: number): number {
  if (Math.abs(x) < SERIES_LIMIT) return x < 0 ? -erfSeries(-x) : erfSeries(x);
  return x < 0 ? erfc(-x) - 1 : 1 - erfc(x);
}

/** Standard normal upper tail P(Z > z). */
export function normalSf(z: number): number {
  return 0.5 * erfc(z / Math.SQRT2);
}

export function normalCdf(z: number): number {
  return 0.5 * erfc(-z / Math.SQRT2);
}

/** log P(Z > z), finite for any finite z (e.g. z = 100 → −5005.5). */
export function normalLogSf(z: number): number {
  return Math.log(0.5) + logErfc(z / Math.SQRT2);
}

/**
 * Standard normal quantile: the Abramowitz–Stegun 26.2.23 start refined by Halley steps on
 * the accurate tail, so it is good to ~1e-15 relative over (1e-300, 1 − 1e-16).
 */
export function normalQuantile(p: number): number {
  if (!(p >= 0 && p <= 1)) return NaN;
  if (p === 0) return -Infinity;
  if (p === 1) return Infinity;
  if (p > 0.5) return -normalQuantileLower(1 - p);
  return normalQuantileLower(p);
}

/** Quantile for p ≤ 0.5, iterating on P(Z > −x) = p i.e. x < 0. */
function normalQuantileLower(p: number): number {
  const t = Math.sqrt(-2 * Math.log(p));
  let z = -(t - (2.515517 + 0.802853 * t + 0.010328 * t * t) / (1 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t));
  for (let it = 0; it < 6; it++) {
    // Work with log P(Z < z) = log sf(−z) so deep tails do not underflow.
    const logCdf = normalLogSf(-z);
    const logPdf = -0.5 * z * z - 0.5 * Math.log(2 * Math.PI);
    // Newton on g(z) = log cdf(z) − log p, with Halley correction for the curvature.
    const g = logCdf - Math.log(p);
    const ratio = Math.exp(logPdf - logCdf); // g'(z)
    const second = -ratio * (z + ratio); // g''(z)
    const step = g / ratio;
    const halley = step / (1 - (0.5 * step * second) / ratio);
    z -= Number.isFinite(halley) ? halley : step;
    if (Math.abs(step) < 1e-15 * Math.max(1, Math.abs(z))) break;
  }
  return z;
}

/** log Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; ~1e-15 relative). */
export function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  const z = x - 1;
  let a = c[0]!;
  const t = z + 7.5;
  for (let i = 1; i < 9; i++) a += c[i]! / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/**
 * log of the regularised upper incomplete gamma Q(a, x) = Γ(a, x)/Γ(a): series for P when
 * x < a + 1, Lentz continued fraction for Q otherwise (Numerical Recipes' split).
 */
export function logRegularizedGammaQ(a: number, x: number): number {
  if (!(a > 0) || !(x >= 0)) return NaN;
  if (x === 0) return 0;
  const logPrefactor = a * Math.log(x) - x - logGamma(a);
  if (x < a + 1) {
    let term = 1 / a;
    let sum = term;
    for (let n = 1; n < 100000; n++) {
      term *= x / (a + n);
      sum += term;
      if (term < sum * 1e-17) break;
    }
    const p = Math.exp(logPrefactor) * sum;
    return Math.log1p(-Math.min(p, 1));
  }
  const tiny = 1e-300;
  let b = x + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 100000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return logPrefactor + Math.log(h);
}

/** log of the chi-square survival function P(X > x) for k degrees of freedom (any k > 0). */
export function chiSquareLogSf(x: number, dof: number): number {
  if (x <= 0) return 0;
  if (Number.isInteger(dof) && dof % 2 === 0) return chiSquareEvenLogSf(x, dof / 2);
  return logRegularizedGammaQ(dof / 2, x / 2);
}

export function chiSquareSf(x: number, dof: number): number {
  return Math.exp(chiSquareLogSf(x, dof));
}

/**
 * Closed form for 2k degrees of freedom: P(X > x) = e^{−x/2}·Σ_{i<k} (x/2)^i / i!, summed
 * with a log-sum-exp so nothing over- or underflows.
 */
function chiSquareEvenLogSf(x: number, k: number): number {
  const half = x / 2;
  const logHalf = Math.log(half);
  let maxLog = -Infinity;
  const logs = new Float64Array(k);
  let logFactorial = 0;
  for (let i = 0; i < k; i++) {
    if (i > 0) logFactorial += Math.log(i);
    logs[i] = i * logHalf - logFactorial;
    if (logs[i]! > maxLog) maxLog = logs[i]!;
  }
  let sum = 0;
  for (let i = 0; i < k; i++) sum += Math.exp(logs[i]! - maxLog);
  return -half + maxLog + Math.log(sum);
}

export interface CombinedPValue {
  /** −2·Σ ln p_i. */
  readonly statistic: number;
  /** 2 × number of p-values. */
  readonly dof: number;
  /** Combined p (may underflow to 0; see log10P). */
  readonly p: number;
  /** log10 of the combined p, finite even when p underflows. */
  readonly log10P: number;
}

/** Fisher's method from p-values in (0, 1]. */
export function fisherCombine(pValues: ArrayLike<number>): CombinedPValue {
  const logs = new Float64Array(pValues.length);
  for (let i = 0; i < pValues.length; i++) {
    const p = pValues[i]!;
    if (!(p > 0 && p <= 1)) throw new RangeError(`fisherCombine: p-value ${p} outside (0, 1]`);
    logs[i] = Math.log(p);
  }
  return fisherCombineLogP(logs);
}

/** Fisher's method from natural-log p-values (for p far below the smallest double). */
export function fisherCombineLogP(logPValues: ArrayLike<number>): CombinedPValue {
  const k = logPValues.length;
  if (k === 0) throw new RangeError('fisherCombine: no p-values');
  let statistic = 0;
  for (let i = 0; i < k; i++) {
    const lp = logPValues[i]!;
    if (!(lp <= 0)) throw new RangeError(`fisherCombine: log p-value ${lp} is not ≤ 0`);
    statistic -= 2 * lp;
  }
  const logP = chiSquareEvenLogSf(statistic, k);
  return { statistic, dof: 2 * k, p: Math.exp(logP), log10P: logP / LN10 };
}
