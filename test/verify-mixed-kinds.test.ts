/**
 * Children of different kinds: a LoRA child and a full fine-tune of one root are siblings
 * (`related` in both orders), while a full fine-tune on top of a LoRA child and a LoRA on top of a
 * full fine-tune stay `derived` from their parent and from the root. The nephew pair's whole-change
 * growth is above 1/2; its direction by component tells it (README, Direction; verify/direction.ts).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { timedVerify as verify } from './helpers/timed-verify.js';
import { addLora, fullFineTune, randomLlama, writeLlama, type LlamaConfig, type LlamaState } from './helpers/synthetic-llama.js';

const GQA: LlamaConfig = { hidden: 64, intermediate: 160, layers: 3, heads: 4, kvHeads: 2, headDim: 16, vocab: 96 };

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-verify-mixed-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

function write(state: LlamaState, label: string): string {
  const dir = path.join(root, label);
  writeLlama(dir, GQA, state, 'BF16');
  return dir;
}

describe('verify: LoRA and full fine-tune children of one root', () => {
  const rootState = randomLlama(GQA, 91);
  const lora = addLora(rootState, { rank: 8, targets: ['q_proj', 'v_proj'], scale: 0.1 }, 92);
  const full = fullFineTune(rootState, 0.05, 93);
  const dirs = {
    root: write(rootState, 'root'),
    lora: write(lora.state, 'lora'),
    full: write(full, 'full'),
    loraThenFull: write(fullFineTune(lora.state, 0.05, 94), 'lora-then-full'),
    fullThenLora: write(addLora(full, { rank: 8, targets: ['q_proj', 'v_proj'], scale: 0.1 }, 95).state, 'full-then-lora'),
  };

  test('a LoRA child and a full fine-tune of the same root: related in both orders', () => {
    for (const [a, b] of [['lora', 'full'], ['full', 'lora']] as const) {
      const result = verify(`${a} vs ${b}`, dirs[a], dirs[b]);
      assert.equal(result.relation, 'related', `${a} -> ${b}: ${result.reason}`);
    }
  });

  test('a full fine-tune on top of a LoRA child, and a LoRA on top of a full fine-tune: derived from parent and root', () => {
    for (const [a, b] of [['lora', 'loraThenFull'], ['root', 'loraThenFull'], ['full', 'fullThenLora'], ['root', 'fullThenLora']] as const) {
      const result = verify(`${a} -> ${b}`, dirs[a], dirs[b]);
      assert.equal(result.relation, 'derived', `${a} -> ${b}: ${result.reason}`);
    }
    // LoRA on top of the full fine-tune: exactly the adapter, against the full fine-tune.
    const onFull = verify('full -> fullThenLora (rank)', dirs.full, dirs.fullThenLora);
    assert.deepEqual(onFull.lora && { rank: onFull.lora.rank, targets: onFull.lora.targets }, { rank: 8, targets: ['q_proj', 'v_proj'] });
  });

  test('the two grandchildren of different kinds, and the LoRA-then-full grandchild against the full child: related', () => {
    for (const [a, b] of [['loraThenFull', 'fullThenLora'], ['fullThenLora', 'loraThenFull'], ['full', 'loraThenFull']] as const) {
      const result = verify(`${a} vs ${b}`, dirs[a], dirs[b]);
      assert.equal(result.relation, 'related', `${a} -> ${b}: ${result.reason}`);
    }
  });

  // The norm growth over the whole change is just above 1/2 here (0.58), the LoRA child's own
  // low-rank update shrinking inside the grandchild's dense one: the low-rank part reads BASE's.
  test('the LoRA child against the full-then-LoRA grandchild (a nephew): related', () => {
    const result = verify('lora vs fullThenLora', dirs.lora, dirs.fullThenLora);
    assert.equal(result.relation, 'related', result.reason);
  });
});
