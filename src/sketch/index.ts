/** Per-model sketches for tree recovery and their on-disk cache. */
export * from './types.js';
export { sketchModel, evenlySpaced } from './sketch-model.js';
export { contentFingerprint, FINGERPRINT_BLOCK_BYTES, type Fingerprint } from './fingerprint.js';
export { encodeSketch, decodeSketch, cacheFileName, SketchCache, DEFAULT_CACHE_DIR } from './cache.js';
export { loadSketch, type LoadedSketch, type LoadOptions } from './load.js';
