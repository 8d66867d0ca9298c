/**
 * `verify(base, candidate)`: was CANDIDATE fine-tuned from BASE (LoRA rank, targets), even after
 * function-preserving obfuscation. CANDIDATE may be a PEFT adapter folder. Resolves to what
 * `lineage verify --json` prints; the command calls this and only prints.
 */
import { isAdapter } from '../arch/peft.js';
import { SourceRoleReader, type RoleReader } from '../arch/reader.js';
import { BadInputError } from '../io/errors.js';
import { openTensorSource } from '../io/source.js';
import { MergedAdapterReader } from '../arch/adapter-reader.js';
import type { VerifyResult } from '../verify/types.js';
import { verifyModels } from '../verify/verify.js';
import { integerOption, startPass, type ProgressListener } from './options.js';
import { defaultWorkers } from './workers.js';

export interface VerifyOptions {
  /** Seed of the random projections, probes and residual sample (default 1). */
  readonly seed?: number;
  /** Worker threads analysing layers in parallel (0: none; default: cores, at most 4, as free memory allows). */
  readonly workers?: number;
  /** CANDIDATE must be a PEFT adapter folder (the CLI's `--adapter DIR`): else a BadInputError. */
  readonly adapter?: boolean;
  /** Bytes read, as they are read (one `verify` pass). */
  readonly onProgress?: ProgressListener;
  /** Each warning, one line without its `warning: ` prefix; its names come from files, unescaped. */
  readonly onWarning?: (message: string) => void;
}

/** Open CANDIDATE as a model, or as an adapter merged onto BASE with what its files declare. */
function openCandidate(base: SourceRoleReader, candidatePath: string, mustBeAdapter: boolean, onBytes: (n: number) => void) {
  const source = openTensorSource(candidatePath, { onBytes });
  try {
    const adapter = isAdapter(source);
    if (mustBeAdapter && !adapter) {
      throw new BadInputError(`--adapter ${source.name} is not a PEFT adapter (no adapter_config.json peft_type, no lora_A/lora_B tensors): give a full model as CANDIDATE`, { file: source.path });
    }
    if (!adapter) return { reader: new SourceRoleReader(source) as RoleReader, source, adapterSummary: null };
    const merged = new MergedAdapterReader(base, source);
    const summary = merged.summary();
    const adapterSummary = { rank: summary.ranks.length === 1 ? summary.ranks[0]! : null, targets: summary.targets, declaredBase: summary.baseModel };
    return { reader: merged as RoleReader, source, adapterSummary };
  } catch (err) {
    source.close();
    throw err;
  }
}

export async function verify(basePath: string, candidatePath: string, options: VerifyOptions = {}): Promise<VerifyResult> {
  const seed = integerOption('seed', options.seed ?? 1);
  let onBytes: (n: number) => void = () => {};
  const countBytes = (n: number) => onBytes(n);
  const baseSource = openTensorSource(basePath, { onBytes: countBytes });
  let base: SourceRoleReader;
  try {
    base = new SourceRoleReader(baseSource);
  } catch (err) {
    baseSource.close();
    throw err;
  }
  let candidate: ReturnType<typeof openCandidate>;
  try {
    candidate = openCandidate(base, candidatePath, options.adapter === true, countBytes);
  } catch (err) {
    base.close();
    throw err;
  }
  try {
    const workers = defaultWorkers(base, options.workers);
    // Each weight is read once; an adapter's base weights are read again for the merge.
    const baseBytes = base.source.totalBytes;
    const total = baseBytes + (candidate.adapterSummary ? baseBytes : 0) + candidate.source.totalBytes;
    onBytes = startPass(options.onProgress, 'verify', `verify ${base.name} -> ${candidate.reader.name}`, total);
    const result = verifyModels(base, candidate.reader, { seed, workers }, { candidate: candidate.adapterSummary });
    if (result.adapterBase?.matchesBase === false) {
      options.onWarning?.(`adapter ${candidate.reader.name} declares base "${result.adapterBase.declared}", not ${base.name}: the verdict is about the adapter applied to ${base.name}`);
    }
    return result;
  } finally {
    base.close();
    candidate.reader.close();
  }
}
