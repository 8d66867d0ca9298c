/**
 * Benchmark: how close a full moments pass over a model comes to the speed of just reading it.
 *
 *   npm run bench:read -- [--shape 7b|small] [--keep] [--dir DIR] [--workers N]
 *
 * Writes a synthetic bf16 model with Llama-2-7B tensor names and shapes (or a ~340 MB small
 * one), sharded like Hugging Face does, to a temp folder (reused when present with the right
 * sizes), then times in separate child processes, so each peak RSS is its own: a plain
 * sequential read of all payload (same bounded-buffer reads, no decode) twice, then the full
 * scanMoments pass. The second read is certainly served from the page cache; the first one
 * probably is too when the model was just written, so both are reported.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import Table from 'cli-table3';
import { float32ToBf16Bits } from '../src/io/dtypes.js';
import { openSafetensorsSource } from '../src/io/source.js';
import { encodeHeader, writeSafetensorsStreaming, type TensorSpec } from '../src/io/writer.js';
import { scanMoments } from '../test/helpers/scan-model.js';

interface Shape {
  readonly hidden: number;
  readonly intermediate: number;
  readonly layers: number;
  readonly vocab: number;
  readonly maxShardBytes: number;
}

const SHAPES: Readonly<Record<string, Shape>> = {
  '7b': { hidden: 4096, intermediate: 11008, layers: 32, vocab: 32000, maxShardBytes: 5e9 },
  small: { hidden: 1024, intermediate: 2816, layers: 8, vocab: 32000, maxShardBytes: 150e6 },
};

/** Tensor names and shapes of a Hugging Face LlamaForCausalLM checkpoint, in its order. */
function llamaTensors(shape: Shape): TensorSpec[] {
  const { hidden: h, intermediate: m, layers, vocab } = shape;
  const specs: TensorSpec[] = [{ name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [vocab, h] }];
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    specs.push(
      { name: `${p}.self_attn.q_proj.weight`, dtype: 'BF16', shape: [h, h] },
      { name: `${p}.self_attn.k_proj.weight`, dtype: 'BF16', shape: [h, h] },
      { name: `${p}.self_attn.v_proj.weight`, dtype: 'BF16', shape: [h, h] },
      { name: `${p}.self_attn.o_proj.weight`, dtype: 'BF16', shape: [h, h] },
      { name: `${p}.mlp.gate_proj.weight`, dtype: 'BF16', shape: [m, h] },
      { name: `${p}.mlp.up_proj.weight`, dtype: 'BF16', shape: [m, h] },
      { name: `${p}.mlp.down_proj.weight`, dtype: 'BF16', shape: [h, m] },
      { name: `${p}.input_layernorm.weight`, dtype: 'BF16', shape: [h] },
      { name: `${p}.post_attention_layernorm.weight`, dtype: 'BF16', shape: [h] },
    );
  }
  specs.push({ name: 'model.norm.weight', dtype: 'BF16', shape: [h] }, { name: 'lm_head.weight', dtype: 'BF16', shape: [vocab, h] });
  return specs;
}

const bytesOf = (spec: TensorSpec) => spec.shape.reduce((p, d) => p * d, 1) * 2;

/** Consecutive tensors grouped into shards of at most maxShardBytes, named as Hugging Face does. */
function planShards(specs: readonly TensorSpec[], maxShardBytes: number): { file: string; specs: TensorSpec[] }[] {
  const groups: TensorSpec[][] = [[]];
  let size = 0;
  for (const spec of specs) {
    if (size + bytesOf(spec) > maxShardBytes && groups[groups.length - 1]!.length > 0) {
      groups.push([]);
      size = 0;
    }
    groups[groups.length - 1]!.push(spec);
    size += bytesOf(spec);
  }
  const pad = (k: number) => String(k).padStart(5, '0');
  return groups.map((g, i) => ({ file: `model-${pad(i + 1)}-of-${pad(groups.length)}.safetensors`, specs: g }));
}

/** bf16 patterns of N(0, std) quantiles: a random 16-bit index then draws a Gaussian-like weight. */
function gaussianBf16Table(std: number, offset: number): Uint16Array {
  const table = new Uint16Array(65536);
  for (let k = 0; k < 65536; k++) table[k] = float32ToBf16Bits(offset + std * inverseNormal((k + 0.5) / 65536));
  return table;
}

/** Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9). */
function inverseNormal(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const low = 0.02425;
  if (p < low) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  }
  if (p > 1 - low) return -inverseNormal(1 - p);
  const q = p - 0.5, r = q * q;
  return (((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q
    / (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1);
}

/** Fill with table entries picked by xorshift32 (two 16-bit draws per step); returns the new state. */
function fillRandom(out: Uint16Array, count: number, table: Uint16Array, state: number): number {
  let s = state;
  for (let i = 0; i < count; i += 2) {
    s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
    out[i] = table[s & 0xffff]!;
    out[i + 1] = table[s >>> 16]!;
  }
  return s;
}

function expectedFileSize(specs: readonly TensorSpec[]): number {
  return encodeHeader(specs, { format: 'pt' }).length + specs.reduce((s, t) => s + bytesOf(t), 0);
}

/** Write the model unless a complete one is already there; returns whether it was written. */
function ensureModel(dir: string, shape: Shape): boolean {
  const specs = llamaTensors(shape);
  const shards = planShards(specs, shape.maxShardBytes);
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  const complete = fs.existsSync(indexFile)
    && shards.every((s) => fs.existsSync(path.join(dir, s.file)) && fs.statSync(path.join(dir, s.file)).size === expectedFileSize(s.specs));
  if (complete) return false;
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const weights = gaussianBf16Table(0.02, 0);
  const norms = gaussianBf16Table(0.05, 1);
  const chunk = new Uint16Array(8 * 1024 * 1024);
  let state = 0x9e3779b9;
  const weightMap: Record<string, string> = {};
  for (const shard of shards) {
    writeSafetensorsStreaming(path.join(dir, shard.file), shard.specs, (spec, write) => {
      const table = spec.shape.length === 1 ? norms : weights;
      const total = bytesOf(spec) / 2;
      for (let done = 0; done < total; done += chunk.length) {
        const count = Math.min(chunk.length, total - done);
        state = fillRandom(chunk, count, table, state);
        write(new Uint8Array(chunk.buffer, 0, count * 2));
      }
    }, { format: 'pt' });
    for (const spec of shard.specs) weightMap[spec.name] = shard.file;
  }
  const totalSize = specs.reduce((s, t) => s + bytesOf(t), 0);
  fs.writeFileSync(indexFile, JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: shape.hidden, intermediate_size: shape.intermediate,
    num_hidden_layers: shape.layers, num_attention_heads: shape.hidden / 128, num_key_value_heads: shape.hidden / 128,
    vocab_size: shape.vocab, torch_dtype: 'bfloat16', tie_word_embeddings: false,
  }, null, 2));
  return true;
}

interface PhaseResult {
  readonly seconds: number;
  readonly bytes: number;
  /** Peak resident set of the phase's process, worker threads included (KiB). */
  readonly maxRssKiB: number;
  readonly workers?: number;
}

/** Plain read: every tensor's bytes through the same bounded buffer, no decode. */
function plainRead(dir: string): PhaseResult {
  const started = performance.now();
  const source = openSafetensorsSource(dir);
  try {
    let touched = 0;
    for (const name of source.tensors.keys()) {
      for (const chunk of source.rawChunks(name)) touched += chunk.bytes[0]!;
    }
    if (touched < 0) throw new Error('unreachable');
    return { seconds: (performance.now() - started) / 1000, bytes: source.bytesRead, maxRssKiB: process.resourceUsage().maxRSS };
  } finally {
    source.close();
  }
}

async function momentsPass(dir: string, workers: number | undefined): Promise<PhaseResult> {
  const result = await scanMoments(dir, { workers });
  return {
    seconds: result.seconds, bytes: result.bytes, maxRssKiB: process.resourceUsage().maxRSS,
    workers: workers ?? os.availableParallelism(),
  };
}

function runPhase(phase: 'read' | 'scan', dir: string, workers: number | undefined): PhaseResult {
  const args = [fileURLToPath(import.meta.url), '--phase', phase, '--dir', dir];
  if (workers !== undefined) args.push('--workers', String(workers));
  const child = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (child.status !== 0) throw new Error(`${phase} phase failed: ${child.stderr}`);
  return JSON.parse(child.stdout.trim().split('\n').pop()!) as PhaseResult;
}

function argument(args: string[], flag: string): string | undefined {
  const at = args.indexOf(flag);
  return at >= 0 ? args[at + 1] : undefined;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const workersArg = argument(args, '--workers');
  const workers = workersArg === undefined ? undefined : Number(workersArg);
  const phase = argument(args, '--phase');
  if (phase) {
    const dir = argument(args, '--dir')!;
    const result = phase === 'read' ? plainRead(dir) : await momentsPass(dir, workers);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const shapeName = argument(args, '--shape') ?? '7b';
  const shape = SHAPES[shapeName];
  if (!shape) throw new Error(`unknown --shape ${shapeName} (7b or small)`);
  const keep = args.includes('--keep');
  const dir = argument(args, '--dir') ?? path.join(os.tmpdir(), `model-lineage-bench-${shapeName}`);

  const writeStarted = performance.now();
  const written = ensureModel(dir, shape);
  const writeSeconds = (performance.now() - writeStarted) / 1000;
  console.log(written ? `wrote ${dir} in ${writeSeconds.toFixed(1)} s` : `reusing ${dir}`);

  try {
    const read1 = runPhase('read', dir, workers);
    const read2 = runPhase('read', dir, workers);
    const scan = runPhase('scan', dir, workers);
    const gb = (r: PhaseResult) => r.bytes / 1e9;
    const table = new Table({ head: ['phase', 'GB', 'seconds', 'GB/s', 'peak RSS MiB'] });
    const row = (label: string, r: PhaseResult) =>
      [label, gb(r).toFixed(2), r.seconds.toFixed(2), (gb(r) / r.seconds).toFixed(2), (r.maxRssKiB / 1024).toFixed(0)];
    table.push(row('plain read #1', read1), row('plain read #2', read2), row(`scanMoments (${scan.workers} workers)`, scan));
    console.log(`model: ${shapeName}, ${gb(read1).toFixed(2)} GB bf16 payload, ${os.availableParallelism()} cores`);
    console.log(table.toString());
    const cacheNote = (r: PhaseResult) => (gb(r) / r.seconds > 2 ? 'warm (page cache)' : 'likely cold (disk)');
    console.log(`read #1: ${cacheNote(read1)}; read #2: ${cacheNote(read2)}`);
    console.log(`ratio read/moments: ${(read2.seconds / scan.seconds).toFixed(2)} with read #2, `
      + `${(read1.seconds / scan.seconds).toFixed(2)} with read #1 (goal >= 0.7)`);
  } finally {
    if (!keep) fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
