// Health of the upstream hosts, off the hot path: every `interval`, each host is probed (one
// short query on a connection kept for probing) and the results become the snapshot routing
// reads: role (from pg_is_in_recovery(), whatever the config says), up/down, replica lag in bytes
// and time, and the replica's replayed WAL position (for read-your-writes).
//
// Invariants:
// - The HostState objects are created once and updated in place at the end of a round, all in
//   one synchronous step, so a routing decision never sees half a round.
// - A host is marked down after `failureThreshold` consecutive failed probes, up after one success.
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
}

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

  private readonly clock: Clock;

  constructor(private readonly options: HealthMonitorOptions) {
    this.clock = options.clock ?? systemClock;
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
    }));
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

  /** Probes every host now (outside the schedule); shares a round already under way. */
  probeAll(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.round ??= this.runRound().finally(() => (this.round = null));
    return this.round;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = null;
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
    const { prober, timeoutMs } = this.options;
    const results = await Promise.allSettled(
      this.hosts.map((h) => prober.probe({ host: h.host, port: h.port, role: h.configuredRole }, timeoutMs)),
    );
    if (this.stopped) return;
    this.apply(results);
    this.options.onRound?.(this.hosts);
  }

  /** Applies one round's results to every host at once. */
  private apply(results: ReadonlyArray<PromiseSettledResult<ProbeResult>>): void {
    const now = this.clock.now();
    let primaryLsn: bigint | undefined;
    results.forEach((result, i) => {
      const host = this.hosts[i]!;
      host.probedAt = now;
      if (result.status === 'rejected') return this.failed(host, result.reason);
      const probe = result.value;
      if (!host.up) this.options.log.info({ host: host.id }, 'host is up again');
      host.up = true;
      host.failures = 0;
      host.lastError = null;
      this.setRole(host, probe.inRecovery ? 'replica' : 'primary');
      host.lsn = probe.lsn ?? undefined;
      if (probe.inRecovery) {
        host.replayLsn = host.lsn;
        host.lagMs = probe.lagMs ?? undefined;
      } else {
        host.replayLsn = undefined;
        host.lagMs = undefined;
        host.lagBytes = undefined;
        if (host.lsn !== undefined && (primaryLsn === undefined || host.lsn > primaryLsn)) primaryLsn = host.lsn;
      }
    });
    if (primaryLsn !== undefined) this.remember(now, primaryLsn);
    for (const host of this.hosts) {
      if (host.role !== 'replica' || host.failures > 0) continue;
      host.lagBytes = primaryLsn !== undefined && host.lsn !== undefined ? Math.max(0, Number(primaryLsn - host.lsn)) : undefined;
      if (primaryLsn !== undefined && host.lsn !== undefined) host.lagMs = this.lagSince(now, host.lsn);
    }
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

  private failed(host: HostState, reason: unknown): void {
    host.failures += 1;
    host.lastError = reason instanceof Error ? reason.message : String(reason);
    if (host.up && host.failures >= this.options.failureThreshold) {
      host.up = false;
      this.options.log.warn({ host: host.id, failures: host.failures, reason: host.lastError }, 'host is down');
    }
  }

  private setRole(host: HostState, observed: 'primary' | 'replica'): void {
    if (host.role === observed) return;
    const configured = host.configuredRole;
    if (configured !== 'auto' && configured !== observed) {
      this.options.log.error({ host: host.id, configured, observed }, 'host role differs from the configured one; routing follows the server');
    } else {
      this.options.log.info({ host: host.id, role: observed, was: host.role }, 'host role discovered');
    }
    host.role = observed;
  }
}
