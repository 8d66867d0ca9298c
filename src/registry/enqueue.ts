/**
 * `lineage enqueue`: record models in the registry and queue one sketch job per new content.
 * Reads only headers and the fingerprint's sampled blocks; a model whose content already has a
 * sketch, or a job, gets none.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mapModel } from '../arch/map.js';
import { isAdapter } from '../arch/peft.js';
import { LineageError } from '../io/errors.js';
import { openTensorSource } from '../io/source.js';
import { contentFingerprint, sketchCacheKey } from '../io/fingerprint.js';
import type { TensorSource } from '../io/types.js';
import type { JobPolicy } from './queue.js';
import type { Registry } from './registry.js';
import type { ModelFacts } from './store.js';

/** A folder holding weights directly (or a shard index) is a model. */
function isModelFolder(dir: string): boolean {
  return fs.readdirSync(dir).some((name) => name.endsWith('.safetensors') || name === 'model.safetensors.index.json');
}

/**
 * Each path as given, except a folder that is not itself a model: the model folders directly
 * inside it, by name (one level, as `tree` expands folders).
 */
export function expandModelPaths(paths: readonly string[]): string[] {
  return paths.flatMap((p) => {
    const resolved = path.resolve(p);
    if (!fs.existsSync(resolved) || !fs.statSync(resolved).isDirectory() || isModelFolder(resolved)) return [resolved];
    const inside = fs.readdirSync(resolved, { withFileTypes: true })
      .filter((e) => e.isDirectory() && isModelFolder(path.join(resolved, e.name)))
      .map((e) => path.join(resolved, e.name))
      .sort();
    return inside.length > 0 ? inside : [resolved];
  });
}

export type EnqueueOutcome =
  | { readonly path: string; readonly outcome: 'queued'; readonly jobId: string }
  | { readonly path: string; readonly outcome: 'already-sketched' | 'already-queued' | 'already-failed' | 'skipped-adapter' }
  | { readonly path: string; readonly outcome: 'unreadable'; readonly error: LineageError };

/**
 * What the registry keys a model's job and sketch on: the content fingerprint (headers and three
 * sampled blocks) and each weight file's size, modification time, inode and device. The sampled
 * blocks alone are the same for a base and its LoRA child whose changed tensors lie between
 * them, which would share one sketch; a file written anew gets a new key, while enqueueing the
 * same files again finds their job or sketch.
 */
export function registryKey(source: TensorSource): string {
  return sketchCacheKey(source, contentFingerprint(source), false, false).hash;
}

/** The model's facts from its headers, or null for a PEFT adapter (not a model: never sketched). */
function readFacts(modelPath: string): ModelFacts | null {
  const source = openTensorSource(modelPath);
  try {
    if (isAdapter(source)) return null;
    const map = mapModel(source);
    return {
      path: source.path, fingerprint: registryKey(source), family: map.family,
      architecture: map.architecture ?? null, totalBytes: source.totalBytes,
    };
  } finally {
    source.close();
  }
}

export interface EnqueueOptions extends JobPolicy {
  /** Queue a model again that failed with this same content (else it stays failed: it would fail again). */
  readonly retryFailed: boolean;
}

export async function enqueueModel(registry: Registry, modelPath: string, options: EnqueueOptions): Promise<EnqueueOutcome> {
  let facts: ModelFacts | null;
  try {
    facts = readFacts(modelPath);
  } catch (err) {
    if (!(err instanceof LineageError)) throw err;
    await registry.store.putUnreadable(modelPath, err.message);
    return { path: modelPath, outcome: 'unreadable', error: err };
  }
  if (!facts) return { path: modelPath, outcome: 'skipped-adapter' };
  const { store, queue } = registry;
  if (await store.hasSketch(facts.fingerprint)) {
    await store.putModel(facts, 'sketched', null);
    return { path: facts.path, outcome: 'already-sketched' };
  }
  const known = await store.model(facts.path);
  if (!options.retryFailed && known?.state === 'failed' && known.fingerprint === facts.fingerprint) return { path: facts.path, outcome: 'already-failed' };
  const pending = await store.pendingJob(facts.fingerprint);
  const jobId = pending ?? (await queue.send({ fingerprint: facts.fingerprint, path: facts.path }, options));
  if (jobId === null || pending !== null) {
    // Another record (or a concurrent enqueue) holds this content's job: this model rides on it.
    await store.putModel(facts, 'queued', jobId);
    return { path: facts.path, outcome: 'already-queued' };
  }
  await store.putModel(facts, 'queued', jobId);
  return { path: facts.path, outcome: 'queued', jobId };
}
