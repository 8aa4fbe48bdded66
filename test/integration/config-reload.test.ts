// Config reload (issue 7) with the ambassador running from a watched file: under a pgbench
// select-only load, a new file that raises the pool size, turns the log level to debug and adds
// a replica takes effect (seen through the console, the metrics and the logger) with zero client
// errors; a broken file reloads nothing and the report names its line and key; a key that needs
// a restart is reported and keeps its value; POST /reload and SIGHUP-equivalent reloads say so.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import YAML from 'yaml';
import { initPgbench } from '../../bench/pgbench.ts';
import { baseConfig, CLIENT_PASSWORD, startTestAmbassador, viaAmbassador, type TestAmbassador } from '../support/ambassador.ts';
import { startPgbench } from '../support/failover.ts';
import { sample, scrape, total } from '../support/metrics.ts';
import { createTestDatabase, dropTestDatabase, withClient } from '../support/pooling.ts';
import { eventually, getTopology, type Topology } from '../support/topology.ts';

const DB = 'reload_bench';

function holds(check: () => Promise<void> | void, timeoutMs = 10_000): Promise<true> {
  return eventually(
    async () => {
      await check();
      return true as const;
    },
    { timeoutMs },
  );
}

describe('config reload from a watched file', () => {
  let topology: Topology;
  let amb: TestAmbassador;
  let overrides: Record<string, unknown>;
  const hostId = (server: { host: string; port: number }): string => `${server.host}:${server.port}`;

  before(async () => {
    topology = await getTopology();
    await createTestDatabase(topology, DB);
    const bin = path.join(topology.binaries.bindir, 'pgbench');
    await initPgbench(bin, { host: topology.primary.host, port: topology.primary.port, user: 'app', password: topology.users.app.password, database: DB }, 1);
    // The replicas serve pgbench's reads: wait until they have its tables.
    for (const replica of topology.replicas) {
      await holds(() =>
        withClient({ host: replica.host, port: replica.port, user: 'app', password: topology.users.app.password, database: DB }, async (c) => {
          assert.ok(Number((await c.query('SELECT count(*) AS n FROM pgbench_branches')).rows[0].n) >= 1);
        }),
      );
    }
    overrides = {
      upstream: { hosts: [{ host: topology.primary.host, port: topology.primary.port }, { host: topology.replicas[0]!.host, port: topology.replicas[0]!.port }] },
      pool: { mode: 'transaction', size: 2 },
      routing: { readWriteSplit: true, maxReplicaLag: '1GB' },
      health: { interval: '300ms' },
      logging: { level: 'info' },
      admin: { users: ['app'] },
    };
    amb = await startTestAmbassador(topology, overrides, undefined, { fromFile: true });
  });
  after(async () => {
    await amb?.stop();
    if (topology) await dropTestDatabase(topology, DB);
  });

  test('pool size, log level and a new replica take effect under pgbench load with zero client errors', async () => {
    const bin = path.join(topology.binaries.bindir, 'pgbench');
    assert.ok(existsSync(bin), `pgbench at ${bin}`);
    const adminPort = amb.ambassador.adminAddress.port;
    const bench = startPgbench(bin, { host: '127.0.0.1', port: amb.port, user: 'app', password: CLIENT_PASSWORD, database: DB }, ['-S', '-M', 'simple', '-c', '8', '-j', '2', '-T', '6']);
    try {
      await bench.running;
      await holds(async () => assert.equal(sample(await scrape(adminPort), 'pg_ambassador_pool_size', { host: hostId(topology.primary) }), 2));
      const replica2 = topology.replicas[1]!;
      amb.writeConfig({
        ...overrides,
        upstream: { hosts: [...(overrides.upstream as { hosts: unknown[] }).hosts, { host: replica2.host, port: replica2.port }] },
        pool: { mode: 'transaction', size: 5 },
        logging: { level: 'debug' },
      });
      // The file watch reloads it: no signal, no request.
      await holds(() => assert.equal(amb.ambassador.config().pool.size, 5));
      assert.equal(amb.ambassador.logger.level, 'debug');
      await holds(async () => {
        const now = await scrape(adminPort);
        assert.equal(sample(now, 'pg_ambassador_pool_size', { host: hostId(topology.primary) }), 5);
        assert.equal(sample(now, 'pg_ambassador_host_role', { host: hostId(replica2), role: 'replica' }), 1);
        assert.ok((sample(now, 'pg_ambassador_config_reloads_total', { result: 'ok' }) ?? 0) >= 1);
      });
      const result = await bench.done;
      assert.equal(result.exitCode, 0, result.stderrTail);
      assert.deepEqual(result.abortLines, []);
      assert.ok((result.summary.transactions ?? 0) > 0);
    } finally {
      await bench.stop();
    }
    // The new replica serves reads (round-robin over both replicas).
    await withClient(viaAmbassador(amb.port, { database: DB }) as pg.ClientConfig, async (c) => {
      await holds(async () => {
        await c.query('SELECT count(*) FROM pgbench_branches');
        const now = await scrape(adminPort);
        const connections = total(now, 'pg_ambassador_server_connections', { host: hostId(topology.replicas[1]!) });
        assert.ok(connections >= 1, `server connections to the new replica: ${connections}`);
      });
    });
    const reloaded = amb.logs().find((line) => line.msg === 'configuration reloaded');
    assert.ok(reloaded, 'the reload is logged');
    assert.ok((reloaded.changed as string[]).includes('pool.size') && (reloaded.changed as string[]).includes('upstream.hosts'));
    assert.ok(amb.logs().some((line) => line.level === 20), 'debug lines appear after the level change');
  });

  test('a broken file reloads nothing and says which line and key', async () => {
    const adminPort = amb.ambassador.adminAddress.port;
    const failedBefore = total(await scrape(adminPort), 'pg_ambassador_config_reloads_total', { result: 'failed' });
    const text = YAML.stringify(baseConfig(topology, { ...overrides, pool: { mode: 'transaction', size: 'many' } }));
    const line = text.split('\n').findIndex((l) => /^\s+size: many$/.test(l)) + 1;
    assert.ok(line > 0);
    const sizeBefore = amb.ambassador.config().pool.size;
    amb.writeConfig(text);
    const res = await fetch(`http://127.0.0.1:${adminPort}/reload`, { method: 'POST' });
    assert.equal(res.status, 200);
    const report = (await res.json()) as { config: { ok: boolean; error: string } };
    assert.equal(report.config.ok, false);
    assert.match(report.config.error, new RegExp(`ambassador\\.yaml:${line}\\b`));
    assert.match(report.config.error, /pool\.size/);
    assert.equal(amb.ambassador.config().pool.size, sizeBefore, 'nothing changed');
    assert.ok(total(await scrape(adminPort), 'pg_ambassador_config_reloads_total', { result: 'failed' }) > failedBefore);
    await withClient(viaAmbassador(amb.port, { database: DB }) as pg.ClientConfig, async (c) => assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1));
  });

  test('a key that needs a restart is reported and keeps its value', async () => {
    const port = amb.ambassador.address.port;
    amb.writeConfig({ ...overrides, listen: { host: '127.0.0.1', port: port + 1 }, pool: { mode: 'transaction', size: 3 } });
    const report = await amb.ambassador.reload('test');
    assert.equal(report.config.ok, true);
    assert.ok(report.config.ok && report.config.restartRequired.includes('listen.port'));
    assert.ok(report.config.ok && report.config.changed.includes('pool.size'));
    assert.equal(amb.ambassador.config().listen.port, 0, 'the effective config keeps the port it listens on');
    assert.equal(amb.ambassador.config().pool.size, 3);
    await withClient(viaAmbassador(port, { database: DB }) as pg.ClientConfig, async (c) => assert.equal((await c.query('SELECT 2 AS two')).rows[0].two, 2));
  });
});
