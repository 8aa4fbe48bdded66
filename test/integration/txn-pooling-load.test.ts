// Transaction pooling under load, through the production build in a child process (so the test
// process only carries the clients): pgbench with 200 clients on a pool of 20 (-M prepared, then
// simple and extended with fewer clients) with zero failed transactions and the TPC-B invariant
// intact, checked directly on the primary; and 1,000 client connections held open at once on a
// pool of 20 while the primary sees at most 20 server connections.
//
// A private database keeps the pgbench tables apart from other files sharing the cluster and
// lets pg_stat_activity be filtered exactly.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { CLIENT_PASSWORD, spawnAmbassador, viaAmbassador, type SpawnedAmbassador } from '../support/ambassador.ts';
import { prepareTestDatabase, directConfig, dropTestDatabase, maxServersDuring, serverBackends, withClient, type ServerBackend } from '../support/pooling.ts';
import { getTopology, type Topology } from '../support/topology.ts';

const run = promisify(execFile);
const DB = 'pa_txn_load';
const POOL_SIZE = 20;
/** application_name of this file's own direct connections, so the server count leaves them out. */
const DIRECT_APP = 'pa-load-direct';
let topology: Topology;
let admin: pg.Client;
let amb: SpawnedAmbassador;

before(async () => {
  topology = await getTopology();
  admin = await prepareTestDatabase(topology, DB);
  amb = await spawnAmbassador(topology, {
    listen: { maxClientConnections: 2000, loginTimeout: '30s' },
    pool: { mode: 'transaction', size: POOL_SIZE, acquireTimeout: '30s' },
    logging: { level: 'info' },
  });
});

after(async () => {
  await amb?.stop();
  await admin?.end().catch(() => {});
  await dropTestDatabase(topology, DB).catch(() => {});
});

function pgEnv(port: number, password: string): NodeJS.ProcessEnv {
  return { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: 'app', PGPASSWORD: password, PGDATABASE: DB, PGSSLMODE: 'disable' };
}

const viaAmb = (): NodeJS.ProcessEnv => pgEnv(amb.port, CLIENT_PASSWORD);
const direct = (): NodeJS.ProcessEnv => ({ ...pgEnv(topology.primary.port, topology.users.app.password), PGAPPNAME: DIRECT_APP });

/** Fresh pgbench tables at scale 1, made directly on the primary. */
async function initDirect(): Promise<void> {
  await run('pgbench', ['-i', '-q', '-s', '1'], { env: direct(), maxBuffer: 16 << 20 });
}

interface PgbenchResult {
  processed: number;
  failed: number;
  output: string;
}

/** pgbench through `through` (the shared ambassador unless told). */
async function pgbench(args: string[], through: SpawnedAmbassador = amb): Promise<PgbenchResult> {
  let output: string;
  try {
    const { stdout, stderr } = await run('pgbench', ['--no-vacuum', ...args], { env: pgEnv(through.port, CLIENT_PASSWORD), maxBuffer: 64 << 20, timeout: 180_000 });
    output = `${stdout}\n${stderr}`;
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string; code?: number };
    assert.fail(`pgbench ${args.join(' ')} exited with ${e.code}:\n${tail(e.stdout)}\n${tail(e.stderr)}\n--- ambassador ---\n${tail(through.output())}`);
  }
  const processed = /number of transactions actually processed: (\d+)/.exec(output);
  const failed = /number of failed transactions: (\d+)/.exec(output);
  assert.ok(processed, `no transaction count in pgbench output:\n${tail(output)}`);
  return { processed: Number(processed[1]), failed: failed ? Number(failed[1]) : 0, output };
}

/** The server connections in DB, but this file's own direct ones. */
async function appServers(): Promise<ServerBackend[]> {
  return (await serverBackends(admin, DB)).filter((b) => b.application_name !== DIRECT_APP);
}

/** Waits until every server connection in DB is one of `pids` (backends exit a moment after their sockets close). */
async function onlyServers(pids: ReadonlySet<number>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const others = (await appServers()).filter((b) => !pids.has(b.pid));
    if (others.length === 0) return;
    assert.ok(Date.now() < deadline, `${others.length} server connections of a stopped ambassador still there after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function tail(text: string | undefined, lines = 40): string {
  return (text ?? '').split('\n').slice(-lines).join('\n');
}

/** The TPC-B invariant, read directly on the primary. */
async function balances(): Promise<{ accounts: number; tellers: number; branches: number; history: number; historyRows: number }> {
  return withClient(directConfig(topology, DB, { application_name: DIRECT_APP }), async (c) => {
    const { rows } = await c.query(
      `select (select coalesce(sum(abalance), 0) from pgbench_accounts)::bigint as accounts,
              (select coalesce(sum(tbalance), 0) from pgbench_tellers)::bigint as tellers,
              (select coalesce(sum(bbalance), 0) from pgbench_branches)::bigint as branches,
              (select coalesce(sum(delta), 0) from pgbench_history)::bigint as history,
              (select count(*) from pgbench_history)::bigint as "historyRows"`,
    );
    const r = rows[0] as Record<string, string>;
    return { accounts: Number(r.accounts), tellers: Number(r.tellers), branches: Number(r.branches), history: Number(r.history), historyRows: Number(r.historyRows) };
  });
}

/** `serverLimit`: the server connections the primary may see in DB meanwhile (every ambassador's pools). */
async function benchAndCheck(args: string[], through: SpawnedAmbassador = amb, serverLimit = POOL_SIZE): Promise<void> {
  await initDirect();
  const { result, maxServers, busiest } = await maxServersDuring(appServers, () => pgbench(args, through));
  assert.equal(result.failed, 0, tail(result.output));
  assert.ok(result.processed > 0, tail(result.output));
  const b = await balances();
  assert.equal(b.historyRows, result.processed, 'pgbench_history rows differ from the transactions pgbench counted');
  assert.equal(b.accounts, b.history, 'sum(abalance) != sum(delta): a transaction was applied partially or twice');
  assert.equal(b.tellers, b.history);
  assert.equal(b.branches, b.history);
  assert.ok(maxServers <= serverLimit, `the primary saw ${maxServers} server connections, at most ${serverLimit} expected: ${busiest}`);
}

describe('pgbench through transaction pooling (pool.size 20)', () => {
  test('pgbench -i through the ambassador creates the tables', async () => {
    const { stdout, stderr } = await run('pgbench', ['-i', '-q', '-s', '1'], { env: viaAmb(), maxBuffer: 16 << 20, timeout: 120_000 }).catch((err) =>
      assert.fail(`pgbench -i failed: ${tail((err as { stderr?: string }).stderr)}\n--- ambassador ---\n${tail(amb.output())}`),
    );
    assert.match(`${stdout}${stderr}`, /done in/);
    const counts = await withClient(directConfig(topology, DB, { application_name: DIRECT_APP }), (c) =>
      c.query('select (select count(*) from pgbench_accounts)::int as a, (select count(*) from pgbench_branches)::int as b, (select count(*) from pgbench_tellers)::int as t'),
    );
    assert.deepEqual(counts.rows[0], { a: 100_000, b: 1, t: 10 });
  });

  // pgbench prepares with a blocking PQprepare (Parse, Sync): with 100 clients per thread, a
  // thread blocked waiting for a lease would hold up its own clients' open transactions.
  test('-M prepared -c 200 -j 2 -T 10: zero failed transactions, TPC-B invariant holds', async () => {
    await benchAndCheck(['-M', 'prepared', '-c', '200', '-j', '2', '-T', '10']);
  });

  // The same load with one client per pgbench thread: pgbench prepares each statement lazily
  // with a blocking PQprepare, which with -j 2 stalls a whole thread (and every lease its clients
  // hold) while that Parse waits for a server; with -j 200 it only stalls its own client. This
  // separates that stall from the correctness of prepared statements under load.
  test('-M prepared -c 200 -j 200 -T 10: zero failed transactions, TPC-B invariant holds', async () => {
    await benchAndCheck(['-M', 'prepared', '-c', '200', '-j', '200', '-T', '10']);
  });

  test('-M simple -c 20 -j 2 -t 100: zero failed transactions, TPC-B invariant holds', async () => {
    await benchAndCheck(['-M', 'simple', '-c', '20', '-j', '2', '-t', '100']);
  });

  test('-M extended -c 20 -j 2 -t 100: zero failed transactions, TPC-B invariant holds', async () => {
    await benchAndCheck(['-M', 'extended', '-c', '20', '-j', '2', '-t', '100']);
  });

  test('-M extended -c 50 -j 2 -t 100 on a pool of 10 with pool.cacheUnnamedStatements: zero failed transactions, TPC-B invariant holds', async () => {
    const CACHED_POOL = 10;
    const shared = new Set((await appServers()).map((b) => b.pid));
    const cached = await spawnAmbassador(topology, {
      pool: { mode: 'transaction', size: CACHED_POOL, acquireTimeout: '30s', cacheUnnamedStatements: true },
      logging: { level: 'info' },
    });
    try {
      // The shared ambassador keeps its idle servers meanwhile.
      await benchAndCheck(['-M', 'extended', '-c', '50', '-j', '2', '-t', '100'], cached, POOL_SIZE + CACHED_POOL);
      // The script's statements are held on the servers (a server that ran a transaction ran them all).
      const c = new pg.Client(viaAmbassador(cached.port, { database: DB }) as pg.ClientConfig);
      await c.connect();
      try {
        const held = await c.query('select statement from pg_prepared_statements where not from_sql');
        const texts = held.rows.map((r: { statement: string }) => r.statement);
        assert.ok(texts.some((t) => t.includes('SELECT abalance FROM pgbench_accounts')), `held: ${JSON.stringify(texts)}`);
      } finally {
        await c.end();
      }
    } finally {
      await cached.stop();
    }
    // Its server connections end with it, their backends a moment later: gone before the next
    // test counts the shared ambassador's (which was idle meanwhile: its servers are those before).
    await onlyServers(shared);
  });
});

describe('1,000 clients on a pool of 20', () => {
  test('all log in, run select 1, stay connected; the primary sees at most 20 server connections', async () => {
    const clients: pg.Client[] = [];
    const lost: string[] = [];
    const TOTAL = 1000;
    const BATCH = 50;
    try {
      const { maxServers } = await maxServersDuring(appServers, async () => {
        for (let start = 0; start < TOTAL; start += BATCH) {
          const batch = await Promise.all(
            Array.from({ length: BATCH }, async (_, i) => {
              const n = start + i;
              const c = new pg.Client(viaAmbassador(amb.port, { database: DB, application_name: 'pa-thousand', connectionTimeoutMillis: 60_000 }) as pg.ClientConfig);
              c.on('error', (err) => lost.push(`client ${n}: ${err.message}`));
              c.on('end', () => lost.push(`client ${n}: connection ended`));
              clients.push(c);
              await c.connect();
              const r = await c.query('select $1::int as n', [n]);
              assert.equal(r.rows[0].n, n);
              return c;
            }),
          );
          assert.equal(batch.length, BATCH);
        }
      });
      assert.equal(clients.length, TOTAL);
      assert.deepEqual(lost, []);
      assert.ok(maxServers <= POOL_SIZE, `the primary saw ${maxServers} server connections while 1,000 clients logged in`);
      // All still there: each answers once more, with everyone connected at the same time.
      const { result: answers, maxServers: maxDuring } = await maxServersDuring(appServers, () => Promise.all(clients.map((c, n) => c.query('select $1::int + 1 as n', [n]))));
      answers.forEach((r, n) => assert.equal(r.rows[0].n, n + 1));
      assert.ok(maxDuring <= POOL_SIZE, `the primary saw ${maxDuring} server connections while 1,000 clients queried`);
      const backends = await appServers();
      assert.ok(backends.length <= POOL_SIZE, `${backends.length} server connections for user app in ${DB}`);
      assert.deepEqual(lost, []);
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => {})));
    }
  });
});
