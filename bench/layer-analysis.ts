/**
 * Benchmark of one decoder layer's verify analysis (analyseLayer, src/verify/layer.ts) at the
 * shapes a 7B-wide layer is analysed at on a sample of 256 residual dimensions: q, k, v 4096 x 256,
 * o 256 x 4096, gate, up 11008 x 256, down 256 x 11008 (32 heads of 128, as many KV heads).
 *
 *   node dist/bench/layer-analysis.js [--layers 3] [--candidate bf16|quantized] [--json outcomes.json]
 *
 * Each layer pair is synthetic with a bf16-stored base: the candidate is the base plus a rank-16
 * LoRA on q and v (||B A|| = 0.08 ||W||), its MLP neurons permuted, V rows and O columns rescaled
 * per head, stored in bf16 (expected ranks: q 16, v 16, every other module 0) or, with
 * `--candidate quantized`, in Q4_K with the reader's per-element rounding variances (as a
 * Q4_K_M GGUF of a fine-tune: every module differs from the base by its rounding). Single-threaded; layers are built outside the
 * timings (the analysis consumes them). CPU seconds are printed beside wall seconds, as the steadier
 * number on a shared machine: the process's, and (on Linux) the main thread's alone, which leaves
 * out the collector's and the WebAssembly compiler's background threads. --json writes every outcome, to compare two builds.
 */
import * as fs from 'node:fs';
import type { LayerWeights, ResidualAlignment } from '../src/align/llama-block.js';
import { noisyFromWeight, type NoisyMatrix } from '../src/noise/noisy-matrix.js';
import { roundToDtype } from '../src/io/dtypes.js';
import { dequantizeBlocks } from '../src/io/gguf-quants.js';
import { encodeTensor } from '../test/helpers/gguf-writer.js';
import { euclideanNorm, frobeniusNorm, matmul } from '../src/linalg/ops.js';
import { Rng } from '../src/linalg/rng.js';
import { analyseLayer, type LayerContext } from '../src/verify/layer.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
}

const RESIDUAL = 256, INTERMEDIATE = 11008, HEADS = 32, HEAD_DIM = 128;
const WIDTH = HEADS * HEAD_DIM;
const LORA_RANK = 16, LORA_SCALE = 0.08;

/** N(0, 0.02) with exp(0.3 N) row and column magnitudes, as trained weights have. */
function structured(rows: number, cols: number, rng: Rng): Float64Array {
  const magnitude = (count: number) => Float64Array.from({ length: count }, () => Math.exp(0.3 * rng.gaussian()));
  const [r, c] = [magnitude(rows), magnitude(cols)];
  return rng.gaussianMatrix(rows, cols, 0.02).data.map((v, p) => v * r[Math.floor(p / cols)]! * c[p % cols]!);
}

/** The candidate's storage: bf16 like the base, or Q4_K blocks along its rows. */
const candidateStorage = arg('candidate', 'bf16');
if (candidateStorage !== 'bf16' && candidateStorage !== 'quantized') throw new Error(`--candidate bf16|quantized, not ${candidateStorage}`);

/** Q4_K values of a matrix with their rounding variances, as the GGUF reader decodes them. */
function quantized(values: Float64Array, rows: number, cols: number): NoisyMatrix {
  const data = new Float32Array(values.length), variance = new Float32Array(values.length);
  dequantizeBlocks('Q4_K', encodeTensor('Q4_K', values), 0, values.length / 256, data, 0, variance);
  return noisyFromWeight({ rows, cols, data, variance, dtype: 'Q4_K', tensor: 'bench', file: 'bench' });
}

function bf16Values(values: Float64Array): Float64Array {
  return Float64Array.from(roundToDtype(Float32Array.from(values), 'BF16'));
}

function stored(values: Float64Array, rows: number, cols: number): NoisyMatrix {
  return noisyFromWeight({ rows, cols, data: roundToDtype(Float32Array.from(values), 'BF16'), dtype: 'BF16', tensor: 'bench', file: 'bench' });
}

/** w + B A of rank LORA_RANK with ||B A|| = LORA_SCALE ||w||. */
function withLora(w: Float64Array, rows: number, cols: number, rng: Rng): Float64Array {
  const delta = matmul(rng.gaussianMatrix(rows, LORA_RANK), rng.gaussianMatrix(LORA_RANK, cols));
  const factor = (LORA_SCALE * euclideanNorm(w)) / frobeniusNorm(delta);
  return Float64Array.from(w, (v, p) => v + factor * delta.data[p]!);
}

function normWeights(rng: Rng): Float64Array {
  return bf16Values(Float64Array.from({ length: RESIDUAL }, () => Math.exp(0.2 * rng.gaussian())));
}

/** One base layer and its fine-tuned, obfuscated candidate. */
function layerPair(rng: Rng): [LayerWeights, LayerWeights] {
  const q = bf16Values(structured(WIDTH, RESIDUAL, rng)), k = bf16Values(structured(WIDTH, RESIDUAL, rng));
  const v = bf16Values(structured(WIDTH, RESIDUAL, rng)), o = bf16Values(structured(RESIDUAL, WIDTH, rng));
  const gate = bf16Values(structured(INTERMEDIATE, RESIDUAL, rng)), up = bf16Values(structured(INTERMEDIATE, RESIDUAL, rng));
  const down = bf16Values(structured(RESIDUAL, INTERMEDIATE, rng));
  const inputNorm = normWeights(rng), postNorm = normWeights(rng);
  const headScale = Float64Array.from({ length: HEADS }, () => Math.exp(0.5 * rng.gaussian()));
  const neurons = rng.permutation(INTERMEDIATE);
  const rowsFrom = (w: Float64Array, cols: number) => {
    const out = new Float64Array(w.length);
    for (let i = 0; i < INTERMEDIATE; i++) out.set(w.subarray(neurons[i]! * cols, (neurons[i]! + 1) * cols), i * cols);
    return out;
  };
  const vTuned = withLora(v, WIDTH, RESIDUAL, rng).map((x, p) => x * headScale[Math.floor(p / RESIDUAL / HEAD_DIM)]!);
  const candidateDown = down.map((_, p) => down[Math.floor(p / INTERMEDIATE) * INTERMEDIATE + neurons[p % INTERMEDIATE]!]!);
  const layer = (w: Record<'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down', Float64Array>, store = stored): LayerWeights => ({
    q: store(w.q, WIDTH, RESIDUAL), k: store(w.k, WIDTH, RESIDUAL), v: store(w.v, WIDTH, RESIDUAL), o: store(w.o, RESIDUAL, WIDTH),
    gate: store(w.gate, INTERMEDIATE, RESIDUAL), up: store(w.up, INTERMEDIATE, RESIDUAL), down: store(w.down, RESIDUAL, INTERMEDIATE),
    inputNorm: inputNorm.slice(), postNorm: postNorm.slice(), inputNormVariance: normVariance(inputNorm),
  });
  return [
    layer({ q, k, v, o, gate, up, down }),
    layer({
      q: withLora(q, WIDTH, RESIDUAL, rng), k, v: vTuned,
      o: o.map((x, p) => x / headScale[Math.floor((p % WIDTH) / HEAD_DIM)]!),
      gate: rowsFrom(gate, RESIDUAL), up: rowsFrom(up, RESIDUAL), down: candidateDown,
    }, candidateStorage === 'quantized' ? quantized : stored),
  ];
}

/** CPU seconds of this (the main) thread, from /proc on Linux; NaN elsewhere. */
function mainThreadCpu(): number {
  try {
    const fields = fs.readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime and stime, in clock ticks of 10 ms
  } catch {
    return NaN;
  }
}

function normVariance(norm: Float64Array): Float32Array {
  return stored(norm, 1, norm.length).variance;
}

/** What every layer shares; the only place that spells out LayerContext's fields. */
function benchContext(rng: Rng): LayerContext {
  const identity: ResidualAlignment = {
    order: Int32Array.from({ length: RESIDUAL }, (_, i) => i), sign: new Float64Array(RESIDUAL).fill(1), quality: 1, moved: 0, flipped: 0,
  };
  // The layer stands for one read on the residual sample: its residual side is already in the base's order.
  return { whole: { residual: identity, probes: rng.gaussianMatrix(RESIDUAL, RESIDUAL) }, sampled: null, layout: { heads: HEADS, kvHeads: HEADS, headDim: HEAD_DIM }, seed: 1 };
}

const layers = Number(arg('layers', '3'));
const jsonPath = arg('json', '');
const rng = new Rng(2024);
const context = benchContext(rng);
const outcomes: unknown[] = [];
let alignTotal = 0, analyseTotal = 0, cpuTotal = 0, mainTotal = 0;
console.log(`layer analysis: q/k/v ${WIDTH}x${RESIDUAL}, o ${RESIDUAL}x${WIDTH}, gate/up ${INTERMEDIATE}x${RESIDUAL}, down ${RESIDUAL}x${INTERMEDIATE}, bf16 base, ${candidateStorage === 'quantized' ? 'Q4_K' : 'bf16'} candidate, one thread`);
for (let index = 0; index < layers; index++) {
  const [base, candidate] = layerPair(rng);
  const cpuBefore = process.cpuUsage(), mainBefore = mainThreadCpu();
  const outcome = analyseLayer(index, base, candidate, context, false);
  const cpu = process.cpuUsage(cpuBefore);
  cpuTotal += (cpu.user + cpu.system) / 1e6;
  mainTotal += mainThreadCpu() - mainBefore;
  alignTotal += outcome.alignSeconds;
  analyseTotal += outcome.analyseSeconds;
  const ranks = outcome.evidence.modules.map((m) => `${m.module.replace('_proj', '')} ${m.rank}`).join(', ');
  console.log(`  layer ${index}: align ${outcome.alignSeconds.toFixed(2)} s, analyse ${outcome.analyseSeconds.toFixed(2)} s; ranks ${ranks}; probe rank ${outcome.evidence.probeRank}, mlp quality ${outcome.mlpQuality.toFixed(4)}, z ${outcome.independence.z.toFixed(1)}`);
  outcomes.push(outcome);
}
console.log(`  mean per layer: align ${(alignTotal / layers).toFixed(2)} s, analyse ${(analyseTotal / layers).toFixed(2)} s (wall); ${(cpuTotal / layers).toFixed(2)} CPU s, main thread ${(mainTotal / layers).toFixed(2)} CPU s`);
if (jsonPath) {
  const plain = (_: string, v: unknown) => (ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : v);
  fs.writeFileSync(jsonPath, JSON.stringify(outcomes, plain, 1));
}
