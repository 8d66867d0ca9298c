/** Open a model folder, and take its sketch from the cache or make it with one read. */
import { assertTensorFinite, openTensorSource, type SafetensorsSource } from '../io/source.js';
import { mapModel } from '../arch/map.js';
import { isAdapter } from '../arch/peft.js';
import { LINEAR_ROLES, type ModelMap } from '../arch/types.js';
import { BadInputError } from '../io/errors.js';
import { SketchCache } from './cache.js';
import { contentFingerprint, sketchCacheKey } from './fingerprint.js';
import { sketchModel } from './sketch-model.js';
import { resolveSketchOptions, type ModelSketch, type SketchOptions } from './types.js';

export interface LoadedSketch {
  readonly path: string;
  readonly sketch: ModelSketch;
  /** Tensor payload bytes read: every weight once on a miss (the linear ones sketched, the rest checked finite), 0 on a cache hit. */
  readonly tensorBytesRead: number;
  /** Bytes read for the content fingerprint and cache key (headers and sampled blocks; whole files with `rehash`). */
  readonly fingerprintBytesRead: number;
  readonly fromCache: boolean;
}

export interface LoadOptions extends SketchOptions {
  /** Cache folder, or null for no cache. */
  readonly cacheDir: string | null;
  /** Key the cache on a hash of the whole weight files instead of their file-system stamps. */
  readonly rehash?: boolean;
}

export function loadSketch(modelPath: string, options: LoadOptions): LoadedSketch {
  const source = openTensorSource(modelPath);
  try {
    if (isAdapter(source)) {
      throw new BadInputError('this is a PEFT adapter, not a model: merge it into its base first (or leave it out of the tree)', { file: source.path });
    }
    // Header, config and shape checks run on every load, cache hit or not: they are cheap.
    const map = mapModel(source);
    const resolved = resolveSketchOptions(options);
    const fingerprint = contentFingerprint(source);
    const cache = new SketchCache(options.cacheDir);
    const key = options.cacheDir === null ? null : sketchCacheKey(source, fingerprint, options.rehash === true);
    const keyBytes = fingerprint.bytesRead + (key?.bytesRead ?? 0);
    const cached = key ? cache.load(key.hash, fingerprint.hash, resolved) : null;
    if (cached) return { path: source.path, sketch: cached, tensorBytesRead: 0, fingerprintBytesRead: keyBytes, fromCache: true };
    const sketch = sketchModel(source, map, fingerprint.hash, resolved);
    assertUnsketchedFinite(source, map);
    if (key) cache.store(key.hash, sketch);
    return { path: source.path, sketch, tensorBytesRead: source.bytesRead, fingerprintBytesRead: keyBytes, fromCache: false };
  } finally {
    source.close();
  }
}

/**
 * The sketch rejects NaN and infinity in the linear weights it reads; the rest (embeddings,
 * lm_head, norms, biases, unmapped tensors) is checked here, so NaN anywhere in a model is bad
 * input for `tree` as for `verify`. Done once per sketch made: a cached sketch was checked.
 */
function assertUnsketchedFinite(source: SafetensorsSource, map: ModelMap): void {
  const sketched = new Set<string>();
  for (const layer of map.layers) for (const role of LINEAR_ROLES) if (layer[role]) sketched.add(layer[role].tensor);
  for (const name of source.tensors.keys()) if (!sketched.has(name)) assertTensorFinite(source, name);
}
