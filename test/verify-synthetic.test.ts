/**
 * verify's acceptance on synthetic Llama checkpoints with known answers: LoRA rank, targets and
 * layers exact through every obfuscation of the test zoo (alone and combined, GQA and MHA), copies,
 * full fine-tunes, siblings, unrelated bases, mixed precision, and the input errors.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { BadInputError, EXIT, IncompatibleModelsError } from '../src/io/errors.js';
import type { VerifyResult } from '../src/verify/types.js';
import { verifyModels, type VerifyOptions } from '../src/verify/verify.js';
import { residualSample } from '../src/align/residual-sample.js';
import { timedVerify, withReaders } from './helpers/timed-verify.js';
import {
  addLora, fullFineTune, inversePermutation, movedCount, OBFUSCATION_KINDS, obfuscate, randomLlama, writeLlama,
  type LlamaConfig, type LlamaState, type LoraAdded, type Module, type ObfuscationApplied, type ObfuscationKind,
} from './helpers/synthetic-llama.js';

const GQA: LlamaConfig = { hidden: 64, intermediate: 160, layers: 3, heads: 4, kvHeads: 2, headDim: 16, vocab: 96 };
const MHA: LlamaConfig = { ...GQA, kvHeads: 4 };

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-verify-synthetic-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

let folders = 0;
/** Write a state to a fresh folder under the temp root. */
function write(config: LlamaConfig, state: LlamaState, dtype: 'BF16' | 'F32' = 'BF16', label = 'model'): string {
  const dir = path.join(root, `${folders++}-${label}`);
  writeLlama(dir, config, state, dtype);
  return dir;
}

/** verifyModels on two folders, timed and logged. */
const verify = timedVerify;

function describeModules(result: VerifyResult): string {
  return result.layers.map((l) => `L${l.layer}: ${l.modules.map((m) => `${m.module}=${m.rank}`).join(' ')}`).join('; ');
}

/** The analysis the layers got: on a residual sample of `width` dimensions in sampled mode, on all of them otherwise. */
function assertAnalysis(result: VerifyResult, width: number | undefined): void {
  for (const layer of result.layers) assert.equal(layer.residualSample, width ?? null, `layer ${layer.layer} analysis`);
}

/** derived, with exactly this LoRA (rank, targets in canonical order, every layer). */
function assertLora(result: VerifyResult, lora: LoraAdded): void {
  assert.equal(result.relation, 'derived', result.reason);
  assert.equal(result.fullFineTune, false, describeModules(result));
  assert.deepEqual(result.lora, { rank: lora.rank, targets: lora.targets, layers: lora.layers, stacked: false }, describeModules(result));
}

/** Expected transform.summary line of each kind (the kind's effect, in verify's words). */
const SUMMARY: Readonly<Record<ObfuscationKind, RegExp>> = {
  perm_residual: /^residual stream permuted/,
  perm_mlp: /^MLP neurons permuted/,
  perm_heads: /^attention heads permuted/,
  scale_norm: /^norm weights rescaled/,
  scale_vo: /^V\/O heads rescaled/,
  scale_qk: /^Q\/K heads rescaled/,
  scale_mlp: /^MLP up\/down rescaled/,
};
const SCALE_SEEN = Math.log(1.05);

/** The transform found is the one applied: exact permutations, scalings seen, nothing else reported. */
function assertTransform(result: VerifyResult, kinds: readonly ObfuscationKind[], applied: ObfuscationApplied): void {
  const t = result.transform;
  const expected = kinds.filter((k) => k !== 'perm_heads' || applied.heads!.queries.some((q) => movedCount(q) > 0));
  for (const kind of OBFUSCATION_KINDS) {
    const lines = t.summary.filter((line) => SUMMARY[kind].test(line));
    assert.equal(lines.length, expected.includes(kind) ? 1 : 0, `${kind} in summary ${JSON.stringify(t.summary)}`);
  }
  assert.equal(t.identity, kinds.length === 0);
  assert.equal(t.residualPermuted, applied.residual ? movedCount(applied.residual) : 0);
  t.layers.forEach((layer, i) => {
    assert.equal(layer.mlpNeuronsPermuted, applied.mlp ? movedCount(applied.mlp[i]!) : 0, `layer ${i} MLP neurons moved`);
    if (applied.heads) {
      // verify reports, per base head, the candidate head playing it: the inverse of the order applied.
      assert.deepEqual(layer.kvGroupOrder, inversePermutation(applied.heads.groups[i]!), `layer ${i} KV groups`);
      assert.deepEqual(layer.queryHeadOrder, inversePermutation(applied.heads.queries[i]!), `layer ${i} query heads`);
    }
  });
  if (kinds.includes('scale_norm')) assert.ok(t.normFoldingMaxLogScale > SCALE_SEEN, `norm folding ${t.normFoldingMaxLogScale}`);
  if (kinds.includes('scale_vo')) assert.ok(t.layers.every((l) => l.voScaleMaxLog > SCALE_SEEN), 'V/O scale in every layer');
  if (kinds.includes('scale_qk')) assert.ok(t.layers.every((l) => l.qkScaleMaxLog > SCALE_SEEN), 'Q/K scale in every layer');
  if (kinds.includes('scale_mlp')) assert.ok(t.layers.every((l) => l.mlpScaleMaxLog > SCALE_SEEN), 'MLP scale in every layer');
}

/**
 * Every case runs twice: on all residual dimensions (these widths are below the residual sample
 * width) and on a sample of half of them, the analysis wide models get.
 */
const MODES: ReadonlyArray<{ readonly label: string; readonly options: VerifyOptions }> = [
  { label: '', options: {} },
  { label: ' (on a residual sample of 32)', options: { residualSampleWidth: 32 } },
];

for (const mode of MODES) {
  describe(`verify: LoRA of known rank, stored bf16${mode.label}`, () => {
    const base = randomLlama(GQA, 11);
    const baseDir = write(GQA, base, 'BF16', 'base');
    const cases: { rank: number; targets: Module[]; layers?: number[] }[] = [
      { rank: 3, targets: ['q_proj', 'v_proj'] },
      { rank: 5, targets: ['v_proj', 'o_proj'] },
      { rank: 2, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] },
      { rank: 4, targets: ['down_proj', 'gate_proj'], layers: [0, 2] },
    ];
    cases.forEach((spec, i) => {
      test(`rank ${spec.rank} on ${spec.targets.join(',')}${spec.layers ? ` in layers ${spec.layers}` : ''}`, () => {
        const lora = addLora(base, { ...spec, scale: 0.1 }, 100 + i);
        const result = verify(`rank ${spec.rank}`, baseDir, write(GQA, lora.state), mode.options);
        assertLora(result, lora);
        assertAnalysis(result, mode.options.residualSampleWidth);
        assert.equal(result.transform.identity, true);
        for (const layer of result.layers) {
          for (const m of layer.modules) {
            const changed = lora.layers.includes(layer.layer) && lora.targets.includes(m.module);
            assert.equal(m.status, changed ? 'low-rank' : 'unchanged', `layer ${layer.layer} ${m.module}`);
            assert.equal(m.rank, changed ? spec.rank : 0, `layer ${layer.layer} ${m.module}`);
          }
        }
      });
    });
  });

  for (const [name, config, spec] of [
    ['GQA 4/2 heads', GQA, { rank: 3, targets: ['q_proj', 'v_proj'] }],
    ['MHA 4/4 heads', MHA, { rank: 5, targets: ['v_proj', 'o_proj'] }],
  ] as const) {
    describe(`verify through obfuscations of a LoRA child, ${name}${mode.label}`, () => {
      const base = randomLlama(config, 21);
      const baseDir = write(config, base, 'BF16', 'base');
      const lora = addLora(base, { ...spec, targets: [...spec.targets], scale: 0.1 }, 22);
      const kindSets: ObfuscationKind[][] = [...OBFUSCATION_KINDS.map((k) => [k]), [...OBFUSCATION_KINDS]];
      kindSets.forEach((kinds, i) => {
        const label = kinds.length === 1 ? kinds[0]! : 'all combined';
        test(label, () => {
          const obfuscated = obfuscate(lora.state, config, kinds, 300 + i);
          const result = verify(`${name} ${label}`, baseDir, write(config, obfuscated.state), mode.options);
          assertLora(result, lora);
          assertAnalysis(result, mode.options.residualSampleWidth);
          assertTransform(result, kinds, obfuscated.applied);
        });
      });
    });
  }

  describe(`verify: other children${mode.label}`, () => {
    const base = randomLlama(GQA, 31);
    const baseDir = write(GQA, base, 'BF16', 'base');

    test('rank 2 on all seven modules, all obfuscations combined', () => {
      const lora = addLora(base, { rank: 2, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], scale: 0.1 }, 32);
      const obfuscated = obfuscate(lora.state, GQA, OBFUSCATION_KINDS, 33);
      const result = verify('all seven, obfuscated', baseDir, write(GQA, obfuscated.state), mode.options);
      assertLora(result, lora);
      assertTransform(result, OBFUSCATION_KINDS, obfuscated.applied);
    });

    test('an obfuscated copy without fine-tune: derived, no LoRA, every module unchanged', () => {
      const obfuscated = obfuscate(base, GQA, OBFUSCATION_KINDS, 34);
      const result = verify('obfuscated copy', baseDir, write(GQA, obfuscated.state), mode.options);
      assert.equal(result.relation, 'derived', result.reason);
      assert.equal(result.lora, null);
      assert.equal(result.fullFineTune, false);
      for (const layer of result.layers) for (const m of layer.modules) assert.equal(m.status, 'unchanged', `layer ${layer.layer} ${m.module}`);
      assertTransform(result, OBFUSCATION_KINDS, obfuscated.applied);
    });

    test('a plain copy: derived, identity, every module unchanged', () => {
      const result = verify('plain copy', baseDir, write(GQA, base), mode.options);
      assert.equal(result.relation, 'derived', result.reason);
      assert.equal(result.lora, null);
      assert.equal(result.transform.identity, true);
      for (const layer of result.layers) for (const m of layer.modules) assert.equal(m.status, 'unchanged');
    });

    test('full fine-tune of the weight matrices: derived, fullFineTune, no LoRA', () => {
      const child = fullFineTune(base, 0.05, 35);
      for (const [name, t] of child) if (t.shape.length === 1) t.data.set(base.get(name)!.data);
      const result = verify('full fine-tune (matrices)', baseDir, write(GQA, child), mode.options);
      assert.equal(result.relation, 'derived', result.reason);
      assert.equal(result.fullFineTune, true);
      assert.equal(result.lora, null);
      assert.ok(result.layers.every((l) => l.modules.every((m) => m.status === 'full')), describeModules(result));
    });

    test('full fine-tunes including the norm weights: derived, fullFineTune, no LoRA', () => {
      for (const rel of [0.02, 0.05]) {
        for (const seed of [37]) {
          const result = verify(`full fine-tune (with norms) ${rel} #${seed}`, baseDir, write(GQA, fullFineTune(base, rel, seed)), mode.options);
          assert.equal(result.relation, 'derived', `${rel} #${seed}: ${result.reason}`);
          assert.equal(result.fullFineTune, true);
          assert.equal(result.lora, null);
        }
      }
    });

    test('siblings (two full fine-tunes of one base): related', () => {
      const matricesOnly = (seed: number) => {
        const child = fullFineTune(base, 0.05, seed);
        for (const [name, t] of child) if (t.shape.length === 1) t.data.set(base.get(name)!.data);
        return write(GQA, child);
      };
      const result = verify('siblings', matricesOnly(37), matricesOnly(38), mode.options);
      assert.equal(result.relation, 'related', result.reason);
      assert.equal(result.lora, null);
    });

    test('mixed precision: base stored F32, LoRA child stored BF16: exact rank', () => {
      const lora = addLora(base, { rank: 3, targets: ['q_proj', 'v_proj'], scale: 0.1 }, 39);
      const result = verify('F32 base, BF16 child', write(GQA, base, 'F32'), write(GQA, lora.state, 'BF16'), mode.options);
      assertLora(result, lora);
      assertAnalysis(result, mode.options.residualSampleWidth);
      // Norms, the final one too, are compared on the common grid: rounding is no rescaling.
      assert.equal(result.transform.normFoldingMaxLogScale, 0);
    });

    test('mixed precision: base stored BF16, LoRA child stored F32: exact rank', () => {
      const lora = addLora(base, { rank: 3, targets: ['q_proj', 'v_proj'], scale: 0.1 }, 40);
      const result = verify('BF16 base, F32 child', baseDir, write(GQA, lora.state, 'F32'), mode.options);
      assertLora(result, lora);
    });
  });

  describe(`verify: unrelated and incompatible models, bad input${mode.label}`, () => {
    for (const [seedA, seedB] of [[141, 142], [143, 144], [145, 146]] as const) {
      test(`independent random bases (seeds ${seedA}, ${seedB}): unrelated, p > 0.01`, () => {
        const result = verify(`unrelated ${seedA}/${seedB}`, write(GQA, randomLlama(GQA, seedA)), write(GQA, randomLlama(GQA, seedB)), mode.options);
        assert.equal(result.relation, 'unrelated', result.reason);
        assert.ok(result.pValue > 0.01, `p = ${result.pValue}`);
        assert.equal(result.lora, null);
      });
    }

    test('independent bases, one obfuscated: unrelated', () => {
      const other = obfuscate(randomLlama(GQA, 48), GQA, ['perm_residual', 'perm_mlp'], 49).state;
      const result = verify('unrelated, obfuscated', write(GQA, randomLlama(GQA, 47)), write(GQA, other), mode.options);
      assert.equal(result.relation, 'unrelated', result.reason);
      assert.ok(result.pValue > 0.01, `p = ${result.pValue}`);
    });

    const baseDir = write(GQA, randomLlama(GQA, 51), 'BF16', 'base');
    for (const [label, config] of [
      ['different hidden size', { ...GQA, hidden: 96, heads: 6, kvHeads: 3 }],
      ['different layer count', { ...GQA, layers: 2 }],
    ] as const) {
      test(`${label}: IncompatibleModelsError, exit code 3`, () => {
        const otherDir = write(config, randomLlama(config, 52));
        for (const [a, b] of [[baseDir, otherDir], [otherDir, baseDir]] as const) {
          withReaders(a, b, (base, candidate) => {
            assert.throws(() => verifyModels(base, candidate, mode.options), (err: unknown) => {
              assert.ok(err instanceof IncompatibleModelsError, String(err));
              assert.equal(err.exitCode, EXIT.incompatible);
              assert.equal(err.exitCode, 3);
              return true;
            });
          });
        }
      });
    }

    test('NaN in a weight: BadInputError naming the file and the tensor', () => {
      const state = randomLlama(GQA, 51);
      const tensorName = 'model.layers.1.self_attn.v_proj.weight';
      // A column the analysis reads in both modes: the sampled analysis decodes only its sample.
      const column = mode.options.residualSampleWidth ? residualSample(GQA.hidden, 1, mode.options.residualSampleWidth)![3]! : 17;
      state.get(tensorName)!.data[2 * GQA.hidden + column] = Number.NaN;
      const nanDir = write(GQA, state, 'BF16', 'nan');
      const file = path.join(nanDir, 'model.safetensors');
      withReaders(baseDir, nanDir, (base, candidate) => {
        assert.throws(() => verifyModels(base, candidate, mode.options), (err: unknown) => {
          assert.ok(err instanceof BadInputError, String(err));
          assert.equal(err.exitCode, EXIT.badInput);
          assert.equal(err.tensor, tensorName);
          assert.equal(err.file, file);
          assert.ok(err.message.includes(tensorName) && err.message.includes(file), err.message);
          return true;
        });
      });
    });
  });
}
