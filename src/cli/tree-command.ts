/**
 * `lineage tree MODELS...`: sketch every model once (or take its sketch from the cache), recover
 * the family forest, place what the sketches could not (obfuscated members) with verify passes,
 * and print it (terminal tree, JSON, DOT or Mermaid; HTML report), with accuracy against a
 * ground-truth file when given.
 */
import { Option, type Command } from 'commander';
import { SourceRoleReader } from '../arch/reader.js';
import { BadInputError, EXIT, LineageError, printable } from '../io/errors.js';
import { openTensorSource, readJsonFile } from '../io/source.js';
import { writeReportFile } from '../reports/html-page.js';
import { renderTreeHtml } from '../reports/html-tree.js';
import { DEFAULT_CACHE_DIR } from '../sketch/cache.js';
import { loadSketches, modelBytes, type LoadOptions } from '../sketch/load.js';
import { attachAdapters } from '../tree/adapters.js';
import { recoverLineageByArchitecture } from '../tree/architectures.js';
import type { LineageAnalysis, LineageOptions, SketchedModel } from '../tree/lineage.js';
import { placeUnplacedMembers } from '../tree/obfuscated.js';
import { renderDot, renderJson, renderMermaid, renderTerminal } from '../tree/render.js';
import { parseTruth, scoreAgainstTruth, type Truth, type TruthScore } from '../tree/truth.js';
import type { LineageResult } from '../tree/types.js';
import { SkipList, collectTreeInputs, countSketchedOnce, keepSketched, modelNames } from './model-inputs.js';
import { addQuietOption, formatBytes, startWeightPass, type ProgressSettings, type WeightPass } from './progress.js';
import { defaultWorkers, sketchWorkers } from './workers.js';
import { REGISTRY_FLAG, REGISTRY_HELP } from './registry-commands.js';
import { registryModels, saveRegistryTree } from './registry-tree.js';

interface TreeFlags {
  json: boolean;
  dot: boolean;
  mermaid: boolean;
  truth?: string;
  method: 'default' | 'mother';
  motherDistance: 'auto' | 'lora' | 'rms';
  kurtosisRises: boolean;
  cache: string | false;
  rehash: boolean;
  includeObfuscated: boolean;
  align: boolean;
  html?: string;
  quiet?: boolean;
  workers?: string;
  strict: boolean;
  registry?: string;
}

function readTruth(file: string): Truth & { obfuscated: Set<string> } {
  const parsed = readJsonFile(file);
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

/** Models left out of the score: obfuscated ones (unless asked for) and adapters the truth does not list. */
interface Unscored {
  readonly obfuscated: readonly string[];
  readonly adapters: readonly string[];
}

export function formatScore(score: TruthScore, unscored: Unscored): string {
  const lines = [
    `edge accuracy: ${score.correctEdges}/${score.trueEdges} = ${(100 * score.edgeAccuracy).toFixed(1)}%`,
    `clustering accuracy (Rand index): ${(100 * score.clusteringAccuracy).toFixed(1)}%  (adjusted ${score.adjustedRandIndex.toFixed(3)})`,
  ];
  for (const e of score.wrongEdges) lines.push(`  wrong: ${e.parent} -> ${e.child} (${e.problem}; true parent ${e.trueParent ?? 'none'})`);
  for (const e of score.missedEdges) lines.push(`  missed: ${e.parent} -> ${e.child}`);
  if (unscored.obfuscated.length) lines.push(`  not scored (obfuscated; use --include-obfuscated): ${unscored.obfuscated.join(', ')}`);
  if (unscored.adapters.length) lines.push(`  not scored (adapters the truth does not list): ${unscored.adapters.join(', ')}`);
  return lines.map(printable).join('\n') + '\n'; // names from the truth file and folders
}

/** Where sketches are cached (null: not at all) and how their files are keyed. */
type CacheSettings = Pick<LoadOptions, 'cacheDir' | 'rehash'>;

/**
 * Sketch every model (one read each, none on a cache hit) on `workers` threads, with one progress
 * display by bytes across all models: per model its sketch, or the error that stopped it.
 */
function sketchModels(paths: readonly string[], cache: CacheSettings, workers: number, progress: ProgressSettings) {
  const total = paths.reduce((sum, p) => sum + modelBytes(p), 0);
  const pass = startWeightPass(`sketching ${paths.length} models`, total, progress);
  try {
    return loadSketches(paths, { ...cache, workers, onBytes: pass.onBytes });
  } finally {
    pass.stop();
  }
}

/**
 * Place what the sketches could not (obfuscated members) with verify passes, each shown as a
 * progress pass over both models' weights.
 */
function placeWithAlignment(
  pathOf: ReadonlyMap<string, string>, models: readonly SketchedModel[], analysis: LineageAnalysis, progress: ProgressSettings,
): LineageResult {
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

/**
 * The forest of everything given: models sketched (a model failing to be sketched is skipped),
 * each architecture's forest recovered and, unless `align` is off, its unplaced members placed by
 * alignment, adapters attached under their bases; the skipped inputs and the notes added.
 */
async function chartInputs(paths: readonly string[], flags: TreeFlags, progress: ProgressSettings): Promise<LineageResult> {
  const skip = new SkipList(flags.strict, (s) => process.stderr.write(`warning: skipped ${printable(s.path)}: ${printable(s.reason)}\n`));
  const inputs = collectTreeInputs(paths, skip);
  if (inputs.models.length + inputs.adapters.length + skip.entries.length < 2) {
    throw new LineageError('give at least two models (or a folder holding them)', { exitCode: EXIT.usage });
  }
  const cache: CacheSettings = { cacheDir: flags.cache === false ? null : flags.cache, rehash: flags.rehash };
  const sketched = keepSketched(inputs.models, sketchModels(inputs.models.map((m) => m.path), cache, sketchWorkers(flags.workers), progress), skip);
  if (sketched.length === 0) throw new BadInputError(`no model to chart among the inputs (${skip.entries.length} skipped)`);
  const input = new Map(inputs.models.map((m) => [m.name, m]));
  const pathOf = new Map(inputs.models.map((m) => [m.name, m.path]));
  const once = countSketchedOnce(sketched, pathOf);
  const models = once.models.map((m) => ({ ...m, headShapes: input.get(m.name)!.headShapes }));
  const options: LineageOptions = { method: flags.method, motherDistance: flags.motherDistance, kurtosisRises: flags.kurtosisRises };
  const forest = recoverLineageByArchitecture(
    models, options, flags.align ? (group, analysis) => placeWithAlignment(pathOf, group, analysis, progress) : undefined,
  );
  const { result, refused } = attachAdapters(forest, models, inputs.adapters);
  const adapterGiven = new Map(inputs.adapters.map((a) => [a.name, a.given]));
  for (const r of refused) skip.add(adapterGiven.get(r.name)!, r.reason);
  const notes = [...(result.notes ?? []), ...inputs.notes, ...once.notes];
  // In path order, like everything else in the output independent of the inputs' order.
  const skipped = [...skip.entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { ...result, ...(notes.length ? { notes } : {}), skipped };
}

/**
 * The forest of every model a registry holds sketched: its stored sketches stand in for the
 * models (no weight is read, so nothing is placed by alignment); the result is stored back.
 */
async function chartRegistry(location: string, flags: TreeFlags): Promise<LineageResult> {
  const stored = await registryModels(location);
  const names = modelNames(stored.paths);
  const models = stored.sketches.map((sketch, i) => ({ name: names[i]!, sketch }));
  const options: LineageOptions = { method: flags.method, motherDistance: flags.motherDistance, kurtosisRises: flags.kurtosisRises };
  const forest = recoverLineageByArchitecture(models, options, undefined);
  const notes = [...stored.notes, ...(forest.notes ?? [])];
  const result: LineageResult = { ...forest, ...(notes.length ? { notes } : {}) };
  await saveRegistryTree(location, result, models.length);
  return result;
}

export function registerTree(program: Command): void {
  const command = program
    .command('tree')
    .description('recover the family tree(s) of a set of models: who was fine-tuned from whom, LoRA or full, with which rank')
    .argument('[models...]', 'model folders, .safetensors files, PEFT adapter folders, or folders holding them (none with --registry)')
    .option('--json', 'machine-readable output (contract in the README)', false)
    .option('--dot', 'Graphviz DOT output', false)
    .option('--mermaid', 'Mermaid flowchart output', false)
    .option('--truth <file>', 'ground truth (zoo.json format): print edge and clustering accuracy')
    .addOption(new Option('--method <method>', 'default (norm-growth direction, relatedness test) or mother (the paper)').choices(['default', 'mother']).default('default'))
    .addOption(new Option('--mother-distance <kind>', 'MoTHer distance: LoRA rank sum, RMS, or auto').choices(['auto', 'lora', 'rms']).default('auto'))
    .option('--kurtosis-rises', 'MoTHer: kurtosis rises from parent to child (continued pre-training)', false)
    .option('--cache <dir>', 'sketch cache folder', DEFAULT_CACHE_DIR)
    .option('--no-cache', 'do not read or write the sketch cache')
    .option('--rehash', 'key the sketch cache on a hash of the whole weight files (reads them all) instead of their size, times and inode', false)
    .option('--include-obfuscated', 'with --truth: also score models the truth marks as obfuscated', false)
    .option('--no-align', 'do not place models the sketches leave unplaced (obfuscated copies) by aligning them (extra reads)')
    .option('--html <file>', 'also write a self-contained HTML report of the tree')
    .option('--workers <n>', 'worker threads that sketch the models (default: the number of cores, at most 4; 0: none)')
    .option('--strict', 'stop at the first input that is not a usable model (exit 4) instead of skipping it', false)
    .option(REGISTRY_FLAG, `${REGISTRY_HELP}: the tree of every model sketched there, no weight read (no alignment)`);
  addQuietOption(command).action(async (paths: string[], flags: TreeFlags) => {
    const formats = (['json', 'dot', 'mermaid'] as const).filter((f) => flags[f]).map((f) => `--${f}`);
    if (formats.length > 1) throw new LineageError(`give at most one output format, not ${formats.join(' and ')}`, { exitCode: EXIT.usage });
    if (flags.registry !== undefined && paths.length > 0) throw new LineageError('give models or --registry, not both', { exitCode: EXIT.usage });
    const truth = flags.truth ? readTruth(flags.truth) : null;
    const progress: ProgressSettings = { json: flags.json, quiet: flags.quiet };
    const result = flags.registry !== undefined ? await chartRegistry(flags.registry, flags) : await chartInputs(paths, flags, progress);
    const names = result.trees.flatMap((t) => t.members);
    if (flags.html) writeReportFile(flags.html, await renderTreeHtml(result));
    let score: TruthScore | null = null;
    let unscored: Unscored = { obfuscated: [], adapters: [] };
    if (truth) {
      const listed = new Set(truth.models.map((m) => m.name));
      unscored = {
        obfuscated: flags.includeObfuscated ? [] : names.filter((n) => truth.obfuscated.has(n)),
        adapters: result.edges.filter((e) => e.adapter && !listed.has(e.child)).map((e) => e.child),
      };
      score = scoreAgainstTruth(withoutModels(result, new Set([...unscored.obfuscated, ...unscored.adapters])), truth);
    }
    const excluded = [...unscored.obfuscated, ...unscored.adapters];
    if (flags.json) {
      process.stdout.write(renderJson(score ? { ...result, score: { ...score, excluded } } : result));
      return;
    }
    if (flags.dot) process.stdout.write(renderDot(result));
    else if (flags.mermaid) process.stdout.write(renderMermaid(result));
    else process.stdout.write(renderTerminal(result));
    for (const note of result.notes ?? []) process.stderr.write(`note: ${printable(note)}\n`);
    if (result.alignment) {
      const { models: aligned, verifyPasses, bytesRead } = result.alignment;
      process.stderr.write(`note: placing ${printable(aligned.join(', '))} took ${verifyPasses} verify passes reading ${formatBytes(bytesRead)} (beyond one read per model)\n`);
    }
    // DOT and Mermaid stay valid files on stdout: the score goes to stderr then.
    if (score && (flags.dot || flags.mermaid)) process.stderr.write(formatScore(score, unscored));
    else if (score) process.stdout.write('\n' + formatScore(score, unscored));
  });
}
