/**
 * The sketch registry end to end, as users run it: `lineage enqueue`, several `lineage worker`
 * processes (one killed with SIGKILL while it holds a job), `lineage registry status` and
 * `lineage tree --registry`, on a throwaway PostgreSQL cluster and on the embedded registry.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openTensorSource } from '../src/io/source.js';
import { CLI, REPO_ROOT, runLineage } from './cli-child-process.js';
import { clusterUnavailable, startCluster } from './helpers/postgres-cluster.js';
import { EXIT } from '../src/io/errors.js';

const ZOO = path.join(REPO_ROOT, '..', 'shared', 'zoo');
/** The zoo's models when it is there, else the same family names in samples/ (always shipped). */
const ROOT = fs.existsSync(path.join(ZOO, 'zoo.json')) ? ZOO : path.join(REPO_ROOT, 'samples');
const GOOD = ['p0', 'p1', 'p2', 'p3', 'p4', 'q0'];
/** The model whose weight file is a FIFO while the first worker takes it: that worker blocks there holding the job. */
const HELD = 'p2';

interface Worker {
  readonly child: ChildProcess;
  stderr: string;
  stdout: string;
  readonly exited: Promise<number | null>;
}

function startWorker(registry: string, concurrency = 1): Worker {
  const args = [CLI, 'worker', '--registry', registry, '--until-idle', '--poll', '1', '--concurrency', String(concurrency)];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const worker: Worker = {
    child, stderr: '', stdout: '',
    exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))),
  };
  child.stderr!.on('data', (d: Buffer) => void (worker.stderr += d.toString()));
  child.stdout!.on('data', (d: Buffer) => void (worker.stdout += d.toString()));
  return worker;
}

async function waitFor<T>(what: string, check: () => T | undefined, seconds: number): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const found = check();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Copies of the models, one with a NaN in its weights (a sketch of it fails every time). */
function writeModels(dir: string): { models: string; poisoned: string } {
  const models = path.join(dir, 'models');
  for (const name of GOOD) fs.cpSync(path.join(ROOT, name), path.join(models, name), { recursive: true });
  const poisoned = path.join(models, 'poisoned');
  fs.cpSync(path.join(ROOT, 'p1'), poisoned, { recursive: true });
  const source = openTensorSource(poisoned);
  const info = source.tensors.get('model.layers.1.mlp.up_proj.weight')!;
  source.close();
  const nan = info.dtype === 'F32' ? Buffer.from([0, 0, 0xc0, 0x7f]) : Buffer.from([0xc0, 0x7f]);
  const fd = fs.openSync(info.file, 'r+');
  fs.writeSync(fd, nan, 0, nan.length, info.start + 64);
  // And a change the content fingerprint sees (it samples the payload's first block): the low
  // mantissa bit of the first stored value, still a finite number.
  const prefix = Buffer.alloc(8);
  fs.readSync(fd, prefix, 0, 8, 0);
  const first = 8 + Number(prefix.readBigUInt64LE(0));
  const byte = Buffer.alloc(1);
  fs.readSync(fd, byte, 0, 1, first);
  byte[0]! ^= 1;
  fs.writeSync(fd, byte, 0, 1, first);
  fs.closeSync(fd);
  return { models, poisoned };
}

/**
 * The model at `from` written to `to` with one more tensor: 4 GB of zeros left as a hole in the
 * file (no disk used), which the worker reads whole (every tensor is checked finite) for seconds:
 * long enough to be killed while it holds the job. Weights must be regular files (a pipe that
 * never answers is refused at once), so a slow file stands in for a stuck read.
 */
function writeSlowToRead(from: string, to: string): void {
  const bytes = fs.readFileSync(from);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { data_offsets?: [number, number] }>;
  const payload = bytes.subarray(8 + headerLength);
  const padding = 32768 * 65536 * 2;
  header['held.padding.weight'] = { dtype: 'BF16', shape: [32768, 65536], data_offsets: [payload.length, payload.length + padding] } as never;
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  fs.writeFileSync(to, Buffer.concat([prefix, Buffer.from(json, 'utf8'), payload]));
  fs.truncateSync(to, 8 + Buffer.byteLength(json) + payload.length + padding);
}

async function lineage(args: string[]): Promise<string> {
  const run = await runLineage(args);
  assert.equal(run.code, 0, `lineage ${args.join(' ')}: ${run.stderr}`);
  return run.stdout;
}

/**
 * The acceptance run: `workers` worker processes at once (1 for the embedded registry, which one
 * process opens at a time: the second starts after the first is killed).
 */
async function acceptance(registry: string, dir: string, concurrentWorkers: number): Promise<void> {
  const { models, poisoned } = writeModels(dir);
  const enqueue = ['enqueue', models, '--registry', registry, '--lease', '3', '--retries', '2'];
  assert.match(await lineage(enqueue), /enqueued 7 models: 7 new jobs/);
  assert.match(await lineage(enqueue), /0 new jobs, 7 already queued/, 'a second enqueue before any work queues nothing');

  const weights = path.join(models, HELD, 'model.safetensors');
  fs.renameSync(weights, `${weights}.aside`);
  writeSlowToRead(`${weights}.aside`, weights);
  // One of several holds two jobs at a time, their matrices on two threads.
  const workers = Array.from({ length: concurrentWorkers }, (_, i) => startWorker(registry, i === 1 ? 2 : 1));
  try {
    const holder = await waitFor('a worker to take the held model', () => workers.find((w) => w.stderr.includes(`sketching: ${path.join(models, HELD)}\n`)), 120);
    holder.child.kill('SIGKILL');
    assert.equal(await holder.exited, null, 'the holder was killed');
    fs.renameSync(`${weights}.aside`, weights); // the model as enqueued again, for whoever takes the job over
    if (workers.length === 1) workers.push(startWorker(registry));
    const survivors = workers.filter((w) => w !== holder);
    for (const w of survivors) assert.equal(await w.exited, 0, w.stderr);
    assert.match(survivors.map((w) => w.stderr).join(''), new RegExp(`sketched: ${path.join(models, HELD)} `), 'a survivor took the killed worker\'s job over');
    if (concurrentWorkers > 1) assert.ok(workers.filter((w) => /sketching: /.test(w.stderr)).length >= 2, 'the workers shared the jobs');
  } finally {
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
  }

  const status = JSON.parse(await lineage(['registry', 'status', '--registry', registry, '--json'])) as {
    counts: Record<string, number>; sketches: number; unfinishedJobs: number; failures: Array<{ path: string; error: string; attempts: number }>;
  };
  assert.deepEqual(status.counts, { queued: 0, sketching: 0, sketched: GOOD.length, failed: 1 });
  assert.equal(status.sketches, GOOD.length, 'one sketch per model, none stored twice');
  assert.equal(status.unfinishedJobs, 0);
  assert.equal(status.failures.length, 1);
  assert.equal(status.failures[0]!.path, poisoned);
  assert.match(status.failures[0]!.error, /non-finite weight .*tensor model\.layers\.1\.mlp\.up_proj\.weight/);
  assert.equal(status.failures[0]!.attempts, 3, 'the first attempt and two retries, then failed for good');

  assert.match(await lineage(enqueue), /0 new jobs, 0 already queued, 6 already sketched, 1 already failed/, 'enqueuing again does no work');

  const fromRegistry = JSON.parse(await lineage(['tree', '--registry', registry, '--json']));
  const local = JSON.parse(await lineage(['tree', '--no-align', '--no-cache', '--workers', '0', '--json', ...GOOD.map((n) => path.join(models, n))]));
  assert.deepEqual(fromRegistry.trees, local.trees);
  assert.deepEqual(fromRegistry.edges, local.edges);
  assert.equal(fromRegistry.edges.length, GOOD.length - 2, 'two families, every other model joined');
}

test('PostgreSQL registry: three workers share the jobs, a killed one\'s job is taken over, a poisoned model fails after its retries, the tree equals the local one', { timeout: 600_000 }, async (t) => {
  const why = clusterUnavailable();
  if (why) {
    t.skip(why);
    console.log(`# skipped: ${why}`);
    return;
  }
  const cluster = await startCluster();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-registry-'));
  try {
    await acceptance(cluster.url, dir, 3);
    // Credentials are never printed: a wrong password is exit 5 with the URL redacted.
    const wrong = cluster.url.replace(cluster.password, 'not-the-password');
    const run = await runLineage(['registry', 'status', '--registry', wrong]);
    assert.equal(run.code, EXIT.registry, run.stderr);
    assert.match(run.stderr, /^error: cannot use the registry at postgres:\/\/lineage:\*\*\*@127\.0\.0\.1/);
    assert.ok(!run.stderr.includes('not-the-password') && !run.stdout.includes('not-the-password'));
  } finally {
    cluster.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('embedded registry: the same run, one worker process at a time (the second after the first is killed)', { timeout: 600_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-registry-'));
  try {
    await acceptance(path.join(dir, 'registry'), dir, 1);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
