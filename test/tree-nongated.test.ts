/**
 * The tree's relatedness test on non-gated MLPs (ViT, BERT, GPT-2 style: fc_in, fc_out): the two
 * views of the same neurons are fc_in's rows and fc_out's columns. Calibrated like the gated one:
 * independently initialised pairs are not called related, fine-tunes (neurons permuted or not)
 * are, far below the tree's family-wise threshold; and the ViT zoo's two families stay apart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SourceRoleReader } from '../src/arch/reader.js';
import { Rng } from '../src/linalg/rng.js';
import { resolveSketchOptions, type ModelSketch } from '../src/sketch/types.js';
import { sketchModel } from '../src/sketch/sketch-model.js';
import { relatednessLog10P } from '../src/tree/sketch-evidence.js';
import type { LineageResult } from '../src/tree/types.js';
import { FakeSource, type FakeTensor } from './arch-fake-source.js';
import { REPO_ROOT, runLineage } from './cli-child-process.js';

const HIDDEN = 96, FF = 384, LAYERS = 4;

type Weights = Map<string, Float32Array>;

function randomVit(seed: number): Weights {
  const rng = new Rng(seed);
  const w: Weights = new Map();
  const matrix = (rows: number, cols: number) => Float32Array.from({ length: rows * cols }, () => rng.gaussian() / Math.sqrt(cols));
  for (let l = 0; l < LAYERS; l++) {
    const p = `vit.encoder.layer.${l}.`;
    for (const m of ['attention.attention.query', 'attention.attention.key', 'attention.attention.value', 'attention.output.dense']) w.set(`${p}${m}.weight`, matrix(HIDDEN, HIDDEN));
    w.set(`${p}intermediate.dense.weight`, matrix(FF, HIDDEN));
    w.set(`${p}output.dense.weight`, matrix(HIDDEN, FF));
  }
  return w;
}

/** A fine-tune: every weight moved by `step` of its own scale; with `permute`, the MLP's neurons reordered too (the same function). */
function fineTune(base: Weights, seed: number, step: number, permute: boolean): Weights {
  const rng = new Rng(seed);
  const out: Weights = new Map([...base].map(([k, v]) => [k, Float32Array.from(v, (x) => x + step * rng.gaussian() / Math.sqrt(HIDDEN))]));
  if (!permute) return out;
  for (let l = 0; l < LAYERS; l++) {
    const order = rng.permutation(FF);
    const fcIn = out.get(`vit.encoder.layer.${l}.intermediate.dense.weight`)!, fcOut = out.get(`vit.encoder.layer.${l}.output.dense.weight`)!;
    const newIn = new Float32Array(fcIn.length), newOut = new Float32Array(fcOut.length);
    for (let n = 0; n < FF; n++) {
      newIn.set(fcIn.subarray(order[n]! * HIDDEN, (order[n]! + 1) * HIDDEN), n * HIDDEN);
      for (let i = 0; i < HIDDEN; i++) newOut[i * FF + n] = fcOut[i * FF + order[n]!]!;
    }
    out.set(`vit.encoder.layer.${l}.intermediate.dense.weight`, newIn);
    out.set(`vit.encoder.layer.${l}.output.dense.weight`, newOut);
  }
  return out;
}

function sketch(weights: Weights): ModelSketch {
  const specs: Record<string, FakeTensor> = {};
  for (const [name, data] of weights) specs[name] = { shape: name.includes('intermediate') ? [FF, HIDDEN] : name.includes('output.dense') && !name.includes('attention') ? [HIDDEN, FF] : [HIDDEN, HIDDEN], data };
  for (let l = 0; l < LAYERS; l++) {
    for (const n of ['layernorm_before', 'layernorm_after']) specs[`vit.encoder.layer.${l}.${n}.weight`] = { shape: [HIDDEN], data: new Float32Array(HIDDEN).fill(1) };
  }
  const config = { architectures: ['ViTForImageClassification'], model_type: 'vit', hidden_size: HIDDEN, intermediate_size: FF, num_hidden_layers: LAYERS, num_attention_heads: 4 };
  const source = new FakeSource(specs, config);
  return sketchModel(new SourceRoleReader(source), 'fake', resolveSketchOptions({}));
}

test('non-gated MLPs: independent pairs are not related; fine-tunes, neurons permuted or not, are', () => {
  const p: number[] = [];
  for (let pair = 0; pair < 12; pair++) {
    const log10P = relatednessLog10P(sketch(randomVit(100 + 2 * pair)).neurons, sketch(randomVit(101 + 2 * pair)).neurons);
    assert.ok(Number.isFinite(log10P), 'the non-gated test runs (no longer untestable)');
    p.push(log10P);
  }
  console.log(`independent pairs: log10 p ${p.map((x) => x.toFixed(2)).join(" ")}`);
  assert.ok(p.every((x) => x > -3), `independent pairs: log10 p ${p.map((x) => x.toFixed(2)).join(' ')}`);
  assert.ok(p.filter((x) => x < -2).length <= 1, 'at most one independent pair below p = 0.01 of twelve');
  const base = randomVit(7);
  const a = sketch(base);
  for (const permute of [false, true]) {
    const related = relatednessLog10P(a.neurons, sketch(fineTune(base, 8, 0.3, permute)).neurons);
    console.log(`fine-tune (permuted ${permute}): log10 p ${related.toFixed(1)}`);
    assert.ok(related < -20, `fine-tune (permuted ${permute}): log10 p ${related}`);
  }
});

const VIT = path.join(REPO_ROOT, '..', 'shared', 'zoo-vit');

test('tree on the ViT zoo: its two families apart and every edge right', { skip: !fs.existsSync(path.join(VIT, 'zoo.json')) && '../shared/zoo-vit is absent' }, async () => {
  const run = await runLineage(['tree', '--json', '--quiet', '--no-cache', '--no-align', '--truth', path.join(VIT, 'zoo.json'),
    ...['v0', 'v1', 'v1a', 'v2', 'v2a', 'v3', 'w0', 'w1'].map((n) => path.join(VIT, n))]);
  assert.equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout) as LineageResult & { score: { correctEdges: number; trueEdges: number; clusteringAccuracy: number } };
  assert.equal(result.trees.length, 2);
  assert.equal(result.score.correctEdges, result.score.trueEdges);
  assert.equal(result.score.clusteringAccuracy, 1);
});
