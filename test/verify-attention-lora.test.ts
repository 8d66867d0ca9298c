/**
 * A LoRA of one rank on every attention module (q, k, v, o), and on all seven modules, read
 * exactly through all seven function-preserving transforms at once, GQA and MHA: both matrices of
 * every scaled pair (Q/K, V/O, up/down) change, and the scale fit must still recover the gauge.
 * The adapters' spectra decay as trained ones do (the last direction a tenth of the first).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { timedVerify as verify } from './helpers/timed-verify.js';
import { addLora, OBFUSCATION_KINDS, obfuscate, randomLlama, writeLlama, type LlamaConfig, type Module } from './helpers/synthetic-llama.js';

// Wide enough that rank 16 stays a quarter of K's and V's rows (32-row GQA blocks make it half).
const GQA: LlamaConfig = { hidden: 128, intermediate: 320, layers: 2, heads: 8, kvHeads: 4, headDim: 16, vocab: 160 };
const MHA: LlamaConfig = { ...GQA, kvHeads: 8 };
const ATTENTION: Module[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];
const ALL: Module[] = [...ATTENTION, 'gate_proj', 'up_proj', 'down_proj'];

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-verify-attention-lora-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

for (const [name, config] of [['GQA 8/4 heads', GQA], ['MHA 8/8 heads', MHA]] as const) {
  describe(`verify: LoRA on every attention module, all seven transforms, ${name}`, () => {
    const base = randomLlama(config, 81);
    const baseDir = path.join(root, `${name}-base`);
    writeLlama(baseDir, config, base, 'BF16');
    for (const [targets, rank] of [[ATTENTION, 4], [ATTENTION, 16], [ALL, 8]] as const) {
      test(`rank ${rank} on ${targets.join(',')}: exact rank, targets and layers`, () => {
        const lora = addLora(base, { rank, targets, scale: 0.05, decay: 0.1 }, 82 + rank);
        const obfuscated = obfuscate(lora.state, config, OBFUSCATION_KINDS, 83 + rank);
        const dir = path.join(root, `${name}-${rank}-${targets.length}`);
        writeLlama(dir, config, obfuscated.state, 'BF16');
        const result = verify(`${name} rank ${rank} on ${targets.length} modules, obfuscated`, baseDir, dir);
        const ranks = result.layers.map((l) => `L${l.layer}: ${l.modules.map((m) => `${m.module}=${m.rank}`).join(' ')}, probe ${l.probeRank}`).join('; ');
        assert.equal(result.relation, 'derived', result.reason);
        assert.equal(result.fullFineTune, false, ranks);
        assert.deepEqual(result.lora, { rank, targets: lora.targets, layers: lora.layers, stacked: false }, ranks);
        // The probe sees the change of W_v W_o, of rank r_v + r_o at most; its faintest directions
        // (products of the adapters' weakest ones) may sink below the probe's noise edge.
        for (const layer of result.layers) assert.ok(layer.probeRank !== null && layer.probeRank > rank && layer.probeRank <= 2 * rank, ranks);
      });
    }
  });
}
