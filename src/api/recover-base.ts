/**
 * Writing the recovered weights of a tree's virtual nodes (absent common parents) as model
 * folders, for `tree --recover-base DIR`: each tensor the children share is copied; each that
 * differs is recovered by Spectral DeTuning (tree/detune.ts) with each child's own rank in it
 * (the sketches' star model, summed over the roles stored in that tensor; 0: the plain mean).
 * Every tensor of the children is read whole, one tensor at a time.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mapModel } from '../arch/map.js';
import { layerRoleRef } from '../arch/read-role.js';
import { BadInputError } from '../io/errors.js';
import { matrixShape, openSafetensorsSource, type SafetensorsSource } from '../io/source.js';
import { encodeValues, writeSafetensorsStreaming, type TensorSpec } from '../io/writer.js';
import { detuneBase } from '../tree/detune.js';
import type { LineageAnalysis, SketchedModel } from '../tree/lineage.js';
import { detectMissingBases } from '../tree/siblings.js';

export interface RecoveredBase {
  readonly name: string;
  readonly folder: string;
  /** Tensors recovered by de-tuning (they differ among the children) and copied (equal in all). */
  readonly detuned: number;
  readonly copied: number;
}

/** A folder name for a node name: path separators replaced. */
function folderName(name: string): string {
  return name.replace(/[\\/]/g, '_');
}

export function writeRecoveredBases(
  outDir: string, models: readonly SketchedModel[], paths: readonly string[], analysis: LineageAnalysis,
): RecoveredBase[] {
  const index = new Map(models.map((m, i) => [m.name, i]));
  const pairOf = (i: number, j: number) => (i < j ? analysis.comparisons[i]![j]! : analysis.comparisons[j]![i]!);
  const written: RecoveredBase[] = [];
  for (const node of analysis.result.virtualNodes ?? []) {
    const children = node.children.map((c) => index.get(c)!);
    const group = detectMissingBases(children, pairOf).find((g) => g.children.length === children.length);
    if (!group) throw new Error(`the children of ${node.name} no longer read as siblings of an absent base`);
    const folder = path.join(outDir, folderName(node.name));
    fs.mkdirSync(folder, { recursive: true });
    const sources = group.children.map((c) => openSafetensorsSource(paths[c.index]!));
    try {
      const ranks = tensorRanks(sources[0]!, models[group.children[0]!.index]!, group.children.map((c) => c.matrixRanks));
      const counts = writeBase(path.join(folder, 'model.safetensors'), sources, ranks);
      if (sources[0]!.config) fs.writeFileSync(path.join(folder, 'config.json'), JSON.stringify(sources[0]!.config, null, 2) + '\n');
      written.push({ name: node.name, folder, ...counts });
    } finally {
      for (const s of sources) s.close();
    }
  }
  return written;
}

/** Each child's rank per stored tensor: the sketch matrices' ranks summed over the roles stored in it. */
function tensorRanks(source: SafetensorsSource, model: SketchedModel, matrixRanks: ReadonlyArray<readonly number[]>): Map<string, number[]> {
  const map = mapModel(source);
  const ranks = new Map<string, number[]>();
  model.sketch.matrices.forEach((m, k) => {
    const tensor = layerRoleRef(map, m.layer, m.role).tensor;
    const list = ranks.get(tensor) ?? matrixRanks.map(() => 0);
    matrixRanks.forEach((r, child) => { list[child]! += r[k]!; });
    ranks.set(tensor, list);
  });
  return ranks;
}

function writeBase(file: string, sources: readonly SafetensorsSource[], ranks: ReadonlyMap<string, number[]>) {
  const first = sources[0]!;
  const specs: TensorSpec[] = [...first.tensors.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape }));
  for (const s of sources.slice(1)) {
    for (const spec of specs) {
      const other = s.tensors.get(spec.name);
      if (!other || other.shape.join('x') !== spec.shape.join('x')) {
        throw new BadInputError(`tensor missing or of another shape than in ${first.name}`, { file: s.path, tensor: spec.name });
      }
    }
  }
  let detuned = 0, copied = 0;
  writeSafetensorsStreaming(file, specs, (spec, write) => {
    const values = sources.map((s) => s.read(spec.name));
    if (values.every((v) => v.every((x, i) => x === values[0]![i]))) {
      copied++;
      write(encodeValues(spec.dtype, values[0]!));
      return;
    }
    detuned++;
    const { rows, cols } = matrixShape(first.tensors.get(spec.name)!);
    const childRanks = ranks.get(spec.name) ?? values.map(() => 0);
    const base = detuneBase(values.map((v) => ({ rows, cols, data: Float64Array.from(v) })), childRanks).base;
    write(encodeValues(spec.dtype, base.data));
  }, { format: 'pt' });
  return { detuned, copied };
}
