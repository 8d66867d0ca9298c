/**
 * The registry's database: a PostgreSQL server (`postgres://` or `postgresql://` URL, through
 * `pg`) or, for any other location, an embedded PostgreSQL in that folder (PGlite: PostgreSQL
 * compiled to WebAssembly, no server). Both answer the same SQL, so the store and the job queue
 * (pg-boss) run unchanged on either.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import pg from 'pg';
import { PGlite } from '@electric-sql/pglite';
import { LineageError, EXIT } from '../io/errors.js';

/** The registry cannot be reached or used: exit code 5. */
export class RegistryError extends LineageError {
  constructor(message: string) {
    super(message, { exitCode: EXIT.registry });
    this.name = 'RegistryError';
  }
}

export interface Queryable {
  /** One statement with $1.. parameters (never values spliced into the text). */
  query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<Row[]>;
}

export interface Database extends Queryable {
  /** Where it is, for messages: the URL without its password, or the folder. */
  readonly description: string;
  readonly embedded: boolean;
  /** Runs `work` in one transaction on one connection (rolled back when it throws). */
  transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T>;
  /** pg-boss's adapter: a statement with parameters, or a script of several without. */
  executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
  close(): Promise<void>;
}

export function isServerUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}

/** The URL with any password replaced by `***` (credentials are never printed). */
export function redactUrl(url: string): string {
  return url.replace(/^(postgres(?:ql)?:\/\/[^:@/]*):[^@/]*@/i, '$1:***@').replace(/([?&]password=)[^&]*/gi, '$1***');
}

export async function openDatabase(location: string): Promise<Database> {
  return isServerUrl(location) ? openServer(location) : openEmbedded(location);
}

async function openServer(url: string): Promise<Database> {
  const description = redactUrl(url);
  // Missing URL parts (user, password, host, database) come from the PG* variables, as in psql.
  const pool = new pg.Pool({ connectionString: url, max: 4, application_name: 'lineage' });
  // An idle connection dropped by the server must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  const fail = (err: unknown): never => {
    throw new RegistryError(`cannot use the registry at ${description}: ${redactUrl((err as Error).message)}`);
  };
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    await pool.end().catch(() => undefined);
    fail(err);
  }
  return {
    description,
    embedded: false,
    async query<Row>(text: string, params: readonly unknown[] = []) {
      return (await pool.query(text, params as unknown[]).catch(fail)).rows as Row[];
    },
    async transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> {
      const client = await pool.connect().catch(fail);
      try {
        await client.query('BEGIN');
        const result = await work({ query: async <Row>(text: string, params: readonly unknown[] = []) => (await client.query(text, params as unknown[])).rows as Row[] });
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
    },
    executeSql: (text, values) => pool.query(text, values),
    close: () => pool.end(),
  };
}

const LOCK_FILE = 'registry.lock';
const DATA_DIR = 'pgdata';

/**
 * The embedded registry in `folder` (created when absent). PGlite is one process's database, so a
 * lock file holds the pid of the process that has it open; a lock left by a dead process (killed
 * worker) is taken over.
 */
async function openEmbedded(folder: string): Promise<Database> {
  const dir = path.resolve(folder);
  const description = `embedded registry ${dir}`;
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new RegistryError(`cannot create the ${description}: ${(err as Error).message}`);
  }
  const lock = path.join(dir, LOCK_FILE);
  takeLock(lock, description);
  let db: PGlite;
  try {
    db = await PGlite.create(path.join(dir, DATA_DIR));
  } catch (err) {
    fs.rmSync(lock, { force: true });
    throw new RegistryError(`cannot open the ${description}: ${(err as Error).message}`);
  }
  // PGlite runs one statement at a time: transactions queue behind each other.
  return {
    description,
    embedded: true,
    async query<Row>(text: string, params: readonly unknown[] = []) {
      return (await db.query<Row>(text, params as unknown[])).rows;
    },
    transaction: (work) => db.transaction((tx) => work({ query: async <Row>(text: string, params: readonly unknown[] = []) => (await tx.query<Row>(text, params as unknown[])).rows })),
    async executeSql(text, values) {
      if (values && values.length > 0) return db.query(text, values);
      // Without parameters pg-boss may send a script of several statements: the last one's rows.
      const results = await db.exec(text);
      return results[results.length - 1] ?? { rows: [] };
    },
    async close() {
      try {
        await db.close();
      } finally {
        fs.rmSync(lock, { force: true });
      }
    },
  };
}

function takeLock(lock: string, description: string): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new RegistryError(`cannot lock the ${description}: ${(err as Error).message}`);
    }
    const holder = Number(fs.readFileSync(lock, 'utf8'));
    if (Number.isInteger(holder) && holder > 0 && processAlive(holder)) {
      throw new RegistryError(`the ${description} is open in process ${holder}: an embedded registry serves one process at a time (use a PostgreSQL URL for several workers at once)`);
    }
    fs.rmSync(lock, { force: true }); // left by a process that died
  }
  throw new RegistryError(`cannot lock the ${description}: another process keeps taking it`);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
