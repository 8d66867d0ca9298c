/** Open a model folder, and take its sketch from the cache or make it with one read. */
import { openTensorSource } from '../io/source.js';
import { mapModel } from '../arch/map.js';
import { isAdapter } from '../arch/peft.js';
import { BadInputError } from '../io/errors.js';
import { SketchCache } from './cache.js';
import { contentFingerprint } from './fingerprint.js';
import { sketchModel } from './sketch-model.js';
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

export interface LoadOptions extends SketchOptions {
  /** Cache folder, or null for no cache. */
  readonly cacheDir: string | null;
}

export function loadSketch(modelPath: string, options: LoadOptions): LoadedSketch {
  const source = openTensorSource(modelPath);
  try {
    if (isAdapter(source)) {
      throw new BadInputError('this is a PEFT adapter, not a model: merge it into its base first (or leave it out of the tree)', { file: source.path });
    }
    const resolved = resolveSketchOptions(options);
    const fingerprint = contentFingerprint(source);
    const cache = new SketchCache(options.cacheDir);
    const cached = cache.load(fingerprint.hash, resolved);
    if (cached) return { path: source.path, sketch: cached, tensorBytesRead: 0, fingerprintBytesRead: fingerprint.bytesRead, fromCache: true };
    const sketch = sketchModel(source, mapModel(source), fingerprint.hash, resolved);
    cache.store(sketch);
    return { path: source.path, sketch, tensorBytesRead: source.bytesRead, fingerprintBytesRead: fingerprint.bytesRead, fromCache: false };
  } finally {
    source.close();
  }
}
