/**
 * Placement of the members sketches cannot place, on synthetic Llamas with known answers: an
 * obfuscated copy (all seven zoo transforms), a rescaled copy, an obfuscated LoRA fine-tune of a
 * full fine-tune, and an unrelated model that must stay alone; order independence; --no-align.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { SourceRoleReader } from '../src/arch/reader.js';
import { openTensorSource } from '../src/io/source.js';
import { loadSketch } from '../src/store/load-sketches.js';
import { recoverLineage, type SketchedModel } from '../src/tree/lineage.js';
import { placeUnplacedMembers, profileMismatch } from '../src/tree/place-by-alignment.js';
import type { LineageResult } from '../src/tree/types.js';
import { formatBytes } from '../src/cli/progress.js';
import { runLineage } from './cli-child-process.js';
import {
  addLora, fullFineTune, OBFUSCATION_KINDS, obfuscate, randomLlama, writeLlama, type LlamaConfig, type LlamaState,
} from './helpers/synthetic-llama.js';

const CONFIG: LlamaConfig = { hidden: 64, intermediate: 160, layers: 2, heads: 4, kvHeads: 2, headDim: 16, vocab: 96 };

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-tree-obfuscated-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

/** name -> folder of the synthetic forest (written once for every test below). */
const folders = new Map<string, string>();
function write(name: string, state: LlamaState): void {
  const dir = path.join(root, name);
  writeLlama(dir, CONFIG, state, 'BF16');
  folders.set(name, dir);
}

const a0 = randomLlama(CONFIG, 1);
const a1 = addLora(a0, { rank: 4, targets: ['q_proj', 'v_proj'], scale: 0.1 }, 11).state;
const a2 = fullFineTune(a0, 0.05, 12);
const b0 = randomLlama(CONFIG, 2);
const b1 = addLora(b0, { rank: 4, targets: ['v_proj', 'o_proj'], scale: 0.1 }, 21).state;
write('a0', a0);
write('a1', a1);
write('a2', a2);
write('b0', b0);
write('b1', b1);
write('a1-obfuscated', obfuscate(a1, CONFIG, OBFUSCATION_KINDS, 31).state);
write('b1-rescaled', obfuscate(b1, CONFIG, ['scale_norm', 'scale_mlp', 'scale_vo'], 32).state);
// A LoRA (rank 2 on k_proj) on the full fine-tune a2, then obfuscated: a derived member, not a copy.
write('a2-lora-obfuscated', obfuscate(addLora(a2, { rank: 2, targets: ['k_proj'], scale: 0.1 }, 33).state, CONFIG, ['perm_residual', 'perm_mlp', 'scale_qk'], 34).state);
write('u0', randomLlama(CONFIG, 3));

const TRUE_PARENT: Readonly<Record<string, string | null>> = {
  a0: null, a1: 'a0', a2: 'a0', b0: null, b1: 'b0',
  'a1-obfuscated': 'a1', 'b1-rescaled': 'b1', 'a2-lora-obfuscated': 'a2', u0: null,
};

function sketched(names: readonly string[]): SketchedModel[] {
  return names.map((name) => ({ name, sketch: loadSketch(folders.get(name)!, { cacheDir: null }).sketch }));
}

function place(names: readonly string[]): { before: LineageResult; after: LineageResult; opened: string[] } {
  const models = sketched(names);
  const analysis = recoverLineage(models);
  const opened: string[] = [];
  const placed = placeUnplacedMembers(models, analysis, {
    openReader: (name) => {
      opened.push(name);
      return SourceRoleReader.open(folders.get(name)!);
    },
  });
  return { before: analysis.result, after: placed, opened };
}

function parents(result: LineageResult): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const tree of result.trees) for (const m of tree.members) out[m] = null;
  for (const e of result.edges) out[e.child] = e.parent;
  return out;
}

/** Tensor payload bytes of a model: what one whole read costs. */
function payloadBytes(name: string): number {
  const source = openTensorSource(folders.get(name)!);
  try {
    return source.totalBytes;
  } finally {
    source.close();
  }
}

const ALL = Object.keys(TRUE_PARENT);

test('obfuscated members are placed under their true parents; the unrelated model stays alone', () => {
  const started = performance.now();
  const { before, after: result, opened } = place(ALL);
  console.log(`# placement: ${result.alignment?.verifyPasses} verify passes, ${((performance.now() - started) / 1000).toFixed(1)} s`);
  // The sketches alone cannot place the obfuscated members (else this test tests nothing).
  const sketchParents = parents(before);
  assert.notEqual(sketchParents['a1-obfuscated'], 'a1');
  assert.notEqual(sketchParents['a2-lora-obfuscated'], 'a2');

  assert.deepEqual(parents(result), TRUE_PARENT);
  assert.equal(result.trees.length, 3);
  const edge = (child: string) => result.edges.find((e) => e.child === child)!;

  const copy = edge('a1-obfuscated');
  assert.deepEqual({ kind: copy.kind, rank: copy.rank, modules: copy.modules, margin: copy.directionMargin }, { kind: 'lora', rank: 0, modules: [], margin: 0 });
  assert.equal(copy.aligned?.copy, true);
  assert.equal(copy.aligned!.transform.length, 7, copy.aligned!.transform.join('; '));
  assert.equal(edge('b1-rescaled').aligned?.copy, true);

  const derived = edge('a2-lora-obfuscated');
  assert.deepEqual({ kind: derived.kind, rank: derived.rank, modules: derived.modules }, { kind: 'lora', rank: 2, modules: ['k_proj'] });
  assert.equal(derived.aligned?.copy, false);
  assert.ok(derived.directionMargin > 0.5, `norm growth ${derived.directionMargin}`);
  assert.match(derived.aligned!.transform.join('; '), /residual stream permuted.*MLP neurons permuted.*Q\/K heads rescaled/);

  // Sketch-placed edges keep their labels; only placed members carry `aligned`.
  assert.equal(edge('a1').aligned, undefined);
  assert.equal(edge('a1').rank, 4);

  const notes = result.notes ?? [];
  assert.ok(notes.some((n) => /^placed a1-obfuscated under a1 after alignment: an obfuscated copy \(undone: residual stream permuted/.test(n)), notes.join('\n'));
  assert.ok(notes.some((n) => /^could not place u0; alignment did not place it either: related to no tree's root/.test(n)), notes.join('\n'));

  // Cost: every pass read both models once; the opened readers are exactly the passes' models.
  const cost = result.alignment!;
  assert.deepEqual([...cost.models].sort(), ['a1-obfuscated', 'a2-lora-obfuscated', 'b1-rescaled', 'u0']);
  assert.equal(opened.length, 2 * cost.verifyPasses);
  assert.equal(cost.bytesRead, opened.reduce((sum, name) => sum + payloadBytes(name), 0));

  // Input order does not matter.
  const reversed = place([...ALL].reverse()).after;
  assert.deepEqual(reversed, result);
});

test('nothing to place: the result comes back as the sketches gave it, with no verify pass', () => {
  const { before, after: result, opened } = place(['a0', 'a1', 'a2', 'b0', 'b1']);
  assert.equal(result, before);
  assert.deepEqual(opened, []);
});

test('profileMismatch: 0 for the same change, 1 per dense/low-rank disagreement, relative rank gaps', () => {
  const profile = (entries: Array<[string, boolean, number]>) => new Map(entries.map(([k, dense, rank]) => [k, { dense, rank }]));
  const model = profile([['0:q_proj', false, 8], ['0:v_proj', false, 8], ['0:k_proj', false, 0]]);
  assert.equal(profileMismatch(model, model), 0);
  assert.equal(profileMismatch(profile([]), model), 2); // the root: both rank-8 changes unexplained
  assert.equal(profileMismatch(profile([['0:q_proj', false, 24], ['0:v_proj', false, 24]]), model), 2 * (16 / 24));
  assert.equal(profileMismatch(profile([['0:q_proj', true, 64], ['0:v_proj', false, 8]]), model), 1);
});

test('lineage tree CLI: placement by default, --html report, cost note; --no-align leaves the copy alone', async () => {
  const names = ['a0', 'a1', 'b0', 'b1', 'a1-obfuscated'];
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-tree-obfuscated-cli-'));
  const html = path.join(cache, 'tree.html');
  try {
    const args = ['tree', '--cache', cache, ...names.map((n) => folders.get(n)!)];
    const text = await runLineage([...args, '--quiet', '--html', html]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /└── a1-obfuscated {2}obfuscated copy {2}d=\S+ {2}margin=0\n/);
    // Two roots to find its tree, then a1 (the best sketch match): a copy, so no further pass.
    const bytes = 3 * 2 * payloadBytes('a0');
    assert.match(text.stderr, new RegExp(`note: placing a1-obfuscated took 3 verify passes reading ${formatBytes(bytes).replace('.', '\\.')}`));
    const page = fs.readFileSync(html, 'utf8');
    assert.match(page, /obfuscated copy/);
    assert.match(page, /placed a1-obfuscated under a1 after alignment/);

    const unaligned = await runLineage([...args, '--no-align', '--json']);
    assert.equal(unaligned.code, 0, unaligned.stderr);
    const plain = JSON.parse(unaligned.stdout) as LineageResult;
    assert.equal(plain.alignment, undefined);
    assert.notEqual(parents(plain)['a1-obfuscated'], 'a1');
  } finally {
    fs.rmSync(cache, { recursive: true, force: true });
  }
});
