/**
 * `lineage tree` at real model sizes: the sketch pass against a cold `cat` of the same files,
 * measured side by side in one run, each from an emptied page cache, plus the published MoTHer
 * steps on the same models.
 *
 *   npm run bench:tree -- --shape 1b|7b [--models N] [--rounds R] [--workers W] [--dir DIR] [--keep] [--no-mother]
 *
 * Writes N synthetic bf16 Llama models of the shape (default 2: a base and its LoRA r16 on q, v;
 * more models extend the family with LoRA and full fine-tunes, see familySpecs), generated layer
 * by layer so memory stays bounded, then per round: empty the page cache, `cat` every weight
 * file to /dev/null, then read them again with dd's direct 16 MiB reads (which bypass the page
 * cache: the disk's own speed); empty it again, run the tree (sketch every model with no cache, recover the
 * forest) in a child process. Prints each round's times, the ratio tree / cat, the tree's peak
 * RSS and whether the forest is the true one. Then (unless --no-mother, or when the models do not
 * fit in memory) the published MoTHer algorithm as its code runs it: load every model whole as
 * float32, excess kurtosis of o_proj per layer, RMS distance over the square attention matrices,
 * minimum directed spanning tree, timed from an emptied page cache: in Python with torch, scipy
 * and networkx (bench/mother.py, where Debian's python3-torch is installed) and the same steps
 * in TypeScript.
 * Emptying the page cache needs Linux and root.
 */
import { catSeconds, directReadSeconds, dropPageCache } from './disk.js';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeHeader, encodeValues, type TensorSpec } from '../src/io/writer.js';
import { openTensorSource } from '../src/io/source.js';
import { Rng } from '../src/linalg/rng.js';
import { loadSketches } from '../src/store/load-sketches.js';
import { recoverLineage, type SketchedModel } from '../src/tree/lineage.js';
import { minimumArborescence } from '../src/tree/arborescence.js';
import {
  addLora, fullFineTune, hfConfig, moduleShape, MODULES, randomGlobals, randomLayer, tensorName, type LlamaConfig, type LlamaState, type Module,
} from '../test/helpers/synthetic-llama.js';

const SHAPES: Readonly<Record<string, LlamaConfig>> = {
  small: { hidden: 1024, intermediate: 2816, layers: 4, vocab: 4096, heads: 16, kvHeads: 4, headDim: 64 },
  '1b': { hidden: 2048, intermediate: 5632, layers: 22, vocab: 32000, heads: 32, kvHeads: 4, headDim: 64 },
  '7b': { hidden: 4096, intermediate: 11008, layers: 32, vocab: 32000, heads: 32, kvHeads: 32, headDim: 128 },
};

interface ModelSpec {
  readonly name: string;
  readonly parent: string | null;
  readonly change?: { readonly kind: 'lora'; readonly rank: number; readonly targets: readonly Module[] } | { readonly kind: 'full' };
}

/** m0 the root, m1 its LoRA r16 on q, v; then LoRA and full fine-tunes of earlier members. */
function familySpecs(count: number): ModelSpec[] {
  const specs: ModelSpec[] = [{ name: 'm0', parent: null }];
  const loras: Array<{ rank: number; targets: Module[] }> = [
    { rank: 16, targets: ['q_proj', 'v_proj'] }, { rank: 8, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] },
    { rank: 4, targets: ['gate_proj', 'up_proj', 'down_proj'] }, { rank: 32, targets: ['v_proj', 'o_proj'] },
  ];
  for (let i = 1; i < count; i++) {
    const parent = `m${i <= 2 ? 0 : Math.floor((i - 1) / 2)}`;
    specs.push(i % 3 === 2 ? { name: `m${i}`, parent, change: { kind: 'full' } } : { name: `m${i}`, parent, change: { kind: 'lora', ...loras[(i - 1) % loras.length]! } });
  }
  return specs;
}

function layerOf(name: string): number | null {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : null;
}

/** Every model's tensors of one layer (null: the globals), each derived from its parent's. */
function familyLayer(config: LlamaConfig, specs: readonly ModelSpec[], layer: number | null): Map<string, LlamaState> {
  const rng = new Rng(1000 + (layer ?? -1));
  const states = new Map<string, LlamaState>();
  specs.forEach((spec, i) => {
    if (!spec.parent) {
      states.set(spec.name, layer === null ? randomGlobals(config, rng) : randomLayer(config, layer, rng));
      return;
    }
    const parent = states.get(spec.parent)!;
    if (layer === null) states.set(spec.name, parent); // fine-tunes here leave embeddings alone
    else if (spec.change?.kind === 'lora') {
      states.set(spec.name, addLora(parent, { rank: spec.change.rank, targets: [...spec.change.targets], scale: 0.1, layers: [layer] }, 7919 * i + layer).state);
    } else states.set(spec.name, fullFineTune(parent, 0.02, 7919 * i + layer));
  });
  return states;
}

/** Writes every model as dir/NAME/model.safetensors (+ config.json), layer by layer. */
function writeFamily(dir: string, config: LlamaConfig, specs: readonly ModelSpec[]): string[] {
  const shapes: TensorSpec[] = [
    { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [config.vocab, config.hidden] },
    { name: 'lm_head.weight', dtype: 'BF16', shape: [config.vocab, config.hidden] },
    { name: 'model.norm.weight', dtype: 'BF16', shape: [config.hidden] },
  ];
  for (let layer = 0; layer < config.layers; layer++) {
    for (const module of MODULES) shapes.push({ name: tensorName(layer, module), dtype: 'BF16', shape: moduleShape(config, module) });
    for (const norm of ['input_layernorm', 'post_attention_layernorm']) shapes.push({ name: `model.layers.${layer}.${norm}.weight`, dtype: 'BF16', shape: [config.hidden] });
  }
  const folders = specs.map((s) => path.join(dir, s.name));
  const fds = folders.map((folder) => {
    fs.mkdirSync(folder, { recursive: true });
    fs.writeFileSync(path.join(folder, 'config.json'), JSON.stringify(hfConfig(config, 'BF16'), null, 2));
    const fd = fs.openSync(path.join(folder, 'model.safetensors'), 'w');
    fs.writeSync(fd, encodeHeader(shapes, { format: 'pt' }));
    return fd;
  });
  try {
    let current: { layer: number | null; states: Map<string, LlamaState> } | null = null;
    for (const spec of shapes) {
      const layer = layerOf(spec.name);
      if (!current || current.layer !== layer) {
        current = null; // drop the previous layer first
        current = { layer, states: familyLayer(config, specs, layer) };
      }
      specs.forEach((s, i) => {
        const bytes = encodeValues('BF16', current!.states.get(s.name)!.get(spec.name)!.data);
        for (let done = 0; done < bytes.length;) done += fs.writeSync(fds[i]!, bytes, done, bytes.length - done);
      });
    }
  } finally {
    for (const fd of fds) fs.closeSync(fd);
  }
  fs.writeFileSync(path.join(dir, 'truth.json'), JSON.stringify({ models: specs.map((s) => ({ name: s.name, parent: s.parent })) }));
  return folders;
}

function weightFiles(folders: readonly string[]): string[] {
  return folders.map((f) => path.join(f, 'model.safetensors'));
}


interface TreePhase {
  readonly seconds: number;
  readonly sketchSeconds: number;
  readonly maxRssKiB: number;
  /** Tensor payload bytes the sketch pass read (every weight once: the linear ones sketched, the rest checked finite). */
  readonly bytesRead: number;
  readonly edges: ReadonlyArray<{ parent: string; child: string; kind: string; rank: number | null }>;
}

function treePhase(folders: readonly string[], workers: number): TreePhase {
  const started = performance.now();
  const loaded = loadSketches(folders, { cacheDir: null, workers });
  const models: SketchedModel[] = loaded.map((l, i) => {
    if ('error' in l) throw l.error;
    return { name: path.basename(folders[i]!), sketch: l.sketch };
  });
  const sketchSeconds = (performance.now() - started) / 1000;
  const bytesRead = loaded.reduce((sum, l) => sum + ('error' in l ? 0 : l.tensorBytesRead), 0);
  const { result } = recoverLineage(models);
  return {
    seconds: (performance.now() - started) / 1000, sketchSeconds, maxRssKiB: process.resourceUsage().maxRSS, bytesRead,
    edges: result.edges.map((e) => ({ parent: e.parent, child: e.child, kind: e.kind, rank: e.rank })),
  };
}

interface MotherPhase {
  readonly seconds: number;
  readonly loadSeconds: number;
  readonly maxRssKiB: number;
  readonly edges: ReadonlyArray<{ parent: string; child: string }>;
}

/** Scipy's default kurtosis: Fisher excess, biased, two passes over float64 sums. */
function excessKurtosis(values: Float32Array): number {
  let mean = 0;
  for (let i = 0; i < values.length; i++) mean += values[i]!;
  mean /= values.length;
  let m2 = 0, m4 = 0;
  for (let i = 0; i < values.length; i++) {
    const d = values[i]! - mean, d2 = d * d;
    m2 += d2;
    m4 += d2 * d2;
  }
  m2 /= values.length;
  m4 /= values.length;
  return m4 / (m2 * m2) - 3;
}

/**
 * The published MoTHer steps: every model loaded whole as float32 (as its code loads state dicts),
 * kurtosis of o_proj summed over layers, the distance the mean over layers of the RMS of the
 * difference of the square attention matrices, M = D + λ mean(D) T, Chu-Liu/Edmonds.
 */
function motherPhase(folders: readonly string[], config: LlamaConfig): MotherPhase {
  const started = performance.now();
  const models = folders.map((folder) => {
    const source = openTensorSource(folder);
    try {
      return new Map([...source.tensors.keys()].map((name) => [name, source.read(name)]));
    } finally {
      source.close();
    }
  });
  const loadSeconds = (performance.now() - started) / 1000;
  const square = MODULES.filter((m) => moduleShape(config, m)[0] === moduleShape(config, m)[1] && ['q_proj', 'k_proj', 'v_proj', 'o_proj'].includes(m));
  const kurtosis = models.map((state) => {
    let sum = 0;
    for (let layer = 0; layer < config.layers; layer++) sum += excessKurtosis(state.get(tensorName(layer, 'o_proj'))!);
    return sum;
  });
  const n = models.length;
  const distance = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let a = 0; a < n; a++) {
    for (let b = a + 1; b < n; b++) {
      let total = 0;
      for (let layer = 0; layer < config.layers; layer++) {
        let rms = 0;
        for (const module of square) {
          const x = models[a]!.get(tensorName(layer, module))!, y = models[b]!.get(tensorName(layer, module))!;
          let sq = 0;
          for (let i = 0; i < x.length; i++) sq += (x[i]! - y[i]!) ** 2;
          rms += Math.sqrt(sq / x.length);
        }
        total += rms / square.length;
      }
      distance[a]![b] = distance[b]![a] = total / config.layers;
    }
  }
  let mean = 0;
  for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) mean += distance[a]![b]! / (n * n - n);
  const cost = distance.map((row, a) => row.map((d, b) => (a === b ? Infinity : d + 0.3 * mean * (kurtosis[b]! > kurtosis[a]! ? 1 : 0))));
  const { parent } = minimumArborescence(cost);
  const names = folders.map((f) => path.basename(f));
  return {
    seconds: (performance.now() - started) / 1000, loadSeconds, maxRssKiB: process.resourceUsage().maxRSS,
    edges: parent.flatMap((p, child) => (p < 0 ? [] : [{ parent: names[p]!, child: names[child]! }])),
  };
}

function runPhase<T>(args: readonly string[]): T {
  const child = spawnSync(process.execPath, [fileURLToPath(new URL('./tree.js', import.meta.url)), ...args], {
    encoding: 'utf8', maxBuffer: 1 << 22, stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (child.status !== 0) throw new Error(`phase ${args.join(' ')} failed (exit ${child.status})`);
  return JSON.parse(child.stdout.trim().split('\n').pop()!) as T;
}

function argument(args: readonly string[], flag: string): string | undefined {
  const at = args.indexOf(flag);
  return at >= 0 ? args[at + 1] : undefined;
}

function trueEdges(specs: readonly ModelSpec[], edges: ReadonlyArray<{ parent: string; child: string }>): number {
  return specs.filter((s) => s.parent && edges.some((e) => e.parent === s.parent && e.child === s.name)).length;
}

/** A python3 that imports torch, scipy and networkx (the system one first: Debian's packages live there), or null. */
function pythonWithTorch(): string | null {
  for (const python of ['/usr/bin/python3', 'python3']) {
    if (spawnSync(python, ['-c', 'import torch, scipy, networkx'], { stdio: 'ignore' }).status === 0) return python;
  }
  return null;
}

export function treeScaleMain(args: readonly string[]): void {
  const phase = argument(args, '--phase');
  const shapeName = argument(args, '--shape') ?? '1b';
  const config = SHAPES[shapeName];
  if (!config) throw new Error(`unknown --shape ${shapeName} (small, 1b or 7b)`);
  if (phase) {
    const folders = argument(args, '--folders')!.split(',');
    const result = phase === 'tree' ? treePhase(folders, Number(argument(args, '--workers'))) : motherPhase(folders, config);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const count = Number(argument(args, '--models') ?? 2);
  const report = (label: string, mother: MotherPhase, tree: TreePhase | null = lastTree) =>
    console.log(`${label}: ${mother.seconds.toFixed(2)} s (loading ${mother.loadSeconds.toFixed(2)} s); peak RSS ${(mother.maxRssKiB / 1024).toFixed(0)} MiB; `
      + `edges ${trueEdges(specs, mother.edges)}/${count - 1} true${tree ? `; our tree is ${(mother.seconds / tree.seconds).toFixed(1)}x faster` : ''}`);
  let lastTree: TreePhase | null = null;
  const rounds = Number(argument(args, '--rounds') ?? 2);
  const workers = Number(argument(args, '--workers') ?? Math.min(os.availableParallelism(), 4));
  const specs = familySpecs(count);
  const dir = argument(args, '--dir') ?? fs.mkdtempSync(path.join(os.tmpdir(), `model-lineage-bench-tree-${shapeName}-`));
  const keep = args.includes('--keep') || argument(args, '--dir') !== undefined;
  try {
    let folders = specs.map((s) => path.join(dir, s.name));
    if (folders.every((f) => fs.existsSync(path.join(f, 'model.safetensors')))) console.log(`reusing the models in ${dir}`);
    else {
      const started = performance.now();
      folders = writeFamily(dir, config, specs);
      console.log(`wrote ${count} models to ${dir} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    }
    const files = weightFiles(folders);
    const bytes = files.reduce((s, f) => s + fs.statSync(f).size, 0);
    console.log(`shape ${shapeName}: hidden ${config.hidden}, ${config.layers} layers, intermediate ${config.intermediate}, vocab ${config.vocab}; `
      + `${count} models, ${(bytes / 1e9).toFixed(2)} GB; ${os.availableParallelism()} cores, ${workers} sketch workers`);
    for (let round = 1; round <= rounds; round++) {
      dropPageCache();
      const cat = catSeconds(files);
      const direct = directReadSeconds(files);
      dropPageCache();
      const tree = runPhase<TreePhase>(['--phase', 'tree', '--shape', shapeName, '--folders', folders.join(','), '--workers', String(workers)]);
      lastTree = tree;
      const lora = tree.edges.map((e) => `${e.parent}->${e.child} ${e.kind}${e.rank ? ` r${e.rank}` : ''}`).join(', ');
      const directText = direct === null ? '' : `, dd O_DIRECT ${direct.toFixed(2)} s (${(bytes / 1e9 / direct).toFixed(2)} GB/s, tree / dd = ${(tree.seconds / direct).toFixed(2)})`;
      console.log(`round ${round}: cold cat ${cat.toFixed(2)} s (${(bytes / 1e9 / cat).toFixed(2)} GB/s)${directText}; tree ${tree.seconds.toFixed(2)} s `
        + `(sketch ${tree.sketchSeconds.toFixed(2)} s, read ${(tree.bytesRead / 1e9).toFixed(2)} GB); tree / cat = ${(tree.seconds / cat).toFixed(2)}; peak RSS ${(tree.maxRssKiB / 1024).toFixed(0)} MiB; `
        + `edges ${trueEdges(specs, tree.edges)}/${count - 1} true: ${lora}`);
    }
    const fits = bytes * 2 < os.freemem() * 0.8; // bf16 on disk is float32 twice over in memory
    if (args.includes('--no-mother') || !fits) {
      console.log(`MoTHer (published steps): ${fits ? 'skipped (--no-mother)' : `skipped: its float32 copies (${(bytes * 2 / 1e9).toFixed(1)} GB) do not fit in free memory`}`);
      return;
    }
    const python = pythonWithTorch();
    if (python) {
      dropPageCache();
      const script = path.join(fileURLToPath(new URL('../../bench/', import.meta.url)), 'mother.py');
      const run = spawnSync(python, [script, ...folders], { encoding: 'utf8', maxBuffer: 1 << 22, stdio: ['ignore', 'pipe', 'inherit'] });
      if (run.status !== 0) throw new Error(`bench/mother.py failed (exit ${run.status})`);
      report('MoTHer (published steps, Python + torch, float32 in memory)', JSON.parse(run.stdout.trim().split('\n').pop()!) as MotherPhase);
    } else {
      console.log('MoTHer in Python: skipped (no python3 with torch, scipy and networkx; Debian: python3-torch python3-scipy python3-networkx)');
    }
    dropPageCache();
    report('MoTHer (the same steps in TypeScript)', runPhase<MotherPhase>(['--phase', 'mother', '--shape', shapeName, '--folders', folders.join(',')]));
  } finally {
    if (!keep) fs.rmSync(dir, { recursive: true, force: true });
  }
}
