/**
 * verify's acceptance on really trained models: every pair of the test zoo's ground truth
 * (../shared/zoo beside the repository; skipped with a reason when absent) and the pairs of the
 * samples/ copies shipped in the repository. A samples pair whose files are byte for byte those
 * of a zoo pair already verified reuses that result rather than computing it twice.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import type { ModuleName, VerifyResult } from '../src/verify/types.js';
import { timedVerify } from './helpers/timed-verify.js';
import { REPO_ROOT } from './cli-child-process.js';
import { MODULES } from './helpers/synthetic-llama.js';

const ZOO = path.resolve(REPO_ROOT, '..', 'shared', 'zoo');
const SAMPLES = path.join(REPO_ROOT, 'samples');

interface Pair {
  readonly base: string;
  readonly candidate: string;
  readonly relation: VerifyResult['relation'];
  /** Absent: not stated by the ground truth; null: no LoRA (e.g. a full fine-tune). */
  readonly lora?: { readonly rank: number; readonly targets: readonly string[] | 'all-linear' } | null;
  readonly note?: string;
}

/** Stacked LoRA merges the zoo states only in a note: p2 (rank 8) then p2a (rank 16), both on q, v. */
const STACKED: Readonly<Record<string, Pair['lora']>> = { 'p0->p2a': { rank: 24, targets: ['q_proj', 'v_proj'] } };

function expectedLora(pair: Pair): Pair['lora'] {
  const stacked = STACKED[`${pair.base}->${pair.candidate}`];
  if (stacked !== undefined) return stacked;
  if (pair.relation !== 'derived') return null;
  return pair.lora;
}

/** sha256 of every file of a folder (names and bytes): equal digests, equal models. */
function folderDigest(dir: string): string {
  const hash = createHash('sha256');
  for (const name of fs.readdirSync(dir).sort()) hash.update(name).update(fs.readFileSync(path.join(dir, name)));
  return hash.digest('hex');
}

const results = new Map<string, VerifyResult>();

/** verifyModels on two folders, once per content: timed and logged. */
function verifyFolders(label: string, baseDir: string, candidateDir: string): VerifyResult {
  const key = `${folderDigest(baseDir)} ${folderDigest(candidateDir)}`;
  const known = results.get(key);
  if (known) {
    console.log(`  ${label}: same bytes as a pair verified above, result reused (${known.relation})`);
    return known;
  }
  const result = timedVerify(label, baseDir, candidateDir);
  results.set(key, result);
  return result;
}

function checkPair(label: string, dir: string, pair: Pair): void {
  const result = verifyFolders(label, path.join(dir, pair.base), path.join(dir, pair.candidate));
  assert.equal(result.relation, pair.relation, result.reason);
  const lora = expectedLora(pair);
  if (lora === undefined) return;
  if (lora === null) {
    assert.equal(result.lora, null, result.reason);
    if (pair.note === 'full fine-tune') assert.equal(result.fullFineTune, true);
    return;
  }
  const targets: readonly ModuleName[] = lora.targets === 'all-linear' ? MODULES : (lora.targets as ModuleName[]);
  assert.ok(result.lora, `no LoRA found: ${result.reason}`);
  assert.equal(result.lora.rank, lora.rank, result.reason);
  assert.deepEqual(result.lora.targets, targets);
  assert.equal(result.fullFineTune, false);
}

/** The samples pairs named in samples/README.md, with truths from samples/truth.json. */
const SAMPLE_PAIRS = ['p0->p2', 'p0->o1', 'p0->p3', 'p0->o3', 'p4->p4a', 'p0->q2', 'p2->p2a'];

describe('verify on the samples/ copies', () => {
  const truth = JSON.parse(fs.readFileSync(path.join(SAMPLES, 'truth.json'), 'utf8')) as { pairs: Pair[] };
  for (const key of SAMPLE_PAIRS) {
    const pair = truth.pairs.find((p) => `${p.base}->${p.candidate}` === key);
    test(`samples ${key}`, () => {
      assert.ok(pair, `samples/truth.json lists ${key}`);
      checkPair(`samples ${key}`, SAMPLES, pair);
    });
  }
});

describe('verify on every pair of the zoo', () => {
  const present = fs.existsSync(path.join(ZOO, 'zoo.json'));
  if (!present) {
    test('zoo pairs', (t) => t.skip('zoo not found at ../shared/zoo (relative to the repository root)'));
    return;
  }
  const zoo = JSON.parse(fs.readFileSync(path.join(ZOO, 'zoo.json'), 'utf8')) as { pairs: Pair[] };
  test('the zoo lists pairs of every relation', () => {
    assert.deepEqual([...new Set(zoo.pairs.map((p) => p.relation))].sort(), ['derived', 'related', 'unrelated']);
  });
  for (const pair of zoo.pairs) {
    const key = `${pair.base}->${pair.candidate}`;
    test(`zoo ${key}: ${pair.relation}${pair.note ? ` (${pair.note})` : ''}`, () => checkPair(`zoo ${key}`, ZOO, pair));
  }
});
