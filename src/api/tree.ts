/**
 * `tree(models)`: sketch every model once (or take its sketch from the cache), recover the family
 * forest, place what the sketches could not (obfuscated members) with verify passes, attach
 * adapters, and score it against a ground-truth file when given. Resolves to what
 * `lineage tree --json` prints; the command calls chartTree and only prints.
 */
import { SourceRoleReader } from '../arch/reader.js';
import { BadInputError, EXIT, LineageError } from '../io/errors.js';
import { openTensorSource, readJsonFile } from '../io/source.js';
import { DEFAULT_CACHE_DIR } from '../store/sketch-cache.js';
import { loadSketches, type LoadOptions } from '../store/load-sketches.js';
import { attachAdapters } from '../tree/adapters.js';
import { recoverLineageByArchitecture } from '../tree/architectures.js';
import type { LineageAnalysis, LineageOptions, MotherDistance, SketchedModel } from '../tree/lineage.js';
import { placeUnplacedMembers } from '../tree/place-by-alignment.js';
import { parseTruth, scoreForest, type TruthScore, type Unscored } from '../tree/truth.js';
import type { LineageResult } from '../tree/types.js';
import { SkipList, collectTreeInputs, countSketchedOnce, keepSketched, modelNames, type ModelInput } from './model-inputs.js';
import { choiceOption, startPass, type ProgressListener } from './options.js';
import { registryModels, saveRegistryTree } from './registry-tree.js';
import { defaultWorkers, sketchWorkers } from './workers.js';
import { writeRecoveredBases } from './recover-base.js';

export const TREE_METHODS = ['default', 'mother'] as const;
export const MOTHER_DISTANCES = ['auto', 'lora', 'rms'] as const;

export interface TreeOptions {
  /** `default` (norm-growth direction, relatedness test) or `mother` (the paper). */
  readonly method?: (typeof TREE_METHODS)[number];
  /** MoTHer distance: LoRA rank sum, RMS, or auto (default). */
  readonly motherDistance?: MotherDistance;
  /** MoTHer: kurtosis rises from parent to child (continued pre-training). */
  readonly kurtosisRises?: boolean;
  /** Sketch cache folder (default `.lineage-cache`), or false: neither read nor written. */
  readonly cache?: string | false;
  /** Key the sketch cache on a hash of the whole weight files instead of their size, times and inode. */
  readonly rehash?: boolean;
  /** Place models the sketches leave unplaced (obfuscated copies) by aligning them (default true; extra reads). */
  readonly align?: boolean;
  /** Worker threads that sketch the models (default: cores, at most 4; 0: none). */
  readonly workers?: number;
  /** Throw (exit code 4) at the first input that is not a usable model instead of skipping it. */
  readonly strict?: boolean;
  /** Ground-truth file (zoo.json format): the result gets a `score`. */
  readonly truth?: string;
  /** With `truth`: also score models the truth marks as obfuscated. */
  readonly includeObfuscated?: boolean;
  /**
   * Write each absent common parent the tree shows (a virtual node) as a model folder in this
   * folder, recovered from its children by Spectral DeTuning (safetensors and config.json).
   */
  readonly recoverBase?: string;
  /** A sketch registry (postgres:// URL or embedded registry folder): the tree of every model sketched there; give no models then. */
  readonly registry?: string;
  /** Bytes read, as they are read: one `sketch` pass, then one `align` pass per verify pass. */
  readonly onProgress?: ProgressListener;
  /** Each warning (an input skipped), one line without its `warning: ` prefix; names come from files, unescaped. */
  readonly onWarning?: (message: string) => void;
}

/** What `lineage tree --json` prints: the forest, and with a truth file its score. */
export type TreeResult = LineageResult & { readonly score?: TruthScore & { readonly excluded: readonly string[] } };

/** The forest, its score against the truth (null without one) and what the score left out. */
export interface TreeChart {
  readonly result: LineageResult;
  readonly score: TruthScore | null;
  readonly unscored: Unscored;
}

function lineageOptions(options: TreeOptions): LineageOptions {
  return {
    method: choiceOption('method', options.method ?? 'default', TREE_METHODS),
    motherDistance: choiceOption('motherDistance', options.motherDistance ?? 'auto', MOTHER_DISTANCES),
    kurtosisRises: options.kurtosisRises ?? false,
  };
}

/** Where sketches are cached (null: not at all) and how their files are keyed. */
type CacheSettings = Pick<LoadOptions, 'cacheDir' | 'rehash'>;

/**
 * Sketch every model (one read each, none on a cache hit) on `workers` threads, as one progress
 * pass by bytes across all models: per model its sketch, or the error that stopped it.
 */
function sketchModels(models: readonly ModelInput[], cache: CacheSettings, workers: number, onProgress: ProgressListener | undefined) {
  const total = models.reduce((sum, m) => sum + m.bytes, 0);
  const onBytes = startPass(onProgress, 'sketch', `sketching ${models.length} models`, total);
  return loadSketches(models.map((m) => m.path), { ...cache, workers, onBytes });
}

/** Place what the sketches could not (obfuscated members) with verify passes, each its own progress pass over both models' weights. */
function placeWithAlignment(
  pathOf: ReadonlyMap<string, string>, models: readonly SketchedModel[], analysis: LineageAnalysis, onProgress: ProgressListener | undefined,
): LineageResult {
  const sizeOf = new Map(models.map((m) => [m.name, m.sketch.totalBytes]));
  let onBytes: (n: number) => void = () => {};
  return placeUnplacedMembers(models, analysis, {
    openReader: (name) => new SourceRoleReader(openTensorSource(pathOf.get(name)!, { onBytes: (n) => onBytes(n) })),
    workers: (base) => defaultWorkers(base, undefined),
    onPass: (base, candidate) => {
      onBytes = startPass(onProgress, 'align', `aligning ${candidate} onto ${base}`, sizeOf.get(base)! + sizeOf.get(candidate)!);
    },
  });
}

/**
 * The forest of everything given: models sketched (a model failing to be sketched is skipped),
 * each architecture's forest recovered and, unless `align` is off, its unplaced members placed by
 * alignment, adapters attached under their bases; the skipped inputs and the notes added.
 */
function chartInputs(paths: readonly string[], options: TreeOptions): LineageResult {
  const skip = new SkipList(options.strict ?? false, (s) => options.onWarning?.(`skipped ${s.path}: ${s.reason}`));
  const inputs = collectTreeInputs(paths, skip);
  if (inputs.models.length + inputs.adapters.length + skip.entries.length < 2) {
    throw new LineageError('give at least two models (or a folder holding them)', { exitCode: EXIT.usage });
  }
  const cache: CacheSettings = { cacheDir: options.cache === false ? null : options.cache ?? DEFAULT_CACHE_DIR, rehash: options.rehash ?? false };
  const workers = sketchWorkers(options.workers);
  const sketched = keepSketched(inputs.models, sketchModels(inputs.models, cache, workers, options.onProgress), skip);
  if (sketched.length === 0) throw new BadInputError(`no model to chart among the inputs (${skip.entries.length} skipped)`);
  const input = new Map(inputs.models.map((m) => [m.name, m]));
  const pathOf = new Map(inputs.models.map((m) => [m.name, m.path]));
  const once = countSketchedOnce(sketched, pathOf);
  const models = once.models.map((m) => ({ ...m, headShapes: input.get(m.name)!.headShapes }));
  const recovered: string[] = [];
  const forest = recoverLineageByArchitecture(models, lineageOptions(options), (group, analysis) => {
    const placed = options.align === false ? analysis.result : placeWithAlignment(pathOf, group, analysis, options.onProgress);
    if (options.recoverBase && analysis.result.virtualNodes?.length) {
      for (const base of writeRecoveredBases(options.recoverBase, group, group.map((m) => pathOf.get(m.name)!), analysis)) {
        recovered.push(`recovered ${base.name} written to ${base.folder} (${base.detuned} tensors de-tuned, ${base.copied} copied)`);
      }
    }
    return placed;
  });
  const { result, refused } = attachAdapters(forest, models, inputs.adapters);
  const adapterGiven = new Map(inputs.adapters.map((a) => [a.name, a.given]));
  for (const r of refused) skip.add(adapterGiven.get(r.name)!, r.reason);
  const notes = [...(result.notes ?? []), ...inputs.notes, ...once.notes, ...recovered];
  // In path order, like everything else in the output independent of the inputs' order.
  const skipped = [...skip.entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { ...result, ...(notes.length ? { notes } : {}), skipped };
}

/**
 * The forest of every model a registry holds sketched: its stored sketches stand in for the
 * models (no weight is read, so nothing is placed by alignment); the result is stored back.
 */
async function chartRegistry(location: string, options: TreeOptions): Promise<LineageResult> {
  const stored = await registryModels(location);
  const names = modelNames(stored.paths);
  const models = stored.sketches.map((sketch, i) => ({ name: names[i]!, sketch }));
  const forest = recoverLineageByArchitecture(models, lineageOptions(options), undefined);
  const notes = [...stored.notes, ...(forest.notes ?? [])];
  const result: LineageResult = { ...forest, ...(notes.length ? { notes } : {}) };
  await saveRegistryTree(location, result, models.length);
  return result;
}

/** The forest of the models (or of the registry's), scored against the truth file when given. */
export async function chartTree(paths: readonly string[], options: TreeOptions = {}): Promise<TreeChart> {
  if (options.registry !== undefined && paths.length > 0) throw new LineageError('give models or --registry, not both', { exitCode: EXIT.usage });
  const truth = options.truth !== undefined ? parseTruth(readJsonFile(options.truth)) : null;
  const result = options.registry !== undefined ? await chartRegistry(options.registry, options) : chartInputs(paths, options);
  if (!truth) return { result, score: null, unscored: { obfuscated: [], adapters: [] } };
  return { result, ...scoreForest(result, truth, options.includeObfuscated ?? false) };
}

/** The chart as `lineage tree --json` prints it. */
export function treeResult({ result, score, unscored }: TreeChart): TreeResult {
  return score ? { ...result, score: { ...score, excluded: [...unscored.obfuscated, ...unscored.adapters] } } : result;
}

export async function tree(paths: readonly string[], options: TreeOptions = {}): Promise<TreeResult> {
  return treeResult(await chartTree(paths, options));
}
