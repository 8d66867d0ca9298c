import { SourceRoleReader } from '../../src/arch/reader.js';
import type { VerifyResult } from '../../src/verify/types.js';
import { verifyModels } from '../../src/verify/verify.js';

/** verifyModels on two model folders, with a one-line timed summary in the test log. */
export function timedVerify(label: string, baseDir: string, candidateDir: string): VerifyResult {
  const base = SourceRoleReader.open(baseDir);
  const candidate = SourceRoleReader.open(candidateDir);
  const started = performance.now();
  try {
    const result = verifyModels(base, candidate);
    const seconds = (performance.now() - started) / 1000;
    const lora = result.lora ? `LoRA rank ${result.lora.rank} on ${result.lora.targets.join(',')}` : 'no LoRA';
    console.log(`  ${label}: ${result.relation}, ${lora}, full fine-tune ${result.fullFineTune}, p = ${result.pValue.toExponential(1)}, ${seconds.toFixed(2)} s`);
    return result;
  } finally {
    base.close();
    candidate.close();
  }
}
