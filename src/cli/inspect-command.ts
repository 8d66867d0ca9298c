/** `lineage inspect PATH`: what a model or adapter holds (the library's inspect does the work). */
import type { Command } from 'commander';
import { inspect } from '../api/inspect.js';
import { renderInspectTable } from '../reports/inspect-report.js';
import { writeResult } from './run.js';

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('show what a model or adapter folder (or .safetensors file) holds: family, dims, dtypes, roles, LoRA rank')
    .argument('<path>', 'model folder, adapter folder or .safetensors file')
    .option('--json', 'machine-readable output (fields documented in the README)', false)
    .action(async (inputPath: string, options: { json: boolean }) => {
      writeResult(await inspect(inputPath), options.json, renderInspectTable);
    });
}
