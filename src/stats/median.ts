/** Medians without sorting or copying. */
/** Median of values[0..len) (reorders them): quickselect, expected linear time, no copy. */
export function medianInPlace(values: Float64Array, len = values.length): number {
  const upper = select(values, len, len >> 1);
  if (len % 2 === 1) return upper;
  // Even count: the lower middle is the largest value left of the upper one after selection.
  let lower = -Infinity;
  for (let i = 0; i < len >> 1; i++) if (values[i]! > lower) lower = values[i]!;
  return (lower + upper) / 2;
}

/** The value of rank `target` (0-based) in values[0..len); partitions around it (Hoare). */
function select(values: Float64Array, len: number, target: number): number {
  let lo = 0, hi = len - 1;
  while (lo < hi) {
    const pivot = values[(lo + hi) >> 1]!;
    let i = lo, j = hi;
    while (i <= j) {
      while (values[i]! < pivot) i++;
      while (values[j]! > pivot) j--;
      if (i <= j) {
        const t = values[i]!;
        values[i] = values[j]!;
        values[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else break;
  }
  return values[target]!;
}
