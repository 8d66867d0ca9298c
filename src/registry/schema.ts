/**
 * The registry's tables (schema `lineage`), created and migrated by the tool: each migration runs
 * once, in order, in one transaction under an advisory lock, so processes starting together
 * migrate once. pg-boss keeps its jobs in a schema of its own (`lineage_jobs`).
 */
import { RegistryError, type Database } from './database.js';

export const SCHEMA = 'lineage';
export const JOB_SCHEMA = 'lineage_jobs';

/**
 * Append only: a released migration is never edited, a change is a new entry. Sketch bytes are
 * float32 and do not compress: stored out of line without compression (STORAGE EXTERNAL).
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE lineage.sketches (
     fingerprint text NOT NULL,
     variant text NOT NULL,
     bytes bytea NOT NULL,
     byte_size integer NOT NULL,
     created_at timestamptz NOT NULL DEFAULT now(),
     created_by text,
     PRIMARY KEY (fingerprint, variant)
   );
   ALTER TABLE lineage.sketches ALTER COLUMN bytes SET STORAGE EXTERNAL;
   CREATE TABLE lineage.models (
     path text PRIMARY KEY,
     fingerprint text,
     family text,
     architecture text,
     total_bytes bigint,
     state text NOT NULL CHECK (state IN ('queued', 'sketching', 'sketched', 'failed')),
     attempts integer NOT NULL DEFAULT 0,
     error text,
     job_id uuid,
     worker text,
     enqueued_at timestamptz NOT NULL DEFAULT now(),
     updated_at timestamptz NOT NULL DEFAULT now()
   );
   CREATE INDEX models_fingerprint ON lineage.models (fingerprint);
   CREATE INDEX models_state ON lineage.models (state);
   CREATE TABLE lineage.trees (
     id bigserial PRIMARY KEY,
     created_at timestamptz NOT NULL DEFAULT now(),
     method text NOT NULL,
     model_count integer NOT NULL,
     result jsonb NOT NULL
   );`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

export async function migrate(db: Database): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext('lineage registry migration'))`);
    await tx.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
    await tx.query(`CREATE TABLE IF NOT EXISTS ${SCHEMA}.migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
    const [row] = await tx.query<{ version: number | null }>(`SELECT max(version) AS version FROM ${SCHEMA}.migrations`);
    const applied = row?.version ?? 0;
    if (applied > MIGRATIONS.length) {
      throw new RegistryError(`the registry's schema is version ${applied}, newer than this lineage knows (${MIGRATIONS.length}): update lineage`);
    }
    for (let version = applied + 1; version <= MIGRATIONS.length; version++) {
      for (const statement of splitStatements(MIGRATIONS[version - 1]!)) await tx.query(statement);
      await tx.query(`INSERT INTO ${SCHEMA}.migrations (version) VALUES ($1)`, [version]);
    }
  });
}

/** A migration's statements one by one (the extended protocol takes one at a time). */
function splitStatements(script: string): string[] {
  return script.split(/;\s*(?:\n|$)/).map((s) => s.trim()).filter((s) => s.length > 0);
}
