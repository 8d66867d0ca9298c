/** The registry's parts: folder expansion, credentials kept out of messages, the embedded registry's lock, migrations, usage errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expandModelPaths } from '../src/registry/enqueue.js';
import { redactUrl } from '../src/registry/database.js';
import { openRegistry } from '../src/registry/registry.js';
import { SCHEMA_VERSION } from '../src/registry/schema.js';
import { REPO_ROOT, runLineage } from './cli-child-process.js';
import { EXIT } from '../src/io/errors.js';
import { openTensorSource } from '../src/io/source.js';
import { contentFingerprint } from '../src/io/fingerprint.js';
import { registryKey } from '../src/registry/enqueue.js';

const SAMPLES = path.join(REPO_ROOT, 'samples');

test('a folder of model folders expands to them, by name; a model folder or file stays as given', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-expand-'));
  try {
    for (const name of ['b', 'a']) fs.cpSync(path.join(SAMPLES, 'p0'), path.join(dir, 'zoo', name), { recursive: true });
    fs.mkdirSync(path.join(dir, 'zoo', 'notes'));
    fs.writeFileSync(path.join(dir, 'zoo', 'README.md'), 'x');
    const file = path.join(dir, 'zoo', 'a', 'model.safetensors');
    assert.deepEqual(expandModelPaths([path.join(dir, 'zoo'), path.join(dir, 'zoo', 'b'), file]),
      [path.join(dir, 'zoo', 'a'), path.join(dir, 'zoo', 'b'), path.join(dir, 'zoo', 'b'), file]);
    // Nothing to expand into: left as given, so opening it names the folder in its error.
    assert.deepEqual(expandModelPaths([path.join(dir, 'zoo', 'notes')]), [path.join(dir, 'zoo', 'notes')]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a password never reaches a message', () => {
  assert.equal(redactUrl('postgres://me:s3cr%40t@db.example:5432/reg'), 'postgres://me:***@db.example:5432/reg');
  assert.equal(redactUrl('postgresql://db/reg?user=me&password=s3cret&ssl=true'), 'postgresql://db/reg?user=me&password=***&ssl=true');
  assert.equal(redactUrl('postgres://me@db/reg'), 'postgres://me@db/reg');
});

test('embedded registry: migrated once, one process at a time (exit 5 naming the holder), a dead holder\'s lock taken over', { timeout: 300_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-embedded-'));
  const location = path.join(dir, 'registry');
  try {
    const registry = await openRegistry(location);
    try {
      const busy = await runLineage(['registry', 'status', '--registry', location]);
      assert.equal(busy.code, EXIT.registry, busy.stderr);
      assert.match(busy.stderr, new RegExp(`^error: the embedded registry .* is open in process ${process.pid}: `));
      const applied = await registry.db.query<{ version: number }>('SELECT version FROM lineage.migrations ORDER BY version');
      assert.deepEqual(applied.map((r) => r.version), Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
    } finally {
      await registry.close();
    }
    // A lock left by a process that is gone (a killed worker) does not keep the registry shut.
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    fs.writeFileSync(path.join(location, 'registry.lock'), gone.stdout);
    const status = await runLineage(['registry', 'status', '--registry', location]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^models: 0 sketched, 0 queued, 0 sketching, 0 failed\nsketches stored: 0; jobs unfinished: 0\n$/);
    // Opening again applies no migration twice.
    const again = await openRegistry(location);
    try {
      const applied = await again.db.query<{ n: number }>('SELECT count(*)::int AS n FROM lineage.migrations');
      assert.equal(applied[0]!.n, SCHEMA_VERSION);
    } finally {
      await again.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('registry usage errors: models and --registry together, a bad --retries, an unreachable server', async () => {
  const both = await runLineage(['tree', '--registry', path.join(os.tmpdir(), 'unused-registry'), path.join(SAMPLES, 'p0'), path.join(SAMPLES, 'p1')]);
  assert.equal(both.code, 64, both.stderr);
  assert.match(both.stderr, /give models or --registry, not both/);
  const retries = await runLineage(['enqueue', path.join(SAMPLES, 'p0'), '--registry', 'postgres://127.0.0.1:1/x', '--retries', 'many']);
  assert.equal(retries.code, 64, retries.stderr);
  assert.match(retries.stderr, /--retries takes a whole number from 0 to 100, got many/);
  const refused = await runLineage(['registry', 'status', '--registry', 'postgres://me:hunter2@127.0.0.1:1/x']);
  assert.equal(refused.code, EXIT.registry, refused.stderr);
  assert.match(refused.stderr, /^error: cannot use the registry at postgres:\/\/me:\*\*\*@127\.0\.0\.1:1\/x: /);
  assert.ok(!refused.stderr.includes('hunter2'));
});

test('registry key: a change between the fingerprint\'s sampled blocks gets its own key; the same files keep theirs', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-registry-key-'));
  try {
    const p0 = path.join(REPO_ROOT, 'samples', 'p0'), edited = path.join(dir, 'edited');
    fs.cpSync(p0, edited, { recursive: true });
    const source = openTensorSource(edited);
    const info = source.tensors.get('model.layers.2.self_attn.q_proj.weight')!;
    source.close();
    const bytes = fs.readFileSync(info.file);
    for (let i = info.start; i < info.start + info.byteLength; i += 128) bytes[i] ^= 0x01;
    fs.writeFileSync(info.file, bytes);
    const keys = (p: string) => {
      const s = openTensorSource(p);
      try {
        return { fingerprint: contentFingerprint(s).hash, key: registryKey(s) };
      } finally {
        s.close();
      }
    };
    const a = keys(p0), b = keys(edited);
    assert.equal(b.fingerprint, a.fingerprint, 'the edit lies between the sampled blocks');
    assert.notEqual(b.key, a.key);
    assert.equal(keys(p0).key, a.key);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
