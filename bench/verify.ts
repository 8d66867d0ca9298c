/**
 * Benchmark: how verify's wall time compares with just reading both models.
 *
 *   npm run bench:verify -- [--shape tiny|small|1b|7b-slice|7b] [--workers N] [--keep] [--dir DIR] [--cold]
 *
 * --cold: empty the page cache before verify (Linux, as root), so it reads from the disk as the
 * cold read does; without it, verify reads whatever the earlier phases left cached.
 * --workers: verify's layer worker threads (default one per core; 0 analyses in the main thread).
 *
 * 7b-slice has the 7B widths (hidden 4096, intermediate 11008, vocab 32000) with 2 layers: the
 * per-layer cost and peak memory at full width, without writing 27 GB.
 *
 * Writes a synthetic bf16 Llama base and a candidate = base + LoRA (rank 16 on q_proj, v_proj),
 * obfuscated by a residual permutation, MLP neuron permutations and V/O rescaling, to a temp
 * folder (generated layer by layer, so memory stays bounded at any shape), then times in separate
 * child processes, so each peak RSS is its own: a plain sequential read of both models' payload
 * (bounded-buffer reads, no decode) twice, a cold read of both files (dd with O_DIRECT), then
 * verifyModels. Prints the ratios verify / read (page cache and cold),
 * peak RSS, the verdict and the LoRA rank found. verifyModels runs with one worker thread per core unless --workers says otherwise.
 */
import { directReadSeconds, tryDropPageCache } from './disk.js';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import Table from 'cli-table3';
import { SourceRoleReader } from '../src/arch/reader.js';
import { openSafetensorsSource } from '../src/io/source.js';
import { encodeValues, writeSafetensorsStreaming, type TensorSpec } from '../src/io/writer.js';
import { Rng } from '../src/linalg/rng.js';
import { verifyModels } from '../src/verify/verify.js';
import {
  addLora, hfConfig, moduleShape, MODULES, obfuscate, randomGlobals, randomLayer, tensorName, type LlamaConfig, type LlamaState, type ObfuscationKind,
} from '../test/helpers/synthetic-llama.js';

const SHAPES: Readonly<Record<string, LlamaConfig>> = {
  tiny: { hidden: 512, intermediate: 1408, layers: 2, vocab: 2048, heads: 8, kvHeads: 4, headDim: 64 },
  small: { hidden: 1024, intermediate: 2816, layers: 8, vocab: 4096, heads: 16, kvHeads: 8, headDim: 64 },
  '1b': { hidden: 2048, intermediate: 5632, layers: 16, vocab: 32000, heads: 32, kvHeads: 8, headDim: 64 },
  '7b-slice': { hidden: 4096, intermediate: 11008, layers: 2, vocab: 32000, heads: 32, kvHeads: 32, headDim: 128 },
  '7b': { hidden: 4096, intermediate: 11008, layers: 32, vocab: 32000, heads: 32, kvHeads: 32, headDim: 128 },
};

const LORA = { rank: 16, targets: ['q_proj', 'v_proj'] as const, scale: 0.1 };
const KINDS: readonly ObfuscationKind[] = ['perm_residual', 'perm_mlp', 'scale_vo'];
const SEED = 7;

/** The base and candidate tensors of one layer (or of the globals when layer is null), regenerated on demand. */
function makePieces(config: LlamaConfig): (layer: number | null) => { base: LlamaState; candidate: LlamaState } {
  const residual = new Rng(SEED).permutation(config.hidden);
  let cached: { layer: number | null; base: LlamaState; candidate: LlamaState } | null = null;
  return (layer) => {
    if (cached && cached.layer === layer) return cached;
    cached = null; // drop the previous layer before building the next
    const rng = new Rng(SEED * 1000 + (layer ?? -1) + 1);
    const base = layer === null ? randomGlobals(config, rng) : randomLayer(config, layer, rng);
    const child = layer === null ? base : addLora(base, { ...LORA, targets: [...LORA.targets], layers: [layer] }, SEED + 2 * layer).state;
    const candidate = obfuscate(child, config, KINDS, SEED + 2 * (layer ?? -1) + 1, { residual }).state;
    cached = { layer, base, candidate };
    return cached;
  };
}

function layerOf(name: string): number | null {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : null;
}

/** Write both models to dir/base and dir/candidate: one bf16 safetensors file each, tensors in sorted name order. */
function writeModels(dir: string, config: LlamaConfig): void {
  const pieces = makePieces(config);
  const shapes = new Map<string, readonly number[]>([
    ['model.embed_tokens.weight', [config.vocab, config.hidden]], ['model.norm.weight', [config.hidden]],
    ['lm_head.weight', [config.vocab, config.hidden]],
  ]);
  for (let layer = 0; layer < config.layers; layer++) {
    for (const module of MODULES) shapes.set(tensorName(layer, module), moduleShape(config, module));
    for (const norm of ['input_layernorm', 'post_attention_layernorm']) shapes.set(`model.layers.${layer}.${norm}.weight`, [config.hidden]);
  }
  const specs: TensorSpec[] = [...shapes.keys()].sort().map((name) => ({ name, dtype: 'BF16', shape: shapes.get(name)! }));
  const folders = { base: path.join(dir, 'base'), candidate: path.join(dir, 'candidate') };
  for (const folder of Object.values(folders)) {
    fs.mkdirSync(folder, { recursive: true });
    fs.writeFileSync(path.join(folder, 'config.json'), JSON.stringify(hfConfig(config, 'BF16'), null, 2));
  }
  // Each layer is generated once: the candidate's payload (same tensor order) is spilled while the
  // base is written, then streamed back behind the candidate's header.
  const spill = path.join(dir, 'candidate.payload');
  const spillFd = fs.openSync(spill, 'w');
  try {
    writeSafetensorsStreaming(path.join(folders.base, 'model.safetensors'), specs, (spec, write) => {
      const piece = pieces(layerOf(spec.name));
      write(encodeValues('BF16', piece.base.get(spec.name)!.data));
      fs.writeSync(spillFd, encodeValues('BF16', piece.candidate.get(spec.name)!.data));
    }, { format: 'pt' });
  } finally {
    fs.closeSync(spillFd);
  }
  const readFd = fs.openSync(spill, 'r');
  try {
    const chunk = Buffer.alloc(16 << 20);
    writeSafetensorsStreaming(path.join(folders.candidate, 'model.safetensors'), specs, (spec, write) => {
      for (let left = spec.shape.reduce((p, d) => p * d, 1) * 2; left > 0;) {
        const n = fs.readSync(readFd, chunk, 0, Math.min(chunk.length, left), null);
        if (n <= 0) throw new Error('candidate spill file ended early');
        write(chunk.subarray(0, n));
        left -= n;
      }
    }, { format: 'pt' });
  } finally {
    fs.closeSync(readFd);
    fs.rmSync(spill);
  }
}

interface ReadPhase {
  readonly seconds: number;
  readonly bytes: number;
  readonly maxRssKiB: number;
}

interface VerifyPhase extends ReadPhase {
  readonly relation: string;
  readonly lora: { readonly rank: number; readonly targets: readonly string[] } | null;
  readonly transform: readonly string[];
  readonly timings: { readonly readSeconds: number; readonly alignSeconds: number; readonly analyseSeconds: number };
}

/** Plain read: every tensor's bytes of both models through the same bounded buffer, no decode. */
function plainRead(dir: string): ReadPhase {
  const started = performance.now();
  let bytes = 0;
  let touched = 0;
  for (const side of ['base', 'candidate']) {
    const source = openSafetensorsSource(path.join(dir, side));
    try {
      for (const name of source.tensors.keys()) {
        for (const chunk of source.rawChunks(name)) touched += chunk.bytes[0]!;
      }
      bytes += source.bytesRead;
    } finally {
      source.close();
    }
  }
  if (touched < 0) throw new Error('unreachable');
  return { seconds: (performance.now() - started) / 1000, bytes, maxRssKiB: process.resourceUsage().maxRSS };
}

function verifyPhase(dir: string, workers: number): VerifyPhase {
  const started = performance.now();
  const base = SourceRoleReader.open(path.join(dir, 'base'));
  const candidate = SourceRoleReader.open(path.join(dir, 'candidate'));
  try {
    const result = verifyModels(base, candidate, { workers });
    return {
      seconds: (performance.now() - started) / 1000, bytes: base.bytesRead + candidate.bytesRead,
      maxRssKiB: process.resourceUsage().maxRSS, relation: result.relation,
      lora: result.lora && { rank: result.lora.rank, targets: result.lora.targets }, transform: result.transform.summary,
      timings: result.timings,
    };
  } finally {
    base.close();
    candidate.close();
  }
}

/**
 * Both payload files read once from the disk, bypassing the page cache (O_DIRECT through GNU dd):
 * the read a user with models not yet in memory pays. Null where dd or O_DIRECT is unavailable.
 */
function coldRead(dir: string): ReadPhase | null {
  const files = ['base', 'candidate'].map((side) => path.join(dir, side, 'model.safetensors'));
  const seconds = directReadSeconds(files);
  return seconds === null ? null : { seconds, bytes: files.reduce((sum, f) => sum + fs.statSync(f).size, 0), maxRssKiB: 0 };
}

function runPhase<T>(phase: 'read' | 'verify', dir: string, workers = 0): T {
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--phase', phase, '--dir', dir, '--workers', String(workers)], {
    encoding: 'utf8', maxBuffer: 1 << 20, stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (child.status !== 0) throw new Error(`${phase} phase failed (exit ${child.status})`);
  return JSON.parse(child.stdout.trim().split('\n').pop()!) as T;
}

function argument(args: string[], flag: string): string | undefined {
  const at = args.indexOf(flag);
  return at >= 0 ? args[at + 1] : undefined;
}

function main(): void {
  const args = process.argv.slice(2);
  const phase = argument(args, '--phase');
  if (phase) {
    const dir = argument(args, '--dir')!;
    process.stdout.write(`${JSON.stringify(phase === 'read' ? plainRead(dir) : verifyPhase(dir, Number(argument(args, '--workers'))))}\n`);
    return;
  }
  const shapeName = argument(args, '--shape') ?? 'small';
  const config = SHAPES[shapeName];
  if (!config) throw new Error(`unknown --shape ${shapeName} (tiny, small, 1b, 7b-slice or 7b)`);
  const keep = args.includes('--keep');
  const workers = Number(argument(args, '--workers') ?? os.availableParallelism());
  if (!Number.isInteger(workers) || workers < 0) throw new Error('--workers takes a whole number');
  const dir = argument(args, '--dir') ?? fs.mkdtempSync(path.join(os.tmpdir(), `model-lineage-bench-verify-${shapeName}-`));
  try {
    const writeStarted = performance.now();
    if (!fs.existsSync(path.join(dir, 'candidate', 'model.safetensors'))) {
      writeModels(dir, config);
      console.log(`wrote base and candidate to ${dir} in ${((performance.now() - writeStarted) / 1000).toFixed(1)} s`);
    } else {
      console.log(`reusing ${dir}`);
    }
    const read1 = runPhase<ReadPhase>('read', dir);
    const read2 = runPhase<ReadPhase>('read', dir);
    const cold = coldRead(dir);
    // --cold: verify from the disk too (else from whatever the page cache kept of the reads).
    if (args.includes('--cold') && !tryDropPageCache()) throw new Error('--cold needs to empty the page cache (Linux, as root)');
    const verify = runPhase<VerifyPhase>('verify', dir, workers);
    const gb = (r: ReadPhase) => r.bytes / 1e9;
    const table = new Table({ head: ['phase', 'GB', 'seconds', 'GB/s', 'peak RSS MiB'] });
    const row = (label: string, r: ReadPhase) =>
      [label, gb(r).toFixed(2), r.seconds.toFixed(2), (gb(r) / r.seconds).toFixed(2), (r.maxRssKiB / 1024).toFixed(0)];
    table.push(row('plain read of both #1', read1), row('plain read of both #2', read2));
    if (cold) table.push([...row('cold read of both (dd, O_DIRECT)', cold).slice(0, 4), '-']);
    table.push(row(args.includes('--cold') ? 'verifyModels, page cache emptied first' : 'verifyModels', verify));
    console.log(`shape ${shapeName}: hidden ${config.hidden}, ${config.layers} layers, intermediate ${config.intermediate}, `
      + `vocab ${config.vocab}, ${config.heads}/${config.kvHeads} heads; ${os.availableParallelism()} cores, ${workers} workers`);
    console.log(table.toString());
    const t = verify.timings;
    console.log(`verify phases: read ${t.readSeconds.toFixed(1)} s, align ${t.alignSeconds.toFixed(1)} s, analyse ${t.analyseSeconds.toFixed(1)} s`);
    console.log(`ratio verify / read both: ${(verify.seconds / read2.seconds).toFixed(1)} (read #2), ${(verify.seconds / read1.seconds).toFixed(1)} (read #1)`
      + (cold ? `, ${(verify.seconds / cold.seconds).toFixed(1)} (cold read)` : ' (no cold read: dd with iflag=direct unavailable)'));
    const lora = verify.lora ? `LoRA rank ${verify.lora.rank} on ${verify.lora.targets.join(', ')}` : 'no LoRA';
    console.log(`verdict: ${verify.relation}, ${lora} (expected: derived, LoRA rank 16 on q_proj, v_proj)`);
    console.log(`transform found: ${verify.transform.join('; ')}`);
  } finally {
    if (!keep) fs.rmSync(dir, { recursive: true, force: true });
  }
}

main();
