/**
 * verify of a Q4_K_M GGUF fine-tune against its bf16 safetensors base, against reading both files.
 *
 *   npm run bench:verify-gguf -- --base DIR [--rank 16] [--keep] [--out FILE] [--write-only] [--workers N]
 *
 * BASE is a bf16 Llama folder, e.g. the 7B one `npm run bench:tree -- --shape 7b --models 1 --dir
 * DIR --keep` writes (DIR/m0). The candidate is BASE plus a LoRA of the rank on q_proj and v_proj
 * of every layer (B·A scaled to a tenth of the weight's norm), written as llama.cpp's converter
 * and llama-quantize's Q4_K_M recipe lay it out: q/k rows in the rotary order, Q4_K everywhere
 * but Q6_K for `output` and for attn_v and ffn_down of the layers that get more bits (the first
 * and last eighth, and every third between), norms F32; one tensor at a time, so memory stays one
 * tensor's. Then, each from an emptied page cache: both files read by a cold `cat` and by dd's 16 MiB direct reads, and
 * verify (in a child process, so its peak RSS is its own). Emptying the page cache needs Linux
 * and root. An existing --out file is reused, not rewritten; --write-only writes the candidate
 * (kept) and stops before the timed phases, e.g. to profile verify on it by hand.
 */
import { catSeconds, directReadSeconds, dropPageCache } from './disk.js';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SourceRoleReader } from '../src/arch/reader.js';
import { openTensorSource } from '../src/io/source.js';
import { Rng } from '../src/linalg/rng.js';
import { verifyModels } from '../src/verify/verify.js';
import { encodeTensor, ggufName, llamaGgufMetadata, permuteQkRows, writeGgufStreaming, type GgufTensorSpec } from '../test/helpers/gguf-writer.js';
import type { LlamaConfig } from '../test/helpers/synthetic-llama.js';

function argument(args: readonly string[], flag: string): string | undefined {
  const at = args.indexOf(flag);
  return at >= 0 ? args[at + 1] : undefined;
}

function configOf(folder: string): LlamaConfig {
  const c = JSON.parse(fs.readFileSync(path.join(folder, 'config.json'), 'utf8')) as Record<string, number>;
  return {
    hidden: c['hidden_size']!, intermediate: c['intermediate_size']!, layers: c['num_hidden_layers']!, vocab: c['vocab_size']!,
    heads: c['num_attention_heads']!, kvHeads: c['num_key_value_heads']!, headDim: c['head_dim'] ?? c['hidden_size']! / c['num_attention_heads']!,
  };
}

/** llama-quantize's use_more_bits: the first and last eighth of the layers, and every third between. */
function moreBits(layer: number, layers: number): boolean {
  return layer < layers / 8 || layer >= (7 * layers) / 8 || (layer - Math.floor(layers / 8)) % 3 === 2;
}

function q4kmType(gguf: string, layers: number): string {
  if (gguf === 'output.weight') return 'Q6_K';
  const m = /^blk\.(\d+)\.(attn_v|ffn_down)\.weight$/.exec(gguf);
  return m && moreBits(Number(m[1]), layers) ? 'Q6_K' : 'Q4_K';
}

/** W + B·A with B (rows x r), A (r x cols) Gaussian, scaled so ||B·A|| = 0.1 ||W||. */
function addLora(w: Float32Array, rows: number, cols: number, rank: number, rng: Rng): void {
  const a = Float64Array.from({ length: rank * cols }, () => rng.gaussian() / Math.sqrt(cols));
  const b = Float64Array.from({ length: rows * rank }, () => rng.gaussian());
  const delta = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let t = 0; t < rank; t++) {
      const coef = b[i * rank + t]!;
      const row = i * cols, at = t * cols;
      for (let j = 0; j < cols; j++) delta[row + j]! += coef * a[at + j]!;
    }
  }
  let wNorm = 0, dNorm = 0;
  for (let i = 0; i < w.length; i++) {
    wNorm += w[i]! * w[i]!;
    dNorm += delta[i]! * delta[i]!;
  }
  const scale = (0.1 * Math.sqrt(wNorm)) / Math.sqrt(dNorm);
  for (let i = 0; i < w.length; i++) w[i] = w[i]! + scale * delta[i]!;
}

function writeCandidate(baseFolder: string, out: string, rank: number): void {
  const config = configOf(baseFolder);
  const source = openTensorSource(baseFolder);
  try {
    const names = [...source.tensors.keys()].sort();
    const tensors: GgufTensorSpec[] = names.map((name) => {
      const shape = source.tensors.get(name)!.shape;
      const gguf = ggufName(name);
      return { name: gguf, type: shape.length === 1 ? 'F32' : q4kmType(gguf, config.layers), shape };
    });
    const rng = new Rng(4242);
    writeGgufStreaming(out, { version: 3, metadata: llamaGgufMetadata(config, 'Q4_K_M'), tensors }, (spec, i) => {
      const name = names[i]!;
      const [rows, cols] = [spec.shape[0]!, spec.shape[1] ?? 1];
      let data = source.read(name);
      if (/self_attn\.(q|v)_proj/.test(name)) addLora(data, rows, cols, rank, rng);
      if (/self_attn\.(q|k)_proj/.test(name)) data = permuteQkRows(data, rows, cols, name.includes('q_proj') ? config.heads : config.kvHeads);
      return encodeTensor(spec.type, data);
    });
  } finally {
    source.close();
  }
}

interface VerifyPhase {
  readonly seconds: number;
  readonly maxRssKiB: number;
  readonly relation: string;
  readonly lora: { readonly rank: number; readonly targets: readonly string[]; readonly rankIsLowerBound?: boolean } | null;
  readonly reason: string;
}

function verifyPhase(base: string, candidate: string, workers: number): VerifyPhase {
  const started = performance.now();
  const b = SourceRoleReader.open(base), c = SourceRoleReader.open(candidate);
  try {
    const result = verifyModels(b, c, { workers });
    return {
      seconds: (performance.now() - started) / 1000, maxRssKiB: process.resourceUsage().maxRSS, relation: result.relation,
      lora: result.lora && { rank: result.lora.rank, targets: result.lora.targets, ...(result.lora.rankIsLowerBound ? { rankIsLowerBound: true } : {}) },
      reason: result.reason,
    };
  } finally {
    b.close();
    c.close();
  }
}

function main(): void {
  const args = process.argv.slice(2);
  const workers = Number(argument(args, '--workers') ?? Math.min(os.availableParallelism(), 4));
  if (argument(args, '--phase') === 'verify') {
    process.stdout.write(`${JSON.stringify(verifyPhase(argument(args, '--base')!, argument(args, '--candidate')!, workers))}\n`);
    return;
  }
  const base = argument(args, '--base');
  if (!base) throw new Error('give --base DIR (a bf16 Llama folder, e.g. bench:tree --shape 7b --models 1 --keep --dir DIR, then DIR/m0)');
  const rank = Number(argument(args, '--rank') ?? 16);
  const out = argument(args, '--out') ?? path.join(os.tmpdir(), `model-lineage-bench-${path.basename(base)}-lora${rank}.Q4_K_M.gguf`);
  try {
    if (fs.existsSync(out)) console.log(`reusing ${out}`);
    else {
      const started = performance.now();
      writeCandidate(base, out, rank);
      console.log(`wrote ${out} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    }
    if (args.includes('--write-only')) return;
    const files = [...openTensorSource(base).files, out];
    const bytes = files.reduce((s, f) => s + fs.statSync(f).size, 0);
    dropPageCache();
    const cat = catSeconds(files);
    dropPageCache();
    const read = directReadSeconds(files);
    if (read === null) throw new Error('reading with dd iflag=direct failed');
    dropPageCache();
    const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--phase', 'verify', '--base', base, '--candidate', out, '--workers', String(workers)],
      { encoding: 'utf8', maxBuffer: 1 << 22, stdio: ['ignore', 'pipe', 'inherit'] });
    if (child.status !== 0) throw new Error(`verify phase failed (exit ${child.status})`);
    const verify = JSON.parse(child.stdout.trim().split('\n').pop()!) as VerifyPhase;
    console.log(`both files ${(bytes / 1e9).toFixed(2)} GB: cold cat ${cat.toFixed(2)} s, dd O_DIRECT ${read.toFixed(2)} s; verify ${verify.seconds.toFixed(2)} s `
      + `(verify / cat = ${(verify.seconds / cat).toFixed(2)}, verify / dd = ${(verify.seconds / read).toFixed(2)}); peak RSS ${(verify.maxRssKiB / 1024).toFixed(0)} MiB`);
    const lora = verify.lora ? `LoRA rank ${verify.lora.rankIsLowerBound ? 'at least ' : ''}${verify.lora.rank} on ${verify.lora.targets.join(', ')}` : 'no LoRA';
    console.log(`verdict: ${verify.relation}, ${lora} (expected: derived, LoRA rank ${rank} on q_proj, v_proj, possibly a lower bound through Q4_K)`);
    console.log(`reason: ${verify.reason}`);
  } finally {
    if (!args.includes('--keep') && !args.includes('--write-only') && !argument(args, '--out')) fs.rmSync(out, { force: true });
  }
}

main();
