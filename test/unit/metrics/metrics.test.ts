// AmbassadorMetrics over a fake MetricsSource: events and traffic calls go in, the exposition
// text of a scrape is parsed back (name{labels} value) and checked value by value: request
// reasons normalised and capped, histogram buckets, error classes, host gauges (one-hot role and
// breaker, removed hosts gone), credential expiry on a fixed clock, failovers counted only when the
// primary changed, reload counters, monotonic byte counters, build info, and a registry of its own.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { register as globalRegistry } from 'prom-client';
import type { CredentialEntrySnapshot } from '../../../src/credentials/cache.ts';
import type { HealthEvent } from '../../../src/health/events.ts';
import type { HostState } from '../../../src/health/monitor.ts';
import { AmbassadorMetrics, type MetricsSource } from '../../../src/metrics/metrics.ts';

type Pool = ReturnType<MetricsSource['pools']>[number];

/** A MetricsSource whose answers the test sets field by field. */
class FakeSource implements MetricsSource {
  clientCounts = { login: 0, active: 0, idle: 0, waiting: 0 };
  poolList: Pool[] = [];
  hostList: HostState[] = [];
  credentialList: CredentialEntrySnapshot[] = [];
  pinnedCounts = new Map<string, number>();
  byteTotals = { received: 0, sent: 0 };
  cancelTotals = { results: { sent: 0, idle: 0, 'no-match': 0, 'too-many': 0 }, inFlight: 0 };
  isPaused = false;
  clock = 1_700_000_000_000;
  reads = 0;

  clients() {
    this.reads++;
    return this.clientCounts;
  }
  pools() {
    return this.poolList;
  }
  hosts() {
    return this.hostList;
  }
  credentials() {
    return this.credentialList;
  }
  pinned() {
    return this.pinnedCounts;
  }
  bytes() {
    return this.byteTotals;
  }
  cancels() {
    return this.cancelTotals;
  }
  paused() {
    return this.isPaused;
  }
  now() {
    return this.clock;
  }
}

function host(id: string, fields: Partial<HostState> = {}): HostState {
  const [name = id, port = '5432'] = id.split(':');
  return {
    id, host: name, port: Number(port), configuredRole: 'auto', role: 'unknown', up: true, weight: 1, activeConnections: 0,
    failures: 0, lastError: null, lsn: undefined, probedAt: null, breaker: 'closed', connectFailures: 0, addresses: null,
    ...fields,
  };
}

function pool(hostId: string, fields: Partial<Pool> = {}): Pool {
  return { host: hostId, role: 'primary', database: 'app', user: 'app', size: 10, idle: 0, active: 0, connecting: 0, waiting: 0, ...fields };
}

function setup(options: { defaultMetrics?: boolean } = {}) {
  const source = new FakeSource();
  const metrics = new AmbassadorMetrics(source, { version: '1.2.3', defaultMetrics: options.defaultMetrics ?? false });
  return { source, metrics, scrape: async () => parseExposition(await metrics.metrics()) };
}

/** Samples of an exposition text, keyed `name{a="1",b="2"}` with labels in name order. */
class Samples {
  constructor(readonly values: Map<string, number>, readonly help: Map<string, string>, readonly types: Map<string, string>) {}

  get(name: string, labels: Record<string, string> = {}): number | undefined {
    return this.values.get(sampleKey(name, labels));
  }

  /** The label sets present for `name`. */
  series(name: string): Array<Record<string, string>> {
    const found: Array<Record<string, string>> = [];
    for (const key of this.values.keys()) {
      const parsed = parseKey(key);
      if (parsed.name === name) found.push(parsed.labels);
    }
    return found;
  }

  /** The label values of `label` present for `name`, sorted. */
  labelValues(name: string, label: string): string[] {
    return [...new Set(this.series(name).map((labels) => labels[label] ?? ''))].sort();
  }
}

function sampleKey(name: string, labels: Record<string, string>): string {
  const parts = Object.keys(labels).sort().map((key) => `${key}=${JSON.stringify(labels[key])}`);
  return parts.length === 0 ? name : `${name}{${parts.join(',')}}`;
}

function parseKey(key: string): { name: string; labels: Record<string, string> } {
  const brace = key.indexOf('{');
  if (brace < 0) return { name: key, labels: {} };
  const labels: Record<string, string> = {};
  for (const match of key.slice(brace + 1, -1).matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)=("(?:[^"\\]|\\.)*")/g)) labels[match[1]!] = JSON.parse(match[2]!) as string;
  return { name: key.slice(0, brace), labels };
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;

function parseExposition(text: string): Samples {
  const values = new Map<string, number>();
  const help = new Map<string, string>();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      (meta[1] === 'HELP' ? help : types).set(meta[2]!, meta[3]!);
      continue;
    }
    const sample = SAMPLE_LINE.exec(line);
    assert.ok(sample, `unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const match of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[match[1]!] = match[2]!.replace(/\\n/g, '\n').replace(/\\(["\\])/g, '$1');
    }
    const key = sampleKey(sample[1]!, labels);
    assert.ok(!values.has(key), `duplicate sample ${key}`);
    values.set(key, sample[3] === '+Inf' ? Infinity : Number(sample[3]));
  }
  return new Samples(values, help, types);
}

test('requests count by route and by the reason before its first colon', async () => {
  const { metrics, scrape } = setup();
  metrics.request('primary', 'volatile-function:foo');
  metrics.request('primary', 'volatile-function:bar');
  metrics.request('primary', 'volatile-function:foo');
  metrics.request('replica', 'select');
  metrics.request('replica', 'select');
  metrics.request('primary', '');
  const samples = await scrape();
  assert.equal(samples.get('pg_ambassador_requests_total', { route: 'primary', reason: 'volatile-function' }), 3);
  assert.equal(samples.get('pg_ambassador_requests_total', { route: 'replica', reason: 'volatile-function' }), 0);
  assert.equal(samples.get('pg_ambassador_requests_total', { route: 'replica', reason: 'select' }), 2);
  assert.equal(samples.get('pg_ambassador_requests_total', { route: 'primary', reason: 'none' }), 1);
  assert.deepEqual(samples.labelValues('pg_ambassador_requests_total', 'reason'), ['none', 'select', 'volatile-function']);
});

test('distinct request reasons stop at 64; later ones count as other', async () => {
  const { metrics, scrape } = setup();
  for (let i = 0; i < 70; i++) metrics.request('primary', `reason-${i}:detail`);
  metrics.request('primary', 'reason-3:again'); // known before the cap: still its own label
  metrics.request('replica', 'reason-69'); // past the cap, on the other route
  const samples = await scrape();
  const reasons = samples.labelValues('pg_ambassador_requests_total', 'reason');
  assert.equal(reasons.length, 65, 'the 64 first reasons and other');
  assert.ok(reasons.includes('other'));
  assert.ok(!reasons.includes('reason-64'));
  assert.equal(samples.get('pg_ambassador_requests_total', { route: 'primary', reason: 'other' }), 6);
  assert.equal(samples.get('pg_ambassador_requests_total', { route: 'replica', reason: 'other' }), 1);
  assert.equal(samples.get('pg_ambassador_requests_total', { route: 'primary', reason: 'reason-3' }), 2);
});

test('queries and transactions: counters and histograms by route, both routes present from the start', async () => {
  const { metrics, scrape } = setup();
  let samples = await scrape();
  for (const route of ['primary', 'replica']) {
    assert.equal(samples.get('pg_ambassador_queries_total', { route }), 0);
    assert.equal(samples.get('pg_ambassador_transactions_total', { route }), 0);
    assert.equal(samples.get('pg_ambassador_query_duration_seconds_count', { route }), 0);
    assert.equal(samples.get('pg_ambassador_transaction_duration_seconds_count', { route }), 0);
  }
  for (const seconds of [0.0004, 0.003, 0.2, 40]) metrics.query('replica', seconds);
  metrics.query('primary', 0.01);
  metrics.transaction('primary', 1.5);
  metrics.transaction('primary', 0.0001);
  samples = await scrape();
  const query = (le: string) => samples.get('pg_ambassador_query_duration_seconds_bucket', { route: 'replica', le });
  assert.equal(samples.get('pg_ambassador_queries_total', { route: 'replica' }), 4);
  assert.equal(samples.get('pg_ambassador_queries_total', { route: 'primary' }), 1);
  assert.equal(query('0.0005'), 1);
  assert.equal(query('0.0025'), 1);
  assert.equal(query('0.005'), 2);
  assert.equal(query('0.25'), 3);
  assert.equal(query('30'), 3);
  assert.equal(query('+Inf'), 4);
  assert.equal(samples.get('pg_ambassador_query_duration_seconds_count', { route: 'replica' }), 4);
  assert.ok(Math.abs(samples.get('pg_ambassador_query_duration_seconds_sum', { route: 'replica' })! - 40.2034) < 1e-9);
  assert.equal(samples.get('pg_ambassador_transactions_total', { route: 'primary' }), 2);
  assert.equal(samples.get('pg_ambassador_transaction_duration_seconds_bucket', { route: 'primary', le: '0.0005' }), 1);
  assert.equal(samples.get('pg_ambassador_transaction_duration_seconds_bucket', { route: 'primary', le: '2.5' }), 2);
  assert.ok(Math.abs(samples.get('pg_ambassador_transaction_duration_seconds_sum', { route: 'primary' })! - 1.5001) < 1e-9);
  assert.equal(samples.get('pg_ambassador_transaction_duration_seconds_count', { route: 'replica' }), 0);
  assert.equal(samples.types.get('pg_ambassador_query_duration_seconds'), 'histogram');
});

test('histogram buckets span 0.5 ms to 30 s for durations and 0.1 ms to 30 s for pool waits', async () => {
  const { scrape } = setup();
  const samples = await scrape();
  const bounds = (name: string) =>
    samples.labelValues(name, 'le').filter((le) => le !== '+Inf').map(Number).sort((a, b) => a - b);
  const durations = bounds('pg_ambassador_query_duration_seconds_bucket');
  assert.equal(durations[0], 0.0005);
  assert.equal(durations.at(-1), 30);
  assert.ok(durations.length >= 10, 'enough buckets to tell p50 from p99');
  assert.deepEqual(bounds('pg_ambassador_transaction_duration_seconds_bucket'), durations);
  const waits = bounds('pg_ambassador_pool_wait_seconds_bucket');
  assert.equal(waits[0], 0.0001);
  assert.equal(waits.at(-1), 30);
});

test('pool waits: one unlabelled histogram; odd durations never throw', async () => {
  const { metrics, scrape } = setup();
  metrics.poolWait(0.00005);
  metrics.poolWait(0.002);
  metrics.poolWait(-1); // a clock step backwards counts as no wait
  metrics.poolWait(Number.NaN);
  metrics.poolWait(Infinity);
  metrics.query('primary', Number.NaN);
  metrics.transaction('replica', -0.5);
  const samples = await scrape();
  assert.equal(samples.get('pg_ambassador_pool_wait_seconds_count'), 3);
  assert.equal(samples.get('pg_ambassador_pool_wait_seconds_bucket', { le: '0.0001' }), 2);
  assert.equal(samples.get('pg_ambassador_pool_wait_seconds_bucket', { le: '0.0025' }), 3);
  assert.ok(Math.abs(samples.get('pg_ambassador_pool_wait_seconds_sum')! - 0.00205) < 1e-12);
  assert.equal(samples.get('pg_ambassador_queries_total', { route: 'primary' }), 1, 'counted even without a duration');
  assert.equal(samples.get('pg_ambassador_query_duration_seconds_count', { route: 'primary' }), 0);
  assert.equal(samples.get('pg_ambassador_transaction_duration_seconds_bucket', { route: 'replica', le: '0.0005' }), 1);
});

test('errors count by SQLSTATE class; anything malformed is XX', async () => {
  const { metrics, scrape } = setup();
  for (const sqlstate of ['42P01', '42601', '08006', '57P01', '40001', 'XX000']) metrics.error(sqlstate);
  for (const odd of ['', '4', '42P0', '42P011', 'abcde', '42 01', undefined, null, 42]) metrics.error(odd as unknown as string);
  const samples = await scrape();
  assert.equal(samples.get('pg_ambassador_errors_total', { class: '42' }), 2);
  assert.equal(samples.get('pg_ambassador_errors_total', { class: '08' }), 1);
  assert.equal(samples.get('pg_ambassador_errors_total', { class: '57' }), 1);
  assert.equal(samples.get('pg_ambassador_errors_total', { class: '40' }), 1);
  assert.equal(samples.get('pg_ambassador_errors_total', { class: 'XX' }), 10);
  assert.deepEqual(samples.labelValues('pg_ambassador_errors_total', 'class'), ['08', '40', '42', '57', 'XX']);
});

test('host gauges: up, one-hot role and breaker, lag for replicas when known, active connections', async () => {
  const { source, scrape } = setup();
  source.hostList = [
    host('db1:5432', { role: 'primary', lagBytes: 5, lagMs: 5, activeConnections: 7 }),
    host('db2:5432', { role: 'replica', up: false, lagBytes: 1024, lagMs: 1500, breaker: 'open', activeConnections: 2 }),
    host('db3:5432', { role: 'replica', breaker: 'half-open' }),
    host('db4:5432', { role: 'unknown' }),
  ];
  const samples = await scrape();
  assert.equal(samples.get('pg_ambassador_host_up', { host: 'db1:5432' }), 1);
  assert.equal(samples.get('pg_ambassador_host_up', { host: 'db2:5432' }), 0);
  const roles = (id: string) => ['primary', 'replica', 'unknown'].map((role) => samples.get('pg_ambassador_host_role', { host: id, role }));
  assert.deepEqual(roles('db1:5432'), [1, 0, 0]);
  assert.deepEqual(roles('db2:5432'), [0, 1, 0]);
  assert.deepEqual(roles('db4:5432'), [0, 0, 1]);
  const breaker = (id: string) => ['closed', 'open', 'half-open'].map((state) => samples.get('pg_ambassador_circuit_breaker_state', { host: id, state }));
  assert.deepEqual(breaker('db1:5432'), [1, 0, 0]);
  assert.deepEqual(breaker('db2:5432'), [0, 1, 0]);
  assert.deepEqual(breaker('db3:5432'), [0, 0, 1]);
  assert.deepEqual(samples.series('pg_ambassador_replica_lag_bytes'), [{ host: 'db2:5432' }], 'the primary has no lag; db3 lag is unknown');
  assert.equal(samples.get('pg_ambassador_replica_lag_bytes', { host: 'db2:5432' }), 1024);
  assert.equal(samples.get('pg_ambassador_replica_lag_seconds', { host: 'db2:5432' }), 1.5);
  assert.equal(samples.series('pg_ambassador_replica_lag_seconds').length, 1);
  assert.equal(samples.get('pg_ambassador_host_active_connections', { host: 'db1:5432' }), 7);
  assert.equal(samples.get('pg_ambassador_host_active_connections', { host: 'db2:5432' }), 2);
});

test('a host removed from the source disappears from every host metric; role changes move the one-hot', async () => {
  const { source, scrape } = setup();
  source.hostList = [host('db1:5432', { role: 'primary' }), host('db2:5432', { role: 'replica', lagBytes: 10, lagMs: 20, breaker: 'open' })];
  source.poolList = [pool('db1:5432'), pool('db2:5432', { role: 'replica' })];
  let samples = await scrape();
  assert.equal(samples.get('pg_ambassador_host_up', { host: 'db2:5432' }), 1);
  source.hostList = [host('db1:5432', { role: 'replica' })];
  source.poolList = [pool('db1:5432', { role: 'replica' })];
  samples = await scrape();
  for (const name of [
    'pg_ambassador_host_up', 'pg_ambassador_host_role', 'pg_ambassador_circuit_breaker_state', 'pg_ambassador_host_active_connections',
    'pg_ambassador_server_connections', 'pg_ambassador_pool_size', 'pg_ambassador_pool_waiting_clients',
  ]) {
    assert.deepEqual(samples.labelValues(name, 'host'), ['db1:5432'], name);
  }
  assert.deepEqual(samples.series('pg_ambassador_replica_lag_bytes'), []);
  assert.equal(samples.get('pg_ambassador_host_role', { host: 'db1:5432', role: 'primary' }), 0);
  assert.equal(samples.get('pg_ambassador_host_role', { host: 'db1:5432', role: 'replica' }), 1);
});

test('client connections by state; server connections, pool size and waiting clients per host', async () => {
  const { source, scrape } = setup();
  source.clientCounts = { login: 1, active: 4, idle: 9, waiting: 2 };
  source.hostList = [host('db1:5432', { role: 'primary' }), host('db2:5432', { role: 'replica' })];
  source.poolList = [
    pool('db1:5432', { database: 'app', size: 10, active: 3, idle: 2, connecting: 1, waiting: 2 }),
    pool('db1:5432', { database: 'reports', size: 25, active: 1, idle: 0, connecting: 0, waiting: 1 }),
    pool('db2:5432', { role: 'unknown', size: 5, active: 0, idle: 4 }), // the health loop knows better: replica
  ];
  const samples = await scrape();
  assert.deepEqual(
    ['login', 'active', 'idle', 'waiting'].map((state) => samples.get('pg_ambassador_client_connections', { state })),
    [1, 4, 9, 2],
  );
  const server = (id: string, role: string, state: string) => samples.get('pg_ambassador_server_connections', { host: id, role, state });
  assert.equal(server('db1:5432', 'primary', 'active'), 4);
  assert.equal(server('db1:5432', 'primary', 'idle'), 2);
  assert.equal(server('db1:5432', 'primary', 'connecting'), 1);
  assert.equal(server('db2:5432', 'replica', 'idle'), 4);
  assert.equal(samples.series('pg_ambassador_server_connections').length, 6);
  assert.equal(samples.get('pg_ambassador_pool_size', { host: 'db1:5432' }), 25, 'the largest pool of the host');
  assert.equal(samples.get('pg_ambassador_pool_size', { host: 'db2:5432' }), 5);
  assert.equal(samples.get('pg_ambassador_pool_waiting_clients', { host: 'db1:5432' }), 3);
  assert.equal(samples.get('pg_ambassador_pool_waiting_clients', { host: 'db2:5432' }), 0);
});

test('one scrape reads the source once, the next scrape reads it again', async () => {
  const { source, metrics } = setup();
  await metrics.metrics();
  assert.equal(source.reads, 1);
  source.clientCounts = { login: 0, active: 1, idle: 0, waiting: 0 };
  const samples = parseExposition(await metrics.metrics());
  assert.equal(source.reads, 2);
  assert.equal(samples.get('pg_ambassador_client_connections', { state: 'active' }), 1);
});

test('credential expiry: seconds until expiresAt on the source clock, absent without expiry, negative once expired', async () => {
  const { source, scrape } = setup();
  const now = source.clock;
  const entry = (login: string, expiresAt: Date | undefined, consecutiveFailures = 0): CredentialEntrySnapshot => ({
    provider: 'aws-rds-iam', login, fetchedAt: new Date(now - 60_000), expiresAt, consecutiveFailures, lastError: null,
  });
  source.credentialList = [
    entry('app@db1:5432', new Date(now + 90_500)),
    entry('old@db1:5432', new Date(now - 30_000), 3),
    { ...entry('static@db1:5432', undefined), provider: 'password' },
  ];
  let samples = await scrape();
  assert.equal(samples.get('pg_ambassador_credential_expiry_seconds', { provider: 'aws-rds-iam', login: 'app@db1:5432' }), 90.5);
  assert.equal(samples.get('pg_ambassador_credential_expiry_seconds', { provider: 'aws-rds-iam', login: 'old@db1:5432' }), -30);
  assert.equal(samples.series('pg_ambassador_credential_expiry_seconds').length, 2, 'a secret without expiry has no series');
  assert.equal(samples.get('pg_ambassador_credential_refresh_failures', { provider: 'aws-rds-iam', login: 'old@db1:5432' }), 3);
  assert.equal(samples.get('pg_ambassador_credential_refresh_failures', { provider: 'password', login: 'static@db1:5432' }), 0);
  source.clock += 10_000;
  samples = await scrape();
  assert.equal(samples.get('pg_ambassador_credential_expiry_seconds', { provider: 'aws-rds-iam', login: 'app@db1:5432' }), 80.5);
});

test('failovers count only when the primary changed; every health event type counts from 0', async () => {
  const { metrics, scrape } = setup();
  let samples = await scrape();
  assert.deepEqual(samples.series('pg_ambassador_health_events_total').length, 11);
  assert.equal(samples.get('pg_ambassador_failovers_total'), 0);
  const events: HealthEvent[] = [
    { type: 'failover-started', oldPrimary: 'db1:5432', reason: 'probe failed' },
    { type: 'failover-ended', oldPrimary: 'db1:5432', newPrimary: 'db1:5432', durationMs: 900, reason: 'came back' },
    { type: 'failover-started', oldPrimary: 'db1:5432', reason: 'probe failed' },
    { type: 'failover-ended', oldPrimary: 'db1:5432', newPrimary: 'db2:5432', durationMs: 4250, reason: 'promoted' },
    { type: 'host-down', host: 'db1:5432', reason: 'timeout', failures: 3 },
    { type: 'breaker-opened', host: 'db1:5432', reason: 'refused', failures: 5, retryInMs: 1000 },
  ];
  for (const event of events) metrics.healthEvent(event);
  samples = await scrape();
  assert.equal(samples.get('pg_ambassador_failovers_total'), 1);
  assert.equal(samples.get('pg_ambassador_failover_duration_seconds'), 4.25);
  assert.equal(samples.get('pg_ambassador_health_events_total', { type: 'failover-started' }), 2);
  assert.equal(samples.get('pg_ambassador_health_events_total', { type: 'failover-ended' }), 2);
  assert.equal(samples.get('pg_ambassador_health_events_total', { type: 'host-down' }), 1);
  assert.equal(samples.get('pg_ambassador_health_events_total', { type: 'breaker-opened' }), 1);
  assert.equal(samples.get('pg_ambassador_health_events_total', { type: 'split-brain' }), 0);
  metrics.healthEvent({ type: 'failover-ended', oldPrimary: 'db2:5432', newPrimary: 'db2:5432', durationMs: 100, reason: 'came back' });
  samples = await scrape();
  assert.equal(samples.get('pg_ambassador_failover_duration_seconds'), 4.25, 'an outage without a new primary is not a failover');
});

test('credential refreshes, rejections and TLS reloads count by provider/scope and result', async () => {
  const { metrics, scrape } = setup();
  let samples = await scrape();
  for (const scope of ['upstream', 'listen']) for (const result of ['ok', 'failed']) assert.equal(samples.get('pg_ambassador_tls_reloads_total', { scope, result }), 0);
  metrics.rotationEvent({ type: 'credential-refreshed', provider: 'gcp-cloudsql-iam', login: 'a', reason: 'ahead', changed: true, expiresAt: undefined } as never);
  metrics.rotationEvent({ type: 'credential-refreshed', provider: 'gcp-cloudsql-iam', login: 'a', reason: 'ahead', changed: false, expiresAt: undefined } as never);
  metrics.rotationEvent({ type: 'credential-refresh-failed', provider: 'gcp-cloudsql-iam', login: 'a', reason: 'ahead', error: 'timeout', lastGoodUntil: null } as never);
  metrics.rotationEvent({ type: 'credential-rejected', provider: 'gcp-cloudsql-iam', login: 'a', retry: 'fresh' });
  metrics.rotationEvent({ type: 'tls-reloaded', scope: 'listen', files: ['cert.pem'] });
  metrics.rotationEvent({ type: 'tls-reload-failed', scope: 'upstream', files: ['ca.pem'], error: 'bad PEM' });
  samples = await scrape();
  assert.equal(samples.get('pg_ambassador_credential_refreshes_total', { provider: 'gcp-cloudsql-iam', result: 'ok' }), 2);
  assert.equal(samples.get('pg_ambassador_credential_refreshes_total', { provider: 'gcp-cloudsql-iam', result: 'failed' }), 1);
  assert.equal(samples.get('pg_ambassador_credential_rejections_total', { provider: 'gcp-cloudsql-iam', retry: 'fresh' }), 1);
  assert.equal(samples.get('pg_ambassador_tls_reloads_total', { scope: 'listen', result: 'ok' }), 1);
  assert.equal(samples.get('pg_ambassador_tls_reloads_total', { scope: 'upstream', result: 'failed' }), 1);
  assert.equal(samples.get('pg_ambassador_tls_reloads_total', { scope: 'upstream', result: 'ok' }), 0);
});

test('pool events: connects by host and result, disconnects by reason, acquire timeouts', async () => {
  const { metrics, source, scrape } = setup();
  source.hostList = [host('db1:5432'), host('/var/run/postgresql:5433')];
  metrics.poolEvent({ type: 'created', key: 'db1:5432/app/alice' });
  metrics.poolEvent({ type: 'created', key: 'db1:5432/reports/bob' });
  metrics.poolEvent({ type: 'connect-failed', key: 'db1:5432/app/alice', error: 'ECONNREFUSED', attempt: 1 });
  metrics.poolEvent({ type: 'created', key: '/var/run/postgresql:5433/app/alice' });
  metrics.poolEvent({ type: 'destroyed', key: 'db1:5432/app/alice', reason: 'idle-timeout' });
  metrics.poolEvent({ type: 'timeout', key: 'db1:5432/app/alice', waitMs: 5000 });
  metrics.poolEvent({ type: 'created', key: 'gone:5432/app/alice' }); // a host no longer configured
  const samples = await scrape();
  assert.equal(samples.get('pg_ambassador_server_connects_total', { host: 'db1:5432', result: 'ok' }), 2);
  assert.equal(samples.get('pg_ambassador_server_connects_total', { host: 'db1:5432', result: 'failed' }), 1);
  assert.equal(samples.get('pg_ambassador_server_connects_total', { host: '/var/run/postgresql:5433', result: 'ok' }), 1);
  assert.equal(samples.get('pg_ambassador_server_connects_total', { host: 'gone:5432', result: 'ok' }), 1);
  assert.equal(samples.get('pg_ambassador_server_disconnects_total', { host: 'db1:5432', reason: 'idle-timeout' }), 1);
  assert.equal(samples.get('pg_ambassador_pool_acquire_timeouts_total', { host: 'db1:5432' }), 1);
  assert.equal(samples.get('pg_ambassador_pool_wait_seconds_count'), 0, 'waits come from the traffic observer only');
});

test('config reloads count ok and failed, both present from the start', async () => {
  const { metrics, scrape } = setup();
  let samples = await scrape();
  assert.equal(samples.get('pg_ambassador_config_reloads_total', { result: 'ok' }), 0);
  assert.equal(samples.get('pg_ambassador_config_reloads_total', { result: 'failed' }), 0);
  metrics.configReload('ok');
  metrics.configReload('failed');
  metrics.configReload('ok');
  samples = await scrape();
  assert.equal(samples.get('pg_ambassador_config_reloads_total', { result: 'ok' }), 2);
  assert.equal(samples.get('pg_ambassador_config_reloads_total', { result: 'failed' }), 1);
});

test('byte counters follow the source totals and never go down', async () => {
  const { source, scrape } = setup();
  const read = async () => {
    const samples = await scrape();
    return [samples.get('pg_ambassador_client_bytes_received_total'), samples.get('pg_ambassador_client_bytes_sent_total')];
  };
  assert.deepEqual(await read(), [0, 0]);
  source.byteTotals = { received: 100, sent: 1000 };
  assert.deepEqual(await read(), [100, 1000]);
  source.byteTotals = { received: 250, sent: 1000 };
  assert.deepEqual(await read(), [250, 1000]);
  source.byteTotals = { received: 30, sent: 5 }; // the source started again from 0
  assert.deepEqual(await read(), [280, 1005]);
  source.byteTotals = { received: 280, sent: 5 };
  assert.deepEqual(await read(), [530, 1005]);
  assert.equal((await scrape()).types.get('pg_ambassador_client_bytes_received_total'), 'counter');
});

test('cancel requests count by result from the source, every result from the start; in flight follows it', async () => {
  const { source, scrape } = setup();
  let samples = await scrape();
  for (const result of ['sent', 'idle', 'no-match', 'too-many']) assert.equal(samples.get('pg_ambassador_cancel_requests_total', { result }), 0, result);
  assert.equal(samples.get('pg_ambassador_cancels_in_flight'), 0);
  source.cancelTotals = { results: { sent: 3, idle: 1, 'no-match': 2, 'too-many': 0 }, inFlight: 2 };
  samples = await scrape();
  assert.equal(samples.get('pg_ambassador_cancel_requests_total', { result: 'sent' }), 3);
  assert.equal(samples.get('pg_ambassador_cancel_requests_total', { result: 'idle' }), 1);
  assert.equal(samples.get('pg_ambassador_cancel_requests_total', { result: 'no-match' }), 2);
  assert.equal(samples.get('pg_ambassador_cancel_requests_total', { result: 'too-many' }), 0);
  assert.equal(samples.get('pg_ambassador_cancels_in_flight'), 2);
  source.cancelTotals = { results: { sent: 4, idle: 1, 'no-match': 2, 'too-many': 5 }, inFlight: 0 };
  samples = await scrape();
  assert.equal(samples.get('pg_ambassador_cancel_requests_total', { result: 'sent' }), 4);
  assert.equal(samples.get('pg_ambassador_cancel_requests_total', { result: 'too-many' }), 5);
  assert.equal(samples.get('pg_ambassador_cancels_in_flight'), 0);
  assert.equal(samples.types.get('pg_ambassador_cancel_requests_total'), 'counter');
});

test('pinned sessions by reason from the source, pins counted as they happen', async () => {
  const { metrics, source, scrape } = setup();
  source.pinnedCounts = new Map([['listen', 2], ['temp-table', 1]]);
  metrics.pinnedSession('advisory-lock');
  metrics.pinnedSession('advisory-lock');
  metrics.pinnedSession('listen');
  const samples = await scrape();
  assert.equal(samples.get('pg_ambassador_pinned_sessions', { reason: 'listen' }), 2);
  assert.equal(samples.get('pg_ambassador_pinned_sessions', { reason: 'temp-table' }), 1);
  assert.equal(samples.get('pg_ambassador_pinned_sessions', { reason: 'advisory-lock' }), 0);
  assert.equal(samples.get('pg_ambassador_pins_total', { reason: 'advisory-lock' }), 2);
  assert.equal(samples.get('pg_ambassador_pins_total', { reason: 'listen' }), 1);
  assert.equal(samples.get('pg_ambassador_pins_total', { reason: 'sql-prepare' }), 0);
});

test('build info carries the version; paused follows the source', async () => {
  const { source, scrape } = setup();
  let samples = await scrape();
  assert.equal(samples.get('pg_ambassador_build_info', { version: '1.2.3' }), 1);
  assert.equal(samples.series('pg_ambassador_build_info').length, 1);
  assert.equal(samples.get('pg_ambassador_paused'), 0);
  source.isPaused = true;
  samples = await scrape();
  assert.equal(samples.get('pg_ambassador_paused'), 1);
});

const EXPECTED_METRICS: Record<string, string> = {
  client_connections: 'gauge', server_connections: 'gauge', pool_size: 'gauge', pool_waiting_clients: 'gauge',
  requests_total: 'counter', queries_total: 'counter', transactions_total: 'counter',
  query_duration_seconds: 'histogram', transaction_duration_seconds: 'histogram', pool_wait_seconds: 'histogram',
  errors_total: 'counter', pinned_sessions: 'gauge', pins_total: 'counter',
  host_up: 'gauge', host_role: 'gauge', replica_lag_bytes: 'gauge', replica_lag_seconds: 'gauge', circuit_breaker_state: 'gauge', host_active_connections: 'gauge',
  failovers_total: 'counter', failover_duration_seconds: 'gauge', health_events_total: 'counter',
  credential_refreshes_total: 'counter', credential_rejections_total: 'counter', credential_expiry_seconds: 'gauge', credential_refresh_failures: 'gauge',
  tls_reloads_total: 'counter', client_bytes_received_total: 'counter', client_bytes_sent_total: 'counter',
  cancel_requests_total: 'counter', cancels_in_flight: 'gauge',
  server_connects_total: 'counter', server_disconnects_total: 'counter', pool_acquire_timeouts_total: 'counter',
  config_reloads_total: 'counter', paused: 'gauge', build_info: 'gauge',
};

test('every ambassador metric exists with its type, a pg_ambassador_ prefix and a one-line help text', async () => {
  const { scrape } = setup();
  const samples = await scrape();
  const names = [...samples.help.keys()];
  const expected = Object.keys(EXPECTED_METRICS).map((name) => `pg_ambassador_${name}`);
  assert.deepEqual([...names].sort(), [...expected].sort());
  for (const [name, type] of Object.entries(EXPECTED_METRICS)) assert.equal(samples.types.get(`pg_ambassador_${name}`), type, name);
  for (const name of names) {
    assert.match(name, /^pg_ambassador_[a-z_]+$/);
    assert.ok((samples.help.get(name) ?? '').length > 20, `${name} needs a help text`);
    assert.ok(samples.types.has(name), `${name} has no TYPE`);
  }
});

test('its own registry: nothing in the global one, two instances side by side, Node metrics only when asked', async () => {
  const first = setup({ defaultMetrics: true });
  const second = setup({ defaultMetrics: false });
  assert.notEqual(first.metrics.registry, globalRegistry);
  assert.equal(globalRegistry.getMetricsAsArray().length, 0);
  assert.match(first.metrics.contentType, /^text\/plain/);
  const withNode = await first.scrape();
  assert.equal(withNode.types.get('process_cpu_seconds_total'), 'counter');
  assert.equal(withNode.types.get('process_resident_memory_bytes'), 'gauge');
  const without = await second.scrape();
  assert.equal(without.types.has('process_cpu_seconds_total'), false);
  assert.equal(without.get('pg_ambassador_build_info', { version: '1.2.3' }), 1);
});

test('event observers never throw on malformed events', async () => {
  const { metrics, scrape } = setup();
  assert.doesNotThrow(() => {
    metrics.healthEvent({ type: 'failover-ended', oldPrimary: 'a', newPrimary: 'b', durationMs: Number.NaN, reason: '' });
    metrics.healthEvent({} as unknown as HealthEvent);
    metrics.rotationEvent({ type: 'unknown-kind' } as never);
    metrics.poolEvent({ type: 'created', key: undefined } as never);
    metrics.poolEvent(null as never);
    metrics.request('primary', undefined as never);
    metrics.request('sideways' as never, 'x');
    metrics.pinnedSession(undefined as never);
  });
  const samples = await scrape();
  assert.equal(samples.get('pg_ambassador_failovers_total'), 1);
  assert.equal(samples.get('pg_ambassador_failover_duration_seconds'), 0, 'a duration that is not a number is not shown');
  for (const key of samples.values.keys()) assert.doesNotMatch(key, /"(undefined|null)"/, 'no label made of a missing value');
  assert.equal(samples.series('pg_ambassador_health_events_total').length, 11);
  assert.deepEqual(samples.series('pg_ambassador_server_connects_total'), []);
});
