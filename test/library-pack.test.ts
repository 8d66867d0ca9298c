/**
 * The library as a user gets it: `npm pack` (what the tarball holds), installed into an empty
 * project, imported as `model-lineage`; the README's example runs there, the three functions
 * resolve to the objects the CLI's `--json` prints on the sample models, and the type
 * declarations compile against a user's TypeScript.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT, runLineage } from './cli-child-process.js';

const npmVersion = spawnSync('npm', ['--version'], { encoding: 'utf8' });
const NO_NPM = npmVersion.status === 0 ? null : `npm is not available (${npmVersion.error?.message ?? npmVersion.stderr.trim()})`;

function run(command: string, args: readonly string[], cwd: string): SpawnSyncReturns<string> {
  return spawnSync(command, [...args], { cwd, encoding: 'utf8', timeout: 120_000 });
}

function mustRun(command: string, args: readonly string[], cwd: string): string {
  const r = run(command, args, cwd);
  assert.equal(r.status, 0, `${command} ${args.join(' ')} failed: ${r.error?.message ?? ''}${r.stderr}`);
  return r.stdout;
}

/** The README's library example (the code block after its marker comment). */
function readmeExample(): string {
  const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const match = /<!-- library-example[^\n]*-->\n```js\n([\s\S]*?)```/.exec(readme);
  assert.ok(match, 'README.md has no library example after its <!-- library-example --> marker');
  return match[1]!;
}

/**
 * Runs inside the user's project: each call's result, whether it survives a JSON round trip
 * unchanged (so it is exactly the object `--json` prints, no undefined or NaN inside), and the
 * progress a verify reported.
 */
const COMPARE_SCRIPT = `
import { isDeepStrictEqual } from 'node:util';
import { inspect, tree, verify, LineageError, BadInputError } from 'model-lineage';
const exact = (value) => ({ value, roundTrips: isDeepStrictEqual(value, JSON.parse(JSON.stringify(value))) });
const progress = [];
const out = {
  inspect: exact(await inspect('samples/p2-adapter')),
  verify: exact(await verify('samples/p0', 'samples/p2', { workers: 0, onProgress: (p) => progress.push(p) })),
  adapter: exact(await verify('samples/p0', 'samples/p2-adapter', { workers: 0, adapter: true })),
  tree: exact(await tree(['samples/p0', 'samples/p2', 'samples/o1', 'samples/q0', 'samples/q2', 'samples/p2-adapter'],
    { cache: false, workers: 0, truth: 'samples/truth.json' })),
  progress,
};
try {
  await verify('samples/p0', 'samples/p2', { adapter: true });
  out.error = null;
} catch (err) {
  out.error = { lineage: err instanceof LineageError, badInput: err instanceof BadInputError, exitCode: err.exitCode };
}
console.log(JSON.stringify(out));
`;

/** What a TypeScript user writes; the ts-expect-error lines prove the options are typed. */
const TYPES_CHECK = `
import { inspect, tree, verify, LineageError, type InspectReport, type Progress, type TreeResult, type VerifyResult } from 'model-lineage';
const seen: Progress[] = [];
const v: VerifyResult = await verify('a', 'b', { seed: 2, workers: 0, onProgress: (p) => void seen.push(p), onWarning: (m: string) => void m });
const relation: 'derived' | 'related' | 'unrelated' | 'inconclusive' = v.relation;
const t: TreeResult = await tree(['a', 'b'], { cache: false, method: 'mother', align: false, truth: 'truth.json' });
const accuracy: number | undefined = t.score?.edgeAccuracy;
const i: InspectReport = await inspect('a');
const code: number = new LineageError('x').exitCode;
// @ts-expect-error: no such option
await verify('a', 'b', { seeds: 1 });
// @ts-expect-error: not a method
await tree(['a'], { method: 'nearest' });
export { relation, accuracy, i, code };
`;

interface PackageLock {
  packages: Record<string, { dev?: true; link?: true }>;
}

/**
 * Install the tarball into the empty `project` without the network; returns how. First as a user
 * does (`npm install --offline TARBALL`), which needs the registry's metadata in the npm cache;
 * else with the dependency tree the repository's lockfile pins (`npm ci --offline`: the cached
 * tarballs by integrity); else the package from the tarball with the repository's node_modules
 * by symlink.
 */
function installTarball(project: string, tarball: string): string {
  const user = { name: 'lineage-user', private: true, type: 'module' };
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify(user));
  if (run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], project).status === 0) return 'npm install --offline TARBALL';

  const ours = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as Record<string, unknown>;
  const lock = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package-lock.json'), 'utf8')) as PackageLock;
  const spec = `file:${path.relative(project, tarball)}`;
  const dependencies = { 'model-lineage': spec };
  const packages: Record<string, unknown> = {
    '': { name: user.name, dependencies },
    'node_modules/model-lineage': { version: ours.version, resolved: spec, dependencies: ours.dependencies, bin: ours.bin, engines: ours.engines, license: ours.license },
  };
  for (const [where, entry] of Object.entries(lock.packages)) if (where !== '' && !entry.dev && !entry.link) packages[where] = entry;
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ ...user, dependencies }));
  fs.writeFileSync(path.join(project, 'package-lock.json'), JSON.stringify({ name: user.name, lockfileVersion: 3, requires: true, packages }));
  const ci = run('npm', ['ci', '--offline', '--no-audit', '--no-fund'], project);
  if (ci.status === 0) return "npm ci --offline (npm install --offline found no registry metadata in the cache; the repository's lockfile pins the dependencies)";

  const installed = path.join(project, 'node_modules', 'model-lineage');
  fs.rmSync(path.join(project, 'node_modules'), { recursive: true, force: true });
  fs.mkdirSync(installed, { recursive: true });
  mustRun('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1'], project);
  fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(installed, 'node_modules'), 'dir');
  return `extracting the tarball, its dependencies the repository's node_modules by symlink (offline install failed: ${(ci.stderr || ci.error?.message || '').split('\n')[0]})`;
}

function withoutTimings(result: Record<string, unknown>): Record<string, unknown> {
  const { timings: _timings, ...rest } = result;
  return rest;
}

test('the packed library installs into an empty project and returns what the CLI prints with --json', { timeout: 180_000 }, async (t) => {
  if (NO_NPM) {
    console.log(`# skipped: ${NO_NPM}`);
    t.skip(NO_NPM);
    return;
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-pack-'));
  try {
    // --ignore-scripts: the test runs on the build it is part of (prepare would rebuild).
    const [packed] = JSON.parse(mustRun('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], REPO_ROOT)) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const files = packed!.files.map((f) => f.path);
    for (const needed of ['package.json', 'README.md', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/cli/main.js', 'dist/src/workers/layer-worker.js', 'dist/src/workers/sketch-worker.js']) {
      assert.ok(files.includes(needed), `the tarball lacks ${needed}`);
    }
    // The README links the docs (text and report screenshots): they ship beside it.
    for (const linked of ['docs/verify.md', 'docs/tree.md', 'docs/performance.md', 'docs/verify-report.png']) assert.ok(files.includes(linked), `the tarball lacks ${linked}`);
    const extra = files.filter((f) => !(f.startsWith('dist/src/') || f.startsWith('docs/') || f === 'package.json' || f === 'README.md'));
    assert.deepEqual(extra, [], 'the tarball holds only the built library, its docs, package.json and README.md');
    const tarball = path.join(work, packed!.filename);

    const project = path.join(work, 'project');
    fs.mkdirSync(project);
    t.diagnostic(`installed by ${installTarball(project, tarball)}`);

    // The README's example, run as written (its paths are relative to the repository).
    fs.writeFileSync(path.join(project, 'example.mjs'), readmeExample());
    const example = run(process.execPath, [path.join(project, 'example.mjs')], REPO_ROOT);
    assert.equal(example.status, 0, example.stderr);
    assert.equal(example.stdout, 'adapter 8\nderived 8 q_proj,v_proj\np0 -> p2\nq0 -> q2\nexit code 2\n');

    fs.writeFileSync(path.join(project, 'compare.mjs'), COMPARE_SCRIPT);
    const compared = run(process.execPath, [path.join(project, 'compare.mjs')], REPO_ROOT);
    assert.equal(compared.status, 0, compared.stderr);
    const lib = JSON.parse(compared.stdout) as Record<'inspect' | 'verify' | 'adapter' | 'tree', { value: Record<string, unknown>; roundTrips: boolean }> & {
      progress: Array<{ phase: string; label: string; bytesDone: number; bytesTotal: number }>;
      error: { lineage: boolean; badInput: boolean; exitCode: number } | null;
    };
    const cli = async (args: string[]) => {
      const r = await runLineage([...args, '--json'], { cwd: REPO_ROOT });
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as Record<string, unknown>;
    };
    for (const [name, result] of Object.entries(lib).filter(([k]) => ['inspect', 'verify', 'adapter', 'tree'].includes(k))) {
      assert.ok((result as { roundTrips: boolean }).roundTrips, `${name}: the library's object is not what JSON carries`);
    }
    assert.deepEqual(lib.inspect.value, await cli(['inspect', 'samples/p2-adapter']));
    // Timings are wall times: the one part of a verify that differs between two runs.
    assert.deepEqual(withoutTimings(lib.verify.value), withoutTimings(await cli(['verify', 'samples/p0', 'samples/p2', '--workers', '0'])));
    assert.deepEqual(withoutTimings(lib.adapter.value), withoutTimings(await cli(['verify', 'samples/p0', '--adapter', 'samples/p2-adapter', '--workers', '0'])));
    const cliTree = await cli(['tree', '--no-cache', '--workers', '0', '--truth', 'samples/truth.json', 'samples/p0', 'samples/p2', 'samples/o1', 'samples/q0', 'samples/q2', 'samples/p2-adapter']);
    assert.deepEqual(lib.tree.value, cliTree);
    assert.ok(cliTree.score && cliTree.alignment, 'the tree compared was scored and placed o1 by alignment');
    assert.equal(lib.verify.value.relation, 'derived');

    // Progress: one verify pass from 0 to every byte of both models, never going back.
    assert.ok(lib.progress.length > 2);
    assert.ok(lib.progress.every((p) => p.phase === 'verify' && p.label === 'verify p0 -> p2'));
    assert.equal(lib.progress[0]!.bytesDone, 0);
    assert.ok(lib.progress.every((p, i) => i === 0 || p.bytesDone >= lib.progress[i - 1]!.bytesDone));
    assert.equal(lib.progress.at(-1)!.bytesDone, lib.progress.at(-1)!.bytesTotal);
    assert.deepEqual(lib.error, { lineage: true, badInput: true, exitCode: 2 });

    // The declarations, as a strict TypeScript user compiles against them.
    fs.writeFileSync(path.join(project, 'check.mts'), TYPES_CHECK);
    const tsc = run(process.execPath, [
      path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '--noEmit', '--strict', '--target', 'es2022',
      '--module', 'nodenext', '--moduleResolution', 'nodenext', '--typeRoots', path.join(REPO_ROOT, 'node_modules', '@types'), '--types', 'node', 'check.mts',
    ], project);
    assert.equal(tsc.status, 0, `the declarations do not compile for a user: ${tsc.stdout}${tsc.stderr}`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
});
