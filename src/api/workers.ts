/** How many worker threads verify and sketch passes use by default (verify and tree). */
import { availableParallelism, freemem } from 'node:os';
import type { RoleReader } from '../arch/reader.js';
import { analystBytes } from '../verify/verify.js';
import { wholeNumberOption } from './options.js';

/** The most worker threads a caller may ask for. */
export const MAX_WORKERS = 64;

/**
 * Worker threads by default: one per core (at most 4), but no more than half the free memory
 * holds, at what one layer analyst costs on these models (verify.ts analystBytes).
 */
export function defaultWorkers(base: RoleReader, requested: number | undefined): number {
  if (requested !== undefined) return wholeNumberOption('workers', requested, 0, MAX_WORKERS);
  const affordable = Math.floor((freemem() * 0.5) / analystBytes(base));
  return Math.max(0, Math.min(availableParallelism(), 4, affordable));
}

/** Worker threads that sketch models by default: one per core, at most 4 (each holds one matrix block). */
export function sketchWorkers(requested: number | undefined): number {
  if (requested === undefined) return Math.min(availableParallelism(), 4);
  return wholeNumberOption('workers', requested, 0, MAX_WORKERS);
}
