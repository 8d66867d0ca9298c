/**
 * The JSON contract of `lineage tree`: what both methods return and every rendering reads.
 * Model names are whatever the caller gave; nothing here depends on input order.
 */

/**
 * A low-rank (LoRA) change, a dense one (full fine-tune), the same weights block-quantized (GGUF),
 * or one of a merge's parents (see LineageResult.merges).
 */
export type EdgeKind = 'lora' | 'full' | 'quantized' | 'merge';

export interface LineageEdge {
  readonly parent: string;
  readonly child: string;
  /** "lora": the weight delta is low rank; "full": a dense (full fine-tune) delta; "merge": a parent of a merge. */
  readonly kind: EdgeKind;
  /** LoRA rank read off the delta (the rank most adapted matrices agree on); null for full and merge. */
  readonly rank: number | null;
  /** Modules the low-rank delta touches (e.g. ["q_proj", "v_proj"]); empty for full. */
  readonly modules: readonly string[];
  /** The pair's distance as the method measured it (see the method for its unit). */
  readonly distance: number;
  /**
   * Direction evidence for this edge. Default method: norm growth g(parent -> child), near +1
   * for a fine-tune (see PairEvidence.normGrowth). MoTHer: ku(parent) - ku(child) under the
   * "kurtosis falls during fine-tuning" rule (sign flipped when kurtosis rises). Positive: the
   * direction agrees with the evidence; negative: it was chosen against it for a cheaper tree.
   */
  readonly directionMargin: number;
  /**
   * Set when the sketches could not place the child and the verify analysis did (an obfuscated
   * member): the edge comes from the aligned comparison of parent and child.
   */
  readonly aligned?: AlignedEdge;
  /**
   * Set when the child is a PEFT adapter folder: placed under the base its adapter_config.json
   * names, `rank` and `modules` read from its own LoRA factors, `distance` from its factors
   * relative to the base's norms, and no direction read (`directionMargin` 0: an adapter is its
   * base's child by definition).
   */
  readonly adapter?: true;
  /** Merge edges: this parent's weight in the merge (as in LineageResult.merges). */
  readonly weight?: number;
  /**
   * Quantized edges: the quantized member's block types among its sketched matrices, the most
   * frequent first, e.g. "Q8_0", or "Q4_K+Q6_K" for a Q4_K_M file.
   */
  readonly quantization?: string;
}

export interface AlignedEdge {
  /** Equal weights once aligned: an obfuscated copy (rank 0, direction margin 0: no direction to read). */
  readonly copy: boolean;
  /** What the alignment undid, one line per kind of transform (verify's transform.summary). */
  readonly transform: readonly string[];
  /** log10 p-value of verify's relatedness test for parent and child. */
  readonly log10PValue: number;
}

/** What placing the unplaced members cost: verify passes read both models whole, again. */
export interface AlignmentCost {
  /** Models the sketches could not place, that alignment tried to place. */
  readonly models: readonly string[];
  readonly verifyPasses: number;
  /** Weight bytes those passes read (the sketches' own reads not included). */
  readonly bytesRead: number;
}

export interface LineageTree {
  /** The first root (by name). */
  readonly root: string;
  /**
   * Every root, when the family has several: families joined by a merge, or a virtual base
   * whose own parent the weights do not show. Absent for a family with one root.
   */
  readonly roots?: readonly string[];
  /**
   * Members in tree order: each root (by name) followed depth-first by its descendants, children
   * sorted by name; a merge is listed once, under its first parent by name. Virtual nodes included.
   */
  readonly members: readonly string[];
}

/** A model whose weights are a combination of other members' (see src/tree/merges.ts). */
export interface MergeEntry {
  readonly child: string;
  /** Sorted by name. */
  readonly parents: readonly string[];
  /**
   * linear and task_arithmetic: an exact combination; ties / dare: entries trimmed or dropped,
   * told apart by the kept entries' scale (their own values: ties; rescaled: dare).
   */
  readonly method: 'linear' | 'task_arithmetic' | 'ties' | 'dare' | 'unknown';
  /**
   * One per parent, as estimated: linear the coefficients (summing to 1); task_arithmetic and
   * dare the coefficients of the parents' task vectors over the base; ties the scale of kept entries.
   */
  readonly weights: readonly number[];
  /** The model the task vectors are taken from; null for a linear merge. */
  readonly base: string | null;
  /** dare: the estimated kept share of entries. */
  readonly density?: number;
  /**
   * What the parents leave unexplained: squared residual of the fit over that of the nearest
   * single member (0 for an exact combination, about 1 - density for DARE).
   */
  readonly residual: number;
  /** The fit's residual over the storage rounding it would leave if exact (about 1 or below: exact). */
  readonly residualOverRounding: number;
}

/** An ancestor the inputs lack, recovered from its children (see src/tree/siblings.ts). */
export interface VirtualNode {
  readonly name: string;
  readonly virtual: true;
  readonly children: readonly string[];
}

export interface LineageResult {
  readonly method: 'lineage' | 'mother';
  readonly trees: readonly LineageTree[];
  /** Edges in the trees' order, each tree depth-first (a merge's edges where each parent is visited). */
  readonly edges: readonly LineageEdge[];
  /** Default method: the merges found (empty when none). */
  readonly merges?: readonly MergeEntry[];
  /** Default method, when some family's common parent is absent: the virtual nodes standing for it. */
  readonly virtualNodes?: readonly VirtualNode[];
  /** Warnings about models that could not be placed with confidence (e.g. obfuscated copies). */
  readonly notes?: readonly string[];
  /** Present when some member needed alignment to be placed. */
  readonly alignment?: AlignmentCost;
  /** Inputs left out of the forest (not a model, unreadable, an adapter whose base is not given). */
  readonly skipped?: readonly SkippedInput[];
}

export interface SkippedInput {
  /** As given (or as found inside a folder given). */
  readonly path: string;
  readonly reason: string;
}
