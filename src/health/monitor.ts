// Health of the upstream hosts, off the hot path: every `interval`, each host's name is resolved
// again and the host is probed (one short query on a connection kept for probing); the results
// become the snapshot routing reads: role (from pg_is_in_recovery(), whatever the config says),
// up/down, replica lag in bytes and time, the replica's replayed WAL position (for
// read-your-writes), and the state of the host's circuit breaker. Every change is a HealthEvent
// (events.ts), logged here once with its reason and passed to onEvent.
//
// Invariants:
// - The HostState objects are created once and updated in place at the end of a round, all in
//   one synchronous step, so a routing decision never sees half a round; the round's events are
//   published after that step. Breaker transitions (driven by connects) are published as they happen.
// - A host is marked down after `failureThreshold` consecutive failed probes (a failed lookup of
//   its name counts as one), up after one success. Rounds asked for by kick() count like the rest.
// - kick() runs an extra round at most every min(interval/2, 200 ms) and never while one is under
//   way, so any number of callers reporting trouble cost at most one extra round at a time.
// - A name whose addresses changed since the last round: the probe's connection is dropped before
//   probing (so the probe reaches the new address) and address-changed is published at once.
// - With probeRoles false (a single host: nothing to choose between) roles are never probed:
//   rounds only re-resolve names and probe hosts whose breaker is open, to end the open spell as
//   soon as the host answers.
// - Until a host's first successful probe its role is the configured one ('auto' is 'unknown'), so
//   nothing is sent to an undiscovered host as if it were the primary.
// - Lag in bytes is measured against the primary's WAL position from the same round; lag in time
//   is how long ago the primary first held WAL the replica has not replayed (from the positions
//   of earlier rounds). Without a known primary, byte lag is unknown (an unknown lag counts as
//   too much where a bound is set) and time lag is the replica's own estimate.

import type { Logger } from 'pino';
import { systemClock, type Clock, type Timer } from '../lib/clock.ts';
import type { HostView } from '../pool/host-choice.ts';
import { parseLsn } from '../pool/host-choice.ts';
import type { HostEntry } from '../pool/server-pool.ts';
import { CircuitBreaker, type BreakerState, type BreakerTransition, type CircuitBreakerOptions } from './circuit-breaker.ts';
import { logHealthEvent, type HealthEvent } from './events.ts';
import { PrimaryTracker } from './primary-tracker.ts';
import { AddressBook, isHostName, lookupAll, type Resolve } from './resolver.ts';

export interface ProbeResult {
  inRecovery: boolean;
  /** The primary's current WAL position, or a replica's last replayed one. */
  lsn: bigint | null;
  /** A replica's replay delay (0 when it has replayed all it received); null when unknown. */
  lagMs: number | null;
}

/** Runs one probe against a host; rejects when the host cannot be reached or answer in time. */
export interface Prober {
  probe(host: HostEntry, timeoutMs: number): Promise<ProbeResult>;
  /** Drops what is kept for `host` (its address changed): the next probe connects afresh. */
  forget?(host: HostEntry): void;
  close(): void;
}

export interface HostState extends HostView {
  readonly host: string;
  readonly port: number;
  readonly configuredRole: HostEntry['role'];
  /** Consecutive failed probes. */
  failures: number;
  lastError: string | null;
  /** The WAL position last reported (current for a primary, replayed for a replica). */
  lsn: bigint | undefined;
  /** clock.now() of the last completed probe, successful or not. */
  probedAt: number | null;
  breaker: BreakerState;
  /** Consecutive pool connects that could not reach the host (kept by the pool). */
  connectFailures: number;
  /** What the host's name resolved to at the last successful lookup; null for IP literals and sockets. */
  addresses: readonly string[] | null;
}

export interface HealthMonitorOptions {
  hosts: readonly HostEntry[];
  prober: Prober;
  intervalMs: number;
  timeoutMs: number;
  failureThreshold: number;
  log: Logger;
  /** Time source (tests pass a FakeClock); the system clock by default. */
  clock?: Clock;
  /** After every round (for tests and metrics). */
  onRound?: (hosts: readonly HostState[]) => void;
  /** Every health event, after it was logged (the pool drains hosts, metrics count). */
  onEvent?: (event: HealthEvent) => void;
  /** Per-host circuit breakers; threshold 5, cooldown 10 s by default. */
  circuitBreaker?: CircuitBreakerOptions;
  /** Looks host names up (tests pass a fake); the system resolver by default. */
  resolve?: Resolve;
  /** false: take the hosts' roles as given (see the file comment); true by default. */
  probeRoles?: boolean;
}

const DEFAULT_BREAKER: CircuitBreakerOptions = { threshold: 5, cooldownMs: 10_000 };

/** The shortest spacing of rounds asked for by kick() (half the interval when that is shorter). */
const KICK_MIN_GAP_MS = 200;

/** Rounds of primary WAL positions kept for measuring replicas' time lag. */
const PRIMARY_HISTORY = 1024;

/** The query every probe runs: role, WAL position and replay delay in one round trip. */
export const PROBE_SQL = `SELECT pg_catalog.pg_is_in_recovery(),
  CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn() END,
  CASE WHEN NOT pg_catalog.pg_is_in_recovery() THEN 0
       WHEN pg_catalog.pg_last_wal_receive_lsn() = pg_catalog.pg_last_wal_replay_lsn() THEN 0
       ELSE round(1000 * extract(epoch FROM pg_catalog.clock_timestamp() - pg_catalog.pg_last_xact_replay_timestamp())) END`;

/** Reads a probe's single row. */
export function probeResultFromRow(row: ReadonlyArray<string | null> | undefined): ProbeResult {
  if (row === undefined || row.length < 3) throw new Error('probe returned no row');
  const lag = row[2] === null || row[2] === undefined ? null : Number(row[2]);
  return {
    inRecovery: row[0] === 't',
    lsn: row[1] === null || row[1] === undefined ? null : parseLsn(row[1]),
    lagMs: lag === null || !Number.isFinite(lag) ? null : Math.max(0, lag),
  };
}


export class HealthMonitor {
  readonly hosts: readonly HostState[];
  private timer: Timer | null = null;
  private stopped = false;
  private started = false;
  private first: Promise<void> | null = null;
  /** The primary's WAL position per round, for time lag (see lagSince). */
  private readonly primaryHistory: Array<{ at: number; lsn: bigint }> = [];
  private firstDone = false;
  private round: Promise<void> | null = null;
  private roundStartedAt = -Infinity;
  /** A kicked round waiting for the minimum spacing. */
  private deferred: Timer | null = null;
  private roundWaiters: Array<() => void> = [];

  private readonly clock: Clock;
  private readonly probeRoles: boolean;
  private readonly breakers = new Map<string, CircuitBreaker>();
  private readonly addressBook: AddressBook;
  private readonly tracker = new PrimaryTracker();

  constructor(private readonly options: HealthMonitorOptions) {
    this.clock = options.clock ?? systemClock;
    this.probeRoles = options.probeRoles ?? true;
    this.addressBook = new AddressBook(options.resolve ?? lookupAll, this.clock);
    this.hosts = options.hosts.map((entry) => ({
      id: `${entry.host}:${entry.port}`,
      host: entry.host,
      port: entry.port,
      configuredRole: entry.role,
      role: entry.role === 'auto' ? 'unknown' : entry.role,
      up: true,
      weight: entry.weight ?? 1,
      activeConnections: 0,
      failures: 0,
      lastError: null,
      lsn: undefined,
      probedAt: null,
      breaker: 'closed',
      connectFailures: 0,
      addresses: null,
    }));
    const breakerOptions = options.circuitBreaker ?? DEFAULT_BREAKER;
    for (const host of this.hosts) {
      this.breakers.set(host.id, new CircuitBreaker(host.id, breakerOptions, this.clock, (change) => this.breakerChanged(change)));
    }
  }

  /** Starts probing (first round at once); resolves when the first round has finished. */
  start(): Promise<void> {
    if (!this.started) {
      this.started = true;
      this.first = this.probeAll().finally(() => {
        this.firstDone = true;
        this.schedule();
      });
    }
    return this.first!;
  }

  /** Whether start() was called. */
  get running(): boolean {
    return this.started && !this.stopped;
  }

  /**
   * Resolves after the first round (immediately if probing never started); while no host's role
   * is known yet (the probes could not log in), after a fresh round.
   */
  ready(): Promise<void> {
    if (this.first === null) return Promise.resolve();
    return this.firstDone && !this.anyRoleKnown ? this.probeAll() : this.first;
  }

  /** Whether any host's role is known (probed, or configured). */
  get anyRoleKnown(): boolean {
    return this.hosts.some((h) => h.role !== 'unknown');
  }

  /** The circuit breaker of a host ("host:port"), shared by every pool of that host. */
  breaker(id: string): CircuitBreaker | undefined {
    return this.breakers.get(id);
  }

  /** The host last known to be the primary, and since when a failover is under way (or null). */
  get primaryState(): { primary: string | null; failoverSince: number | null } {
    return { primary: this.tracker.primary, failoverSince: this.tracker.failoverSince };
  }

  /** Probes every host now (outside the schedule); shares a round already under way. */
  probeAll(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.round ??= this.runRound().finally(() => {
      this.round = null;
      const waiters = this.roundWaiters;
      this.roundWaiters = [];
      for (const wake of waiters) wake();
    });
    return this.round;
  }

  /**
   * Something suggests a host changed (a connect failed, a server went away): an extra round now,
   * unless one is under way or started less than min(interval/2, 200 ms) ago; then the current
   * round, or one at the end of that spacing, is the answer. Only once start() was called (before
   * that the probes may have no login).
   */
  kick(reason: string): void {
    if (!this.running || this.round !== null || this.deferred !== null) return;
    const gap = Math.min(this.options.intervalMs / 2, KICK_MIN_GAP_MS);
    const wait = this.roundStartedAt + gap - this.clock.now();
    this.options.log.debug({ reason, inMs: Math.max(0, wait) }, 'extra health round requested');
    if (wait <= 0) return void this.probeAll();
    this.deferred = this.clock.setTimeout(() => {
      this.deferred = null;
      void this.probeAll();
    }, wait);
    this.deferred.unref();
  }

  /** Resolves when the next round completes (the one under way, if any); at once once stopped. */
  nextRound(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => this.roundWaiters.push(resolve));
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) this.clock.clearTimeout(this.timer);
    if (this.deferred) this.clock.clearTimeout(this.deferred);
    this.timer = null;
    this.deferred = null;
    for (const breaker of this.breakers.values()) breaker.stop();
    for (const wake of this.roundWaiters.splice(0)) wake();
    this.options.prober.close();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.clock.setTimeout(() => {
      void this.probeAll().finally(() => this.schedule());
    }, this.options.intervalMs);
    this.timer.unref();
  }

  private async runRound(): Promise<void> {
    this.roundStartedAt = this.clock.now();
    const results = await Promise.allSettled(this.hosts.map((host) => this.check(host)));
    if (this.stopped) return;
    if (this.probeRoles) this.apply(results);
    else this.applyUnprobed(results);
    this.options.onRound?.(this.hosts);
  }

  /** One host's part of a round: its name looked up again, then the probe (null: not probed). */
  private async check(host: HostState): Promise<ProbeResult | null> {
    const entry: HostEntry = { host: host.host, port: host.port, role: host.configuredRole };
    if (isHostName(host.host)) await this.refreshAddresses(host, entry);
    if (!this.probeRoles && host.breaker !== 'open') return null;
    return this.options.prober.probe(entry, this.options.timeoutMs);
  }

  private async refreshAddresses(host: HostState, entry: HostEntry): Promise<void> {
    const change = await this.addressBook.refresh(host.id, host.host, this.options.timeoutMs);
    host.addresses = this.addressBook.addresses(host.id) ?? null;
    if (change === null || this.stopped) return;
    this.options.prober.forget?.(entry);
    this.emit({ type: 'address-changed', host: host.id, from: change.from, to: change.to, reason: `${host.host} now resolves to ${change.to.join(', ')}` });
  }

  /** Applies one round's results to every host at once, then publishes what changed. */
  private apply(results: ReadonlyArray<PromiseSettledResult<ProbeResult | null>>): void {
    const now = this.clock.now();
    const events: HealthEvent[] = [];
    let primaryLsn: bigint | undefined;
    results.forEach((result, i) => {
      const host = this.hosts[i]!;
      host.probedAt = now;
      if (result.status === 'rejected') return this.failed(host, result.reason, events);
      if (result.value === null) return;
      const probe = result.value;
      this.succeeded(host, probe, events);
      if (!probe.inRecovery && host.lsn !== undefined && (primaryLsn === undefined || host.lsn > primaryLsn)) primaryLsn = host.lsn;
    });
    if (primaryLsn !== undefined) this.remember(now, primaryLsn);
    for (const host of this.hosts) {
      if (host.role !== 'replica' || host.failures > 0) continue;
      host.lagBytes = primaryLsn !== undefined && host.lsn !== undefined ? Math.max(0, Number(primaryLsn - host.lsn)) : undefined;
      if (primaryLsn !== undefined && host.lsn !== undefined) host.lagMs = this.lagSince(now, host.lsn);
    }
    events.push(...this.tracker.observe(this.hosts, now));
    for (const event of events) this.emit(event);
  }

  /** Without role probes only a probe of an open-breaker host matters: it ends the open spell. */
  private applyUnprobed(results: ReadonlyArray<PromiseSettledResult<ProbeResult | null>>): void {
    results.forEach((result, i) => {
      const host = this.hosts[i]!;
      if (result.status === 'rejected') {
        host.lastError = errorText(result.reason);
        this.options.log.debug({ host: host.id, reason: host.lastError }, 'health check of an unprobed host failed');
      } else if (result.value !== null) {
        host.lastError = null;
        this.breakers.get(host.id)?.probeSucceeded();
      }
    });
  }

  private succeeded(host: HostState, probe: ProbeResult, events: HealthEvent[]): void {
    if (!host.up) events.push({ type: 'host-up', host: host.id, reason: `a probe succeeded after ${host.failures} failed` });
    host.up = true;
    host.failures = 0;
    host.lastError = null;
    this.setRole(host, probe.inRecovery ? 'replica' : 'primary', events);
    host.lsn = probe.lsn ?? undefined;
    if (probe.inRecovery) {
      host.replayLsn = host.lsn;
      host.lagMs = probe.lagMs ?? undefined;
    } else {
      host.replayLsn = undefined;
      host.lagMs = undefined;
      host.lagBytes = undefined;
    }
    this.breakers.get(host.id)?.probeSucceeded();
  }

  /** Keeps the primary's WAL position of each round (a bounded history, oldest first). */
  private remember(at: number, lsn: bigint): void {
    const last = this.primaryHistory.at(-1);
    if (last !== undefined && last.lsn === lsn) return; // nothing new: the earlier sample says more
    this.primaryHistory.push({ at, lsn });
    if (this.primaryHistory.length > PRIMARY_HISTORY) this.primaryHistory.shift();
  }

  /**
   * How long a replica at `replayLsn` has been behind: since the first sampled moment the primary
   * held WAL the replica has not replayed (0 when it has replayed everything sampled). Unlike
   * "now minus the last replayed commit", an idle spell before a write does not count as lag.
   */
  private lagSince(now: number, replayLsn: bigint): number {
    const firstAhead = this.primaryHistory.find((sample) => sample.lsn > replayLsn);
    return firstAhead === undefined ? 0 : Math.max(0, now - firstAhead.at);
  }

  private failed(host: HostState, reason: unknown, events: HealthEvent[]): void {
    host.failures += 1;
    host.lastError = errorText(reason);
    if (host.up && host.failures >= this.options.failureThreshold) {
      host.up = false;
      events.push({ type: 'host-down', host: host.id, failures: host.failures, reason: host.lastError });
    }
  }

  private setRole(host: HostState, observed: 'primary' | 'replica', events: HealthEvent[]): void {
    if (host.role === observed) return;
    const reason = observed === 'replica' ? 'pg_is_in_recovery() is true' : 'pg_is_in_recovery() is false';
    events.push({ type: 'role-changed', host: host.id, from: host.role, to: observed, configured: host.configuredRole, reason });
    host.role = observed;
  }

  private breakerChanged(change: BreakerTransition): void {
    const host = this.hosts.find((h) => h.id === change.host);
    if (host) host.breaker = change.to;
    if (this.stopped) return;
    const { reason } = change;
    if (change.to === 'open') {
      const retryInMs = Math.max(0, (change.retryAt ?? this.clock.now()) - this.clock.now());
      this.emit({ type: 'breaker-opened', host: change.host, reason, failures: change.failures, retryInMs });
    } else {
      this.emit({ type: change.to === 'closed' ? 'breaker-closed' : 'breaker-half-open', host: change.host, reason });
    }
  }

  private emit(event: HealthEvent): void {
    logHealthEvent(this.options.log, event);
    try {
      this.options.onEvent?.(event);
    } catch (err) {
      // An observer's bug must not stop the health loop; it is worth a log line, though.
      this.options.log.error({ err, event: event.type }, 'health event handler failed');
    }
  }
}

function errorText(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}
