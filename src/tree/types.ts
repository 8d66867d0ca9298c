/**
 * The JSON contract of `lineage tree`: what both methods return and every rendering reads.
 * Model names are whatever the caller gave; nothing here depends on input order.
 */

/** A low-rank (LoRA) change, a dense one (full fine-tune), or the same weights block-quantized (GGUF). */
export type EdgeKind = 'lora' | 'full' | 'quantized';

export interface LineageEdge {
  readonly parent: string;
  readonly child: string;
  /** "lora": the weight delta is low rank; "full": a dense (full fine-tune) delta. */
  readonly kind: EdgeKind;
  /** LoRA rank read off the delta (the rank most adapted matrices agree on); null for full. */
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
  readonly root: string;
  /** Members in tree order: root first, then depth-first with children sorted by name. */
  readonly members: readonly string[];
}

export interface LineageResult {
  readonly method: 'lineage' | 'mother';
  readonly trees: readonly LineageTree[];
  /** Edges in the trees' order, each tree depth-first. */
  readonly edges: readonly LineageEdge[];
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
