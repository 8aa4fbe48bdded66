// Part of the composition root: what the observers (the SQL admin console, the metrics) read,
// gathered from the running parts. The console and metrics modules only see these plain views.

import type { ConsoleSource, PoolRow, RouteRow, StatsRow } from './admin/console.ts';
import { formatConfigValue, restartRequired } from './app-reload.ts';
import { DEFAULTS, type Config } from './config/index.ts';
import { isSecretKey, REDACTED } from './config/redact.ts';
import type { CredentialEntrySnapshot } from './credentials/cache.ts';
import { noCancelResults } from './frontend/cancel-registry.ts';
import type { RoutingContext } from './frontend/client-routing.ts';
import type { Listener } from './frontend/listener.ts';
import type { ClientSession } from './frontend/session.ts';
import type { TrafficStats } from './frontend/traffic.ts';
import type { MetricsSource } from './metrics/metrics.ts';
import { formatLsn } from './pool/host-choice.ts';
import type { Pooler } from './pool/pooler.ts';
import { createClassifier, describeClassification, EMPTY_FUNCTION_CATALOG, type Classifier } from './router/classifier.ts';

/** How long PAUSE waits for leased server connections to come back before it answers anyway. */
const PAUSE_DRAIN_BOUND_MS = 30_000;

export interface ObservedParts {
  version: string;
  config: () => Config;
  listener: Listener;
  pool: Pooler;
  traffic: TrafficStats;
  routing: RoutingContext;
  credentials: () => CredentialEntrySnapshot[];
  reload: (reason: string) => Promise<{ config: { ok: boolean; error?: string; changed?: string[]; restartRequired?: string[] } }>;
}

const NO_CANCELS = Object.freeze(noCancelResults());

/** What the metrics read at each scrape; zeros until the parts exist (nothing scrapes before). */
export function metricsSource(observed: () => ObservedParts | null): MetricsSource {
  return {
    clients: () => observed()?.listener.activity() ?? { login: 0, active: 0, idle: 0, waiting: 0 },
    pools: () => observed()?.pool.poolSummaries() ?? [],
    hosts: () => observed()?.pool.hosts ?? [],
    credentials: () => observed()?.credentials() ?? [],
    pinned: () => observed()?.listener.pinned() ?? new Map(),
    bytes: () => observed()?.traffic.bytes() ?? { received: 0, sent: 0 },
    cancels: () => {
      const cancels = observed()?.listener.cancels;
      return { results: cancels?.results ?? NO_CANCELS, inFlight: cancels?.pending ?? 0 };
    },
    paused: () => observed()?.pool.paused ?? false,
    now: () => Date.now(),
  };
}

export function consoleSource(parts: ObservedParts): ConsoleSource {
  // Without splitting there is no per-database classifier: SHOW ROUTE builds one (once).
  let fallback: Promise<Classifier> | null = null;
  const classifier = (): Promise<Classifier> => (fallback ??= createClassifier({ functions: EMPTY_FUNCTION_CATALOG }));
  return {
    version: parts.version,
    pools: () => poolRows(parts),
    stats: () => statsRows(parts.traffic),
    clients: () => [...parts.listener.sessions].filter((s) => s.state !== 'closed' && s.state !== 'cancel').map((s) => clientRow(s)),
    servers: () =>
      parts.pool.servers().map((s) => ({
        type: 'S' as const,
        user: s.user,
        database: s.database,
        state: s.state,
        addr: s.host.slice(0, s.host.lastIndexOf(':')),
        port: Number(s.host.slice(s.host.lastIndexOf(':') + 1)),
        local_addr: s.localAddress,
        local_port: s.localPort,
        connect_time: timestamp(s.connectedAt),
        request_time: timestamp(s.lastUsedAt),
        remote_pid: s.processId,
        tls: s.tls ? 'yes' : 'no',
        role: s.role,
      })),
    hosts: () =>
      parts.pool.hosts.map((h) => ({
        host: h.host,
        port: h.port,
        role: h.role,
        configured_role: h.configuredRole,
        up: h.up,
        breaker: h.breaker,
        failures: h.failures,
        lag_bytes: h.lagBytes ?? null,
        lag_seconds: h.lagMs === undefined ? null : h.lagMs / 1000,
        replay_lsn: h.replayLsn === undefined ? null : formatLsn(h.replayLsn),
        active_connections: h.activeConnections,
        weight: h.weight,
        last_error: h.lastError,
      })),
    config: () => configRows(parts.config()),
    route: (sql) => routeRow(parts, sql, classifier),
    reload: async () => {
      const report = await parts.reload('admin console RELOAD');
      if (!report.config.ok) return { ok: false, error: report.config.error ?? 'reload failed' };
      const changed = report.config.changed ?? [];
      const restart = report.config.restartRequired ?? [];
      const summary = changed.length === 0 ? 'configuration reloaded: nothing changed' : `configuration reloaded: ${changed.join(', ')} changed`;
      return { ok: true, summary: restart.length > 0 ? `${summary}; ${restart.join(', ')} need a restart to take effect` : summary };
    },
    pause: () => parts.pool.pause(PAUSE_DRAIN_BOUND_MS),
    resume: () => parts.pool.resume(),
  };
}

/** One row per (database, user) as PgBouncer: clients by state, servers summed over the hosts. */
function poolRows(parts: ObservedParts): PoolRow[] {
  const rows = new Map<string, PoolRow>();
  const mode = parts.config().pool.mode;
  const row = (database: string, user: string): PoolRow => {
    const key = `${database}\u0000${user}`;
    let found = rows.get(key);
    if (found === undefined) {
      found = {
        database, user, cl_active: 0, cl_waiting: 0, cl_active_cancel_req: 0, cl_waiting_cancel_req: 0, sv_active: 0, sv_active_cancel: 0,
        sv_being_canceled: 0, sv_idle: 0, sv_used: 0, sv_tested: 0, sv_login: 0, maxwait: 0, maxwait_us: 0, pool_mode: mode,
      };
      rows.set(key, found);
    }
    return found;
  };
  const now = performance.now();
  for (const session of parts.listener.sessions) {
    if (session.meter === null) continue; // logging in, or the console
    const upstream = session.upstreamLogin;
    const target = row(upstream.database, upstream.user);
    if (session.activity === 'waiting') {
      target.cl_waiting++;
      const since = session.meter.waitingSince;
      if (since >= 0) setMaxWait(target, (now - since) * 1000);
    } else target.cl_active++;
    // The cancel connections on their way, counted in the pool of the session they cancel. None
    // waits (cl_waiting_cancel_req): a cancel goes at once, or is dropped past maxConcurrentCancels.
    target.cl_active_cancel_req += parts.listener.cancels.pendingFor(session);
  }
  for (const pool of parts.pool.poolSummaries()) {
    const target = row(pool.database, pool.user);
    target.sv_active += pool.active;
    target.sv_active_cancel += pool.cancelling;
    target.sv_being_canceled += pool.beingCanceled;
    target.sv_idle += pool.idle;
    target.sv_login += pool.connecting;
    setMaxWait(target, pool.maxWaitMs * 1000);
  }
  return [...rows.values()].sort((a, b) => a.database.localeCompare(b.database) || a.user.localeCompare(b.user));
}

function setMaxWait(row: PoolRow, waitedUs: number): void {
  const total = Math.max(row.maxwait * 1e6 + row.maxwait_us, Math.round(waitedUs));
  row.maxwait = Math.floor(total / 1e6);
  row.maxwait_us = total % 1e6;
}

function statsRows(traffic: TrafficStats): StatsRow[] {
  return traffic.totals().map((t) => {
    const avg = traffic.averages(t.database);
    return {
      database: t.database,
      total_xact_count: t.xacts,
      total_query_count: t.queries,
      total_received: t.received,
      total_sent: t.sent,
      total_xact_time: t.xactTimeUs,
      total_query_time: t.queryTimeUs,
      total_wait_time: t.waitTimeUs,
      avg_xact_count: avg.xacts,
      avg_query_count: avg.queries,
      avg_recv: avg.received,
      avg_sent: avg.sent,
      avg_xact_time: avg.xactTimeUs,
      avg_query_time: avg.queryTimeUs,
      avg_wait_time: avg.waitTimeUs,
    };
  });
}

function clientRow(session: ClientSession) {
  const meter = session.meter;
  const waitingUs = meter !== null && meter.waitingSince >= 0 ? Math.round((performance.now() - meter.waitingSince) * 1000) : 0;
  const server = session.serverConnection;
  return {
    type: 'C' as const,
    user: session.user,
    database: session.database,
    state: session.state === 'console' ? 'console' : session.activity,
    addr: session.remote.address,
    port: session.remote.port,
    local_addr: session.localAddress.address,
    local_port: session.localAddress.port,
    connect_time: timestamp(session.connectedAt),
    request_time: meter !== null && meter.lastRequestAt >= 0 ? timestamp(performance.timeOrigin + meter.lastRequestAt) : timestamp(session.connectedAt),
    wait: Math.floor(waitingUs / 1e6),
    wait_us: waitingUs % 1e6,
    tls: session.tls ? 'yes' : 'no',
    application_name: session.applicationName,
    id: session.id,
    pinned: session.pinReasons.join(','),
    server: server === null ? '' : `${server.target.host}:${server.target.port}`,
  };
}

function timestamp(epochMs: number): string {
  return new Date(epochMs).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

/** Every leaf of the effective config, secrets redacted, with its default and whether a reload applies it. */
function configRows(config: Config): Array<{ key: string; value: string; default: string; changeable: 'yes' | 'no' }> {
  const rows: Array<{ key: string; value: string; default: string; changeable: 'yes' | 'no' }> = [];
  const walk = (value: unknown, defaults: unknown, path: string): void => {
    if (value !== null && typeof value === 'object' && !Array.isArray(value) && !isLsnOrLag(value)) {
      for (const [key, item] of Object.entries(value)) {
        if (item === undefined) continue;
        walk(item, (defaults as Record<string, unknown> | undefined)?.[key], path === '' ? key : `${path}.${key}`);
      }
      return;
    }
    const last = path.slice(path.lastIndexOf('.') + 1);
    const secret = isSecretKey(last) || (Array.isArray(value) && path === 'clientAuth.users');
    rows.push({
      key: path,
      value: secret ? REDACTED : formatConfigValue(value),
      default: defaults === undefined ? '' : formatConfigValue(defaults),
      changeable: restartRequired(path) ? 'no' : 'yes',
    });
  };
  walk(config, DEFAULTS, '');
  return rows;
}

function isLsnOrLag(value: object): boolean {
  const keys = Object.keys(value);
  return keys.length === 1 && (keys[0] === 'ms' || keys[0] === 'bytes');
}

/** How a statement would be routed now: the classifier of the configured (or busiest) database. */
async function routeRow(parts: ObservedParts, sql: string, fallback: () => Promise<Classifier>): Promise<RouteRow> {
  const config = parts.config();
  const catalogs = parts.routing.catalogs;
  let classifier;
  if (catalogs !== null) {
    const database = config.upstream.database ?? parts.traffic.totals()[0]?.database ?? config.upstream.user ?? 'postgres';
    classifier = catalogs.classifierFor({ user: config.upstream.user ?? database, database, params: new Map() });
  } else {
    classifier = await fallback();
  }
  const classification = classifier.classify(sql);
  const route = catalogs !== null && classification.route === 'read' ? 'replica' : 'primary';
  const choice = parts.pool.choose({ kind: route === 'replica' ? 'read' : 'write' });
  return {
    route,
    reason: catalogs === null ? 'split-off' : classification.reason,
    classification: describeClassification(classification),
    host: choice.host?.id ?? null,
    host_reason: choice.reason,
  };
}
