/**
 * `lineage tree MODELS...`: sketch every model once (or take its sketch from the cache), then
 * recover the family forest and print it (terminal tree, JSON, DOT or Mermaid), with accuracy
 * against a ground-truth file when given.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Option, type Command } from 'commander';
import { BadInputError } from '../io/errors.js';
import { DEFAULT_CACHE_DIR } from '../sketch/cache.js';
import { loadSketch } from '../sketch/load.js';
import { recoverLineage, type LineageOptions } from '../tree/lineage.js';
import { renderDot, renderJson, renderMermaid, renderTerminal } from '../tree/render.js';
import { parseTruth, scoreAgainstTruth, type Truth, type TruthScore } from '../tree/truth.js';
import type { LineageResult } from '../tree/types.js';

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
}

/** Folder base names; names given twice get their parent folder as well ("a/p0", "b/p0"). */
export function modelNames(paths: readonly string[]): string[] {
  const resolved = paths.map((p) => path.resolve(p));
  const base = resolved.map((p) => path.basename(p));
  return resolved.map((p, i) => {
    if (base.filter((b) => b === base[i]).length === 1) return base[i]!;
    const long = `${path.basename(path.dirname(p))}/${base[i]}`;
    return resolved.filter((q) => `${path.basename(path.dirname(q))}/${path.basename(q)}` === long).length === 1 ? long : p;
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

export function registerTree(program: Command): void {
  program
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
    .action((paths: string[], flags: TreeFlags) => {
      if (paths.length < 2) throw new BadInputError('give at least two models');
      const truth = flags.truth ? readTruth(flags.truth) : null;
      const names = modelNames(paths);
      const cacheDir = flags.cache === false ? null : flags.cache;
      const models = paths.map((p, i) => ({ name: names[i]!, sketch: loadSketch(p, { cacheDir }).sketch }));
      const options: LineageOptions = { method: flags.method, motherDistance: flags.motherDistance, kurtosisRises: flags.kurtosisRises };
      const { result } = recoverLineage(models, options);
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
      // DOT and Mermaid stay valid files on stdout: the score goes to stderr then.
      if (score && (flags.dot || flags.mermaid)) process.stderr.write(formatScore(score, excluded));
      else if (score) process.stdout.write('\n' + formatScore(score, excluded));
    });
}
