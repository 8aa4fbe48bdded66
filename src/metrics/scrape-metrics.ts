// Metrics read at scrape time from a MetricsSource: client and server connections, pools, hosts
// (up, role, lag, breaker), pinned sessions, credential expiry, bytes, cancel requests, paused,
// build info.
//
// Invariants:
// - One scrape reads the source once: collectors share a snapshot taken by the first of them and
//   dropped at the next microtask (prom-client starts every collector in one synchronous loop).
// - Every gauge is reset before it is set, so what left the source (a host removed by a reload,
//   a credential entry dropped) leaves the output.
// - One-hot gauges (role, breaker) list every state: 1 for the current one, 0 for the others.
// - Byte totals are counters fed by differences, so they never go down (a source that starts
//   again from 0 adds its new total).

import { Counter, Gauge, type Registry } from 'prom-client';
import type { CredentialEntrySnapshot } from '../credentials/cache.ts';
import { CANCEL_RESULTS, type CancelResult } from '../frontend/cancel-registry.ts';
import type { HostState } from '../health/monitor.ts';
import { ReasonLabels } from './labels.ts';
import { PIN_REASONS } from './traffic-metrics.ts';

/** What the metrics read at scrape time; every method is a cheap getter over live state. */
export interface MetricsSource {
  /** Client connections now, by state. login: not yet authenticated/connected upstream. */
  clients(): { login: number; active: number; idle: number; waiting: number };
  /** One entry per server pool (host, database, user). */
  pools(): ReadonlyArray<{ host: string; role: string; database: string; user: string; size: number; idle: number; active: number; connecting: number; waiting: number }>;
  hosts(): ReadonlyArray<HostState>;
  credentials(): ReadonlyArray<CredentialEntrySnapshot>;
  /** Sessions pinned to their server now, by reason. */
  pinned(): ReadonlyMap<string, number>;
  /** Bytes from clients (received) and to clients (sent) since start. */
  bytes(): { received: number; sent: number };
  /** Cancel requests since start by result, and those on their way to a server now. */
  cancels(): { results: Readonly<Record<CancelResult, number>>; inFlight: number };
  paused(): boolean;
  /** Epoch ms (tests pass a fixed clock). */
  now(): number;
}

export const CLIENT_STATES = ['login', 'active', 'idle', 'waiting'] as const;
export const SERVER_STATES = ['active', 'idle', 'connecting'] as const;
export const HOST_ROLES = ['primary', 'replica', 'unknown'] as const;
export const BREAKER_STATES = ['closed', 'open', 'half-open'] as const;

type PoolInfo = ReturnType<MetricsSource['pools']>[number];

interface Snapshot {
  clients: ReturnType<MetricsSource['clients']>;
  pools: ReturnType<MetricsSource['pools']>;
  hosts: ReturnType<MetricsSource['hosts']>;
  credentials: ReturnType<MetricsSource['credentials']>;
  pinned: ReturnType<MetricsSource['pinned']>;
  bytes: ReturnType<MetricsSource['bytes']>;
  cancels: ReturnType<MetricsSource['cancels']>;
  paused: boolean;
  now: number;
}

/** A pool summary per host: what the host's pools hold, and the largest pool size. */
interface HostPools {
  role: string;
  active: number;
  idle: number;
  connecting: number;
  waiting: number;
  size: number;
}

export function registerScrapeMetrics(registry: Registry, source: MetricsSource, version: string): void {
  const registers = [registry];
  let taken: Snapshot | null = null;
  const scrape = (): Snapshot => {
    if (taken === null) {
      taken = readSource(source);
      queueMicrotask(() => (taken = null));
    }
    return taken;
  };
  // A gauge whose values are all rewritten at each scrape by `fill`.
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[], fill: (gauge: Gauge<L>, now: Snapshot) => void): void => {
    const metric: Gauge<L> = new Gauge({
      name,
      help,
      labelNames,
      registers,
      collect: () => {
        metric.reset();
        fill(metric, scrape());
      },
    });
  };

  gauge('pg_ambassador_client_connections', 'Client connections now, by state (login: not yet authenticated or connected upstream).', ['state'], (g, now) => {
    for (const state of CLIENT_STATES) g.set({ state }, finite(now.clients[state]));
  });
  registerPoolGauges(gauge);
  const pinLabels = new ReasonLabels((label) => label);
  gauge('pg_ambassador_pinned_sessions', 'Sessions pinned to their server connection now, by reason.', ['reason'], (g, now) => {
    for (const reason of PIN_REASONS) g.set({ reason }, 0);
    for (const [reason, count] of now.pinned) g.inc({ reason: pinLabels.get(reason) }, finite(count));
  });
  registerHostGauges(gauge);
  registerCredentialGauges(gauge);
  monotonicCounter(registry, 'pg_ambassador_client_bytes_received_total', 'Bytes received from clients.', () => scrape().bytes.received);
  monotonicCounter(registry, 'pg_ambassador_client_bytes_sent_total', 'Bytes sent to clients.', () => scrape().bytes.sent);
  monotonicCounter(
    registry,
    'pg_ambassador_cancel_requests_total',
    'Cancel requests from clients, by result (sent; idle: nothing ran; no-match: unknown key; too-many: dropped, listen.maxConcurrentCancels).',
    (result) => scrape().cancels.results[result],
    { name: 'result', values: CANCEL_RESULTS },
  );
  gauge('pg_ambassador_cancels_in_flight', 'Cancel requests on their way to a server now; each holds its client connection open until it lands.', [], (g, now) => g.set(finite(now.cancels.inFlight)));
  gauge('pg_ambassador_paused', 'Whether the ambassador is paused (PAUSE): 1 paused, 0 serving.', [], (g, now) => g.set(now.paused ? 1 : 0));
  new Gauge({ name: 'pg_ambassador_build_info', help: 'Always 1; labelled with the running version.', labelNames: ['version'] as const, registers }).set({ version }, 1);
}

type DefineGauge = <L extends string>(name: string, help: string, labelNames: readonly L[], fill: (gauge: Gauge<L>, now: Snapshot) => void) => void;

function registerPoolGauges(gauge: DefineGauge): void {
  gauge('pg_ambassador_server_connections', 'Server connections now, by host, its role and state (active|idle|connecting), over all its pools.', ['host', 'role', 'state'], (g, now) => {
    for (const [host, pools] of byHost(now)) for (const state of SERVER_STATES) g.set({ host, role: pools.role, state }, pools[state]);
  });
  gauge('pg_ambassador_pool_size', 'Most server connections one pool (database, user) of the host may hold.', ['host'], (g, now) => {
    for (const [host, pools] of byHost(now)) g.set({ host }, pools.size);
  });
  gauge('pg_ambassador_pool_waiting_clients', 'Clients waiting now for a server connection to the host.', ['host'], (g, now) => {
    for (const [host, pools] of byHost(now)) g.set({ host }, pools.waiting);
  });
}

function registerHostGauges(gauge: DefineGauge): void {
  gauge('pg_ambassador_host_up', 'Whether the host answers health probes: 1 up, 0 down.', ['host'], (g, now) => {
    for (const host of now.hosts) g.set({ host: host.id }, host.up ? 1 : 0);
  });
  gauge('pg_ambassador_host_role', 'The host role: 1 for its current role (primary|replica|unknown), 0 for the others.', ['host', 'role'], (g, now) => {
    for (const host of now.hosts) {
      const current = oneOf(HOST_ROLES, host.role, 'unknown');
      for (const role of HOST_ROLES) g.set({ host: host.id, role }, role === current ? 1 : 0);
    }
  });
  gauge('pg_ambassador_replica_lag_bytes', 'Bytes of WAL a replica has not replayed yet (replicas whose lag is known).', ['host'], (g, now) => {
    for (const host of now.hosts) if (host.role === 'replica' && isNumber(host.lagBytes)) g.set({ host: host.id }, host.lagBytes);
  });
  gauge('pg_ambassador_replica_lag_seconds', 'How far a replica replay is behind the primary, in seconds (replicas whose lag is known).', ['host'], (g, now) => {
    for (const host of now.hosts) if (host.role === 'replica' && isNumber(host.lagMs)) g.set({ host: host.id }, host.lagMs / 1000);
  });
  gauge('pg_ambassador_circuit_breaker_state', 'The host circuit breaker: 1 for its current state (closed|open|half-open), 0 for the others.', ['host', 'state'], (g, now) => {
    for (const host of now.hosts) {
      const current = oneOf(BREAKER_STATES, host.breaker, 'closed');
      for (const state of BREAKER_STATES) g.set({ host: host.id, state }, state === current ? 1 : 0);
    }
  });
  gauge('pg_ambassador_host_active_connections', 'Server connections to the host in use by clients now.', ['host'], (g, now) => {
    for (const host of now.hosts) g.set({ host: host.id }, finite(host.activeConnections));
  });
}

function registerCredentialGauges(gauge: DefineGauge): void {
  gauge('pg_ambassador_credential_expiry_seconds', 'Seconds until the cached upstream secret expires (negative: expired); absent for secrets without expiry.', ['provider', 'login'], (g, now) => {
    for (const entry of now.credentials) {
      const expiresAt = entry.expiresAt?.getTime();
      if (isNumber(expiresAt)) g.set({ provider: entry.provider, login: entry.login }, (expiresAt - now.now) / 1000);
    }
  });
  gauge('pg_ambassador_credential_refresh_failures', 'Consecutive failed refreshes of the upstream secret (0: the last one worked).', ['provider', 'login'], (g, now) => {
    for (const entry of now.credentials) g.set({ provider: entry.provider, login: entry.login }, finite(entry.consecutiveFailures));
  });
}

/**
 * A counter fed by totals the source keeps: one series per value of `label`, or one unlabelled
 * series without it. Fed by differences, so it never goes down: a total less than before means
 * the source started again from 0, and what it has now is all new.
 */
function monotonicCounter<V extends string>(registry: Registry, name: string, help: string, total: (value: V) => number, label?: { name: string; values: readonly V[] }): void {
  const values = label?.values ?? ['' as V];
  const last = new Map(values.map((value) => [value, 0]));
  const counter: Counter<string> = new Counter({
    name,
    help,
    labelNames: label ? [label.name] : [],
    registers: [registry],
    collect: () => {
      for (const value of values) {
        const current = finite(total(value));
        const before = last.get(value) ?? 0;
        counter.inc(label ? { [label.name]: value } : {}, current >= before ? current - before : current);
        last.set(value, current);
      }
    },
  });
}

/** The pools grouped by host; a host known to the health loop gets its role from there. */
function byHost(now: Snapshot): Map<string, HostPools> {
  const roles = new Map<string, string>();
  for (const host of now.hosts) roles.set(host.id, host.role);
  const hosts = new Map<string, HostPools>();
  for (const pool of now.pools) {
    let sum = hosts.get(pool.host);
    if (sum === undefined) hosts.set(pool.host, (sum = { role: roles.get(pool.host) ?? pool.role, active: 0, idle: 0, connecting: 0, waiting: 0, size: 0 }));
    addPool(sum, pool);
  }
  return hosts;
}

function addPool(sum: HostPools, pool: PoolInfo): void {
  sum.active += finite(pool.active);
  sum.idle += finite(pool.idle);
  sum.connecting += finite(pool.connecting);
  sum.waiting += finite(pool.waiting);
  sum.size = Math.max(sum.size, finite(pool.size));
}

function readSource(source: MetricsSource): Snapshot {
  return {
    clients: source.clients(),
    pools: source.pools(),
    hosts: source.hosts(),
    credentials: source.credentials(),
    pinned: source.pinned(),
    bytes: source.bytes(),
    cancels: source.cancels(),
    paused: source.paused(),
    now: source.now(),
  };
}

function isNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

function finite(value: unknown): number {
  return isNumber(value) ? value : 0;
}

function oneOf<T extends string>(values: readonly T[], value: unknown, fallback: T): T {
  return (values as readonly unknown[]).includes(value) ? (value as T) : fallback;
}
