/**
 * Synthetic model families on small matrices, for tests and benchmarks of the tree analysis:
 * heavy-tailed random roots, LoRA children (parent + B·A on some modules) and full
 * fine-tunes (parent + dense Gaussian noise, which lowers kurtosis as fine-tuning does).
 */
import { type Matrix, zeros } from '../../src/linalg/matrix.js';
import { Rng } from '../../src/linalg/rng.js';

/** Seeded uniform [0, 1) draws from the project's one generator (linalg/rng.ts). */
export function seededRandom(seed: number): () => number {
  const rng = new Rng(seed);
  return () => rng.uniform();
}

export function gaussian(random: () => number): number {
  // Box-Muller; 1 - u keeps the logarithm finite.
  const u = 1 - random();
  const v = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** Laplace(0, 1): heavy enough tails for a clear kurtosis (excess 3), all moments finite. */
export function laplace(random: () => number): number {
  const u = random() - 0.5;
  return -Math.sign(u) * Math.log(1 - 2 * Math.abs(u) || Number.MIN_VALUE);
}

/** A model as named weight matrices, e.g. "0.q_proj". */
export type SyntheticModel = ReadonlyMap<string, Matrix>;

export type SyntheticSpec =
  | { readonly name: string; readonly kind: 'root' }
  | { readonly name: string; readonly kind: 'full'; readonly parent: string; readonly scale: number }
  | {
      readonly name: string;
      readonly kind: 'lora';
      readonly parent: string;
      readonly rank: number;
      /** Module suffixes that get the adapter, e.g. ["q_proj", "v_proj"]. */
      readonly modules: readonly string[];
      readonly scale: number;
    };

export interface SyntheticShape {
  readonly layers: number;
  readonly modules: readonly string[];
  readonly size: number;
}

/**
 * Builds every model of `specs` (parents before children). `scale` is the delta's RMS
 * relative to the parent's RMS of the same matrix.
 */
export function syntheticFamily(
  specs: readonly SyntheticSpec[],
  shape: SyntheticShape,
  seed: number,
): Map<string, SyntheticModel> {
  const random = seededRandom(seed);
  const models = new Map<string, SyntheticModel>();
  for (const spec of specs) {
    const model = new Map<string, Matrix>();
    for (let layer = 0; layer < shape.layers; layer++) {
      for (const module of shape.modules) {
        const name = `${layer}.${module}`;
        if (spec.kind === 'root') {
          model.set(name, randomMatrix(shape.size, shape.size, () => laplace(random)));
          continue;
        }
        const parentModel = models.get(spec.parent);
        if (!parentModel) throw new Error(`parent ${spec.parent} of ${spec.name} must come first`);
        const base = parentModel.get(name)!;
        if (spec.kind === 'full') {
          model.set(name, addScaled(base, randomMatrix(base.rows, base.cols, () => gaussian(random)), spec.scale));
        } else if (spec.modules.includes(module)) {
          const b = randomMatrix(base.rows, spec.rank, () => gaussian(random));
          const a = randomMatrix(spec.rank, base.cols, () => gaussian(random));
          model.set(name, addScaled(base, multiply(b, a), spec.scale));
        } else {
          model.set(name, base);
        }
      }
    }
    models.set(spec.name, model);
  }
  return models;
}

function randomMatrix(rows: number, cols: number, draw: () => number): Matrix {
  const m = zeros(rows, cols);
  for (let i = 0; i < m.data.length; i++) m.data[i] = draw();
  return m;
}

function rms(values: Float64Array): number {
  let s = 0;
  for (const v of values) s += v * v;
  return Math.sqrt(s / values.length);
}

/** base + delta rescaled so that rms(delta) = scale * rms(base). */
function addScaled(base: Matrix, delta: Matrix, scale: number): Matrix {
  const factor = (scale * rms(base.data)) / rms(delta.data);
  const out = zeros(base.rows, base.cols);
  for (let i = 0; i < out.data.length; i++) out.data[i] = base.data[i]! + factor * delta.data[i]!;
  return out;
}

function multiply(a: Matrix, b: Matrix): Matrix {
  const out = zeros(a.rows, b.cols);
  for (let i = 0; i < a.rows; i++) {
    for (let k = 0; k < a.cols; k++) {
      const aik = a.data[i * a.cols + k]!;
      for (let j = 0; j < b.cols; j++) out.data[i * b.cols + j] += aik * b.data[k * b.cols + j]!;
    }
  }
  return out;
}
