import { SourceRoleReader } from '../../src/arch/reader.js';
import type { VerifyResult } from '../../src/verify/types.js';
import { verifyModels, type VerifyOptions } from '../../src/verify/verify.js';

/** Run `f` on readers of two model folders, closing both whatever happens. */
export function withReaders<T>(baseDir: string, candidateDir: string, f: (base: SourceRoleReader, candidate: SourceRoleReader) => T): T {
  const base = SourceRoleReader.open(baseDir);
  try {
    const candidate = SourceRoleReader.open(candidateDir);
    try {
      return f(base, candidate);
    } finally {
      candidate.close();
    }
  } finally {
    base.close();
  }
}

/** verifyModels on two model folders, with a one-line timed summary in the test log. */
export function timedVerify(label: string, baseDir: string, candidateDir: string, options: VerifyOptions = {}): VerifyResult {
  return withReaders(baseDir, candidateDir, (base, candidate) => {
    const started = performance.now();
    const result = verifyModels(base, candidate, options);
    const seconds = (performance.now() - started) / 1000;
    const lora = result.lora ? `LoRA rank ${result.lora.rank} on ${result.lora.targets.join(',')}` : 'no LoRA';
    console.log(`  ${label}: ${result.relation}, ${lora}, full fine-tune ${result.fullFineTune}, p = ${result.pValue.toExponential(1)}, ${seconds.toFixed(2)} s`);
    return result;
  });
}
