/**
 * `lineage tree MODELS...`: the family forest of the models (the library's chartTree,
 * src/api/tree.ts, does the work) printed as a terminal tree, JSON, DOT or Mermaid, with an HTML
 * report, and accuracy against a ground-truth file when given.
 */
import { Option, type Command } from 'commander';
import { wholeNumberOption } from '../api/options.js';
import { MOTHER_DISTANCES, TREE_METHODS, chartTree, treeResult } from '../api/tree.js';
import { MAX_WORKERS } from '../api/workers.js';
import { EXIT, LineageError, printable } from '../io/errors.js';
import { writeReportFile } from '../reports/html-page.js';
import { renderTreeHtml } from '../reports/html-tree.js';
import { DEFAULT_CACHE_DIR } from '../store/sketch-cache.js';
import { renderDot, renderMermaid, renderTerminal, renderTruthScore } from '../reports/tree-render.js';
import type { MotherDistance } from '../tree/lineage.js';
import { addQuietOption, formatBytes, progressDisplay } from './progress.js';
import { REGISTRY_FLAG, REGISTRY_HELP } from './registry-commands.js';
import { writeResult } from './run.js';

interface TreeFlags {
  json: boolean;
  dot: boolean;
  mermaid: boolean;
  truth?: string;
  method: (typeof TREE_METHODS)[number];
  motherDistance: MotherDistance;
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
  recoverBase?: string;
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
    .addOption(new Option('--method <method>', 'default (norm-growth direction, relatedness test) or mother (the paper)').choices(TREE_METHODS).default('default'))
    .addOption(new Option('--mother-distance <kind>', 'MoTHer distance: LoRA rank sum, RMS, or auto').choices(MOTHER_DISTANCES).default('auto'))
    .option('--kurtosis-rises', 'MoTHer: kurtosis rises from parent to child (continued pre-training)', false)
    .option('--cache <dir>', 'sketch cache folder', DEFAULT_CACHE_DIR)
    .option('--no-cache', 'do not read or write the sketch cache')
    .option('--rehash', 'key the sketch cache on a hash of the whole weight files (reads them all) instead of their size, times and inode', false)
    .option('--include-obfuscated', 'with --truth: also score models the truth marks as obfuscated', false)
    .option('--no-align', 'do not place models the sketches leave unplaced (obfuscated copies) by aligning them (extra reads)')
    .option('--html <file>', 'also write a self-contained HTML report of the tree')
    .option('--workers <n>', 'worker threads that sketch the models (default: the number of cores, at most 4; 0: none)')
    .option('--strict', 'stop at the first input that is not a usable model (exit 4) instead of skipping it', false)
    .option('--recover-base <dir>', 'write each absent common parent the tree shows as a model folder in DIR, recovered from its children (Spectral DeTuning)')
    .option(REGISTRY_FLAG, `${REGISTRY_HELP}: the tree of every model sketched there, no weight read (no alignment)`);
  addQuietOption(command).action(async (paths: string[], flags: TreeFlags) => {
    const formats = (['json', 'dot', 'mermaid'] as const).filter((f) => flags[f]).map((f) => `--${f}`);
    if (formats.length > 1) throw new LineageError(`give at most one output format, not ${formats.join(' and ')}`, { exitCode: EXIT.usage });
    const progress = progressDisplay({ json: flags.json, quiet: flags.quiet });
    let chart;
    try {
      chart = await chartTree(paths, {
        method: flags.method,
        motherDistance: flags.motherDistance,
        kurtosisRises: flags.kurtosisRises,
        cache: flags.cache,
        rehash: flags.rehash,
        align: flags.align,
        workers: flags.workers === undefined ? undefined : wholeNumberOption('--workers', flags.workers, 0, MAX_WORKERS),
        strict: flags.strict,
        truth: flags.truth,
        includeObfuscated: flags.includeObfuscated,
        registry: flags.registry,
        ...(flags.recoverBase !== undefined ? { recoverBase: flags.recoverBase } : {}),
        onProgress: progress.onProgress,
        onWarning: (message) => void process.stderr.write(`warning: ${printable(message)}\n`),
      });
    } finally {
      progress.stop();
    }
    const { result, score, unscored } = chart;
    if (flags.html) writeReportFile(flags.html, await renderTreeHtml(result));
    // DOT and Mermaid stay valid files on stdout: the score goes to stderr then.
    const graphFile = flags.dot || flags.mermaid;
    const render = flags.dot ? renderDot : flags.mermaid ? renderMermaid : renderTerminal;
    writeResult(treeResult(chart), flags.json, (r) => render(r) + (score && !graphFile ? '\n' + renderTruthScore(score, unscored) : ''));
    if (flags.json) return;
    for (const note of result.notes ?? []) process.stderr.write(`note: ${printable(note)}\n`);
    if (result.alignment) {
      const { models: aligned, verifyPasses, bytesRead } = result.alignment;
      process.stderr.write(`note: placing ${printable(aligned.join(', '))} took ${verifyPasses} verify passes reading ${formatBytes(bytesRead)} (beyond one read per model)\n`);
    }
    if (score && graphFile) process.stderr.write(renderTruthScore(score, unscored));
  });
}
