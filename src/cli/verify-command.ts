/**
 * `lineage verify BASE CANDIDATE`: was CANDIDATE fine-tuned from BASE (LoRA rank, targets), even
 * after function-preserving obfuscation. CANDIDATE may be a PEFT adapter folder (or --adapter).
 * The work is the library's verify (src/api/verify.ts); this prints it.
 */
import type { Command } from 'commander';
import { integerOption, wholeNumberOption } from '../api/options.js';
import { verify } from '../api/verify.js';
import { MAX_WORKERS } from '../api/workers.js';
import { LineageError, EXIT, printable } from '../io/errors.js';
import { writeReportFile } from '../reports/html-page.js';
import { renderVerifyHtml } from '../reports/html-verify.js';
import { renderVerifyText } from '../reports/verify-text.js';
import { addQuietOption, progressDisplay } from './progress.js';
import { writeResult } from './run.js';

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
    const seed = integerOption('--seed', flags.seed);
    const workers = flags.workers === undefined ? undefined : wholeNumberOption('--workers', flags.workers, 0, MAX_WORKERS);
    const progress = progressDisplay({ json: flags.json, quiet: flags.quiet });
    try {
      const result = await verify(basePath, (candidatePath ?? flags.adapter)!, {
        seed,
        workers,
        adapter: flags.adapter !== undefined,
        onProgress: progress.onProgress,
        onWarning: (message) => {
          progress.stop(); // the warning comes once the weights are read
          // Names and the declared base come from files: escaped, so they cannot forge a line.
          process.stderr.write(`warning: ${printable(message)}\n`);
        },
      });
      progress.stop();
      if (flags.html) writeReportFile(flags.html, renderVerifyHtml(result));
      writeResult(result, flags.json, renderVerifyText);
    } finally {
      progress.stop();
    }
  });
}
