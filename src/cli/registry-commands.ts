/**
 * The registry's commands: `lineage enqueue`, `lineage worker` and `lineage registry status`
 * (`lineage tree --registry` is in tree-command.ts). A `--registry` is a PostgreSQL URL or the
 * folder of an embedded registry (src/registry/database.ts).
 */
import type { Command } from 'commander';
import { wholeNumberOption } from '../api/options.js';
import { expandModelPaths, enqueueModel, type EnqueueOptions, type EnqueueOutcome } from '../registry/enqueue.js';
import { DEFAULT_JOB_POLICY } from '../registry/queue.js';
import { registryStatus, settleAbandonedJobs, withRegistry, type RegistryStatus } from '../registry/registry.js';
import { runWorker } from '../registry/worker.js';
import { writeResult } from './run.js';

export const REGISTRY_FLAG = '--registry <url-or-folder>';
export const REGISTRY_HELP = 'the sketch registry: a postgres:// URL (missing parts from the PG* variables) or the folder of an embedded one';

function registerEnqueue(program: Command): void {
  program
    .command('enqueue')
    .description('record models in a sketch registry and queue one sketch job per new content (folders of model folders expand)')
    .argument('<models...>', 'model folders, .safetensors files, or folders of model folders')
    .requiredOption(REGISTRY_FLAG, REGISTRY_HELP)
    .option('--retries <n>', 'attempts after the first before a model is failed', String(DEFAULT_JOB_POLICY.retries))
    .option('--lease <seconds>', 'seconds a worker may hold a job before another takes it over', String(DEFAULT_JOB_POLICY.leaseSeconds))
    .option('--retry-failed', 'queue again models that failed with the same content (they stay failed otherwise)', false)
    .option('--json', 'machine-readable output', false)
    .action(async (paths: string[], flags: { registry: string; retries: string; lease: string; retryFailed: boolean; json: boolean }) => {
      const options: EnqueueOptions = {
        retryFailed: flags.retryFailed,
        retries: wholeNumberOption('--retries', flags.retries, 0, 100),
        leaseSeconds: wholeNumberOption('--lease', flags.lease, 1, 7 * 24 * 3600),
      };
      const models = expandModelPaths(paths);
      const outcomes = await withRegistry(flags.registry, async (registry) => {
        await settleAbandonedJobs(registry);
        const done: EnqueueOutcome[] = [];
        for (const model of models) done.push(await enqueueModel(registry, model, options));
        return done;
      });
      const count = (o: EnqueueOutcome['outcome']) => outcomes.filter((x) => x.outcome === o).length;
      const unreadable = outcomes.filter((o) => o.outcome === 'unreadable');
      writeResult(
        outcomes.map((o) => ({ path: o.path, outcome: o.outcome, ...('error' in o ? { error: o.error.message } : {}) })),
        flags.json,
        () => `enqueued ${outcomes.length} models: ${count('queued')} new jobs, ${count('already-queued')} already queued, `
          + `${count('already-sketched')} already sketched, ${count('already-failed')} already failed, ${count('skipped-adapter')} PEFT adapters skipped, ${unreadable.length} unreadable\n`,
      );
      // Every unreadable model is recorded as failed; the first one's error sets the exit code.
      for (const o of unreadable.slice(1)) process.stderr.write(`error: ${o.error.message}\n`);
      if (unreadable.length > 0) throw unreadable[0]!.error;
    });
}

function registerWorker(program: Command): void {
  program
    .command('worker')
    .description('run sketch jobs from a registry: read each queued model once, store its sketch (run one on every machine that sees the weights)')
    .requiredOption(REGISTRY_FLAG, REGISTRY_HELP)
    .option('--until-idle', 'stop once no job is queued or held by any worker (else wait for new jobs)', false)
    .option('--concurrency <n>', 'jobs held at once, their matrices sketched on this many threads', '1')
    .option('--poll <seconds>', 'seconds between looks at an empty queue', '2')
    .option('--quiet', 'no line per job on stderr', false)
    .action(async (flags: { registry: string; untilIdle: boolean; concurrency: string; poll: string; quiet: boolean }) => {
      const concurrency = wholeNumberOption('--concurrency', flags.concurrency, 1, 64);
      const pollSeconds = wholeNumberOption('--poll', flags.poll, 1, 3600);
      let stop = false;
      const requestStop = () => { stop = true; };
      process.once('SIGINT', requestStop).once('SIGTERM', requestStop);
      const log = flags.quiet ? undefined : (line: string) => void process.stderr.write(`worker: ${line}\n`);
      const summary = await withRegistry(
        flags.registry,
        (registry) => runWorker(registry, { concurrency, untilIdle: flags.untilIdle, pollSeconds, stopRequested: () => stop, ...(log ? { log } : {}) }),
        // Supervision hands the jobs of dead workers out again, at most a lease plus this long after.
        { supervise: true, superviseSeconds: Math.min(5, pollSeconds) },
      );
      process.stdout.write(`worker: ${summary.sketched} sketched, ${summary.alreadyStored} already stored, `
        + `${summary.failedAttempts} failed attempts (${summary.failedFinally} models failed for good)\n`);
    });
}

function renderStatus(status: RegistryStatus): string {
  const c = status.counts;
  const lines = [
    `models: ${c.sketched} sketched, ${c.queued} queued, ${c.sketching} sketching, ${c.failed} failed`,
    `sketches stored: ${status.sketches}; jobs unfinished: ${status.unfinishedJobs}`,
    ...status.failures.map((f) => `failed: ${f.path} (${f.attempts} attempts): ${f.error}`),
  ];
  return lines.join('\n') + '\n';
}

function registerRegistry(program: Command): void {
  const registry = program.command('registry').description('look after a sketch registry');
  registry
    .command('status')
    .description('models per state, stored sketches, unfinished jobs, and every failure with its reason')
    .requiredOption(REGISTRY_FLAG, REGISTRY_HELP)
    .option('--json', 'machine-readable output', false)
    .action(async (flags: { registry: string; json: boolean }) => {
      const status = await withRegistry(flags.registry, registryStatus);
      writeResult(status, flags.json, renderStatus);
    });
}

export function registerRegistryCommands(program: Command): void {
  registerEnqueue(program);
  registerWorker(program);
  registerRegistry(program);
}
