/**
 * Degenerate weights must not fake a shared origin: an all-zero model, a model whose MLP weights
 * are all equal and a 50%-pruned model (zeroed neurons) are never `related` or `derived` to an
 * unrelated model; the pruned model is still `derived` from its true parent. Tied rows (zero,
 * constant, repeated) carry no evidence and are left out of the matched-neuron test, which says
 * how many neurons it used.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { BadInputError, EXIT } from '../src/io/errors.js';
import { Rng } from '../src/linalg/rng.js';
import { timedVerify as verify } from './helpers/timed-verify.js';
import { cloneState, pruneNeurons, randomLlama, tensorName, writeLlama, type LlamaConfig, type LlamaState } from './helpers/synthetic-llama.js';

const GQA: LlamaConfig = { hidden: 64, intermediate: 160, layers: 3, heads: 4, kvHeads: 2, headDim: 16, vocab: 96 };

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-verify-degenerate-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

let folders = 0;
function write(state: LlamaState, label: string): string {
  const dir = path.join(root, `${folders++}-${label}`);
  writeLlama(dir, GQA, state, 'BF16');
  return dir;
}

/** Every tensor of `state` set to `value` (norm gains too: an all-zero model is zero everywhere). */
function filled(state: LlamaState, value: number, only: (name: string) => boolean = () => true): LlamaState {
  const out = cloneState(state);
  for (const [name, t] of out) if (only(name)) t.data.fill(value);
  return out;
}

const isMlp = (name: string) => /\.mlp\./.test(name);

const parent = randomLlama(GQA, 61);
const parentDir = write(parent, 'p');
const unrelatedDir = write(randomLlama(GQA, 62), 'q');

function assertNoSharedOrigin(result: ReturnType<typeof verify>): void {
  assert.ok(result.relation === 'unrelated' || result.relation === 'inconclusive', `${result.relation}: ${result.reason}`);
  assert.equal(result.lora, null);
}

describe('verify: degenerate weights carry no evidence of a shared origin', () => {
  const zeroDir = write(filled(parent, 0), 'zero');
  for (const [label, other] of [['p', parentDir], ['q', unrelatedDir]] as const) {
    for (const order of ['as candidate', 'as base'] as const) {
      test(`an all-zero model ${order} against ${label}: inconclusive, no informative neuron`, () => {
        const result = order === 'as candidate' ? verify(`zero vs ${label}`, other, zeroDir) : verify(`${label} vs zero`, zeroDir, other);
        assertNoSharedOrigin(result);
        assert.equal(result.relation, 'inconclusive', result.reason);
        assert.equal(result.independence.rowsUsed, 0);
        assert.equal(result.independence.layersTested, 0);
        assert.match(result.reason, /informative/);
      });
    }
  }

  test('a model whose MLP weights are all equal, against an unrelated model: inconclusive', () => {
    const constantDir = write(filled(randomLlama(GQA, 63), 0.01, isMlp), 'constant-mlp');
    for (const result of [verify('q vs constant MLP', unrelatedDir, constantDir), verify('constant MLP vs q', constantDir, unrelatedDir)]) {
      assertNoSharedOrigin(result);
      assert.equal(result.relation, 'inconclusive', result.reason);
      assert.equal(result.independence.rowsUsed, 0);
    }
  });

  const prunedChild = pruneNeurons(parent, GQA, 0.5, 64);
  const prunedDir = write(prunedChild.state, 'pruned');

  test('a 50%-pruned model against an unrelated model: never related or derived', () => {
    for (const result of [verify('q vs pruned', unrelatedDir, prunedDir), verify('pruned vs q', prunedDir, unrelatedDir)]) {
      assertNoSharedOrigin(result);
      // The pruned neurons are left out: at most the kept ones can be used.
      for (const layer of result.independence.perLayer) assert.ok(layer.rowsUsed <= GQA.intermediate - prunedChild.perLayer, JSON.stringify(layer));
    }
  });

  test('a 50%-pruned model against its true parent: derived, its pruning named', () => {
    const result = verify('p vs pruned', parentDir, prunedDir);
    assert.equal(result.relation, 'derived', result.reason);
    assert.ok(result.pValue < 1e-10, `p = ${result.pValue}`);
    // The kept neurons are the evidence: every one of them is used, no pruned one.
    for (const layer of result.independence.perLayer) assert.equal(layer.rowsUsed, GQA.intermediate - prunedChild.perLayer, JSON.stringify(layer));
    assert.match(result.reason, /pruned/);
  });

  test('its parent against the 50%-pruned model: related, the parent does not descend from it', () => {
    const result = verify('pruned vs p', prunedDir, parentDir);
    assert.equal(result.relation, 'related', result.reason);
    assert.match(result.reason, /BASE looks derived from CANDIDATE/);
  });
});

describe('verify: huge finite weights are refused, never read as unchanged', () => {
  test('a q_proj filled with the largest bf16 value: BadInputError (exit 2) naming file and tensor, in either role', () => {
    const huge = cloneState(parent);
    const name = tensorName(1, 'q_proj');
    huge.get(name)!.data.fill(3.3895313892515355e38);
    const hugeDir = write(huge, 'huge');
    for (const [a, b] of [[parentDir, hugeDir], [hugeDir, parentDir]] as const) {
      assert.throws(() => verify('huge q_proj', a, b), (err: unknown) => {
        assert.ok(err instanceof BadInputError, String(err));
        assert.equal(err.exitCode, EXIT.badInput);
        assert.equal(err.tensor, name);
        assert.equal(err.file, path.join(hugeDir, 'model.safetensors'));
        assert.match(err.message, /weight too large/);
        return true;
      });
    }
  });
});
