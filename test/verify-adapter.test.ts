/**
 * verify with a PEFT adapter as the candidate, merged lazily onto BASE (MergedAdapterReader):
 * the zoo's real adapters, a synthetic adapter of known rank, and adapters that do not fit.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { SourceRoleReader } from '../src/arch/reader.js';
import { BadInputError, EXIT, IncompatibleModelsError } from '../src/io/errors.js';
import { openTensorSource } from '../src/io/source.js';
import { MergedAdapterReader } from '../src/arch/adapter-reader.js';
import type { VerifyResult } from '../src/verify/types.js';
import { declaredAdapterBase, verifyModels, type VerifyOptions } from '../src/verify/verify.js';
import { REPO_ROOT, runLineage } from './cli-child-process.js';
import { writeSafetensors } from './helpers/safetensors-writer.js';
import { addLora, randomLlama, writeAdapter, writeLlama, type LlamaConfig } from './helpers/synthetic-llama.js';

const ZOO = path.resolve(REPO_ROOT, '..', 'shared', 'zoo');
const SAMPLES = path.join(REPO_ROOT, 'samples');
const CONFIG: LlamaConfig = { hidden: 64, intermediate: 160, layers: 3, heads: 4, kvHeads: 2, headDim: 16, vocab: 96 };

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-verify-adapter-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

/** verify BASE against BASE + adapter, timed and logged. */
function verifyAdapter(label: string, baseDir: string, adapterDir: string, options: VerifyOptions = {}): VerifyResult {
  const base = SourceRoleReader.open(baseDir);
  const started = performance.now();
  let candidate: MergedAdapterReader | null = null;
  try {
    candidate = new MergedAdapterReader(base, openTensorSource(adapterDir));
    const result = verifyModels(base, candidate, options, { candidate: { rank: null, targets: [], declaredBase: candidate.summary().baseModel } });
    const lora = result.lora ? `rank ${result.lora.rank} on ${result.lora.targets.join(',')}` : 'no LoRA';
    console.log(`  ${label}: ${result.relation}, ${lora}, ${((performance.now() - started) / 1000).toFixed(2)} s`);
    return result;
  } finally {
    candidate?.close();
    base.close();
  }
}

function assertLora(result: VerifyResult, rank: number, targets: readonly string[], layers: readonly number[]): void {
  assert.equal(result.relation, 'derived', result.reason);
  assert.equal(result.fullFineTune, false);
  assert.deepEqual(result.lora, { rank, targets, layers, stacked: false }, result.reason);
}

describe('verify: trained PEFT adapters merged onto their base', () => {
  test('p2-adapter on p0 (samples/, the zoo\'s bytes): derived, rank 8 on q, v', () => {
    assertLora(verifyAdapter('p2-adapter on p0', path.join(SAMPLES, 'p0'), path.join(SAMPLES, 'p2-adapter')), 8, ['q_proj', 'v_proj'], [0, 1, 2, 3]);
  });

  test('zoo p2-adapter on p0 and p2a-adapter on p2: rank 8, then rank 16, on q, v', (t) => {
    if (!fs.existsSync(path.join(ZOO, 'zoo.json'))) {
      t.skip('zoo not found at ../shared/zoo (relative to the repository root)');
      return;
    }
    assertLora(verifyAdapter('zoo p2-adapter on p0', path.join(ZOO, 'p0'), path.join(ZOO, 'p2-adapter')), 8, ['q_proj', 'v_proj'], [0, 1, 2, 3]);
    assertLora(verifyAdapter('zoo p2a-adapter on p2', path.join(ZOO, 'p2'), path.join(ZOO, 'p2a-adapter')), 16, ['q_proj', 'v_proj'], [0, 1, 2, 3]);
  });
});

describe('verify: synthetic adapters', () => {
  const base = randomLlama(CONFIG, 61);
  const baseDir = path.join(root, 'base');
  writeLlama(baseDir, CONFIG, base, 'BF16');

  for (const [label, spec] of [
    ['rank 6 on q, v, o, down', { rank: 6, targets: ['q_proj', 'v_proj', 'o_proj', 'down_proj'] }],
    ['rank 3 on gate, up in layer 1 only', { rank: 3, targets: ['gate_proj', 'up_proj'], layers: [1] }],
  ] as const) {
    test(`${label}: derived, exact rank, targets and layers`, () => {
      const lora = addLora(base, { ...spec, targets: [...spec.targets], layers: 'layers' in spec ? [...spec.layers] : undefined, scale: 0.1 }, 62);
      const adapterDir = path.join(root, `adapter-${lora.rank}`);
      writeAdapter(adapterDir, lora, 'base');
      assertLora(verifyAdapter(`synthetic ${label}`, baseDir, adapterDir), lora.rank, lora.targets, lora.layers);
      // On a residual sample, the adapter is merged on the sampled part of each weight only.
      const sampled = verifyAdapter(`synthetic ${label}, on a residual sample of 32`, baseDir, adapterDir, { residualSampleWidth: 32 });
      assertLora(sampled, lora.rank, lora.targets, lora.layers);
      assert.ok(sampled.layers.every((l) => l.residualSample === 32));
    });
  }

  for (const [label, config] of [
    ['an adapter for a wider model', { ...CONFIG, hidden: 96, heads: 6, kvHeads: 3 }],
    ['an adapter for a deeper model', { ...CONFIG, layers: 4 }],
  ] as const) {
    test(`${label}: IncompatibleModelsError, exit code 3`, () => {
      const lora = addLora(randomLlama(config, 63), { rank: 2, targets: ['q_proj', 'v_proj'], scale: 0.1 }, 64);
      const adapterDir = path.join(root, `misfit-${config.hidden}-${config.layers}`);
      writeAdapter(adapterDir, lora, 'other');
      assert.throws(() => verifyAdapter(label, baseDir, adapterDir), (err: unknown) => {
        assert.ok(err instanceof IncompatibleModelsError, String(err));
        assert.equal(err.exitCode, EXIT.incompatible);
        return true;
      });
    });
  }
});

describe('verify: what an adapter verdict rests on', () => {
  const base = randomLlama(CONFIG, 71);
  const baseDir = path.join(root, 'claimed-base');
  writeLlama(baseDir, CONFIG, base, 'BF16');
  const otherDir = path.join(root, 'other-base');
  writeLlama(otherDir, CONFIG, randomLlama(CONFIG, 72), 'BF16');
  const lora = addLora(base, { rank: 4, targets: ['q_proj', 'v_proj'], scale: 0.1 }, 73);
  const adapterDir = path.join(root, 'adapter-declared');
  writeAdapter(adapterDir, lora, 'some-org/claimed-base');

  test('the declared base is reported against BASE, and the reason says the relation assumes the adapter applied to BASE', () => {
    const onTrue = verifyAdapter('adapter on its declared base', baseDir, adapterDir);
    assert.deepEqual(onTrue.adapterBase, { declared: 'some-org/claimed-base', matchesBase: true });
    assert.match(onTrue.reason, /assumes the adapter is applied to BASE/);
    assert.match(onTrue.reason, /which is BASE/);
    // Merged onto any base of the right shapes an adapter reads as derived: the JSON says the declared base is another.
    const onOther = verifyAdapter('adapter on an unrelated base', otherDir, adapterDir);
    assert.deepEqual(onOther.adapterBase, { declared: 'some-org/claimed-base', matchesBase: false });
    assert.match(onOther.reason, /assumes the adapter is applied to BASE.*which is not BASE/);
  });

  test('declaredAdapterBase: last path component, case-insensitive; nothing declared gives null', () => {
    assert.deepEqual(declaredAdapterBase('meta-llama/Llama-2-7b-hf/', 'llama-2-7b-hf'), { declared: 'meta-llama/Llama-2-7b-hf/', matchesBase: true });
    assert.deepEqual(declaredAdapterBase('C:\\models\\p0', 'p0'), { declared: 'C:\\models\\p0', matchesBase: true });
    assert.deepEqual(declaredAdapterBase('p0', 'p00'), { declared: 'p0', matchesBase: false });
    assert.deepEqual(declaredAdapterBase(null, 'p0'), { declared: null, matchesBase: null });
    assert.deepEqual(declaredAdapterBase('  ', 'p0'), { declared: null, matchesBase: null });
  });

  test('the CLI warns when the declared base is not BASE, and prints adapterBase in --json', async () => {
    const run = await runLineage(['verify', otherDir, adapterDir, '--json', '--workers', '0', '--quiet']);
    assert.equal(run.code, EXIT.ok, run.stderr);
    assert.deepEqual((JSON.parse(run.stdout) as VerifyResult).adapterBase, { declared: 'some-org/claimed-base', matchesBase: false });
    assert.match(run.stderr, /^warning: adapter adapter-declared declares base "some-org\/claimed-base", not other-base/m);
  });

  test('an adapter with no LoRA factors: BadInputError (exit 2) naming the adapter, not "a copy"', async () => {
    const emptyDir = path.join(root, 'adapter-empty');
    fs.mkdirSync(emptyDir, { recursive: true });
    writeSafetensors(path.join(emptyDir, 'adapter_model.safetensors'), {
      'base_model.model.model.norm.weight': { dtype: 'F32', shape: [CONFIG.hidden], data: new Float32Array(CONFIG.hidden).fill(1) },
    }, undefined, 'F32');
    fs.writeFileSync(path.join(emptyDir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 4, lora_alpha: 8, target_modules: ['q_proj'], base_model_name_or_path: 'claimed-base' }));
    assert.throws(() => verifyAdapter('empty adapter', baseDir, emptyDir), (err: unknown) => {
      assert.ok(err instanceof BadInputError, String(err));
      assert.equal(err.exitCode, EXIT.badInput);
      assert.match(err.message, /adapter-empty has no LoRA factors/);
      return true;
    });
    const run = await runLineage(['verify', baseDir, emptyDir, '--quiet']);
    assert.equal(run.code, EXIT.badInput);
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /^error: adapter adapter-empty has no LoRA factors.*\n$/);
  });

  test('a full model given to --adapter: exit 2 with one line, not "DERIVED, a copy"', async () => {
    const run = await runLineage(['verify', baseDir, '--adapter', otherDir, '--quiet']);
    assert.equal(run.code, EXIT.badInput);
    assert.equal(run.stdout, '');
    const lines = run.stderr.split('\n').filter(Boolean);
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0]!, /^error: --adapter other-base is not a PEFT adapter/);
  });
});
