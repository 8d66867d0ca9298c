/**
 * Siblings of different kinds told from parent and child (verify/direction.ts): a LoRA child as
 * BASE against a full fine-tune of the same root, or against the LoRA grandchild of one (a
 * nephew), reads `related`, though the whole delta's norm growth is above 1/2; every true
 * parent -> child pair stays `derived`. On matrices, on synthetic models (dense changes of 1%, 10%
 * and 30%, with and without fine-tuned norm gains, candidates obfuscated or not) and on the
 * trained zoo (../shared/zoo; skipped with a reason when absent).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { lowRankDelta } from '../src/noise/delta-rank.js';
import { noisyFromValues, type NoisyMatrix } from '../src/noise/noisy-matrix.js';
import { Rng } from '../src/linalg/rng.js';
import { candidateLacksBaseDirections, moduleComponents, summarizeComponents } from '../src/verify/direction.js';
import { timedVerify as verify } from './helpers/timed-verify.js';
import { REPO_ROOT } from './cli-child-process.js';
import { openTensorSource } from '../src/io/source.js';
import {
  addLora, cloneState, fullFineTune, OBFUSCATION_KINDS, obfuscate, randomLlama, writeLlama, type LlamaConfig, type LlamaState,
} from './helpers/synthetic-llama.js';

/** A module's weights with bf16 rounding variance (ulp^2 / 12). */
function noisy(rows: number, cols: number, values: Float64Array): NoisyMatrix {
  return noisyFromValues(rows, cols, values, Float32Array.from(values, (v) => (Math.abs(v) * 2 ** -8) ** 2 / 12));
}

describe('direction by component on one module', () => {
  const m = 128, n = 96, rng = new Rng(5);
  const gaussian = (scale: number) => Float64Array.from({ length: m * n }, () => scale * rng.gaussian());
  /** A rank-4 update of Frobenius norm `norm`. */
  const lowRank = (norm: number) => {
    const out = new Float64Array(m * n);
    for (let t = 0; t < 4; t++) {
      const u = Array.from({ length: m }, () => rng.gaussian()), v = Array.from({ length: n }, () => rng.gaussian());
      for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) out[i * n + j]! += u[i]! * v[j]!;
    }
    const f = norm / Math.sqrt(out.reduce((s, x) => s + x * x, 0));
    return out.map((x) => x * f);
  };
  const root = gaussian(0.02);
  const rootNorm = Math.sqrt(root.reduce((s, x) => s + x * x, 0));
  const lora = lowRank(0.3 * rootNorm), dense = gaussian(0.02 * 0.1), loraB = lowRank(0.3 * rootNorm);
  const sum = (...parts: Float64Array[]) => parts[0]!.map((_, p) => parts.reduce((s, a) => s + a[p]!, 0));
  const read = (b: Float64Array, c: Float64Array) => {
    const x = noisy(m, n, b), y = noisy(m, n, c);
    return summarizeComponents(moduleComponents(x, y, lowRankDelta(x, y, { gauge: { rows: false, cols: false } })));
  };

  test('a LoRA child as BASE, a full fine-tune of its root as CANDIDATE: the spike is BASE\'s (growth ~ -1), the rest added (~ +1)', () => {
    const c = read(sum(root, lora), sum(root, dense));
    assert.ok(c.lowRankGrowth !== null && c.lowRankGrowth < -0.5, `low-rank growth ${c.lowRankGrowth}`);
    assert.ok(c.denseGrowth !== null && c.denseGrowth > 0.5, `dense growth ${c.denseGrowth}`);
    assert.equal(c.lowRankDirections, 4);
    assert.ok(c.lowRankZ < -10, `z ${c.lowRankZ}`);
    assert.equal(candidateLacksBaseDirections(c), true);
  });

  test('the root against its LoRA-then-full grandchild: both parts added, nothing lacked', () => {
    const c = read(root, sum(root, lora, dense));
    assert.ok(c.lowRankGrowth !== null && c.lowRankGrowth > 0.5, `low-rank growth ${c.lowRankGrowth}`);
    assert.ok(Math.abs(c.lowRankZ) < 3.09, `z ${c.lowRankZ}`);
    assert.equal(candidateLacksBaseDirections(c), false);
  });

  test('a nephew (BASE = root + L1, CANDIDATE = root + F + L2): half the spike is BASE\'s, beyond noise', () => {
    const c = read(sum(root, lora), sum(root, dense, loraB));
    assert.equal(c.lowRankDirections, 8);
    assert.ok(c.lowRankGrowth !== null && Math.abs(c.lowRankGrowth) < 0.5, `low-rank growth ${c.lowRankGrowth}`);
    assert.equal(candidateLacksBaseDirections(c), true);
  });
});

const CONFIG: LlamaConfig = { hidden: 64, intermediate: 160, layers: 3, heads: 4, kvHeads: 2, headDim: 16, vocab: 96 };
/** A LoRA strong enough to stand out of a 30% dense change at these widths (weaker ones sink into its bulk). */
const LORA = { rank: 4, targets: ['q_proj', 'v_proj'] as const, scale: 0.3 };

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-verify-siblings-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

/** `state` with the norm gains of `from`: a fine-tune that left them alone. */
function keepNorms(state: LlamaState, from: LlamaState): LlamaState {
  const out = cloneState(state);
  for (const [name, t] of out) if (t.shape.length === 1) t.data.set(from.get(name)!.data);
  return out;
}

for (const rel of [0.01, 0.1, 0.3]) {
  for (const norms of [true, false]) {
    describe(`verify: LoRA and full fine-tune (${rel * 100}% change, norm gains ${norms ? 'fine-tuned' : 'kept'})`, () => {
      const dir = path.join(root, `${rel}-${norms}`);
      const rootState = randomLlama(CONFIG, 31);
      const full = (state: LlamaState, seed: number) => (norms ? fullFineTune(state, rel, seed) : keepNorms(fullFineTune(state, rel, seed), state));
      const loraChild = addLora(rootState, { ...LORA, targets: [...LORA.targets] }, 32).state;
      const fullChild = full(rootState, 33);
      const states: Record<string, LlamaState> = {
        root: rootState, lora: loraChild, full: fullChild,
        loraThenFull: full(loraChild, 34),
        fullThenLora: addLora(fullChild, { ...LORA, targets: [...LORA.targets] }, 35).state,
      };
      const at = (label: string, obfuscated = false): string => {
        const folder = path.join(dir, `${label}${obfuscated ? '-obfuscated' : ''}`);
        if (!fs.existsSync(folder)) {
          const state = obfuscated ? obfuscate(states[label]!, CONFIG, OBFUSCATION_KINDS, 36).state : states[label]!;
          writeLlama(folder, CONFIG, state, 'BF16');
        }
        return folder;
      };
      const expect = (relation: 'related' | 'derived', pairs: ReadonlyArray<readonly [string, string]>, variants = [false, true]) => {
        for (const [a, b] of pairs) {
          for (const obfuscated of variants) {
            const result = verify(`${a} -> ${b}${obfuscated ? ' (obfuscated)' : ''}`, at(a), at(b, obfuscated));
            assert.equal(result.relation, relation, `${a} -> ${b}${obfuscated ? ' (obfuscated)' : ''}: ${result.reason}`);
          }
        }
      };

      test('the LoRA child against the full child and against the full-then-LoRA nephew: related', () => {
        expect('related', [['lora', 'full'], ['lora', 'fullThenLora']]);
      });

      // A dense change alone is read by the whole delta's norm growth, whose noise is about
      // 2 / (rel sqrt(N)) for N changed weights: 0.6 at 1% on these 100k weights (root -> full read
      // 0.25 here before this reading existed); at 1% only pairs with a LoRA are read reliably.
      const denseOnly: ReadonlyArray<readonly [string, string]> = rel < 0.1 ? [] : [['root', 'full'], ['lora', 'loraThenFull']];
      const withDense: ReadonlyArray<readonly [string, string]> = [...denseOnly, ['root', 'loraThenFull'], ['root', 'fullThenLora']];
      // An obfuscated candidate's dense change is read on the norm-folded weights (its stored split
      // of weights and gains is not BASE's), where a fine-tuned gain is a change of its readers
      // with one degree of freedom per residual dimension: gains each changed by rel, as much as
      // the weights, add noise of about 1 / (rel sqrt(width)) per norm, 0.5 over these six norms at
      // 10% (root -> full reads 0.06; 0.17 at 30%; at 1% the LoRA holds most of the change). Trained
      // gains move 0.1-0.5% per dimension against 10-16% for the weights (zoo).
      const gainsBlur = norms && rel === 0.1;
      test('every parent -> child: derived', () => {
        expect('derived', [['root', 'lora'], ['full', 'fullThenLora']]);
        expect('derived', withDense, gainsBlur ? [false] : [false, true]);
      });
      if (gainsBlur) {
        test('every parent -> child with a dense change, obfuscated, gains changed as much as the weights: derived', { todo: 'read folded, the growth carries the gains\' change: 1 / (rel sqrt(width)) per norm' }, () => {
          expect('derived', withDense, [true]);
        });
      }

      // The other order: BASE the full child. At 10% and 30% its growth reads related; at 1% the
      // LoRA's energy is the larger (g ~ 1), its spike added and the dense rest lacked, which a
      // trained full fine-tune's dense rest also reads (zoo p0 -> p1: -1.7): not told apart yet.
      const open = rel < 0.1 ? { todo: 'BASE full, CANDIDATE a stronger LoRA sibling: a lacked dense rest is not yet read' } : {};
      test('the full child against the LoRA child: related', open, () => {
        const result = verify('full -> lora', at('full'), at('lora'));
        assert.equal(result.relation, 'related', result.reason);
      });

      // With the norm gains kept, the growth of a dense change does not move with an obfuscator's
      // scalings (it read ~1.5 whatever the pair when it did). The plain pair is read in the split
      // each model stores, the obfuscated one on the folded weights and the paired lines' products:
      // two readings of one change whose noise differs (about 0.1 at 10%); and the bf16 rounding of
      // the scaled gains is a gain change of about 0.1% per dimension (noise 2e-3 / (rel^2
      // sqrt(width)) per norm: 0.03 at 10%, 3 at 1%, not read here).
      if (rel >= 0.1 && !norms) {
        test('the growth of a dense change reads the same on an obfuscated candidate', () => {
          for (const [a, b] of [['root', 'full'], ['full', 'lora']] as const) {
            const plain = verify(`${a} -> ${b}`, at(a), at(b)).direction.normGrowth;
            const obfuscated = verify(`${a} -> ${b} (obfuscated)`, at(a), at(b, true)).direction.normGrowth;
            assert.ok(Math.abs(plain - obfuscated) < 0.3, `${a} -> ${b}: growth ${plain} plain, ${obfuscated} obfuscated`);
          }
        });
      }

      // Obfuscated, the dense change is read on the norm-folded weights, where the norm scales cancel.
      test('the full child against the obfuscated LoRA child: related', open, () => {
        const result = verify('full -> lora (obfuscated)', at('full'), at('lora', true));
        assert.equal(result.relation, 'related', result.reason);
      });
    });
  }
}

describe('verify: siblings and cousins of different kinds in the zoo', () => {
  const zoo = path.resolve(REPO_ROOT, '..', 'shared', 'zoo');
  if (!fs.existsSync(path.join(zoo, 'zoo.json'))) {
    test('zoo siblings', (t) => t.skip('zoo not found at ../shared/zoo (relative to the repository root)'));
    return;
  }
  // p2 is p0's LoRA child; p4 a full child; p4a p4's LoRA child; p1a the full child of p0's full child p1.
  test('p2 against p4, p4a and p1a: related in both orders', () => {
    for (const other of ['p4', 'p4a', 'p1a']) {
      for (const [a, b] of [['p2', other], [other, 'p2']] as const) {
        const result = verify(`zoo ${a} vs ${b}`, path.join(zoo, a), path.join(zoo, b));
        assert.equal(result.relation, 'related', `${a} -> ${b}: ${result.reason}`);
      }
    }
  });

  // The zoo's obfuscated copies are of LoRA children: its full fine-tunes are obfuscated here
  // with every transform. Their growth is read on the folded weights and the paired lines'
  // products (plain 1.25-1.81, obfuscated 1.36-2.01; siblings p1, p4 at -0.25 and 0.25).
  test('obfuscated full fine-tunes: derived from their parents, related to their siblings', () => {
    const config: LlamaConfig = { hidden: 128, intermediate: 352, layers: 4, heads: 4, kvHeads: 2, headDim: 32, vocab: 256 };
    const obfuscated = (name: string) => {
      const folder = path.join(root, `zoo-${name}-obfuscated`);
      if (!fs.existsSync(folder)) {
        const source = openTensorSource(path.join(zoo, name));
        try {
          const state: LlamaState = new Map([...source.tensors].map(([tensor, info]) => [tensor, { shape: [...info.shape], data: source.read(tensor) }]));
          writeLlama(folder, config, obfuscate(state, config, OBFUSCATION_KINDS, 77).state, 'BF16');
        } finally {
          source.close();
        }
      }
      return folder;
    };
    for (const [a, b, relation] of [['p0', 'p1', 'derived'], ['p1', 'p1a', 'derived'], ['p0', 'p4', 'derived'], ['p4', 'p1', 'related'], ['p1', 'p4', 'related']] as const) {
      const result = verify(`zoo ${a} -> ${b} (obfuscated)`, path.join(zoo, a), obfuscated(b));
      assert.equal(result.relation, relation, `${a} -> ${b} (obfuscated): ${result.reason}`);
    }
  });

  test('full fine-tunes and grandchildren beyond zoo.json\'s pairs: derived, BASE lacking nothing', () => {
    for (const [a, b] of [['p0', 'p4'], ['p1', 'p1a'], ['p0', 'p1a'], ['p0', 'p4a']] as const) {
      const result = verify(`zoo ${a} -> ${b}`, path.join(zoo, a), path.join(zoo, b));
      assert.equal(result.relation, 'derived', `${a} -> ${b}: ${result.reason}`);
      assert.match(result.reason, /BASE has no low-rank directions CANDIDATE lacks/);
    }
  });
});
