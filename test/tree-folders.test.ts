/**
 * `lineage tree` on a folder of downloads as users have them: models of two architectures, a
 * fine-tune with another vocabulary, PEFT adapters (one whose base is given, one whose base is
 * not), stray files, a truncated model, a model that fails while being sketched, and a model
 * given twice. The forest of the usable models comes out, every other input is skipped with its
 * reason, and --strict stops at the first one.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BadInputError, EXIT } from '../src/io/errors.js';
import { openTensorSource } from '../src/io/source.js';
import { contentFingerprint } from '../src/io/fingerprint.js';
import { SkipList, keepSketched, lastPathComponent, loraDeltaSquaredNorm, type ModelInput } from '../src/api/model-inputs.js';
import type { LineageEdge, LineageResult } from '../src/tree/types.js';
import { Rng } from '../src/linalg/rng.js';
import {
  addLora, cloneState, fullFineTune, randomGlobals, randomLlama, writeAdapter, writeLlama, tensorName, type LlamaConfig,
} from './helpers/synthetic-llama.js';
import { REPO_ROOT, runLineage } from './cli-child-process.js';

const SMALL: LlamaConfig = { hidden: 64, intermediate: 128, layers: 2, heads: 4, kvHeads: 2, headDim: 16, vocab: 32 };
const OTHER: LlamaConfig = { ...SMALL, intermediate: 96, layers: 3 };

let root = '';
let downloads = '';

before(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-tree-folders-'));
  downloads = path.join(root, 'downloads');
  const at = (name: string) => path.join(downloads, name);

  const a0 = randomLlama(SMALL, 1);
  writeLlama(at('a0'), SMALL, a0, 'BF16');
  const a1 = addLora(a0, { rank: 4, targets: ['q_proj', 'v_proj'], scale: 0.1 }, 2);
  writeLlama(at('a1'), SMALL, a1.state, 'BF16');
  writeAdapter(at('a1-adapter'), a1, 'some-org/a0');
  writeLlama(at('a2'), SMALL, fullFineTune(a0, 0.05, 3), 'BF16');
  // A fine-tune for another vocabulary: new embeddings and LM head, the same layer stack's shapes.
  const a3 = fullFineTune(a0, 0.05, 4);
  const wider = { ...SMALL, vocab: 40 };
  for (const [name, t] of randomGlobals(wider, new Rng(5))) if (t.shape.length === 2) a3.set(name, t);
  writeLlama(at('a3'), wider, a3, 'BF16');

  const b0 = randomLlama(OTHER, 6);
  writeLlama(at('b0'), OTHER, b0, 'BF16');
  const b1 = addLora(b0, { rank: 2, targets: ['v_proj', 'o_proj'], scale: 0.1 }, 7);
  writeLlama(at('b1'), OTHER, b1.state, 'BF16');
  writeAdapter(at('orphan-adapter'), b1, 'someone/not-given');
  // Names a model given, but its factors (three layers) do not fit that model's two.
  writeAdapter(at('misfit-adapter'), b1, 'a0');

  fs.writeFileSync(at('README.md'), '# my downloads\n');
  fs.writeFileSync(at('notes.json'), '{"todo": "chart these"}\n');
  fs.mkdirSync(at('.cache'));
  fs.writeFileSync(path.join(at('.cache'), 'junk'), 'hidden entries are not inputs');
  // Truncated: the header promises more bytes than the file holds.
  const whole = fs.readFileSync(path.join(at('a2'), 'model.safetensors'));
  fs.mkdirSync(at('broken'));
  fs.copyFileSync(path.join(at('a2'), 'config.json'), path.join(at('broken'), 'config.json'));
  fs.writeFileSync(path.join(at('broken'), 'model.safetensors'), whole.subarray(0, Math.floor(whole.length / 2)));
  // Opens fine (header and config agree) but fails while being sketched: a NaN in a linear weight.
  const poisoned = cloneState(fullFineTune(a0, 0.05, 8));
  poisoned.get(tensorName(1, 'q_proj'))!.data[7] = NaN;
  writeLlama(at('nan-model'), SMALL, poisoned, 'BF16');
});

after(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

interface TreeJson extends LineageResult {
  readonly skipped: ReadonlyArray<{ path: string; reason: string }>;
}

const edgeText = (e: LineageEdge) => `${e.parent}->${e.child} ${e.kind} r=${e.rank} ${e.modules.join(',')}${e.adapter ? ' adapter' : ''}`;

test('a folder of downloads: each architecture its forest, adapters placed or skipped, strays and broken models skipped, duplicates once', async () => {
  const run = await runLineage(['tree', '--json', '--no-cache', downloads, path.join(downloads, 'a0') + '/', path.join(downloads, 'b1')]);
  assert.equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout) as TreeJson;

  assert.deepEqual(result.trees, [
    { root: 'a0', members: ['a0', 'a1', 'a1-adapter', 'a2', 'a3'] },
    { root: 'b0', members: ['b0', 'b1'] },
  ]);
  assert.deepEqual(result.edges.map(edgeText), [
    'a0->a1 lora r=4 q_proj,v_proj',
    'a0->a1-adapter lora r=4 q_proj,v_proj adapter',
    'a0->a2 full r=null ',
    'a0->a3 full r=null ',
    'b0->b1 lora r=2 o_proj,v_proj',
  ]);
  // The adapter's distance is that of the merged child it makes (same factors, no rounding).
  const distance = (child: string) => result.edges.find((e) => e.child === child)!.distance;
  assert.ok(Math.abs(distance('a1-adapter') - distance('a1')) < 0.05 * distance('a1'), `${distance('a1-adapter')} vs ${distance('a1')}`);

  const reasons = new Map(result.skipped.map((s) => [path.basename(s.path), s.reason]));
  assert.deepEqual([...reasons.keys()].sort(), ['README.md', 'broken', 'misfit-adapter', 'nan-model', 'notes.json', 'orphan-adapter']);
  assert.match(reasons.get('README.md')!, /not a \.safetensors file, \.gguf file or model folder/);
  assert.match(reasons.get('notes.json')!, /not a \.safetensors file, \.gguf file or model folder/);
  assert.match(reasons.get('broken')!, /truncated/);
  assert.match(reasons.get('nan-model')!, /non-finite weight.*tensor model\.layers\.1\.self_attn\.q_proj\.weight/);
  assert.match(reasons.get('orphan-adapter')!, /PEFT adapter of "someone\/not-given".*not among the models given/);
  assert.match(reasons.get('misfit-adapter')!, /factors of layer 2 have no matrix in a0/);
  // One warning line on stderr per skipped input.
  const warnings = run.stderr.split('\n').filter((l) => l.startsWith('warning: skipped '));
  assert.equal(warnings.length, 6, run.stderr);

  const notes = result.notes ?? [];
  assert.ok(notes.some((n) => n.startsWith('2 architectures among the models')), notes.join('\n'));
  assert.ok(notes.some((n) => /^a0 was given 2 times/.test(n)), notes.join('\n'));
  assert.ok(notes.some((n) => /^b1 was given 2 times/.test(n)), notes.join('\n'));
  // The other vocabulary does not split the family; a note says what was not compared.
  assert.ok(notes.some((n) => /differ outside it \(.*lm_head\.weight: 32x64 in a0, a1, a2; 40x64 in a3.*compared on the layer stack/.test(n)), notes.join('\n'));

  // Order and spelling of the inputs change nothing.
  const again = await runLineage(['tree', '--json', '--no-cache', path.join(downloads, 'b1'), path.join(downloads, 'a0'), downloads]);
  assert.equal(again.code, 0, again.stderr);
  const second = JSON.parse(again.stdout) as TreeJson;
  assert.deepEqual(second.trees, result.trees);
  assert.deepEqual(second.edges, result.edges);
  assert.deepEqual(second.skipped, result.skipped);
});

test('the terminal tree marks adapters and prints the notes; --strict stops at the first unusable input with exit 4', async () => {
  const plain = await runLineage(['tree', '--no-cache', '-q', downloads]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stdout, /a1-adapter {2}PEFT adapter LoRA r=4 q_proj,v_proj {2}d=\S+\n/);

  const strict = await runLineage(['tree', '--strict', '--no-cache', downloads]);
  assert.equal(strict.code, EXIT.strictSkip);
  assert.equal(EXIT.strictSkip, 4);
  assert.equal(strict.stdout, '');
  assert.deepEqual(strict.stderr.trim().split('\n').length, 1, strict.stderr);
  assert.match(strict.stderr, /^error: --strict: \S*README\.md is not usable: not a \.safetensors file/);

  // A usable set passes --strict; an adapter whose base is absent does not.
  const clean = await runLineage(['tree', '--strict', '--json', '--no-cache', path.join(downloads, 'a0'), path.join(downloads, 'a1-adapter')]);
  assert.equal(clean.code, 0, clean.stderr);
  assert.deepEqual((JSON.parse(clean.stdout) as TreeJson).skipped, []);
  const orphan = await runLineage(['tree', '--strict', '--no-cache', path.join(downloads, 'b0'), path.join(downloads, 'orphan-adapter')]);
  assert.equal(orphan.code, 4);
  assert.match(orphan.stderr, /someone\/not-given/);
});

test('nothing usable is an error, not an empty forest; a folder with nothing but hidden entries is skipped as empty', async () => {
  const empty = path.join(root, 'empty');
  fs.mkdirSync(path.join(empty, '.git'), { recursive: true });
  const run = await runLineage(['tree', '--no-cache', path.join(downloads, 'README.md'), path.join(downloads, 'broken'), empty]);
  assert.equal(run.code, EXIT.badInput);
  assert.match(run.stderr, /warning: skipped \S*empty: an empty folder: no model in it\n/);
  assert.match(run.stderr, /error: no model to chart among the inputs \(3 skipped\)/);
});

test('keepSketched skips a model whose sketching failed on bad input and keeps the rest; other errors pass', () => {
  const model = (name: string): ModelInput => ({ given: name, path: path.resolve('/models', name), name, bytes: 0, headShapes: {} });
  const models = [model('m0'), model('m1'), model('m2')];
  const sketch = null as never;
  const skip = new SkipList(false);
  const sketched = keepSketched(models, [{ sketch }, { error: new BadInputError('non-finite weight') }, { sketch }], skip);
  assert.deepEqual(sketched.map((m) => m.name), ['m0', 'm2']);
  assert.deepEqual(skip.entries.map((s) => [s.path, s.reason]), [['m1', 'non-finite weight']]);
  assert.throws(() => keepSketched(models, [{ sketch }, { error: new Error('a bug') }, { sketch }], skip), /a bug/);
  assert.throws(
    () => keepSketched(models, [{ error: new BadInputError('bad') }, { sketch }, { sketch }], new SkipList(true)),
    (err: { exitCode?: number }) => err.exitCode === EXIT.strictSkip,
  );
});

test('an adapter delta norm from its factors equals the norm of scale B A; base names reduce to their last component', () => {
  const rng = new Rng(3);
  const rank = 3, inF = 7, outF = 5, scale = 1.5;
  const a = Float32Array.from({ length: rank * inF }, () => rng.gaussian());
  const b = Float32Array.from({ length: outF * rank }, () => rng.gaussian());
  let direct = 0;
  for (let i = 0; i < outF; i++) {
    for (let j = 0; j < inF; j++) {
      let s = 0;
      for (let t = 0; t < rank; t++) s += b[i * rank + t]! * a[t * inF + j]!;
      direct += (scale * s) ** 2;
    }
  }
  assert.ok(Math.abs(loraDeltaSquaredNorm(a, b, rank, inF, outF, scale) - direct) < 1e-9 * direct);
  assert.equal(lastPathComponent('meta-llama/Llama-2-7b-hf'), 'Llama-2-7b-hf');
  assert.equal(lastPathComponent('/models/p0/'), 'p0');
  assert.equal(lastPathComponent('C:\\models\\p0'), 'p0');
  assert.equal(lastPathComponent('p0'), 'p0');
});

test('the test zoo as one folder: its files skipped, its adapters under the parents and with the ranks its truth gives', async (t) => {
  const zoo = path.join(REPO_ROOT, '..', 'shared', 'zoo');
  if (!fs.existsSync(path.join(zoo, 'zoo.json'))) {
    t.skip('zoo not found at ../shared/zoo: skipped');
    return;
  }
  const run = await runLineage(['tree', '--json', '--no-cache', '--no-align', zoo]);
  assert.equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout) as TreeJson;
  const looseFiles = fs.readdirSync(zoo).filter((e) => !fs.statSync(path.join(zoo, e)).isDirectory()).sort();
  assert.deepEqual(result.skipped.map((s) => path.basename(s.path)), looseFiles);
  const truth = JSON.parse(fs.readFileSync(path.join(zoo, 'zoo.json'), 'utf8')) as {
    models: Array<{ name: string; parent: string | null; rank?: number; targets?: string[]; adapter?: boolean }>;
  };
  const withAdapters = truth.models.filter((m) => m.adapter);
  assert.ok(withAdapters.length >= 2, 'the zoo ships adapters');
  assert.deepEqual(
    result.edges.filter((e) => e.adapter).map(edgeText).sort(),
    withAdapters.map((m) => `${m.parent}->${m.name}-adapter lora r=${m.rank} ${[...m.targets!].sort().join(',')} adapter`).sort(),
  );
});

test('a copy in another folder is counted once by its sketch; a change the sampled fingerprint cannot see keeps two models', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-copies-'));
  try {
    const p0 = path.join(REPO_ROOT, 'samples', 'p0');
    for (const name of ['copy', 'edited']) fs.cpSync(p0, path.join(dir, name), { recursive: true });
    // Layer 2's q_proj nudged in place: header, size and the three sampled blocks stay the same.
    const edited = openTensorSource(path.join(dir, 'edited'));
    const info = edited.tensors.get('model.layers.2.self_attn.q_proj.weight')!;
    edited.close();
    const bytes = fs.readFileSync(info.file);
    for (let i = info.start; i < info.start + info.byteLength; i += 2 * 64) bytes[i] ^= 0x01; // the lowest mantissa bit of some values
    fs.writeFileSync(info.file, bytes);
    const fingerprint = (p: string) => {
      const source = openTensorSource(p);
      try {
        return contentFingerprint(source).hash;
      } finally {
        source.close();
      }
    };
    assert.equal(fingerprint(path.join(dir, 'edited')), fingerprint(p0), 'the edit lies outside the sampled blocks');
    const run = await runLineage(['tree', '--json', '--no-cache', '--quiet', p0, path.join(dir, 'copy'), path.join(dir, 'edited')]);
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as TreeJson;
    const members = result.trees.flatMap((t) => t.members).sort();
    assert.equal(members.length, 2, members.join(', '));
    assert.ok(members.includes('edited'));
    assert.ok((result.notes ?? []).some((n) => /given 2 times .*counted once/.test(n)), (result.notes ?? []).join('\n'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
