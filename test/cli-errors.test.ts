import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BadInputError, EXIT, IncompatibleModelsError } from '../src/io/errors.js';
import { describeFailure, runCli, type CliStreams } from '../src/cli/run.js';
import { REPO_ROOT, runLineage } from './cli-child-process.js';

function capture(): CliStreams & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, stdout: { write: (t: string) => out.push(t) }, stderr: { write: (t: string) => err.push(t) } };
}

test('a missing path exits 2 with one error line and no stack trace', async () => {
  const run = await runLineage(['inspect', path.join(os.tmpdir(), 'lineage-no-such-model-folder')]);
  assert.equal(run.code, EXIT.badInput);
  assert.equal(run.stdout, '');
  assert.match(run.stderr, /^error: no such file or folder .*lineage-no-such-model-folder\)\n$/);
});

test('a malformed safetensors file exits 2 with one error line and no stack trace', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-cli-'));
  try {
    const header = Buffer.alloc(8);
    header.writeBigUInt64LE(12n);
    fs.writeFileSync(path.join(dir, 'model.safetensors'), Buffer.concat([header, Buffer.from('{"a": [1, 2')]));
    const run = await runLineage(['inspect', dir]);
    assert.equal(run.code, EXIT.badInput);
    const lines = run.stderr.split('\n').filter(Boolean);
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0]!, /^error: .*model\.safetensors/);
    assert.doesNotMatch(run.stderr, /\n\s+at /);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('usage errors exit 64; --help and --version exit 0', async () => {
  const unknown = await runLineage(['inspect', '--no-such-option', 'x']);
  assert.equal(unknown.code, EXIT.usage);
  assert.match(unknown.stderr, /^error: unknown option '--no-such-option'/);
  assert.equal((await runLineage(['inspect'])).code, EXIT.usage);
  assert.equal((await runLineage(['no-such-command'])).code, EXIT.usage);
  assert.equal((await runLineage([])).code, EXIT.usage);
  const help = await runLineage(['--help']);
  assert.equal(help.code, EXIT.ok);
  assert.match(help.stdout, /inspect \[options\] <path>/);
  const version = await runLineage(['--version']);
  assert.equal(version.code, EXIT.ok);
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal(version.stdout.trim(), pkg.version);
});

test('runCli maps lineage errors to their exit codes and anything else to internal error 1', async () => {
  const failing = (err: unknown) => (program: import('commander').Command) => {
    program.command('fail').action(() => {
      throw err;
    });
  };
  const incompatible = capture();
  assert.equal(await runCli(['fail'], [failing(new IncompatibleModelsError('hidden size differs: 128 vs 256'))], incompatible), EXIT.incompatible);
  assert.deepEqual(incompatible.err, ['error: hidden size differs: 128 vs 256\n']);
  const bug = capture();
  assert.equal(await runCli(['fail'], [failing(new TypeError('x is undefined'))], bug), EXIT.internal);
  assert.match(bug.err.join(''), /^internal error: TypeError: x is undefined/);
  assert.deepEqual(describeFailure(new BadInputError('bad', { tensor: 't' })), { exitCode: EXIT.badInput, message: 'error: bad (tensor t)' });
  const ok = capture();
  const hello = (program: import('commander').Command) => void program.command('hello').action(() => void ok.stdout.write('hi\n'));
  assert.equal(await runCli(['hello'], [hello], ok), EXIT.ok);
  assert.deepEqual(ok.out, ['hi\n']);
});

test('an internal error quoting file text keeps it on one escaped line above the stack frames', () => {
  const { exitCode, message } = describeFailure(new TypeError('bad name x\nerror: forged\u001b[31m'));
  assert.equal(exitCode, EXIT.internal);
  const lines = message!.split('\n');
  assert.equal(lines[0], 'internal error: TypeError: bad name x\\nerror: forged\\u001b[31m');
  assert.ok(lines.slice(1, -1).every((l) => /^\s+at /.test(l)), message!);
  assert.doesNotMatch(message!, /\u001b/);
});
