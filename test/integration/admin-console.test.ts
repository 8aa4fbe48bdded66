// The SQL admin console through psql (issue 7): database "ambassador" as a user listed in
// admin.users answers every SHOW command with PgBouncer's column names where they mean the same,
// SHOW ROUTE explains a statement's route, PAUSE holds new transactions until RESUME, RELOAD
// reports, anything else gets a clear error, and a user not in admin.users is refused.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { CLIENT_PASSWORD, startTestAmbassador, viaAmbassador, type TestAmbassador } from '../support/ambassador.ts';
import { eventually, getTopology, type Topology } from '../support/topology.ts';

const run = promisify(execFile);
const READER_PASSWORD = 'reader-console-secret-5b1c';

interface Table {
  columns: string[];
  rows: string[][];
}

describe('admin console (psql, database "ambassador")', () => {
  let topology: Topology;
  let amb: TestAmbassador;
  let client: pg.Client;

  before(async () => {
    topology = await getTopology();
    amb = await startTestAmbassador(topology, {
      clientAuth: { method: 'scram-sha-256', users: [{ name: 'app', password: CLIENT_PASSWORD }, { name: 'reader', password: READER_PASSWORD }] },
      upstream: { hosts: [{ host: topology.primary.host, port: topology.primary.port }, { host: topology.replicas[0]!.host, port: topology.replicas[0]!.port }] },
      pool: { mode: 'transaction', size: 3 },
      routing: { readWriteSplit: true, maxReplicaLag: '1GB' },
      admin: { users: ['app'] },
    });
    client = new pg.Client({ ...(viaAmbassador(amb.port) as pg.ClientConfig), application_name: 'console-test' });
    await client.connect();
    await client.query('SELECT 1');
  });
  after(async () => {
    await client?.end();
    await amb?.stop();
  });

  async function psql(sql: string, user = 'app', password = CLIENT_PASSWORD): Promise<{ stdout: string; stderr: string }> {
    return run('psql', ['-X', '-A', '-F', '|', '-v', 'ON_ERROR_STOP=1', '-c', sql], {
      env: { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(amb.port), PGUSER: user, PGPASSWORD: password, PGDATABASE: 'ambassador', PGSSLMODE: 'disable' },
    });
  }

  async function show(what: string): Promise<Table> {
    const { stdout } = await psql(`SHOW ${what}`);
    const lines = stdout.trimEnd().split('\n');
    assert.match(lines.at(-1)!, /^\(\d+ rows?\)$/, stdout);
    return { columns: lines[0]!.split('|'), rows: lines.slice(1, -1).map((line) => line.split('|')) };
  }

  const cell = (table: Table, row: string[], column: string): string => row[table.columns.indexOf(column)]!;

  test('SHOW POOLS has PgBouncer\'s columns and counts the connected client', async () => {
    const pools = await show('POOLS');
    assert.deepEqual(pools.columns, [
      'database', 'user', 'cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active', 'sv_active_cancel',
      'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login', 'maxwait', 'maxwait_us', 'pool_mode',
    ]);
    const app = pools.rows.find((row) => cell(pools, row, 'database') === 'app' && cell(pools, row, 'user') === 'app');
    assert.ok(app, `a pool for app/app in ${JSON.stringify(pools.rows)}`);
    assert.ok(Number(cell(pools, app, 'cl_active')) >= 1);
    assert.ok(Number(cell(pools, app, 'sv_idle')) >= 1, 'the login left a server connection idle');
    assert.equal(cell(pools, app, 'pool_mode'), 'transaction');
  });

  test('SHOW STATS, CLIENTS, SERVERS, HOSTS, CONFIG and VERSION answer with their columns', async () => {
    const stats = await show('STATS');
    assert.deepEqual(stats.columns.slice(0, 8), ['database', 'total_xact_count', 'total_query_count', 'total_received', 'total_sent', 'total_xact_time', 'total_query_time', 'total_wait_time']);
    const appStats = stats.rows.find((row) => cell(stats, row, 'database') === 'app')!;
    assert.ok(Number(cell(stats, appStats, 'total_query_count')) >= 1);

    const clients = await show('CLIENTS');
    for (const column of ['type', 'user', 'database', 'state', 'addr', 'port', 'connect_time', 'request_time', 'wait', 'wait_us', 'tls', 'application_name']) {
      assert.ok(clients.columns.includes(column), `SHOW CLIENTS has ${column}`);
    }
    const mine = clients.rows.find((row) => cell(clients, row, 'application_name') === 'console-test');
    assert.ok(mine, 'the pg client is listed');
    assert.equal(cell(clients, mine, 'state'), 'idle');
    assert.equal(cell(clients, mine, 'type'), 'C');

    const servers = await show('SERVERS');
    for (const column of ['type', 'user', 'database', 'state', 'addr', 'port', 'connect_time', 'request_time', 'remote_pid', 'tls']) {
      assert.ok(servers.columns.includes(column), `SHOW SERVERS has ${column}`);
    }
    assert.ok(servers.rows.some((row) => cell(servers, row, 'port') === String(topology.primary.port) && Number(cell(servers, row, 'remote_pid')) > 0));

    const hosts = await show('HOSTS');
    assert.deepEqual(hosts.columns.slice(0, 6), ['host', 'port', 'role', 'configured_role', 'up', 'breaker']);
    assert.ok(hosts.columns.includes('lag_bytes') && hosts.columns.includes('lag_seconds'));
    const roles = new Map(hosts.rows.map((row) => [cell(hosts, row, 'port'), cell(hosts, row, 'role')]));
    assert.equal(roles.get(String(topology.primary.port)), 'primary');
    assert.equal(roles.get(String(topology.replicas[0]!.port)), 'replica');

    const config = await show('CONFIG');
    assert.deepEqual(config.columns, ['key', 'value', 'default', 'changeable']);
    const keys = new Map(config.rows.map((row) => [row[0]!, row]));
    assert.equal(keys.get('pool.size')![1], '3');
    assert.equal(keys.get('pool.size')![2], '20');
    assert.equal(keys.get('pool.size')![3], 'yes');
    assert.equal(keys.get('listen.port')![3], 'no');
    assert.ok(!JSON.stringify(config.rows).includes(CLIENT_PASSWORD), 'no client password in SHOW CONFIG');
    assert.ok(!JSON.stringify(config.rows).includes(topology.users.app.password), 'no upstream password in SHOW CONFIG');

    const version = await show('VERSION');
    assert.deepEqual(version.columns, ['version']);
    assert.match(version.rows[0]![0]!, /^pg-ambassador \d+\.\d+\.\d+/);
  });

  test('SHOW ROUTE explains where a statement would go', async () => {
    const read = await show('ROUTE SELECT count(*) FROM pg_class');
    assert.deepEqual(read.columns, ['route', 'reason', 'classification', 'host', 'host_reason']);
    assert.equal(read.rows[0]![0], 'replica');
    assert.equal(read.rows[0]![3], `${topology.replicas[0]!.host}:${topology.replicas[0]!.port}`);
    const write = await show("ROUTE INSERT INTO t VALUES (1); SELECT 'a;b'");
    assert.equal(write.rows[0]![0], 'primary');
    assert.equal(write.rows[0]![3], `${topology.primary.host}:${topology.primary.port}`);
  });

  test('PAUSE holds new transactions until RESUME; RELOAD reports', async () => {
    await psql('PAUSE');
    let done = false;
    const held = client.query('SELECT 42 AS answer').then((r) => {
      done = true;
      return r.rows[0].answer as number;
    });
    await eventually(async () => {
      const clients = await show('CLIENTS');
      const mine = clients.rows.find((row) => cell(clients, row, 'application_name') === 'console-test');
      return mine !== undefined && cell(clients, mine, 'state') === 'waiting' ? true : undefined;
    });
    assert.equal(done, false, 'the query waits while paused');
    const pools = await show('POOLS');
    assert.ok(pools.rows.some((row) => Number(cell(pools, row, 'cl_waiting')) >= 1));
    await psql('RESUME');
    assert.equal(await held, 42);
    await assert.rejects(psql('RESUME'), (err: { stderr: string }) => /not paused/.test(err.stderr));
    const { stdout, stderr } = await psql('RELOAD');
    assert.match(stdout + stderr, /RELOAD/);
  });

  test('any other statement is a clear error; a user not in admin.users is refused', async () => {
    await assert.rejects(psql('SELECT 1'), (err: { stderr: string }) => /unknown admin console command/.test(err.stderr) && /SHOW POOLS/.test(err.stderr));
    await assert.rejects(psql('SHOW POOLS', 'reader', READER_PASSWORD), (err: { stderr: string }) => /may not use the admin console/.test(err.stderr));
    // The ambassador keeps serving.
    assert.equal((await client.query('SELECT 1 AS one')).rows[0].one, 1);
  });
});
