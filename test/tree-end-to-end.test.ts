import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pairEvidenceFromWeights, summedKurtosis, type ModelWeights } from './helpers/tree-evidence.js';
import { recoverForest, type ForestEvidence, type PairEvidence } from '../src/tree/forest.js';
import { loraRankDistance, recoverMother, rmsDistance } from '../src/tree/mother.js';
import { scoreAgainstTruth } from '../src/tree/truth.js';
import { syntheticFamily, type SyntheticSpec } from './helpers/tree-synthetic.js';

const SHAPE = { layers: 2, modules: ['q_proj', 'v_proj', 'o_proj'], size: 64 } as const;

// Three independent families mixing LoRA and full fine-tunes, with grandchildren.
const SPECS: SyntheticSpec[] = [
  { name: 'a0', kind: 'root' },
  { name: 'a1', kind: 'full', parent: 'a0', scale: 0.3 },
  { name: 'a2', kind: 'lora', parent: 'a0', rank: 4, modules: ['q_proj', 'v_proj'], scale: 0.3 },
  { name: 'a3', kind: 'lora', parent: 'a0', rank: 2, modules: ['q_proj', 'v_proj', 'o_proj'], scale: 0.3 },
  { name: 'a1a', kind: 'full', parent: 'a1', scale: 0.3 },
  { name: 'a2a', kind: 'lora', parent: 'a2', rank: 8, modules: ['q_proj', 'v_proj'], scale: 0.3 },
  { name: 'a1b', kind: 'lora', parent: 'a1', rank: 4, modules: ['v_proj', 'o_proj'], scale: 0.3 },
  { name: 'b0', kind: 'root' },
  { name: 'b1', kind: 'full', parent: 'b0', scale: 0.3 },
  { name: 'b2', kind: 'lora', parent: 'b0', rank: 8, modules: ['q_proj', 'v_proj'], scale: 0.3 },
  { name: 'b1a', kind: 'full', parent: 'b1', scale: 0.3 },
  { name: 'c0', kind: 'root' },
  { name: 'c1', kind: 'lora', parent: 'c0', rank: 2, modules: ['o_proj'], scale: 0.3 },
];

function buildEvidence(names: readonly string[], models: Map<string, ModelWeights>): ForestEvidence {
  const pairs: PairEvidence[] = [];
  for (let i = 0; i < names.length; i++) {
    for (let j = i + 1; j < names.length; j++) {
      pairs.push(pairEvidenceFromWeights(i, j, models.get(names[i]!)!, models.get(names[j]!)!));
    }
  }
  return {
    models: names.map((name) => ({ name, key: `key-${name}`, kurtosis: summedKurtosis(models.get(name)!.values()) })),
    pairs,
  };
}

const truth = { models: SPECS.map((s) => ({ name: s.name, parent: s.kind === 'root' ? null : s.parent })) };

test('end to end on matrices: three families of LoRA and full fine-tunes are recovered exactly', () => {
  const models = syntheticFamily(SPECS, SHAPE, 7);
  const names = SPECS.map((s) => s.name);
  const evidence = buildEvidence(names, models);
  const result = recoverForest(evidence);
  const score = scoreAgainstTruth(result, truth);
  assert.deepEqual(score.wrongEdges, []);
  assert.equal(score.edgeAccuracy, 1);
  assert.equal(score.clusteringAccuracy, 1);
  assert.deepEqual(result.trees.map((t) => t.root), ['a0', 'b0', 'c0']);
  const label = (child: string) => {
    const e = result.edges.find((x) => x.child === child)!;
    return `${e.kind}:${e.rank}:${e.modules.join(',')}`;
  };
  assert.equal(label('a1'), 'full:null:');
  assert.equal(label('a2'), 'lora:4:q_proj,v_proj');
  assert.equal(label('a3'), 'lora:2:o_proj,q_proj,v_proj');
  assert.equal(label('a2a'), 'lora:8:q_proj,v_proj');
  assert.equal(label('a1b'), 'lora:4:o_proj,v_proj');
  assert.equal(label('b2'), 'lora:8:q_proj,v_proj');
  assert.equal(label('c1'), 'lora:2:o_proj');
  for (const e of result.edges) assert.ok(e.directionMargin > 0, `${e.parent}->${e.child} margin ${e.directionMargin}`);
});

test('end to end: the paper method recovers a full fine-tune tree and a LoRA tree', () => {
  const fullSpecs = SPECS.filter((s) => ['b0', 'b1', 'b1a'].includes(s.name)).concat([
    { name: 'b3', kind: 'full', parent: 'b0', scale: 0.25 },
    { name: 'b3a', kind: 'full', parent: 'b3', scale: 0.25 },
  ]);
  const loraSpecs: SyntheticSpec[] = [
    { name: 'r', kind: 'root' },
    { name: 'r1', kind: 'lora', parent: 'r', rank: 4, modules: ['q_proj', 'v_proj'], scale: 0.3 },
    { name: 'r2', kind: 'lora', parent: 'r', rank: 2, modules: ['q_proj', 'v_proj', 'o_proj'], scale: 0.3 },
    { name: 'r1a', kind: 'lora', parent: 'r1', rank: 4, modules: ['v_proj'], scale: 0.3 },
  ];
  for (const [specs, kind] of [[fullSpecs, 'full'], [loraSpecs, 'lora']] as const) {
    const models = syntheticFamily(specs, SHAPE, 11);
    const names = specs.map((s) => s.name);
    const weights = names.map((n) => models.get(n)!);
    const distance = weights.map((a) =>
      weights.map((b) => {
        const deltas = [...a.keys()].map((k) => a.get(k)!.data.map((x, i) => x - b.get(k)!.data[i]!));
        if (kind === 'full') return rmsDistance(deltas);
        const evidence = pairEvidenceFromWeights(0, 1, a, b);
        return loraRankDistance([evidence.lowRank?.rankSum ?? 0]);
      }),
    );
    const result = recoverMother({ names, kind, distance, kurtosis: weights.map((w) => summedKurtosis(w.values())) });
    const specTruth = { models: specs.map((s) => ({ name: s.name, parent: s.kind === 'root' ? null : s.parent })) };
    const score = scoreAgainstTruth(result, specTruth);
    assert.deepEqual(score.wrongEdges, [], kind);
    assert.equal(score.edgeAccuracy, 1);
  }
});
