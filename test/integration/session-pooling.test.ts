// Session mode with pooling: a client keeps one server connection for its whole life, and when
// it leaves the connection goes back to the pool reset (ROLLBACK when inside a transaction, then
// DISCARD ALL), so the next client finds a server that looks new: default settings, no temp
// tables, no prepared statements, no locks, no open transaction. Pool size 1 makes "the next
// client gets the same server connection" certain, so reuse is checked by backend pid.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { ambassadorsFor, type TestAmbassador } from '../support/ambassador.ts';
import { ambassadorClient, prepareTestDatabase, directConfig, dropTestDatabase, serverBackends, withClient } from '../support/pooling.ts';
import { eventually, getTopology, type Topology } from '../support/topology.ts';

const DB = 'pa_session_pool';

let topology: Topology;
let admin: pg.Client;
let defaults: { searchPath: string; statementTimeout: string };
const ambassadors = ambassadorsFor(() => topology);

before(async () => {
  topology = await getTopology();
  admin = await prepareTestDatabase(topology, DB);
  await withClient(directConfig(topology, DB), async (c) => {
    await c.query('create schema foo; create table pa_rows (n int)');
    defaults = {
      searchPath: (await c.query('show search_path')).rows[0].search_path,
      statementTimeout: (await c.query('show statement_timeout')).rows[0].statement_timeout,
    };
  });
});

after(async () => {
  await ambassadors.stopAll();
  await admin?.end().catch(() => {});
  await dropTestDatabase(topology, DB).catch(() => {});
});

function sessionAmbassador(size = 1): Promise<TestAmbassador> {
  return ambassadors.start({ pool: { mode: 'session', size, acquireTimeout: '10s' }, logging: { level: 'debug' } });
}

const pidOf = async (c: pg.Client): Promise<number> => Number((await c.query('select pg_backend_pid() as pid')).rows[0].pid);

/** Everything a client could have left behind on its server, as the next client sees it. */
async function leftovers(c: pg.Client): Promise<Record<string, unknown>> {
  const { rows } = await c.query(
    `select current_setting('search_path') as search_path,
            current_setting('statement_timeout') as statement_timeout,
            to_regclass('pg_temp.pa_scratch') is not null as temp_table,
            (select count(*)::int from pg_prepared_statements) as prepared,
            (select count(*)::int from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()) as advisory_locks,
            (select count(*)::int from pg_listening_channels()) as listening`,
  );
  return rows[0] as Record<string, unknown>;
}

describe('session mode with pooling', () => {
  for (const how of ['socket destroyed', 'Terminate sent'] as const) {
    test(`the next client gets the same server, reset: default search_path, no temp table, no statements, locks or LISTEN (${how})`, async () => {
      const amb = await sessionAmbassador(1);
      const first = await ambassadorClient(amb.port, DB);
      const pid = await pidOf(first);
      await first.query('set search_path = foo');
      await first.query(`set statement_timeout = '4321ms'`);
      await first.query('create temp table pa_scratch (n int)');
      await first.query({ name: 'left-behind', text: 'select $1::int as v', values: [1] });
      await first.query('prepare sql_left_behind as select 1');
      await first.query('select pg_advisory_lock(4242)');
      await first.query('listen pa_session_channel');
      // What the first client left is really there (so the checks below can fail).
      assert.deepEqual(await leftovers(first), {
        search_path: 'foo',
        statement_timeout: '4321ms',
        temp_table: true,
        prepared: 2,
        advisory_locks: 1,
        listening: 1,
      });
      if (how === 'socket destroyed') (first as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
      else await first.end();

      const second = await ambassadorClient(amb.port, DB);
      try {
        assert.equal(await pidOf(second), pid, 'the second client got another server connection: the first was not reused');
        assert.deepEqual(await leftovers(second), {
          search_path: defaults.searchPath,
          statement_timeout: defaults.statementTimeout,
          temp_table: false,
          prepared: 0,
          advisory_locks: 0,
          listening: 0,
        });
        // The same names are free again.
        await second.query('create temp table pa_scratch (n int)');
        await second.query('prepare sql_left_behind as select 2 as two');
        assert.equal((await second.query('execute sql_left_behind')).rows[0].two, 2);
      } finally {
        await second.end();
      }
      assert.equal(amb.upstreamConnects(), 1, 'a server connection was opened for the second client');
    });
  }

  for (const how of ['socket destroyed', 'Terminate sent'] as const) {
    test(`a client that leaves inside a transaction (${how}) leaves its row uncommitted; the server is reused cleanly`, async () => {
      const amb = await sessionAmbassador(1);
      const marker = how === 'socket destroyed' ? 101 : 202;
      const leaver = await ambassadorClient(amb.port, DB);
      const pid = await pidOf(leaver);
      await leaver.query('begin');
      await leaver.query('insert into pa_rows values ($1)', [marker]);
      const open = await serverBackends(admin, DB);
      assert.equal(open.find((b) => b.pid === pid)?.state, 'idle in transaction', JSON.stringify(open));
      if (how === 'socket destroyed') (leaver as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
      else await leaver.end();
      await eventually(async () => ((await serverBackends(admin, DB)).some((b) => b.state === 'idle in transaction') ? undefined : true), {
        what: 'the transaction to be rolled back upstream',
      });
      const seen = await withClient(directConfig(topology, DB), (c) => c.query('select count(*)::int as n from pa_rows where n = $1', [marker]));
      assert.equal(seen.rows[0].n, 0, 'the uncommitted insert became visible');

      const next = await ambassadorClient(amb.port, DB);
      try {
        assert.equal(await pidOf(next), pid, 'the server connection was not reused');
        // Not inside the old transaction: a ROLLBACK warns "no transaction in progress".
        const notices: string[] = [];
        next.on('notice', (n) => notices.push(n.message ?? ''));
        await next.query('rollback');
        assert.deepEqual(notices, ['there is no transaction in progress']);
        await next.query('begin');
        await next.query('insert into pa_rows values ($1)', [marker + 1]);
        await next.query('commit');
      } finally {
        await next.end();
      }
      const committed = await withClient(directConfig(topology, DB), (c) => c.query('select count(*)::int as n from pa_rows where n = $1', [marker + 1]));
      assert.equal(committed.rows[0].n, 1);
      assert.equal(amb.upstreamConnects(), 1, 'the server connection was replaced instead of reused');
    });
  }

  // The leaving client ends politely (Terminate), as most do.
  test('with every server taken, a new client waits for one and logs in when a client leaves', async () => {
    const amb = await sessionAmbassador(2);
    const a = await ambassadorClient(amb.port, DB);
    const b = await ambassadorClient(amb.port, DB);
    const pids = new Set([await pidOf(a), await pidOf(b)]);
    let loggedIn = false;
    const third = ambassadorClient(amb.port, DB).then((c) => {
      loggedIn = true;
      return c;
    });
    // Authenticated and waiting for a server (the ambassador's own view of the session).
    await eventually(async () => ([...amb.ambassador.listener.sessions].some((s) => s.state === 'connecting') ? true : undefined), {
      what: 'the third client to wait for a server',
    });
    assert.equal(loggedIn, false, 'a third client got a server while pool.size 2 were both in use');
    await a.end();
    const c = await third;
    try {
      assert.ok(pids.has(await pidOf(c)), 'the third client did not get the released server');
    } finally {
      await c.end();
      await b.end();
    }
  });
});
