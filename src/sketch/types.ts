/**
 * A model's sketch: everything `lineage tree` needs from one streaming pass over its weights,
 * small enough to cache on disk and compare in memory against any other model's.
 */
import type { FloatDType } from '../io/dtypes.js';
import type { Family, LayerRole, ModelDims } from '../arch/types.js';
import type { Moments } from '../stats/moments.js';

/** Bumped whenever the sketch's content or its file layout changes: old cache files are rebuilt. */
export const SKETCH_FORMAT = 3;

export interface SketchOptions {
  /**
   * Sketch size per side (k1 = k2, a multiple of 4): ranks up to about k/2 are read exactly. The
   * neuron rows of the relatedness test are sketched to the same width.
   */
  readonly sketchSize?: number;
  /** At most this many neurons per layer (evenly spaced) enter the relatedness test. */
  readonly maxNeurons?: number;
  /** At most this many layers (evenly spaced) keep neuron sketches. */
  readonly neuronLayers?: number;
}

export type ResolvedSketchOptions = Required<SketchOptions>;

export const DEFAULT_SKETCH_OPTIONS: ResolvedSketchOptions = {
  sketchSize: 128,
  maxNeurons: 256,
  neuronLayers: 2,
};

/** One precision's view of a matrix: the stored values, or those rounded to bf16. */
export interface SketchView {
  /** The grid these values lie on. */
  readonly dtype: FloatDType;
  /** Lᵀ W R (two-sided CountSketch, linalg/stream-sketch.ts), sketchRows x sketchCols, row-major. */
  readonly sketch: Float32Array;
  /** ||W||_F^2, exact (float64 sum of the values). */
  readonly squaredNorm: number;
  /** Sum over the elements of ulp(w)^2 / 12: the variance of rounding onto this grid. */
  readonly roundingVariance: number;
  /**
   * Those variances summed per sketch row and per sketch column: the row and column sums of the
   * sketched noise's variance profile (exact: every value lands in one sketch entry). Rounding
   * noise is uneven (it scales with the weights), and the largest sums set the noise edge.
   */
  readonly rowVariance: readonly number[];
  readonly columnVariance: readonly number[];
  /** Mean per-entry variance added by storing the sketch itself in float32. */
  readonly sketchRounding: number;
}

export interface MatrixSketch {
  readonly layer: number;
  readonly role: LayerRole;
  /** (out, in) size of the role. */
  readonly rows: number;
  readonly cols: number;
  /** Sketch size: k when that side is projected, else the side's own size (identity). */
  readonly sketchRows: number;
  readonly sketchCols: number;
  readonly leftProjected: boolean;
  readonly rightProjected: boolean;
  /** Storage dtype of the tensor. */
  readonly storedDtype: string;
  /** Moments of the stored values (MoTHer's kurtosis). */
  readonly moments: Moments;
  /** Stored values first; then the bf16 rounding when the stored grid is finer (F32, F16). */
  readonly views: readonly SketchView[];
}

/**
 * Two views of selected neurons of one layer, `dim` wide each: a gated MLP's gate and up rows (each
 * the CountSketch of its columns), or a non-gated one's fc_in rows (`gate`) and fc_out columns
 * (`up`, each the CountSketch of its rows).
 */
export interface NeuronSketch {
  readonly layer: number;
  /** Number of neurons kept. */
  readonly count: number;
  readonly dim: number;
  readonly gate: Float32Array;
  readonly up: Float32Array;
}

export interface ModelSketch {
  readonly format: number;
  /** Content fingerprint of the weight files (see io/fingerprint.ts). */
  readonly fingerprint: string;
  readonly family: Family;
  readonly architecture: string | null;
  readonly dims: ModelDims;
  readonly options: ResolvedSketchOptions;
  /** Total stored bytes of the tensors (for reports). */
  readonly totalBytes: number;
  readonly matrices: readonly MatrixSketch[];
  readonly neurons: readonly NeuronSketch[];
}

export function resolveSketchOptions(options: SketchOptions = {}): ResolvedSketchOptions {
  // Only the sketch's own keys: callers may pass wider option objects.
  const resolved: ResolvedSketchOptions = {
    sketchSize: options.sketchSize ?? DEFAULT_SKETCH_OPTIONS.sketchSize,
    maxNeurons: options.maxNeurons ?? DEFAULT_SKETCH_OPTIONS.maxNeurons,
    neuronLayers: options.neuronLayers ?? DEFAULT_SKETCH_OPTIONS.neuronLayers,
  };
  for (const [key, value] of Object.entries(resolved)) {
    if (!(Number.isInteger(value) && value > 0)) throw new RangeError(`sketch option ${key} must be a positive integer, got ${value}`);
  }
  if (resolved.sketchSize % 4 !== 0) throw new RangeError(`sketch option sketchSize must be a multiple of 4, got ${resolved.sketchSize}`);
  return resolved;
}
