// The ServerPool sessions use: one ConnectionPool per (host, database, user), created on first
// use, and the health loop that tells which host is which. Which host serves a request is the
// HostChooser's business (host-choice.ts), fed by the health snapshot; this file maps requests
// onto pools and connections back, keeps each host's count of leased connections, and acts on
// health events: a host that went down, whose address changed, or that lost the primary role in
// a failover has its pools drained (idle connections closed now, leased ones when released,
// waiters told POOL_CLOSED so acquireFor chooses again) and forgotten, so new requests get fresh
// pools. Waiting out a failover is failover.ts's loop.
//
// Every connect goes through the host's circuit breaker (shared by all its pools) and reports
// to it whether the host could be reached.
//
// Server connections are opened with the user and database only: everything else a client
// asked for at startup is made true per lease by replaying it as SET (session-state.ts), so
// any connection in a pool can serve any client of that (database, user).
//
// With one upstream host no role is probed: it is the primary (unless configured as a replica);
// the health loop still re-resolves its name and probes it while its breaker is open. With
// several, the health loop logs in with the configured upstream user and database, or else with
// those of the first client, and the first login waits for its first round.

import type { Logger } from 'pino';
import { BackendConnection, UpstreamLoginError } from '../backend/connection.ts';
import type { Connector, UpstreamTarget, UpstreamTlsSettings } from '../backend/connector.ts';
import type { CredentialCache, SecretLease } from '../credentials/cache.ts';
import { AmbassadorError } from '../errors.ts';
import type { CircuitBreakerOptions } from '../health/circuit-breaker.ts';
import type { HealthEvent } from '../health/events.ts';
import { HealthMonitor, type HostState, type Prober } from '../health/monitor.ts';
import { BackendProber } from '../health/prober.ts';
import type { Resolve } from '../health/resolver.ts';
import { systemClock, type Clock } from '../lib/clock.ts';
import { ConnectionPool, type PoolEvent, type PoolOptions, type PoolStats } from './connection-pool.ts';
import { acquireWithFailover, errorText, retryableConnectError, unreachable, type FailoverDeps } from './failover.ts';
import { claimPrimary, consideredUp, HostChooser, type ChoiceOptions, type Choice, type HostView } from './host-choice.ts';
import type { HostEntry, ReleaseOutcome, RouteRequest, ServerPool, ServerRequest } from './server-pool.ts';

export { noHost } from './failover.ts';

/** Opens and logs in one server connection (BackendConnection.connect over the connector by default). */
export type ServerConnect = (target: UpstreamTarget, login: { user: string; database: string }, timeoutMs: number) => Promise<BackendConnection>;

export interface PoolerOptions {
  connector: Connector;
  hosts: readonly HostEntry[];
  tls: () => UpstreamTlsSettings;
  connectTimeoutMs: number;
  /** Upstream secrets by login; null when no credentials are configured (trust, cert auth). */
  credentials: CredentialCache | null;
  maxMessageSize: number;
  pool: PoolOptions;
  choice: ChoiceOptions;
  health: {
    intervalMs: number;
    timeoutMs: number;
    failureThreshold: number;
    /** How long acquireFor waits for a host that can serve (a new primary). */
    failoverTimeoutMs: number;
    circuitBreaker: CircuitBreakerOptions;
  };
  /** The login health probes use; unset parts come from the first client. */
  probeLogin: { user?: string | undefined; database?: string | undefined };
  log: Logger;
  onEvent?: (event: PoolEvent) => void;
  /** Every health event, after the pool acted on it (metrics, counters). */
  onHealthEvent?: (event: HealthEvent) => void;
  /** Test seams: time, name lookups, connects and probes. */
  clock?: Clock;
  resolve?: Resolve;
  connect?: ServerConnect;
  prober?: Prober;
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
  private readonly clock: Clock;
  private readonly failover: FailoverDeps;
  private closed = false;

  /** The login health probes use: configured, or learned from a client (see probeLogin). */
  private probeAs: { user: string; database: string } | null = null;

  constructor(private readonly options: PoolerOptions) {
    this.probing = options.hosts.length > 1;
    this.clock = options.clock ?? systemClock;
    // A single host serves everything (a replica-only sidecar included): nothing to choose from.
    const hosts = this.probing ? options.hosts : options.hosts.map((h) => ({ ...h, role: 'primary' as const }));
    const { health } = options;
    this.health = new HealthMonitor({
      hosts,
      prober: options.prober ?? new BackendProber((host, timeoutMs) => this.connectProbe(host, timeoutMs)),
      intervalMs: health.intervalMs,
      timeoutMs: health.timeoutMs,
      failureThreshold: health.failureThreshold,
      circuitBreaker: health.circuitBreaker,
      probeRoles: this.probing,
      log: options.log.child({ component: 'health' }),
      clock: this.clock,
      onEvent: (event) => this.onHealthEvent(event),
      ...(options.resolve ? { resolve: options.resolve } : {}),
    });
    this.chooser = new HostChooser(options.choice);
    this.failover = {
      choose: (route) => this.choose(route),
      acquireOn: (host, request) => this.acquireOn(host, request),
      struggling: (host) => this.struggling(host as HostState),
      blocked: (route) => this.blocked(route),
      kick: (reason) => this.health.kick(reason),
      nextRound: () => this.health.nextRound(),
      closed: () => this.closed,
      clock: this.clock,
      failoverTimeoutMs: health.failoverTimeoutMs,
      intervalMs: health.intervalMs,
    };
  }

  /** The health snapshot routing reads (live objects). */
  get hosts(): readonly HostState[] {
    return this.health.hosts;
  }

  ready(request: ServerRequest): Promise<void> {
    this.probeAs ??= this.probeLogin(request);
    const started = this.health.start();
    // One host: no role to wait for; the login lets the health loop probe it while its breaker is open.
    if (!this.probing) return Promise.resolve();
    return started.then(() => this.health.ready());
  }

  /** Starts the health loop now when the probe login is fully configured (always with one host). */
  startHealth(): void {
    const { user, database } = this.options.probeLogin;
    if (user !== undefined && database !== undefined) this.probeAs = { user, database };
    if (!this.probing || this.probeAs !== null) void this.health.start();
  }

  choose(route: RouteRequest): Choice {
    const hosts = this.health.hosts;
    const needs = { minLsn: route.minLsn, avoid: route.avoid };
    if (route.kind === 'read') return this.chooser.replica(hosts, needs);
    const primary = this.chooser.primary(hosts, needs);
    if (primary.host !== null || this.health.anyRoleKnown) return primary;
    // No probe has succeeded yet (none could log in): try the first host not configured as a
    // replica, so the client sees the server's own answer rather than "no primary".
    const fallback = hosts.find((h) => h.configuredRole !== 'replica' && h.breaker !== 'open' && !(route.avoid?.includes(h.id) ?? false));
    return fallback ? { host: fallback, reason: 'unprobed' } : primary;
  }

  acquireFor(route: RouteRequest, request: ServerRequest): Promise<BackendConnection> {
    return acquireWithFailover(this.failover, route, request);
  }

  acquire(request: ServerRequest): Promise<BackendConnection> {
    return this.acquireFor({ kind: 'write' }, request);
  }

  acquireOn(host: HostView, request: ServerRequest): Promise<BackendConnection> {
    if (this.closed) return Promise.reject(new AmbassadorError('POOL_CLOSED', 'the server pool is closed: the ambassador is shutting down'));
    const state = host as HostState;
    const key = `${host.id}/${request.database}/${request.user}`;
    let entry = this.pools.get(key);
    // An open breaker refuses at once, unless a connection opened before it is idle in the pool.
    if (state.breaker !== 'closed' && !(entry && entry.pool.idleCount > 0)) {
      const refusal = this.health.breaker(host.id)?.refusal();
      if (refusal) return Promise.reject(refusal);
    }
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

  hostIdOf(connection: BackendConnection): string | null {
    return this.owner.get(connection)?.host.id ?? null;
  }

  demoted(connection: BackendConnection): boolean {
    const host = this.owner.get(connection)?.host;
    if (host === undefined) return false;
    // A host configured as a replica (a replica-only sidecar, which routing treats as the
    // primary because it is the only host) was never expected to take writes.
    const configured = this.options.hosts.find((entry) => `${entry.host}:${entry.port}` === host.id);
    if (configured?.role === 'replica') return false;
    return connection.parameters.get('in_hot_standby') === 'on' || host.role === 'replica';
  }

  suspect(connection: BackendConnection, reason: string): void {
    const host = this.hostIdOf(connection);
    this.health.kick(host === null ? reason : `${host}: ${reason}`);
  }

  stats(): PoolStats[] {
    return [...this.pools.values()].map((entry) => entry.pool.stats());
  }

  async close(): Promise<void> {
    this.closed = true;
    this.health.stop();
    await Promise.all([...this.pools.values()].map((entry) => entry.pool.close()));
    this.pools.clear();
  }

  /** Closes and forgets every pool of a host; see the file comment. */
  private drainHost(id: string, reason: string): void {
    let drained = 0;
    for (const [key, entry] of this.pools) {
      if (entry.host.id !== id) continue;
      this.pools.delete(key);
      void entry.pool.close();
      drained += 1;
    }
    if (drained > 0) this.options.log.info({ host: id, pools: drained, reason }, 'pools of the host drained: new connections go where routing says now');
  }

  private onHealthEvent(event: HealthEvent): void {
    switch (event.type) {
      case 'host-down':
        this.drainHost(event.host, `host is down: ${event.reason}`);
        break;
      case 'address-changed':
        this.drainHost(event.host, event.reason);
        break;
      case 'role-changed':
        // Connections opened under the old role carry its ParameterStatus values (in_hot_standby
        // of a promoted replica's idle connections never heard the change): start afresh.
        if (event.from !== 'unknown') this.drainHost(event.host, `role changed from ${event.from} to ${event.to}`);
        break;
      case 'failover-ended':
        if (event.newPrimary !== event.oldPrimary) this.drainHost(event.oldPrimary, `${event.newPrimary} is the primary now`);
        break;
      case 'breaker-half-open':
        // The host may take a connection now: its pools try at once instead of after their backoff.
        for (const entry of this.pools.values()) if (entry.host.id === event.host) entry.pool.resetBackoff();
        break;
      default:
        break;
    }
    this.options.onHealthEvent?.(event);
  }

  /** The open breaker of the primary, when that is what keeps a write from being served. */
  private blocked(route: RouteRequest): AmbassadorError | null {
    if (route.kind !== 'write') return null;
    const claim = claimPrimary(consideredUp(this.health.hosts));
    return claim.kind === 'one' ? (this.health.breaker(claim.host.id)?.refusal() ?? null) : null;
  }

  /** Probes or connects to the host are failing right now. */
  private struggling(host: HostState): boolean {
    return !host.up || host.failures > 0 || host.breaker !== 'closed' || (this.health.breaker(host.id)?.failures ?? 0) > 0;
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

  private async connect(host: UpstreamTarget, login: { user: string; database: string }, timeoutMs: number): Promise<BackendConnection> {
    const { options } = this;
    const target = { host: host.host, port: host.port };
    if (options.connect) return options.connect(target, login, timeoutMs);
    const secrets = options.credentials;
    if (!secrets) return this.login(target, login, timeoutMs, null);
    const who = { host: target.host, port: target.port, user: secrets.loginUser(login.user) };
    const as = { user: who.user, database: login.database };
    const deadline = this.clock.now() + timeoutMs;
    // The secret is in hand before the socket opens: a slow token service or command is then a
    // credentials problem, never a login timeout blamed on the host (breaker, health).
    const lease = await secrets.get(who);
    try {
      const connection = await this.login(target, as, timeoutMs, lease.password);
      secrets.accepted(who, lease);
      return connection;
    } catch (err) {
      // The server said no to the secret (rotated since it was cached, or a token that lapsed):
      // one retry with whatever the cache has that differs from it, within the connect deadline.
      if (!rejectedLogin(err)) throw err;
      const reserve = Math.min(1000, timeoutMs / 4); // left for the retried login itself
      const waitUntil = (err as UpstreamLoginError).serverCode === '28P01' ? deadline - reserve : 0;
      const retry = await secrets.rejected(who, lease, waitUntil);
      if (!retry) throw err;
      const connection = await this.login(target, as, Math.max(reserve, deadline - this.clock.now()), retry.password);
      secrets.accepted(who, retry);
      options.log.info({ host: `${target.host}:${target.port}`, user: who.user }, 'upstream login succeeded with the rotated credentials');
      return connection;
    }
  }

  private login(target: UpstreamTarget, login: { user: string; database: string }, timeoutMs: number, password: string | null): Promise<BackendConnection> {
    const { options } = this;
    return BackendConnection.connect({
      connector: options.connector,
      target,
      tls: options.tls,
      connectTimeoutMs: timeoutMs,
      user: login.user,
      database: login.database,
      params: NO_PARAMS,
      password: async () => password,
      maxMessageSize: options.maxMessageSize,
    });
  }

  /** A connect for a pool, through the host's breaker, which learns whether the host could be reached. */
  private async connectThroughBreaker(host: HostState, login: ServerRequest): Promise<BackendConnection> {
    const breaker = this.health.breaker(host.id);
    const ticket = breaker?.admit();
    try {
      const connection = await this.connect(host, login, this.options.connectTimeoutMs);
      if (breaker && ticket) breaker.succeeded(ticket);
      host.connectFailures = 0;
      return connection;
    } catch (err) {
      const reached = !unreachable(err); // the server itself answered: the host is reachable
      host.connectFailures = reached ? 0 : host.connectFailures + 1;
      if (breaker && ticket) {
        if (reached) breaker.succeeded(ticket);
        else breaker.failed(ticket, errorText(err));
      }
      throw err;
    }
  }

  private createPool(key: string, host: HostState, request: ServerRequest): ConnectionPool<BackendConnection> {
    const { options } = this;
    const pool: ConnectionPool<BackendConnection> = new ConnectionPool<BackendConnection>(
      key,
      options.pool,
      {
        create: async () => {
          const connection = await this.connectThroughBreaker(host, request);
          this.owner.set(connection, { pool, host });
          return connection;
        },
        destroy: (connection) => connection.close(),
        isAlive: (connection) => !connection.isClosed,
        onClosed: (connection, cb) => connection.socket.once('close', cb),
        retryable: retryableConnectError,
      },
      { clock: this.clock, ...(options.onEvent ? { onEvent: options.onEvent } : {}) },
    );
    return pool;
  }
}

/** The server refused the secret itself (28P01 wrong password, 28000 e.g. a PAM/IAM refusal). */
function rejectedLogin(err: unknown): boolean {
  return err instanceof UpstreamLoginError && (err.serverCode === '28P01' || err.serverCode === '28000');
}
