/** Tree recovery (MoTHer and our default forest method): pure analyses on given evidence. */
export { minimumArborescence, minimumSpanningForest, canonicalOrder } from './arborescence.js';
export type { ArborescenceResult, ArborescenceOptions, CostMatrix } from './arborescence.js';
export { singleLinkage, wardClusters } from './cluster.js';
export {
  recoverMother, motherCosts, directionMatrix, directionMargin, rmsDistance, loraRankDistance, MOTHER_LAMBDA,
} from './mother.js';
export type { MotherInput, MotherOptions } from './mother.js';
export { recoverForest, relatednessThreshold, DEFAULT_ALPHA } from './forest.js';
export type { ForestEvidence, ForestOptions, ModelEvidence, PairEvidence, LowRankEvidence } from './forest.js';
export {
  pairEvidenceFromWeights, summedKurtosis, numericalRank, correlationLog10PValue, log10NormalUpperTail,
} from './evidence.js';
export type { ModelWeights, PairEvidenceOptions } from './evidence.js';
export { renderTerminal, renderDot, renderMermaid, renderJson, edgeLabel } from './render.js';
export { scoreAgainstTruth, parseTruth, restrictTruth } from './truth.js';
export type { Truth, TruthModel, TruthScore, EdgeProblem } from './truth.js';
export type { LineageResult, LineageEdge, LineageTree, EdgeKind, AlignedEdge, AlignmentCost, SkippedInput } from './types.js';
export { groupByArchitecture, describeArchitecture, architectureNotes, mergeResults, recoverLineageByArchitecture } from './architectures.js';
export { adapterEdge, attachAdapters } from './adapters.js';
export type { AdapterFactor, AdapterMember, RefusedAdapter } from './adapters.js';
export {
  recoverLineage, compareAll, forestEvidence, outputProjectionKurtosis, OBFUSCATION_DISTANCE,
} from './lineage.js';
export type { SketchedModel, LineageOptions, LineageAnalysis, MotherDistance, SuspectedObfuscation } from './lineage.js';
export { placeUnplacedMembers, profileMismatch, alignedEdgeLabel, isAlignedCopy, DEFAULT_PARENT_CANDIDATES } from './obfuscated.js';
export type { PlacementOptions } from './obfuscated.js';
export {
  compareSketches, compareMatrix, sketchSignature, noiseThreshold, countSingularValuesAbove, relatednessLog10P,
} from './sketch-evidence.js';
export type { SketchComparison, MatrixComparison } from './sketch-evidence.js';
