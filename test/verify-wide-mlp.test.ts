/**
 * verify with more MLP neurons than the dense assignment takes (intermediate 2112 > DENSE_LIMIT),
 * so neurons are matched through hashed candidates: a LoRA child obfuscated every way still gives
 * its exact rank, targets and neuron permutation, and an unrelated base stays unrelated.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { DENSE_LIMIT } from '../src/align/matching.js';
import { UNRELATED_P } from '../src/verify/verify.js';
import { timedVerify } from './helpers/timed-verify.js';
import { addLora, fullFineTune, movedCount, OBFUSCATION_KINDS, obfuscate, randomLlama, writeLlama, type LlamaConfig } from './helpers/synthetic-llama.js';

const WIDE: LlamaConfig = { hidden: 64, intermediate: 2112, layers: 2, heads: 4, kvHeads: 2, headDim: 16, vocab: 96 };

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-verify-wide-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

describe('verify past the dense neuron-matching limit', () => {
  assert.ok(WIDE.intermediate > DENSE_LIMIT, 'the case must take the hashed path');
  const base = randomLlama(WIDE, 41);
  const baseDir = path.join(root, 'base');
  writeLlama(baseDir, WIDE, base, 'BF16');

  test('LoRA rank 3 on the MLP and q, all obfuscations combined: exact rank, targets and neuron order', () => {
    const lora = addLora(base, { rank: 3, targets: ['q_proj', 'gate_proj', 'up_proj', 'down_proj'], scale: 0.1 }, 42);
    const obfuscated = obfuscate(lora.state, WIDE, OBFUSCATION_KINDS, 43);
    const dir = path.join(root, 'child');
    writeLlama(dir, WIDE, obfuscated.state, 'BF16');
    const result = timedVerify('wide MLP, obfuscated LoRA child', baseDir, dir);
    assert.equal(result.relation, 'derived', result.reason);
    assert.deepEqual(result.lora, { rank: 3, targets: lora.targets, layers: lora.layers, stacked: false });
    result.transform.layers.forEach((layer, i) => assert.equal(layer.mlpNeuronsPermuted, movedCount(obfuscated.applied.mlp![i]!)));
    assert.ok(result.independence.perLayer.every((l) => l.spearman > 0.99), JSON.stringify(result.independence.perLayer));
  });

  test('siblings (two full fine-tunes of the base, one with its neurons and residual permuted): related', () => {
    // Each sibling moves 50% of every weight's RMS: their neurons correlate at about 0.8, too
    // weakly for most to share the first round's hash keys (the shorter keys of later rounds find them).
    const first = path.join(root, 'sibling-1'), second = path.join(root, 'sibling-2');
    writeLlama(first, WIDE, fullFineTune(base, 0.5, 45), 'BF16');
    writeLlama(second, WIDE, obfuscate(fullFineTune(base, 0.5, 46), WIDE, ['perm_residual', 'perm_mlp'], 47).state, 'BF16');
    const result = timedVerify('wide MLP, siblings', first, second);
    assert.equal(result.relation, 'related', result.reason);
    assert.ok(result.independence.perLayer.every((l) => l.spearman > 0.5), JSON.stringify(result.independence.perLayer));
  });

  test('an independently initialised model is unrelated', () => {
    const dir = path.join(root, 'other');
    writeLlama(dir, WIDE, randomLlama(WIDE, 44), 'BF16');
    const result = timedVerify('wide MLP, unrelated', baseDir, dir);
    assert.equal(result.relation, 'unrelated', result.reason);
    assert.ok(result.pValue > UNRELATED_P);
  });
});
