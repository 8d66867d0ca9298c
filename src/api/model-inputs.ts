/**
 * What `lineage tree` is given, turned into what it charts: the paths on the command line (model
 * folders, `.safetensors` files, PEFT adapter folders, and folders of downloads holding any of
 * these) become models to sketch and adapters to attach, each counted once; everything else is
 * skipped with its reason (one warning each), or with --strict refused at the first one.
 * Only headers, config files and adapter factors are read here; model weights are read by the
 * sketch pass (and a model whose sketching fails is skipped there, see keepSketched).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { mapModel } from '../arch/map.js';
import { isAdapter, mapAdapter } from '../arch/peft.js';
import type { TensorSource } from '../arch/types.js';
import { BadInputError, EXIT, LineageError } from '../io/errors.js';
import { isWeightsFileName, openTensorSource } from '../io/source.js';
import type { AdapterFactor, AdapterMember } from '../tree/adapters.js';
import { sketchIdentity } from '../sketch/identity.js';
import type { ModelSketch } from '../sketch/types.js';
import type { SketchedModel } from '../tree/lineage.js';
import type { SkippedInput } from '../tree/types.js';

export interface ModelInput {
  /** As given, or as found inside a folder given (what skip lines and notes show). */
  readonly given: string;
  readonly path: string;
  readonly name: string;
  /** Payload bytes of its tensors (the sketch pass's progress total). */
  readonly bytes: number;
  /** Shapes of the tensors outside the layer stack (see SketchedModel.headShapes). */
  readonly headShapes: Record<string, number[]>;
}

export interface AdapterInput extends AdapterMember {
  readonly given: string;
  readonly path: string;
}

export interface TreeInputs {
  readonly models: readonly ModelInput[];
  /** Adapters whose base is among `models`. */
  readonly adapters: readonly AdapterInput[];
  /** Inputs counted once though given twice. */
  readonly notes: readonly string[];
}

/**
 * Where skipped inputs go: a list (with a warning each through `onSkip`), or with `strict` an
 * error at the first, with its own exit code.
 */
export class SkipList {
  readonly entries: SkippedInput[] = [];
  constructor(private readonly strict: boolean, private readonly onSkip: (skipped: SkippedInput) => void = () => {}) {}

  add(given: string, reason: string): void {
    if (this.strict) throw new LineageError(`--strict: ${given} is not usable: ${reason}`, { exitCode: EXIT.strictSkip });
    const entry = { path: given, reason };
    this.entries.push(entry);
    this.onSkip(entry);
  }
}

/**
 * The given paths with folders that are not themselves a model replaced by the entries directly
 * inside them (hidden ones left out: caches, `.git`), in name order. A folder holding weight
 * files (see isWeightsFileName) is a model; anything else inside a folder of models is an input
 * like a given one, skipped if it is not a model.
 */
export function expandFolders(given: readonly string[], skip: SkipList): string[] {
  const out: string[] = [];
  for (const input of given) {
    let entries: string[] | null = null;
    try {
      if (fs.statSync(input).isDirectory()) entries = fs.readdirSync(input).sort();
    } catch {
      // Not there or not readable: opening it says why.
    }
    if (entries === null || entries.some(isWeightsFileName)) {
      out.push(input);
      continue;
    }
    const inside = entries.filter((e) => !e.startsWith('.'));
    if (inside.length === 0) skip.add(input, 'an empty folder: no model in it');
    for (const entry of inside) out.push(path.join(input, entry));
  }
  return out;
}

/** Shapes of the tensors of two or more dimensions outside the layer stack. */
function headShapes(source: TensorSource, layerPrefix: string | undefined): Record<string, number[]> {
  const shapes: Record<string, number[]> = {};
  if (layerPrefix === undefined) return shapes;
  for (const [name, info] of source.tensors) {
    if (!name.startsWith(`${layerPrefix}.`) && info.shape.length >= 2) shapes[name] = [...info.shape];
  }
  return shapes;
}

/** ||scale B A||_F^2 = scale^2 sum_ij (B^T B)_ij (A A^T)_ij: two r x r Gram matrices. */
export function loraDeltaSquaredNorm(a: Float32Array, b: Float32Array, rank: number, inFeatures: number, outFeatures: number, scale: number): number {
  const gram = (m: Float32Array, rows: number, cols: number, byRows: boolean) => {
    const g = new Float64Array(rank * rank);
    for (let i = 0; i < rank; i++) {
      for (let j = i; j < rank; j++) {
        let s = 0;
        if (byRows) for (let c = 0; c < cols; c++) s += m[i * cols + c]! * m[j * cols + c]!;
        else for (let r = 0; r < rows; r++) s += m[r * cols + i]! * m[r * cols + j]!;
        g[i * rank + j] = g[j * rank + i] = s;
      }
    }
    return g;
  };
  const ga = gram(a, rank, inFeatures, true);
  const gb = gram(b, outFeatures, rank, false);
  let sum = 0;
  for (let i = 0; i < ga.length; i++) sum += ga[i]! * gb[i]!;
  return scale * scale * sum;
}

/** The adapter's factors, read whole, and a hash of their values and its config (its exact identity). */
function adapterFactors(source: TensorSource): { factors: AdapterFactor[]; baseModel: string | null; contentHash: string } {
  const adapter = mapAdapter(source);
  const hash = createHash('sha256').update(`config ${JSON.stringify(source.config)}\n`);
  const factors = adapter.factors.map((f) => {
    const a = source.read(f.A), b = source.read(f.B);
    hash.update(`${f.moduleName} ${f.layer} ${f.A} ${f.B}\n`).update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).update(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
    return {
      moduleName: f.moduleName,
      layer: f.layer,
      roles: f.roles,
      rank: f.rank,
      rows: f.outFeatures,
      cols: f.inFeatures,
      deltaSquared: loraDeltaSquaredNorm(a, b, f.rank, f.inFeatures, f.outFeatures, f.scale),
    };
  });
  return { factors, baseModel: adapter.baseModel, contentHash: hash.digest('hex') };
}

/**
 * The same files: every weight file's device, inode, size and modification time, and the config.
 * A copy elsewhere has other files; it is found to be the same after sketching (sameSketch).
 */
function fileIdentity(source: TensorSource): string {
  const stamps = source.files.map((f) => {
    const s = fs.statSync(f, { bigint: true });
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}`;
  });
  return `files ${stamps.join(' ')} config ${JSON.stringify(source.config)}`;
}

/** `org/name` -> `name` (trailing separators ignored): the part that can name a folder given. */
export function lastPathComponent(name: string): string {
  const parts = name.split(/[\\/]+/).filter(Boolean);
  return parts[parts.length - 1] ?? '';
}

interface Opened {
  readonly given: string;
  readonly path: string;
  /** What makes two inputs the same before sketching: the same files (a model), the same factors and config (an adapter). */
  readonly identity: string;
  readonly model?: { headShapes: Record<string, number[]>; bytes: number };
  readonly adapter?: { factors: AdapterFactor[]; baseModel: string | null };
}

/** Open one input: a model (mapped, so config and shapes agree) or an adapter (factors read); null when skipped. */
function openInput(given: string, skip: SkipList): Opened | null {
  let source: TensorSource;
  try {
    source = openTensorSource(given);
  } catch (err) {
    // A file the system will not let us read (permissions, a socket) is as unusable as a bad one.
    const systemError = err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string';
    if (!(err instanceof BadInputError) && !systemError) throw err;
    skip.add(given, err instanceof BadInputError ? err.message : `cannot be read (${(err as Error).message})`);
    return null;
  }
  try {
    if (isAdapter(source)) {
      const adapter = adapterFactors(source);
      return { given, path: source.path, identity: adapter.contentHash, adapter };
    }
    const map = mapModel(source);
    return { given, path: source.path, identity: fileIdentity(source), model: { headShapes: headShapes(source, map.layerPrefix), bytes: source.totalBytes } };
  } catch (err) {
    if (!(err instanceof LineageError)) throw err;
    skip.add(given, err.message);
    return null;
  } finally {
    source.close();
  }
}

/**
 * The same input given twice (the same folder twice, through a link, or an adapter's copy) is kept
 * once, under the path that sorts first, so the result does not depend on input order. An
 * adapter's identity includes its adapter_config.json (its base and scales).
 */
function countOnce(opened: readonly Opened[]): Array<{ kept: Opened; copies: readonly Opened[] }> {
  const byContent = new Map<string, Opened[]>();
  for (const o of opened) byContent.set(o.identity, [...(byContent.get(o.identity) ?? []), o]);
  const byPath = (a: Opened, b: Opened) => (a.path < b.path ? -1 : a.path > b.path ? 1 : a.given < b.given ? -1 : a.given > b.given ? 1 : 0);
  return [...byContent.values()].map((copies) => ({ kept: [...copies].sort(byPath)[0]!, copies }));
}

/**
 * Folder base names (a GGUF file's name without `.gguf`); names given twice get their parent
 * folder as well ("a/p0", "b/p0").
 */
export function modelNames(paths: readonly string[]): string[] {
  const resolved = paths.map((p) => path.resolve(p));
  const baseName = (p: string) => path.basename(p).replace(/\.gguf$/i, '');
  const base = resolved.map(baseName);
  return resolved.map((p, i) => {
    if (base.filter((b) => b === base[i]).length === 1) return base[i]!;
    const long = `${path.basename(path.dirname(p))}/${base[i]}`;
    return resolved.filter((q) => `${path.basename(path.dirname(q))}/${baseName(q)}` === long).length === 1 ? long : p;
  });
}

/**
 * Expand, open, classify and count once every input (skipping into `skip`); adapters are
 * resolved to their base by the last component of the name they give.
 */
export function collectTreeInputs(given: readonly string[], skip: SkipList): TreeInputs {
  const opened = expandFolders(given, skip).flatMap((p) => openInput(p, skip) ?? []);
  const counted = countOnce(opened);
  const kept = counted.map((c) => c.kept);
  const names = modelNames(kept.map((o) => o.path));
  const nameOf = new Map(kept.map((o, i) => [o, names[i]!]));
  const notes = counted.filter((c) => c.copies.length > 1).map(({ kept: o, copies }) =>
    `${nameOf.get(o)} was given ${copies.length} times (${copies.map((c) => c.given).sort().join(', ')}; the same content): counted once`);
  const models: ModelInput[] = kept.flatMap((o) => (o.model ? [{ given: o.given, path: o.path, name: nameOf.get(o)!, bytes: o.model.bytes, headShapes: o.model.headShapes }] : []));
  const adapters: AdapterInput[] = [];
  for (const o of kept) {
    if (!o.adapter) continue;
    const { baseModel, factors } = o.adapter;
    if (baseModel === null) {
      skip.add(o.given, 'a PEFT adapter that names no base model (no base_model_name_or_path in adapter_config.json)');
      continue;
    }
    const wanted = lastPathComponent(baseModel);
    const bases = models.filter((m) => path.basename(m.path) === wanted);
    if (bases.length !== 1) {
      const which = bases.length === 0 ? 'which is not among the models given' : `which names ${bases.length} models given (${bases.map((m) => m.name).join(', ')})`;
      skip.add(o.given, `a PEFT adapter of ${JSON.stringify(baseModel)} (base_model_name_or_path), ${which}`);
      continue;
    }
    adapters.push({ given: o.given, path: o.path, name: nameOf.get(o)!, base: bases[0]!.name, factors });
  }
  return { models, adapters, notes };
}

/**
 * The sketched models, from one result per model (a sketch, or the error that stopped it): a model
 * whose sketching failed on bad input is skipped with its reason; anything else (a bug) is rethrown.
 */
export function keepSketched(
  models: readonly ModelInput[], results: ReadonlyArray<{ sketch: ModelSketch } | { error: Error }>, skip: SkipList,
): SketchedModel[] {
  const sketched: SketchedModel[] = [];
  results.forEach((result, i) => {
    if ('sketch' in result) sketched.push({ name: models[i]!.name, sketch: result.sketch });
    else if (result.error instanceof BadInputError) skip.add(models[i]!.given, result.error.message);
    else throw result.error;
  });
  return sketched;
}

/**
 * Models whose sketches are identical (the same header and sampled blocks, and bit for bit the
 * same sketch of every linear weight: a copy of the same weights in another folder) are kept once,
 * under the path that sorts first, with a note.
 */
export function countSketchedOnce(models: readonly SketchedModel[], pathOf: ReadonlyMap<string, string>): { models: SketchedModel[]; notes: string[] } {
  const groups = new Map<string, SketchedModel[]>();
  for (const m of models) {
    const id = sketchIdentity(m.sketch);
    groups.set(id, [...(groups.get(id) ?? []), m]);
  }
  const byPath = (a: SketchedModel, b: SketchedModel) => (pathOf.get(a.name)! < pathOf.get(b.name)! ? -1 : pathOf.get(a.name)! > pathOf.get(b.name)! ? 1 : 0);
  const kept: SketchedModel[] = [];
  const notes: string[] = [];
  for (const group of groups.values()) {
    const sorted = [...group].sort(byPath);
    kept.push(sorted[0]!);
    if (sorted.length > 1) {
      notes.push(`${sorted[0]!.name} was given ${sorted.length} times (${sorted.map((m) => m.name).join(', ')}; the same header and linear weights): counted once`);
    }
  }
  const keep = new Set(kept);
  return { models: models.filter((m) => keep.has(m)), notes };
}
