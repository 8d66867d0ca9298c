/** How many worker threads verify passes use by default (verify and tree commands). */
import { availableParallelism, freemem } from 'node:os';
import type { RoleReader } from '../arch/reader.js';
import { analystBytes } from '../verify/verify.js';
import { BadInputError } from '../io/errors.js';

/**
 * Worker threads by default: one per core (at most 4), but no more than half the free memory
 * holds, at what one layer analyst costs on these models (verify.ts analystBytes).
 */
export function defaultWorkers(base: RoleReader, requested: string | undefined): number {
  if (requested !== undefined) return Number(requested);
  const affordable = Math.floor((freemem() * 0.5) / analystBytes(base));
  return Math.max(0, Math.min(availableParallelism(), 4, affordable));
}

/** Worker threads that sketch models by default: one per core, at most 4 (each holds one matrix block). */
export function sketchWorkers(requested: string | undefined): number {
  if (requested === undefined) return Math.min(availableParallelism(), 4);
  const n = Number(requested);
  if (!(Number.isInteger(n) && n >= 0 && n <= 64)) throw new BadInputError(`--workers takes a whole number from 0 to 64, got ${requested}`);
  return n;
}
