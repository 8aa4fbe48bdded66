// Transaction pooling against real Postgres: many clients share a small pool (size 3 unless a
// test says otherwise) and each transaction may land on a different server connection. What a
// client sees must be what it would see on a server of its own: its named prepared statements
// (replayed under shared names), its settings (replayed with RESET ALL; SET ...), and, while it
// holds state that cannot move (advisory locks, LISTEN, temp tables, SQL PREPARE), the same
// server. With pool.cacheUnnamedStatements, unnamed statements are shared too: parsed once per
// server, exactly one answer per message, and the cached-plan error after DDL retried or told once.
// Failures: a client killed mid-transaction, a pool that stays full (53300, client kept), a host
// that refuses (bounded retries with backoff), a cancel routed to the right server.
//
// Everything runs in a private database so pg_stat_activity can be filtered exactly.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { ambassadorsFor, viaAmbassador, type TestAmbassador } from '../support/ambassador.ts';
import {
  ambassadorClient,
  prepareTestDatabase,
  directConfig,
  dropTestDatabase,
  DelayingConnector,
  RecordingConnector,
  sendCancel,
  serverBackends,
  startChurn,
  
  withClient,
} from '../support/pooling.ts';
import { eventually, getTopology, refusingPort, type Topology } from '../support/topology.ts';
import { loginScram, summarize, type RawClient } from '../support/raw-client.ts';
import { encodeParse, encodeQuery, encodeSync, encodeTarget, FrontendType } from '../../src/protocol/frontend.ts';
import { frameMessage } from '../../src/protocol/writer.ts';
import { MISSING_STATEMENT, serverStatementName } from '../../src/frontend/statements.ts';
import { CLIENT_PASSWORD } from '../support/ambassador.ts';

const DB = 'pa_txn_pool';

let topology: Topology;
let admin: pg.Client;
const ambassadors = ambassadorsFor(() => topology);

before(async () => {
  topology = await getTopology();
  admin = await prepareTestDatabase(topology, DB);
});

after(async () => {
  await ambassadors.stopAll();
  await admin?.end().catch(() => {});
  // When this file started its own cluster, that cluster may already be gone.
  await dropTestDatabase(topology, DB).catch(() => {});
});

interface Pooled {
  amb: TestAmbassador;
  connector: RecordingConnector;
}

async function txnAmbassador(pool: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Promise<Pooled> {
  const connector = new RecordingConnector();
  const amb = await ambassadors.start({ pool: { mode: 'transaction', size: 3, ...pool }, logging: { level: 'debug' }, ...extra }, connector);
  return { amb, connector };
}

function client(amb: TestAmbassador, extra: Record<string, unknown> = {}): Promise<pg.Client> {
  return ambassadorClient(amb.port, DB, extra);
}

/** Polls the server connections the ambassador holds in DB; returns the largest count seen. */
function sampleServers(): { stop(): Promise<number> } {
  let max = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      max = Math.max(max, (await serverBackends(admin, DB)).length);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return max;
    },
  };
}

const pidOf = (result: pg.QueryResult): number => Number(result.rows[0].pid);

describe('prepared statements under transaction pooling', () => {
  test('named statements reused across 100 transactions while 10 clients churn give right answers on at most size servers', async () => {
    const { amb, connector } = await txnAmbassador();
    const main = await client(amb);
    const churn = await startChurn(amb.port, DB, 10);
    const sampler = sampleServers();
    const pids = new Set<number>();
    try {
      for (let i = 0; i < 100; i++) {
        const inTransaction = i % 5 === 0;
        if (inTransaction) await main.query('begin');
        const square = await main.query({ name: 'square', text: 'select $1::int * $1::int as v, pg_backend_pid() as pid', values: [i] });
        assert.equal(square.rows[0].v, i * i, `transaction ${i}: square`);
        pids.add(pidOf(square));
        const joined = await main.query({ name: 'joined', text: `select $1::text || '-' || $2::text as v, pg_backend_pid() as pid`, values: [`a${i}`, `b${i}`] });
        assert.equal(joined.rows[0].v, `a${i}-b${i}`, `transaction ${i}: joined`);
        // The same client name as the churners use, with other text: names are per client.
        const churnName = await main.query({ name: 'churn', text: 'select $1::int - 1 as v', values: [i] });
        assert.equal(churnName.rows[0].v, i - 1, `transaction ${i}: 'churn' named by this client`);
        if (inTransaction) {
          assert.equal(pidOf(joined), pidOf(square), 'one transaction, one server');
          await main.query('commit');
        }
      }
    } finally {
      const report = await churn.stop();
      const maxServers = await sampler.stop();
      await main.end();
      assert.deepEqual(report.errors, []);
      assert.ok(report.iterations >= 10, `churners made ${report.iterations} rounds`);
      assert.ok(maxServers <= 3, `pg_stat_activity showed ${maxServers} server connections for 11 clients, pool.size is 3`);
      const allPids = new Set([...pids, ...report.pids]);
      assert.ok(allPids.size <= 3, `clients ran on ${allPids.size} distinct backends: ${[...allPids].join(', ')}`);
      assert.ok(connector.records.filter((r) => r.ok).length <= 3, `the ambassador opened ${connector.records.length} server connections`);
    }
    // Otherwise the statements were never replayed on a server the client had not parsed them on.
    assert.ok(pids.size > 1, `the client's transactions all ran on one server (${[...pids].join(', ')})`);
  });

  test('SQL PREPARE / EXECUTE pin the client; DEALLOCATE releases it', async () => {
    const { amb } = await txnAmbassador();
    const main = await client(amb);
    const churn = await startChurn(amb.port, DB, 6);
    try {
      await main.query('prepare p_add(int) as select $1 + 1 as v, pg_backend_pid() as pid');
      const pids = new Set<number>();
      for (let i = 0; i < 20; i++) {
        const result = await main.query(`execute p_add(${i})`);
        assert.equal(result.rows[0].v, i + 1);
        pids.add(pidOf(result));
      }
      assert.equal(pids.size, 1, `EXECUTE ran on several servers: ${[...pids].join(', ')}`);
      const pinnedPid = [...pids][0]!;
      await main.query('deallocate p_add');
      await assert.rejects(main.query('execute p_add(1)'), (err: { code?: string }) => err.code === '26000');
      await eventually(
        async () => {
          const pid = pidOf(await main.query('select pg_backend_pid() as pid'));
          return pid !== pinnedPid ? pid : undefined;
        },
        { what: 'the client to move to another server after DEALLOCATE', timeoutMs: 15_000, intervalMs: 5 },
      );
      // PREPARE again after DEALLOCATE works (and pins again).
      await main.query('prepare p_add(int) as select $1 + 2 as v');
      assert.equal((await main.query('execute p_add(1)')).rows[0].v, 3);
      await main.query('deallocate p_add');
    } finally {
      const report = await churn.stop();
      await main.end();
      assert.deepEqual(report.errors, []);
    }
  });

  // The ambassador's own statements (pa_<hash>) live on shared servers: a client's DEALLOCATE ALL
  // or DISCARD ALL drops them there too, and the ambassador must notice.
  for (const statement of ['deallocate all', 'discard all']) {
    test(`${statement.toUpperCase()} by one client does not break other clients' named statements (pool size 1)`, async () => {
      const { amb } = await txnAmbassador({ size: 1 });
      const user = await client(amb);
      const resetter = await client(amb);
      try {
        const named = { name: 'one', text: 'select $1::int as v' };
        assert.equal((await user.query({ ...named, values: [1] })).rows[0].v, 1);
        await resetter.query(statement);
        for (let i = 2; i <= 4; i++) assert.equal((await user.query({ ...named, values: [i] })).rows[0].v, i, `execution ${i} after ${statement}`);
        // Its own named statements keep working after its reset too.
        assert.equal((await resetter.query({ ...named, values: [5] })).rows[0].v, 5);
      } finally {
        await user.end();
        await resetter.end();
      }
    });
  }
});

describe('session settings under transaction pooling', () => {
  test('a SET by one client does not reach the next client on the same server (pool size 1)', async () => {
    const { amb } = await txnAmbassador({ size: 1 });
    const setter = await client(amb);
    const next = await client(amb);
    try {
      await setter.query(`set statement_timeout = '1234ms'`);
      assert.equal((await next.query('show statement_timeout')).rows[0].statement_timeout, '0', 'the SET leaked to another client');
      assert.equal((await setter.query('show statement_timeout')).rows[0].statement_timeout, '1234ms');
      assert.equal((await next.query('show statement_timeout')).rows[0].statement_timeout, '0', 'the SET leaked to another client');
    } finally {
      await setter.end();
      await next.end();
    }
  });

  /** One client SETs statement_timeout then runs 50 transactions while 8 others churn. */
  async function setReplayWorkload(): Promise<{ pids: Set<number>; statementTimeouts: Set<string> }> {
    const { amb } = await txnAmbassador();
    const main = await client(amb);
    const churn = await startChurn(amb.port, DB, 8);
    const pids = new Set<number>();
    try {
      await main.query(`set statement_timeout = '1234ms'`);
      for (let i = 0; i < 50; i++) {
        let shown: string;
        let pid: number;
        if (i % 2 === 0) {
          // One Query message, one implicit transaction.
          const [show, who] = (await main.query('show statement_timeout; select pg_backend_pid() as pid')) as unknown as pg.QueryResult[];
          shown = show!.rows[0].statement_timeout;
          pid = pidOf(who!);
        } else {
          await main.query('begin');
          shown = (await main.query('show statement_timeout')).rows[0].statement_timeout;
          pid = pidOf(await main.query('select pg_backend_pid() as pid'));
          await main.query('commit');
        }
        assert.equal(shown, '1234ms', `transaction ${i} on backend ${pid}`);
        pids.add(pid);
      }
    } finally {
      const report = await churn.stop();
      await main.end();
      assert.deepEqual(report.errors, []);
    }
    return { pids, statementTimeouts: churn.report.statementTimeouts };
  }

  test('SET statement_timeout is replayed on every server the client lands on', async () => {
    const { pids } = await setReplayWorkload();
    assert.ok(pids.size > 1, `all 50 transactions ran on one server (${[...pids].join(', ')}): the replay was not exercised`);
  });

  test('a SET never reaches the other clients churning through the same servers', async () => {
    const { statementTimeouts } = await setReplayWorkload();
    assert.deepEqual([...statementTimeouts], ['0'], 'another client saw a statement_timeout it never set');
  });

  test('SET then RESET ALL (and RESET name) go back to the defaults on every server', async () => {
    const defaults = await withClient(directConfig(topology, DB), async (c) => ({
      statementTimeout: (await c.query('show statement_timeout')).rows[0].statement_timeout as string,
      searchPath: (await c.query('show search_path')).rows[0].search_path as string,
    }));
    const { amb } = await txnAmbassador();
    const main = await client(amb);
    const churn = await startChurn(amb.port, DB, 6);
    const settings = async (): Promise<{ statementTimeout: string; searchPath: string }> => {
      const [st, sp] = (await main.query('show statement_timeout; show search_path')) as unknown as pg.QueryResult[];
      return { statementTimeout: st!.rows[0].statement_timeout, searchPath: sp!.rows[0].search_path };
    };
    try {
      await main.query(`set statement_timeout = '4321ms'`);
      await main.query('set search_path = pg_catalog, public');
      for (let i = 0; i < 10; i++) assert.deepEqual(await settings(), { statementTimeout: '4321ms', searchPath: 'pg_catalog, public' });
      await main.query('reset statement_timeout');
      for (let i = 0; i < 10; i++) assert.deepEqual(await settings(), { statementTimeout: defaults.statementTimeout, searchPath: 'pg_catalog, public' });
      await main.query(`set statement_timeout = '4321ms'`);
      await main.query('reset all');
      for (let i = 0; i < 20; i++) assert.deepEqual(await settings(), defaults, `transaction ${i} after RESET ALL`);
    } finally {
      const report = await churn.stop();
      await main.end();
      assert.deepEqual(report.errors, []);
    }
  });

  test('RESET ALL goes back to the settings given at connection start, as on a direct connection (pool size 1)', async () => {
    const startup = { application_name: 'pa-startup', options: '-c statement_timeout=2500ms' };
    const trace = async (c: pg.Client): Promise<string[]> => {
      const seen: string[] = [];
      const show = async (): Promise<void> => {
        const [st, app] = (await c.query('show statement_timeout; show application_name')) as unknown as pg.QueryResult[];
        seen.push(`${st!.rows[0].statement_timeout}/${app!.rows[0].application_name}`);
      };
      await show();
      await c.query(`set statement_timeout = '1s'`);
      await c.query(`set application_name = 'changed'`);
      await show();
      await c.query('reset all');
      await show();
      await show();
      return seen;
    };
    const expected = await withClient(directConfig(topology, DB, startup), trace);
    assert.deepEqual(expected, ['2500ms/pa-startup', '1s/changed', '2500ms/pa-startup', '2500ms/pa-startup']);
    const { amb } = await txnAmbassador({ size: 1 });
    const main = await client(amb, startup);
    try {
      assert.deepEqual(await trace(main), expected);
    } finally {
      await main.end();
    }
  });

  /** Runs `steps` on a client; after each step, `show statement_timeout` in `probes` separate transactions. */
  async function settingsTrace(c: pg.Client, steps: string[][], probes: number): Promise<string[][]> {
    const trace: string[][] = [];
    for (const step of steps) {
      for (const sql of step) await c.query(sql).catch((err: Error & { code?: string }) => trace.push([`${sql} -> ${err.code}`]));
      const seen: string[] = [];
      for (let i = 0; i < probes; i++) seen.push((await c.query('show statement_timeout')).rows[0].statement_timeout);
      trace.push([...new Set(seen)]);
    }
    return trace;
  }

  async function compareWithPostgres(steps: string[][]): Promise<void> {
    const expected = await withClient(directConfig(topology, DB), (c) => settingsTrace(c, steps, 1));
    const { amb } = await txnAmbassador();
    const main = await client(amb);
    const churn = await startChurn(amb.port, DB, 6);
    let actual: string[][];
    try {
      actual = await settingsTrace(main, steps, 10);
    } finally {
      const report = await churn.stop();
      await main.end();
      assert.deepEqual(report.errors, []);
    }
    assert.deepEqual(actual, expected);
  }

  test('a SET inside a rolled-back (or failed) transaction is not kept; a committed one is; SET LOCAL ends with its transaction', async () => {
    await compareWithPostgres([
      ['begin', `set statement_timeout = '777ms'`, 'rollback'],
      ['begin', `set statement_timeout = '888ms'`, 'commit'],
      ['begin', `set local statement_timeout = '999ms'`, 'commit'],
      ['begin', `set statement_timeout = '3333ms'`, 'select 1/0', 'rollback'],
      ['begin', `set statement_timeout = '4444ms'`, 'select 1/0', 'commit'],
    ]);
  });

  test('a SET in a one-Query implicit transaction that fails is rolled back, as in Postgres', async () => {
    await compareWithPostgres([
      [`set statement_timeout = '888ms'`],
      // One Query, one implicit transaction: the error rolls the SET back.
      [`set statement_timeout = '6666ms'; select 1/0`],
    ]);
  });

  test('ROLLBACK TO SAVEPOINT undoes only the SETs after the savepoint, as in Postgres', async () => {
    await compareWithPostgres([
      ['begin', `set statement_timeout = '1111ms'`, 'savepoint s1', 'select 1', 'rollback to savepoint s1', 'commit'],
      ['begin', 'savepoint s2', `set statement_timeout = '2222ms'`, 'rollback to savepoint s2', 'commit'],
      ['begin', `set statement_timeout = '5555ms'`, 'savepoint s3', 'select 1/0', 'rollback to savepoint s3', 'commit'],
    ]);
  });

  test('postgres.js: SET, RESET ALL and the same SET again (a cached prepared statement) are all replayed', async () => {
    const { amb } = await txnAmbassador();
    const sql = postgres({ ...(viaAmbassador(amb.port, { database: DB }) as postgres.Options<{}>), username: 'app', max: 1, prepare: true, onnotice: () => {} });
    const churn = await startChurn(amb.port, DB, 6);
    const pids = new Set<number>();
    const probe = async (expected: string, what: string): Promise<void> => {
      for (let i = 0; i < 15; i++) {
        const [row] = await sql`select current_setting('statement_timeout') as st, pg_backend_pid() as pid`;
        pids.add(row!.pid);
        assert.equal(row!.st, expected, `${what}, probe ${i} on backend ${row!.pid}`);
      }
    };
    try {
      await sql`set statement_timeout = '1234ms'`;
      await probe('1234ms', 'after SET');
      await sql`reset all`;
      await probe('0', 'after RESET ALL');
      await sql`set statement_timeout = '1234ms'`;
      await probe('1234ms', 'after the same SET again');
    } finally {
      const report = await churn.stop();
      await sql.end({ timeout: 5 });
      assert.deepEqual(report.errors, []);
    }
    assert.ok(pids.size > 1, 'every probe ran on one server: the replay was not exercised');
  });
});

describe('pinned sessions', () => {
  test('an advisory lock pins the client to its server until unlocked; others get the lock only after', async () => {
    const { amb } = await txnAmbassador();
    const holder = await client(amb);
    const other = await client(amb);
    const churn = await startChurn(amb.port, DB, 4);
    try {
      const lockPid = pidOf(await holder.query('select pg_advisory_lock(42), pg_backend_pid() as pid'));
      for (let i = 0; i < 10; i++) {
        assert.equal(pidOf(await holder.query('select pg_backend_pid() as pid')), lockPid, `transaction ${i} moved while the lock was held`);
        const trial = await other.query('select pg_try_advisory_lock(42) as got, pg_backend_pid() as pid');
        assert.equal(trial.rows[0].got, false, 'another client took the advisory lock while it was held');
        assert.notEqual(pidOf(trial), lockPid);
      }
      await holder.query('begin');
      assert.equal(pidOf(await holder.query('select pg_backend_pid() as pid')), lockPid);
      await holder.query('commit');
      const unlocked = await holder.query('select pg_advisory_unlock(42) as released');
      assert.equal(unlocked.rows[0].released, true, 'the unlock ran on a server that does not hold the lock');
      await eventually(
        async () => {
          const pid = pidOf(await holder.query('select pg_backend_pid() as pid'));
          return pid !== lockPid ? pid : undefined;
        },
        { what: 'the unlocked client to move to another server', timeoutMs: 15_000, intervalMs: 5 },
      );
      const taken = await other.query('select pg_try_advisory_lock(42) as got');
      assert.equal(taken.rows[0].got, true, 'the lock was not free after pg_advisory_unlock');
      assert.equal((await other.query('select pg_advisory_unlock(42) as released')).rows[0].released, true);
    } finally {
      const report = await churn.stop();
      await holder.end();
      await other.end();
      assert.deepEqual(report.errors, []);
    }
  });

  // Drivers with statement caches (pg named statements, postgres.js, JDBC) run a cached statement
  // with Bind/Execute only: the second lock through the same statement must pin again.
  test('an advisory lock taken again through a cached named statement pins again', async () => {
    const { amb } = await txnAmbassador();
    const holder = await client(amb);
    const other = await client(amb);
    const churn = await startChurn(amb.port, DB, 4);
    const lock = { name: 'lock', text: 'select pg_advisory_lock($1::bigint), pg_backend_pid() as pid' };
    const unlock = { name: 'unlock', text: 'select pg_advisory_unlock($1::bigint) as released' };
    try {
      for (let round = 1; round <= 2; round++) {
        const lockPid = pidOf(await holder.query({ ...lock, values: [43] }));
        for (let i = 0; i < 10; i++) {
          assert.equal(pidOf(await holder.query('select pg_backend_pid() as pid')), lockPid, `round ${round}, transaction ${i}: moved while holding the lock`);
        }
        assert.equal((await other.query('select pg_try_advisory_lock(43) as got')).rows[0].got, false, `round ${round}: the lock was free`);
        assert.equal((await holder.query({ ...unlock, values: [43] })).rows[0].released, true, `round ${round}: unlock ran on a server without the lock`);
      }
    } finally {
      const report = await churn.stop();
      await holder.end();
      await other.end();
      assert.deepEqual(report.errors, []);
    }
  });

  // After the last unlock the ambassador asks the server whether any advisory lock is left before
  // it unpins; a lock the client takes meanwhile must keep the pin.
  test('a lock taken right after an unlock (while the ambassador re-checks) keeps the client pinned', async () => {
    const { amb } = await txnAmbassador();
    const holder = await client(amb);
    const other = await client(amb);
    const churn = await startChurn(amb.port, DB, 4);
    try {
      let lockPid = pidOf(await holder.query('select pg_advisory_lock(44), pg_backend_pid() as pid'));
      for (let round = 1; round <= 20; round++) {
        // Queued together: pg sends the lock the moment the unlock's ReadyForQuery arrives.
        const [released, relocked] = await Promise.all([
          holder.query('select pg_advisory_unlock(44) as released'),
          holder.query('select pg_advisory_lock(44), pg_backend_pid() as pid'),
        ]);
        assert.equal(released.rows[0].released, true, `round ${round}: the unlock ran on a server without the lock`);
        lockPid = pidOf(relocked);
        for (let i = 0; i < 3; i++) {
          assert.equal(pidOf(await holder.query('select pg_backend_pid() as pid')), lockPid, `round ${round}, transaction ${i}: moved while holding the lock`);
        }
        assert.equal((await other.query('select pg_try_advisory_lock(44) as got')).rows[0].got, false, `round ${round}: another client took the held lock`);
      }
      assert.equal((await holder.query('select pg_advisory_unlock(44) as released')).rows[0].released, true);
    } finally {
      const report = await churn.stop();
      await holder.end();
      await other.end();
      assert.deepEqual(report.errors, []);
    }
  });

  test('LISTEN pins the client: notifications arrive between and after its transactions', async () => {
    const { amb } = await txnAmbassador();
    const listener = await client(amb);
    const notifier = await client(amb);
    const churn = await startChurn(amb.port, DB, 4);
    const received: pg.Notification[] = [];
    listener.on('notification', (n) => received.push(n));
    try {
      await listener.query('listen pa_txn_channel');
      assert.equal(amb.ambassador.listener.pinCounts.get('listen'), 1, 'pins are counted per reason');
      const listenPid = pidOf(await listener.query('select pg_backend_pid() as pid'));
      await withClient(directConfig(topology, DB), (direct) => direct.query(`notify pa_txn_channel, 'direct-1'`));
      await eventually(async () => (received.length >= 1 ? true : undefined), { what: 'the first notification' });
      for (let i = 0; i < 5; i++) assert.equal(pidOf(await listener.query('select pg_backend_pid() as pid')), listenPid);
      // From another client of the same ambassador, inside a transaction (delivered at commit).
      await notifier.query('begin');
      await notifier.query(`notify pa_txn_channel, 'pooled-2'`);
      await notifier.query('commit');
      await eventually(async () => (received.length >= 2 ? true : undefined), { what: 'the second notification' });
      assert.deepEqual(
        received.map((n) => [n.channel, n.payload]),
        [
          ['pa_txn_channel', 'direct-1'],
          ['pa_txn_channel', 'pooled-2'],
        ],
      );
      await listener.query('select 1');
    } finally {
      const report = await churn.stop();
      await listener.end();
      await notifier.end();
      assert.deepEqual(report.errors, []);
    }
  });

  test('a temp table stays visible to its session across transactions (pinned) and to no one else', async () => {
    const { amb } = await txnAmbassador();
    const owner = await client(amb);
    const other = await client(amb);
    const churn = await startChurn(amb.port, DB, 4);
    try {
      await owner.query('create temp table pa_scratch (n int)');
      const pid = pidOf(await owner.query('select pg_backend_pid() as pid'));
      for (let i = 1; i <= 10; i++) {
        await owner.query('insert into pa_scratch values ($1)', [i]);
        const row = await owner.query('select count(*)::int as n, sum(n)::int as total, pg_backend_pid() as pid from pa_scratch');
        assert.deepEqual([row.rows[0].n, row.rows[0].total], [i, (i * (i + 1)) / 2], `transaction ${i}`);
        assert.equal(pidOf(row), pid);
      }
      await assert.rejects(other.query('select * from pa_scratch'), (err: { code?: string }) => err.code === '42P01');
      await owner.query('drop table pa_scratch');
    } finally {
      const report = await churn.stop();
      await owner.end();
      await other.end();
      assert.deepEqual(report.errors, []);
    }
  });
});

describe('cached plan must not change result type', () => {
  // Pool size 1: the second execute lands on the server holding the outdated statement.
  test('pg: a named statement executed again after ALTER TABLE returns the new column', async () => {
    const { amb } = await txnAmbassador({ size: 1 });
    await withClient(directConfig(topology, DB), (c) => c.query('drop table if exists pa_cp_pg; create table pa_cp_pg (a int); insert into pa_cp_pg values (1)'));
    const main = await client(amb);
    try {
      const first = await main.query({ name: 'sel', text: 'select * from pa_cp_pg' });
      assert.deepEqual(first.rows, [{ a: 1 }]);
      await withClient(directConfig(topology, DB), (c) => c.query('alter table pa_cp_pg add column b int default 7'));
      const second = await main.query({ name: 'sel', text: 'select * from pa_cp_pg' });
      assert.deepEqual(second.rows, [{ a: 1, b: 7 }]);
      assert.deepEqual(second.fields.map((f) => f.name), ['a', 'b']);
      assert.deepEqual((await main.query({ name: 'sel', text: 'select * from pa_cp_pg' })).rows, [{ a: 1, b: 7 }]);
    } finally {
      await main.end();
    }
    assert.ok(amb.logText().includes('cached plan changed result type'), 'the retry path was not taken (is the test still exercising it?)');
  });

  test('postgres.js: a prepared query executed again after ALTER TABLE returns the new column', async () => {
    const { amb } = await txnAmbassador({ size: 1 });
    await withClient(directConfig(topology, DB), (c) => c.query('drop table if exists pa_cp_js; create table pa_cp_js (a int); insert into pa_cp_js values (1)'));
    const sql = postgres({ ...(viaAmbassador(amb.port, { database: DB }) as postgres.Options<{}>), username: 'app', max: 1, prepare: true, onnotice: () => {} });
    try {
      const first = await sql`select * from pa_cp_js`;
      assert.deepEqual([...first], [{ a: 1 }]);
      await withClient(directConfig(topology, DB), (c) => c.query('alter table pa_cp_js add column b int default 7'));
      const second = await sql`select * from pa_cp_js`;
      assert.deepEqual([...second], [{ a: 1, b: 7 }]);
      assert.deepEqual([...(await sql`select * from pa_cp_js`)], [{ a: 1, b: 7 }]);
    } finally {
      await sql.end({ timeout: 5 });
    }
  });
});

describe('prepare without a server', () => {
  test('a lone Parse+Sync is answered without a lease; a bad statement fails when first executed', async () => {
    const { amb } = await txnAmbassador({ size: 1 });
    const holder = await client(amb);
    const raw = await loginScram(amb.port, 'app', CLIENT_PASSWORD, { database: DB });
    try {
      // The only server is held inside a transaction: preparing must not wait for it.
      await holder.query('begin');
      await holder.query('select 1');
      raw.write([encodeParse('good', 'select $1::int + 1', Buffer.from([0, 1, 0, 0, 0, 23])), encodeParse('bad', 'selec oops', Buffer.from([0, 0])), encodeSync()]);
      const prepared = await raw.readUntil('Z', 2_000);
      assert.deepEqual(prepared.map((m) => m.type), ['1', '1', 'Z']);
      await holder.query('commit');
      raw.write([bind('good', [Buffer.from('41')]), execute(), encodeSync()]);
      const good = await raw.readUntil('Z');
      assert.deepEqual(good.map((m) => m.type), ['2', 'D', 'C', 'Z']);
      raw.write([bind('bad', []), execute(), encodeSync()]);
      const bad = [await raw.nextMessage(), await raw.nextMessage()];
      assert.deepEqual(bad.map((m) => [m.type, m.error?.code]), [['E', '42601'], ['Z', undefined]]);
    } finally {
      raw.destroy();
      await holder.end();
    }
  });
});

describe('statements the ambassador does not hold', () => {
  /** Runs `body` with a raw client on a pool of one whose session made `mine(int)` with SQL PREPARE (which pins it). */
  async function withSqlPrepared(body: (raw: RawClient) => Promise<void>): Promise<void> {
    const { amb } = await txnAmbassador({ size: 1 });
    const raw = await loginScram(amb.port, 'app', CLIENT_PASSWORD, { database: DB });
    try {
      raw.write([encodeQuery('prepare mine(int) as select $1 + 1')]);
      assert.deepEqual((await raw.readUntil('Z')).map((m) => m.type), ['C', 'Z']);
      await body(raw);
    } finally {
      raw.destroy();
    }
  }

  test('a Bind of a statement made with SQL PREPARE is never closed to make room for the protocol-level ones', () =>
    // A server keeps at most 256 statements for the ambassador: it closes the least recently used
    // to make room. A statement the session made itself is the session's: binding it by name
    // must not make it one the ambassador may close.
    withSqlPrepared(async (raw) => {
      raw.write([bind('mine', [Buffer.from('41')]), execute(), encodeSync()]);
      assert.deepEqual((await raw.readUntil('Z')).map((m) => m.type), ['2', 'D', 'C', 'Z']);
      const parses = Array.from({ length: 256 }, (_, i) => encodeParse(`p${i}`, `select ${i}`, Buffer.from([0, 0])));
      raw.write([...parses, encodeSync()]);
      const prepared = await raw.readUntil('Z');
      assert.deepEqual(new Set(prepared.map((m) => m.type)), new Set(['1', 'Z']), 'every Parse completes');
      raw.write([bind('mine', [Buffer.from('1')]), execute(), encodeSync()]);
      const again = await raw.readUntil('Z');
      assert.deepEqual(again.map((m) => [m.type, m.error?.code]), [['2', undefined], ['D', undefined], ['C', undefined], ['Z', undefined]]);
    }));

  test('a protocol Close of a statement made with SQL PREPARE closes it on the server', () =>
    withSqlPrepared(async (raw) => {
      raw.write([encodeTarget(FrontendType.Close, 'S', 'mine'), encodeSync()]);
      assert.deepEqual((await raw.readUntil('Z')).map((m) => m.type), ['3', 'Z']);
      raw.write([bind('mine', [Buffer.from('1')]), execute(), encodeSync()]);
      const gone = [await raw.nextMessage(), await raw.nextMessage()];
      assert.deepEqual(gone.map((m) => [m.type, m.error?.code]), [['E', '26000'], ['Z', undefined]], 'the statement is closed');
      raw.write([encodeQuery('prepare mine(int) as select $1 + 2')]);
      assert.deepEqual((await raw.readUntil('Z')).map((m) => m.type), ['C', 'Z'], 'its name is free again (not 42P05)');
      raw.write([encodeQuery('deallocate mine')]);
      await raw.readUntil('Z');
    }));
});

describe('statements a client never prepared', () => {
  // On a pool of one, client A leaves a statement on the server; client B, on the same server
  // connection, names it without having prepared it. A direct connection would answer 26000, and
  // so must the ambassador, not run or describe A's statement.
  async function afterAnotherClient(cacheUnnamedStatements: boolean, body: (raw: RawClient, a: RawClient) => Promise<void>): Promise<void> {
    const { amb } = await txnAmbassador({ size: 1, cacheUnnamedStatements });
    const a = await loginScram(amb.port, 'app', CLIENT_PASSWORD, { database: DB });
    const b = await loginScram(amb.port, 'app', CLIENT_PASSWORD, { database: DB });
    try {
      a.write(unnamedRun('select 42 as left_behind'));
      assert.deepEqual(summarize(await a.readUntil('Z')), ['1', '2', 'T', 'D', 'C', 'Z(I)']);
      await body(b, a);
    } finally {
      a.destroy();
      b.destroy();
    }
  }

  /** The answer to `messages`: 26000 naming a statement nothing has, then ReadyForQuery. */
  async function refused(raw: RawClient, messages: Buffer[]): Promise<void> {
    raw.write(messages);
    const answer = [await raw.nextMessage(), await raw.nextMessage()];
    assert.deepEqual(summarize(answer), ['E(ERROR 26000)', 'Z(I)']);
    assert.match(answer[0]!.error!.message, new RegExp(`prepared statement "${MISSING_STATEMENT}" does not exist`));
  }

  test('a Bind or Describe of the unnamed statement by a client that never parsed one gets 26000', () =>
    afterAnotherClient(false, async (b) => {
      await refused(b, [bind('', []), execute(), encodeSync()]);
      await refused(b, [encodeTarget(FrontendType.Describe, 'S', ''), encodeSync()]);
      b.write(unnamedRun('select 7 as own'));
      assert.deepEqual(summarize(await b.readUntil('Z')), ['1', '2', 'T', 'D', 'C', 'Z(I)'], 'its own unnamed statement works');
    }));

  test('a Describe of its own unnamed statement, parsed in an earlier exchange, describes that one', () =>
    afterAnotherClient(false, async (b, a) => {
      b.write([encodeParse('', 'select 7 as own', Buffer.from([0, 0])), encodeSync()]);
      assert.deepEqual(summarize(await b.readUntil('Z')), ['1', 'Z(I)']);
      a.write(unnamedRun('select 42 as left_behind')); // the server's unnamed statement is A's again
      await a.readUntil('Z');
      b.write([encodeTarget(FrontendType.Describe, 'S', ''), encodeSync()]);
      const described = await b.readUntil('Z');
      assert.deepEqual(summarize(described), ['t', 'T', 'Z(I)']);
      const columns = described.find((m) => m.type === 'T')!.payload;
      assert.equal(columns.toString('utf8', 2, columns.indexOf(0, 2)), 'own', 'not the statement A left on the server');
    }));

  test('a refused Bind takes none of the 256 statement places of the server connection', async () => {
    // A fills the one server connection with 256 statements; B's Binds of statements it never
    // prepared are refused; A's next statement then closes exactly one old statement on the
    // server. Had a refused name been counted as held there, it would have closed two.
    const { amb } = await txnAmbassador({ size: 1 });
    const a = await loginScram(amb.port, 'app', CLIENT_PASSWORD, { database: DB });
    const b = await loginScram(amb.port, 'app', CLIENT_PASSWORD, { database: DB });
    const run = (i: number): Buffer[] => [encodeParse(`s${i}`, `select ${i} as n`, Buffer.from([0, 0])), bind(`s${i}`, []), execute(), encodeSync()];
    const held = async (): Promise<number> => (await a.query('select name from pg_prepared_statements')).filter((m) => m.type === 'D').length;
    try {
      for (let i = 0; i < 256; i += 32) {
        a.write(Array.from({ length: 32 }, (_, k) => run(i + k)).flat());
        for (let k = 0; k < 32; k++) await a.readUntil('Z');
      }
      assert.equal(await held(), 256);
      await refused(b, [bind('', []), execute(), encodeSync()]);
      await refused(b, [bind('pa_not_mine', []), execute(), encodeSync()]);
      a.write(run(256));
      assert.deepEqual(summarize(await a.readUntil('Z')), ['1', '2', 'D', 'C', 'Z(I)']);
      assert.equal(await held(), 256, 'one statement closed for the new one, no more');
    } finally {
      a.destroy();
      b.destroy();
    }
  });

  test('pool.cacheUnnamedStatements: a Bind or Describe of another client’s shared statement by its server name gets 26000', () =>
    afterAnotherClient(true, async (b, a) => {
      const shared = serverStatementName(Buffer.concat([Buffer.from('select 42 as left_behind\0'), Buffer.from([0, 0])]));
      a.write([encodeQuery(`select name from pg_prepared_statements where name = '${shared}'`)]);
      assert.equal((await a.readUntil('Z')).filter((m) => m.type === 'D').length, 1, 'A left it on the one server connection');
      await refused(b, [bind(shared, []), execute(), encodeSync()]);
      await refused(b, [encodeTarget(FrontendType.Describe, 'S', shared), encodeSync()]);
      b.write(unnamedRun('select 42 as left_behind'));
      assert.deepEqual(summarize(await b.readUntil('Z')), ['1', '2', 'T', 'D', 'C', 'Z(I)'], 'parsed by B, the same text binds the shared statement');
    }));
});

function bind(statement: string, params: Buffer[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`\0${statement}\0`), Buffer.from([0, 0]), Buffer.alloc(2)];
  parts[2]!.writeInt16BE(params.length);
  for (const p of params) {
    const len = Buffer.alloc(4);
    len.writeInt32BE(p.length);
    parts.push(len, p);
  }
  parts.push(Buffer.from([0, 0]));
  return frameMessage(0x42, Buffer.concat(parts));
}

function execute(): Buffer {
  return frameMessage(0x45, Buffer.from([0, 0, 0, 0, 0]));
}


interface ServerStatement {
  name: string;
  runs: number;
}

/** The protocol-level statements of the server connection `c` lands on whose text is `text`. */
async function serverStatements(c: pg.Client, text: string): Promise<ServerStatement[]> {
  const r = await c.query({
    text: 'select name, (generic_plans + custom_plans)::int as runs from pg_prepared_statements where statement = $1 and not from_sql',
    values: [text],
  });
  return r.rows as ServerStatement[];
}

/** Parse (unnamed), Bind, Describe (portal), Execute, Sync: what pg sends for a query with parameters, here with none. */
function unnamedRun(sql: string): Buffer[] {
  return [encodeParse('', sql, Buffer.from([0, 0])), bind('', []), encodeTarget(FrontendType.Describe, 'P', ''), execute(), encodeSync()];
}

/** Runs `sql` directly on the primary (DDL and fixtures). */
function direct(sql: string): Promise<unknown> {
  return withClient(directConfig(topology, DB), (c) => c.query(sql));
}

describe('pool.cacheUnnamedStatements', () => {
  const cachingAmbassador = async (size: number, cacheUnnamedStatements: boolean): Promise<TestAmbassador> =>
    (await txnAmbassador({ size, cacheUnnamedStatements })).amb;
  const TEXT = 'select $1::int * 2 as twice';

  test('on: a parameterized query is parsed once on the server and only bound after that', async () => {
    const amb = await cachingAmbassador(1, true);
    const c = await client(amb);
    try {
      for (let i = 0; i < 20; i++) assert.deepEqual((await c.query(TEXT, [i])).rows, [{ twice: 2 * i }]);
      const held = await serverStatements(c, TEXT);
      assert.equal(held.length, 1, `one shared statement: ${JSON.stringify(held)}`);
      assert.match(held[0]!.name, /^pa_[0-9a-f]{24}$/);
      assert.equal(held[0]!.runs, 20, 'every run used the statement parsed by the first');
    } finally {
      await c.end();
    }
  });

  test('off (the default): the same queries leave no statement on the server', async () => {
    const amb = await cachingAmbassador(1, false);
    const c = await client(amb);
    try {
      for (let i = 0; i < 5; i++) assert.deepEqual((await c.query(TEXT, [i])).rows, [{ twice: 2 * i }]);
      assert.deepEqual(await serverStatements(c, TEXT), []);
    } finally {
      await c.end();
    }
  });

  test('8 clients on 3 servers, alternating texts and named statements of the same text: every answer is the client’s own', async () => {
    const amb = await cachingAmbassador(3, true);
    const clients = await Promise.all(Array.from({ length: 8 }, () => client(amb)));
    try {
      await Promise.all(
        clients.map(async (c, n) => {
          for (let i = 0; i < 40; i++) {
            const value = n * 1000 + i;
            assert.deepEqual((await c.query(TEXT, [value])).rows, [{ twice: 2 * value }]);
            assert.deepEqual((await c.query('select $1::text || $2::text as joined', [`c${n}`, `-${i}`])).rows, [{ joined: `c${n}-${i}` }]);
            if (i % 10 === 0) assert.deepEqual((await c.query({ name: 'twice', text: TEXT, values: [value] })).rows, [{ twice: 2 * value }]);
          }
        }),
      );
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
  });

  test('a syntax error in an unnamed statement is the client’s error, and the next query works', async () => {
    const amb = await cachingAmbassador(1, true);
    const c = await client(amb);
    try {
      await assert.rejects(c.query('selec $1::int', [1]), (err: { code?: string }) => err.code === '42601');
      await assert.rejects(c.query('selec $1::int', [1]), (err: { code?: string }) => err.code === '42601', 'the failed text is not taken as held');
      assert.deepEqual((await c.query(TEXT, [4])).rows, [{ twice: 8 }]);
    } finally {
      await c.end();
    }
  });

  test('the client gets exactly one answer per message, whether the server parsed the text or held it, and after ALTER TABLE', async () => {
    const amb = await cachingAmbassador(1, true);
    await direct('drop table if exists pa_unnamed_raw; create table pa_unnamed_raw (a int); insert into pa_unnamed_raw values (1)');
    const raw = await loginScram(amb.port, 'app', CLIENT_PASSWORD, { database: DB });
    const ONE_ROW = ['1', '2', 'T', 'D', 'C', 'Z(I)'];
    try {
      for (let i = 0; i < 3; i++) {
        raw.write(unnamedRun('select * from pa_unnamed_raw'));
        assert.deepEqual(summarize(await raw.readUntil('Z')), ONE_ROW, `run ${i + 1}`);
      }
      await direct('alter table pa_unnamed_raw add column b int default 7');
      raw.write(unnamedRun('select * from pa_unnamed_raw'));
      const after = await raw.readUntil('Z');
      assert.deepEqual(summarize(after), ONE_ROW, 'the retry leaves no trace: one ParseComplete, no error');
      assert.equal(after.find((m) => m.type === 'D')!.payload.readUInt16BE(0), 2, 'two columns now');
      // Two runs in one write: both answered, in order.
      raw.write([...unnamedRun('select * from pa_unnamed_raw'), ...unnamedRun('select 2')]);
      assert.deepEqual(summarize(await raw.readUntil('Z')), ONE_ROW);
      assert.deepEqual(summarize(await raw.readUntil('Z')), ONE_ROW);

      // Two Parses answered here, then the failing Bind: the retry leaves both out.
      raw.write(unnamedRun('select 1'));
      assert.deepEqual(summarize(await raw.readUntil('Z')), ONE_ROW, 'held now, under the server name s1 will share');
      await direct('alter table pa_unnamed_raw add column c int default 8');
      const [parse, ...rest] = unnamedRun('select * from pa_unnamed_raw');
      raw.write([parse!, encodeParse('s1', 'select 1', Buffer.from([0, 0])), ...rest]);
      const two = await raw.readUntil('Z');
      assert.deepEqual(summarize(two), ['1', ...ONE_ROW], 'one ParseComplete for each Parse');
      assert.equal(two.find((m) => m.type === 'D')!.payload.readUInt16BE(0), 3);

      // A run pipelined behind the failing one: no retry (its answers would be lost with the
      // plan); the first gets 0A000 once, the second its rows, and the next run works.
      await direct('alter table pa_unnamed_raw add column d int default 9');
      raw.write([...unnamedRun('select * from pa_unnamed_raw'), ...unnamedRun('select 3')]);
      const failed = [await raw.nextMessage(), await raw.nextMessage(), await raw.nextMessage()];
      assert.deepEqual(summarize(failed), ['1', 'E(ERROR 0A000)', 'Z(I)']);
      assert.deepEqual(summarize(await raw.readUntil('Z')), ONE_ROW);
      raw.write(unnamedRun('select * from pa_unnamed_raw'));
      const four = await raw.readUntil('Z');
      assert.deepEqual(summarize(four), ONE_ROW);
      assert.equal(four.find((m) => m.type === 'D')!.payload.readUInt16BE(0), 4);
    } finally {
      raw.destroy();
    }
  });

  test('after ALTER TABLE: re-run unseen outside a transaction; inside one, 0A000 once, then re-created', async () => {
    const amb = await cachingAmbassador(1, true);
    await direct('drop table if exists pa_unnamed_t; create table pa_unnamed_t (a int); insert into pa_unnamed_t values (1)');
    const c = await client(amb);
    const SELECT = 'select * from pa_unnamed_t where a = $1';
    try {
      assert.deepEqual((await c.query(SELECT, [1])).rows, [{ a: 1 }]);
      await direct('alter table pa_unnamed_t add column b int default 7');
      const after = await c.query(SELECT, [1]);
      assert.deepEqual(after.rows, [{ a: 1, b: 7 }]);
      assert.deepEqual(after.fields.map((f) => f.name), ['a', 'b']);
      assert.ok(amb.logText().includes('cached plan changed result type'), 'the retry path was not taken (is the test still exercising it?)');

      await direct('alter table pa_unnamed_t add column c int default 8');
      await c.query('begin');
      await assert.rejects(c.query(SELECT, [1]), (err: { code?: string }) => err.code === '0A000');
      await c.query('rollback');
      assert.deepEqual((await c.query(SELECT, [1])).rows, [{ a: 1, b: 7, c: 8 }]);
    } finally {
      await c.end();
    }
  });
});

describe('failures under transaction pooling', () => {
  test('a client killed mid-transaction leaves no open transaction on any server and its insert is not visible', async () => {
    const { amb } = await txnAmbassador();
    await withClient(directConfig(topology, DB), (c) => c.query('drop table if exists pa_killed; create table pa_killed (n int)'));
    const victim = await client(amb);
    await victim.query('begin');
    await victim.query('insert into pa_killed values (1)');
    // The transaction is really open upstream (so the checks below can fail).
    const open = await serverBackends(admin, DB);
    assert.equal(open.filter((b) => b.state === 'idle in transaction').length, 1, JSON.stringify(open));
    (victim as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    await eventually(
      async () => ((await serverBackends(admin, DB)).some((b) => b.state === 'idle in transaction' || b.xact_start !== null) ? undefined : true),
      { what: 'no server backend left inside a transaction' },
    );
    const rows = await withClient(directConfig(topology, DB), (c) => c.query('select count(*)::int as n from pa_killed'));
    assert.equal(rows.rows[0].n, 0, 'the killed client’s insert became visible');
    // The server comes back usable (or is replaced): others keep working.
    const next = await client(amb);
    try {
      for (let i = 0; i < 5; i++) {
        const r = await next.query('select count(*)::int as n, current_setting($1) as st from pa_killed', ['statement_timeout']);
        assert.deepEqual(r.rows[0], { n: 0, st: '0' });
      }
    } finally {
      await next.end();
    }
  });

  test('a client gone inside an exchange left open without Sync: its insert is not committed by the next client on that server', async () => {
    const { amb } = await txnAmbassador({ size: 1 });
    await withClient(directConfig(topology, DB), (c) => c.query('drop table if exists pa_unsynced; create table pa_unsynced (n int)'));
    const raw = await loginScram(amb.port, 'app', CLIENT_PASSWORD, { database: DB });
    // Parse, Bind, Execute, Flush: the insert ran, and its implicit transaction waits for a Sync.
    const flush = frameMessage(FrontendType.Flush, Buffer.alloc(0));
    raw.write([encodeParse('', 'insert into pa_unsynced values (1)', Buffer.from([0, 0])), bind('', []), execute(), flush]);
    assert.deepEqual(summarize(await raw.readUntil('C')), ['1', '2', 'C']);
    const open = await serverBackends(admin, DB);
    assert.equal(open.filter((b) => b.xact_start !== null).length, 1, `the implicit transaction is open upstream: ${JSON.stringify(open)}`);
    raw.destroy();
    // The pool's only server is the one the client left: the next client's Sync or Query must not end that transaction by committing it.
    const next = await client(amb);
    try {
      const r = await next.query('select count(*)::int as n from pa_unsynced');
      assert.equal(r.rows[0].n, 0, 'the next client saw the insert of the client that left');
    } finally {
      await next.end();
    }
    const rows = await withClient(directConfig(topology, DB), (c) => c.query('select count(*)::int as n from pa_unsynced'));
    assert.equal(rows.rows[0].n, 0, 'the insert of the client that left was committed');
    await eventually(async () => ((await serverBackends(admin, DB)).some((b) => b.xact_start !== null) ? undefined : true), {
      what: 'no server backend left inside a transaction',
    });
  });

  test('a full pool answers waiting clients with 53300 after acquireTimeout; they stay connected', async () => {
    const { amb } = await txnAmbassador({ size: 2, acquireTimeout: '500ms' });
    const clients = await Promise.all(Array.from({ length: 5 }, () => client(amb)));
    const [h1, h2, ...waiters] = clients as [pg.Client, pg.Client, ...pg.Client[]];
    try {
      await h1.query('begin');
      await h1.query('select 1');
      await h2.query('begin');
      await h2.query('select 2');
      const outcomes = await Promise.all(
        waiters.map(async (w) => {
          const started = Date.now();
          try {
            await w.query('begin');
            return { code: 'none', ms: Date.now() - started, message: '' };
          } catch (err) {
            const e = err as Error & { code?: string; severity?: string };
            return { code: e.code ?? '?', ms: Date.now() - started, message: `${e.severity}: ${e.message}` };
          }
        }),
      );
      for (const o of outcomes) {
        assert.equal(o.code, '53300', `waiter got ${o.code} after ${o.ms} ms: ${o.message}`);
        assert.ok(o.ms >= 400 && o.ms < 5_000, `53300 came after ${o.ms} ms (acquireTimeout 500ms)`);
        assert.match(o.message, /^ERROR: /);
      }
      await h1.query('commit');
      await h2.query('commit');
      for (const w of waiters) assert.equal((await w.query('select 1 as one')).rows[0].one, 1);
      // Still the same sessions: nobody was disconnected.
      assert.equal(amb.ambassador.listener.sessions.size, 5);
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => {})));
    }
  });

  test('a host refusing connections: 1 + retry.max attempts with growing, capped backoff; the client learns ECONNREFUSED', async (t) => {
    const refusing = await refusingPort();
    t.after(() => refusing.close());
    const port = refusing.port;
    const runs = 8;
    const ceilings = [50, 100, 200]; // initialDelay 50ms doubling, capped at maxDelay 400ms
    const results = await Promise.all(
      Array.from({ length: runs }, async () => {
        const connector = new RecordingConnector();
        const amb = await ambassadors.start(
          {
            upstream: {
              hosts: [{ host: '127.0.0.1', port, role: 'primary' }],
              tls: { mode: 'disable' },
              retry: { max: 3, initialDelay: '50ms', maxDelay: '400ms' },
            },
            pool: { mode: 'transaction', size: 3, acquireTimeout: '10s' },
            // Not waiting for a failover: the client gets the connect error itself.
            health: { failoverTimeout: '0s' },
          },
          connector,
        );
        const c = new pg.Client(viaAmbassador(amb.port, { database: DB }) as pg.ClientConfig);
        c.on('error', () => {});
        const error = await c.connect().then(
          () => null,
          (err: Error) => err,
        );
        await c.end().catch(() => {});
        return { error, records: [...connector.records], counted: amb.upstreamConnects() };
      }),
    );
    const gaps: number[][] = [];
    for (const { error, records, counted } of results) {
      assert.ok(error, 'the login succeeded against a closed port');
      assert.match(error.message, /ECONNREFUSED/);
      assert.equal(records.length, 4, `connect attempts: ${records.length} (retry.max 3)`);
      assert.equal(counted, 4);
      assert.ok(records.every((r) => !r.ok && /ECONNREFUSED/.test(r.error ?? '')));
      const runGaps = records.slice(1).map((r, i) => r.at - records[i]!.endedAt);
      runGaps.forEach((gap, i) => assert.ok(gap <= ceilings[i]! + 150, `gap ${i + 1} was ${gap.toFixed(1)} ms, above its ceiling ${ceilings[i]} ms`));
      gaps.push(runGaps);
    }
    const mean = (i: number): number => gaps.reduce((sum, g) => sum + g[i]!, 0) / runs;
    const means = [mean(0), mean(1), mean(2)];
    // Full jitter: expected 25, 50, 100 ms; averaged over the runs they must grow.
    assert.ok(means[2]! > means[0]!, `backoff did not grow: mean gaps ${means.map((m) => m.toFixed(1)).join(', ')} ms`);
    const meanTotal = means.reduce((a, b) => a + b, 0);
    assert.ok(meanTotal >= 70, `mean total backoff ${meanTotal.toFixed(1)} ms (expected ~175 ms): retries were not delayed`);
  });

  test('a cancel of pg_sleep(30) reaches that client’s server only', async () => {
    const { amb } = await txnAmbassador();
    const sleeper = await client(amb);
    const bystander = await client(amb);
    try {
      const { processID, secretKey } = sleeper as unknown as { processID: number; secretKey: number };
      const long = sleeper.query('select pg_sleep(30) /* pa-cancel-long */').then(
        () => null,
        (err: Error & { code?: string }) => err,
      );
      await eventually(async () => ((await serverBackends(admin, DB)).some((b) => b.state === 'active' && b.query.includes('pa-cancel-long')) ? true : undefined), {
        what: 'pg_sleep(30) running upstream',
      });
      const shortStarted = Date.now();
      const short = bystander.query('select pg_sleep(1) as slept, pg_backend_pid() as pid /* pa-cancel-short */');
      await eventually(async () => ((await serverBackends(admin, DB)).some((b) => b.state === 'active' && b.query.includes('pa-cancel-short')) ? true : undefined), {
        what: 'pg_sleep(1) running upstream',
      });
      const cancelledAt = Date.now();
      await sendCancel(amb.port, processID, secretKey);
      const error = await long;
      assert.ok(error, 'pg_sleep(30) was not cancelled');
      assert.equal(error.code, '57014', error.message);
      assert.ok(Date.now() - cancelledAt < 10_000);
      const shortResult = await short;
      assert.equal(shortResult.rowCount, 1, 'the other client’s query was cancelled');
      assert.ok(Date.now() - shortStarted >= 1_000);
      assert.equal((await sleeper.query('select 1 as one')).rows[0].one, 1);
    } finally {
      await sleeper.end();
      await bystander.end();
    }
  });

  test('a cancel while the request waits for the pool answers it 57014; it never runs, and the client goes on', async () => {
    const { amb } = await txnAmbassador({ size: 1 });
    await withClient(directConfig(topology, DB), (c) => c.query('drop table if exists pa_cancel_wait; create table pa_cancel_wait (n int)'));
    const holder = await client(amb);
    const waiter = await client(amb);
    try {
      await holder.query('begin');
      await holder.query('select 1'); // the one server connection is the holder's until COMMIT
      const { processID, secretKey } = waiter as unknown as { processID: number; secretKey: number };
      const queued = waiter.query('insert into pa_cancel_wait values (1)').then(
        () => 'ran',
        (err: Error & { code?: string }) => err.code ?? err.message,
      );
      await eventually(async () => (amb.ambassador.pool.stats().some((pool) => pool.waiting > 0) ? true : undefined), { what: 'the insert waiting for the pool' });
      await sendCancel(amb.port, processID, secretKey);
      assert.equal(await queued, '57014', 'the waiting insert was answered as a canceled statement');
      await holder.query('commit');
      assert.equal((await waiter.query('select count(*)::int as n from pa_cancel_wait')).rows[0].n, 0, 'the canceled insert never ran');
      assert.equal((await holder.query('select 1 as one')).rows[0].one, 1);
    } finally {
      await holder.end();
      await waiter.end();
    }
  });

  test('a cancel that reaches the server after its query ended does not stop the next client’s query there', async () => {
    // One server connection: the client queued behind gets it as soon as the first query ends.
    // The cancel's connection is made late (the connector waits first), so it reaches the server
    // after that; Postgres cancels whatever the backend runs then. The connection stays out of
    // the pool until the cancel has landed, where Postgres ignores it (nothing runs).
    const connector = new DelayingConnector();
    const amb = await ambassadors.start({ pool: { mode: 'transaction', size: 1 }, logging: { level: 'debug' } }, connector);
    const first = await client(amb);
    const next = await client(amb);
    try {
      const { processID, secretKey } = first as unknown as { processID: number; secretKey: number };
      const ended = first.query('select pg_sleep(0.3) /* pa-late-cancel-first */').then(
        () => 'ran',
        (err: Error & { code?: string }) => err.code ?? err.message,
      );
      await eventually(async () => ((await serverBackends(admin, DB)).some((b) => b.state === 'active' && b.query.includes('pa-late-cancel-first')) ? true : undefined), {
        what: 'the first query running upstream',
      });
      const queued = next.query('select pg_sleep(1.5) as slept /* pa-late-cancel-next */').then(
        () => 'ran',
        (err: Error & { code?: string }) => err.code ?? err.message,
      );
      connector.delayMs = 1_000;
      await sendCancel(amb.port, processID, secretKey);
      assert.equal(await ended, 'ran', 'the first query ended before its cancel reached the server');
      assert.equal(await queued, 'ran', 'the next client’s query was cancelled by a cancel that was not its own');
      assert.equal((await first.query('select 1 as one')).rows[0].one, 1);
    } finally {
      await first.end();
      await next.end();
    }
  });
});
