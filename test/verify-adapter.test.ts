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
import { EXIT, IncompatibleModelsError } from '../src/io/errors.js';
import { openTensorSource } from '../src/io/source.js';
import { MergedAdapterReader } from '../src/verify/adapter-reader.js';
import type { VerifyResult } from '../src/verify/types.js';
import { verifyModels, type VerifyOptions } from '../src/verify/verify.js';
import { REPO_ROOT } from './cli-child-process.js';
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
    const result = verifyModels(base, candidate, options);
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
