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
//
// Config reload (reconfigure) never drops a client's connection: pools are resized in place
// (ConnectionPool.resize), timeouts, credentials, the probe login and the choice policy apply
// from the next connect or choice, the health loop takes its new settings (HealthMonitor), and
// the host list is swapped in one step: kept hosts keep their state, pools and breaker; removed
// ones are drained like a host that went down; added ones are probed at once; going to one host
// or from one host switches role probing off or on. acquireFor calls already waiting for a
// failover keep the deadline they started with.
//
// PAUSE/RESUME hold acquireFor (and acquire) at a gate (pause-gate.ts); acquireOn is not held.
// A drained pool whose leased connections are not all back stays listed in `draining` until
// they are: they are still server connections (SHOW SERVERS, and PAUSE waits for them).

import { UpstreamLoginError, type BackendConnection } from '../backend/connection.ts';
import { AmbassadorError } from '../errors.ts';
import type { HealthEvent } from '../health/events.ts';
import { HealthMonitor, type HostState } from '../health/monitor.ts';
import { BackendProber } from '../health/prober.ts';
import { spanClock, type Clock } from '../lib/clock.ts';
import { ConnectionPool, PoolWaiter, type PoolStats } from './connection-pool.ts';
import { acquireWithFailover, errorText, retryableConnectError, unreachable, type FailedAttempt, type FailoverDeps } from './failover.ts';
import { claimPrimary, consideredUp, HostChooser, type Choice, type HostView } from './host-choice.ts';
import { PauseGate, type PauseOutcome } from './pause-gate.ts';
import { hostChanges, type HostChanges, type PoolerOptions, type PoolerSettings } from './pooler-options.ts';
import { poolSummary, serverRows, type PoolSummary, type ServerSnapshot, type SnapshotPool } from './pool-snapshot.ts';
import type { HostEntry, LeaseWaiter, ReleaseOutcome, RouteRequest, ServerPool, ServerRequest } from './server-pool.ts';
import { UpstreamLogin, type LastLogin } from './upstream-login.ts';
import { Fifo } from '../lib/fifo.ts';

export { noHost } from './failover.ts';
export type { PauseOutcome } from './pause-gate.ts';
export type { HostChanges, PoolerOptions, PoolerSettings } from './pooler-options.ts';
export type { PoolSummary, ServerSnapshot } from './pool-snapshot.ts';
export type { LastLogin, ServerConnect } from './upstream-login.ts';

type Login = { user: string; database: string };

type PoolEntry = SnapshotPool;
type HostChoice = Choice & { host: HostView };

/** One client login's pools (Pooler.clientPools). */
interface ClientPools {
  /** Pool keys by host id. */
  readonly keys: Map<string, string>;
  /** The host of the pool found last, and that pool: still in `pools` while poolsRemoved is `removedBefore`. */
  lastHost: HostView | null;
  last: PoolEntry | null;
  removedBefore: number;
}

export class Pooler implements ServerPool {
  readonly health: HealthMonitor;
  private readonly chooser: HostChooser;
  private readonly pools = new Map<string, PoolEntry>();
  /** Drained pools with connections still leased (see the file comment). */
  private readonly draining = new Set<PoolEntry>();
  /** Connections released while a cancel was on its way to them, until it lands (see release). */
  private readonly heldForCancel = new Set<BackendConnection>();
  private probing: boolean;
  private settings: PoolerSettings;
  private readonly clock: Clock;
  private readonly upstream: UpstreamLogin;
  private readonly failover: FailoverDeps;
  private readonly gate: PauseGate;
  /** acquireFor calls past the pause gate that have no connection yet. */
  private acquiring = 0;
  private healthWanted = false;
  private closed = false;

  /** The login health probes use: configured, or learned from a client (see probeLogin). */
  private probeAs: Login | null = null;
  /** The client login the probes borrow the unconfigured parts from. */
  private borrowed: Login | null = null;
  private loginCheck: Promise<void> | null = null;
  /**
   * Each client's pool keys by host id, and the pool it used last: a client asks for the same
   * pools on every transaction, so a key string is made once (it keeps its hash: one joined per
   * acquire was flattened and hashed again each time), and an acquire on the same host as the
   * last one finds its pool without a lookup by key (two string-keyed lookups per acquire, which
   * perf showed growing with the number of clients).
   */
  private readonly clientPools = new WeakMap<ServerRequest, ClientPools>();
  /** Counts pools taken out of `pools`: a client's last pool is current while it is unchanged. */
  private poolsRemoved = 0;
  private readonly handOffs = new HandOffs(
    () => this.acquireSettled(),
    (wait, err) => this.waitFailed(wait, err),
  );

  constructor(private readonly options: PoolerOptions) {
    const { health } = options;
    this.settings = {
      hosts: options.hosts,
      connectTimeoutMs: options.connectTimeoutMs,
      credentials: options.credentials,
      pool: options.pool,
      choice: options.choice,
      health,
      probeLogin: options.probeLogin,
    };
    this.probing = options.hosts.length > 1;
    this.clock = options.clock ?? spanClock;
    this.upstream = new UpstreamLogin({ ...options, clock: this.clock, connect: options.connect });
    this.health = new HealthMonitor({
      hosts: this.monitored(options.hosts),
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
    this.gate = new PauseGate({ clock: this.clock, leased: () => this.leased(), waitLimitMs: () => this.settings.health.failoverTimeoutMs });
  }

  /** The health snapshot routing reads (live objects; the array is replaced whole by reconfigure). */
  get hosts(): readonly HostState[] {
    return this.health.hosts;
  }

  /** The last upstream login's outcome (pool connects, health probes, checkLogin), clock times. */
  get lastLogin(): LastLogin {
    return this.upstream.lastLogin;
  }

  /** The pool's clock (spanClock unless one was given): what lastLogin's times compare with. */
  now(): number {
    return this.clock.now();
  }

  get paused(): boolean {
    return this.gate.paused;
  }

  ready(request: ServerRequest): Promise<void> {
    if (this.probeAs === null) {
      this.borrowed = { user: request.user, database: request.database };
      this.probeAs = this.probeLogin();
    }
    const started = this.health.start();
    // One host: no role to wait for; the login lets the health loop probe it while its breaker is open.
    if (!this.probing) return Promise.resolve();
    return started.then(() => this.health.ready());
  }

  /** Starts the health loop now when the probe login is fully configured (always with one host). */
  startHealth(): void {
    this.healthWanted = true;
    const { user, database } = this.settings.probeLogin;
    if (user !== undefined && database !== undefined) this.probeAs = { user, database };
    if (!this.probing || this.probeAs !== null) void this.health.start();
  }

  /** Config reload: applies `next` without dropping a client connection; see the file comment. */
  reconfigure(next: PoolerSettings): HostChanges {
    if (next.hosts.length === 0) throw new Error('reconfigure: upstream.hosts is empty; the configuration in use is kept');
    const changes = hostChanges(this.settings.hosts, next.hosts);
    const was = this.settings.probeLogin;
    this.settings = next;
    this.upstream.credentials = next.credentials;
    if (next.probeLogin.user !== was.user || next.probeLogin.database !== was.database) this.probeAs = null;
    this.chooser.setOptions(next.choice);
    this.failover.failoverTimeoutMs = next.health.failoverTimeoutMs;
    this.failover.intervalMs = next.health.intervalMs;
    const { intervalMs, timeoutMs, failureThreshold, circuitBreaker } = next.health;
    this.health.setOptions({ intervalMs, timeoutMs, failureThreshold, circuitBreaker });
    for (const entry of this.pools.values()) entry.pool.resize(next.pool);
    this.probing = next.hosts.length > 1;
    const delta = this.health.setHosts(this.monitored(next.hosts), this.probing);
    for (const id of delta.removed) this.drainHost(id, 'host removed from the configuration');
    if (this.healthWanted && !this.health.running) this.startHealth();
    return changes;
  }

  choose(route: RouteRequest): Choice {
    const hosts = this.health.hosts;
    // The route carries what a choice needs (minLsn, avoid): passed as it is, nothing is copied.
    if (route.kind === 'read') return this.chooser.replica(hosts, route);
    const primary = this.chooser.primary(hosts, route);
    if (primary.host !== null || this.health.anyRoleKnown) return primary;
    // No probe has succeeded yet (none could log in): try the first host not configured as a
    // replica, so the client sees the server's own answer rather than "no primary".
    const fallback = hosts.find((h) => h.configuredRole !== 'replica' && h.breaker !== 'open' && !(route.avoid?.includes(h.id) ?? false));
    return fallback ? { host: fallback, reason: 'unprobed' } : primary;
  }

  acquireFor(route: RouteRequest, request: ServerRequest, choice: Choice | null = null): Promise<BackendConnection> {
    const held = this.closed ? null : this.gate.pass();
    if (held === null) return this.acquirePastGate(route, request, choice);
    return held.then(() => this.acquirePastGate(route, request, null));
  }

  tryAcquireFor(route: RouteRequest, request: ServerRequest): BackendConnection | Choice | null {
    if (this.closed || this.gate.paused) return null;
    const choice = this.choose(route);
    const host = choice.host as HostState | null;
    if (host === null) return choice;
    const conn = this.entryOf(host, request)?.pool.tryAcquire() ?? null;
    if (conn === null) return choice;
    host.activeConnections += 1;
    return conn;
  }

  waitFor(route: RouteRequest, request: ServerRequest, choice: Choice | null, waiter: LeaseWaiter): void {
    const host = choice?.host as HostState | null | undefined;
    const entry = host ? this.entryOf(host, request) : undefined;
    if (this.closed || this.gate.paused || !host || host.breaker !== 'closed' || entry === undefined || entry.pool.isClosed) {
      this.acquireFor(route, request, choice).then(
        (connection) => waiter.leaseSettled(null, connection),
        (err: unknown) => waiter.leaseSettled(err, null),
      );
      return;
    }
    // What acquireFor's first attempt would do (acquireOn on the chosen host), without its
    // promises: the pool tells the wait when a connection comes free. A failed wait goes on in
    // the failover loop, its deadline counted from now.
    this.acquiring += 1;
    host.activeConnections += 1;
    const now = this.clock.now();
    entry.pool.waitAs(new PoolWait(this.handOffs, route, request, choice as HostChoice, waiter, now), now);
  }

  /** A wait in waitFor failed (timeout, pool closed, failed connect): the failover loop takes it on. */
  private waitFailed(wait: PoolWait, err: unknown): void {
    (wait.choice.host as HostState).activeConnections -= 1;
    this.acquiring -= 1; // acquirePastGate counts it again
    this.acquirePastGate(wait.route, wait.request, null, { choice: wait.choice, error: err, since: wait.since }).then(
      (next) => wait.waiter.leaseSettled(null, next),
      (failure: unknown) => wait.waiter.leaseSettled(failure, null),
    );
  }

  acquire(request: ServerRequest): Promise<BackendConnection> {
    return this.acquireFor({ kind: 'write' }, request);
  }

  acquireOn(host: HostView, request: ServerRequest): Promise<BackendConnection> {
    if (this.closed) return Promise.reject(new AmbassadorError('POOL_CLOSED', 'the server pool is closed: the ambassador is shutting down'));
    const state = host as HostState;
    const key = this.keyOf(host, request);
    let entry = this.pools.get(key);
    // An open breaker refuses at once, unless a connection opened before it is idle in the pool.
    if (state.breaker !== 'closed' && !(entry && entry.pool.idleCount > 0)) {
      const refusal = this.health.breaker(host.id)?.refusal();
      if (refusal) return Promise.reject(refusal);
    }
    if (entry === undefined) {
      entry = this.createEntry(key, state, request);
      this.pools.set(key, entry);
    }
    state.activeConnections += 1;
    return entry.pool.acquire().catch((err: unknown) => {
      state.activeConnections -= 1;
      throw err;
    });
  }

  private keyOf(host: HostView, request: ServerRequest): string {
    return this.keyIn(this.poolsOf(request), host, request);
  }

  private poolsOf(request: ServerRequest): ClientPools {
    let pools = this.clientPools.get(request);
    if (pools === undefined) this.clientPools.set(request, (pools = { keys: new Map(), lastHost: null, last: null, removedBefore: 0 }));
    return pools;
  }

  private keyIn(pools: ClientPools, host: HostView, request: ServerRequest): string {
    let key = pools.keys.get(host.id);
    if (key === undefined) pools.keys.set(host.id, (key = poolKey(host, request)));
    return key;
  }

  /** The pool of `host` for the client's login, if there is one (the hot path's lookup). */
  private entryOf(host: HostView, request: ServerRequest): PoolEntry | undefined {
    const pools = this.poolsOf(request);
    if (pools.lastHost === host && pools.removedBefore === this.poolsRemoved) return pools.last!;
    const entry = this.pools.get(this.keyIn(pools, host, request));
    if (entry !== undefined) {
      pools.lastHost = host;
      pools.last = entry;
      pools.removedBefore = this.poolsRemoved;
    }
    return entry;
  }

  get contended(): boolean {
    return this.acquiring > 0;
  }

  release(connection: BackendConnection, outcome: ReleaseOutcome): void {
    // A cancel on its way would reach whatever the next client runs on it: the connection stays
    // out of the pool until the server has taken that cancel (as PgBouncer holds a server being
    // canceled). Taken while the connection is idle, Postgres ignores it.
    const cancelling = connection.cancelling;
    if (cancelling !== null && outcome === 'reusable' && !connection.isClosed) {
      this.heldForCancel.add(connection);
      cancelling
        .then(() => {
          this.heldForCancel.delete(connection);
          this.release(connection, outcome);
        })
        .catch((err: unknown) => this.options.log.error({ err: String(err) }, 'release after a cancel failed'));
      return;
    }
    const entry = ownerOf(connection);
    if (entry === null) return connection.close(outcome === 'broken');
    entry.host.activeConnections = Math.max(0, entry.host.activeConnections - 1);
    entry.pool.release(connection, outcome);
    if (entry.pool.isClosed && entry.pool.activeCount === 0) this.draining.delete(entry);
    this.gate.released();
  }

  roleOf(connection: BackendConnection): HostView['role'] {
    return ownerOf(connection)?.host.role ?? 'unknown';
  }

  hostIdOf(connection: BackendConnection): string | null {
    return ownerOf(connection)?.host.id ?? null;
  }

  demoted(connection: BackendConnection): boolean {
    const host = ownerOf(connection)?.host;
    if (host === undefined) return false;
    // A host configured as a replica (a replica-only sidecar, which routing treats as the
    // primary because it is the only host) was never expected to take writes.
    const configured = this.settings.hosts.find((entry) => `${entry.host}:${entry.port}` === host.id);
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

  /** Every open server connection, of drained pools too (SHOW SERVERS). */
  servers(): ServerSnapshot[] {
    return this.allPools().flatMap(serverRows);
  }

  /** One summary per ConnectionPool, drained ones with leased connections included (SHOW POOLS, metrics). */
  poolSummaries(): PoolSummary[] {
    return this.allPools().map((entry) => poolSummary(entry, this.heldForCancel));
  }

  /**
   * Logs in once to the current primary with the probe login, as a probe does, and closes that
   * connection (for /readyz); concurrent callers share one attempt. Rejects with the login's
   * error message, or when no primary or no login is known yet.
   */
  checkLogin(timeoutMs: number): Promise<void> {
    this.loginCheck ??= this.checkLoginOnce(timeoutMs).finally(() => {
      this.loginCheck = null;
    });
    return this.loginCheck;
  }

  /**
   * PAUSE: from now on acquireFor waits (FIFO) until resume(); resolves once no server connection
   * is leased any more, or after timeoutMs, with how many still are. See pause-gate.ts.
   */
  pause(timeoutMs: number): Promise<PauseOutcome> {
    return this.gate.pause(timeoutMs);
  }

  /** RESUME: lets every held request through, in order; false when not paused. */
  resume(): boolean {
    return this.gate.resume();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.gate.close();
    this.health.stop();
    await Promise.all([...this.pools.values()].map((entry) => entry.pool.close()));
    this.pools.clear();
    this.poolsRemoved += 1;
  }

  private acquirePastGate(route: RouteRequest, request: ServerRequest, choice: Choice | null, failed: FailedAttempt | null = null): Promise<BackendConnection> {
    this.acquiring += 1;
    // then(ok, fail) rather than finally(): one microtask hop less on every wait for a server.
    return acquireWithFailover(this.failover, route, request, choice, failed).then(
      (connection) => {
        this.acquireSettled();
        return connection;
      },
      (err: unknown) => {
        this.acquireSettled();
        throw err;
      },
    );
  }

  /** An acquire past the gate got its connection or gave up: a PAUSE waiting for the pool to drain may answer. */
  private acquireSettled(): void {
    this.acquiring -= 1;
    this.gate.released();
  }

  /** Connections leased now, and acquires past the pause gate that will lease one. */
  private leased(): number {
    return this.allPools().reduce((sum, entry) => sum + entry.pool.activeCount, this.acquiring);
  }

  private allPools(): PoolEntry[] {
    return [...this.pools.values(), ...this.draining];
  }

  /** The hosts as the health loop sees them: a single host serves everything (a replica-only sidecar included). */
  private monitored(hosts: readonly HostEntry[]): readonly HostEntry[] {
    return hosts.length > 1 ? hosts : hosts.map((h) => ({ ...h, role: 'primary' as const }));
  }

  private async checkLoginOnce(timeoutMs: number): Promise<void> {
    const claim = claimPrimary(consideredUp(this.health.hosts));
    if (claim.kind !== 'one') throw new Error(claim.kind === 'two' ? 'no primary known: two hosts claim to be the primary' : 'no primary known');
    const login = this.knownProbeLogin();
    if (login === null) throw new Error('no login is known yet for checking the upstream: set upstream.user and upstream.database');
    await this.upstream.check(claim.host, login, timeoutMs);
  }

  /** Closes and forgets every pool of a host; see the file comment. */
  private drainHost(id: string, reason: string): void {
    let drained = 0;
    for (const [key, entry] of this.pools) {
      if (entry.host.id !== id) continue;
      this.pools.delete(key);
      this.poolsRemoved += 1;
      void entry.pool.close();
      if (entry.pool.activeCount > 0) this.draining.add(entry);
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

  /** The probe login: the configured parts, the rest from the client it was borrowed from; throws when incomplete. */
  private probeLogin(): Login {
    const login = this.knownProbeLogin();
    if (login === null) throw new Error('health probes have no login yet');
    return login;
  }

  private knownProbeLogin(): Login | null {
    if (this.probeAs !== null) return this.probeAs;
    const { user, database } = this.settings.probeLogin;
    const chosenUser = user ?? this.borrowed?.user;
    const chosenDatabase = database ?? this.borrowed?.database;
    return chosenUser === undefined || chosenDatabase === undefined ? null : { user: chosenUser, database: chosenDatabase };
  }

  private async connectProbe(host: HostEntry, timeoutMs: number): Promise<BackendConnection> {
    this.probeAs ??= this.probeLogin();
    try {
      return await this.upstream.connect(host, this.probeAs, timeoutMs);
    } catch (err) {
      // The server refused the login the probes borrowed (say, a client's database that does not
      // exist): learn it again from the next client. A server starting up, shutting down or full
      // (57P03, 57P01, 53300) refused nothing of the login's: keep it, or a restarted replica
      // would stay down until some client logs in again.
      if (err instanceof UpstreamLoginError && this.settings.probeLogin.user === undefined && !retryableConnectError(err)) {
        this.probeAs = null;
        this.borrowed = null;
      }
      throw err;
    }
  }

  /** A connect for a pool, through the host's breaker, which learns whether the host could be reached. */
  private async connectThroughBreaker(host: HostState, login: ServerRequest): Promise<BackendConnection> {
    const breaker = this.health.breaker(host.id);
    const ticket = breaker?.admit();
    try {
      const connection = await this.upstream.connect(host, login, this.settings.connectTimeoutMs);
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

  private createEntry(key: string, host: HostState, request: ServerRequest): PoolEntry {
    const { onEvent } = this.options;
    const entry: PoolEntry = {
      host,
      database: request.database,
      user: request.user,
      pool: new ConnectionPool<BackendConnection>(
        key,
        this.settings.pool,
        {
          create: async () => {
            const connection = await this.connectThroughBreaker(host, request);
            connection.pooledBy = entry;
            return connection;
          },
          destroy: (connection) => connection.close(),
          isAlive: (connection) => !connection.isClosed,
          onClosed: (connection, cb) => connection.socket.once('close', cb),
          retryable: retryableConnectError,
        },
        { clock: this.clock, ...(onEvent ? { onEvent } : {}) },
      ),
    };
    return entry;
  }
}

/** The ConnectionPool of one host, database and user. */
function poolKey(host: HostView, request: ServerRequest): string {
  return `${host.id}/${request.database}/${request.user}`;
}

/** The pool `connection` was opened for (createEntry), or null for one no Pooler opened. */
function ownerOf(connection: BackendConnection): PoolEntry | null {
  return connection.pooledBy as PoolEntry | null;
}

/** One wait in Pooler.waitFor: the pool's callback, and what a failed wait goes on with. */
class PoolWait extends PoolWaiter<BackendConnection> {
  /** The connection the pool handed over, until the waiter is told. */
  connection: BackendConnection | null = null;

  constructor(
    private readonly handOffs: HandOffs,
    readonly route: RouteRequest,
    readonly request: ServerRequest,
    readonly choice: HostChoice,
    readonly waiter: LeaseWaiter,
    /** When the wait began (the failover loop's deadline counts from here). */
    readonly since: number,
  ) {
    super();
  }

  poolSettled(err: unknown, connection: BackendConnection | null): void {
    if (connection === null) return this.handOffs.failed(this, err);
    this.connection = connection;
    this.handOffs.served(this);
  }
}

/**
 * Connections handed to waits (PoolWait), told to their waiters in the event loop's check phase
 * (setImmediate), once the socket reads of this loop iteration have all been handled: the
 * clients answered in those reads get their answers before the freed connections get their next
 * requests. One setImmediate serves every hand-off queued before it runs.
 *
 * Why not sooner: told in a microtask behind each release (the releasing client still inside its
 * server's data handler), or at once inside the release, every freed connection got its next
 * request in the middle of the loop's reads. At 256 pgbench clients on 20 connections, telling
 * them in the check phase instead gave 1.04-1.24 times the throughput (select-only, paired
 * rounds against the microtask, every mode), with less CPU per transaction in the ambassador and
 * in the servers; telling them inside the release gave 0.91-0.96 times. At 32 clients, where
 * fewer requests wait, it changed nothing beyond the noise of paired rounds.
 */
class HandOffs {
  /**
   * A ring: an Array emptied after each turn costs a splice or a length store, runtime calls both.
   * Not a CheckPhaseBatch: its loop, shared with the forwarder's late answers, calls two different
   * handlers from one call site, and V8 then stops inlining leaseSettled into it (0.95 of the
   * throughput in prepared protocol at 256 clients over 4 paired rounds).
   */
  private readonly due = new Fifo<PoolWait>();
  private running = false;

  constructor(
    /** A wait got its connection (counted as an acquire that settled). */
    private readonly settled: () => void,
    readonly failed: (wait: PoolWait, err: unknown) => void,
  ) {}

  served(wait: PoolWait): void {
    this.settled();
    this.due.push(wait);
    // A hand-off queued while they run (a waiter's own release) joins this turn, behind them.
    if (this.due.length === 1 && !this.running) setImmediate(this.run);
  }

  private readonly run = (): void => {
    const due = this.due;
    this.running = true;
    try {
      for (let wait = due.shift(); wait !== undefined; wait = due.shift()) wait.waiter.leaseSettled(null, wait.connection);
    } finally {
      this.running = false;
      // Only after a waiter threw (an uncaught exception): the others are still told.
      if (due.length > 0) setImmediate(this.run);
    }
  };
}
