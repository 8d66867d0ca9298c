/** The readable verify summary and the HTML report say when layers were analysed on a residual sample. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderVerifyHtml } from '../src/reports/html-verify.js';
import { renderVerifyText } from '../src/reports/verify-text.js';
import { sampleVerifyResult } from './report-fixtures.js';

test('verify text and HTML: a wide model\'s residual sample is named, a narrow model gets no such line', () => {
  const whole = sampleVerifyResult();
  assert.ok(!renderVerifyText(whole).includes('residual dimensions'));
  assert.ok(!renderVerifyHtml(whole).includes('residual dimensions'));
  const sampled = sampleVerifyResult({ layers: whole.layers.map((l) => ({ ...l, residualSample: 256 })) });
  const text = renderVerifyText(sampled);
  assert.match(text, /layers analysed on a seeded sample of 256 residual dimensions/);
  assert.match(text, /DERIVED/);
  assert.match(renderVerifyHtml(sampled), /<p class="muted">wide model: layers analysed on a seeded sample of 256 residual dimensions/);
});
