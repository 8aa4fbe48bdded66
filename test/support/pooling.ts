// Helpers for pooling tests (transaction and session mode): a private database per test file so
// that pg_stat_activity can be filtered exactly (and pgbench tables do not collide with other
// files sharing the cluster), a Connector that records every upstream connect (when, the local
// port, how it ended), a superuser view of the ambassador's server connections, and "churners":
// clients looping over their own work to keep a small pool busy while a test client runs.

import net from 'node:net';
import { after, before } from 'node:test';
import pg from 'pg';
import { TcpConnector, type ConnectedSocket, type Connector, type UpstreamTarget, type UpstreamTlsSettings } from '../../src/backend/connector.ts';
import { encodeCancelRequest } from '../../src/protocol/startup.ts';
import { ambassadorsFor, viaAmbassador } from './ambassador.ts';
import type { RawClient } from './raw-client.ts';
import { eventually, getTopology, type Topology } from './topology.ts';

/** Ends the sessions of test roles and drops them (cleanup: errors are ignored). */
export async function dropRoles(superuser: pg.Client, roles: readonly string[]): Promise<void> {
  for (const role of roles) {
    await superuser.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [role]).catch(() => {});
    await superuser.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(role)}`).catch(() => {});
  }
}

/** A superuser connection to the primary (database `postgres`), for pg_stat_activity. */
export function superuserConfig(topology: Topology, database = 'postgres'): pg.ClientConfig {
  return {
    host: topology.primary.host,
    port: topology.primary.port,
    user: topology.superuser.user,
    password: topology.superuser.password,
    database,
    connectionTimeoutMillis: 10_000,
  };
}

/** A direct `app` connection to the primary, bypassing the ambassador. */
export function directConfig(topology: Topology, database: string, extra: Record<string, unknown> = {}): pg.ClientConfig {
  return {
    host: topology.primary.host,
    port: topology.primary.port,
    user: 'app',
    password: topology.users.app.password,
    database,
    connectionTimeoutMillis: 10_000,
    ...extra,
  };
}

export async function withClient<T>(config: pg.ClientConfig, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(config);
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Creates (dropping any leftover first) a database owned by `app`. */
export async function createTestDatabase(topology: Topology, name: string): Promise<void> {
  await withClient(superuserConfig(topology), async (admin) => {
    await admin.query(`drop database if exists ${name} with (force)`);
    await admin.query(`create database ${name} owner app`);
  });
}

/** Creates the test's database, and returns a connected superuser client for inspecting servers. */
export async function prepareTestDatabase(topology: Topology, name: string): Promise<pg.Client> {
  await createTestDatabase(topology, name);
  const admin = new pg.Client(superuserConfig(topology));
  admin.on('error', () => {});
  await admin.connect();
  return admin;
}

export async function dropTestDatabase(topology: Topology, name: string): Promise<void> {
  await withClient(superuserConfig(topology), (admin) => admin.query(`drop database if exists ${name} with (force)`));
}

/** What a test file gets from testDatabaseFile(): read its fields inside tests (they are set in before()). */
export interface TestDatabaseFile {
  readonly topology: Topology;
  /** A superuser client on the primary (database postgres), for pg_stat_activity. */
  readonly admin: pg.Client;
  /** In-process ambassadors, all stopped in after(). */
  readonly ambassadors: ReturnType<typeof ambassadorsFor>;
}

/**
 * The usual frame of a pooling test file, registered on its root: before() creates the file's
 * private database (then runs `setup`) and connects a superuser; after() stops the ambassadors
 * the file started, ends that client and drops the database.
 */
export function testDatabaseFile(database: string, setup: (topology: Topology) => Promise<void> = async () => {}): TestDatabaseFile {
  let topology: Topology | undefined;
  let admin: pg.Client | undefined;
  const set = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`${what} is set in before(): read it inside a test`);
    return value;
  };
  const ambassadors = ambassadorsFor(() => set(topology, 'topology'));
  before(async () => {
    topology = await getTopology();
    admin = await prepareTestDatabase(topology, database);
    await setup(topology);
  });
  after(async () => {
    await ambassadors.stopAll();
    await admin?.end().catch(() => {});
    if (topology !== undefined) await dropTestDatabase(topology, database).catch(() => {});
  });
  return {
    get topology() {
      return set(topology, 'topology');
    },
    get admin() {
      return set(admin, 'admin');
    },
    ambassadors,
  };
}

export interface ServerBackend {
  pid: number;
  state: string | null;
  xact_start: Date | null;
  application_name: string;
  client_port: number;
  query: string;
}

/** Client backends of user `app` connected to `database` (what the ambassador holds open there). */
export async function serverBackends(admin: pg.Client, database: string): Promise<ServerBackend[]> {
  const { rows } = await admin.query<ServerBackend>(
    `select pid, state, xact_start, application_name, client_port, query from pg_stat_activity
      where datname = $1 and usename = 'app' and backend_type = 'client backend' and pid <> pg_backend_pid()`,
    [database],
  );
  return rows;
}

/**
 * Polls `sample` (the server connections to count) every `everyMs` while `work` runs; returns
 * the work's result, the largest count seen and those connections (pid, state, query start).
 */
export async function maxServersDuring<T>(
  sample: () => Promise<ServerBackend[]>,
  work: () => Promise<T>,
  everyMs = 50,
): Promise<{ result: T; maxServers: number; busiest: string }> {
  let maxServers = 0;
  let busiest = '';
  let running = true;
  const sampler = (async () => {
    while (running) {
      const seen = await sample();
      if (seen.length > maxServers) {
        maxServers = seen.length;
        busiest = JSON.stringify(seen.map((b) => [b.pid, b.state, b.client_port, b.query.slice(0, 40)]));
      }
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  })();
  try {
    return { result: await work(), maxServers, busiest };
  } finally {
    running = false;
    await sampler;
  }
}

export interface ConnectRecord {
  at: number;
  endedAt: number;
  ok: boolean;
  error: string | null;
  localPort: number | null;
}

/** Wraps a Connector and records every connect attempt (start time, outcome, local port). */
export class RecordingConnector implements Connector {
  readonly records: ConnectRecord[] = [];

  constructor(private readonly inner: Connector = new TcpConnector()) {}

  async connect(target: UpstreamTarget, settings: UpstreamTlsSettings, timeoutMs: number): Promise<ConnectedSocket> {
    const record: ConnectRecord = { at: performance.now(), endedAt: 0, ok: false, error: null, localPort: null };
    this.records.push(record);
    try {
      const connected = await this.inner.connect(target, settings, timeoutMs);
      record.ok = true;
      record.localPort = connected.socket.localPort ?? null;
      return connected;
    } catch (err) {
      record.error = err instanceof Error ? err.message : String(err);
      throw err;
    } finally {
      record.endedAt = performance.now();
    }
  }

  /** Local ports of the server connections opened so far (cancel connections included). */
  get localPorts(): Set<number> {
    return new Set(this.records.flatMap((r) => (r.localPort === null ? [] : [r.localPort])));
  }
}

/** A pg client through the ambassador, connected, with errors on the socket swallowed. */
export async function ambassadorClient(port: number, database: string, extra: Record<string, unknown> = {}): Promise<pg.Client> {
  const client = new pg.Client({ ...viaAmbassador(port, { database, connectionTimeoutMillis: 20_000 }), ...extra } as pg.ClientConfig);
  client.on('error', () => {});
  await client.connect();
  return client;
}

/**
 * A Connector whose connects first wait `delayMs` (0: none), plus up to `jitterMs` drawn from
 * `random`: a connection, a cancel's say, that reaches the server late.
 */
export class DelayingConnector implements Connector {
  delayMs = 0;
  jitterMs = 0;

  constructor(
    private readonly inner: Connector = new TcpConnector(),
    private readonly random: () => number = Math.random,
  ) {}

  async connect(target: UpstreamTarget, settings: UpstreamTlsSettings, timeoutMs: number): Promise<ConnectedSocket> {
    const wait = this.delayMs + (this.jitterMs > 0 ? Math.floor(this.random() * this.jitterMs) : 0);
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    return this.inner.connect(target, settings, timeoutMs);
  }
}

/**
 * Sends a CancelRequest for (processId, secretKey) to `port`; resolves when the peer closes. As
 * libpq's PQcancel and PgJDBC do, it writes the request and waits for the close without closing
 * its own side first: the close tells that the cancel has reached the server.
 */
export async function sendCancel(port: number, processId: number, secretKey: number): Promise<void> {
  const key = Buffer.alloc(4);
  key.writeInt32BE(secretKey | 0, 0);
  await new Promise<void>((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write(encodeCancelRequest(processId, key)));
    socket.on('error', reject);
    socket.on('close', () => resolve());
    socket.resume();
  });
}

/** The cancel key (BackendKeyData) the ambassador gave a pg or raw client. */
export function cancelKeyOf(client: pg.Client | RawClient): { processId: number; secretKey: number } {
  if (client instanceof pg.Client) {
    const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
    return { processId: processID, secretKey };
  }
  const key = client.backendKey;
  if (key === null) throw new Error('the raw client has no cancel key (not logged in)');
  return { processId: key.processId, secretKey: key.secretKey.readInt32BE(0) };
}

/** Sends a CancelRequest with `client`'s own key to the ambassador on `port`. */
export function cancelOwn(port: number, client: pg.Client | RawClient): Promise<void> {
  const { processId, secretKey } = cancelKeyOf(client);
  return sendCancel(port, processId, secretKey);
}

/** How a query ended: 'ran', or the error's SQLSTATE (its message when it has none). Never rejects. */
export function outcomeOf(query: Promise<unknown>): Promise<string> {
  return query.then(
    () => 'ran',
    (err: Error & { code?: string }) => err.code ?? err.message,
  );
}

/** Waits until a statement whose text contains `tag` runs (state active) on one of the ambassador's servers in `database`. */
export async function runningUpstream(admin: pg.Client, database: string, tag: string): Promise<ServerBackend> {
  return eventually(async () => (await serverBackends(admin, database)).find((b) => b.state === 'active' && b.query.includes(tag)), {
    what: `a statement tagged ${tag} running upstream`,
  });
}

export interface ChurnReport {
  iterations: number;
  errors: string[];
  pids: Set<number>;
  /** Each churner's own statement_timeout as it saw it (a leaked SET shows up here). */
  statementTimeouts: Set<string>;
}

export interface Churn {
  readonly report: ChurnReport;
  /** Stops the loops, closes the clients and returns what they saw. */
  stop(): Promise<ChurnReport>;
}

/**
 * `count` clients through the ambassador, each looping until stop(): a named prepared statement
 * whose client-side name ('churn') is the same for every churner but whose text differs (so a
 * renaming mistake gives wrong answers), a short transaction that holds its server for a few
 * milliseconds, and a simple query reporting its statement_timeout. Every answer is checked.
 */
export async function startChurn(port: number, database: string, count: number, options: { holdMs?: number } = {}): Promise<Churn> {
  const holdSeconds = (options.holdMs ?? 5) / 1000;
  const report: ChurnReport = { iterations: 0, errors: [], pids: new Set(), statementTimeouts: new Set() };
  const clients = await Promise.all(Array.from({ length: count }, () => ambassadorClient(port, database)));
  let running = true;
  const loops = clients.map(async (client, index) => {
    let i = 0;
    while (running) {
      i++;
      try {
        const named = await client.query({ name: 'churn', text: `select $1::int + ${index * 1000} as v, pg_backend_pid() as pid`, values: [i] });
        if (named.rows[0].v !== i + index * 1000) report.errors.push(`churner ${index}: named statement gave ${named.rows[0].v}, expected ${i + index * 1000}`);
        report.pids.add(named.rows[0].pid);
        await client.query('begin');
        const held = await client.query(`select pg_sleep(${holdSeconds}), ${index} as who, pg_backend_pid() as pid`);
        if (held.rows[0].who !== index) report.errors.push(`churner ${index}: got an answer for ${held.rows[0].who}`);
        report.pids.add(held.rows[0].pid);
        await client.query('commit');
        const simple = await client.query(`select current_setting('statement_timeout') as st, ${i} as i`);
        if (simple.rows[0].i !== i) report.errors.push(`churner ${index}: simple query answered ${simple.rows[0].i}, expected ${i}`);
        report.statementTimeouts.add(simple.rows[0].st);
        report.iterations++;
      } catch (err) {
        report.errors.push(`churner ${index}: ${(err as Error).message}`);
        if (report.errors.length > 50) running = false;
        // Leave the client outside any transaction for the next round.
        await client.query('rollback').catch(() => {});
      }
    }
  });
  let stopped: Promise<ChurnReport> | null = null;
  return {
    report,
    stop: () =>
      (stopped ??= (async () => {
        running = false;
        await Promise.all(loops);
        await Promise.all(clients.map((c) => c.end().catch(() => {})));
        return report;
      })()),
  };
}
