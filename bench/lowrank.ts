/**
 * Micro-benchmark of lowRankDelta on the module deltas of the verify bench pair, at a chosen width:
 *
 *   node dist/bench/lowrank.js [--hidden 1024|4096] [--head-dim 64|128] [--case q,v,o,full] [--repeat N]
 *
 * Cases (bf16-stored, already aligned, gauge as verify gives each module):
 *   q     W + LoRA rank 16 (||BA|| = 0.1 ||W||), rows and columns free: rank 16 expected;
 *   v     the same, then every head's rows rescaled (V/O obfuscation): rank 16;
 *   o     W with every head's columns divided by the V scale, columns free: rank 0;
 *   full  W + dense noise of 1% RMS (a full fine-tune), rows and columns free: not low-rank.
 * Inputs are built once into a file under the temp folder (building takes several times their
 * memory); each case then runs in its own child process that reads them, so the peak RSS reported
 * is the call's own (above the RSS just before it). Single-threaded; CPU seconds are printed beside wall
 * seconds, as the steadier number on a shared machine.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { lowRankDelta, type GaugeFreedom } from '../src/noise/delta-rank.js';
import { noisyFromWeight, type NoisyMatrix } from '../src/noise/noisy-matrix.js';
import { roundToDtype } from '../src/io/dtypes.js';
import { Rng } from '../src/linalg/rng.js';

const CASES = ['q', 'v', 'o', 'full'] as const;
type Case = (typeof CASES)[number];

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
}

/** N(0, 0.02) with exp(0.3 N) row and column magnitudes, as the synthetic Llama's weights. */
function structured(rows: number, cols: number, rng: Rng): Float64Array {
  const r = Float64Array.from({ length: rows }, () => Math.exp(0.3 * rng.gaussian()));
  const c = Float64Array.from({ length: cols }, () => Math.exp(0.3 * rng.gaussian()));
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[i * cols + j] = 0.02 * rng.gaussian() * r[i]! * c[j]!;
  return out;
}

function frobenius(v: Float64Array): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  return Math.sqrt(s);
}

/** w + B A of the given rank with ||B A||_F = scale ||w||_F. */
function withLora(w: Float64Array, rows: number, cols: number, rank: number, scale: number, rng: Rng): Float64Array {
  const a = rng.gaussianMatrix(rank, cols).data, b = rng.gaussianMatrix(rows, rank).data;
  const delta = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let t = 0; t < rank; t++) {
      const coef = b[i * rank + t]!;
      for (let j = 0; j < cols; j++) delta[i * cols + j]! += coef * a[t * cols + j]!;
    }
  }
  const factor = (scale * frobenius(w)) / frobenius(delta);
  return Float64Array.from(w, (v, p) => v + factor * delta[p]!);
}

function bf16(values: Float64Array, rows: number, cols: number): NoisyMatrix {
  const data = roundToDtype(Float32Array.from(values), 'BF16');
  return noisyFromWeight({ rows, cols, data, dtype: 'BF16', tensor: 't', file: 'f' });
}

function build(kind: Case, d: number, headDim: number): { base: NoisyMatrix; candidate: NoisyMatrix; gauge: GaugeFreedom } {
  const rng = new Rng(11);
  const w = structured(d, d, rng);
  const headScales = Float64Array.from({ length: d / headDim }, () => Math.exp(0.7 * rng.gaussian()));
  let y: Float64Array;
  let gauge: GaugeFreedom = { rows: true, cols: true };
  if (kind === 'q') y = withLora(w, d, d, 16, 0.1, rng);
  else if (kind === 'v') y = withLora(w, d, d, 16, 0.1, rng).map((v, p) => v * headScales[Math.floor(Math.floor(p / d) / headDim)]!);
  else if (kind === 'o') {
    y = w.map((v, p) => v / headScales[Math.floor((p % d) / headDim)]!);
    gauge = { rows: false, cols: true };
  } else y = w.map((v) => v + 0.01 * 0.02 * rng.gaussian());
  return { base: bf16(w, d, d), candidate: bf16(y, d, d), gauge };
}

/** The inputs as raw arrays in one file: building them needs several times their memory, reading them does not. */
function save(file: string, kind: Case, d: number, headDim: number): void {
  const { base, candidate, gauge } = build(kind, d, headDim);
  const parts = [base.values, base.variance, candidate.values, candidate.variance].map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength));
  fs.writeFileSync(file, Buffer.concat([Buffer.from(JSON.stringify(gauge).padEnd(64)), ...parts]));
}

function load(file: string, d: number): { base: NoisyMatrix; candidate: NoisyMatrix; gauge: GaugeFreedom } {
  const fd = fs.openSync(file, 'r');
  const header = Buffer.alloc(64);
  fs.readSync(fd, header, 0, 64, 0);
  let at = 64;
  const read = <T extends Float64Array | Float32Array>(out: T): T => {
    fs.readSync(fd, new Uint8Array(out.buffer), 0, out.byteLength, at);
    at += out.byteLength;
    return out;
  };
  const matrix = (): NoisyMatrix => ({ rows: d, cols: d, values: read(new Float64Array(d * d)), variance: read(new Float32Array(d * d)) });
  const base = matrix(), candidate = matrix();
  fs.closeSync(fd);
  return { base, candidate, gauge: JSON.parse(header.toString().trim()) as GaugeFreedom };
}

function runOne(kind: Case, d: number, headDim: number, repeat: number, file: string): void {
  const { base, candidate, gauge } = load(file, d);
  (globalThis as { gc?: () => void }).gc?.();
  const before = process.resourceUsage().maxRSS;
  const rss = process.memoryUsage().rss / 1024;
  const seconds: number[] = [], cpuSeconds: number[] = [];
  let result = null as ReturnType<typeof lowRankDelta> | null;
  for (let r = 0; r < repeat; r++) {
    const start = performance.now(), cpuStart = process.cpuUsage();
    result = lowRankDelta(base, candidate, { gauge });
    const cpu = process.cpuUsage(cpuStart);
    seconds.push((performance.now() - start) / 1000);
    cpuSeconds.push((cpu.user + cpu.system) / 1e6);
  }
  const peak = process.resourceUsage().maxRSS;
  const extraMiB = (peak - Math.max(before, rss)) / 1024;
  if (!result) return;
  const s = Array.from(result.spectrum.slice(0, 3), (v) => v.toFixed(2)).join(' ');
  // Digests of the spectrum and the fitted gauge: a faster path must reproduce them to rounding.
  const digest = (v: Float64Array, f: (x: number) => number) => v.reduce((t, x) => t + f(x), 0).toPrecision(12);
  const digests = `spectrum ${digest(result.spectrum, (x) => x)} gauge ${digest(result.rowScale, (x) => Math.log(Math.abs(x)))} ${digest(result.colScale, (x) => Math.log(Math.abs(x)))}`;
  console.log(
    `${kind.padEnd(5)} ${d}x${d}  rank ${String(result.rank).padStart(3)} lowRank ${String(result.lowRank).padEnd(5)} ` +
    `s/edge ${s.padEnd(18)} wall ${seconds.map((t) => t.toFixed(2)).join(' ')} s cpu ${cpuSeconds.map((t) => t.toFixed(2)).join(' ')} s  peak +${extraMiB.toFixed(0)} MiB  ${process.argv.includes('--digest') ? digests : ''}`,
  );
}

const d = Number(arg('hidden', '1024'));
const headDim = Number(arg('head-dim', d >= 4096 ? '128' : '64'));
const repeat = Number(arg('repeat', '1'));
const only = arg('only', '');
const inputs = (kind: string) => path.join(os.tmpdir(), `lowrank-bench-${kind}-${d}-${headDim}.bin`);
if (only && process.argv.includes('--save')) {
  save(inputs(only), only as Case, d, headDim);
} else if (only) {
  runOne(only as Case, d, headDim, repeat, inputs(only));
} else {
  const cases = arg('case', CASES.join(',')).split(',') as Case[];
  const self = fileURLToPath(import.meta.url);
  const common = ['--hidden', String(d), '--head-dim', String(headDim), '--repeat', String(repeat)];
  for (const kind of cases) {
    if (!fs.existsSync(inputs(kind))) spawnSync(process.execPath, [self, ...common, '--only', kind, '--save'], { stdio: 'inherit' });
    const child = spawnSync(process.execPath, ['--expose-gc', self, ...common, '--only', kind, ...(process.argv.includes('--digest') ? ['--digest'] : [])], { stdio: 'inherit' });
    if (child.status !== 0) process.exitCode = 1;
  }
}
