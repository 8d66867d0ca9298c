/**
 * A throwaway PostgreSQL cluster for tests: `initdb` in a temporary folder, `pg_ctl start` on
 * 127.0.0.1 and a free port (its socket in the same folder), stopped and removed afterwards.
 * As root (CI), the server runs as the `postgres` user, since PostgreSQL refuses to run as root.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export interface TestCluster {
  /** postgres://USER:PASSWORD@127.0.0.1:PORT/postgres */
  readonly url: string;
  readonly user: string;
  readonly password: string;
  readonly port: number;
  stop(): void;
}

/** The folder holding initdb and pg_ctl, or null. */
function postgresBin(): string | null {
  for (const dir of (process.env['PATH'] ?? '').split(path.delimiter)) {
    if (dir && fs.existsSync(path.join(dir, 'initdb')) && fs.existsSync(path.join(dir, 'pg_ctl'))) return dir;
  }
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root) ? fs.readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) {
    const dir = path.join(root, v, 'bin');
    if (fs.existsSync(path.join(dir, 'initdb')) && fs.existsSync(path.join(dir, 'pg_ctl'))) return dir;
  }
  return null;
}

function postgresUid(): { uid: number; gid: number } | null {
  try {
    const line = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
    if (!line) return null;
    const [, , uid, gid] = line.split(':');
    return { uid: Number(uid), gid: Number(gid) };
  } catch {
    return null;
  }
}

/** Why a cluster cannot be started here, or null when it can. */
export function clusterUnavailable(): string | null {
  if (!postgresBin()) return 'PostgreSQL (initdb, pg_ctl) is not installed';
  if (process.getuid?.() === 0 && !postgresUid()) return 'running as root without a postgres user to run the server as';
  return null;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

export async function startCluster(): Promise<TestCluster> {
  const bin = postgresBin()!;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lineage-pg-'));
  const data = path.join(dir, 'data');
  const user = 'lineage', password = 'registry-test-secret';
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? postgresUid()! : null;
  if (owner) fs.chownSync(dir, owner.uid, owner.gid);
  const run = (tool: string, args: string[]) => {
    const command = asRoot ? 'runuser' : path.join(bin, tool);
    const full = asRoot ? ['-u', 'postgres', '--', path.join(bin, tool), ...args] : args;
    execFileSync(command, full, { stdio: 'pipe', cwd: dir });
  };
  const pwfile = path.join(dir, 'pw');
  fs.writeFileSync(pwfile, password + '\n');
  if (owner) fs.chownSync(pwfile, owner.uid, owner.gid);
  run('initdb', ['-D', data, '-U', user, `--pwfile=${pwfile}`, '--auth-host=scram-sha-256', '--auth-local=trust', '-E', 'UTF8', '--no-sync']);
  const port = await freePort();
  const options = `-c listen_addresses=127.0.0.1 -p ${port} -c unix_socket_directories=${dir} -c fsync=off`;
  run('pg_ctl', ['start', '-w', '-t', '60', '-D', data, '-l', path.join(dir, 'log'), '-o', options]);
  return {
    url: `postgres://${user}:${password}@127.0.0.1:${port}/postgres`, user, password, port,
    stop() {
      try {
        run('pg_ctl', ['stop', '-m', 'immediate', '-w', '-D', data]);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
