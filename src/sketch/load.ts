/**
 * Open model folders, and take each one's sketch from the cache or make it with one read: the
 * models' matrix jobs run in this thread or on worker threads (parallel.ts), progress reported by
 * bytes as matrices complete.
 */
import { openTensorSource } from '../io/source.js';
import { mapModel } from '../arch/map.js';
import { isAdapter } from '../arch/peft.js';
import { BadInputError } from '../io/errors.js';
import { SketchCache } from './cache.js';
import { contentFingerprint } from './fingerprint.js';
import { runInThread, runOnWorkers, type ModelWork } from './parallel.js';
import { assembleSketch, matrixJobs, type MatrixResult } from './sketch-model.js';
import { resolveSketchOptions, type ModelSketch, type SketchOptions } from './types.js';

export interface LoadedSketch {
  readonly path: string;
  readonly sketch: ModelSketch;
  /** Tensor payload bytes read: every linear weight once on a miss, 0 on a cache hit. */
  readonly tensorBytesRead: number;
  /** Bytes read for the content fingerprint (headers and sampled blocks). */
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
  /** Worker threads for the matrices (0: this thread). Default 0. */
  readonly workers?: number;
  /** Called with the payload bytes each completed matrix (or cached model) accounts for. */
  readonly onBytes?: (bytes: number) => void;
}

/** Total payload bytes of the model at `modelPath` (headers only). */
export function modelBytes(modelPath: string): number {
  const source = openTensorSource(modelPath);
  try {
    return source.totalBytes;
  } finally {
    source.close();
  }
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
        const fingerprint = contentFingerprint(source);
        const map = mapModel(source);
        const cached = cache.load(fingerprint.hash, resolved);
        if (cached) {
          options.onBytes?.(source.totalBytes);
          results[m] = { path: source.path, sketch: cached, tensorBytesRead: 0, fingerprintBytesRead: fingerprint.bytesRead, fromCache: true };
          return;
        }
        const jobs = matrixJobs(source, map, resolved);
        const done: MatrixResult[] = new Array(jobs.length);
        let remaining = jobs.length, bytesRead = 0;
        const totals = { totalBytes: source.totalBytes };
        work.push({
          path: source.path,
          jobs,
          done: (index, result) => {
            done[index] = result;
            bytesRead += jobs[index]!.bytes;
            options.onBytes?.(jobs[index]!.bytes);
            if (--remaining > 0) return;
            const sketch = assembleSketch(totals, map, fingerprint.hash, resolved, jobs, done);
            cache.store(sketch);
            results[m] = { path: source.path, sketch, tensorBytesRead: bytesRead, fingerprintBytesRead: fingerprint.bytesRead, fromCache: false };
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
  else runInThread(work, (p) => openTensorSource(p), resolved.sketchSize);
  return results.map((r, m) => r ?? { path: modelPaths[m]!, error: new Error('sketch not completed') });
}
