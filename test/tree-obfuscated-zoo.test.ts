/**
 * Acceptance of obfuscated-member placement on really trained models: the zoo with its three
 * obfuscated copies (o1 = p2 with all seven transforms, o2 = q2 permuted, o3 = p3 rescaled), and
 * the CLI on samples/ (o1 and o3). The two runs go side by side: the CLI is a child process.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { SourceRoleReader } from '../src/arch/reader.js';
import { loadSketch } from '../src/store/load-sketches.js';
import { recoverLineage, type SketchedModel } from '../src/tree/lineage.js';
import { placeUnplacedMembers } from '../src/tree/place-by-alignment.js';
import { parseTruth, scoreAgainstTruth } from '../src/tree/truth.js';
import type { LineageResult } from '../src/tree/types.js';
import { REPO_ROOT, runLineage } from './cli-child-process.js';

const ZOO = path.join(REPO_ROOT, '..', 'shared', 'zoo');
const SAMPLES = path.join(REPO_ROOT, 'samples');
const ZOO_MODELS = ['p0', 'p1', 'p2', 'p3', 'p4', 'p1a', 'p2a', 'p4a', 'q0', 'q1', 'q2', 'o1', 'o2', 'o3'];
const SAMPLE_MODELS = ['p0', 'p1', 'p2', 'p3', 'p4', 'p2a', 'p4a', 'q0', 'q2', 'o1', 'o3'];

/** The edge into each obfuscated model: a copy of its true parent, found by alignment. */
function assertCopies(result: LineageResult, expected: Readonly<Record<string, string>>): void {
  for (const [child, parent] of Object.entries(expected)) {
    const edge = result.edges.find((e) => e.child === child);
    assert.ok(edge, `${child} has no parent`);
    assert.equal(edge.parent, parent, `${child}'s parent`);
    assert.deepEqual({ kind: edge.kind, rank: edge.rank, copy: edge.aligned?.copy }, { kind: 'lora', rank: 0, copy: true }, child);
    assert.ok(edge.aligned!.transform.length > 0, `${child}: no transform reported`);
  }
}

describe('obfuscated members placed on trained models', { concurrency: 2 }, () => {
  test('lineage tree CLI on samples/ with o1 and o3: every edge and both trees, obfuscated models scored', async () => {
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-tree-obfuscated-samples-'));
    try {
      const started = performance.now();
      const run = await runLineage(['tree', '--json', '--cache', cache, '--include-obfuscated', '--truth', path.join(SAMPLES, 'truth.json'),
        ...SAMPLE_MODELS.map((n) => path.join(SAMPLES, n))]);
      assert.equal(run.code, 0, run.stderr);
      const result = JSON.parse(run.stdout) as LineageResult & { score: { edgeAccuracy: number; correctEdges: number; trueEdges: number; clusteringAccuracy: number; excluded: string[] } };
      console.log(`# samples: ${result.score.correctEdges}/${result.score.trueEdges} edges, clustering ${result.score.clusteringAccuracy}, `
        + `${result.alignment?.verifyPasses} verify passes, ${((performance.now() - started) / 1000).toFixed(1)} s`);
      assert.deepEqual(result.score.excluded, []);
      assert.equal(result.score.trueEdges, 9);
      assert.equal(result.score.edgeAccuracy, 1);
      assert.equal(result.score.clusteringAccuracy, 1);
      assert.equal(result.trees.length, 2);
      assertCopies(result, { o1: 'p2', o3: 'p3' });
      assert.deepEqual([...result.alignment!.models].sort(), ['o1', 'o3']);
      // o1: the two roots, then p2; o3 (in p0's tree by the sketches' neuron test): p0, then p3.
      assert.equal(result.alignment!.verifyPasses, 5);
    } finally {
      fs.rmSync(cache, { recursive: true, force: true });
    }
  });

  test('zoo with its obfuscated copies: default method gets every edge (o1 <- p2, o2 <- q2, o3 <- p3) and both trees', (t) => {
    if (!fs.existsSync(path.join(ZOO, 'zoo.json'))) {
      t.skip('zoo not found at ../shared/zoo: skipped');
      console.log('# skipped: ../shared/zoo is absent');
      return;
    }
    const started = performance.now();
    const truth = parseTruth(JSON.parse(fs.readFileSync(path.join(ZOO, 'zoo.json'), 'utf8')));
    const models: SketchedModel[] = ZOO_MODELS.map((n) => ({ name: n, sketch: loadSketch(path.join(ZOO, n), { cacheDir: null }).sketch }));
    const analysis = recoverLineage(models);
    const sketchOnly = scoreAgainstTruth(analysis.result, truth);
    const result = placeUnplacedMembers(models, analysis, { openReader: (name) => SourceRoleReader.open(path.join(ZOO, name)) });
    const score = scoreAgainstTruth(result, truth);
    console.log(`# zoo: sketches alone ${sketchOnly.correctEdges}/${sketchOnly.trueEdges} edges, clustering ${sketchOnly.clusteringAccuracy.toFixed(3)}; `
      + `with placement ${score.correctEdges}/${score.trueEdges}, clustering ${score.clusteringAccuracy.toFixed(3)}; `
      + `${result.alignment?.verifyPasses} verify passes, ${((result.alignment?.bytesRead ?? 0) / 2 ** 20).toFixed(1)} MiB, ${((performance.now() - started) / 1000).toFixed(1)} s`);
    assert.ok(sketchOnly.edgeAccuracy < 1, 'the sketches alone already place every obfuscated copy: nothing tested');
    assert.deepEqual(score.wrongEdges, []);
    assert.deepEqual(score.missedEdges, []);
    assert.equal(score.trueEdges, 12);
    assert.equal(score.edgeAccuracy, 1);
    assert.equal(score.clusteringAccuracy, 1);
    assert.equal(result.trees.length, 2);
    assertCopies(result, { o1: 'p2', o2: 'q2', o3: 'p3' });
    // Sketch-placed edges are untouched by placement.
    const unaligned = new Map(analysis.result.edges.map((e) => [e.child, e]));
    for (const e of result.edges) if (!e.aligned) assert.deepEqual(e, unaligned.get(e.child));
    assert.equal(result.alignment!.verifyPasses, 8);
  });
});
