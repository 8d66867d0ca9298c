/**
 * GGUF members in the tree (../shared/zoo-gguf beside ../shared/zoo): quantized storage is
 * sketched with its blocks' noise, a quantized copy is an edge of its own kind, and quantized
 * models stay leaves, so a 4-bit model's high noise floor cannot make it a cheap parent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { renderTerminal } from '../src/reports/tree-render.js';
import type { ModelSketch } from '../src/sketch/types.js';
import { quantizationOf } from '../src/tree/sketch-evidence.js';
import type { LineageResult } from '../src/tree/types.js';
import { REPO_ROOT, runLineage } from './cli-child-process.js';

const SHARED = path.join(REPO_ROOT, '..', 'shared');
const present = fs.existsSync(path.join(SHARED, 'zoo-gguf', 'gguf.json')) && fs.existsSync(path.join(SHARED, 'zoo', 'zoo.json'));
if (!present) console.log('# tree-gguf: skipped: ../shared/zoo-gguf or ../shared/zoo is absent');

interface GgufTruth {
  readonly trees: ReadonlyArray<{ readonly models: readonly string[]; readonly edges: ReadonlyArray<readonly [string, string]> }>;
}

test('tree with GGUF members: the zoo-gguf tree exactly (quantized copies, LoRA children through Q4_0 and Q5_1, an F16 full fine-tune)', { skip: !present }, async () => {
  const truth = JSON.parse(fs.readFileSync(path.join(SHARED, 'zoo-gguf', 'gguf.json'), 'utf8')) as GgufTruth;
  for (const expected of truth.trees) {
    const run = await runLineage(['tree', '--json', '--no-cache', '--no-align', '--quiet', ...expected.models.map((m) => path.join(SHARED, 'zoo-gguf', m))]);
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as LineageResult;
    assert.deepEqual(result.edges.map((e) => `${e.parent}->${e.child}`).sort(), expected.edges.map(([p, c]) => `${p}->${c}`).sort());
    const edge = (child: string) => result.edges.find((e) => e.child === child)!;
    assert.deepEqual([edge('p0.Q8_0').kind, edge('p0.Q8_0').rank, edge('p0.Q8_0').quantization], ['quantized', 0, 'Q8_0']);
    assert.match(renderTerminal(result), /p0\.Q8_0 {2}quantized copy \(Q8_0\)/);
    assert.equal(edge('p2.Q8_0').quantization, undefined, 'a LoRA edge names no quantization');
    assert.deepEqual([edge('p1.F16').kind], ['full']);
    assert.deepEqual([edge('p2.Q8_0').kind, edge('p2.Q8_0').rank, edge('p2.Q8_0').modules], ['lora', 8, ['q_proj', 'v_proj']]);
    assert.deepEqual([edge('q2.Q5_1').kind, edge('q2.Q5_1').rank], ['lora', 8]);
    // Through 4-bit blocks the weakest directions of the rank-16 LoRA sink below the noise: never more than the truth.
    const weak = edge('p2a.Q4_0');
    assert.ok(weak.kind === 'lora' && weak.rank! >= 8 && weak.rank! <= 16, `p2a.Q4_0 ${weak.kind} rank ${weak.rank}`);
  }
});

test('tree with GGUF and safetensors members of one family: a quantized model is never the parent of an unquantized one', { skip: !present }, async () => {
  const zoo = (n: string) => path.join(SHARED, 'zoo', n), gguf = (n: string) => path.join(SHARED, 'zoo-gguf', n);
  const run = await runLineage(['tree', '--json', '--no-cache', '--no-align', '--quiet', zoo('p0'), zoo('p2'), zoo('p4'),
    gguf('p0.Q8_0.gguf'), gguf('p2.Q8_0.gguf'), gguf('p1.F16.gguf'), gguf('p2a.Q4_0.gguf'), gguf('p4a.BF16.gguf')]);
  assert.equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout) as LineageResult;
  const parent = (child: string) => result.edges.find((e) => e.child === child)?.parent;
  assert.deepEqual(['p0.Q8_0', 'p1.F16', 'p2', 'p4', 'p2.Q8_0', 'p4a.BF16'].map(parent), ['p0', 'p0', 'p0', 'p0', 'p2', 'p4']);
  for (const e of result.edges) assert.ok(!/Q\d/.test(e.parent) || /Q\d/.test(e.child), `${e.parent} -> ${e.child}`);
});

test('the quantization of a model names its quantized matrix types, the most frequent first', () => {
  const sketch = (types: readonly string[]) => ({ matrices: types.map((storedDtype) => ({ storedDtype })) }) as unknown as ModelSketch;
  assert.equal(quantizationOf(sketch(['BF16', 'F32'])), null);
  assert.equal(quantizationOf(sketch(['Q8_0', 'Q8_0', 'F16'])), 'Q8_0');
  assert.equal(quantizationOf(sketch(['Q6_K', 'Q4_K', 'Q4_K', 'F16', 'Q4_K', 'Q6_K', 'Q5_0', 'Q4_0'])), 'Q4_K+Q6_K+Q4_0+Q5_0');
});
