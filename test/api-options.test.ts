/** The library's options are checked like the CLI's flags: a wrong value is a usage error (exit code 64), named. */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { choiceOption, integerOption, wholeNumberOption } from '../src/api/options.js';
import { EXIT, LineageError, inspect, tree, verify } from '../src/index.js';
import { REPO_ROOT } from './cli-child-process.js';

const sample = (name: string) => path.join(REPO_ROOT, 'samples', name);

/** Rejects with a LineageError of `exitCode` whose message matches `message`. */
async function rejectsWith(call: Promise<unknown>, exitCode: number, message: RegExp): Promise<void> {
  await assert.rejects(call, (err: unknown) => {
    assert.ok(err instanceof LineageError, `not a LineageError: ${String(err)}`);
    assert.equal(err.exitCode, exitCode);
    assert.match(err.message, message);
    return true;
  });
}

test('option checks: numbers as given, flag text as typed, anything else a usage error naming the option', () => {
  assert.equal(wholeNumberOption('workers', 3, 0, 64), 3);
  assert.equal(wholeNumberOption('--workers', '12', 0, 64), 12);
  for (const bad of [-1, 65, 1.5, Number.NaN, '', ' 3', '3x', '-1']) {
    assert.throws(() => wholeNumberOption('--workers', bad, 0, 64), (err: unknown) => err instanceof LineageError && err.exitCode === EXIT.usage && /--workers takes a whole number from 0 to 64/.test(err.message));
  }
  assert.equal(integerOption('--seed', '-7'), -7);
  assert.equal(integerOption('seed', 42), 42);
  assert.throws(() => integerOption('--seed', 'one'), /--seed must be an integer, got one/);
  assert.throws(() => integerOption('seed', 0.5), /seed must be an integer, got 0\.5/);
  assert.equal(choiceOption('method', 'mother', ['default', 'mother'] as const), 'mother');
  assert.throws(() => choiceOption('method', 'nearest', ['default', 'mother'] as const), /method must be one of default, mother, got nearest/);
});

test('the library rejects wrong options and bad inputs with the exit codes the CLI uses', async () => {
  await rejectsWith(verify(sample('p0'), sample('p2'), { workers: -1 }), EXIT.usage, /workers takes a whole number/);
  await rejectsWith(verify(sample('p0'), sample('p2'), { seed: 1.5 }), EXIT.usage, /seed must be an integer/);
  await rejectsWith(verify(sample('p0'), sample('p2'), { adapter: true }), EXIT.badInput, /is not a PEFT adapter/);
  await rejectsWith(tree([sample('p0'), sample('p1')], { method: 'nearest' as 'mother', cache: false }), EXIT.usage, /method must be one of default, mother/);
  await rejectsWith(tree([sample('p0')], { cache: false }), EXIT.usage, /at least two models/);
  await rejectsWith(tree([sample('p0'), sample('p1'), sample('nowhere')], { strict: true, cache: false }), EXIT.strictSkip, /nowhere/);
  await rejectsWith(inspect(sample('nowhere')), EXIT.badInput, /nowhere/);
});

test('warnings reach onWarning, one line each, as the CLI prints them after `warning: `', async () => {
  const warnings: string[] = [];
  const result = await tree([sample('p0'), sample('p1'), sample('README.md')], { cache: false, workers: 0, align: false, onWarning: (w) => warnings.push(w) });
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /^skipped .*README\.md: /);
  assert.deepEqual(result.skipped?.map((s) => path.basename(s.path)), ['README.md']);
});
