/**
 * Adapters on fused modules as tree members (src/tree/adapters.ts): a GPT-2 `c_attn` factor
 * changes q, k and v at once, so it is checked against their stacked rows and its update counted
 * in the edge's distance; an adapter made for another width is refused with the shapes named.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { SourceRoleReader } from '../src/arch/reader.js';
import { PLAIN_ROLES } from '../src/arch/types.js';
import { EXIT } from '../src/io/errors.js';
import { runLineage } from './cli-child-process.js';
import { randomLayerNormModel, writeLayerNormAdapter, writeLayerNormModel, type LayerNormShape } from './helpers/layernorm-models.js';

const GPT2: LayerNormShape = { family: 'gpt2', hidden: 48, heads: 3, layers: 3, ff: 192, vocab: 400, patch: 0, positions: 32, labels: 0 };
const RANK = 3;

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-tree-fused-adapter-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

/** Sum of squares of the base's layer-stack matrices (what the edge's distance is relative to). */
function layerStackSquaredNorm(dir: string): number {
  const reader = SourceRoleReader.open(dir);
  try {
    let sum = 0;
    for (let layer = 0; layer < reader.map.layers.length; layer++) {
      for (const role of PLAIN_ROLES) for (const v of reader.layer(layer, role).data) sum += v * v;
    }
    return sum;
  } finally {
    reader.close();
  }
}

test('tree: a GPT-2 c_attn + c_proj adapter hangs under its base with every factor counted; one for a wider GPT-2 is refused', async () => {
  // The adapters name their base `base`: the folder of that name.
  const base = path.join(root, 'base');
  writeLayerNormModel(base, randomLayerNormModel(GPT2, 51));
  const fitting = path.join(root, 'fits'), wider = path.join(root, 'wider');
  const factors = writeLayerNormAdapter(fitting, GPT2, ['c_attn', 'c_proj'], RANK, 52);
  writeLayerNormAdapter(wider, { ...GPT2, hidden: 60, heads: 4 }, ['c_attn'], RANK, 53);

  const run = await runLineage(['tree', '--json', '--no-cache', '--quiet', base, fitting, wider]);
  assert.equal(run.code, EXIT.ok, run.stderr);
  const result = JSON.parse(run.stdout) as {
    edges: Array<{ parent: string; child: string; kind: string; rank: number; modules: string[]; distance: number | null }>;
    skipped: Array<{ path: string; reason: string }>;
  };
  const edge = result.edges.find((e) => e.child === 'fits');
  assert.ok(edge, `no edge to the fitting adapter: ${run.stdout}`);
  assert.equal(edge.parent, 'base');
  assert.equal(edge.kind, 'lora');
  assert.equal(edge.rank, RANK);
  assert.deepEqual([...edge.modules].sort(), ['c_attn', 'c_proj']);
  // Every factor (scale 1) is counted: c_attn's update over q, k and v as well as both c_proj's.
  let delta = 0;
  for (const f of factors.values()) {
    for (let i = 0; i < f.out; i++) {
      for (let j = 0; j < f.in; j++) {
        let v = 0;
        for (let t = 0; t < RANK; t++) v += f.B[i * RANK + t]! * f.A[t * f.in + j]!;
        delta += v * v;
      }
    }
  }
  const expected = Math.sqrt(delta / layerStackSquaredNorm(base));
  assert.ok(edge.distance !== null && Math.abs(edge.distance / expected - 1) < 0.02, `distance ${edge.distance}, expected ${expected}`);

  const refused = result.skipped.find((s) => s.path === wider);
  assert.ok(refused, `the wider adapter was not refused: ${run.stdout}`);
  assert.match(refused.reason, /c_attn factors of layer 0 make a 180x60 update, but base's matrices \(q, k, v\) are 48x48 \+ 48x48 \+ 48x48/);
});
