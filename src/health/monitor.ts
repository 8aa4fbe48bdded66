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
// - Config reload: setOptions takes effect from the next round or breaker transition (a shorter
//   interval reschedules the pending round). setHosts swaps the host list in one synchronous step
//   (host-list.ts says what a kept host keeps); removed hosts lose their breaker and kept probe
//   connection, added ones get a breaker and a round at once (right after the one under way). A
//   round under way when the list changed applies only to hosts still listed.
// - Lag in bytes is measured against the primary's WAL position from the same round; lag in time
//   is how long ago the primary first held WAL the replica has not replayed (from the positions
//   of earlier rounds). Without a known primary, byte lag is unknown (an unknown lag counts as
//   too much where a bound is set) and time lag is the replica's own estimate.

import type { Logger } from 'pino';
import { systemClock, type Clock, type Timer } from '../lib/clock.ts';
import type { HostEntry } from '../pool/server-pool.ts';
import { CircuitBreaker, type BreakerTransition, type CircuitBreakerOptions } from './circuit-breaker.ts';
import { logHealthEvent, type HealthEvent } from './events.ts';
import { newHostState, nextHostList, type HostState } from './host-list.ts';
import { PrimaryTracker } from './primary-tracker.ts';
import type { Prober, ProbeResult } from './prober.ts';
import { AddressBook, isHostName, lookupAll, type Resolve } from './resolver.ts';

export type { HostState } from './host-list.ts';
export { PROBE_SQL, probeResultFromRow, type Prober, type ProbeResult } from './prober.ts';

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

/** What a config reload may change in the loop itself (see setOptions). */
export interface HealthSettings {
  intervalMs: number;
  timeoutMs: number;
  failureThreshold: number;
  circuitBreaker?: CircuitBreakerOptions;
}

/** Host ids ("host:port") a setHosts call added and removed. */
export interface HostListDelta {
  added: string[];
  removed: string[];
}

const DEFAULT_BREAKER: CircuitBreakerOptions = { threshold: 5, cooldownMs: 10_000 };

/** The shortest spacing of rounds asked for by kick() (half the interval when that is shorter). */
const KICK_MIN_GAP_MS = 200;

/** Rounds of primary WAL positions kept for measuring replicas' time lag. */
const PRIMARY_HISTORY = 1024;

export class HealthMonitor {
  private hostList: readonly HostState[];
  /** The pending interval timer (null while a scheduled round runs), and when its wait began. */
  private timer: Timer | null = null;
  private waitFrom = 0;
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
  /** Hosts were added during a round: another one follows it at once. */
  private again = false;

  private readonly clock: Clock;
  private options: HealthMonitorOptions;
  private probeRoles: boolean;
  private readonly breakers = new Map<string, CircuitBreaker>();
  private readonly addressBook: AddressBook;
  /** The address book's key per host: a host removed and added again starts without a baseline. */
  private readonly addressKeys = new WeakMap<HostState, string>();
  private addressSerial = 0;
  private tracker = new PrimaryTracker();
  /** Hosts whose role a probe has told (the configured role no longer counts for them). */
  private learned = new WeakSet<HostState>();

  constructor(options: HealthMonitorOptions) {
    this.options = options;
    this.clock = options.clock ?? systemClock;
    this.probeRoles = options.probeRoles ?? true;
    this.addressBook = new AddressBook(options.resolve ?? lookupAll, this.clock);
    this.hostList = options.hosts.map(newHostState);
    for (const host of this.hostList) this.addBreaker(host);
  }

  /** The health snapshot routing reads: live objects, the array replaced whole by setHosts. */
  get hosts(): readonly HostState[] {
    return this.hostList;
  }

  /** Whether rounds probe roles (false with a single host; see the file comment). */
  get probingRoles(): boolean {
    return this.probeRoles;
  }

  /** Config reload: new interval, timeout, threshold and breaker options (see the file comment). */
  setOptions(next: HealthSettings): void {
    const { circuitBreaker, ...loop } = next;
    this.options = { ...this.options, ...loop, ...(circuitBreaker ? { circuitBreaker } : {}) };
    for (const breaker of this.breakers.values()) breaker.setOptions(this.breakerOptions());
    if (this.timer === null) return; // a round is under way (or none scheduled): the next wait uses the new interval
    this.clock.clearTimeout(this.timer);
    this.schedule(this.waitFrom);
  }

  /**
   * Config reload: the hosts are now `entries` (in order), roles probed or not; swapped in one
   * step. Kept hosts keep their state (host-list.ts); see the file comment for the rest.
   */
  setHosts(entries: readonly HostEntry[], probeRoles: boolean): HostListDelta {
    const before = this.probeRoles;
    const change = nextHostList(this.hostList, entries, { before, after: probeRoles, learned: (host) => this.learned.has(host) });
    for (const host of change.removed) {
      this.breakers.get(host.id)?.stop();
      this.breakers.delete(host.id);
      this.options.prober.forget?.(entryOf(host));
    }
    for (const host of change.added) this.addBreaker(host);
    this.hostList = change.hosts;
    this.probeRoles = probeRoles;
    if (!probeRoles) this.learned = new WeakSet();
    // Who the primary was means nothing once roles are not probed, or once that host is gone:
    // the next round discovers the primary afresh (no failover is reported for a removed host).
    const primary = this.tracker.primary;
    if (probeRoles !== before || change.removed.some((host) => host.id === primary)) this.tracker = new PrimaryTracker();
    if (change.added.length > 0 || (probeRoles && !before)) this.probeSoon();
    return { added: change.added.map((host) => host.id), removed: change.removed.map((host) => host.id) };
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
    return this.hostList.some((h) => h.role !== 'unknown');
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
      if (this.again) {
        this.again = false;
        void this.probeAll();
      }
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

  /** A round now, or right after the one under way (hosts were added); only once start() was called. */
  private probeSoon(): void {
    if (!this.running) return;
    if (this.round !== null) {
      this.again = true;
      return;
    }
    if (this.deferred !== null) this.clock.clearTimeout(this.deferred);
    this.deferred = null;
    void this.probeAll();
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

  /** The next scheduled round: one interval after `from` (a reload may move it; see setOptions). */
  private schedule(from = this.clock.now()): void {
    if (this.stopped) return;
    this.waitFrom = from;
    this.timer = this.clock.setTimeout(
      () => {
        this.timer = null;
        void this.probeAll().finally(() => this.schedule());
      },
      Math.max(0, from + this.options.intervalMs - this.clock.now()),
    );
    this.timer.unref();
  }

  private async runRound(): Promise<void> {
    this.roundStartedAt = this.clock.now();
    const hosts = this.hostList;
    const probeRoles = this.probeRoles;
    const results = await Promise.allSettled(hosts.map((host) => this.check(host, probeRoles)));
    if (this.stopped) return;
    // Role probes were switched on or off meanwhile: these results answer another question.
    if (probeRoles !== this.probeRoles) return;
    const listed = new Set(this.hostList);
    const outcomes = hosts.flatMap((host, i) => (listed.has(host) ? [{ host, result: results[i]! }] : []));
    if (probeRoles) this.apply(outcomes);
    else this.applyUnprobed(outcomes);
    this.options.onRound?.(this.hostList);
  }

  /** One host's part of a round: its name looked up again, then the probe (null: not probed). */
  private async check(host: HostState, probeRoles: boolean): Promise<ProbeResult | null> {
    const entry = entryOf(host);
    if (isHostName(host.host)) await this.refreshAddresses(host, entry);
    if (!probeRoles && host.breaker !== 'open') return null;
    return this.options.prober.probe(entry, this.options.timeoutMs);
  }

  private async refreshAddresses(host: HostState, entry: HostEntry): Promise<void> {
    const key = this.addressKey(host);
    const change = await this.addressBook.refresh(key, host.host, this.options.timeoutMs);
    host.addresses = this.addressBook.addresses(key) ?? null;
    if (change === null || this.stopped || !this.hostList.includes(host)) return;
    this.options.prober.forget?.(entry);
    this.emit({ type: 'address-changed', host: host.id, from: change.from, to: change.to, reason: `${host.host} now resolves to ${change.to.join(', ')}` });
  }

  /** Applies one round's results to every host at once, then publishes what changed. */
  private apply(outcomes: readonly RoundOutcome[]): void {
    const now = this.clock.now();
    const events: HealthEvent[] = [];
    let primaryLsn: bigint | undefined;
    outcomes.forEach(({ host, result }) => {
      host.probedAt = now;
      if (result.status === 'rejected') return this.failed(host, result.reason, events);
      if (result.value === null) return;
      const probe = result.value;
      this.succeeded(host, probe, events);
      if (!probe.inRecovery && host.lsn !== undefined && (primaryLsn === undefined || host.lsn > primaryLsn)) primaryLsn = host.lsn;
    });
    if (primaryLsn !== undefined) this.remember(now, primaryLsn);
    for (const host of this.hostList) {
      if (host.role !== 'replica' || host.failures > 0) continue;
      host.lagBytes = primaryLsn !== undefined && host.lsn !== undefined ? Math.max(0, Number(primaryLsn - host.lsn)) : undefined;
      if (primaryLsn !== undefined && host.lsn !== undefined) host.lagMs = this.lagSince(now, host.lsn);
    }
    events.push(...this.tracker.observe(this.hostList, now));
    for (const event of events) this.emit(event);
  }

  /** Without role probes only a probe of an open-breaker host matters: it ends the open spell. */
  private applyUnprobed(outcomes: readonly RoundOutcome[]): void {
    outcomes.forEach(({ host, result }) => {
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
    this.learned.add(host);
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

  private addBreaker(host: HostState): void {
    const breaker: CircuitBreaker = new CircuitBreaker(host.id, this.breakerOptions(), this.clock, (change) => this.breakerChanged(breaker, change));
    this.breakers.set(host.id, breaker);
  }

  private breakerOptions(): CircuitBreakerOptions {
    return this.options.circuitBreaker ?? DEFAULT_BREAKER;
  }

  private addressKey(host: HostState): string {
    let key = this.addressKeys.get(host);
    if (key === undefined) this.addressKeys.set(host, (key = `${host.id}#${++this.addressSerial}`));
    return key;
  }

  private breakerChanged(breaker: CircuitBreaker, change: BreakerTransition): void {
    // A connect that was under way when its host was removed: the host's breaker is gone with it.
    if (this.breakers.get(change.host) !== breaker) return;
    const host = this.hostList.find((h) => h.id === change.host);
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

interface RoundOutcome {
  host: HostState;
  result: PromiseSettledResult<ProbeResult | null>;
}

function entryOf(host: HostState): HostEntry {
  return { host: host.host, port: host.port, role: host.configuredRole };
}

function errorText(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}
