/**
 * The safetensors header fuzz of test/io-fuzz-headers.test.ts, run longer: seeded mutations of the
 * sample files' length prefix and header, each read by readSafetensorsHeader, which must accept
 * the file whole or refuse it as bad input on one printable line, within a second.
 *
 *   node dist/bench/fuzz-headers.js [--seconds S] [--seed N]
 *
 * CPU-bound and short (60 s by default); prints the counts and the refusals by kind. Exit code 1
 * when any case failed (the failures are printed).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { fuzzHeaders } from '../test/helpers/header-fuzz.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '60' }, seed: { type: 'string', default: '15' } } });
const seconds = Number(values.seconds), seed = Number(values.seed);
if (!(seconds > 0) || !Number.isInteger(seed)) throw new Error('--seconds must be positive and --seed an integer');

// dist/bench/ -> repository root.
const samples = path.join(fileURLToPath(new URL('../../', import.meta.url)), 'samples');
const seeds = ['p2-adapter/adapter_model.safetensors', 'p4a/model-00002-of-00002.safetensors', 'p0/model.safetensors'].map((f) => path.join(samples, f));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-fuzz-bench-'));
try {
  const counts = fuzzHeaders(seeds, dir, { seed, seconds });
  console.log(`seed ${seed}, ${seconds} s: ${counts.cases} cases, ${counts.accepted} accepted, ${counts.refused} refused as bad input, ${counts.failures.length} failures; slowest read ${counts.slowestMs.toFixed(1)} ms`);
  for (const [kind, n] of [...counts.reasons].sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(7)}  ${kind}`);
  for (const failure of counts.failures) console.log(`FAILURE ${failure}`);
  process.exitCode = counts.failures.length > 0 ? 1 : 0;
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
