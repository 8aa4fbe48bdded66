// One PostgreSQL server of a local cluster, owned by pid. The postmaster is spawned directly
// (`postgres -D dir`, not pg_ctl) as the server OS user, detached so it leads its own process
// group: SIGKILL/SIGSTOP/SIGCONT go to the whole group (a crash or a hang of the machine), the
// shutdown signals go to the postmaster (SIGINT = fast, SIGQUIT = immediate), as Postgres expects.
// stderr is appended to `logFile`; startup failures quote the log written since the spawn.
// Readiness means "a superuser can run SELECT 1 over TCP", checked with `pg` until a deadline.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';

import type { PgBinaries } from './pg-binaries.ts';
import { runAsOptions, type OsIdentity } from './os-user.ts';
import type { ProcessReaper } from './reaper.ts';

const execFileAsync = promisify(execFile);

export type PgServerRole = 'primary' | 'replica';
export type StopMode = 'fast' | 'immediate';

export interface Login {
  user: string;
  password: string;
}

export interface ConnectionStringOptions {
  database?: string;
  sslmode?: 'disable' | 'prefer' | 'require' | 'verify-ca' | 'verify-full' | 'no-verify';
  sslrootcert?: string;
  sslcert?: string;
  sslkey?: string;
  applicationName?: string;
}

/** Plain-data view of a server (what the test topology passes between processes). */
export interface PgServerInfo {
  name: string;
  host: string;
  port: number;
  role: PgServerRole;
  dataDir: string;
  logFile: string;
  pid: number | undefined;
}

export interface PgServerOptions {
  name: string;
  role: PgServerRole;
  port: number;
  dataDir: string;
  logFile: string;
  binaries: PgBinaries;
  superuser: Login;
  reaper: ProcessReaper;
  identity?: OsIdentity;
  log?: (line: string) => void;
}

/** Environment for server processes: nothing from ours that libpq/postgres would read. */
export function serverEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C', TZ: 'UTC', ...extra };
}

const STARTUP_RETRYABLE = /pre-existing shared memory block|lock file ".*" already exists|could not bind/;

export class PgServer {
  readonly name: string;
  readonly host = '127.0.0.1';
  readonly port: number;
  readonly dataDir: string;
  readonly logFile: string;
  role: PgServerRole;

  readonly #options: PgServerOptions;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #lastExit: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  constructor(options: PgServerOptions) {
    this.#options = options;
    this.name = options.name;
    this.role = options.role;
    this.port = options.port;
    this.dataDir = options.dataDir;
    this.logFile = options.logFile;
  }

  /** Postmaster pid while running, otherwise undefined. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  isRunning(): boolean {
    return this.#child !== undefined;
  }

  /** Spawns the postmaster and waits until it accepts a superuser login. */
  async start(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.#child) return;
    const deadline = Date.now() + (options.timeoutMs ?? 60_000);
    for (let attempt = 1; ; attempt++) {
      const logOffset = this.#logSize();
      this.#spawn();
      try {
        await this.#waitReady(deadline, logOffset);
        this.#options.log?.(`${this.name}: ready on ${this.host}:${this.port} (pid ${this.pid})`);
        return;
      } catch (error) {
        const written = this.#readLog(logOffset);
        const retry = !this.#child && attempt < 10 && Date.now() < deadline && STARTUP_RETRYABLE.test(written);
        if (!retry) {
          await this.stop({ mode: 'immediate', timeoutMs: 5000 });
          throw error;
        }
        await sleep(300);
      }
    }
  }

  /** Stops the postmaster: SIGINT (fast) or SIGQUIT (immediate), SIGKILL to the group after timeoutMs. */
  async stop(options: { mode?: StopMode; timeoutMs?: number } = {}): Promise<void> {
    const pid = this.pid;
    if (pid === undefined) return;
    const mode = options.mode ?? 'fast';
    this.#signal(pid, mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    this.#signal(-pid, 'SIGCONT'); // a stopped (SIGSTOP) server cannot act on the shutdown signal
    if (!(await this.#waitExit(options.timeoutMs ?? 30_000))) {
      this.#options.log?.(`${this.name}: no exit after ${mode} shutdown, sending SIGKILL`);
      this.#signal(-pid, 'SIGKILL');
      await this.#waitExit(10_000);
    }
  }

  /**
   * Sends a signal. SIGKILL, SIGSTOP and SIGCONT go to the whole process group (postmaster and
   * backends: a crash or a frozen host); any other signal goes to the postmaster only.
   */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    const pid = this.pid;
    if (pid === undefined) throw new Error(`${this.name} is not running`);
    const group = signal === 'SIGKILL' || signal === 'SIGSTOP' || signal === 'SIGCONT';
    this.#signal(group ? -pid : pid, signal);
  }

  /** Resolves when the postmaster has exited (immediately when it is not running). */
  async exited(): Promise<void> {
    // The child is unref'd (a forgotten cluster must not keep a process alive), so hold the event
    // loop open ourselves while someone waits for the exit.
    const keepAlive = setInterval(() => {}, 1000);
    try {
      await this.#exited;
    } finally {
      clearInterval(keepAlive);
    }
  }

  /** Promotes a replica (pg_ctl promote, or pg_promote() without pg_ctl) and waits until it is out of recovery. */
  async promote(options: { timeoutMs?: number } = {}): Promise<void> {
    const deadline = Date.now() + (options.timeoutMs ?? 60_000);
    const { binaries, identity } = this.#options;
    if (binaries.has('pg_ctl')) {
      await execFileAsync(binaries.path('pg_ctl'), ['promote', '-D', this.dataDir, '-W'], {
        ...runAsOptions(identity),
        env: serverEnv(),
        timeout: 30_000,
      });
    } else {
      await this.query('SELECT pg_promote(false)');
    }
    for (;;) {
      const rows = await this.query<{ recovery: boolean }>('SELECT pg_is_in_recovery() AS recovery').catch(() => undefined);
      if (rows?.[0]?.recovery === false) break;
      if (Date.now() > deadline) throw new Error(`${this.name}: still in recovery after promote\n${this.logTail()}`);
      await sleep(100);
    }
    this.role = 'primary';
    this.#options.log?.(`${this.name}: promoted`);
  }

  /** Runs one statement on a short-lived superuser connection; returns the rows. */
  async query<Row extends Record<string, unknown> = Record<string, unknown>>(
    sql: string,
    params: unknown[] = [],
    options: { database?: string; connectTimeoutMs?: number } = {},
  ): Promise<Row[]> {
    const client = new pg.Client({
      host: this.host,
      port: this.port,
      user: this.#options.superuser.user,
      password: this.#options.superuser.password,
      database: options.database ?? 'postgres',
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
      application_name: 'pg-ambassador-cluster',
    });
    client.on('error', () => {}); // a server dying under us surfaces through the awaited call
    try {
      await client.connect();
      const result = await client.query(sql, params);
      return result.rows as Row[];
    } finally {
      await client.end().catch(() => {});
    }
  }

  /** postgresql:// URL for this server; percent-encodes user, password and parameters. */
  connectionString(user: string, password: string, options: ConnectionStringOptions = {}): string {
    const auth = password ? `${encodeURIComponent(user)}:${encodeURIComponent(password)}` : encodeURIComponent(user);
    const params = new URLSearchParams();
    if (options.sslmode) params.set('sslmode', options.sslmode);
    if (options.sslrootcert) params.set('sslrootcert', options.sslrootcert);
    if (options.sslcert) params.set('sslcert', options.sslcert);
    if (options.sslkey) params.set('sslkey', options.sslkey);
    if (options.applicationName) params.set('application_name', options.applicationName);
    const query = params.toString() ? `?${params.toString()}` : '';
    return `postgresql://${auth}@${this.host}:${this.port}/${encodeURIComponent(options.database ?? 'postgres')}${query}`;
  }

  /** Last `lines` lines of the server log, for error messages. */
  logTail(lines = 40): string {
    const text = this.#readLog(0);
    return `--- ${this.logFile} (last ${lines} lines) ---\n${text.split('\n').slice(-lines - 1).join('\n')}`;
  }

  describe(): PgServerInfo {
    const { name, host, port, role, dataDir, logFile, pid } = this;
    return { name, host, port, role, dataDir, logFile, pid };
  }

  #spawn(): void {
    const { binaries, identity, reaper } = this.#options;
    const logFd = openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(binaries.path('postgres'), ['-D', this.dataDir], {
        ...runAsOptions(identity),
        cwd: this.dataDir,
        detached: true,
        stdio: ['ignore', logFd, logFd],
        env: serverEnv(),
      });
    } finally {
      closeSync(logFd);
    }
    child.on('error', () => {}); // spawn failures show up as a missing pid, reported below
    const pid = child.pid;
    if (pid === undefined) {
      throw new Error(
        `${this.name}: could not spawn ${binaries.path('postgres')} as ${identity?.user ?? 'the current user'}; ` +
          'check that it is executable and that every directory above it and the data directory is searchable by that user',
      );
    }
    child.unref();
    reaper.track(pid);
    this.#child = child;
    this.#lastExit = undefined;
    this.#exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.#lastExit = { code, signal };
        if (this.#child === child) this.#child = undefined;
        reaper.released(pid);
        resolve();
      });
    });
  }

  async #waitReady(deadline: number, logOffset: number): Promise<void> {
    let lastError: unknown;
    for (;;) {
      if (!this.#child) {
        const exit = this.#lastExit;
        throw new Error(
          `${this.name}: postgres exited during startup (code ${exit?.code}, signal ${exit?.signal})\n` +
            `--- ${this.logFile} ---\n${this.#readLog(logOffset).split('\n').slice(-40).join('\n')}`,
        );
      }
      try {
        await this.query('SELECT 1', [], { connectTimeoutMs: 2000 });
        return;
      } catch (error) {
        lastError = error;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `${this.name}: not accepting connections on ${this.host}:${this.port} before the deadline ` +
            `(last error: ${(lastError as Error)?.message})\n${this.logTail()}`,
        );
      }
      await sleep(100);
    }
  }

  async #waitExit(timeoutMs: number): Promise<boolean> {
    if (!this.#child) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    try {
      return await Promise.race([this.#exited.then(() => true), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  #signal(pid: number, signal: NodeJS.Signals): void {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }

  #logSize(): number {
    try {
      return statSync(this.logFile).size;
    } catch {
      return 0;
    }
  }

  #readLog(fromOffset: number): string {
    try {
      return readFileSync(this.logFile).subarray(fromOffset).toString('utf8');
    } catch {
      return '';
    }
  }
}
