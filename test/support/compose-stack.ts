// The docker-compose stack's two database services, rebuilt with the test topology's binaries so
// that config/compose/*.sh run here as they do in the official postgres image:
// - primary: what the image's entrypoint does on first start (initdb with a superuser password,
//   POSTGRES_DB, `host all all all scram-sha-256` appended to pg_hba.conf, the init script run with
//   psql reaching the server over its Unix socket), then a restart, as the image does after init;
// - replica: config/compose/replica-entrypoint.sh (pg_basebackup through the slot, then exec
//   postgres), so the process we spawn becomes the replica's postmaster and is owned by its pid.
// Both are PgServers (pid-owned, SIGINT then SIGKILL, reaped if we die); everything lives in one
// temp directory that stop() removes. stop() is safe after a partial start.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile, chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import { freePort } from '../../src/demo/free-port.ts';
import { chownTree, runAsOptions, serverIdentity, type OsIdentity } from '../../src/demo/os-user.ts';
import type { PgBinaries } from '../../src/demo/pg-binaries.ts';
import { confLine } from '../../src/demo/pg-conf.ts';
import { PgServer, serverEnv, type Login } from '../../src/demo/pg-server.ts';
import { ProcessReaper } from '../../src/demo/reaper.ts';

const execFileAsync = promisify(execFile);

export const COMPOSE_DIR = path.resolve(import.meta.dirname, '../../config/compose');

/** The values docker-compose.yml gives the services (passwords fresh per run). */
export const COMPOSE_ENV = {
  POSTGRES_USER: 'postgres',
  POSTGRES_PASSWORD: randomBytes(12).toString('base64url'),
  POSTGRES_DB: 'app',
  APP_PASSWORD: randomBytes(12).toString('base64url'),
  REPLICATION_PASSWORD: randomBytes(12).toString('base64url'),
  REPLICATION_SLOT: 'replica1',
} as const;

export interface ScriptRun {
  code: number | string;
  stdout: string;
  stderr: string;
}

/** `bash config/compose/<name>` with exactly `env`, as `identity` (default: this process). Never throws. */
export async function runComposeScript(name: string, env: NodeJS.ProcessEnv, identity?: OsIdentity): Promise<ScriptRun> {
  const options = { ...runAsOptions(identity), env, cwd: '/', timeout: 120_000, maxBuffer: 32 << 20 };
  return execFileAsync('bash', [path.join(COMPOSE_DIR, name)], options).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code?: number | string; stdout?: string; stderr?: string }) => ({ code: error.code ?? 'spawn failed', stdout: error.stdout ?? '', stderr: error.stderr ?? '' }),
  );
}

const quote = (value: string): string => `'${value.replaceAll("'", `'\\''`)}'`;

export class ComposeDatabases {
  primary: PgServer | undefined;
  replica: PgServer | undefined;
  readonly superuser: Login = { user: COMPOSE_ENV.POSTGRES_USER, password: COMPOSE_ENV.POSTGRES_PASSWORD };
  #baseDir = '';
  #identity: OsIdentity | undefined;
  #reaper: ProcessReaper | undefined;

  constructor(readonly binaries: PgBinaries) {}

  /** Short, so the socket path fits in sun_path. */
  get socketDir(): string {
    return path.join(this.#baseDir, 's');
  }

  /** PATH with the binaries first, as in the image. */
  get path(): string {
    return `${this.binaries.bindir}:${process.env.PATH ?? '/usr/bin:/bin'}`;
  }

  async startPrimary(): Promise<PgServer> {
    await this.#prepareBaseDir();
    const dataDir = path.join(this.#baseDir, 'primary');
    await this.#initdb(dataDir);
    // Only what the compose network gives differently: the port, the socket directory, loopback.
    const port = await freePort();
    const conf = [confLine('port', port), confLine('unix_socket_directories', this.socketDir), confLine('listen_addresses', '127.0.0.1')];
    await appendFile(path.join(dataDir, 'postgresql.conf'), `\n${conf.join('\n')}\n`);
    await chownTree(dataDir, this.#identity);
    const primary = this.#server('primary', port, dataDir, this.binaries);
    this.primary = primary;
    await primary.start();
    await primary.query(`CREATE DATABASE ${COMPOSE_ENV.POSTGRES_DB}`);
    // The image's temporary server listens on its socket only; this one on loopback too, but the
    // script gets no PGPASSWORD and TCP needs one, so it can only get in over the socket.
    const init = await runComposeScript('primary-init.sh', serverEnv({
      PATH: this.path, PGHOST: this.socketDir, PGPORT: String(port), PGDATA: dataDir,
      POSTGRES_USER: COMPOSE_ENV.POSTGRES_USER, POSTGRES_DB: COMPOSE_ENV.POSTGRES_DB, APP_PASSWORD: COMPOSE_ENV.APP_PASSWORD,
      REPLICATION_PASSWORD: COMPOSE_ENV.REPLICATION_PASSWORD, REPLICATION_SLOT: COMPOSE_ENV.REPLICATION_SLOT,
    }), this.#identity);
    if (init.code !== 0) throw new Error(`primary-init.sh exited with ${init.code}\n${init.stdout}${init.stderr}`);
    await primary.stop({ mode: 'fast' });
    await primary.start();
    return primary;
  }

  /**
   * Runs replica-entrypoint.sh through PgServer: its "postgres" is a two-line sh wrapper that
   * execs `bash replica-entrypoint.sh` with compose's environment (and without PGPASSWORD), so
   * the pid PgServer spawns is the one the script finally execs postgres in.
   */
  async startReplica(): Promise<PgServer> {
    if (!this.primary) throw new Error('start the primary first');
    const port = await freePort();
    const dataDir = path.join(this.#baseDir, 'replica');
    await mkdir(dataDir, { mode: 0o700 });
    const env = {
      PATH: this.path, LANG: 'C', PGDATA: dataDir, PRIMARY_HOST: '127.0.0.1', PRIMARY_PORT: String(this.primary.port),
      REPLICATION_PASSWORD: COMPOSE_ENV.REPLICATION_PASSWORD, REPLICATION_SLOT: COMPOSE_ENV.REPLICATION_SLOT,
    };
    const args = ['-p', String(port), '-k', this.socketDir, '-c', 'listen_addresses=127.0.0.1'];
    const wrapper = path.join(this.#baseDir, 'replica-entrypoint');
    const command = ['exec', 'env', '-i', ...Object.entries(env).map(([key, value]) => `${key}=${quote(value)}`),
      'bash', quote(path.join(COMPOSE_DIR, 'replica-entrypoint.sh')), ...args.map(quote)];
    await writeFile(wrapper, `#!/bin/sh\n${command.join(' ')}\n`, { mode: 0o700 });
    await chownTree(dataDir, this.#identity);
    await chownTree(wrapper, this.#identity);
    const binaries: PgBinaries = { ...this.binaries, path: (tool) => (tool === 'postgres' ? wrapper : this.binaries.path(tool)) };
    this.replica = this.#server('replica', port, dataDir, binaries);
    await this.replica.start();
    return this.replica;
  }

  /** Stops whatever runs (replica first, by pid: SIGINT, SIGKILL after 15 s) and removes the directory. */
  async stop(): Promise<void> {
    for (const server of [this.replica, this.primary]) await server?.stop({ mode: 'fast', timeoutMs: 15_000 });
    this.#reaper?.dispose();
    if (this.#baseDir) await rm(this.#baseDir, { recursive: true, force: true, maxRetries: 5 });
  }

  async #prepareBaseDir(): Promise<void> {
    this.#identity = await serverIdentity();
    this.#baseDir = await mkdtemp(path.join(os.tmpdir(), 'pg-amb-compose-'));
    this.#reaper = new ProcessReaper(this.#baseDir);
    this.#reaper.startWatchdog();
    await mkdir(this.socketDir, { mode: 0o700 });
    await chmod(this.#baseDir, 0o700);
    await chownTree(this.#baseDir, this.#identity);
  }

  /**
   * The image's initdb: --username and --pwfile, no --auth (so trust), then its appended host line.
   * initdb's loopback `host ... trust` lines are dropped: compose's clients come from the network,
   * where only the appended line matches, and ours come from 127.0.0.1 in their place.
   */
  async #initdb(dataDir: string): Promise<void> {
    const pwfile = path.join(this.#baseDir, 'pwfile');
    await writeFile(pwfile, `${COMPOSE_ENV.POSTGRES_PASSWORD}\n`, { mode: 0o600 });
    await chownTree(pwfile, this.#identity);
    const args = ['-D', dataDir, `--username=${COMPOSE_ENV.POSTGRES_USER}`, `--pwfile=${pwfile}`, '--no-sync'];
    await execFileAsync(this.binaries.path('initdb'), args, { ...runAsOptions(this.#identity), env: serverEnv(), cwd: '/' });
    await rm(pwfile);
    const hbaFile = path.join(dataDir, 'pg_hba.conf');
    const localLines = (await readFile(hbaFile, 'utf8')).split('\n').filter((line) => line.startsWith('local'));
    await writeFile(hbaFile, `${localLines.join('\n')}\n\nhost all all all scram-sha-256\n`);
  }

  #server(name: 'primary' | 'replica', port: number, dataDir: string, binaries: PgBinaries): PgServer {
    const logFile = path.join(this.#baseDir, `${name}.log`);
    const owner = { reaper: this.#reaper!, identity: this.#identity, superuser: this.superuser };
    return new PgServer({ name, role: name, port, dataDir, logFile, binaries, ...owner });
  }
}
