/** medianInPlace (quickselect) against the sorted middle, odd and even counts, ties, and a prefix. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../src/linalg/rng.js';
import { medianInPlace } from '../src/stats/median.js';

function sortedMedian(values: ArrayLike<number>): number {
  const s = Float64Array.from(values).sort();
  const h = s.length >> 1;
  return s.length % 2 === 1 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
}

test('median by selection equals the sorted middle', () => {
  const rng = new Rng(3);
  for (let trial = 0; trial < 300; trial++) {
    const len = 1 + rng.int(60);
    // Few distinct values half the time: ties must not break the partition.
    const values = Float64Array.from({ length: len }, () => (trial % 2 ? rng.int(4) : rng.gaussian()));
    assert.equal(medianInPlace(values.slice()), sortedMedian(values), `trial ${trial}`);
  }
  const buffer = Float64Array.from([5, 1, 4, 2, 3, 100, -100]);
  assert.equal(medianInPlace(buffer, 5), 3, 'only the first len values count');
});
