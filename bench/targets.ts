// What pgbench can be pointed at: the target table. Each entry prepares once (e.g. builds, or
// installs pgbouncer), then starts in front of the bench cluster and hands back an Endpoint plus,
// when it runs a process of its own, that pid (its CPU and RSS are charged to the runs). Adding a
// target is adding an entry; COMPARISONS says which pairs of targets the report divides per round.
//
// Targets and query modes: by default each target runs in its `defaultModes` (pgbouncer, in
// transaction mode, cannot run -M prepared in 1.18, so pgbouncer-session stands in for it there);
// a target named in --targets runs in every selected mode it supports.
//
// Targets and workloads: a target runs the workloads of its `workloadKinds`. ambassador-split
// (read/write splitting over the primary and both replicas) runs only the split workloads; direct
// and the two pgbouncers run both kinds (in split groups they are its partners, on the primary:
// PgBouncer cannot split); the other ambassadors run only the plain ones.
//
// Pool sizes: the transaction-pooling targets (ambassador-txn, pgbouncer) get --pool-size server
// connections (default 20, fewer than the 32 clients: that is the point of transaction pooling).
// Session pooling holds a server connection per client for the whole run, so the session targets
// get max(--pool-size, clients) or the clients beyond the pool would wait for the entire run.
// Every target stays up for the whole bench and its pool keeps its idle server connections, so the
// primary needs max_connections for all of them at once: serverConnections() says how many each
// may hold (cluster.ts sizes max_connections from their sum).
//
// The ambassador runs from the production build (`node bin/pg-ambassador.js`, i.e. dist/) as a
// child process with a generated config in a private temp dir: loopback, OS-chosen port (read
// from its "listening" log line), scram-sha-256 clients, plaintext upstream (pgbench direct runs
// without TLS too), and an environment stripped to PATH so no UPSTREAM_* or POOL_* variable of
// ours leaks into its config. PgBouncer: see pgbouncer.ts.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';

import type { LocalCluster } from '../src/demo/cluster.ts';
import { awaitOutput, supervise, targetLifecycle } from './child.ts';
import { QUERY_MODES, type Endpoint, type QueryMode, type WorkloadKind } from './pgbench.ts';
import { spawnNodePipe } from './node-pipe.ts';
import { spawnNodePool } from './node-pool.ts';
import { prepareOtherBuild, type OtherBuild } from './other-build.ts';
import { ensurePgbouncer, spawnPgbouncer } from './pgbouncer.ts';

export const ROOT = path.resolve(import.meta.dirname, '..');

export interface TargetContext {
  cluster: LocalCluster;
  /** Most connections pgbench will open at once (a pooler must allow at least this many). */
  clients: number;
  /** Client connections the proxy admits; default max(1000, 2 x clients) for the ambassador, max(100, 2 x clients) for pgbouncer. */
  maxClientConnections?: number;
  /** Server connections of the transaction-pooling targets (--pool-size). */
  poolSize: number;
  /** More options for the node of the targets started on Node, after the image's (--node-options). */
  nodeOptions?: readonly string[];
  log: (line: string) => void;
}

export interface RunningTarget {
  name: string;
  endpoint: Endpoint;
  /** The process whose CPU and RSS are measured, if the target has one. */
  pid: number | null;
  /** What exactly runs (version, pool mode and size), for the report's notes. */
  details?: string;
  /** Why the target is gone (its process exited, with its last output), or null while it runs. */
  deathReason(): string | null;
  /** Stops the process (graceful, then SIGKILL) and removes its files. Idempotent. */
  stop(): Promise<void>;
  /** Last-resort synchronous kill, for process exit. */
  killNow(): void;
}

export interface TargetSpec {
  name: string;
  description: string;
  /** Query modes it runs in when --targets is not given. */
  defaultModes: readonly QueryMode[];
  /** Query modes it can run in at all (when named in --targets). */
  supportedModes: readonly QueryMode[];
  /** The kinds of workload it takes part in. */
  workloadKinds: readonly WorkloadKind[];
  /** Only these workloads (by name) of those kinds, when not all of them. */
  onlyWorkloads?: readonly string[];
  /** Most connections it holds to the primary (active or idle in its pool). */
  serverConnections(context: Pick<TargetContext, 'clients' | 'poolSize'>): number;
  prepare?(log: (line: string) => void): Promise<void>;
  start(context: TargetContext): Promise<RunningTarget>;
}

/** Session pooling needs a server connection per client for the whole run. */
export function sessionPoolSize(context: Pick<TargetContext, 'clients' | 'poolSize'>): number {
  return Math.max(context.poolSize, context.clients);
}

const direct: TargetSpec = {
  name: 'direct',
  description: 'pgbench straight to the primary (no TLS)',
  defaultModes: QUERY_MODES,
  supportedModes: QUERY_MODES,
  workloadKinds: ['plain', 'split'],
  serverConnections: (context) => context.clients,
  async start({ cluster }) {
    const { user, password } = cluster.users.app;
    return {
      name: 'direct',
      endpoint: { host: cluster.primary.host, port: cluster.primary.port, user, password, database: cluster.database },
      pid: null,
      details: 'no proxy',
      deathReason: () => null,
      stop: async () => {},
      killNow: () => {},
    };
  },
};

/** tsc -p tsconfig.build.json of this checkout (dist/ is what bin/pg-ambassador.js runs); once per bench. */
let built: Promise<void> | undefined;
export function buildAmbassador(log: (line: string) => void): Promise<void> {
  built ??= compileAmbassador(ROOT, log);
  return built;
}

/** tsc -p tsconfig.build.json in `root` (this checkout, or another build's directory), with this checkout's tsc. */
function compileAmbassador(root: string, log: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    log(`build: tsc -p ${root === ROOT ? 'tsconfig.build.json' : path.join(root, 'tsconfig.build.json')}`);
    const tsc = spawn(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.build.json')], {
      cwd: root,
      stdio: 'inherit',
    });
    tsc.once('error', reject);
    tsc.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`build failed: tsc exited with ${code}`))));
  });
}

export type AmbassadorPoolMode = 'session' | 'transaction';

export interface AmbassadorSetup {
  pool: { mode: AmbassadorPoolMode; size: number; cacheUnnamedStatements?: boolean };
  /** Read/write splitting over the primary and every replica of the cluster. */
  split?: boolean;
}

export function ambassadorConfig(context: Omit<TargetContext, 'log'>, clientPassword: string, setup: AmbassadorSetup): Record<string, unknown> {
  const { cluster } = context;
  const replicas = setup.split ? cluster.replicas.map((replica) => ({ host: replica.host, port: replica.port, role: 'replica' })) : [];
  return {
    listen: { host: '127.0.0.1', port: 0, maxClientConnections: context.maxClientConnections ?? Math.max(1000, context.clients * 2) },
    clientAuth: { method: 'scram-sha-256', users: [{ name: cluster.users.app.user, password: clientPassword }] },
    upstream: {
      hosts: [{ host: cluster.primary.host, port: cluster.primary.port, role: 'primary' }, ...replicas],
      credentials: { type: 'password', password: cluster.users.app.password },
      tls: { mode: 'disable' },
    },
    pool: setup.pool,
    ...(setup.split ? { routing: { readWriteSplit: true } } : {}),
    shutdown: { timeout: '2s' },
    admin: { port: 0 },
    // info: the "listening" line carries the port; nothing is logged per message or per session at info.
    logging: { level: 'info' },
  };
}

/** A running ambassador: a RunningTarget plus its admin HTTP port and its recent output (used by soak/). */
export interface AmbassadorTarget extends RunningTarget {
  adminPort: number;
  /** The last 64 KiB of its stdout and stderr. */
  output(): string;
}

/** Starts the ambassador of this checkout, or of `build` (--against). */
export async function spawnAmbassador(context: TargetContext, name: string, setup: AmbassadorSetup, build: OtherBuild | null = null): Promise<AmbassadorTarget> {
  const root = build?.root ?? ROOT;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pg-ambassador-bench-'));
  const configFile = path.join(dir, 'ambassador.yaml');
  const clientPassword = randomBytes(18).toString('base64url');
  writeFileSync(configFile, YAML.stringify(ambassadorConfig(context, clientPassword, setup)), { mode: 0o600 });

  // With the image's options for node, so that on any Node version the bench measures what ships;
  // a build from --against with those of its own Dockerfile, as its image would run it.
  const { imageNodeOptions, readDockerfile } = await import('../test/support/dockerfile.ts');
  const nodeOptions = [...imageNodeOptions(readDockerfile(path.join(root, 'Dockerfile'))), ...(context.nodeOptions ?? [])];
  const child = spawn(process.execPath, [...nodeOptions, path.join(root, 'bin/pg-ambassador.js'), '--config', configFile], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  });
  const supervised = supervise(child, name, dir, context.log);
  const { pool } = setup;
  const details = `${build ? `built from ${build.commit.slice(0, 12)}, ` : ''}${nodeOptions.length > 0 ? `node ${nodeOptions.join(' ')}, ` : ''}pool.mode=${pool.mode}, pool.size=${pool.size}${pool.cacheUnnamedStatements ? ', pool.cacheUnnamedStatements=true' : ''}${setup.split ? ` per host, readWriteSplit over the primary and ${context.cluster.replicas.length} replicas` : ''}`;

  const ports = await awaitOutput(child, supervised, name, (output) => {
    const port = /"listen":"127\.0\.0\.1:(\d+)"/.exec(output)?.[1];
    const adminPort = /"admin":"[^"]*:(\d+)"/.exec(output)?.[1];
    return port && adminPort ? { port: Number(port), adminPort: Number(adminPort) } : null;
  });
  context.log(`${name}: pid ${child.pid} listening on 127.0.0.1:${ports.port} (${details})`);
  return {
    name,
    endpoint: { host: '127.0.0.1', port: ports.port, user: context.cluster.users.app.user, password: clientPassword, database: context.cluster.database },
    pid: child.pid!,
    adminPort: ports.adminPort,
    output: supervised.output,
    details,
    ...targetLifecycle(supervised, name),
  };
}

const ambassadorSession: TargetSpec = {
  name: 'ambassador',
  description: 'pg-ambassador (production build), session pooling (pool.size = max(--pool-size, clients)), scram-sha-256 clients, upstream without TLS',
  defaultModes: QUERY_MODES,
  supportedModes: QUERY_MODES,
  workloadKinds: ['plain'],
  serverConnections: sessionPoolSize,
  prepare: buildAmbassador,
  start: (context) => spawnAmbassador(context, 'ambassador', { pool: { mode: 'session', size: sessionPoolSize(context) } }),
};

const ambassadorTransaction: TargetSpec = {
  name: 'ambassador-txn',
  description: 'pg-ambassador (production build), transaction pooling (pool.size = --pool-size), scram-sha-256 clients, upstream without TLS',
  defaultModes: QUERY_MODES,
  supportedModes: QUERY_MODES,
  workloadKinds: ['plain'],
  serverConnections: (context) => context.poolSize,
  prepare: buildAmbassador,
  start: (context) => spawnAmbassador(context, 'ambassador-txn', { pool: { mode: 'transaction', size: context.poolSize } }),
};

/** The name of ambassador-txn built from --against REF. */
export const OTHER_BUILD = 'ambassador-txn-old';

/** ambassador-txn built from another commit (see other-build.ts): it runs wherever ambassador-txn does, next to it. */
export function otherBuildTarget(ref: string): TargetSpec {
  let build: OtherBuild | null = null;
  return {
    ...ambassadorTransaction,
    name: OTHER_BUILD,
    description: `ambassador-txn built from --against ${ref} (git archive of that commit, this checkout's node_modules), the same configuration`,
    prepare: async (log) => {
      build = await prepareOtherBuild(ROOT, ref, (root) => compileAmbassador(root, log), log);
    },
    start: (context) => {
      if (build === null) throw new Error(`${OTHER_BUILD} started before it was built`);
      return spawnAmbassador(context, OTHER_BUILD, { pool: { mode: 'transaction', size: context.poolSize } }, build);
    },
  };
}

const ambassadorTransactionCached: TargetSpec = {
  name: 'ambassador-txn-cached',
  description:
    'ambassador-txn with pool.cacheUnnamedStatements (unnamed statements kept on servers, shared by text, as PgDog\'s extended_anonymous); ' +
    'by default only with -M extended and select-only, the one case where it changes what runs (-M simple sends no Parse, -M prepared names its statements)',
  defaultModes: ['extended'],
  supportedModes: QUERY_MODES,
  workloadKinds: ['plain'],
  onlyWorkloads: ['select-only'],
  serverConnections: (context) => context.poolSize,
  prepare: buildAmbassador,
  start: (context) => spawnAmbassador(context, 'ambassador-txn-cached', { pool: { mode: 'transaction', size: context.poolSize, cacheUnnamedStatements: true } }),
};

const ambassadorSplit: TargetSpec = {
  name: 'ambassador-split',
  description:
    'pg-ambassador (production build), transaction pooling (pool.size = --pool-size per host), routing.readWriteSplit over the primary ' +
    'and both replicas (roles fixed in upstream.hosts), scram-sha-256 clients, upstream without TLS; split workloads only',
  defaultModes: QUERY_MODES,
  supportedModes: QUERY_MODES,
  workloadKinds: ['split'],
  serverConnections: (context) => context.poolSize,
  prepare: buildAmbassador,
  start: (context) => spawnAmbassador(context, 'ambassador-split', { pool: { mode: 'transaction', size: context.poolSize }, split: true }),
};

const pgbouncerTransaction: TargetSpec = {
  name: 'pgbouncer',
  description:
    "PgBouncer (Debian's package), pool_mode = transaction (default_pool_size = --pool-size), scram-sha-256 clients, upstream without TLS; " +
    'not run with -M prepared (1.18 has no prepared statements in transaction mode)',
  defaultModes: ['simple', 'extended'],
  supportedModes: ['simple', 'extended'],
  workloadKinds: ['plain', 'split'],
  serverConnections: (context) => context.poolSize,
  prepare: async (log) => void (await ensurePgbouncer(log)),
  start: (context) => spawnPgbouncer(context, { name: 'pgbouncer', poolMode: 'transaction', poolSize: context.poolSize }),
};

const pgbouncerSession: TargetSpec = {
  name: 'pgbouncer-session',
  description:
    "PgBouncer (Debian's package), pool_mode = session (default_pool_size = max(--pool-size, clients)), scram-sha-256 clients, upstream without TLS; " +
    "by default only with -M prepared, where it stands in for the transaction-mode pgbouncer",
  defaultModes: ['prepared'],
  supportedModes: QUERY_MODES,
  workloadKinds: ['plain', 'split'],
  serverConnections: sessionPoolSize,
  prepare: async (log) => void (await ensurePgbouncer(log)),
  start: (context) => spawnPgbouncer(context, { name: 'pgbouncer-session', poolMode: 'session', poolSize: sessionPoolSize(context) }),
};

const nodePipe: TargetSpec = {
  name: 'node-pipe',
  description:
    'a bare Node.js byte pipe (bench/node-pipe.ts): no parsing, no pooling, one server connection per client, which logs in to ' +
    "Postgres through it: what Node's net streams cost before a proxy does any work",
  defaultModes: QUERY_MODES,
  supportedModes: QUERY_MODES,
  workloadKinds: ['plain'],
  // The floor matters where the issue's targets are (select-only), and costs bench time elsewhere.
  onlyWorkloads: ['select-only'],
  serverConnections: (context) => context.clients,
  start: (context) => spawnNodePipe(context, 'node-pipe'),
};

const nodePool: TargetSpec = {
  name: 'node-pool',
  description:
    "a minimal Node.js transaction pooler (bench/node-pool.ts) on the ambassador's own sockets and server login: --pool-size server " +
    'connections, requests cut at Query or Sync and answered up to ReadyForQuery, every client login accepted; no statement ' +
    'names (so no -M prepared), session state, routing, health checks, retries or metrics. The floor of a pooler on Node, so ' +
    "ambassador-txn / node-pool is what the ambassador's features cost",
  defaultModes: ['simple', 'extended'],
  supportedModes: ['simple', 'extended'],
  workloadKinds: ['plain'],
  onlyWorkloads: ['select-only'],
  serverConnections: (context) => context.poolSize,
  start: (context) => spawnNodePool(context, 'node-pool'),
};

/** Every target the bench knows, in run order within a round; the first selected is the baseline. */
export const TARGETS: readonly TargetSpec[] = [
  direct,
  ambassadorSession,
  ambassadorTransaction,
  ambassadorTransactionCached,
  ambassadorSplit,
  pgbouncerTransaction,
  pgbouncerSession,
  nodePipe,
  nodePool,
];

/** The target latency is "added over" in the 1-client comparisons. */
export const LATENCY_REFERENCE = 'direct';

/** A pair of targets whose tps the report divides round by round (when both ran in a group). */
export interface Comparison {
  numerator: string;
  denominator: string;
  note: string;
}

export const COMPARISONS: readonly Comparison[] = [
  { numerator: 'ambassador', denominator: 'direct', note: 'session pooling vs no proxy' },
  { numerator: 'ambassador-txn', denominator: 'direct', note: 'transaction pooling vs no proxy' },
  { numerator: 'ambassador-txn', denominator: 'pgbouncer', note: 'same pool mode (transaction)' },
  { numerator: 'ambassador', denominator: 'pgbouncer-session', note: 'same pool mode (session)' },
  {
    numerator: 'ambassador-txn',
    denominator: 'pgbouncer-session',
    note: 'transaction vs session pooling: PgBouncer 1.18 cannot run prepared statements in transaction mode',
  },
  { numerator: 'ambassador-txn-cached', denominator: 'pgbouncer', note: 'pool.cacheUnnamedStatements: Postgres binds unnamed statements it parsed once (PgBouncer sends every Parse)' },
  { numerator: 'ambassador-txn-cached', denominator: 'ambassador-txn', note: 'what pool.cacheUnnamedStatements changes' },
  { numerator: 'ambassador-txn', denominator: OTHER_BUILD, note: 'this checkout vs the build of --against REF, same configuration, alternated within each round' },
  { numerator: 'ambassador-txn', denominator: 'node-pipe', note: "the ambassador vs a bare byte pipe on Node's net streams (no pooling)" },
  { numerator: 'node-pipe', denominator: 'pgbouncer', note: "Node's net streams vs PgBouncer (transaction pooling)" },
  { numerator: 'node-pipe', denominator: 'pgbouncer-session', note: "Node's net streams vs PgBouncer (session pooling)" },
  { numerator: 'ambassador-txn', denominator: 'node-pool', note: "what the ambassador's features cost over a minimal pooler on the same sockets" },
  { numerator: 'node-pool', denominator: 'pgbouncer', note: 'the floor of a pooler on Node vs PgBouncer (transaction pooling)' },
  { numerator: 'ambassador-split', denominator: 'direct', note: 'reads over 2 replicas vs no proxy on the primary' },
  { numerator: 'ambassador-split', denominator: 'pgbouncer', note: 'reads over 2 replicas vs PgBouncer on the primary (PgBouncer cannot split)' },
  {
    numerator: 'ambassador-split',
    denominator: 'pgbouncer-session',
    note: 'reads over 2 replicas vs PgBouncer (session pooling, for -M prepared) on the primary',
  },
];
