/**
 * The README's promise on hostile input, kept as child processes run it: every malformed input is
 * one `error:` line and its documented exit code; never an internal error (exit 1), a hang, or a
 * control character that could forge a line or drive the terminal, on stdout or stderr.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EXIT } from '../src/io/errors.js';
import { REPO_ROOT, runLineage, type CliRun } from './cli-child-process.js';
import { buildHostileCorpus, readSafetensorsParts, type Command, type HostileCase } from './helpers/hostile-corpus.js';

const SAMPLES = path.join(REPO_ROOT, 'samples');
/** A run still going after this is a hang (the slowest case takes about 2 s on a quiet machine). */
const TIME_LIMIT_MS = 60_000;
/** Control characters other than the line feed that ends lines. */
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029]/;

function argsFor(command: Command, c: HostileCase, cacheDir: string): string[] {
  switch (command) {
    case 'inspect': return ['inspect', c.path];
    case 'verify': return ['verify', path.join(SAMPLES, 'p0'), c.path, '--quiet', '--workers', '0'];
    // --strict: an unusable input is an error (exit 4) rather than a skipped one beside the forest of the rest.
    case 'tree': return ['tree', c.path, path.join(SAMPLES, 'p1'), '--strict', '--quiet', '--cache', cacheDir];
  }
}

/** What is wrong with one run, or null. */
function problem(run: CliRun, expected: number): string | null {
  if (run.timedOut) return `no answer within ${TIME_LIMIT_MS / 1000} s (hang)`;
  if (run.code !== expected) return `exit ${run.code}, expected ${expected}: ${run.stderr.slice(0, 300)}`;
  if (CONTROL.test(run.stdout)) return `control character on stdout: ${JSON.stringify(run.stdout.slice(0, 300))}`;
  if (CONTROL.test(run.stderr)) return `control character on stderr: ${JSON.stringify(run.stderr.slice(0, 300))}`;
  if (expected !== 0) {
    if (run.stdout !== '') return `output besides the error: ${JSON.stringify(run.stdout.slice(0, 200))}`;
    if (!/^error: [^\n]+\n$/.test(run.stderr)) return `not exactly one error line: ${JSON.stringify(run.stderr.slice(0, 300))}`;
  }
  return null;
}

/** Run `jobs` two at a time (the machines this runs on have few cores). */
async function inPairs<T>(jobs: ReadonlyArray<() => Promise<T>>): Promise<T[]> {
  const results: T[] = new Array(jobs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]!();
    }
  };
  await Promise.all([worker(), worker()]);
  return results;
}

test('hostile corpus: inspect, verify and tree give one error line and the documented code, never exit 1, a hang or a control character', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-hostile-'));
  try {
    const cases = buildHostileCorpus(SAMPLES, path.join(root, 'corpus'));
    const cacheDir = path.join(root, 'cache');
    const runs = cases.flatMap((c) => (['inspect', 'verify', 'tree'] as const).map((command) => ({ c, command })));
    const results = await inPairs(runs.map(({ c, command }) => () => runLineage(argsFor(command, c, cacheDir), { timeoutMs: TIME_LIMIT_MS })));
    const failures = runs.flatMap(({ c, command }, i) => {
      const p = problem(results[i]!, command === 'tree' && c.expect.tree === EXIT.badInput ? EXIT.strictSkip : c.expect[command]);
      return p ? [`${command} ${JSON.stringify(c.name)}: ${p}`] : [];
    });
    assert.deepEqual(failures, [], failures.join('\n'));
    assert.ok(cases.length >= 30, `${cases.length} cases`);
    // A forged name reaches the output escaped, not dropped.
    const forged = runs.findIndex(({ c, command }) => c.name === 'forged-tensor-name-extra' && command === 'inspect');
    assert.match(results[forged]!.stdout, /vision\.extrax\\nerror: forged line\\u001b\[2J/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('command line: usage errors are one line and exit 64; conflicting output formats and a single tree model are usage errors; a cache path that is a file is exit 2', async () => {
  const p0 = path.join(SAMPLES, 'p0'), p1 = path.join(SAMPLES, 'p1');
  for (const args of [['tree', p0], ['tree', p0, p1, '--json', '--dot'], ['tree', p0, p1, '--dot', '--mermaid'], ['inspect', '--bogus', p0],
    ['verify', p0], ['no-such-command\n\u001b[31m'], ['verify', p0, p1, '--seed', 'x\ny']]) {
    const run = await runLineage(args, { timeoutMs: TIME_LIMIT_MS });
    assert.equal(problem(run, 64), null, `${args.join(' ')}: ${problem(run, 64)}`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-cache-file-'));
  try {
    const file = path.join(dir, 'not-a-folder');
    fs.writeFileSync(file, 'x');
    const run = await runLineage(['tree', p0, p1, '--quiet', '--cache', file], { timeoutMs: TIME_LIMIT_MS });
    assert.equal(problem(run, 2), null, problem(run, 2) ?? '');
    assert.match(run.stderr, /cache path is not a folder/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('tree: after an in-place edit of a cached model (same size and header), the cached run answers as the --no-cache run', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-stale-cache-'));
  try {
    for (const name of ['p0', 'p2']) fs.cpSync(path.join(SAMPLES, name), path.join(dir, name), { recursive: true });
    const models = [path.join(dir, 'p0'), path.join(dir, 'p2')];
    const tree = async (...flags: string[]) => {
      const run = await runLineage(['tree', ...models, '--json', '--quiet', ...flags], { timeoutMs: TIME_LIMIT_MS, cwd: dir });
      assert.equal(run.code, 0, run.stderr);
      return JSON.parse(run.stdout) as unknown;
    };
    const before = await tree('--cache', 'cache');
    // Layer 2's q and v of the child replaced by the parent's, in place: the same size and header.
    const child = readSafetensorsParts(path.join(dir, 'p2', 'model.safetensors'));
    const parent = readSafetensorsParts(path.join(dir, 'p0', 'model.safetensors'));
    const offsets = (parts: typeof child, tensor: string) => (parts.header.find(([n]) => n === tensor)![1] as { data_offsets: [number, number] }).data_offsets;
    const headerBytes = fs.statSync(path.join(dir, 'p2', 'model.safetensors')).size - child.payload.length;
    const fd = fs.openSync(path.join(dir, 'p2', 'model.safetensors'), 'r+');
    for (const module of ['q_proj', 'v_proj']) {
      const tensor = `model.layers.2.self_attn.${module}.weight`;
      const [begin, end] = offsets(parent, tensor);
      fs.writeSync(fd, parent.payload.subarray(begin, end), 0, end - begin, headerBytes + offsets(child, tensor)[0]);
    }
    fs.closeSync(fd);
    const cached = await tree('--cache', 'cache');
    const uncached = await tree('--no-cache');
    assert.deepEqual(cached, uncached);
    assert.notDeepEqual(uncached, before, 'the edit changes the answer');
    assert.deepEqual(await tree('--cache', 'cache', '--rehash'), uncached);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
