import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { InspectReport } from '../src/reports/inspect-report.js';
import { REPO_ROOT, runLineage } from './cli-child-process.js';

/** The zoo of really trained tiny models lives beside the repository, not in it. */
const ZOO = path.resolve(REPO_ROOT, '..', 'shared', 'zoo');

interface ZooModel {
  readonly name: string;
  readonly kind: string;
  readonly rank?: number;
  readonly targets?: string[];
  readonly dtype?: string;
  readonly shards?: number;
  readonly config?: string;
}

test('inspect --json on every zoo folder matches the zoo ground truth', async (t) => {
  if (!fs.existsSync(path.join(ZOO, 'zoo.json'))) {
    t.skip(`zoo not found at ../shared/zoo (relative to the repository root)`);
    return;
  }
  const truth = JSON.parse(fs.readFileSync(path.join(ZOO, 'zoo.json'), 'utf8')) as { models: ZooModel[] };
  const configs = (JSON.parse(fs.readFileSync(path.join(ZOO, 'public.json'), 'utf8')) as { configs: Record<string, Record<string, number>> }).configs;
  const byName = new Map(truth.models.map((m) => [m.name, m]));
  const folders = fs.readdirSync(ZOO).filter((f) => fs.statSync(path.join(ZOO, f)).isDirectory()).sort();
  assert.ok(folders.length >= truth.models.length, `expected a folder per model, found ${folders.join(' ')}`);

  const runs = await Promise.all(folders.map((folder) => runLineage(['inspect', '--json', path.join(ZOO, folder)])));
  folders.forEach((folder, i) => {
    const run = runs[i]!;
    assert.equal(run.code, 0, `${folder}: ${run.stderr}`);
    const report = JSON.parse(run.stdout) as InspectReport;
    if (folder.endsWith('-adapter')) {
      const model = byName.get(folder.slice(0, -'-adapter'.length))!;
      assert.equal(report.kind, 'adapter', folder);
      assert.deepEqual(report.adapter!.ranks, [model.rank], folder);
      assert.deepEqual([...report.adapter!.targets].sort(), [...model.targets!].sort(), folder);
      assert.equal(report.adapter!.scales[0], 2, `${folder}: alpha = 2r gives scale 2`);
      return;
    }
    const model = byName.get(folder)!;
    assert.ok(model, `${folder} is in zoo.json`);
    const config = configs[model.config ?? 'default']!;
    const m = report.model!;
    assert.equal(report.kind, 'model', folder);
    assert.deepEqual(
      [m.family, m.layers, m.hidden, m.intermediate, m.heads, m.kvHeads, m.headDim, m.vocab],
      ['llama', config['num_hidden_layers'], config['hidden_size'], config['intermediate_size'],
        config['num_attention_heads'], config['num_key_value_heads'], config['head_dim'], config['vocab_size']],
      folder,
    );
    assert.equal(m.tiedEmbeddings, false, folder);
    assert.deepEqual(Object.keys(report.dtypes), [model.dtype ?? 'BF16'], folder);
    assert.equal(report.shards, model.shards ?? 1, folder);
    assert.deepEqual(m.roles, [{ layers: `0-${m.layers - 1}`, roles: ['q', 'k', 'v', 'o', 'gate', 'up', 'down', 'input_norm', 'post_norm'] }], folder);
  });
  assert.equal((JSON.parse(runs[folders.indexOf('p4a')]!.stdout) as InspectReport).shards, 2);
});
