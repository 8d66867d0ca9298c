/**
 * GGUF members in the tree (../shared/zoo-gguf beside ../shared/zoo): quantized storage is
 * sketched with its blocks' noise, a quantized copy is an edge of its own kind, and quantized
 * models stay leaves, so a 4-bit model's high noise floor cannot make it a cheap parent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { LineageResult } from '../src/tree/types.js';
import { REPO_ROOT, runLineage } from './cli-child-process.js';

const SHARED = path.join(REPO_ROOT, '..', 'shared');
const present = fs.existsSync(path.join(SHARED, 'zoo-gguf', 'gguf.json')) && fs.existsSync(path.join(SHARED, 'zoo', 'zoo.json'));
if (!present) console.log('# tree-gguf: skipped: ../shared/zoo-gguf or ../shared/zoo is absent');

test('tree with GGUF members: quantized copies, LoRA children through Q4_0 and Q5_1, an F16 full fine-tune, each where the truth puts it', { skip: !present }, async () => {
  const zoo = (n: string) => path.join(SHARED, 'zoo', n), gguf = (n: string) => path.join(SHARED, 'zoo-gguf', n);
  const run = await runLineage(['tree', '--json', '--no-cache', '--no-align', '--quiet', zoo('p0'), zoo('p2'), zoo('p4'), zoo('q0'),
    gguf('p0.Q8_0.gguf'), gguf('p2.Q8_0.gguf'), gguf('p1.F16.gguf'), gguf('p2a.Q4_0.gguf'), gguf('q2.Q5_1.gguf'), gguf('p4a.BF16.gguf')]);
  assert.equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout) as LineageResult;
  const edges = result.edges.map((e) => `${e.parent}->${e.child} ${e.kind}${e.kind === 'lora' ? ` ${e.modules.join(',')}` : ''}`).sort();
  assert.deepEqual(edges, [
    'p0->p0.Q8_0 quantized', 'p0->p1.F16 full', 'p0->p2 lora q_proj,v_proj', 'p0->p4 full',
    'p2->p2.Q8_0 quantized', 'p2->p2a.Q4_0 lora q_proj,v_proj', 'p4->p4a.BF16 lora o_proj,v_proj', 'q0->q2.Q5_1 lora q_proj,v_proj',
  ]);
  const rank = (child: string) => result.edges.find((e) => e.child === child)!.rank;
  assert.equal(rank('p2.Q8_0'), 0);
  assert.equal(rank('q2.Q5_1'), 8);
  assert.equal(rank('p4a.BF16'), 8);
  // Through 4-bit blocks the weakest directions of the rank-16 LoRA sink below the noise: never more than the truth.
  assert.ok(rank('p2a.Q4_0')! >= 8 && rank('p2a.Q4_0')! <= 16, `p2a.Q4_0 rank ${rank('p2a.Q4_0')}`);
  assert.equal(result.trees.length, 2);
});
