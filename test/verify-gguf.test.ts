/**
 * verify through quantization: synthetic Llama models written as llama.cpp writes them (Q8_0 and
 * Q4_0, q/k rows permuted) against their safetensors bases, either side quantized, obfuscated too;
 * and every pair of ../shared/zoo-gguf/gguf.json (skipped with a reason when absent).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import type { VerifyResult } from '../src/verify/types.js';
import { timedVerify } from './helpers/timed-verify.js';
import { REPO_ROOT } from './cli-child-process.js';
import { writeLlamaGguf } from './helpers/gguf-writer.js';
import { addLora, obfuscate, randomLlama, writeLlama, type LlamaConfig } from './helpers/synthetic-llama.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-verify-gguf-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

function describeModules(result: VerifyResult): string {
  return result.layers.map((l) => `L${l.layer}: ${l.modules.map((m) => `${m.module}=${m.rank}(${(m.singularValues[0] ?? 0).toFixed(2)})`).join(' ')}`).join('; ');
}

describe('verify through GGUF quantization (synthetic)', () => {
  const config: LlamaConfig = { hidden: 64, intermediate: 160, layers: 3, heads: 4, kvHeads: 2, headDim: 16, vocab: 96 };
  const base = randomLlama(config, 21);
  const baseDir = path.join(root, 'base');
  writeLlama(baseDir, config, base, 'BF16');
  const lora = addLora(base, { rank: 4, targets: ['q_proj', 'v_proj'], scale: 0.1 }, 5);

  test('a model against its own Q8_0 copy: a quantized copy, every module unchanged beyond the floor', () => {
    const file = path.join(root, 'copy.Q8_0.gguf');
    writeLlamaGguf(file, config, base, 'Q8_0');
    const result = timedVerify('copy Q8_0', baseDir, file);
    assert.equal(result.relation, 'derived', result.reason);
    assert.equal(result.lora, null, describeModules(result));
    assert.equal(result.fullFineTune, false, describeModules(result));
    assert.match(result.reason, /a quantized copy \(Q8_0\)/);
    assert.ok(result.layers.every((l) => l.modules.every((m) => m.status === 'unchanged')), describeModules(result));
    assert.equal(result.quantization?.base, null);
    assert.deepEqual(result.quantization?.candidate, { fileType: 'Q8_0', tensorTypes: { F32: 7, Q8_0: 23 }, quantized: true });
  });

  // The LoRA (0.1 of each weight's norm) is weaker than Q4_0's rounding noise: without the gauge
  // fit's noise correction its direction read as siblings (norm growth -0.02).
  for (const type of ['Q8_0', 'Q4_0']) {
    test(`a LoRA child stored as ${type}: the rank where it stands above the floor, never more`, () => {
      const file = path.join(root, `lora.${type}.gguf`);
      writeLlamaGguf(file, config, lora.state, type);
      const result = timedVerify(`lora ${type}`, baseDir, file);
      assert.equal(result.relation, 'derived', result.reason);
      assert.ok(result.direction.normGrowth > 0.5, `norm growth ${result.direction.normGrowth}`);
      assert.equal(result.fullFineTune, false, describeModules(result));
      assert.ok(result.lora, describeModules(result));
      assert.deepEqual(result.lora.targets, ['q_proj', 'v_proj'], describeModules(result));
      assert.ok(result.lora.rank <= 4, describeModules(result));
      if (result.lora.rank < 4) assert.equal(result.lora.rankIsLowerBound, true, describeModules(result));
      if (type === 'Q8_0') assert.equal(result.lora.rank, 4, describeModules(result));
    });
  }

  test('on a residual sample (as wide models are read): the Q8_0 LoRA child and the Q8_0 copy', () => {
    const child = path.join(root, 'lora.Q8_0.sampled.gguf'), copy = path.join(root, 'copy.Q8_0.sampled.gguf');
    writeLlamaGguf(child, config, lora.state, 'Q8_0');
    writeLlamaGguf(copy, config, base, 'Q8_0');
    const derived = timedVerify('lora Q8_0 sampled', baseDir, child, { residualSampleWidth: 32 });
    assert.equal(derived.layers[0]!.residualSample, 32);
    assert.equal(derived.relation, 'derived', derived.reason);
    assert.equal(derived.lora?.rank, 4, describeModules(derived));
    assert.deepEqual(derived.lora?.targets, ['q_proj', 'v_proj']);
    const same = timedVerify('copy Q8_0 sampled', baseDir, copy, { residualSampleWidth: 32 });
    assert.equal(same.lora, null, describeModules(same));
    assert.match(same.reason, /a quantized copy \(Q8_0\)/);
  });

  test('a quantized BASE against a safetensors CANDIDATE', () => {
    const file = path.join(root, 'base.Q8_0.gguf');
    writeLlamaGguf(file, config, base, 'Q8_0');
    const child = path.join(root, 'child');
    writeLlama(child, config, lora.state, 'BF16');
    const result = timedVerify('quantized base', file, child);
    assert.equal(result.relation, 'derived', result.reason);
    assert.equal(result.lora?.rank, 4, describeModules(result));
    assert.deepEqual(result.lora?.targets, ['q_proj', 'v_proj']);
    assert.equal(result.quantization?.base?.fileType, 'Q8_0');
  });

  test('an obfuscated LoRA child stored as Q8_0 is aligned like any other', () => {
    const { state } = obfuscate(lora.state, config, ['perm_residual', 'perm_heads', 'scale_mlp'], 9);
    const file = path.join(root, 'obfuscated.Q8_0.gguf');
    writeLlamaGguf(file, config, state, 'Q8_0');
    const result = timedVerify('obfuscated Q8_0', baseDir, file);
    assert.equal(result.relation, 'derived', result.reason);
    assert.equal(result.lora?.rank, 4, describeModules(result));
    assert.ok(!result.transform.identity, result.transform.summary.join('; '));
  });
});

describe('verify through a Q4_K_M mix (synthetic, K blocks of 256)', () => {
  const config: LlamaConfig = { hidden: 256, intermediate: 512, layers: 2, heads: 8, kvHeads: 4, headDim: 32, vocab: 64 };
  const base = randomLlama(config, 31);
  const baseDir = path.join(root, 'k-base');
  writeLlama(baseDir, config, base, 'BF16');
  // As llama-quantize's Q4_K_M: Q6_K for attn_v and output, Q4_K for the rest.
  const mix = (name: string) => (/attn_v|^output\./.test(name) ? 'Q6_K' : 'Q4_K');

  test('a Q4_K_M copy is a quantized copy', () => {
    const file = path.join(root, 'k-copy.Q4_K_M.gguf');
    writeLlamaGguf(file, config, base, mix);
    const result = timedVerify('copy Q4_K_M', baseDir, file);
    assert.equal(result.relation, 'derived', result.reason);
    assert.equal(result.lora, null, describeModules(result));
    assert.equal(result.fullFineTune, false, describeModules(result));
    assert.match(result.reason, /a quantized copy \(Q4_K_M\)/);
    assert.deepEqual(result.quantization?.candidate?.tensorTypes, { F32: 5, Q4_K: 13, Q6_K: 3 });
  });

  test('a LoRA rank 8 child as Q4_K_M: derived, q and v, the rank never above 8', () => {
    const child = addLora(base, { rank: 8, targets: ['q_proj', 'v_proj'], scale: 0.1 }, 13);
    const file = path.join(root, 'k-lora.Q4_K_M.gguf');
    writeLlamaGguf(file, config, child.state, mix);
    const result = timedVerify('lora Q4_K_M', baseDir, file);
    assert.equal(result.relation, 'derived', result.reason);
    assert.equal(result.fullFineTune, false, describeModules(result));
    assert.deepEqual(result.lora?.targets, ['q_proj', 'v_proj'], describeModules(result));
    assert.ok(result.lora!.rank <= 8, describeModules(result));
    if (result.lora!.rank < 8) assert.equal(result.lora!.rankIsLowerBound, true, describeModules(result));
  });
});

const ZOO_GGUF = path.resolve(REPO_ROOT, '..', 'shared', 'zoo-gguf');

interface GgufPair {
  readonly base: string;
  readonly candidate: string;
  readonly relation: VerifyResult['relation'];
  readonly lora?: { readonly rank: number; readonly targets: readonly string[]; readonly lowerBoundAllowed?: boolean } | null;
  readonly fullFineTune?: boolean;
  readonly note?: string;
}

describe('verify on the GGUF test set (../shared/zoo-gguf)', () => {
  const truthFile = path.join(ZOO_GGUF, 'gguf.json');
  if (!fs.existsSync(truthFile)) {
    test('zoo-gguf pairs', (t) => t.skip('GGUF test set not found at ../shared/zoo-gguf (relative to the repository root)'));
    return;
  }
  const pairs = (JSON.parse(fs.readFileSync(truthFile, 'utf8')) as { pairs: GgufPair[] }).pairs;
  for (const pair of pairs) {
    test(`${pair.base} -> ${pair.candidate}: ${pair.relation}${pair.note ? ` (${pair.note})` : ''}`, () => {
      const result = timedVerify(`${pair.base} -> ${pair.candidate}`, path.join(ZOO_GGUF, pair.base), path.join(ZOO_GGUF, pair.candidate));
      assert.equal(result.relation, pair.relation, `${result.reason}; ${describeModules(result)}`);
      if (pair.fullFineTune !== undefined) assert.equal(result.fullFineTune, pair.fullFineTune, describeModules(result));
      if (pair.lora === null) assert.equal(result.lora, null, describeModules(result));
      if (pair.lora) {
        assert.ok(result.lora, `${result.reason}; ${describeModules(result)}`);
        assert.deepEqual(result.lora.targets, pair.lora.targets, describeModules(result));
        if (pair.lora.lowerBoundAllowed && result.lora.rank !== pair.lora.rank) {
          assert.ok(result.lora.rank < pair.lora.rank, `rank ${result.lora.rank} above the truth ${pair.lora.rank}`);
          assert.equal(result.lora.rankIsLowerBound, true, describeModules(result));
        } else {
          assert.equal(result.lora.rank, pair.lora.rank, describeModules(result));
        }
      }
      if (pair.relation === 'derived' && pair.lora === null && pair.fullFineTune === false) assert.match(result.reason, /a quantized copy \(/);
    });
  }
});
