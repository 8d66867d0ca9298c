/** Run the built `lineage` executable as a child process, as users do (helper for cli and inspect tests). */
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** dist/test/ -> repository root. */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** Killed at the time limit (code is then -1). */
  readonly timedOut: boolean;
}

/** Run `lineage args`; with `timeoutMs`, a run still going then is killed and reported as timed out. */
export function runLineage(args: readonly string[], options: { timeoutMs?: number; cwd?: string } = {}): Promise<CliRun> {
  return new Promise((resolve) => {
    const settings = { encoding: 'utf8' as const, timeout: options.timeoutMs ?? 0, killSignal: 'SIGKILL' as const, ...(options.cwd ? { cwd: options.cwd } : {}) };
    execFile(process.execPath, [CLI, ...args], settings, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr, timedOut: err?.killed === true });
    });
  });
}
