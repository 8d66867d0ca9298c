import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BadInputError } from '../src/io/errors.js';
import { openSafetensorsSource } from '../src/io/source.js';
import { planScanUnits, scanMoments } from './helpers/scan-model.js';
import type { Moments } from '../src/stats/moments.js';
import { writeModelFolder, type FixtureTensor } from './helpers/safetensors-writer.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'io-scan-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

function gaussian(seed: number, n: number, mean: number, std: number, skewed = false): Float64Array {
  let state = seed >>> 0;
  const uniform = () => ((state = (Math.imul(state ^ (state >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0) + 0.5) / 2 ** 32;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const z = Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
    out[i] = mean + std * (skewed ? Math.exp(z) : z);
  }
  return out;
}

/** Neumaier-compensated sum: the reference must be more accurate than what it checks. */
function exactSum(n: number, term: (i: number) => number): number {
  let sum = 0, compensation = 0;
  for (let i = 0; i < n; i++) {
    const x = term(i);
    const t = sum + x;
    compensation += Math.abs(sum) >= Math.abs(x) ? (sum - t) + x : (x - t) + sum;
    sum = t;
  }
  return sum + compensation;
}

/** Two-pass moments in float64 (population variance, biased excess kurtosis). */
function twoPass(values: ArrayLike<number>): Moments {
  const n = values.length;
  const mean = exactSum(n, (i) => values[i]!) / n;
  const m2 = exactSum(n, (i) => (values[i]! - mean) ** 2) / n;
  const m3 = exactSum(n, (i) => (values[i]! - mean) ** 3) / n;
  const m4 = exactSum(n, (i) => (values[i]! - mean) ** 4) / n;
  return { count: n, mean, variance: m2, skewness: m3 / m2 ** 1.5, excessKurtosis: m4 / (m2 * m2) - 3 };
}

function assertClose(actual: Moments, expected: Moments, what: string): void {
  assert.equal(actual.count, expected.count, `${what} count`);
  for (const key of ['mean', 'variance', 'skewness', 'excessKurtosis'] as const) {
    const a = actual[key], e = expected[key];
    // Skewness and kurtosis are dimensionless with scale 1: near zero their rounding error is
    // absolute (~1e-16 * E|d|^3 / sd^3), so they are compared relative to max(|e|, 1).
    const scale = key === 'mean' || key === 'variance' ? Math.abs(e) : Math.max(Math.abs(e), 1);
    assert.ok(Math.abs(a - e) <= 1e-12 * scale, `${what} ${key}: ${a} vs two-pass ${e} (rel ${Math.abs(a - e) / scale})`);
  }
}

// Sizes chosen so some tensors take the histogram path (>= 65,536 elements), some the direct
// path, and the 1024x1024 ones span several 1 MiB units.
const tensors: Record<string, FixtureTensor> = {
  'embed.weight': { dtype: 'BF16', shape: [1024, 1024], data: gaussian(1, 1024 * 1024, 0.3, 0.02) },
  'layers.0.q.weight': { dtype: 'BF16', shape: [300, 256], data: gaussian(2, 300 * 256, -0.1, 0.05, true) },
  'layers.0.norm.weight': { dtype: 'BF16', shape: [256], data: gaussian(3, 256, 1, 0.1) },
  'layers.0.up.weight': { dtype: 'F16', shape: [512, 300], data: gaussian(4, 512 * 300, 0.05, 0.03) },
  'layers.0.down.weight': { dtype: 'F32', shape: [1024, 300], data: gaussian(5, 1024 * 300, 0.2, 0.04, true) },
  'layers.0.gate.weight': { dtype: 'F64', shape: [64, 64], data: gaussian(6, 4096, -0.5, 1) },
  'layers.0.scale': { dtype: 'F8_E4M3', shape: [100000], data: gaussian(7, 100000, 2, 1) },
  'layers.0.tiny8': { dtype: 'F8_E5M2', shape: [17], data: gaussian(8, 17, 2, 1) },
  'position_ids': { dtype: 'I64', shape: [8], data: [0, 1, 2, 3, 4, 5, 6, 7] },
};
const modelDir = path.join(root, 'model');
writeModelFolder(modelDir, { model_type: 'llama' }, tensors, { shards: 2 });
/** Small units so the 2 MiB tensor spans several and their merge is exercised. */
const UNIT_BYTES = 512 * 1024;
const floatNames = Object.keys(tensors).filter((n) => n !== 'position_ids');

test('scan units cover every float tensor exactly once, in order', () => {
  const source = openSafetensorsSource(modelDir);
  try {
    const units = planScanUnits(source.tensors.values(), undefined, UNIT_BYTES);
    assert.deepEqual([...new Set(units.map((u) => u.tensor))].sort(), [...floatNames].sort());
    for (const name of floatNames) {
      const mine = units.filter((u) => u.tensor === name);
      let next = 0;
      for (const u of mine) { assert.equal(u.elemStart, next); next += u.elemCount; }
      assert.equal(next, source.tensors.get(name)!.shape.reduce((p, d) => p * d, 1));
    }
    assert.ok(units.filter((u) => u.tensor === 'embed.weight').length >= 2, 'the 2 MiB tensor spans several units');
    assert.deepEqual(units.map((u) => u.id), units.map((_, i) => i));
  } finally {
    source.close();
  }
});

test('scanMoments equals a two-pass float64 computation to 1e-12, per tensor and overall', async () => {
  const source = openSafetensorsSource(modelDir);
  const all: number[] = [];
  const expected = new Map<string, Moments>();
  try {
    for (const name of floatNames) {
      // read() gives float32; the scan keeps F64 weights in float64, so the reference does too.
      const values = source.tensors.get(name)!.dtype === 'F64' ? tensors[name]!.data! : source.read(name);
      expected.set(name, twoPass(values));
      for (let i = 0; i < values.length; i++) all.push(values[i]!);
    }
  } finally {
    source.close();
  }
  const result = await scanMoments(modelDir, { workers: 2, unitBytes: UNIT_BYTES });
  assert.deepEqual([...result.perTensor.keys()].sort(), [...floatNames].sort());
  for (const name of floatNames) assertClose(result.perTensor.get(name)!, expected.get(name)!, name);
  assertClose(result.overall, twoPass(all), 'overall');
  const floatBytes = floatNames.reduce((s, n) => s + openBytes(n), 0);
  assert.equal(result.bytes, floatBytes);
  assert.ok(result.seconds > 0);
});

function openBytes(name: string): number {
  const source = openSafetensorsSource(modelDir);
  try {
    return source.tensors.get(name)!.byteLength;
  } finally {
    source.close();
  }
}

test('results are bit-identical for 0, 1 and 3 workers; tensorFilter selects', async () => {
  const inline = await scanMoments(modelDir, { workers: 0, unitBytes: UNIT_BYTES });
  for (const workers of [1, 3]) {
    const threaded = await scanMoments(modelDir, { workers, unitBytes: UNIT_BYTES });
    assert.deepEqual(threaded.overall, inline.overall, `${workers} workers`);
    assert.deepEqual(threaded.perTensor, inline.perTensor, `${workers} workers`);
  }
  const filtered = await scanMoments(modelDir, { workers: 2, unitBytes: UNIT_BYTES, tensorFilter: (t) => t.name.includes('layers.0.') && t.dtype !== 'F8_E4M3' });
  assert.deepEqual([...filtered.perTensor.keys()].sort(),
    ['layers.0.down.weight', 'layers.0.gate.weight', 'layers.0.norm.weight', 'layers.0.q.weight', 'layers.0.tiny8', 'layers.0.up.weight']);
  assert.deepEqual(filtered.perTensor.get('layers.0.q.weight'), inline.perTensor.get('layers.0.q.weight'));
});

test('a NaN weight fails the scan with BadInputError naming file and tensor, in workers and inline', async () => {
  const dir = path.join(root, 'nan-model');
  const withNan = (n: number, at: number) => { const v = gaussian(9, n, 0, 1); v[at] = NaN; return v; };
  writeModelFolder(dir, null, {
    ok: { dtype: 'BF16', shape: [100], data: gaussian(10, 100, 0, 1) },
    'bad.bf16': { dtype: 'BF16', shape: [400, 400], data: withNan(160000, 12345) },
  });
  const file = path.join(dir, 'model.safetensors');
  for (const workers of [0, 2]) {
    await assert.rejects(scanMoments(dir, { workers }), (err: unknown) =>
      err instanceof BadInputError && /non-finite weight NaN/.test(err.message)
      && err.message.includes(`file ${file}`) && /tensor bad\.bf16/.test(err.message));
  }
  const dir32 = path.join(root, 'inf-model');
  writeModelFolder(dir32, null, { 'bad.f32': { dtype: 'F32', shape: [50, 40], data: Object.assign(gaussian(11, 2000, 0, 1), { 1999: -Infinity }) } });
  await assert.rejects(scanMoments(dir32, { workers: 1 }), (err: unknown) =>
    err instanceof BadInputError && /non-finite weight -Infinity at element 1999 .*tensor bad\.f32/.test(err.message));
});
