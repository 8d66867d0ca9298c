/**
 * Open model folders, and take each one's sketch from the cache or make it with one read: the
 * models' matrix jobs (and the finiteness checks of the tensors the sketch does not read) run in
 * this thread or on worker threads (sketch/parallel.ts), progress reported by bytes as jobs complete.
 * Header, config and shape checks run on every load, cache hit or not: they are cheap.
 */
import { openTensorSource } from '../io/source.js';
import { SourceRoleReader } from '../arch/reader.js';
import { isAdapter } from '../arch/peft.js';
import { LINEAR_ROLES, type ModelMap } from '../arch/types.js';
import type { TensorSource } from '../io/types.js';
import { BadInputError } from '../io/errors.js';
import { SketchCache } from './sketch-cache.js';
import { contentFingerprint, sketchCacheKey } from '../io/fingerprint.js';
import { runInThread, runOnWorkers, type FiniteCheckJob, type ModelWork, type SketchJob } from '../sketch/parallel.js';
import { assembleSketch, matrixJobs, type MatrixResult } from '../sketch/sketch-model.js';
import { resolveSketchOptions, type ModelSketch, type SketchOptions } from '../sketch/types.js';

export interface LoadedSketch {
  readonly path: string;
  readonly sketch: ModelSketch;
  /** Tensor payload bytes read: every weight once on a miss (the linear ones sketched, the rest checked finite), 0 on a cache hit. */
  readonly tensorBytesRead: number;
  /** Bytes read for the content fingerprint and cache key (headers and sampled blocks; whole files with `rehash`). */
  readonly fingerprintBytesRead: number;
  readonly fromCache: boolean;
}

/** A model that could not be sketched, and why (the error the single-model load throws). */
export interface FailedSketch {
  readonly path: string;
  readonly error: Error;
}

export interface LoadOptions extends SketchOptions {
  /** Cache folder, or null for no cache. */
  readonly cacheDir: string | null;
  /** Key the cache on a hash of the whole weight files instead of their file-system stamps. */
  readonly rehash?: boolean;
  /** Worker threads for the matrices (0: this thread). Default 0. */
  readonly workers?: number;
  /** Called with the payload bytes each completed matrix (or cached model) accounts for. */
  readonly onBytes?: (bytes: number) => void;
}

export function loadSketch(modelPath: string, options: LoadOptions): LoadedSketch {
  const [only] = loadSketches([modelPath], options);
  if ('error' in only!) throw only.error;
  return only!;
}

/**
 * Sketches of every model, in the order given: a LoadedSketch, or a FailedSketch when that model
 * cannot be read (the others are still made).
 */
export function loadSketches(modelPaths: readonly string[], options: LoadOptions): Array<LoadedSketch | FailedSketch> {
  const resolved = resolveSketchOptions(options);
  const cache = new SketchCache(options.cacheDir);
  const results: Array<LoadedSketch | FailedSketch | undefined> = new Array(modelPaths.length);
  const work: ModelWork[] = [];
  modelPaths.forEach((modelPath, m) => {
    try {
      const source = openTensorSource(modelPath);
      try {
        if (isAdapter(source)) {
          throw new BadInputError('this is a PEFT adapter, not a model: merge it into its base first (or leave it out of the tree)', { file: source.path });
        }
        const reader = new SourceRoleReader(source);
        const { map } = reader;
        const fingerprint = contentFingerprint(source);
        const key = options.cacheDir === null ? null : sketchCacheKey(source, fingerprint, options.rehash === true);
        const keyBytes = fingerprint.bytesRead + (key?.bytesRead ?? 0);
        const cached = key ? cache.load(key.hash, fingerprint.hash, resolved) : null;
        if (cached) {
          options.onBytes?.(source.totalBytes);
          results[m] = { path: source.path, sketch: cached, tensorBytesRead: 0, fingerprintBytesRead: keyBytes, fromCache: true };
          return;
        }
        const matrices = matrixJobs(reader, resolved);
        const jobs: SketchJob[] = [...matrices, ...unsketchedChecks(source, map)];
        const done: MatrixResult[] = new Array(matrices.length);
        let remaining = jobs.length, bytesRead = 0;
        const totals = { totalBytes: source.totalBytes };
        work.push({
          path: source.path,
          jobs,
          done: (index, result) => {
            if (result) done[index] = result;
            bytesRead += jobs[index]!.bytes;
            options.onBytes?.(jobs[index]!.bytes);
            if (--remaining > 0) return;
            const sketch = assembleSketch(totals, map, fingerprint.hash, resolved, matrices, done);
            if (key) cache.store(key.hash, sketch);
            results[m] = { path: source.path, sketch, tensorBytesRead: bytesRead, fingerprintBytesRead: keyBytes, fromCache: false };
          },
          failed: (error) => {
            results[m] = { path: source.path, error };
          },
        });
      } finally {
        source.close();
      }
    } catch (err) {
      results[m] = { path: modelPath, error: err as Error };
    }
  });
  const workers = options.workers ?? 0;
  if (workers > 0 && work.some((w) => w.jobs.length > 0)) runOnWorkers(work, workers, resolved.sketchSize);
  else runInThread(work, (p) => SourceRoleReader.open(p), resolved.sketchSize);
  return results.map((r, m) => r ?? { path: modelPaths[m]!, error: new Error('sketch not completed') });
}

/**
 * The sketch rejects NaN and infinity in the linear weights it reads; the rest (embeddings,
 * lm_head, norms, biases, unmapped tensors) is checked by these jobs, so NaN anywhere in a model
 * is bad input for `tree` as for `verify`. Done once per sketch made: a cached sketch was checked.
 */
function unsketchedChecks(source: TensorSource, map: ModelMap): FiniteCheckJob[] {
  const sketched = new Set<string>();
  for (const layer of map.layers) for (const role of LINEAR_ROLES) if (layer[role]) sketched.add(layer[role].tensor);
  return [...source.tensors.values()].filter((t) => !sketched.has(t.name)).map((t) => ({ check: t.name, bytes: t.byteLength }));
}
