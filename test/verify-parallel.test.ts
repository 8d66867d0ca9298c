/**
 * verify with layers analysed in worker threads (parallel.ts) gives exactly the result of the
 * in-thread analysis: same relation, ranks, spectra, transform and p-value, layer by layer.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import type { VerifyResult } from '../src/verify/types.js';
import { verifyModels } from '../src/verify/verify.js';
import { REPO_ROOT } from './cli-child-process.js';
import { withReaders } from './helpers/timed-verify.js';
import { addLora, OBFUSCATION_KINDS, obfuscate, randomLlama, writeLlama, type LlamaConfig } from './helpers/synthetic-llama.js';

const CONFIG: LlamaConfig = { hidden: 64, intermediate: 160, layers: 5, heads: 4, kvHeads: 2, headDim: 16, vocab: 96 };

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-verify-parallel-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

function run(baseDir: string, candidateDir: string, workers: number, residualSampleWidth?: number): Omit<VerifyResult, 'timings'> {
  return withReaders(baseDir, candidateDir, (base, candidate) => {
    const { timings: _timings, ...rest } = verifyModels(base, candidate, { workers, ...(residualSampleWidth ? { residualSampleWidth } : {}) });
    return rest;
  });
}

/** A random base and its LoRA child (rank 3 on q, v, down) under every obfuscation, written as bf16 folders. */
function writeObfuscatedChild(name: string, seed: number): { baseDir: string; candidateDir: string } {
  const base = randomLlama(CONFIG, seed);
  const child = addLora(base, { rank: 3, targets: ['q_proj', 'v_proj', 'down_proj'], scale: 0.1 }, seed + 1).state;
  const candidate = obfuscate(child, CONFIG, OBFUSCATION_KINDS, seed + 2).state;
  const dirs = { baseDir: path.join(root, `base${name}`), candidateDir: path.join(root, `candidate${name}`) };
  writeLlama(dirs.baseDir, CONFIG, base, 'BF16');
  writeLlama(dirs.candidateDir, CONFIG, candidate, 'BF16');
  return dirs;
}

test('obfuscated synthetic LoRA child: 0, 1 and 3 workers agree exactly (5 layers, more than workers)', () => {
  const { baseDir, candidateDir } = writeObfuscatedChild('', 11);
  const inline = run(baseDir, candidateDir, 0);
  assert.equal(inline.relation, 'derived', inline.reason);
  assert.equal(inline.lora?.rank, 3);
  for (const workers of [1, 3]) assert.deepEqual(run(baseDir, candidateDir, workers), inline, `${workers} workers`);
});

test('samples p0 -> o1 (trained, obfuscated): 2 workers agree exactly with none', () => {
  const samples = path.join(REPO_ROOT, 'samples');
  const inline = run(path.join(samples, 'p0'), path.join(samples, 'o1'), 0);
  assert.deepEqual(run(path.join(samples, 'p0'), path.join(samples, 'o1'), 2), inline);
});

test('on a residual sample: layers analysed in 2 workers agree exactly with none', () => {
  const { baseDir, candidateDir } = writeObfuscatedChild('-s', 21);
  const inline = run(baseDir, candidateDir, 0, 32);
  assert.equal(inline.relation, 'derived', inline.reason);
  assert.equal(inline.lora?.rank, 3);
  assert.ok(inline.layers.every((l) => l.residualSample === 32));
  assert.deepEqual(run(baseDir, candidateDir, 2, 32), inline);
});
