/**
 * Layer memory reused from layer to layer (BufferPool) changes nothing but speed: the pool hands
 * back what it was given, within its bound; a weight read or widened into garbage-filled reused
 * memory equals a fresh one; and verify gives exactly the same result with and without the pool,
 * in this thread and in workers.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { noisyFromWeight } from '../src/noise/noisy-matrix.js';
import type { Weight } from '../src/arch/types.js';
import { BufferPool } from '../src/verify/buffer-pool.js';
import type { VerifyResult } from '../src/verify/types.js';
import { verifyModels, type VerifyOptions } from '../src/verify/verify.js';
import { withReaders } from './helpers/timed-verify.js';
import { addLora, OBFUSCATION_KINDS, obfuscate, randomLlama, writeLlama, type LlamaConfig } from './helpers/synthetic-llama.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-verify-buffer-pool-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

test('BufferPool: a released buffer is handed out again for the same byte length, once, within maxBytes', () => {
  const pool = new BufferPool(64);
  const a = pool.float64(4);
  const b = pool.float32(8);
  assert.equal(pool.allocated, 2);
  pool.release([a.buffer, a.buffer, b.buffer, undefined]);
  assert.equal(pool.bytesHeld, 64);
  const c = pool.float32(8); // 32 bytes: either buffer fits
  const d = pool.float64(4);
  assert.equal(pool.reused, 2);
  assert.equal(pool.allocated, 2);
  assert.notEqual(c.buffer, d.buffer);
  assert.deepEqual(new Set([c.buffer, d.buffer]), new Set([a.buffer, b.buffer]));
  assert.notEqual(pool.float64(4).buffer, c.buffer, 'an empty pool allocates');
  // Beyond maxBytes a buffer is dropped, not kept.
  pool.release([c.buffer, d.buffer, new ArrayBuffer(16)]);
  assert.equal(pool.bytesHeld, 64);
  const other = pool.float32(4);
  assert.equal(other.length, 4);
  assert.equal(other.buffer.byteLength, 32, 'the 16-byte buffer was not kept: a larger one serves');
  assert.equal(pool.allocated, 3);
});

test('BufferPool: without a buffer of the byte length, the smallest larger one serves, as a view of its start', () => {
  const pool = new BufferPool(Infinity);
  const buffers = [pool.float64(100), pool.float64(10), pool.float64(40)].map((a) => a.buffer);
  pool.release(buffers);
  const a = pool.float32(30); // 120 bytes: the 320-byte buffer is the smallest that holds it
  assert.equal(a.buffer, buffers[2]);
  assert.equal(a.length, 30);
  assert.equal(a.byteOffset, 0);
  assert.equal(pool.float64(10).buffer, buffers[1], 'an exact fit first');
  assert.equal(pool.float64(50).buffer, buffers[0]);
  assert.equal(pool.bytesHeld, 0);
  assert.equal(pool.float64(1).length, 1, 'nothing left: a fresh one');
  assert.equal(pool.allocated, 4);
  pool.release([a.buffer]);
  assert.equal(pool.bytesHeld, 320, 'a buffer comes back whole');
});

test('noisyFromWeight into reused garbage-filled memory equals a fresh widening, with and without rounding', () => {
  const n = 10_000; // more than one rounding block
  const data = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 2 ** ((i % 40) - 20));
  const weight: Weight = { rows: 100, cols: 100, data, dtype: 'F32', tensor: 't', file: 'f' };
  for (const roundTo of [null, 'BF16'] as const) {
    const fresh = noisyFromWeight(weight, roundTo);
    const pool = new BufferPool(Infinity);
    const garbage = [pool.float64(n), pool.float32(n)] as const;
    garbage[0].fill(NaN);
    garbage[1].fill(-1);
    pool.release([garbage[0].buffer, garbage[1].buffer]);
    const reused = noisyFromWeight(weight, roundTo, pool);
    assert.equal(pool.reused, 2);
    assert.equal(reused.values.buffer, garbage[0].buffer);
    assert.deepEqual(reused.values, fresh.values, `values, rounding to ${roundTo}`);
    assert.deepEqual(reused.variance, fresh.variance, `variance, rounding to ${roundTo}`);
  }
});

const CONFIG: LlamaConfig = { hidden: 64, intermediate: 160, layers: 4, heads: 4, kvHeads: 2, headDim: 16, vocab: 96 };

function run(baseDir: string, candidateDir: string, options: VerifyOptions): Omit<VerifyResult, 'timings'> {
  return withReaders(baseDir, candidateDir, (base, candidate) => {
    const { timings: _timings, ...rest } = verifyModels(base, candidate, options);
    return rest;
  });
}

test('verify of an obfuscated LoRA child (f32 base, bf16 child): same result with and without the pool, 0 and 2 workers', () => {
  const base = randomLlama(CONFIG, 21);
  const child = addLora(base, { rank: 2, targets: ['k_proj', 'o_proj', 'up_proj'], scale: 0.1 }, 22).state;
  const candidate = obfuscate(child, CONFIG, OBFUSCATION_KINDS, 23).state;
  const baseDir = path.join(root, 'base'), candidateDir = path.join(root, 'candidate');
  writeLlama(baseDir, CONFIG, base, 'F32');
  writeLlama(candidateDir, CONFIG, candidate, 'BF16');
  const fresh = run(baseDir, candidateDir, { buffers: null });
  assert.equal(fresh.relation, 'derived', fresh.reason);
  assert.equal(fresh.lora?.rank, 2);
  for (const workers of [0, 2]) {
    const pool = new BufferPool(Infinity);
    assert.deepEqual(run(baseDir, candidateDir, { workers, buffers: pool }), fresh, `${workers} workers`);
    // Each analyst holds one job (half a layer) and the calling thread reads one ahead: at most
    // analysts + 1 jobs' decodes are in use at once (4 or 3 modules of 2 models), so no more
    // than analysts + 1 layers' worth (7 modules of 2 models) are ever allocated, and later
    // jobs refill them. In this thread the analysis arrays come from the same pool too.
    const freshLayers = Math.max(1, workers) + 1;
    if (workers > 0) assert.ok(pool.allocated <= freshLayers * 14, `${workers} workers: ${pool.allocated} allocated`);
    assert.ok(pool.reused >= (CONFIG.layers - freshLayers) * 14, `${workers} workers: ${pool.reused} reused`);
    assert.deepEqual(run(baseDir, candidateDir, { workers }), fresh, `${workers} workers, default pool`);
  }
});
