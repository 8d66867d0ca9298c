/**
 * Streaming moments in float64: power sums shifted by a pilot value (the first block's
 * mean), which keeps cancellation small without Welford's per-element divisions.
 * Accumulators merge exactly (sums add), so workers can each take part of a model.
 */

/** Count, mean, variance, skewness and excess kurtosis of a set of values. */
export interface Moments {
  readonly count: number;
  readonly mean: number;
  /** Population variance (divides by n). */
  readonly variance: number;
  readonly skewness: number;
  /** Fisher excess kurtosis, biased estimator (scipy.stats.kurtosis defaults). */
  readonly excessKurtosis: number;
}

export interface MomentSums {
  shift: number | null;
  n: number;
  s1: number;
  s2: number;
  s3: number;
  s4: number;
}

export class MomentAccumulator {
  private sums: MomentSums = { shift: null, n: 0, s1: 0, s2: 0, s3: 0, s4: 0 };

  static fromSums(sums: MomentSums): MomentAccumulator {
    const acc = new MomentAccumulator();
    acc.sums = { ...sums };
    return acc;
  }

  toSums(): MomentSums {
    return { ...this.sums };
  }

  add(values: ArrayLike<number>, start = 0, end = values.length): void {
    if (end <= start) return;
    const s = this.sums;
    if (s.shift === null) {
      let pilot = 0;
      for (let i = start; i < end; i++) pilot += values[i]!;
      s.shift = pilot / (end - start);
    }
    const c = s.shift;
    let s1 = 0, s2 = 0, s3 = 0, s4 = 0;
    for (let i = start; i < end; i++) {
      const d = values[i]! - c;
      const d2 = d * d;
      s1 += d;
      s2 += d2;
      s3 += d2 * d;
      s4 += d2 * d2;
    }
    s.n += end - start;
    s.s1 += s1;
    s.s2 += s2;
    s.s3 += s3;
    s.s4 += s4;
  }

  /** Add another accumulator's data, re-centring its sums onto this shift exactly. */
  merge(other: MomentAccumulator): void {
    const o = other.sums;
    if (o.n === 0) return;
    const s = this.sums;
    if (s.shift === null) {
      this.sums = { ...o };
      return;
    }
    // Sums of (x - b) from sums of (x - a): binomial expansion with t = a - b.
    const t = (o.shift as number) - s.shift;
    const t2 = t * t;
    s.n += o.n;
    s.s1 += o.s1 + o.n * t;
    s.s2 += o.s2 + 2 * t * o.s1 + o.n * t2;
    s.s3 += o.s3 + 3 * t * o.s2 + 3 * t2 * o.s1 + o.n * t2 * t;
    s.s4 += o.s4 + 4 * t * o.s3 + 6 * t2 * o.s2 + 4 * t2 * t * o.s1 + o.n * t2 * t2;
  }

  result(): Moments {
    const { n, s1, s2, s3, s4 } = this.sums;
    const shift = this.sums.shift ?? 0;
    if (n === 0) return { count: 0, mean: NaN, variance: NaN, skewness: NaN, excessKurtosis: NaN };
    const m1 = s1 / n;
    // Central moments from shifted raw moments.
    const r2 = s2 / n, r3 = s3 / n, r4 = s4 / n;
    const m2 = r2 - m1 * m1;
    const m3 = r3 - 3 * m1 * r2 + 2 * m1 * m1 * m1;
    const m4 = r4 - 4 * m1 * r3 + 6 * m1 * m1 * r2 - 3 * m1 * m1 * m1 * m1;
    const variance = Math.max(m2, 0);
    return {
      count: n,
      mean: shift + m1,
      variance,
      skewness: variance > 0 ? m3 / Math.pow(variance, 1.5) : NaN,
      excessKurtosis: variance > 0 ? m4 / (variance * variance) - 3 : NaN,
    };
  }
}
