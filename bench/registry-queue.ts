/**
 * The registry's job engine alone: jobs per second through pg-boss with no-op sketches, so the
 * number is the queue's own overhead, beside which a real sketch job (seconds for a 1B model)
 * is what a worker spends its time on.
 *
 *   npm run bench:registry-queue -- [--jobs 2000] [--consumers 1,4] [--batch 8]
 *
 * On a throwaway PostgreSQL cluster this bench starts (initdb + pg_ctl in a temporary folder,
 * 127.0.0.1, a free port; skipped when PostgreSQL is not installed) and on an embedded registry
 * (PGlite) in a temporary folder: the time to enqueue N jobs (one per distinct fingerprint, as
 * `lineage enqueue` sends them), then to fetch and complete them all with C concurrent consumers
 * taking up to B jobs at a time (as `lineage worker --concurrency B` does), each completing its
 * jobs with no work.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openRegistry, type Registry } from '../src/registry/registry.js';
import { DEFAULT_JOB_POLICY } from '../src/registry/queue.js';
import { clusterUnavailable, startCluster } from '../test/helpers/postgres-cluster.js';

function argument(args: readonly string[], flag: string): string | undefined {
  const at = args.indexOf(flag);
  return at >= 0 ? args[at + 1] : undefined;
}

async function enqueue(registry: Registry, jobs: number, tag: string): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < jobs; i++) await registry.queue.send({ fingerprint: `${tag}-${i}`, path: `/no-op/${tag}/${i}` }, DEFAULT_JOB_POLICY);
  return (performance.now() - started) / 1000;
}

async function drain(registry: Registry, consumers: number, batch: number): Promise<{ seconds: number; done: number }> {
  const started = performance.now();
  let done = 0;
  const consumer = async () => {
    for (;;) {
      const held = await registry.queue.fetch(batch);
      if (held.length === 0) return;
      for (const job of held) await registry.queue.complete(job.id);
      done += held.length;
    }
  };
  await Promise.all(Array.from({ length: consumers }, consumer));
  return { seconds: (performance.now() - started) / 1000, done };
}

async function measure(label: string, location: string, jobs: number, consumerCounts: readonly number[], batch: number): Promise<void> {
  const registry = await openRegistry(location);
  try {
    for (const consumers of consumerCounts) {
      const tag = `${consumers}-${Date.now()}`;
      const sent = await enqueue(registry, jobs, tag);
      const { seconds, done } = await drain(registry, consumers, batch);
      console.log(`${label}: enqueue ${jobs} jobs ${sent.toFixed(2)} s (${(jobs / sent).toFixed(0)}/s); fetch + complete with ${consumers} `
        + `consumer${consumers > 1 ? 's' : ''}, ${batch} a fetch: ${done} jobs in ${seconds.toFixed(2)} s (${(done / seconds).toFixed(0)}/s)`);
    }
  } finally {
    await registry.close();
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const jobs = Number(argument(args, '--jobs') ?? 2000);
  const consumers = (argument(args, '--consumers') ?? '1,4').split(',').map(Number);
  const batch = Number(argument(args, '--batch') ?? 8);
  const unavailable = clusterUnavailable();
  if (unavailable) console.log(`PostgreSQL server: skipped (${unavailable})`);
  else {
    const cluster = await startCluster();
    try {
      await measure('PostgreSQL server', cluster.url, jobs, consumers, batch);
    } finally {
      cluster.stop();
    }
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-bench-registry-'));
  try {
    // One process at a time holds an embedded registry: its consumers are concurrent calls in it.
    await measure('embedded registry (PGlite)', path.join(dir, 'registry'), Math.min(jobs, 500), consumers, batch);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
