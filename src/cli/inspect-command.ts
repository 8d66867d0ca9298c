import type { Command } from 'commander';
import { openTensorSource } from '../io/source.js';
import { buildInspectReport, renderInspectTable } from '../reports/inspect-report.js';
import { writeResult } from './run.js';

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('show what a model or adapter folder (or .safetensors file) holds: family, dims, dtypes, roles, LoRA rank')
    .argument('<path>', 'model folder, adapter folder or .safetensors file')
    .option('--json', 'machine-readable output (fields documented in the README)', false)
    .action((inputPath: string, options: { json: boolean }) => {
      const source = openTensorSource(inputPath);
      try {
        writeResult(buildInspectReport(source), options.json, renderInspectTable);
      } finally {
        source.close();
      }
    });
}
