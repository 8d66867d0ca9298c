/**
 * `lineage verify BASE CANDIDATE`: was CANDIDATE fine-tuned from BASE (LoRA rank, targets), even
 * after function-preserving obfuscation. CANDIDATE may be a PEFT adapter folder (or --adapter).
 */
import type { Command } from 'commander';
import { isAdapter } from '../arch/peft.js';
import { SourceRoleReader, type RoleReader } from '../arch/reader.js';
import { BadInputError, LineageError, EXIT, printable } from '../io/errors.js';
import { openTensorSource } from '../io/source.js';
import { writeReportFile } from '../reports/html-page.js';
import { renderVerifyHtml } from '../reports/html-verify.js';
import { renderVerifyText } from '../reports/verify-text.js';
import { MergedAdapterReader } from '../verify/adapter-reader.js';
import { verifyModels } from '../verify/verify.js';
import { addQuietOption, startWeightPass } from './progress.js';
import { writeResult } from './run.js';
import { defaultWorkers } from './workers.js';

interface VerifyFlags {
  json: boolean;
  html?: string;
  adapter?: string;
  quiet?: boolean;
  seed: string;
  workers?: string;
}


export function registerVerify(program: Command): void {
  const command = program
    .command('verify')
    .description('decide whether CANDIDATE was fine-tuned from BASE (derived / related / unrelated), with LoRA rank and targets, undoing permutations and rescalings')
    .argument('<base>', 'the claimed base model (folder or .safetensors file)')
    .argument('[candidate]', 'the model to check, or a PEFT adapter folder')
    .option('--adapter <dir>', 'verify a PEFT adapter folder against BASE (instead of CANDIDATE)')
    .option('--json', 'machine-readable output (contract in the README)', false)
    .option('--html <file>', 'also write a self-contained HTML evidence report')
    .option('--seed <n>', 'seed of the random projections, probes and residual sample', '1')
    .option('--workers <n>', 'worker threads analysing layers in parallel (0: none; default: cores, at most 4, as free memory allows)');
  addQuietOption(command).action(async (basePath: string, candidatePath: string | undefined, flags: VerifyFlags) => {
    if (!candidatePath === !flags.adapter) {
      throw new LineageError('give either CANDIDATE or --adapter DIR (exactly one)', { exitCode: EXIT.usage });
    }
    const seed = Number(flags.seed);
    if (!Number.isInteger(seed)) throw new LineageError(`--seed must be an integer, got ${flags.seed}`, { exitCode: EXIT.usage });
    if (flags.workers !== undefined && !/^\d+$/.test(flags.workers)) {
      throw new LineageError(`--workers must be a whole number, got ${flags.workers}`, { exitCode: EXIT.usage });
    }
    let pass: ReturnType<typeof startWeightPass> | null = null;
    const onBytes = (n: number) => pass?.onBytes(n);
    const baseSource = openTensorSource(basePath, { onBytes });
    const candidateSource = openTensorSource((candidatePath ?? flags.adapter)!, { onBytes });
    const base = new SourceRoleReader(baseSource);
    let candidate: RoleReader;
    let adapterSummary = null;
    const adapter = isAdapter(candidateSource);
    if (flags.adapter && !adapter) {
      base.close();
      candidateSource.close();
      throw new BadInputError(`--adapter ${candidateSource.name} is not a PEFT adapter (no adapter_config.json peft_type, no lora_A/lora_B tensors): give a full model as CANDIDATE`, { file: candidateSource.path });
    }
    if (adapter) {
      let merged: MergedAdapterReader;
      try {
        merged = new MergedAdapterReader(base, candidateSource);
      } catch (err) {
        base.close();
        candidateSource.close();
        throw err;
      }
      const summary = merged.summary();
      adapterSummary = { rank: summary.ranks.length === 1 ? summary.ranks[0]! : null, targets: summary.targets, declaredBase: summary.baseModel };
      candidate = merged;
    } else {
      candidate = new SourceRoleReader(candidateSource);
    }
    try {
      // Each weight is read once; an adapter's base weights are read again for the merge.
      const total = baseSource.totalBytes + (adapterSummary ? baseSource.totalBytes : 0) + candidateSource.totalBytes;
      pass = startWeightPass(`verify ${base.name} -> ${candidate.name}`, total, { json: flags.json, quiet: flags.quiet });
      const result = verifyModels(base, candidate, { seed, workers: defaultWorkers(base, flags.workers) }, { candidate: adapterSummary });
      pass.stop();
      if (result.adapterBase?.matchesBase === false) {
        // Names and the declared base come from files: escaped, so they cannot forge a line.
        process.stderr.write(`${printable(`warning: adapter ${candidate.name} declares base "${result.adapterBase.declared}", not ${base.name}: the verdict is about the adapter applied to ${base.name}`)}\n`);
      }
      if (flags.html) writeReportFile(flags.html, renderVerifyHtml(result));
      writeResult(result, flags.json, renderVerifyText);
    } finally {
      pass?.stop();
      base.close();
      candidate.close();
    }
  });
}
