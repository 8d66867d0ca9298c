/** fastLog (src/linalg/fast-log.ts) against Math.log: normal numbers over the whole exponent range, bin edges, and what it hands to Math.log. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fastLog } from '../src/linalg/fast-log.js';
import { Rng } from '../src/linalg/rng.js';

test('fastLog is within a few ulps of Math.log over normal numbers', () => {
  const rng = new Rng(17);
  const values: number[] = [1, 2, 0.5, Math.E, 1e-300, 1e300, Number.MIN_VALUE * 2 ** 52, Number.MAX_VALUE, 1 - 2 ** -53, 1 + 2 ** -52];
  // Bin edges and centres of the mantissa table, at several exponents.
  for (let k = 0; k <= 256; k++) for (const e of [-40, 0, 13]) values.push((1 + k / 256) * 2 ** e, (1 + (k + 0.5) / 256) * 2 ** e);
  for (let i = 0; i < 20000; i++) values.push(Math.exp(700 * (2 * rng.uniform() - 1)));
  for (const v of values) {
    const exact = Math.log(v), got = fastLog(v);
    assert.ok(Math.abs(got - exact) <= 4 * Number.EPSILON * Math.max(1, Math.abs(exact)), `log(${v}): ${got} vs ${exact}`);
  }
});

test('fastLog of zero, subnormal, negative, infinite and NaN inputs is Math.log\'s', () => {
  for (const v of [0, -0, Number.MIN_VALUE, 2 ** -1040, -1, -Infinity, Infinity, NaN]) assert.ok(Object.is(fastLog(v), Math.log(v)), String(v));
});
