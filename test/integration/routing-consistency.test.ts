// Consistency of read/write splitting, on a private cluster whose replicas apply WAL 2 s late
// (recovery_min_apply_delay), so a read sent to a replica right after a write cannot see it:
// - readYourWrites 'lsn': 1,000 write-then-read pairs each see their own write, autocommit or in
//   explicit transactions, while a postgres.js client does the same (and with 'off' the same
//   pairs read stale rows, which shows the check can fail);
// - a write re-run on the primary by the 25006 safety net counts as a write for read-your-writes;
// - SET ambassador.min_lsn carries the guarantee from one client connection to another;
// - a replica lagging past maxReplicaLag (replay paused, WAL generated) gets no reads until it
//   catches up; with readsFromPrimary 'never' and every replica lagging a read fails with 08001
//   and the client carries on.
// The cluster is this file's own: pausing replay here disturbs no other test.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { ambassadorsFor, CLIENT_PASSWORD, type TestAmbassador } from '../support/ambassador.ts';
import { ambassadorClient, withClient } from '../support/pooling.ts';
import {
  assertAllOnPrimary,
  assertAllOnReplicas,
  describeHosts,
  hostOf,
  parseLsnText,
  portsOf,
  primaryLsn,
  routingOverrides,
  safetyNetLines,
  seen,
  sqlstateOf,
  superuserOn,
  waitForReplay,
  WHERE,
  type RoutingOptions,
  type ServerSeen,
} from '../support/routing.ts';
import { eventually, startCluster, type LocalCluster, type PgServerInfo, type Topology } from '../support/topology.ts';

const DB = 'app';
const APPLY_DELAY = '2s';
const ONE_MB = 1024 * 1024;
/**
 * The read-your-writes tests bound lag in bytes, far above what they write: whether a replica
 * counts as lagging is not what they check, and a time bound would depend on how long the
 * cluster sat idle before (lag in time is measured from the last replayed commit).
 */
const RYW_LAG_BOUND = '64MB';

let cluster: LocalCluster | undefined;
let topology: Topology;
const ambassadors = ambassadorsFor(() => topology);

before(async () => {
  cluster = await startCluster({ replicas: 2, replicaConf: { recovery_min_apply_delay: APPLY_DELAY } });
  topology = cluster.describe();
  await withClient(appOnPrimary(), (c) =>
    c.query(`CREATE TABLE pairs (id int PRIMARY KEY, note text);
             CREATE FUNCTION sneaky_pair(p_id int) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
               BEGIN INSERT INTO pairs (id, note) VALUES (p_id, 'sneaky'); RETURN p_id; END $$`));
  await waitForReplay(topology);
});

after(async () => {
  await ambassadors.stopAll();
  await cluster?.stop();
});

function appOnPrimary(): pg.ClientConfig {
  return { host: topology.primary.host, port: topology.primary.port, user: 'app', password: topology.users.app.password, database: DB };
}

function splitting(options: RoutingOptions = {}): Promise<TestAmbassador> {
  return ambassadors.start(routingOverrides(topology, options));
}

let nextId = 0;

interface Pair {
  id: number;
  found: boolean;
  where: ServerSeen;
}

/** The ways a pair writes: autocommit (simple, extended) and explicit transactions. */
const WRITE_STYLES = [
  (c: pg.Client, id: number) => c.query(`INSERT INTO pairs (id) VALUES (${id})`),
  (c: pg.Client, id: number) => c.query('INSERT INTO pairs (id) VALUES ($1)', [id]),
  async (c: pg.Client, id: number) => {
    await c.query('BEGIN');
    await c.query('INSERT INTO pairs (id) VALUES ($1)', [id]);
    await c.query('COMMIT');
  },
  (c: pg.Client, id: number) => c.query(`BEGIN; INSERT INTO pairs (id) VALUES (${id}); COMMIT`),
];

/**
 * `count` pairs through one client: INSERT a new id (cycling through WRITE_STYLES), then SELECT
 * it outside a transaction (alternating the simple and extended protocols).
 */
async function writeThenRead(c: pg.Client, count: number): Promise<Pair[]> {
  const pairs: Pair[] = [];
  for (let i = 0; i < count; i++) {
    const id = ++nextId;
    await WRITE_STYLES[i % WRITE_STYLES.length]!(c, id);
    const read = i % 2 === 0
      ? await c.query(`SELECT count(*)::int AS found, ${WHERE} FROM pairs WHERE id = ${id}`)
      : await c.query(`SELECT count(*)::int AS found, ${WHERE} FROM pairs WHERE id = $1`, [id]);
    pairs.push({ id, found: read.rows[0].found === 1, where: seen(read.rows[0]) });
  }
  return pairs;
}

/** The same pairs through postgres.js (prepared statements, transactions by sql.begin). */
async function writeThenReadJs(sql: postgres.Sql, count: number): Promise<Pair[]> {
  const pairs: Pair[] = [];
  for (let i = 0; i < count; i++) {
    const id = ++nextId;
    if (i % 2 === 0) await sql`INSERT INTO pairs (id) VALUES (${id})`;
    else await sql.begin((tx) => tx`INSERT INTO pairs (id) VALUES (${id})`);
    const [row] = await sql`SELECT count(*)::int AS found, pg_is_in_recovery() AS recovery, inet_server_port() AS port FROM pairs WHERE id = ${id}`;
    pairs.push({ id, found: row?.found === 1, where: seen(row) });
  }
  return pairs;
}

function jsClient(amb: TestAmbassador): postgres.Sql {
  return postgres({ host: '127.0.0.1', port: amb.port, username: 'app', password: CLIENT_PASSWORD, database: DB, max: 1, onnotice: () => {} });
}

/** Reads per server port, e.g. { 5432: 1000, 5433: 0, 5434: 0 }. */
function tally(pairs: Pair[]): Record<number, number> {
  const { primary, replicas } = portsOf(topology);
  const counts: Record<number, number> = Object.fromEntries([primary, ...replicas].map((port) => [port, 0]));
  for (const pair of pairs) counts[pair.where.port] = (counts[pair.where.port] ?? 0) + 1;
  return counts;
}

async function showMinLsn(c: pg.Client): Promise<string> {
  return String((await c.query('SHOW ambassador.min_lsn')).rows[0]['ambassador.min_lsn']);
}

describe('read-your-writes', () => {
  test("readYourWrites 'lsn': 1,000 write-then-read pairs all see their write", async () => {
    const amb = await splitting({ routing: { readYourWrites: 'lsn', maxReplicaLag: RYW_LAG_BOUND } });
    const c = await ambassadorClient(amb.port, DB);
    const sql = jsClient(amb);
    try {
      assert.equal(await showMinLsn(c), '0/0', 'a new client has no LSN requirement');
      // A postgres.js client does its own pairs alongside, on the same pool.
      const [pairs, jsPairs] = await Promise.all([writeThenRead(c, 1000), writeThenReadJs(sql, 300)]);
      const misses = pairs.filter((pair) => !pair.found);
      assert.deepEqual(misses, [], `reads missed their own write; reads per port: ${JSON.stringify(tally(pairs))}`);
      const jsMisses = jsPairs.filter((pair) => !pair.found);
      assert.deepEqual(jsMisses, [], `postgres.js reads missed their own write; reads per port: ${JSON.stringify(tally(jsPairs))}`);
      // Once the replicas have replayed the last write, the client's reads go to them again.
      const required = await showMinLsn(c);
      assert.notEqual(required, '0/0', 'after 1,000 writes the client still has no LSN requirement');
      await waitForReplay(topology, { lsn: required });
      const afterReplay = await eventually(
        async () => {
          const where = seen((await c.query(`SELECT ${WHERE}`)).rows[0]);
          return where.recovery ? where : undefined;
        },
        { what: 'a read on a replica once both replayed the last write', timeoutMs: 10_000, intervalMs: 100 },
      );
      assertAllOnReplicas(topology, [afterReplay], 'read after replay');
    } finally {
      await Promise.all([c.end(), sql.end({ timeout: 5 })]);
    }
  });

  test("readYourWrites 'off': the same pairs read stale rows (the check above can fail)", async () => {
    const amb = await splitting({ routing: { readYourWrites: 'off', maxReplicaLag: RYW_LAG_BOUND } });
    const c = await ambassadorClient(amb.port, DB);
    try {
      const pairs = await writeThenRead(c, 1000);
      const misses = pairs.filter((pair) => !pair.found);
      assert.ok(misses.length > 0, `every read saw its write although the replicas apply WAL ${APPLY_DELAY} late; reads per port: ${JSON.stringify(tally(pairs))}`);
      assertAllOnReplicas(topology, misses.map((pair) => pair.where), 'stale reads');
    } finally {
      await c.end();
    }
  });

  test('a write re-run on the primary by the 25006 safety net counts for read-your-writes', async () => {
    const amb = await splitting({ routing: { readYourWrites: 'lsn', maxReplicaLag: RYW_LAG_BOUND, functions: { allow: ['sneaky_pair'] } } });
    const pairs: Pair[] = [];
    for (let i = 0; i < 20; i++) {
      // A fresh client (no LSN requirement yet, so its "read" goes to a replica) and a new text
      // (not learned as a write yet; the quoted tag keeps it from sharing the literal shape of
      // the texts before it): every call is refused by a replica and re-run.
      const c = await ambassadorClient(amb.port, DB);
      try {
        const id = ++nextId;
        const written = (await c.query(`SELECT sneaky_pair(${id}) AS id, '${id}' AS tag, ${WHERE}`)).rows[0];
        assertAllOnPrimary(topology, [seen(written)], `sneaky_pair(${id})`);
        const read = (await c.query(`SELECT count(*)::int AS found, ${WHERE} FROM pairs WHERE id = $1`, [id])).rows[0];
        pairs.push({ id, found: read.found === 1, where: seen(read) });
      } finally {
        await c.end();
      }
    }
    assert.equal(safetyNetLines(amb).length, 20, 'not every call went through the safety net');
    assert.deepEqual(pairs.filter((pair) => !pair.found), [], `reads missed a write made by the safety net; reads per port: ${JSON.stringify(tally(pairs))}`);
  });

  test('SET ambassador.min_lsn carries the guarantee to another connection', async () => {
    const amb = await splitting({ routing: { readYourWrites: 'lsn', maxReplicaLag: RYW_LAG_BOUND } });
    const writer = await ambassadorClient(amb.port, DB);
    const reader = await ambassadorClient(amb.port, DB);
    const control = await ambassadorClient(amb.port, DB);
    try {
      const before = parseLsnText(await primaryLsn(topology));
      const id = ++nextId;
      await writer.query('INSERT INTO pairs (id, note) VALUES ($1, $2)', [id, 'carried']);
      const required = await showMinLsn(writer);
      const after = parseLsnText(await primaryLsn(topology));
      const lsn = parseLsnText(required);
      assert.ok(lsn > before && lsn <= after, `min_lsn ${required} is not the commit's position (primary went from ${before} to ${after})`);

      const query = `SELECT count(*)::int AS found, ${WHERE} FROM pairs WHERE id = ${id}`;
      // A client without the requirement reads from a replica that has not applied the write yet.
      const stale = (await control.query(query)).rows[0];
      assertAllOnReplicas(topology, [seen(stale)], 'the control read');
      assert.equal(stale.found, 0, 'the control read already saw the write: the replicas are not delayed');

      await reader.query(`SET ambassador.min_lsn = '${required}'`);
      assert.equal(await showMinLsn(reader), required);
      const carried = (await reader.query(query)).rows[0];
      assert.equal(carried.found, 1, `the reader with min_lsn ${required} did not see the write (served by ${carried.port})`);
    } finally {
      await Promise.all([writer.end(), reader.end(), control.end()]);
    }
  });
  // postgres.js sends every statement in the extended protocol: the ambassador answers its SHOW
  // itself there too. Were it to reach the server, the answer would be 42704 when the session never
  // SET it, or worse the server's placeholder value from an earlier SET, lower than the client's
  // real requirement: a token read that way breaks read-your-writes silently.
  test('postgres.js reads its own requirement with SHOW ambassador.min_lsn (extended protocol)', async () => {
    const amb = await splitting({ routing: { readYourWrites: 'lsn', maxReplicaLag: RYW_LAG_BOUND } });
    const sql = jsClient(amb);
    try {
      await sql`SET ambassador.min_lsn = '0/1'`;
      await sql`INSERT INTO pairs (id) VALUES (${++nextId})`;
      const [simple] = await sql.unsafe('SHOW ambassador.min_lsn').simple();
      const required = String(simple?.['ambassador.min_lsn']);
      assert.ok(parseLsnText(required) > 1n, `after a write the requirement is still ${required}`);
      const [extended] = await sql`SHOW ambassador.min_lsn`;
      assert.equal(extended?.['ambassador.min_lsn'], required, 'SHOW in the extended protocol gave another value');
    } finally {
      await sql.end({ timeout: 5 });
    }
  });
});

// ---- lag ------------------------------------------------------------------------------------------

async function superuserQuery(server: PgServerInfo, sql: string): Promise<void> {
  await withClient(superuserOn(topology, server), (c) => c.query(sql));
}

/** About `megabytes` MB of WAL on the primary (a table filled and dropped). */
async function generateWal(megabytes: number): Promise<void> {
  await withClient(appOnPrimary(), (c) =>
    c.query(`CREATE TABLE filler AS SELECT g, repeat(md5(g::text), 30) AS pad FROM generate_series(1, ${megabytes * 1000}) g; DROP TABLE filler`));
}

function lagging(amb: TestAmbassador, server: PgServerInfo): boolean {
  const host = hostOf(amb, server);
  return host.lagBytes !== undefined && host.lagBytes > ONE_MB;
}

describe('maxReplicaLag', () => {
  test("a replica lagging past '1MB' gets no reads until it catches up", async () => {
    const amb = await splitting({ routing: { maxReplicaLag: '1MB' } });
    const c = await ambassadorClient(amb.port, DB);
    const [paused, healthy] = topology.replicas as [PgServerInfo, PgServerInfo];
    try {
      await superuserQuery(paused, 'SELECT pg_wal_replay_pause()');
      await generateWal(5);
      await eventually(async () => (lagging(amb, paused) && !lagging(amb, healthy) ? true : undefined), {
        what: `${paused.name} lagging > 1MB and ${healthy.name} within it in ambassador.hosts()`,
        timeoutMs: 20_000,
        intervalMs: 100,
      }).catch((error: Error) => assert.fail(`${error.message}: ${describeHosts(amb)}`));
      const observed: ServerSeen[] = [];
      for (let i = 0; i < 30; i++) observed.push(seen((await c.query(`SELECT ${WHERE}`)).rows[0]));
      assertAllOnReplicas(topology, observed, 'reads while one replica lags');
      assert.deepEqual([...new Set(observed.map((entry) => entry.port))], [healthy.port], `reads reached the lagging ${paused.name}`);

      await superuserQuery(paused, 'SELECT pg_wal_replay_resume()');
      await eventually(
        async () => (seen((await c.query(`SELECT ${WHERE}`)).rows[0]).port === paused.port ? true : undefined),
        { what: `${paused.name} to receive reads again after catching up`, timeoutMs: 20_000, intervalMs: 50 },
      );
    } finally {
      await superuserQuery(paused, 'SELECT pg_wal_replay_resume()').catch(() => {});
      await c.end();
    }
  });

  test("readsFromPrimary 'never' with every replica lagging: 08001, and the client carries on", async () => {
    const amb = await splitting({ routing: { maxReplicaLag: '1MB', readsFromPrimary: 'never' } });
    const c = await ambassadorClient(amb.port, DB);
    try {
      assertAllOnReplicas(topology, [seen((await c.query(`SELECT ${WHERE}`)).rows[0])], 'a read before the lag');
      for (const replica of topology.replicas) await superuserQuery(replica, 'SELECT pg_wal_replay_pause()');
      await generateWal(5);
      await eventually(async () => (topology.replicas.every((replica) => lagging(amb, replica)) ? true : undefined), {
        what: 'both replicas lagging > 1MB in ambassador.hosts()',
        timeoutMs: 20_000,
        intervalMs: 100,
      }).catch((error: Error) => assert.fail(`${error.message}: ${describeHosts(amb)}`));

      for (const protocol of ['simple', 'extended'] as const) {
        const read = protocol === 'simple' ? c.query(`SELECT ${WHERE}`) : c.query(`SELECT $1::int AS n, ${WHERE}`, [1]);
        await assert.rejects(read, (error: Error) => {
          assert.equal(sqlstateOf(error), '08001', `${protocol}: ${error.message}`);
          assert.match(error.message, /lag/i, `${protocol}: the message does not say the replicas lag`);
          return true;
        });
      }
      // The same connection still writes (on the primary) ...
      const id = ++nextId;
      const written = (await c.query(`INSERT INTO pairs (id) VALUES ($1) RETURNING ${WHERE}`, [id])).rows[0];
      assertAllOnPrimary(topology, [seen(written)], 'a write while reads are refused');
      // ... and reads again once the replicas catch up.
      for (const replica of topology.replicas) await superuserQuery(replica, 'SELECT pg_wal_replay_resume()');
      const where = await eventually(
        async () => {
          const row = (await c.query(`SELECT count(*)::int AS found, ${WHERE} FROM pairs WHERE id = $1`, [id])).rows[0];
          return row.found === 1 ? seen(row) : undefined;
        },
        { what: 'a read to succeed after the replicas caught up', timeoutMs: 20_000, intervalMs: 100 },
      );
      assertAllOnReplicas(topology, [where], 'the read after catching up');
    } finally {
      for (const replica of topology.replicas) await superuserQuery(replica, 'SELECT pg_wal_replay_resume()').catch(() => {});
      await c.end();
    }
  });

  // Lag in time must be how far behind a replica is, not the age of its last replayed commit
  // (clock_timestamp() - pg_last_xact_replay_timestamp()): after the cluster sat idle for longer
  // than maxReplicaLag, the next write would make every replica "lagging" (here: 08001 with
  // readsFromPrimary 'never') though they are only recovery_min_apply_delay (2 s) behind.
  test("replicas 2 s behind after an idle spell are within maxReplicaLag '5s'", async () => {
    const amb = await splitting({ routing: { maxReplicaLag: '5s', readsFromPrimary: 'never' } });
    const c = await ambassadorClient(amb.port, DB);
    try {
      await waitForReplay(topology);
      // Setup, not a wait for a result: an idle spell (no commits) longer than the bound.
      await new Promise((resolve) => setTimeout(resolve, 6000));
      await withClient(appOnPrimary(), (d) => d.query('INSERT INTO pairs (id) VALUES ($1)', [++nextId]));
      await eventually(
        async () => (topology.replicas.every((replica) => (hostOf(amb, replica).lagBytes ?? 0) > 0) ? true : undefined),
        { what: 'the health snapshot to show the write received but not replayed', timeoutMs: 1500, intervalMs: 20 },
      );
      const lag = topology.replicas.map((replica) => hostOf(amb, replica).lagMs);
      assert.ok(lag.every((ms) => ms !== undefined && ms <= 5000), `replicas ${APPLY_DELAY} behind are reported ${JSON.stringify(lag)} ms behind`);
      assertAllOnReplicas(topology, [seen((await c.query(`SELECT ${WHERE}`)).rows[0])], `a read while the replicas are ${APPLY_DELAY} behind`);
    } finally {
      await c.end();
    }
  });
});
