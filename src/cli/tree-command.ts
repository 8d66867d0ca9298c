/**
 * `lineage tree MODELS...`: sketch every model once (or take its sketch from the cache), recover
 * the family forest, place what the sketches could not (obfuscated members) with verify passes,
 * and print it (terminal tree, JSON, DOT or Mermaid; HTML report), with accuracy against a
 * ground-truth file when given.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Option, type Command } from 'commander';
import { SourceRoleReader } from '../arch/reader.js';
import { BadInputError } from '../io/errors.js';
import { openTensorSource } from '../io/source.js';
import { writeReportFile } from '../reports/html-page.js';
import { renderTreeHtml } from '../reports/html-tree.js';
import { DEFAULT_CACHE_DIR } from '../sketch/cache.js';
import { loadSketch } from '../sketch/load.js';
import { recoverLineage, type LineageOptions, type SketchedModel } from '../tree/lineage.js';
import { placeUnplacedMembers } from '../tree/obfuscated.js';
import { renderDot, renderJson, renderMermaid, renderTerminal } from '../tree/render.js';
import { parseTruth, scoreAgainstTruth, type Truth, type TruthScore } from '../tree/truth.js';
import type { LineageResult } from '../tree/types.js';
import { addQuietOption, formatBytes, startWeightPass, type ProgressSettings, type WeightPass } from './progress.js';
import { defaultWorkers } from './workers.js';

interface TreeFlags {
  json: boolean;
  dot: boolean;
  mermaid: boolean;
  truth?: string;
  method: 'default' | 'mother';
  motherDistance: 'auto' | 'lora' | 'rms';
  kurtosisRises: boolean;
  cache: string | false;
  includeObfuscated: boolean;
  align: boolean;
  html?: string;
  quiet?: boolean;
}

/**
 * Folder base names (a GGUF file's name without `.gguf`); names given twice get their parent
 * folder as well ("a/p0", "b/p0").
 */
export function modelNames(paths: readonly string[]): string[] {
  const resolved = paths.map((p) => path.resolve(p));
  const baseName = (p: string) => path.basename(p).replace(/\.gguf$/i, '');
  const base = resolved.map(baseName);
  return resolved.map((p, i) => {
    if (base.filter((b) => b === base[i]).length === 1) return base[i]!;
    const long = `${path.basename(path.dirname(p))}/${base[i]}`;
    return resolved.filter((q) => `${path.basename(path.dirname(q))}/${baseName(q)}` === long).length === 1 ? long : p;
  });
}

function readTruth(file: string): Truth & { obfuscated: Set<string> } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new BadInputError(`cannot read the truth file (${(err as Error).message})`, { file });
  }
  const models = (parsed as { models?: Array<{ name?: unknown; kind?: unknown }> }).models ?? [];
  const obfuscated = new Set(models.filter((m) => m?.kind === 'obfuscated').map((m) => String(m.name)));
  return { ...parseTruth(parsed), obfuscated };
}

/** The result without some models (and their edges), for scoring. */
function withoutModels(result: LineageResult, drop: ReadonlySet<string>): LineageResult {
  return {
    ...result,
    trees: result.trees.map((t) => ({ ...t, members: t.members.filter((m) => !drop.has(m)) })).filter((t) => t.members.length > 0),
    edges: result.edges.filter((e) => !drop.has(e.parent) && !drop.has(e.child)),
  };
}

export function formatScore(score: TruthScore, excluded: readonly string[]): string {
  const lines = [
    `edge accuracy: ${score.correctEdges}/${score.trueEdges} = ${(100 * score.edgeAccuracy).toFixed(1)}%`,
    `clustering accuracy (Rand index): ${(100 * score.clusteringAccuracy).toFixed(1)}%  (adjusted ${score.adjustedRandIndex.toFixed(3)})`,
  ];
  for (const e of score.wrongEdges) lines.push(`  wrong: ${e.parent} -> ${e.child} (${e.problem}; true parent ${e.trueParent ?? 'none'})`);
  for (const e of score.missedEdges) lines.push(`  missed: ${e.parent} -> ${e.child}`);
  if (excluded.length) lines.push(`  not scored (obfuscated; use --include-obfuscated): ${excluded.join(', ')}`);
  return lines.join('\n') + '\n';
}

/** Sketch every model (one read each, none on a cache hit), with a progress display. */
function sketchModels(paths: readonly string[], names: readonly string[], cacheDir: string | null, progress: ProgressSettings): SketchedModel[] {
  const sizes = paths.map((p) => {
    const source = openTensorSource(p);
    try {
      return source.totalBytes;
    } finally {
      source.close();
    }
  });
  const pass = startWeightPass(`sketching ${paths.length} models`, sizes.reduce((a, b) => a + b, 0), progress);
  try {
    return paths.map((p, i) => {
      const loaded = loadSketch(p, { cacheDir });
      // A cached sketch reads no weights: count its bytes as done all the same.
      pass.onBytes(loaded.fromCache ? sizes[i]! : loaded.tensorBytesRead);
      return { name: names[i]!, sketch: loaded.sketch };
    });
  } finally {
    pass.stop();
  }
}

/**
 * Place what the sketches could not (obfuscated members) with verify passes, each shown as a
 * progress pass over both models' weights.
 */
function placeWithAlignment(
  paths: readonly string[], models: readonly SketchedModel[], analysis: ReturnType<typeof recoverLineage>, progress: ProgressSettings,
): LineageResult {
  const pathOf = new Map(models.map((m, i) => [m.name, paths[i]!]));
  const sizeOf = new Map(models.map((m) => [m.name, m.sketch.totalBytes]));
  let pass: WeightPass | null = null;
  try {
    return placeUnplacedMembers(models, analysis, {
      openReader: (name) => new SourceRoleReader(openTensorSource(pathOf.get(name)!, { onBytes: (n) => pass?.onBytes(n) })),
      workers: (base) => defaultWorkers(base, undefined),
      onPass: (base, candidate) => {
        pass?.stop();
        pass = startWeightPass(`aligning ${candidate} onto ${base}`, sizeOf.get(base)! + sizeOf.get(candidate)!, progress);
      },
    });
  } finally {
    // Assigned inside a callback, which the compiler's narrowing cannot see.
    (pass as WeightPass | null)?.stop();
  }
}

export function registerTree(program: Command): void {
  const command = program
    .command('tree')
    .description('recover the family tree(s) of a set of models: who was fine-tuned from whom, LoRA or full, with which rank')
    .argument('<models...>', 'model folders (or .safetensors files), at least two')
    .option('--json', 'machine-readable output (contract in the README)', false)
    .option('--dot', 'Graphviz DOT output', false)
    .option('--mermaid', 'Mermaid flowchart output', false)
    .option('--truth <file>', 'ground truth (zoo.json format): print edge and clustering accuracy')
    .addOption(new Option('--method <method>', 'default (norm-growth direction, relatedness test) or mother (the paper)').choices(['default', 'mother']).default('default'))
    .addOption(new Option('--mother-distance <kind>', 'MoTHer distance: LoRA rank sum, RMS, or auto').choices(['auto', 'lora', 'rms']).default('auto'))
    .option('--kurtosis-rises', 'MoTHer: kurtosis rises from parent to child (continued pre-training)', false)
    .option('--cache <dir>', 'sketch cache folder', DEFAULT_CACHE_DIR)
    .option('--no-cache', 'do not read or write the sketch cache')
    .option('--include-obfuscated', 'with --truth: also score models the truth marks as obfuscated', false)
    .option('--no-align', 'do not place models the sketches leave unplaced (obfuscated copies) by aligning them (extra reads)')
    .option('--html <file>', 'also write a self-contained HTML report of the tree');
  addQuietOption(command).action(async (paths: string[], flags: TreeFlags) => {
    if (paths.length < 2) throw new BadInputError('give at least two models');
    const truth = flags.truth ? readTruth(flags.truth) : null;
    const names = modelNames(paths);
    const cacheDir = flags.cache === false ? null : flags.cache;
    const progress: ProgressSettings = { json: flags.json, quiet: flags.quiet };
    const models = sketchModels(paths, names, cacheDir, progress);
    const options: LineageOptions = { method: flags.method, motherDistance: flags.motherDistance, kurtosisRises: flags.kurtosisRises };
    const analysis = recoverLineage(models, options);
    const result = flags.align ? placeWithAlignment(paths, models, analysis, progress) : analysis.result;
    if (flags.html) writeReportFile(flags.html, await renderTreeHtml(result));
    let score: TruthScore | null = null;
    let excluded: string[] = [];
    if (truth) {
      excluded = flags.includeObfuscated ? [] : names.filter((n) => truth.obfuscated.has(n));
      score = scoreAgainstTruth(withoutModels(result, new Set(excluded)), truth);
    }
    if (flags.json) {
      process.stdout.write(renderJson(score ? { ...result, score: { ...score, excluded } } : result));
      return;
    }
    if (flags.dot) process.stdout.write(renderDot(result));
    else if (flags.mermaid) process.stdout.write(renderMermaid(result));
    else process.stdout.write(renderTerminal(result));
    for (const note of result.notes ?? []) process.stderr.write(`note: ${note}\n`);
    if (result.alignment) {
      const { models: aligned, verifyPasses, bytesRead } = result.alignment;
      process.stderr.write(`note: placing ${aligned.join(', ')} took ${verifyPasses} verify passes reading ${formatBytes(bytesRead)} (beyond one read per model)\n`);
    }
    // DOT and Mermaid stay valid files on stdout: the score goes to stderr then.
    if (score && (flags.dot || flags.mermaid)) process.stderr.write(formatScore(score, excluded));
    else if (score) process.stdout.write('\n' + formatScore(score, excluded));
  });
}
