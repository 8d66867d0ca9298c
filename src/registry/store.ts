/**
 * The registry's records: models (path, content fingerprint, architecture group, size, state,
 * error), sketches stored once per fingerprint as the bytes `encodeSketch` makes, and tree results.
 * Every statement is parameterised.
 */
import { encodeSketch, decodeSketch } from '../store/sketch-cache.js';
import { SKETCH_FORMAT, resolveSketchOptions, type ModelSketch, type SketchOptions } from '../sketch/types.js';
import type { LineageResult } from '../tree/types.js';
import type { Database, Queryable } from './database.js';

export type ModelState = 'queued' | 'sketching' | 'sketched' | 'failed';
export const MODEL_STATES: readonly ModelState[] = ['queued', 'sketching', 'sketched', 'failed'];

/** What a model is, as read at enqueue time (headers and fingerprint samples only). */
export interface ModelFacts {
  readonly path: string;
  readonly fingerprint: string;
  readonly family: string;
  readonly architecture: string | null;
  readonly totalBytes: number;
}

export interface ModelRecord {
  readonly path: string;
  readonly fingerprint: string | null;
  readonly state: ModelState;
  readonly attempts: number;
  readonly error: string | null;
  readonly jobId: string | null;
}

/**
 * The sketch's kind: its format and options. A sketch is stored once per (fingerprint, variant),
 * so a registry can hold sketches of another size next to the default ones.
 */
export function sketchVariant(options: SketchOptions = {}): string {
  return JSON.stringify({ format: SKETCH_FORMAT, ...resolveSketchOptions(options) });
}

interface ModelRow {
  path: string;
  fingerprint: string | null;
  state: ModelState;
  attempts: number;
  error: string | null;
  job_id: string | null;
}

const toRecord = (r: ModelRow): ModelRecord => ({ path: r.path, fingerprint: r.fingerprint, state: r.state, attempts: r.attempts, error: r.error, jobId: r.job_id });

export class RegistryStore {
  constructor(private readonly db: Database, readonly variant: string = sketchVariant()) {}

  async hasSketch(fingerprint: string, tx: Queryable = this.db): Promise<boolean> {
    const rows = await tx.query(`SELECT 1 FROM lineage.sketches WHERE fingerprint = $1 AND variant = $2`, [fingerprint, this.variant]);
    return rows.length > 0;
  }

  /** Records a model as given at enqueue (a re-enqueue of the same path replaces its record). */
  async putModel(facts: ModelFacts, state: ModelState, jobId: string | null): Promise<void> {
    await this.db.query(
      `INSERT INTO lineage.models (path, fingerprint, family, architecture, total_bytes, state, attempts, error, job_id, worker)
       VALUES ($1, $2, $3, $4, $5, $6, 0, NULL, $7, NULL)
       ON CONFLICT (path) DO UPDATE SET fingerprint = $2, family = $3, architecture = $4, total_bytes = $5, state = $6,
         attempts = 0, error = NULL, job_id = $7, worker = NULL, enqueued_at = now(), updated_at = now()`,
      [facts.path, facts.fingerprint, facts.family, facts.architecture, facts.totalBytes, state, jobId],
    );
  }

  /** A model that could not even be read at enqueue (no fingerprint): failed with its reason. */
  async putUnreadable(modelPath: string, reason: string): Promise<void> {
    await this.db.query(
      `INSERT INTO lineage.models (path, state, error) VALUES ($1, 'failed', $2)
       ON CONFLICT (path) DO UPDATE SET fingerprint = NULL, state = 'failed', error = $2, job_id = NULL, worker = NULL, updated_at = now()`,
      [modelPath, reason],
    );
  }

  /** The model's record, if it has one. */
  async model(modelPath: string): Promise<ModelRecord | null> {
    const rows = await this.db.query<ModelRow>(`SELECT path, fingerprint, state, attempts, error, job_id FROM lineage.models WHERE path = $1`, [modelPath]);
    return rows[0] ? toRecord(rows[0]) : null;
  }

  /** The live job (queued or running) that already sketches this content, if any. */
  async pendingJob(fingerprint: string): Promise<string | null> {
    const rows = await this.db.query<{ job_id: string }>(
      `SELECT job_id FROM lineage.models WHERE fingerprint = $1 AND state IN ('queued', 'sketching') AND job_id IS NOT NULL LIMIT 1`, [fingerprint]);
    return rows[0]?.job_id ?? null;
  }

  async markSketching(fingerprint: string, worker: string): Promise<void> {
    await this.db.query(
      `UPDATE lineage.models SET state = 'sketching', attempts = attempts + 1, worker = $2, updated_at = now()
       WHERE fingerprint = $1 AND state <> 'sketched'`, [fingerprint, worker]);
  }

  /**
   * Sketch bytes cross the connection as base64 text, decoded by the database: `pg` sends a bytea
   * parameter as hex (twice the bytes) and the embedded PGlite parses bytea slowly (the zoo's 14
   * sketches of 2.4 MB read in 1.3 s as base64, 5 s as bytea).
   *
   * Stores the sketch (once: a second worker's copy of the same content is dropped) and marks every
   * model with its fingerprint sketched, in one transaction. Returns whether this call stored it.
   */
  /** Stores the sketch of the content `key` (registryKey) names, once; its models are then sketched. */
  async putSketch(key: string, sketch: ModelSketch, worker: string): Promise<boolean> {
    const bytes = encodeSketch(sketch);
    return this.db.transaction(async (tx) => {
      const inserted = await tx.query(
        `INSERT INTO lineage.sketches (fingerprint, variant, bytes, byte_size, created_by) VALUES ($1, $2, decode($3, 'base64'), $4, $5)
         ON CONFLICT (fingerprint, variant) DO NOTHING RETURNING 1`,
        [key, this.variant, bytes.toString('base64'), bytes.length, worker]);
      await this.markSketched(key, tx);
      return inserted.length > 0;
    });
  }

  async markSketched(fingerprint: string, tx: Queryable = this.db): Promise<void> {
    await tx.query(`UPDATE lineage.models SET state = 'sketched', error = NULL, updated_at = now() WHERE fingerprint = $1`, [fingerprint]);
  }

  /** An attempt failed: `final` when no retry is left (the model is failed), else queued again with the last reason. */
  async markAttemptFailed(fingerprint: string, reason: string, final: boolean): Promise<void> {
    await this.db.query(
      `UPDATE lineage.models SET state = $2, error = $3, updated_at = now() WHERE fingerprint = $1 AND state <> 'sketched'`,
      [fingerprint, final ? 'failed' : 'queued', reason]);
  }

  /** The models' records by path, all or those in one state. */
  async models(state?: ModelState): Promise<ModelRecord[]> {
    const rows = await this.db.query<ModelRow>(
      `SELECT path, fingerprint, state, attempts, error, job_id FROM lineage.models WHERE $1::text IS NULL OR state = $1 ORDER BY path`, [state ?? null]);
    return rows.map(toRecord);
  }

  async stateCounts(): Promise<Record<ModelState, number>> {
    const rows = await this.db.query<{ state: ModelState; n: number }>(`SELECT state, count(*)::int AS n FROM lineage.models GROUP BY state`);
    return Object.fromEntries(MODEL_STATES.map((s) => [s, rows.find((r) => r.state === s)?.n ?? 0])) as Record<ModelState, number>;
  }

  /** Every sketched model with its sketch, decoded; models sharing content share one stored sketch. */
  async sketchedModels(): Promise<Array<{ path: string; sketch: ModelSketch }>> {
    const rows = await this.db.query<{ path: string; fingerprint: string; bytes: string }>(
      `SELECT m.path, m.fingerprint, encode(s.bytes, 'base64') AS bytes FROM lineage.models m
       JOIN lineage.sketches s ON s.fingerprint = m.fingerprint AND s.variant = $1
       WHERE m.state = 'sketched' ORDER BY m.path`, [this.variant]);
    const decoded = new Map<string, ModelSketch>();
    return rows.map((r) => {
      let sketch = decoded.get(r.fingerprint);
      if (!sketch) {
        sketch = decodeSketch(Buffer.from(r.bytes, 'base64'));
        decoded.set(r.fingerprint, sketch);
      }
      return { path: r.path, sketch };
    });
  }

  async sketchCount(): Promise<number> {
    const [row] = await this.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM lineage.sketches WHERE variant = $1`, [this.variant]);
    return row?.n ?? 0;
  }

  async saveTree(result: LineageResult, modelCount: number): Promise<void> {
    await this.db.query(`INSERT INTO lineage.trees (method, model_count, result) VALUES ($1, $2, $3)`,
      [result.method, modelCount, JSON.stringify(result)]);
  }
}
