/**
 * The library: `import { verify, tree, inspect } from 'model-lineage'`. Each resolves to exactly
 * the object its command's `--json` prints (the commands call these and only print); failures a
 * caller can cause are LineageError subclasses carrying the CLI's exit code.
 */
export { verify, type VerifyOptions } from './api/verify.js';
export { tree, type TreeOptions, type TreeResult } from './api/tree.js';
export { inspect, type InspectOptions } from './api/inspect.js';
export type { Progress, ProgressListener } from './api/options.js';
export { LineageError, BadInputError, IncompatibleModelsError, EXIT, type ExitCode } from './io/errors.js';
export { RegistryError } from './registry/database.js';
export type { VerifyResult, Relation, ModelSummary, LayerEvidence, ModuleEvidence, ModuleName, AdapterBase, IndependenceTest, TransformFound } from './verify/types.js';
export type { LineageResult, LineageEdge, LineageTree, EdgeKind, MergeEntry, VirtualNode, AlignedEdge, AlignmentCost, SkippedInput } from './tree/types.js';
export type { TruthScore } from './tree/truth.js';
export type { InspectReport } from './reports/inspect-report.js';
