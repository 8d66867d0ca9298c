/** The readable verify summary (src/reports/verify-text.ts) says when layers were analysed on a residual sample. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderVerifyText } from '../src/reports/verify-text.js';
import { sampleVerifyResult } from './report-fixtures.js';

test('verify text: a wide model\'s residual sample is named, a narrow model gets no such line', () => {
  const whole = sampleVerifyResult();
  assert.ok(!renderVerifyText(whole).includes('residual dimensions'));
  const sampled = sampleVerifyResult({ layers: whole.layers.map((l) => ({ ...l, residualSample: 256 })) });
  const text = renderVerifyText(sampled);
  assert.match(text, /layers analysed on a seeded sample of 256 residual dimensions/);
  assert.match(text, /DERIVED/);
});
