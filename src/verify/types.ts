/**
 * The JSON contract of `lineage verify --json` (schema "model-lineage/verify@1").
 * Fields are only ever added; existing ones keep their meaning.
 */
import type { IndependenceTest } from '../align/independence.js';
import type { StorageQuantization } from '../arch/gguf.js';
import type { ModuleName } from '../arch/types.js';
import type { DirectionComponents } from './direction.js';

export type { DirectionComponents, StorageQuantization };

export type Relation = 'derived' | 'related' | 'unrelated' | 'inconclusive';

/** PEFT module names used for LoRA targets (arch's one list). */
export type { ModuleName };

export interface ModelSummary {
  readonly name: string;
  readonly path: string;
  readonly dtypes: readonly string[];
  readonly parameters: number;
  /**
   * Set when the model was given as a PEFT adapter merged lazily onto BASE; `declaredBase` is its
   * adapter_config.json's base_model_name_or_path (null when absent).
   */
  readonly adapter: { readonly rank: number | null; readonly targets: readonly string[]; readonly declaredBase?: string | null } | null;
}

/**
 * What an adapter candidate says of its base. Its relation to BASE is read from the adapter merged
 * onto BASE, so it assumes the adapter is applied to BASE: LoRA factors carry little trace of the
 * base they were trained on. `matchesBase`: the declared name's last path component equals BASE's
 * name (case-insensitive); null when nothing is declared.
 */
export interface AdapterBase {
  readonly declared: string | null;
  readonly matchesBase: boolean | null;
}

/** Defined where it is computed (align/independence.ts); part of the verify result. */
export type { IndependenceTest };

export interface ModuleEvidence {
  readonly module: ModuleName;
  /** 'unchanged': delta exactly zero or pure storage noise; 'low-rank': rank <= max low rank; 'full': dense. */
  readonly status: 'unchanged' | 'low-rank' | 'full';
  /** Numerical rank of the aligned, noise-whitened delta (min(rows, cols) when full). */
  readonly rank: number;
  /** ||delta||_F / ||base||_F. */
  readonly relativeDelta: number;
  /** Largest singular values of the whitened delta, in units of the noise threshold (1 = threshold). */
  readonly singularValues: readonly number[];
  /** Always 1 in those units; kept explicit for plotting. */
  readonly threshold: number;
  /** How the threshold was set, e.g. "bulk edge of the storage-rounding noise (bf16)". */
  readonly thresholdMethod: string;
  /**
   * LayerNorm families only: the module's bias changed beyond the noise floor (its delta, appended
   * to the weight's, raises the rank). A module whose bias alone changed is 'full' with rank 0,
   * except O when V changed: O's bias is compared with W_o b_v folded in, which V's change moves.
   */
  readonly biasChanged?: boolean;
}

export interface LayerEvidence {
  readonly layer: number;
  readonly modules: readonly ModuleEvidence[];
  /** Rank of the change of W_v W_o seen through one-token probes (Origin-Tracer); null when not computed. */
  readonly probeRank: number | null;
  /** Cosine similarity of the alignment-free invariant products, base vs candidate. */
  readonly invariants: { readonly qk: number; readonly vo: number };
  /**
   * How many residual dimensions this layer was analysed on (a seeded sample, for wide models; see
   * residual-sample.ts), or null when on all of them.
   */
  readonly residualSample: number | null;
  /**
   * MLP neurons zeroed (gate and up rows all zero) in one model only, per side. They are left out
   * of the module ranks and the norm growth; zeroed neurons in the candidate only are pruning.
   */
  readonly prunedNeurons: { readonly base: number; readonly candidate: number };
}

export interface TransformFound {
  /** Nothing was done: no permutation and no rescaling found. */
  readonly identity: boolean;
  /** Residual-stream dimensions moved by the recovered permutation. */
  readonly residualPermuted: number;
  /** Largest |log| of the norm-folding scales recovered (0 = none). */
  readonly normFoldingMaxLogScale: number;
  readonly layers: ReadonlyArray<{
    readonly layer: number;
    readonly mlpNeuronsPermuted: number;
    readonly mlpScaleMaxLog: number;
    readonly kvGroupOrder: readonly number[];
    readonly queryHeadOrder: readonly number[];
    readonly qkScaleMaxLog: number;
    readonly voScaleMaxLog: number;
  }>;
  /** One line per kind of transform found, in plain words. */
  readonly summary: readonly string[];
}

export interface VerifyResult {
  readonly schema: 'model-lineage/verify@1';
  readonly base: ModelSummary;
  readonly candidate: ModelSummary;
  readonly relation: Relation;
  /** Null unless CANDIDATE is a PEFT adapter merged onto BASE. */
  readonly adapterBase: AdapterBase | null;
  /** One sentence saying why. */
  readonly reason: string;
  readonly pValue: number;
  readonly log10PValue: number;
  readonly independence: IndependenceTest;
  /** Mean correlation of matched residual dimensions and neurons after alignment (1 = perfect). */
  readonly alignmentQuality: number;
  readonly direction: {
    /** (||C||^2 - ||B||^2) / ||C - B||^2 over changed matrices: ~1 when C = B + independent update, ~0 for siblings, ~-1 when B descends from C. */
    readonly normGrowth: number;
    readonly kurtosisBase: number;
    readonly kurtosisCandidate: number;
    /**
     * The norm growth read component by component (verify/direction.ts): the delta's low-rank
     * spike and its dense rest. Null unless some matrix changed densely (otherwise the rest is
     * storage rounding, whose growth says nothing); absent in results of versions before it.
     */
    readonly components?: DirectionComponents | null;
  };
  readonly lora: null | {
    readonly rank: number;
    readonly targets: readonly ModuleName[];
    readonly layers: readonly number[];
    readonly stacked: boolean;
    /**
     * The targets under the family's own module names, as PEFT's target_modules names them (ViT and
     * BERT `query`, `value`, `attention.output.dense`, ...; GPT-2 `c_attn`, ...); for Llama-style
     * models (named as `targets`) absent.
     */
    readonly nativeTargets?: readonly string[];
    /**
     * Present (true) when a side is block-quantized and the weakest directions counted stand at the
     * quantization floor: weaker LoRA directions may lie below it, so `rank` is what the weights
     * show, a lower bound of the adapter's rank.
     */
    readonly rankIsLowerBound?: true;
  };
  readonly fullFineTune: boolean;
  /**
   * Weights outside the compared body that verify left out (task heads: a classifier of another
   * label count, a pooler, a resized vocabulary), with one sentence saying so; absent when none.
   */
  readonly leftOut?: { readonly tensors: readonly string[]; readonly note: string };
  /** Each side's GGUF storage (file type, tensors per type), null for safetensors; absent in results of versions before GGUF. */
  readonly quantization?: { readonly base: StorageQuantization | null; readonly candidate: StorageQuantization | null };
  readonly transform: TransformFound;
  readonly layers: readonly LayerEvidence[];
  /**
   * Wall time in total; read, align and analyse are each summed over the threads that did them
   * (with --workers they may add up to more than the total).
   */
  readonly timings: { readonly readSeconds: number; readonly alignSeconds: number; readonly analyseSeconds: number; readonly totalSeconds: number };
}
