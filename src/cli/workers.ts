/** How many worker threads verify passes use by default (verify and tree commands). */
import { availableParallelism, freemem } from 'node:os';
import type { RoleReader } from '../arch/reader.js';
import { residualSketchMap } from '../align/residual-sketch.js';

/**
 * Worker threads by default: one per core (at most 4), but no more than half the free memory
 * holds. What one worker costs, both models together:
 * - a layer analysed exactly (hidden up to the residual sketch width): about 64 bytes per
 *   parameter of the layer (float64 values and float32 variances of each, the work arrays of the
 *   analysis; 52 measured by the verify benchmark at hidden 1024, 67 at hidden 2048), and one
 *   more layer is being read meanwhile;
 * - a layer with its residual side sketched: its sketches (12 bytes a sketched value) with the
 *   analysis' work arrays, about twice that, plus two stored weights of the largest module
 *   (about 680 MB at 7B widths in the verify benchmark, out of 1.3 GB for the whole run).
 */
export function defaultWorkers(base: RoleReader, requested: string | undefined): number {
  if (requested !== undefined) return Number(requested);
  const layers = Math.max(1, base.map.layers.length);
  const layerParameters = base.parameters / layers;
  const sketch = residualSketchMap(base.map.dims.hidden);
  const bytesPerLayer = sketch
    ? 2 * 2 * 12 * (layerParameters / base.map.dims.hidden) * sketch.width + 2 * 4 * largestRole(base)
    : layerParameters * 64;
  const affordable = Math.floor((freemem() * 0.5) / bytesPerLayer) - (sketch ? 0 : 1);
  return Math.max(0, Math.min(availableParallelism(), 4, affordable));
}

/** Elements of the largest weight of a layer. */
function largestRole(reader: RoleReader): number {
  let most = 0;
  for (const layer of reader.map.layers) for (const ref of Object.values(layer)) if (ref?.shape) most = Math.max(most, ref.shape[0] * ref.shape[1]);
  return most;
}
