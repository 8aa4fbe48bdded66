// /metrics scraped around real traffic (issue 7): route counts match the statements sent, the
// latency histograms, pool waits, bytes and errors by SQLSTATE class move with them; the host
// gauges follow a replica that is stopped and started again; a failover (primary killed,
// replica promoted) increments the failover counter and moves the role gauges. The traffic
// part runs on the shared cluster, the fault part on a private primary + replica.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { startTestAmbassador, viaAmbassador, type TestAmbassador } from '../support/ambassador.ts';
import { scrape, sample, total, type Samples } from '../support/metrics.ts';
import { cancelOwn, outcomeOf, sendCancel, withClient } from '../support/pooling.ts';
import { eventually, getTopology, startCluster, type LocalCluster, type Topology } from '../support/topology.ts';

const TABLE = 'metrics_writes';

/** Retries assertions until they hold (eventually() wants a value back). */
function holds(check: () => Promise<void>, timeoutMs = 10_000): Promise<true> {
  return eventually(async () => {
    await check();
    return true as const;
  }, { timeoutMs });
}

function delta(after: Samples, before: Samples, name: string, labels: Record<string, string> = {}): number {
  return total(after, name, labels) - total(before, name, labels);
}

describe('metrics around real traffic', () => {
  let topology: Topology;
  let amb: TestAmbassador;
  let replicaId: string;
  let primaryId: string;

  before(async () => {
    topology = await getTopology();
    const replica = topology.replicas[0]!;
    primaryId = `${topology.primary.host}:${topology.primary.port}`;
    replicaId = `${replica.host}:${replica.port}`;
    await withClient({ host: topology.primary.host, port: topology.primary.port, user: topology.superuser.user, password: topology.superuser.password, database: 'app' }, async (c) => {
      await c.query(`CREATE TABLE IF NOT EXISTS ${TABLE} (n int)`);
      await c.query(`GRANT ALL ON ${TABLE} TO app`);
    });
    amb = await startTestAmbassador(topology, {
      upstream: { hosts: [{ host: topology.primary.host, port: topology.primary.port }, { host: replica.host, port: replica.port }] },
      pool: { mode: 'transaction', size: 4 },
      routing: { readWriteSplit: true, maxReplicaLag: '1GB' },
      health: { interval: '500ms' },
    });
  });
  after(() => amb?.stop());

  test('requests, queries, transactions, waits and bytes by route match the statements sent', async () => {
    const client = new pg.Client(viaAmbassador(amb.port) as pg.ClientConfig);
    await client.connect();
    try {
      await holds(async () => {
        const now = await scrape(amb.ambassador.adminAddress.port);
        assert.equal(sample(now, 'pg_ambassador_host_role', { host: replicaId, role: 'replica' }), 1);
        assert.equal(sample(now, 'pg_ambassador_host_role', { host: primaryId, role: 'primary' }), 1);
      });
      const start = await scrape(amb.ambassador.adminAddress.port);
      const live = await scrape(amb.ambassador.adminAddress.port);
      assert.ok((sample(live, 'pg_ambassador_client_connections', { state: 'idle' }) ?? 0) >= 1, 'the connected client counts as idle');
      for (let i = 0; i < 12; i++) await client.query('SELECT 1');
      for (let i = 0; i < 5; i++) await client.query(`INSERT INTO ${TABLE} VALUES (${i})`);
      const end = await scrape(amb.ambassador.adminAddress.port);

      assert.equal(delta(end, start, 'pg_ambassador_requests_total', { route: 'replica' }), 12);
      assert.equal(delta(end, start, 'pg_ambassador_requests_total', { route: 'primary' }), 5);
      assert.equal(delta(end, start, 'pg_ambassador_queries_total', { route: 'replica' }), 12);
      assert.equal(delta(end, start, 'pg_ambassador_queries_total', { route: 'primary' }), 5);
      assert.equal(delta(end, start, 'pg_ambassador_transactions_total', { route: 'primary' }), 5);
      assert.equal(delta(end, start, 'pg_ambassador_query_duration_seconds_count', { route: 'replica' }), 12);
      assert.ok(delta(end, start, 'pg_ambassador_query_duration_seconds_sum', { route: 'replica' }) > 0);
      assert.equal(delta(end, start, 'pg_ambassador_transaction_duration_seconds_count', { route: 'primary' }), 5);
      // Every autocommit statement took a lease of its own.
      assert.equal(delta(end, start, 'pg_ambassador_pool_wait_seconds_count'), 17);
      assert.ok(delta(end, start, 'pg_ambassador_client_bytes_received_total') >= 17 * 10);
      assert.ok(delta(end, start, 'pg_ambassador_client_bytes_sent_total') >= 17 * 10);
      // The reads' reason is the classifier's (a plain SELECT), the writes' too.
      assert.equal(delta(end, start, 'pg_ambassador_requests_total', { route: 'primary', reason: 'split-off' }), 0);
    } finally {
      await client.end();
    }
  });

  test('an error reaching a client is counted by its SQLSTATE class', async () => {
    const before = await scrape(amb.ambassador.adminAddress.port);
    await withClient(viaAmbassador(amb.port) as pg.ClientConfig, async (c) => {
      await assert.rejects(c.query('SELECT * FROM no_such_table_here'), /does not exist/);
      await assert.rejects(c.query('SELEC 1'), /syntax error/);
      await assert.rejects(c.query('SELECT 1/0'), /division by zero/);
    });
    const after = await scrape(amb.ambassador.adminAddress.port);
    assert.equal(delta(after, before, 'pg_ambassador_errors_total', { class: '42' }), 2);
    assert.equal(delta(after, before, 'pg_ambassador_errors_total', { class: '22' }), 1);
  });

  test('cancel requests are counted by result: sent, idle, no-match', async () => {
    const admin = amb.ambassador.adminAddress.port;
    const before = await scrape(admin);
    await withClient(viaAmbassador(amb.port) as pg.ClientConfig, async (sleeper) => {
      await withClient(viaAmbassador(amb.port) as pg.ClientConfig, async (idle) => {
        const sleep = outcomeOf(sleeper.query('SELECT pg_sleep(30) /* metrics-cancel */'));
        await holds(async () => assert.ok(await runningOnAHost('metrics-cancel'), 'the sleep runs on a server'));
        await cancelOwn(amb.port, sleeper);
        assert.equal(await sleep, '57014');
        await cancelOwn(amb.port, idle);
        await sendCancel(amb.port, 1, 1);
      });
    });
    const after = await scrape(admin);
    assert.equal(delta(after, before, 'pg_ambassador_cancel_requests_total', { result: 'sent' }), 1);
    assert.equal(delta(after, before, 'pg_ambassador_cancel_requests_total', { result: 'idle' }), 1);
    assert.equal(delta(after, before, 'pg_ambassador_cancel_requests_total', { result: 'no-match' }), 1);
    assert.equal(delta(after, before, 'pg_ambassador_cancel_requests_total', { result: 'too-many' }), 0);
    // Each sendCancel resolved at the close, which comes only once the cancel landed.
    assert.equal(sample(after, 'pg_ambassador_cancels_in_flight'), 0);
  });

  /** Whether a statement tagged `tag` is running on the primary or a replica now. */
  async function runningOnAHost(tag: string): Promise<boolean> {
    for (const server of [topology.primary, ...topology.replicas]) {
      const config = { host: server.host, port: server.port, user: topology.superuser.user, password: topology.superuser.password, database: 'postgres' };
      const found = await withClient(config, async (c) => (await c.query(`SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()`, [`%${tag}%`])).rowCount);
      if (found) return true;
    }
    return false;
  }

  test('the pool gauges show the server connections by host, role and state', async () => {
    await withClient(viaAmbassador(amb.port) as pg.ClientConfig, async (c) => {
      await c.query('BEGIN');
      await c.query(`INSERT INTO ${TABLE} VALUES (100)`);
      const during = await scrape(amb.ambassador.adminAddress.port);
      assert.ok((sample(during, 'pg_ambassador_server_connections', { host: primaryId, role: 'primary', state: 'active' }) ?? 0) >= 1);
      assert.equal(sample(during, 'pg_ambassador_pool_size', { host: primaryId }), 4);
      await c.query('ROLLBACK');
    });
  });
});

describe('metrics in session mode', () => {
  test('queries, transactions, errors and bytes of a session-mode client are counted', async () => {
    const topology = await getTopology();
    const amb = await startTestAmbassador(topology, { pool: { mode: 'session' } });
    try {
      const port = amb.ambassador.adminAddress.port;
      const before = await scrape(port);
      await withClient(viaAmbassador(amb.port) as pg.ClientConfig, async (c) => {
        await c.query('SELECT 1');
        await c.query('BEGIN');
        await c.query('SELECT 2');
        await c.query('COMMIT');
        await assert.rejects(c.query('SELECT * FROM no_such_table_either'), /does not exist/);
        // pg rejects on the ErrorResponse, which the server flushes ahead of its ReadyForQuery:
        // one more query waits for that ReadyForQuery, so the failed query's is counted.
        await c.query('SELECT 3');
      });
      const after = await scrape(port);
      assert.equal(delta(after, before, 'pg_ambassador_requests_total', { route: 'primary', reason: 'session' }), 6);
      assert.equal(delta(after, before, 'pg_ambassador_queries_total', { route: 'primary' }), 6);
      assert.equal(delta(after, before, 'pg_ambassador_transactions_total', { route: 'primary' }), 4);
      assert.equal(delta(after, before, 'pg_ambassador_errors_total', { class: '42' }), 1);
      assert.ok(delta(after, before, 'pg_ambassador_client_bytes_sent_total') > 0);
    } finally {
      await amb.stop();
    }
  });
});

describe('metrics around host faults and a failover', () => {
  let cluster: LocalCluster;
  let amb: TestAmbassador;

  before(async () => {
    cluster = await startCluster({ replicas: 1 });
    const topology = cluster.describe();
    amb = await startTestAmbassador(topology, {
      upstream: {
        user: 'app',
        database: 'app',
        hosts: [{ host: topology.primary.host, port: topology.primary.port }, { host: topology.replicas[0]!.host, port: topology.replicas[0]!.port }],
      },
      pool: { mode: 'transaction' },
      health: { interval: '300ms', timeout: '1s', failureThreshold: 2, failoverTimeout: '20s' },
    });
  });
  after(async () => {
    await amb?.stop();
    await cluster?.stop();
  });

  test('a stopped replica shows down and up again; a promotion counts one failover', async () => {
    const topology = cluster.describe();
    const primaryId = `${topology.primary.host}:${topology.primary.port}`;
    const replicaId = `${topology.replicas[0]!.host}:${topology.replicas[0]!.port}`;
    const port = amb.ambassador.adminAddress.port;
    await holds(async () => assert.equal(sample(await scrape(port), 'pg_ambassador_host_role', { host: replicaId, role: 'replica' }), 1));
    assert.equal(sample(await scrape(port), 'pg_ambassador_host_up', { host: replicaId }), 1);
    assert.equal(sample(await scrape(port), 'pg_ambassador_failovers_total'), 0);

    const replica = cluster.replicas[0]!;
    await replica.stop({ mode: 'fast' });
    await holds(async () => assert.equal(sample(await scrape(port), 'pg_ambassador_host_up', { host: replicaId }), 0));
    assert.ok((sample(await scrape(port), 'pg_ambassador_health_events_total', { type: 'host-down' }) ?? 0) >= 1);
    await replica.start();
    await holds(async () => assert.equal(sample(await scrape(port), 'pg_ambassador_host_up', { host: replicaId }), 1));

    cluster.primary.kill('SIGKILL');
    await replica.promote({ timeoutMs: 30_000 });
    await holds(async () => {
      const now = await scrape(port);
      assert.equal(sample(now, 'pg_ambassador_failovers_total'), 1);
      assert.equal(sample(now, 'pg_ambassador_host_role', { host: replicaId, role: 'primary' }), 1);
    }, 15_000);
    await withClient(viaAmbassador(amb.port) as pg.ClientConfig, async (c) => assert.equal((await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r, false));
    // Failover-started and -ended may fall in one health round: the duration is then 0.
    assert.ok((sample(await scrape(port), 'pg_ambassador_failover_duration_seconds') ?? -1) >= 0);
    // The killed host keeps the role it was last seen in, and shows down.
    await holds(async () => assert.equal(sample(await scrape(port), 'pg_ambassador_host_up', { host: primaryId }), 0));
  });
});
