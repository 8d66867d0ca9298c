/** How many worker threads verify passes use by default (verify and tree commands). */
import { availableParallelism, freemem } from 'node:os';
import type { RoleReader } from '../arch/reader.js';

/**
 * Worker threads by default: one per core (at most 4), but no more than half the free memory
 * holds. A layer in flight costs about 64 bytes per parameter of the layer, both models together
 * (float64 values and float32 variances of each, the work arrays of the analysis; 52 measured
 * by the verify benchmark at hidden 1024, 67 at hidden 2048), and one more layer is being read
 * meanwhile.
 */
export function defaultWorkers(base: RoleReader, requested: string | undefined): number {
  if (requested !== undefined) return Number(requested);
  const layers = Math.max(1, base.map.layers.length);
  const bytesPerLayer = (base.parameters / layers) * 64;
  const affordable = Math.floor((freemem() * 0.5) / bytesPerLayer) - 1;
  return Math.max(0, Math.min(availableParallelism(), 4, affordable));
}
