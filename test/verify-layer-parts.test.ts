/**
 * A Llama-style layer is analysed as two jobs, attention and MLP (verify/layer.ts, LayerPart), so
 * an analyst holds half a layer. Merged, the two parts give exactly what the layer analysed whole
 * in one thread gives, in the jobs' analysts (this thread or workers) and in verify, including a
 * layer whose one part changed densely and the other by a LoRA (the LoRA part is analysed again
 * to read its components, which a dense layer's outcome sums over every changed module).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import type { RoleReader } from '../src/arch/reader.js';
import type { LayerWeights } from '../src/align/llama-block.js';
import { Rng } from '../src/linalg/rng.js';
import { addComponents, NO_COMPONENTS, summarizeComponents } from '../src/verify/direction.js';
import { BufferPool } from '../src/verify/buffer-pool.js';
import { LayerAnalyst, onCommonGrid, type Job, type ReadLayer } from '../src/verify/jobs.js';
import { analyseLayer, mergeParts, PART_ROLES, partToReread, type LayerContext, type LayerOutcome, type LayerPart, type PartOutcome } from '../src/verify/layer.js';
import { memoryPlan, readLayer, readNorms } from '../src/verify/layer-reading.js';
import { verifyModels } from '../src/verify/verify.js';
import { withReaders } from './helpers/timed-verify.js';
import {
  addLora, cloneState, fullFineTune, obfuscate, pruneNeurons, randomLlama, writeLlama, type LlamaConfig, type LlamaState, type ObfuscationKind,
} from './helpers/synthetic-llama.js';

const CONFIG: LlamaConfig = { hidden: 64, intermediate: 160, layers: 3, heads: 4, kvHeads: 2, headDim: 16, vocab: 96 };
/** Every obfuscation but the residual permutation: the layers are compared in the stored residual order. */
const IN_LAYER: readonly ObfuscationKind[] = ['perm_mlp', 'perm_heads', 'scale_norm', 'scale_vo', 'scale_qk', 'scale_mlp'];

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-verify-layer-parts-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

/** `changed`'s tensors of the roles named (e.g. `mlp.`), others as `kept`. */
function mixState(kept: LlamaState, changed: LlamaState, roles: RegExp): LlamaState {
  const out = cloneState(kept);
  for (const [name, t] of changed) if (roles.test(name)) out.set(name, t);
  return out;
}

function write(label: string, state: LlamaState): string {
  const dir = path.join(root, label);
  writeLlama(dir, CONFIG, state, 'BF16');
  return dir;
}

const baseState = randomLlama(CONFIG, 51);
const loraAll = addLora(baseState, { rank: 3, targets: ['q_proj', 'v_proj', 'up_proj'], scale: 0.1 }, 52).state;
const full = fullFineTune(baseState, 0.05, 53);
const CASES: ReadonlyArray<{ name: string; candidate: LlamaState; reread: LayerPart | null }> = [
  { name: 'LoRA on q, v, up', candidate: loraAll, reread: null },
  { name: 'LoRA on q, v; MLP fine-tuned densely', candidate: mixState(loraAll, full, /\.mlp\./), reread: 'attention' },
  { name: 'attention fine-tuned densely; LoRA on up', candidate: mixState(loraAll, full, /\.self_attn\./), reread: 'mlp' },
  { name: 'full fine-tune', candidate: full, reread: null },
];
const baseDir = write('base', baseState);
const candidateDirs = CASES.map((c, i) => write(`candidate${i}`, obfuscate(c.candidate, CONFIG, IN_LAYER, 60 + i).state));

/** The context of layers compared in their stored residual order, with verify's probes at seed 1 (verify.ts). */
function storedOrderContext(): LayerContext {
  const hidden = CONFIG.hidden, seed = 1;
  const residual = { order: Int32Array.from({ length: hidden }, (_, i) => i), sign: new Float64Array(hidden).fill(1), quality: 1, moved: 0, flipped: 0 };
  const probes = new Rng(seed + 99).gaussianMatrix(hidden, hidden);
  return { whole: { residual, probes }, sampled: null, layout: { heads: CONFIG.heads, kvHeads: CONFIG.kvHeads, headDim: CONFIG.headDim }, seed };
}

function readSide(reader: RoleReader, other: RoleReader, index: number, side: 'base' | 'candidate', part: LayerPart | null): ReadLayer {
  const norms = readNorms(side === 'base' ? reader : other, side === 'base' ? other : reader, index);
  return readLayer(reader, index, { input: norms.input[side], post: norms.post[side] }, null, null, part ? PART_ROLES[part] : undefined);
}

/** The whole layer of both models in the analysis form, as one in-thread analysis takes it. */
function wholeLayer(base: RoleReader, candidate: RoleReader, index: number): { base: LayerWeights; candidate: LayerWeights } {
  const b = readSide(base, candidate, index, 'base', null), c = readSide(candidate, base, index, 'candidate', null);
  const pairs = Object.fromEntries(Object.keys(PART_ROLES).flatMap((part) => PART_ROLES[part as LayerPart]).map((role) => [role, onCommonGrid(b.modules[role]!, c.modules[role]!)]));
  const side = (read: ReadLayer, s: 'base' | 'candidate'): LayerWeights => ({
    q: pairs.q![s], k: pairs.k![s], v: pairs.v![s], o: pairs.o![s], gate: pairs.gate![s], up: pairs.up![s], down: pairs.down![s],
    inputNorm: read.inputNorm.values.slice(), inputNormVariance: read.inputNorm.variance, postNorm: read.postNorm.values.slice(),
  });
  return { base: side(b, 'base'), candidate: side(c, 'candidate') };
}

function partJob(base: RoleReader, candidate: RoleReader, index: number, part: LayerPart, layerDense: boolean): Job {
  return { index, part, layerDense, base: readSide(base, candidate, index, 'base', part), candidate: readSide(candidate, base, index, 'candidate', part), sampled: false };
}

/** The outcome of one job run by `analyst` (its decode buffers given back before it, some possibly in two replies). */
function outcomeOf(analyst: LayerAnalyst, job: Job): PartOutcome {
  let outcome: PartOutcome | null = null;
  analyst.run(job, (result) => {
    if (result.outcome) outcome = result.outcome as PartOutcome;
  });
  if (!outcome) throw new Error(`layer ${job.index}: no outcome`);
  return outcome;
}

function withoutTimings(outcome: LayerOutcome): Omit<LayerOutcome, 'alignSeconds' | 'analyseSeconds'> {
  const { alignSeconds: _a, analyseSeconds: _s, ...rest } = outcome;
  return rest;
}

describe('a layer analysed as two jobs (attention, MLP) equals the layer analysed whole', () => {
  CASES.forEach(({ name, reread }, caseIndex) => {
    test(name, () => {
      withReaders(baseDir, candidateDirs[caseIndex]!, (base, candidate) => {
        const context = storedOrderContext();
        const analyst = new LayerAnalyst(context);
        const analysePart = (index: number, part: LayerPart, layerDense: boolean): PartOutcome => outcomeOf(analyst, partJob(base, candidate, index, part, layerDense));
        let components = NO_COMPONENTS;
        for (let index = 0; index < CONFIG.layers; index++) {
          const whole = wholeLayer(base, candidate, index);
          const expected = analyseLayer(index, whole.base, whole.candidate, context, false);
          const attention = analysePart(index, 'attention', false), mlp = analysePart(index, 'mlp', false);
          const again = partToReread(attention, mlp);
          assert.equal(again?.part ?? null, reread, `layer ${index}: the part analysed again`);
          if (again) assert.throws(() => mergeParts(attention, mlp), /components/);
          const parts = again ? [again === attention ? mlp : attention, analysePart(index, again.part, true)] : [attention, mlp];
          assert.deepEqual(withoutTimings(mergeParts(parts[0]!, parts[1]!)), withoutTimings(expected), `layer ${index}`);
          assert.deepEqual(withoutTimings(mergeParts(parts[1]!, parts[0]!)), withoutTimings(expected), `layer ${index}, parts in the other order`);
          components = addComponents(components, expected.components);
          if (again) {
            // The LoRA part's components count: what the dense part read alone is less.
            const dense = again === attention ? mlp : attention;
            assert.ok(expected.components.directions > dense.components.directions, `layer ${index}: ${JSON.stringify(expected.components)}`);
          }
        }
        // verify (residual aligned from the embeddings: the stored order) gives the same, in this thread and in 2 workers.
        for (const workers of [0, 2]) {
          const result = verifyModels(base, candidate, { workers });
          assert.equal(result.transform.residualPermuted, 0);
          for (let index = 0; index < CONFIG.layers; index++) {
            const whole = wholeLayer(base, candidate, index);
            assert.deepEqual(result.layers[index], analyseLayer(index, whole.base, whole.candidate, context, false).evidence, `${workers} workers, layer ${index}`);
          }
          if (result.fullFineTune) assert.deepEqual(result.direction.components, summarizeComponents(components), `${workers} workers`);
          else assert.equal(reread, null);
        }
      });
    });
  });
});

test('the MLP job forms down in the memory of gate and up once they are fitted unchanged: a pool of the planned size allocates nothing after the first job', () => {
  // LoRA on q and v, a fifth of the candidate's neurons pruned, obfuscated: the MLP is unchanged
  // once aligned, with the pruned neurons set aside (down's columns too, formed after the rest).
  const child = pruneNeurons(addLora(baseState, { rank: 2, targets: ['q_proj', 'v_proj'], scale: 0.1 }, 71).state, CONFIG, 0.2, 72);
  const dir = write('pruned-lora', obfuscate(child.state, CONFIG, IN_LAYER, 73).state);
  withReaders(baseDir, dir, (base, candidate) => {
    const context = storedOrderContext();
    const pool = new BufferPool(memoryPlan(base, candidate, null).analysisBytes);
    const pooled = new LayerAnalyst(context, pool), fresh = new LayerAnalyst(context);
    const mlpDecodes = 2 * 3 * CONFIG.hidden * CONFIG.intermediate;
    for (let index = 0; index < CONFIG.layers; index++) {
      const allocated = pool.allocated;
      const returned: number[] = [];
      let outcome: PartOutcome | null = null;
      pooled.run(partJob(base, candidate, index, 'mlp', false), (result) => {
        returned.push(result.buffers.reduce((bytes, b) => bytes + b.byteLength, 0));
        if (result.outcome) outcome = result.outcome as PartOutcome;
      });
      const expected = outcomeOf(fresh, partJob(base, candidate, index, 'mlp', false));
      const { alignSeconds: _a, analyseSeconds: _s, ...found } = outcome!, { alignSeconds: _ea, analyseSeconds: _es, ...wanted } = expected;
      assert.deepEqual(found, wanted, `layer ${index}`);
      assert.deepEqual(wanted.modules.map((m) => m.status), ['unchanged', 'unchanged', 'unchanged'], `layer ${index}`);
      assert.deepEqual(wanted.mlp?.prunedNeurons, { base: 0, candidate: child.perLayer }, `layer ${index}`);
      // Every decode comes back: gate's and up's with the form, down's once formed.
      assert.deepEqual(returned, [2 * 4 * mlpDecodes / 3, 4 * mlpDecodes / 3, 0], `layer ${index}`);
      if (index > 0) assert.equal(pool.allocated, allocated, `layer ${index}: down's form came from gate's and up's memory`);
    }
    assert.ok(pool.reused >= (CONFIG.layers - 1) * 12, `${pool.reused} reused`);
  });
});
