// PgBouncer as a bench target: the speed reference (Debian's package, 1.18 on bookworm; see
// DESIGN.md "Facts measured"). ensurePgbouncer() finds the binary, or installs Debian's package
// once per bench (`apt-get update`, then `apt-get install -y pgbouncer`, output on our stderr);
// when that is impossible it throws and the bench reports the target as unavailable.
//
// Each target runs one pgbouncer in the foreground (no -d, so the child's pid is the process doing
// the work and is charged its CPU) with a generated ini in a private temp dir: 127.0.0.1 on a free
// port, no unix socket, scram-sha-256 clients checked against a plaintext auth_file (a random
// password, as for the ambassador), and one [databases] entry that logs in to the primary as the
// cluster's `app` user with its password, without TLS. PgBouncer refuses to run as root, so as
// root it runs as the `postgres` OS user (spawn uid/gid) and its directory is chowned to it.
// (A SCRAM verifier in auth_file would spare pgbouncer a PBKDF2 per client login, but then it logs
// in to the server with the client's SCRAM keys, which fail: client and server passwords differ.
// So a login costs it more CPU than the ambassador, which derives its verifier once at start; this
// shows in the memory bench's time to connect, not in tps, which excludes connection time.)
// pgbouncerIni() and findExecutable() are pure enough to unit-test.

import { execFile, spawn } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';

import { freePort } from '../src/demo/free-port.ts';
import { chownTree, runAsOptions, serverIdentity } from '../src/demo/os-user.ts';
import { supervise, targetLifecycle } from './child.ts';
import type { RunningTarget, TargetContext } from './targets.ts';

const execFileAsync = promisify(execFile);

export type PgbouncerPoolMode = 'session' | 'transaction';

/** Where Debian puts the binary (/usr/sbin is not on every PATH), after the PATH entries. */
export const PGBOUNCER_EXTRA_DIRS = ['/usr/sbin', '/usr/local/sbin', '/usr/bin', '/usr/local/bin'];

/** First executable `name` in the PATH entries, then the extra directories; null when none. */
export function findExecutable(name: string, pathEnv: string | undefined, extraDirs: readonly string[], isExecutable = canExecute): string | null {
  const dirs = [...(pathEnv ?? '').split(path.delimiter).filter((dir) => dir !== ''), ...extraDirs];
  for (const dir of new Set(dirs)) {
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

function canExecute(file: string): boolean {
  try {
    accessSync(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export interface PgbouncerIniSettings {
  listenPort: number;
  poolMode: PgbouncerPoolMode;
  poolSize: number;
  maxClientConn: number;
  authFile: string;
  logFile: string;
  /** The database name clients ask for (and the one on the server). */
  database: string;
  server: { host: string; port: number; user: string; password: string };
}

/**
 * A value for pgbouncer's [databases] connection string: bare when it has no space or quote, else
 * in single quotes with quotes doubled (pgbouncer's loader knows no backslash escapes).
 */
export function connstringValue(value: string): string {
  return /^[A-Za-z0-9_.\-+/=:@]+$/.test(value) ? value : `'${value.replaceAll("'", "''")}'`;
}

/** The pgbouncer.ini of one bench target. */
export function pgbouncerIni(settings: PgbouncerIniSettings): string {
  const { server } = settings;
  const connstring = [
    `host=${connstringValue(server.host)}`,
    `port=${server.port}`,
    `dbname=${connstringValue(settings.database)}`,
    `user=${connstringValue(server.user)}`,
    `password=${connstringValue(server.password)}`,
  ].join(' ');
  return [
    '[databases]',
    `${settings.database} = ${connstring}`,
    '',
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${settings.listenPort}`,
    'unix_socket_dir =',
    'auth_type = scram-sha-256',
    `auth_file = ${settings.authFile}`,
    `pool_mode = ${settings.poolMode}`,
    `default_pool_size = ${settings.poolSize}`,
    'min_pool_size = 0',
    'reserve_pool_size = 0',
    `max_client_conn = ${settings.maxClientConn}`,
    'server_tls_sslmode = disable',
    'client_tls_sslmode = disable',
    `logfile = ${settings.logFile}`,
    'pidfile =',
    // Nothing logged per connection or per period during a run.
    'log_connections = 0',
    'log_disconnections = 0',
    'log_stats = 0',
    'log_pooler_errors = 1',
    '',
  ].join('\n');
}

/** One auth_file line: "user" "password" (plaintext passwords serve scram-sha-256). */
export function authFileLine(user: string, password: string): string {
  const quote = (value: string): string => `"${value.replaceAll('"', '""')}"`;
  return `${quote(user)} ${quote(password)}\n`;
}

function runLogged(file: string, args: string[], log: (line: string) => void): Promise<void> {
  log(`pgbouncer: running ${file} ${args.join(' ')}`);
  return new Promise((resolve, reject) => {
    // Its output goes to our stderr (fd 2): stdout carries only the results table.
    const child = spawn(file, args, {
      stdio: ['ignore', 2, 2],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      timeout: 10 * 60_000,
      killSignal: 'SIGKILL',
    });
    child.once('error', (error) => reject(new Error(`${file} ${args.join(' ')}: ${error.message}`)));
    child.once('exit', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${file} ${args.join(' ')} failed (exit code ${code}, signal ${signal})`)),
    );
  });
}

async function installPgbouncer(log: (line: string) => void): Promise<string> {
  const found = findExecutable('pgbouncer', process.env.PATH, PGBOUNCER_EXTRA_DIRS);
  if (found) return found;
  const aptGet = findExecutable('apt-get', process.env.PATH, PGBOUNCER_EXTRA_DIRS);
  if (!aptGet) throw new Error('pgbouncer is not installed and there is no apt-get to install it with');
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new Error('pgbouncer is not installed, and installing it with apt-get needs root');
  }
  log("pgbouncer: not found; installing Debian's package");
  await runLogged(aptGet, ['update'], log);
  await runLogged(aptGet, ['install', '-y', 'pgbouncer'], log);
  const installed = findExecutable('pgbouncer', process.env.PATH, PGBOUNCER_EXTRA_DIRS);
  if (!installed) throw new Error('apt-get install -y pgbouncer succeeded but no pgbouncer binary is on PATH or in /usr/sbin');
  return installed;
}

let binary: Promise<string> | undefined;

/** The pgbouncer binary, installed if missing; the install is attempted at most once per process. */
export function ensurePgbouncer(log: (line: string) => void): Promise<string> {
  binary ??= installPgbouncer(log).then(async (file) => {
    log(`pgbouncer: ${file} (${await pgbouncerVersion(file)})`);
    return file;
  });
  return binary;
}

const versions = new Map<string, Promise<string>>();

/** First line of `pgbouncer --version`, e.g. "PgBouncer 1.18.0". */
export function pgbouncerVersion(file: string): Promise<string> {
  let version = versions.get(file);
  if (!version) {
    version = serverIdentity()
      .then((identity) => execFileAsync(file, ['--version'], { ...runAsOptions(identity), timeout: 10_000, cwd: '/' }))
      .then(({ stdout }) => stdout.trim().split('\n')[0] ?? 'unknown', (error: Error) => `unknown (${error.message.split('\n')[0]})`);
    versions.set(file, version);
  }
  return version;
}

/** The end of pgbouncer's logfile ('' when unreadable), for error reports. */
function logTail(file: string, bytes = 4096): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.length > bytes ? `…${text.slice(-bytes)}` : text;
  } catch {
    return '';
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export interface PgbouncerTargetOptions {
  name: string;
  poolMode: PgbouncerPoolMode;
  poolSize: number;
}

/** Starts pgbouncer for one target and waits until it accepts TCP connections (20 s at most). */
export async function spawnPgbouncer(context: TargetContext, options: PgbouncerTargetOptions): Promise<RunningTarget> {
  const { cluster, log } = context;
  const { name } = options;
  const file = await ensurePgbouncer(log);
  const version = await pgbouncerVersion(file);
  const identity = await serverIdentity(log);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pg-ambassador-bench-pgbouncer-'));
  const clientPassword = randomBytes(18).toString('base64url');
  const app = cluster.users.app;
  const port = await freePort();
  const iniFile = path.join(dir, 'pgbouncer.ini');
  const authFile = path.join(dir, 'userlist.txt');
  const logFile = path.join(dir, 'pgbouncer.log');
  const maxClientConn = context.maxClientConnections ?? Math.max(100, context.clients * 2);
  writeFileSync(authFile, authFileLine(app.user, clientPassword), { mode: 0o600 });
  writeFileSync(
    iniFile,
    pgbouncerIni({
      listenPort: port,
      poolMode: options.poolMode,
      poolSize: options.poolSize,
      maxClientConn,
      authFile,
      logFile,
      database: cluster.database,
      server: { host: cluster.primary.host, port: cluster.primary.port, user: app.user, password: app.password },
    }),
    { mode: 0o600 },
  );
  await chownTree(dir, identity);

  const child = spawn(file, [iniFile], { ...runAsOptions(identity), cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  // SIGINT: safe shutdown (exit 0 once no client is left); SIGTERM would be its "fast exit" (status 1).
  const supervised = supervise(child, name, dir, log, 'SIGINT');
  const details = `${version}, pool_mode=${options.poolMode}, default_pool_size=${options.poolSize}, max_client_conn=${maxClientConn}` +
    `${identity ? `, as OS user ${identity.user}` : ''}`;
  const deadline = Date.now() + 20_000;
  while (!(await canConnect(port))) {
    const exit = supervised.exitInfo();
    if (exit !== null || Date.now() > deadline) {
      const why = exit !== null ? `exited before listening (${exit})` : 'not accepting connections within 20 s';
      const logText = logTail(logFile);
      await supervised.stop();
      throw new Error(`${name} did not start: ${why}\n${supervised.output()}${logText ? `\n${logFile}:\n${logText}` : ''}`);
    }
    await sleep(50);
  }
  log(`${name}: pid ${child.pid} listening on 127.0.0.1:${port} (${details})`);
  return {
    name,
    endpoint: { host: '127.0.0.1', port, user: app.user, password: clientPassword, database: cluster.database },
    pid: child.pid!,
    details,
    ...targetLifecycle(supervised, name, () => `\n${logTail(logFile)}`),
  };
}
