/**
 * `inspect(path)`: what a model or adapter folder (or weights file) holds: family, dims, dtypes,
 * roles, LoRA rank. Resolves to what `lineage inspect --json` prints. Reads headers and configs only.
 */
import { openTensorSource } from '../io/source.js';
import { buildInspectReport, type InspectReport } from '../reports/inspect-report.js';

/** None yet: inspect reads no weights, so there is no progress to report. */
export type InspectOptions = Record<string, never>;

export async function inspect(inputPath: string, _options: InspectOptions = {}): Promise<InspectReport> {
  const source = openTensorSource(inputPath);
  try {
    return buildInspectReport(source);
  } finally {
    source.close();
  }
}
