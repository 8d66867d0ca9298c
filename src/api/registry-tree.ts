/** `lineage tree --registry`: the models come from the registry's stored sketches, no weight is read. */
import { BadInputError } from '../io/errors.js';
import { withRegistry } from '../registry/registry.js';
import type { SketchedModel } from '../tree/lineage.js';
import type { LineageResult } from '../tree/types.js';

export interface RegistryModels {
  readonly paths: string[];
  readonly sketches: SketchedModel['sketch'][];
  /** Why some recorded models are not in the tree (not sketched yet, failed). */
  readonly notes: string[];
}

export async function registryModels(location: string): Promise<RegistryModels> {
  return withRegistry(location, async ({ store }) => {
    const sketched = await store.sketchedModels();
    const counts = await store.stateCounts();
    const waiting = counts.queued + counts.sketching, failed = counts.failed;
    if (sketched.length < 2) {
      throw new BadInputError(`the registry holds ${sketched.length} sketched models, a tree needs two (run lineage worker, or see lineage registry status)`);
    }
    const notes = waiting + failed > 0
      ? [`${waiting + failed} models of the registry are not in the tree: ${waiting} not sketched yet, ${failed} failed (lineage registry status lists them)`]
      : [];
    return { paths: sketched.map((s) => s.path), sketches: sketched.map((s) => s.sketch), notes };
  });
}

export async function saveRegistryTree(location: string, result: LineageResult, modelCount: number): Promise<void> {
  await withRegistry(location, ({ store }) => store.saveTree(result, modelCount));
}
