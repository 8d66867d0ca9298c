/**
 * verify on LayerNorm families (ViT, BERT, GPT-2, GPT-NeoX): synthetic models of shapes unlike the ViT zoo's,
 * with a known B·A, read back with exact rank and targets (canonical and native names) under each
 * function-preserving transform alone and all combined; unrelated pairs, full fine-tunes and task
 * heads of another size; the tree on a GPT-2 and a BERT family; and the ViT zoo's pairs and adapter
 * (../shared/zoo-vit beside the repository; skipped with a reason when absent).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { verify } from '../src/api/verify.js';
import type { LineageResult } from '../src/tree/types.js';
import type { VerifyResult } from '../src/verify/types.js';
import { REPO_ROOT, runLineage } from './cli-child-process.js';
import {
  CANONICAL, fullFineTune, loraChild, withBiasChange, withResizedVocabulary, obfuscate, OBFUSCATIONS, randomLayerNormModel, writeLayerNormModel,
  type LayerNormFamily, type LayerNormModel, type LayerNormShape, type Obfuscation, type PlainModule,
} from './helpers/layernorm-models.js';

const SHAPES: Readonly<Record<LayerNormFamily, LayerNormShape>> = {
  vit: { family: 'vit', hidden: 48, heads: 4, layers: 3, ff: 192, vocab: 0, patch: 6, positions: 10, labels: 7 },
  bert: { family: 'bert', hidden: 64, heads: 4, layers: 2, ff: 160, vocab: 300, patch: 0, positions: 24, labels: 3 },
  gpt2: { family: 'gpt2', hidden: 48, heads: 3, layers: 3, ff: 192, vocab: 400, patch: 0, positions: 32, labels: 0 },
  // labels: the output embedding's rows (untied): the vocabulary.
  gpt_neox: { family: 'gpt_neox', hidden: 40, heads: 5, layers: 2, ff: 120, vocab: 350, patch: 0, positions: 0, labels: 350 },
};

/** LoRA targets per family, with the native names PEFT would use for them. */
const LORA: Readonly<Record<LayerNormFamily, { targets: readonly PlainModule[]; native: readonly string[] }>> = {
  vit: { targets: ['q', 'v', 'fc_out'], native: ['query', 'value', 'output.dense'] },
  bert: { targets: ['q', 'k', 'o', 'fc_in'], native: ['query', 'key', 'attention.output.dense', 'intermediate.dense'] },
  gpt2: { targets: ['q', 'k', 'v', 'fc_in'], native: ['c_attn', 'c_fc'] },
  gpt_neox: { targets: ['q', 'k', 'v', 'fc_out'], native: ['query_key_value', 'dense_4h_to_h'] },
};

const RANK = 3;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-layernorm-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

let written = 0;
function write(model: LayerNormModel, dtype: 'F32' | 'BF16' = 'F32'): string {
  const dir = path.join(tmp, `m${written++}`);
  writeLayerNormModel(dir, model, { dtype });
  return dir;
}

function assertLora(result: VerifyResult, family: LayerNormFamily, what: string): void {
  const { targets, native } = LORA[family];
  assert.equal(result.relation, 'derived', `${what}: ${result.reason}`);
  assert.ok(result.lora, `${what}: no LoRA read (${result.reason})`);
  assert.equal(result.lora.rank, RANK, `${what}: rank`);
  assert.deepEqual([...result.lora.targets].sort(), targets.map((t) => CANONICAL[t]).sort(), `${what}: targets`);
  assert.deepEqual([...(result.lora.nativeTargets ?? [])].sort(), [...native].sort(), `${what}: native targets`);
}

/** A dense change between LayerNorm-family relatives: kin, `related`, and the reason says no direction is claimed. */
function assertUndirected(result: VerifyResult, what: string): void {
  assert.equal(result.relation, 'related', `${what}: ${result.reason}`);
  assert.equal(result.fullFineTune, true, what);
  assert.equal(result.lora, null, what);
  assert.ok(result.pValue < 1e-3, `${what}: p = ${result.pValue}`);
  assert.match(result.reason, /which one descends cannot be told from these two models' weights/, what);
}

for (const family of ['vit', 'bert', 'gpt2', 'gpt_neox'] as const) {
  describe(`verify on a synthetic ${family}`, () => {
    const shape = SHAPES[family];
    const base = randomLayerNormModel(shape, 11);
    const child = loraChild(base, LORA[family].targets, RANK, 12);
    const baseDir = write(base);
    // BERT is post-norm: its norm output is the residual, so there is no norm folding to hide.
    const transforms = OBFUSCATIONS.filter((t) => !(family === 'bert' && t === 'norms'));

    test('a LoRA child: exact rank and targets', async () => {
      assertLora(await verify(baseDir, write(child)), family, 'plain');
    });
    for (const transform of transforms) {
      test(`a LoRA child obfuscated by ${transform} alone`, async () => {
        const result = await verify(baseDir, write(obfuscate(child, { [transform]: true }, 13)));
        assertLora(result, family, transform);
      });
    }
    test('a LoRA child under every transform combined', async () => {
      const all: Obfuscation = Object.fromEntries(transforms.map((t) => [t, true]));
      const result = await verify(baseDir, write(obfuscate(child, all, 14)));
      assertLora(result, family, 'combined');
      assert.ok(result.transform.summary.some((line) => line.startsWith('residual stream permuted')), result.transform.summary.join('; '));
    });
    test('a change of fc_in biases alone: up_proj changed (full, rank 0), nothing read as LoRA, no direction claimed', async () => {
      const result = await verify(baseDir, write(withBiasChange(base, 'fc_in', 16)));
      assertUndirected(result, 'bias change');
      assert.equal(result.lora, null);
      for (const layer of result.layers) {
        const changed = layer.modules.filter((m) => m.status !== 'unchanged').map((m) => [m.module, m.status, m.rank, m.biasChanged]);
        assert.deepEqual(changed, [['up_proj', 'full', 0, true]]);
      }
    });
    if (family !== 'vit') {
      test('a LoRA child with a resized vocabulary: the same verdict, the extra tokens left out and said so', async () => {
        const result = await verify(baseDir, write(withResizedVocabulary(child, 20, 17)));
        assertLora(result, family, 'resized vocabulary');
        assert.match(result.leftOut?.note ?? '', new RegExp(`vocabulary beyond the ${shape.vocab} shared tokens`));
      });
    }
    test('an independently initialised model is unrelated', async () => {
      const result = await verify(baseDir, write(randomLayerNormModel(shape, 99)));
      assert.equal(result.relation, 'unrelated', result.reason);
    });
    test('a full fine-tune reads full and related (no direction claimed), its new task head left out and said so', async () => {
      const labels = family === 'gpt_neox' ? shape.labels : shape.labels > 0 ? shape.labels + 2 : 0;
      const result = await verify(baseDir, write(fullFineTune(base, 15, 0.05, labels)));
      assertUndirected(result, 'full fine-tune');
      if (shape.labels > 0 && family !== 'gpt_neox') {
        assert.ok(result.leftOut?.tensors.includes('classifier.weight'), JSON.stringify(result.leftOut));
        assert.match(result.leftOut!.note, /classifier\.weight/);
      }
    });
  });
}

test('a GPT-2 wider than the residual sample is analysed whole: exact rank under every transform', async () => {
  const shape: LayerNormShape = { ...SHAPES.gpt2, hidden: 288, heads: 4, ff: 576, layers: 1, vocab: 600 };
  const base = randomLayerNormModel(shape, 51);
  const all: Obfuscation = Object.fromEntries(OBFUSCATIONS.map((t) => [t, true]));
  const result = await verify(write(base), write(obfuscate(loraChild(base, LORA.gpt2.targets, RANK, 52), all, 53)));
  assertLora(result, 'gpt2', 'wide');
  assert.ok(result.layers.every((l) => l.residualSample === null));
});

test('bf16 storage: a BERT LoRA child, obfuscated, of a float32 base and of its bf16 copy', async () => {
  const base = randomLayerNormModel(SHAPES.bert, 61);
  const child = write(obfuscate(loraChild(base, LORA.bert.targets, RANK, 62), { residual: true, heads: true, neurons: true }, 63), 'BF16');
  for (const dtype of ['F32', 'BF16'] as const) assertLora(await verify(write(base, dtype), child), 'bert', `${dtype} base`);
});

test('fc_in rows that tie (all zero) carry no evidence: a copy reads inconclusive, not derived', async () => {
  const model = randomLayerNormModel(SHAPES.vit, 41);
  for (const layer of model.layers) layer.w.fc_in.data.fill(0);
  const result = await verify(write(model), write(loraChild(model, ['q'], 2, 42)));
  assert.equal(result.relation, 'inconclusive', result.reason);
  assert.equal(result.independence.rowsUsed, 0);
});

/*
 * Why a dense change claims no direction (src/verify/layernorm-direction.ts): a child that shrinks
 * its parent's weights reads a negative norm growth (the reversed direction), siblings trained
 * unequally long read close to +1 (a child's reading). Both orders, obfuscated too, read related.
 */
describe('full fine-tunes in LayerNorm families: kin, no direction claimed', () => {
  const all: Obfuscation = Object.fromEntries(OBFUSCATIONS.map((t) => [t, true]));
  for (const family of ['vit', 'gpt2'] as const) {
    const shape = SHAPES[family];
    const root = randomLayerNormModel(shape, 71);
    const cases: ReadonlyArray<{ what: string; base: LayerNormModel; candidate: LayerNormModel; growth?: (g: number) => boolean; expect?: string }> = [
      { what: 'a child', base: root, candidate: fullFineTune(root, 72, 0.05), growth: (g) => g > 0.5, expect: 'above 0.5' },
      { what: 'a child that shrinks its parent (weights x0.995)', base: root, candidate: fullFineTune(root, 73, 0.05, shape.labels, 0.995), growth: (g) => g < 0, expect: 'below 0' },
      { what: 'siblings, one update 3x the other', base: fullFineTune(root, 74, 0.02), candidate: fullFineTune(root, 75, 0.06), growth: (g) => g > 0.5, expect: 'above 0.5' },
      { what: 'cousins', base: fullFineTune(fullFineTune(root, 76, 0.03), 77, 0.03), candidate: fullFineTune(root, 78, 0.05) },
      { what: 'an obfuscated child', base: root, candidate: obfuscate(fullFineTune(root, 79, 0.05), all, 80) },
      { what: 'an obfuscated shrinking child', base: root, candidate: obfuscate(fullFineTune(root, 81, 0.05, shape.labels, 0.99), all, 82) },
    ];
    for (const c of cases) {
      test(`${family}: ${c.what}, both orders`, async () => {
        const [b, x] = [write(c.base), write(c.candidate)];
        const forward = await verify(b, x);
        assertUndirected(forward, `${c.what} (forward)`);
        assertUndirected(await verify(x, b), `${c.what} (reversed)`);
        if (c.growth) assert.ok(c.growth(forward.direction.normGrowth), `${c.what}: norm growth ${forward.direction.normGrowth}, expected ${c.expect}`);
      });
    }
  }
});

describe('lineage tree on synthetic LayerNorm families', () => {
  for (const family of ['gpt2', 'bert'] as const) {
    test(`a ${family} family: every edge and its direction`, async () => {
      const root = randomLayerNormModel(SHAPES[family], 31);
      const lora = loraChild(root, LORA[family].targets, RANK, 32);
      const full = fullFineTune(root, 33, 0.05);
      const grandchild = loraChild(full, ['q', 'v'], 2, 34);
      const dirs = { root: write(root), lora: write(lora), full: write(full), grandchild: write(grandchild) };
      const names = Object.fromEntries(Object.entries(dirs).map(([k, d]) => [path.basename(d), k]));
      const run = await runLineage(['tree', '--json', '--quiet', '--no-cache', ...Object.values(dirs)]);
      assert.equal(run.code, 0, run.stderr);
      const result = JSON.parse(run.stdout) as LineageResult;
      const edges = result.edges.map((e) => `${names[e.parent]}->${names[e.child]}`).sort();
      assert.deepEqual(edges, ['full->grandchild', 'root->full', 'root->lora']);
    });
  }
});

const VIT = path.resolve(REPO_ROOT, '..', 'shared', 'zoo-vit');
const vitZoo = fs.existsSync(path.join(VIT, 'zoo.json'));
if (!vitZoo) console.log('# ../shared/zoo-vit is absent: the ViT zoo checks are skipped');

interface ZooPair {
  readonly base: string;
  readonly candidate: string;
  readonly relation: 'derived' | 'related' | 'unrelated';
  readonly lora?: { readonly rank: number; readonly targets: readonly string[] };
  readonly full_finetune?: boolean;
}

/** zoo.json's module paths (`attention.attention.query`) in verify's canonical names. */
const ZOO_MODULE: Readonly<Record<string, string>> = {
  'attention.attention.query': 'q_proj', 'attention.attention.key': 'k_proj', 'attention.attention.value': 'v_proj',
  'attention.output.dense': 'o_proj', 'intermediate.dense': 'up_proj', 'output.dense': 'down_proj',
};

describe('verify on the ViT zoo', { skip: !vitZoo && '../shared/zoo-vit is absent' }, () => {
  const pairs: readonly ZooPair[] = vitZoo ? (JSON.parse(fs.readFileSync(path.join(VIT, 'zoo.json'), 'utf8')) as { pairs: ZooPair[] }).pairs : [];
  // Each pair is verified once; the direction todo reads the same result as the pair's own test.
  const results = new Map<string, Promise<VerifyResult>>();
  const verifyPair = (base: string, candidate: string): Promise<VerifyResult> => {
    const key = `${base} -> ${candidate}`;
    if (!results.has(key)) results.set(key, verify(path.join(VIT, base), path.join(VIT, candidate)));
    return results.get(key)!;
  };
  for (const pair of pairs) {
    const label = `${pair.base} -> ${pair.candidate}: ${pair.relation}${pair.lora ? ` (LoRA r=${pair.lora.rank})` : ''}`;
    // Pairs of full fine-tunes: kinship is read; which descends is not claimed (layernorm-direction.ts).
    const directionOnly = !pair.lora && pair.relation !== 'unrelated';
    test(label, async () => {
      const result = await verifyPair(pair.base, pair.candidate);
      assert.deepEqual(result.leftOut?.tensors, ['classifier.weight']);
      if (pair.relation === 'unrelated') {
        assert.equal(result.relation, 'unrelated', result.reason);
      } else if (pair.lora) {
        assert.equal(result.relation, 'derived', result.reason);
        assert.equal(result.lora?.rank, pair.lora.rank);
        assert.deepEqual(result.lora?.targets, pair.lora.targets.map((t) => ZOO_MODULE[t]));
        assert.deepEqual(result.lora?.nativeTargets, pair.lora.targets.map((t) => t.replace('attention.attention.', '')));
      } else {
        assertUndirected(result, label);
      }
    });
    if (directionOnly) {
      test(`${label}: reversed, no direction claimed either`, async () => {
        assertUndirected(await verify(path.join(VIT, pair.candidate), path.join(VIT, pair.base)), `${label} reversed`);
      });
    }
    if (directionOnly && pair.relation === 'derived') {
      test(`${label}: direction`, { todo: 'the direction of a full fine-tune is not read from two models\' weights (layernorm-direction.ts)' }, async () => {
        const result = await verifyPair(pair.base, pair.candidate);
        assert.equal(result.relation, pair.relation, result.reason);
      });
    }
  }

  test('the PEFT adapter folder of v2, applied to v0', async () => {
    const result = await verify(path.join(VIT, 'v0'), path.join(VIT, 'v2-adapter'), { adapter: true });
    assert.equal(result.relation, 'derived', result.reason);
    assert.equal(result.lora?.rank, 8);
    assert.deepEqual(result.lora?.targets, ['q_proj', 'v_proj']);
    assert.deepEqual(result.lora?.nativeTargets, ['query', 'value']);
  });
});
