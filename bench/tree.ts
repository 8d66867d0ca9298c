/**
 * Benchmark of `lineage tree`: bytes read against the models' sizes, time, and what a rerun and
 * an added model cost with the sketch cache.
 *
 *   npm run bench:tree -- [--hidden 1024] [--layers 4] [--intermediate 2048] [--models 10]
 *   npm run bench:tree -- --shape 1b|7b [--models N] ...   (real sizes against a cold cat: tree-scale.ts)
 *
 * 1. The zoo (../shared/zoo, skipped when absent), without its obfuscated copies: cold run,
 *    rerun from the cache, and a run with one more model (q1) than the cached set.
 * 2. A synthetic family of N bf16 Llama models (default hidden 1024, 4 layers, intermediate
 *    2048) written to a temp folder: the same three runs.
 * "read ratio" = (tensor bytes + fingerprint bytes read) / (sum of the weight files' sizes).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSketch } from '../src/store/load-sketches.js';
import { recoverLineage } from '../src/tree/lineage.js';
import { parseTruth, scoreAgainstTruth } from '../src/tree/truth.js';
import { writeFamily, type FamilySpec } from '../test/helpers/synthetic-llama.js';
import { treeScaleMain } from './tree-scale.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function weightBytes(folder: string): number {
  return fs.readdirSync(folder).filter((f) => f.endsWith('.safetensors')).reduce((s, f) => s + fs.statSync(path.join(folder, f)).size, 0);
}

interface Run { seconds: number; bytes: number; tensorBytes: number; size: number; sketchSeconds: number }

function run(folders: readonly string[], cacheDir: string, truthFile?: string): Run {
  const start = performance.now();
  let bytes = 0, tensorBytes = 0;
  const models = folders.map((f) => {
    const l = loadSketch(f, { cacheDir });
    bytes += l.tensorBytesRead + l.fingerprintBytesRead;
    tensorBytes += l.tensorBytesRead;
    return { name: path.basename(f), sketch: l.sketch };
  });
  const sketchSeconds = (performance.now() - start) / 1000;
  const { result } = recoverLineage(models);
  const seconds = (performance.now() - start) / 1000;
  if (truthFile) {
    const score = scoreAgainstTruth(result, parseTruth(JSON.parse(fs.readFileSync(truthFile, 'utf8'))));
    console.log(`    accuracy: edges ${score.correctEdges}/${score.trueEdges}, clustering ${score.clusteringAccuracy.toFixed(3)}`);
  }
  return { seconds, bytes, tensorBytes, size: folders.reduce((s, f) => s + weightBytes(f), 0), sketchSeconds };
}

function report(label: string, r: Run): void {
  console.log(`  ${label.padEnd(34)} ${r.seconds.toFixed(2).padStart(7)} s (sketch ${r.sketchSeconds.toFixed(2)} s)  `
    + `read ${(r.bytes / 1e6).toFixed(2)} MB of ${(r.size / 1e6).toFixed(2)} MB = ${(r.bytes / r.size).toFixed(3)} `
    + `(tensors ${(r.tensorBytes / 1e6).toFixed(2)} MB)`);
}

function suite(title: string, folders: readonly string[], added: string, truthFile?: string): void {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-bench-cache-'));
  try {
    console.log(`${title} (${folders.length} models)`);
    report('cold (no cache)', run(folders, cache, truthFile));
    report('rerun (all cached)', run(folders, cache));
    const plus = run([...folders, added], cache, truthFile);
    report(`+1 model (${path.basename(added)})`, plus);
    console.log(`    the added model's files: ${(weightBytes(added) / 1e6).toFixed(2)} MB; tensor bytes read on that run ${(plus.tensorBytes / 1e6).toFixed(2)} MB`);
  } finally {
    fs.rmSync(cache, { recursive: true, force: true });
  }
}

if (process.argv.includes('--shape')) {
  treeScaleMain(process.argv.slice(2));
  process.exit(0);
}

const zoo = path.join(REPO, '..', 'shared', 'zoo');
if (fs.existsSync(path.join(zoo, 'zoo.json'))) {
  const names = ['p0', 'p1', 'p2', 'p3', 'p4', 'p1a', 'p2a', 'p4a', 'q0', 'q2'];
  suite('zoo', names.map((n) => path.join(zoo, n)), path.join(zoo, 'q1'), path.join(zoo, 'zoo.json'));
} else {
  console.log('zoo: skipped (../shared/zoo is absent)');
}

const dims = { hidden: flag('hidden', 1024), layers: flag('layers', 4), intermediate: flag('intermediate', 2048), heads: 8 };
const count = flag('models', 10);
const specs: FamilySpec[] = [{ name: 'r0', kind: 'root' }, { name: 's0', kind: 'root' }];
for (let i = 2; i <= count; i++) {
  const parent = i % 3 === 0 ? 's0' : specs[Math.max(0, i - 3)]!.name;
  specs.push(i % 2 === 0
    ? { name: `m${i}`, kind: 'lora', parent, rank: 8 + (i % 4) * 8, modules: ['q_proj', 'v_proj', 'o_proj'] }
    : { name: `m${i}`, kind: 'full', parent });
}
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-bench-models-'));
try {
  const writeStart = performance.now();
  const folders = writeFamily(dir, specs, dims, 1);
  const truthFile = path.join(dir, 'truth.json');
  fs.writeFileSync(truthFile, JSON.stringify({ models: specs.map((s) => ({ name: s.name, parent: s.kind === 'root' ? null : s.parent })) }));
  console.log(`synthetic models written in ${((performance.now() - writeStart) / 1000).toFixed(1)} s`);
  const all = specs.map((s) => folders.get(s.name)!);
  suite(`synthetic hidden ${dims.hidden}, ${dims.layers} layers, intermediate ${dims.intermediate}`, all.slice(0, -1), all[all.length - 1]!, truthFile);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
