// The ServerPool sessions use: one ConnectionPool per (host, database, user), created on first
// use, and the health loop that tells which host is which. Which host serves a request is the
// HostChooser's business (host-choice.ts), fed by the health snapshot; this file maps requests
// onto pools and connections back, and keeps each host's count of leased connections.
//
// Server connections are opened with the user and database only: everything else a client
// asked for at startup is made true per lease by replaying it as SET (session-state.ts), so
// any connection in a pool can serve any client of that (database, user).
//
// With one upstream host nothing is probed: it is the primary (unless configured as a replica).
// With several, the health loop logs in with the configured upstream user and database, or else
// with those of the first client, and the first login waits for its first round.

import type { Logger } from 'pino';
import { BackendConnection, UpstreamLoginError } from '../backend/connection.ts';
import type { Connector, UpstreamTlsSettings } from '../backend/connector.ts';
import { AmbassadorError } from '../errors.ts';
import { HealthMonitor, type HostState } from '../health/monitor.ts';
import { BackendProber } from '../health/prober.ts';
import { ConnectionPool, type PoolEvent, type PoolOptions, type PoolStats } from './connection-pool.ts';
import { HostChooser, type ChoiceOptions, type Choice, type HostView } from './host-choice.ts';
import type { HostEntry, ReleaseOutcome, RouteRequest, ServerPool, ServerRequest } from './server-pool.ts';

export interface PoolerOptions {
  connector: Connector;
  hosts: readonly HostEntry[];
  tls: () => UpstreamTlsSettings;
  connectTimeoutMs: number;
  password: () => Promise<string | null>;
  maxMessageSize: number;
  pool: PoolOptions;
  choice: ChoiceOptions;
  health: { intervalMs: number; timeoutMs: number; failureThreshold: number };
  /** The login health probes use; unset parts come from the first client. */
  probeLogin: { user?: string | undefined; database?: string | undefined };
  log: Logger;
  onEvent?: (event: PoolEvent) => void;
}

const NO_PARAMS: ReadonlyMap<string, string> = new Map();

interface PoolEntry {
  pool: ConnectionPool<BackendConnection>;
  host: HostState;
}

export class Pooler implements ServerPool {
  readonly health: HealthMonitor;
  private readonly chooser: HostChooser;
  private readonly pools = new Map<string, PoolEntry>();
  private readonly owner = new WeakMap<BackendConnection, PoolEntry>();
  private readonly probing: boolean;

  /** The login health probes use: configured, or learned from a client (see probeLogin). */
  private probeAs: { user: string; database: string } | null = null;

  constructor(private readonly options: PoolerOptions) {
    this.probing = options.hosts.length > 1;
    // A single host serves everything (a replica-only sidecar included): nothing to choose from.
    const hosts = this.probing ? options.hosts : options.hosts.map((h) => ({ ...h, role: 'primary' as const }));
    this.health = new HealthMonitor({
      hosts,
      prober: new BackendProber((host, timeoutMs) => this.connectProbe(host, timeoutMs)),
      intervalMs: options.health.intervalMs,
      timeoutMs: options.health.timeoutMs,
      failureThreshold: options.health.failureThreshold,
      log: options.log.child({ component: 'health' }),
    });
    this.chooser = new HostChooser(options.choice);
  }

  /** The health snapshot routing reads (live objects). */
  get hosts(): readonly HostState[] {
    return this.health.hosts;
  }

  ready(request: ServerRequest): Promise<void> {
    if (!this.probing) return Promise.resolve();
    this.probeAs ??= this.probeLogin(request);
    return this.health.start().then(() => this.health.ready());
  }

  /** Starts the health loop now when the probe login is fully configured. */
  startHealth(): void {
    const { user, database } = this.options.probeLogin;
    if (!this.probing || user === undefined || database === undefined) return;
    this.probeAs = { user, database };
    void this.health.start();
  }

  choose(route: RouteRequest): Choice {
    const hosts = this.health.hosts;
    if (route.kind === 'read') return this.chooser.replica(hosts, route.minLsn === undefined ? {} : { minLsn: route.minLsn });
    const primary = this.chooser.primary(hosts);
    if (primary.host !== null || this.health.anyRoleKnown) return primary;
    // No probe has succeeded yet (none could log in): try the first host not configured as a
    // replica, so the client sees the server's own answer rather than "no primary".
    const fallback = hosts.find((h) => h.configuredRole !== 'replica');
    return fallback ? { host: fallback, reason: 'unprobed' } : primary;
  }

  acquire(request: ServerRequest): Promise<BackendConnection> {
    const choice = this.choose({ kind: 'write' });
    if (choice.host === null) return Promise.reject(noHost(choice.reason, 'write'));
    return this.acquireOn(choice.host, request);
  }

  acquireOn(host: HostView, request: ServerRequest): Promise<BackendConnection> {
    const state = host as HostState;
    const key = `${host.id}/${request.database}/${request.user}`;
    let entry = this.pools.get(key);
    if (entry === undefined) {
      entry = { pool: this.createPool(key, state, request), host: state };
      this.pools.set(key, entry);
    }
    state.activeConnections += 1;
    return entry.pool.acquire().catch((err: unknown) => {
      state.activeConnections -= 1;
      throw err;
    });
  }

  release(connection: BackendConnection, outcome: ReleaseOutcome): void {
    const entry = this.owner.get(connection);
    if (entry === undefined) return connection.close(outcome === 'broken');
    entry.host.activeConnections = Math.max(0, entry.host.activeConnections - 1);
    entry.pool.release(connection, outcome);
  }

  roleOf(connection: BackendConnection): HostView['role'] {
    return this.owner.get(connection)?.host.role ?? 'unknown';
  }

  stats(): PoolStats[] {
    return [...this.pools.values()].map((entry) => entry.pool.stats());
  }

  async close(): Promise<void> {
    this.health.stop();
    await Promise.all([...this.pools.values()].map((entry) => entry.pool.close()));
    this.pools.clear();
  }

  private probeLogin(request: ServerRequest | null): { user: string; database: string } {
    const { user, database } = this.options.probeLogin;
    const chosenUser = user ?? request?.user;
    const chosenDatabase = database ?? request?.database;
    if (chosenUser === undefined || chosenDatabase === undefined) throw new Error('health probes have no login yet');
    return { user: chosenUser, database: chosenDatabase };
  }

  private async connectProbe(host: HostEntry, timeoutMs: number): Promise<BackendConnection> {
    this.probeAs ??= this.probeLogin(null);
    try {
      return await this.connect(host, this.probeAs, timeoutMs);
    } catch (err) {
      // The server refused the login the probes borrowed (say, a client's database that does not
      // exist): learn it again from the next client.
      if (err instanceof UpstreamLoginError && this.options.probeLogin.user === undefined) this.probeAs = null;
      throw err;
    }
  }

  private connect(host: { host: string; port: number }, login: { user: string; database: string }, timeoutMs: number): Promise<BackendConnection> {
    const { options } = this;
    return BackendConnection.connect({
      connector: options.connector,
      target: { host: host.host, port: host.port },
      tls: options.tls(),
      connectTimeoutMs: timeoutMs,
      user: login.user,
      database: login.database,
      params: NO_PARAMS,
      password: options.password,
      maxMessageSize: options.maxMessageSize,
    });
  }

  private createPool(key: string, host: HostState, request: ServerRequest): ConnectionPool<BackendConnection> {
    const { options } = this;
    const pool: ConnectionPool<BackendConnection> = new ConnectionPool<BackendConnection>(
      key,
      options.pool,
      {
        create: async () => {
          const connection = await this.connect(host, request, options.connectTimeoutMs);
          this.owner.set(connection, { pool, host });
          return connection;
        },
        destroy: (connection) => connection.close(),
        isAlive: (connection) => !connection.isClosed,
        onClosed: (connection, cb) => connection.socket.once('close', cb),
      },
      options.onEvent ? { onEvent: options.onEvent } : {},
    );
    return pool;
  }
}

/** The error a client gets when no host can serve its request. */
export function noHost(reason: string, kind: 'write' | 'read'): AmbassadorError {
  if (kind === 'write') {
    const twoPrimaries = reason === 'two-primaries';
    return new AmbassadorError(
      'NO_PRIMARY',
      twoPrimaries ? 'two hosts claim to be the primary: writes are refused until one steps down' : 'no primary is available for writes',
      { hint: twoPrimaries ? 'Demote one of them; see the ambassador log.' : 'Check that the primary is running and reachable.' },
    );
  }
  return new AmbassadorError('NO_REPLICA', `no host can serve this read (${reason})`, {
    hint: 'Replicas are down or lagging past routing.maxReplicaLag, and routing.readsFromPrimary forbids the primary.',
  });
}
