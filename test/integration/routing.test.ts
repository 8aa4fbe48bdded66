// Read/write splitting in front of the shared cluster (a primary and two streaming replicas, every
// host given with role 'auto' so the health loop discovers the roles). Each statement reports the
// server that ran it (pg_is_in_recovery(), inet_server_port()), so routing is read off the answers:
// reads outside a transaction on the replicas (round-robin, weight 0 = none) in the simple,
// extended and prepared protocols (pg, postgres.js); writes, locking reads, writing CTEs and
// writing functions on the primary; a transaction where its BEGIN went; hints, session routes and
// target_session_attrs; a cancel reaching the replica; pgbench with a read/write mix; and the
// 25006 safety net.
//
// A private database keeps these tables apart from other files sharing the cluster. Schema changes
// are made directly on the primary and waited for on both replicas before anything reads them.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import postgres from 'postgres';
import { ambassadorsFor, CLIENT_PASSWORD, type TestAmbassador } from '../support/ambassador.ts';
import { ambassadorClient, directConfig, dropTestDatabase, prepareTestDatabase, sendCancel, withClient } from '../support/pooling.ts';
import {
  assertAllOnPrimary,
  assertAllOnReplicas,
  portsOf,
  routingOverrides,
  safetyNetLines,
  seen,
  sqlstateOf,
  superuserOn,
  waitForReplay,
  WHERE,
  whereRan,
  type RoutingOptions,
  type ServerSeen,
} from '../support/routing.ts';
import { eventually, getTopology, type Topology } from '../support/topology.ts';
import { loginScram } from '../support/raw-client.ts';
import { decodeDataRow } from '../../src/protocol/backend.ts';
import { encodeParse, encodeQuery, encodeSync, FrontendType } from '../../src/protocol/frontend.ts';
import { frameMessage, MessageWriter } from '../../src/protocol/writer.ts';

const run = promisify(execFile);
const DB = 'pa_routing';
const SCHEMA = `
  CREATE TABLE items (id serial PRIMARY KEY, note text NOT NULL);
  INSERT INTO items (note) SELECT 'seed ' || g FROM generate_series(1, 20) g;
  CREATE SEQUENCE route_seq;
  CREATE VIEW where_am_i AS SELECT pg_is_in_recovery() AS recovery, inet_server_port() AS port;
  CREATE FUNCTION add_item(p_note text) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
    DECLARE new_id int;
    BEGIN INSERT INTO items (note) VALUES (p_note) RETURNING id INTO new_id; RETURN new_id; END $$;
  CREATE FUNCTION sneaky_add_item(p_note text) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
    DECLARE new_id int;
    BEGIN INSERT INTO items (note) VALUES (p_note) RETURNING id INTO new_id; RETURN new_id; END $$;
`;

let topology: Topology;
let admin: pg.Client;
const ambassadors = ambassadorsFor(() => topology);

before(async () => {
  topology = await getTopology();
  admin = await prepareTestDatabase(topology, DB);
  await withClient(directConfig(topology, DB), (client) => client.query(SCHEMA));
  await waitForReplay(topology);
});

after(async () => {
  await ambassadors.stopAll();
  await admin?.end().catch(() => {});
  await dropTestDatabase(topology, DB).catch(() => {});
});

const NO_TYPES = Buffer.from([0, 0]);

/** Bind of the unnamed statement to the unnamed portal: no parameters, text results. */
function rawBind(): Buffer {
  return new MessageWriter().cstring('').cstring('').int16(0).int16(0).int16(0).finish(FrontendType.Bind);
}

/** Execute of the unnamed portal, every row. */
function rawExecute(): Buffer {
  return new MessageWriter().cstring('').int32(0).finish(FrontendType.Execute);
}

function splitting(options: RoutingOptions = {}): Promise<TestAmbassador> {
  return ambassadors.start(routingOverrides(topology, options));
}

function client(amb: TestAmbassador): Promise<pg.Client> {
  return ambassadorClient(amb.port, DB);
}

function jsClient(amb: TestAmbassador, connection: Record<string, string> = {}): postgres.Sql {
  return postgres({
    host: '127.0.0.1',
    port: amb.port,
    username: 'app',
    password: CLIENT_PASSWORD,
    database: DB,
    max: 1,
    prepare: true,
    onnotice: () => {},
    connection,
  });
}

// ---- statements outside a transaction ---------------------------------------------------------

type Row = Record<string, unknown>;

/** One way of sending a statement with $n parameters: simple (inlined), extended, named, postgres.js. */
interface Protocol {
  name: string;
  open(amb: TestAmbassador): Promise<{ query(text: string, params: unknown[], name: string): Promise<Row[]>; close(): Promise<void> }>;
}

const PROTOCOLS: Protocol[] = [
  {
    name: 'simple (pg, parameters inlined)',
    async open(amb) {
      const c = await client(amb);
      const inline = (text: string, params: unknown[]): string =>
        text.replace(/\$(\d+)/g, (_all, n: string) => c.escapeLiteral(String(params[Number(n) - 1])));
      return { query: async (text, params) => (await c.query(inline(text, params))).rows, close: () => c.end() };
    },
  },
  {
    name: 'extended (pg, unnamed statements)',
    async open(amb) {
      const c = await client(amb);
      return { query: async (text, params) => (await c.query(text, params)).rows, close: () => c.end() };
    },
  },
  {
    name: 'prepared (pg, named statements)',
    async open(amb) {
      const c = await client(amb);
      return { query: async (text, values, name) => (await c.query({ name, text, values })).rows, close: () => c.end() };
    },
  },
  {
    name: 'prepared (postgres.js)',
    async open(amb) {
      const sql = jsClient(amb);
      return {
        query: async (text, params) => [...(await sql.unsafe(text, params as string[], { prepare: true }))],
        close: () => sql.end({ timeout: 5 }),
      };
    },
  },
];

const READS = [
  { name: 'echo', text: `SELECT $1::int AS n, ${WHERE}` },
  { name: 'count', text: `SELECT count(*)::int AS n, ${WHERE} FROM items WHERE id <= $1` },
];

const WRITES = [
  { name: 'insert', text: `INSERT INTO items (note) VALUES ($1) RETURNING id, ${WHERE}`, param: 'insert', inserts: true },
  { name: 'nextval', text: `SELECT nextval($1::regclass)::int AS id, ${WHERE}`, param: 'route_seq', inserts: false },
  { name: 'for-update', text: `SELECT id, ${WHERE} FROM items WHERE id = $1::int FOR UPDATE`, param: '1', inserts: false },
  { name: 'function', text: `SELECT add_item($1) AS id, ${WHERE}`, param: 'function', inserts: true },
  { name: 'cte', text: `WITH added AS (INSERT INTO items (note) VALUES ($1) RETURNING id) SELECT added.id, ${WHERE} FROM added`, param: 'cte', inserts: true },
];

describe('statements outside a transaction', () => {
  for (const protocol of PROTOCOLS) {
    test(`${protocol.name}: reads go to both replicas, writes to the primary`, async () => {
      const amb = await splitting();
      const conn = await protocol.open(amb);
      try {
        const reads: ServerSeen[] = [];
        for (let i = 1; i <= 20; i++) {
          const read = READS[i % 2]!;
          const [row] = await conn.query(read.text, [i], `read_${read.name}`);
          assert.equal(Number(row?.n), read.name === 'echo' ? i : Math.min(i, 20), `${read.name} ${i} answered ${row?.n}`);
          reads.push(seen(row));
        }
        assertAllOnReplicas(topology, reads, 'reads');
        const ports = new Set(reads.map((entry) => entry.port));
        assert.deepEqual([...ports].sort(), [...portsOf(topology).replicas].sort(), '20 reads did not reach both replicas');

        const writes: ServerSeen[] = [];
        const inserted: number[] = [];
        for (let round = 0; round < 3; round++) {
          for (const write of WRITES) {
            const rows = await conn.query(write.text, [write.param], `write_${write.name}`);
            assert.equal(rows.length, 1, `${write.name} returned ${rows.length} rows`);
            writes.push(seen(rows[0]));
            if (write.inserts) inserted.push(Number(rows[0]!.id));
          }
        }
        assertAllOnPrimary(topology, writes, 'writes');
        assert.deepEqual(safetyNetLines(amb), [], 'a write was first sent to a replica (the safety net re-ran it)');
        const { rows } = await withClient(directConfig(topology, DB), (d) => d.query('SELECT count(*)::int AS n FROM items WHERE id = ANY($1::int[])', [inserted]));
        assert.equal(rows[0].n, 9, `rows inserted by ${JSON.stringify(inserted)} missing on the primary`);
      } finally {
        await conn.close();
      }
    });
  }

  test('VALUES, TABLE, SHOW and a view are reads; SELECT INTO is a write', async () => {
    const amb = await splitting();
    const c = await client(amb);
    const table = `selected_into_${process.pid}`;
    try {
      const reads: ServerSeen[] = [];
      for (let i = 0; i < 4; i++) {
        const values = (await c.query('VALUES (pg_is_in_recovery(), inet_server_port())')).rows[0];
        reads.push(seen({ recovery: values.column1, port: values.column2 }));
        reads.push(seen((await c.query('TABLE where_am_i')).rows[0]));
        reads.push(seen((await c.query('SELECT * FROM where_am_i')).rows[0]));
      }
      assertAllOnReplicas(topology, reads, 'VALUES, TABLE and view reads');
      const shown: number[] = [];
      for (let i = 0; i < 4; i++) shown.push(Number((await c.query('SHOW port')).rows[0].port));
      assert.deepEqual(shown.filter((port) => !portsOf(topology).replicas.includes(port)), [], `SHOW port answered by ${shown.join(', ')}`);

      await c.query(`SELECT ${WHERE} INTO TABLE ${table}`);
      const { rows } = await withClient(directConfig(topology, DB), (d) => d.query(`SELECT recovery, port FROM ${table}`));
      assertAllOnPrimary(topology, rows.map(seen), 'SELECT INTO');
      assert.deepEqual(safetyNetLines(amb), [], 'SELECT INTO was first sent to a replica (the safety net re-ran it)');
    } finally {
      await c.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
      await c.end();
    }
  });

  test('a cancel reaches the replica running the read', async () => {
    const amb = await splitting();
    const c = await client(amb);
    const marker = `cancel_me_${process.pid}`;
    try {
      // Its outcome is taken at once: the cancel connection closes only once the cancel has
      // reached the server, so the error can arrive before sendCancel returns.
      const sleeping = c.query(`SELECT pg_sleep(30) AS ${marker}`).then(
        () => null,
        (error: Error) => error,
      );
      const running = await eventually(
        async () => {
          for (const replica of topology.replicas) {
            const { rows } = await withClient(superuserOn(topology, replica, DB), (d) =>
              d.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE $1 AND state = 'active' AND pid <> pg_backend_pid()", [`%${marker}%`]));
            if (rows[0].n === 1) return replica.name;
          }
          return undefined;
        },
        { what: 'the sleeping read to show up on a replica', timeoutMs: 10_000 },
      );
      const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
      await sendCancel(amb.port, processID, secretKey);
      const error = await sleeping;
      assert.ok(error !== null && sqlstateOf(error) === '57014', `the read on ${running} was not cancelled: ${error?.message}`);
      assertAllOnReplicas(topology, [await whereRan(c)], 'the next read');
    } finally {
      await c.end();
    }
  });

  test('functions created through the ambassador are learned from pg_proc: STABLE ones read on replicas, VOLATILE ones write', async () => {
    const amb = await splitting();
    const c = await client(amb);
    const suffix = Math.random().toString(36).slice(2, 8);
    const stable = `pa_stable_${suffix}`;
    const volatile = `pa_volatile_${suffix}`;
    const catalogLoads = (): number => amb.logs().filter((line) => line.msg === 'function catalog loaded' && line.database === DB).length;
    try {
      const loadsBefore = catalogLoads();
      await c.query(`CREATE FUNCTION ${stable}() RETURNS int LANGUAGE sql STABLE AS 'SELECT 1'`);
      await c.query(`CREATE FUNCTION ${volatile}() RETURNS int LANGUAGE sql VOLATILE AS 'SELECT 2'`);
      // The CREATE FUNCTION tags make the ambassador re-read the catalog; until then both
      // functions are unknown (and so writes).
      await eventually(async () => (catalogLoads() > loadsBefore ? true : undefined), { what: 'the catalog to be re-read after CREATE FUNCTION', timeoutMs: 10_000 });
      await waitForReplay(topology);
      const reads: ServerSeen[] = [];
      for (let i = 0; i < 4; i++) reads.push(seen((await c.query(`SELECT ${stable}() AS v, ${WHERE}`)).rows[0]));
      assertAllOnReplicas(topology, reads, `SELECT ${stable}()`);
      const writes: ServerSeen[] = [];
      for (let i = 0; i < 2; i++) writes.push(seen((await c.query(`SELECT ${volatile}() AS v, ${WHERE}`)).rows[0]));
      assertAllOnPrimary(topology, writes, `SELECT ${volatile}()`);
      const reasons = amb.logs().filter((line) => line.msg === 'routing decision').map((line) => line.reason);
      assert.ok(reasons.includes(`volatile-function:${volatile}`), `no routing decision named volatile-function:${volatile}: ${reasons.slice(-5).join(', ')}`);
    } finally {
      await c.query(`DROP FUNCTION IF EXISTS ${stable}(); DROP FUNCTION IF EXISTS ${volatile}()`).catch(() => {});
      await c.end();
    }
  });

  test('a weight-0 replica gets no reads', async () => {
    const amb = await splitting({ replicaWeights: [0, 1] });
    const c = await client(amb);
    try {
      const reads: ServerSeen[] = [];
      for (let i = 0; i < 20; i++) reads.push(await whereRan(c));
      assertAllOnReplicas(topology, reads, 'reads');
      const [, weighted] = portsOf(topology).replicas;
      assert.deepEqual([...new Set(reads.map((entry) => entry.port))], [weighted], 'reads reached the weight-0 replica');
    } finally {
      await c.end();
    }
  });
});

// ---- explicit transactions ----------------------------------------------------------------------

/** Runs `statements` (each reporting WHERE) in one transaction opened by `begin`. */
async function inTransaction(c: pg.Client, begin: string, statements: string[]): Promise<ServerSeen[]> {
  await c.query(begin);
  try {
    const observed: ServerSeen[] = [];
    for (const statement of statements) observed.push(seen((await c.query(statement, statement.includes('$1') ? [1] : undefined)).rows[0]));
    await c.query('COMMIT');
    return observed;
  } catch (error) {
    await c.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

const serverCount = (observed: ServerSeen[]): number => new Set(observed.map((entry) => entry.port)).size;

describe('explicit transactions run where their BEGIN went', () => {
  test('plain BEGIN: every statement inside, reads included, on the primary', async () => {
    const amb = await splitting();
    const c = await client(amb);
    try {
      for (let round = 0; round < 4; round++) {
        const observed = await inTransaction(c, 'BEGIN', [
          `SELECT ${WHERE}`,
          `SELECT count(*) AS n, ${WHERE} FROM items WHERE id <= $1`,
          `INSERT INTO items (note) VALUES ('in transaction') RETURNING ${WHERE}`,
          `SELECT ${WHERE}`,
        ]);
        assertAllOnPrimary(topology, observed, `transaction ${round}`);
      }
    } finally {
      await c.end();
    }
  });

  test('BEGIN READ ONLY and START TRANSACTION READ ONLY: the whole transaction on one replica', async () => {
    const amb = await splitting();
    const c = await client(amb);
    try {
      for (const begin of ['BEGIN READ ONLY', 'START TRANSACTION READ ONLY', 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY']) {
        for (let round = 0; round < 2; round++) {
          const observed = await inTransaction(c, begin, [`SELECT ${WHERE}`, `SELECT count(*) AS n, ${WHERE} FROM items WHERE id <= $1`, `SELECT ${WHERE}`]);
          assertAllOnReplicas(topology, observed, `${begin} (${round})`);
          assert.equal(serverCount(observed), 1, `${begin}: statements of one transaction ran on several servers`);
        }
      }
    } finally {
      await c.end();
    }
  });

  test('a read-only session default sends plain BEGIN to a replica; read-write brings it back', async () => {
    const amb = await splitting();
    const characteristics = await client(amb);
    const defaultSetting = await client(amb);
    try {
      await characteristics.query('SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY');
      await defaultSetting.query('SET default_transaction_read_only = on');
      for (const [name, c] of [['characteristics', characteristics], ['default_transaction_read_only', defaultSetting]] as const) {
        for (let round = 0; round < 2; round++) {
          const observed = await inTransaction(c, 'BEGIN', [`SELECT ${WHERE}`, `SELECT ${WHERE}`]);
          assertAllOnReplicas(topology, observed, `${name}: BEGIN (${round})`);
          assert.equal(serverCount(observed), 1, `${name}: one transaction ran on several servers`);
        }
      }
      await characteristics.query('SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE');
      await defaultSetting.query('SET default_transaction_read_only = off');
      for (const c of [characteristics, defaultSetting]) {
        assertAllOnPrimary(topology, await inTransaction(c, 'BEGIN', [`SELECT ${WHERE}`]), 'BEGIN after going back to read-write');
      }
    } finally {
      await characteristics.end();
      await defaultSetting.end();
    }
  });
});

// ---- hints, session routes, target_session_attrs, session mode ---------------------------------

async function whereRanTimes(c: pg.Client, text: string, times = 4): Promise<ServerSeen[]> {
  const observed: ServerSeen[] = [];
  for (let i = 0; i < times; i++) {
    observed.push(seen((await c.query(text)).rows[0]));
    observed.push(seen((await c.query(`${text} WHERE $1::int > 0`, [i + 1])).rows[0]));
  }
  return observed;
}

async function showRoute(c: pg.Client): Promise<string> {
  return String((await c.query('SHOW ambassador.route')).rows[0]['ambassador.route']);
}

describe('hints and session routes', () => {
  test('a leading /* ambassador:route=primary */ or -- comment sends a read to the primary', async () => {
    const amb = await splitting();
    const c = await client(amb);
    try {
      assertAllOnPrimary(topology, await whereRanTimes(c, `/* ambassador:route=primary */ SELECT ${WHERE}`), 'block-comment hint');
      assertAllOnPrimary(topology, await whereRanTimes(c, `-- ambassador:route=primary\nSELECT ${WHERE}`), 'line-comment hint');
      assertAllOnReplicas(topology, await whereRanTimes(c, `/* just a comment */ SELECT ${WHERE}`), 'no hint');
    } finally {
      await c.end();
    }
  });

  test('SET ambassador.route = primary | replica | auto, quoted or not, and RESET', async () => {
    const amb = await splitting();
    const c = await client(amb);
    const reads = `SELECT ${WHERE}`;
    try {
      assert.equal(await showRoute(c), 'auto');
      const steps: Array<[string, 'primary' | 'replica' | 'auto']> = [
        ['SET ambassador.route = primary', 'primary'],
        ['SET ambassador.route = auto', 'auto'],
        ["SET ambassador.route = 'primary'", 'primary'],
        ["SET ambassador.route = 'replica'", 'replica'],
        ['SET ambassador.route TO primary', 'primary'],
        ['RESET ambassador.route', 'auto'],
        ['SET ambassador.route = replica', 'replica'],
        ["SET ambassador.route = 'auto'", 'auto'],
      ];
      for (const [statement, route] of steps) {
        await c.query(statement);
        assert.equal(await showRoute(c), route, `SHOW ambassador.route after ${statement}`);
        const observed = await whereRanTimes(c, reads);
        if (route === 'primary') assertAllOnPrimary(topology, observed, `reads after ${statement}`);
        else assertAllOnReplicas(topology, observed, `reads after ${statement}`);
        const [write] = (await c.query(`INSERT INTO items (note) VALUES ('route ${route}') RETURNING ${WHERE}`)).rows;
        assertAllOnPrimary(topology, [seen(write)], `a write after ${statement}`);
      }
    } finally {
      await c.end();
    }
  });

  // PRIMARY is a reserved word in Postgres's grammar: unquoted, only the ambassador can take it.
  test('unquoted SET ambassador.route = primary through postgres.js (extended protocol)', async () => {
    const amb = await splitting();
    const sql = jsClient(amb);
    try {
      await sql`SET ambassador.route = primary`;
      const observed: ServerSeen[] = [];
      for (let i = 0; i < 4; i++) observed.push(seen((await sql`SELECT ${i}::int AS n, pg_is_in_recovery() AS recovery, inet_server_port() AS port`)[0]));
      assertAllOnPrimary(topology, observed, 'postgres.js reads after an extended-protocol SET ambassador.route = primary');
      const [shown] = await sql`SHOW ambassador.route`;
      assert.equal(shown?.['ambassador.route'], 'primary', 'SHOW through postgres.js');
      await sql`SET ambassador.route = auto`;
      const after: ServerSeen[] = [];
      for (let i = 0; i < 6; i++) after.push(seen((await sql`SELECT ${i}::int AS n, pg_is_in_recovery() AS recovery, inet_server_port() AS port`)[0]));
      assertAllOnReplicas(topology, after, 'postgres.js reads after SET ambassador.route = auto');
    } finally {
      await sql.end({ timeout: 5 });
    }
  });

  // An exchange left open with Flush (libpq pipelines, pg-cursor, postgres.js after an error) is
  // closed by the client's next Sync, which only the server can answer: a lone Sync, or a
  // directive sent with it, goes there, and what the exchange ran commits.
  test('a Sync after an exchange left open with Flush reaches the server, alone or with a directive', async () => {
    const amb = await splitting();
    const raw = await loginScram(amb.port, 'app', CLIENT_PASSWORD, { database: DB });
    const committed = (note: string): Promise<number> =>
      withClient(directConfig(topology, DB), async (c) => Number((await c.query('SELECT count(*) AS n FROM items WHERE note = $1', [note])).rows[0].n));
    const insert = (note: string): Buffer[] => [
      encodeParse('', `INSERT INTO items (note) VALUES ('${note}')`, NO_TYPES),
      rawBind(),
      rawExecute(),
      frameMessage(FrontendType.Flush, Buffer.alloc(0)),
    ];
    try {
      raw.write(insert('flush, then sync'));
      assert.deepEqual((await raw.readUntil('C')).map((m) => m.type), ['1', '2', 'C']);
      raw.write(encodeSync());
      assert.deepEqual((await raw.readUntil('Z')).map((m) => m.type), ['Z']);
      assert.equal(await committed('flush, then sync'), 1);

      raw.write(insert('flush, then a directive'));
      assert.deepEqual((await raw.readUntil('C')).map((m) => m.type), ['1', '2', 'C']);
      raw.write([encodeParse('', "SET ambassador.route = 'replica'", NO_TYPES), rawBind(), rawExecute(), encodeSync()]);
      assert.deepEqual((await raw.readUntil('Z')).map((m) => m.type), ['1', '2', 'C', 'Z']);
      assert.equal(await committed('flush, then a directive'), 1);
    } finally {
      raw.destroy();
    }
  });

  // Inside a longer text the directive reaches the server too (as a placeholder setting), with
  // the value quoted by the ambassador: Postgres would refuse the bare word with 42601.
  test('unquoted SET ambassador.route = primary inside a multi-statement text', async () => {
    const amb = await splitting();
    const c = await client(amb);
    try {
      const results = (await c.query(`SET ambassador.route = primary; SELECT ${WHERE}`)) as unknown as pg.QueryResult[];
      assertAllOnPrimary(topology, [seen(results[1]?.rows[0]), ...(await whereRanTimes(c, `SELECT ${WHERE}`))], 'reads after a multi-statement SET');
    } finally {
      await c.end();
    }
  });

  test('target_session_attrs (postgres.js startup parameter): read-write, read-only, prefer-standby, any', async () => {
    const amb = await splitting();
    const cases = [
      { attrs: 'read-write', reads: 'primary' },
      { attrs: 'read-only', reads: 'replica' },
      { attrs: 'prefer-standby', reads: 'replica' },
      { attrs: 'any', reads: 'replica' },
    ] as const;
    for (const { attrs, reads } of cases) {
      const sql = jsClient(amb, { target_session_attrs: attrs });
      try {
        const observed: ServerSeen[] = [];
        for (let i = 0; i < 6; i++) observed.push(seen((await sql`SELECT ${i}::int AS n, pg_is_in_recovery() AS recovery, inet_server_port() AS port`)[0]));
        if (reads === 'primary') assertAllOnPrimary(topology, observed, `reads with target_session_attrs=${attrs}`);
        else assertAllOnReplicas(topology, observed, `reads with target_session_attrs=${attrs}`);
        if (attrs === 'read-write' || attrs === 'any') {
          const [row] = await sql`INSERT INTO items (note) VALUES (${attrs}) RETURNING pg_is_in_recovery() AS recovery, inet_server_port() AS port`;
          assertAllOnPrimary(topology, [seen(row)], `a write with target_session_attrs=${attrs}`);
        }
      } finally {
        await sql.end({ timeout: 5 });
      }
    }
  });

  test('session mode: the whole session on the primary, unless target_session_attrs asks for a standby', async () => {
    const amb = await splitting({ pool: { mode: 'session' } });
    const c = await client(amb);
    try {
      assertAllOnPrimary(topology, await whereRanTimes(c, `SELECT ${WHERE}`), 'session-mode reads');
    } finally {
      await c.end();
    }
    for (const attrs of ['read-only', 'prefer-standby']) {
      const sql = jsClient(amb, { target_session_attrs: attrs });
      try {
        const observed: ServerSeen[] = [];
        for (let i = 0; i < 4; i++) observed.push(seen((await sql`SELECT ${i}::int AS n, pg_is_in_recovery() AS recovery, inet_server_port() AS port`)[0]));
        assertAllOnReplicas(topology, observed, `session mode, target_session_attrs=${attrs}`);
        assert.equal(serverCount(observed), 1, 'a session-mode session ran on several servers');
      } finally {
        await sql.end({ timeout: 5 });
      }
    }
  });
});

// ---- pgbench --------------------------------------------------------------------------------------

function pgEnv(port: number, password: string, database = DB): NodeJS.ProcessEnv {
  return { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: 'app', PGPASSWORD: password, PGDATABASE: database, PGSSLMODE: 'disable' };
}

function tail(text: string | undefined, lines = 30): string {
  return (text ?? '').split('\n').slice(-lines).join('\n');
}

/** Index scans of pgbench_accounts on each replica (select-only reads are one each). */
async function replicaAccountScans(): Promise<number[]> {
  return Promise.all(
    topology.replicas.map((replica) =>
      withClient(superuserOn(topology, replica, DB), async (c) =>
        Number((await c.query("SELECT idx_scan FROM pg_stat_user_tables WHERE relname = 'pgbench_accounts'")).rows[0]?.idx_scan ?? 0)),
    ),
  );
}

async function historyRows(): Promise<number> {
  return withClient(directConfig(topology, DB), async (c) => Number((await c.query('SELECT count(*) AS n FROM pgbench_history')).rows[0].n));
}

interface PgbenchMix {
  processed: number;
  failed: number;
  tpcb: number;
  selectOnly: number;
}

function parseMix(output: string): PgbenchMix {
  const number = (pattern: RegExp): number => {
    const match = pattern.exec(output);
    assert.ok(match, `${pattern} not in pgbench output:\n${tail(output)}`);
    return Number(match[1]);
  };
  return {
    processed: number(/number of transactions actually processed: (\d+)/),
    failed: number(/number of failed transactions: (\d+)/),
    tpcb: number(/<builtin: TPC-B \(sort of\)>\n - weight: \d+[^\n]*\n - (\d+) transactions/),
    selectOnly: number(/<builtin: select only>\n - weight: \d+[^\n]*\n - (\d+) transactions/),
  };
}

describe('pgbench through read/write splitting', () => {
  before(async () => {
    await run('pgbench', ['-i', '-q', '-s', '1'], { env: pgEnv(topology.primary.port, topology.users.app.password), maxBuffer: 16 << 20, timeout: 120_000 });
    await waitForReplay(topology);
  });

  for (const mode of ['simple', 'prepared'] as const) {
    test(`pgbench -M ${mode}, tpcb-like + select-only: no failures, select-only on the replicas, TPC-B on the primary`, async () => {
      const amb = await splitting({ pool: { size: 8 } });
      const scansBefore = await replicaAccountScans();
      const historyBefore = await historyRows();
      // One thread: pgbench adds up its per-script counts without a lock ("XXX could use a mutex
      // here, but we choose not to"), so with two threads their sum can come out short of the
      // transactions processed, and the checks below rest on those counts.
      const args = ['-n', '-M', mode, '-b', 'tpcb-like', '-b', 'select-only', '-c', '4', '-j', '1', '-t', '200'];
      let output: string;
      try {
        const { stdout, stderr } = await run('pgbench', args, { env: pgEnv(amb.port, CLIENT_PASSWORD), maxBuffer: 16 << 20, timeout: 120_000 });
        output = `${stdout}\n${stderr}`;
      } catch (error) {
        const e = error as { code?: number; stdout?: string; stderr?: string };
        assert.fail(`pgbench ${args.join(' ')} exited with ${e.code}:\n${tail(e.stdout)}\n${tail(e.stderr)}`);
      } finally {
        // Closing the ambassador's server connections ends their backends, which flushes their
        // statistics (an idle backend may hold them back for up to 10 s).
        await amb.stop();
      }
      const mix = parseMix(output);
      assert.equal(mix.processed, 800, tail(output));
      assert.equal(mix.failed, 0, tail(output));
      assert.equal(mix.tpcb + mix.selectOnly, 800, tail(output));
      assert.ok(mix.selectOnly > 0 && mix.tpcb > 0, `pgbench ran only one script: ${JSON.stringify(mix)}`);
      assert.equal((await historyRows()) - historyBefore, mix.tpcb, 'pgbench_history rows on the primary differ from the TPC-B transactions');
      const served = (scans: number[]): number => scans.reduce((sum, value, index) => sum + value - scansBefore[index]!, 0);
      // The statistics arrive asynchronously: wait until they account for every select-only read.
      const scans = await eventuallyOrLast(replicaAccountScans, (value) => served(value) >= mix.selectOnly);
      assert.equal(served(scans), mix.selectOnly, `replica index scans of pgbench_accounts ${JSON.stringify(scans)} (before ${JSON.stringify(scansBefore)})`);
      assert.ok(scans.every((value, index) => value > scansBefore[index]!), `a replica served no select-only reads: ${JSON.stringify({ scansBefore, scans })}`);
    });
  }
});

/** Polls `read` until `done(value)` or 15 s pass; returns the last value either way (assert on it). */
async function eventuallyOrLast<T>(read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// ---- the 25006 safety net -----------------------------------------------------------------------

describe('safety net: a replica refusing a write (25006)', () => {
  // sneaky_add_item() inserts, but routing.functions.allow tells the classifier it only reads.
  test('pipelined behind the refused call, every query is answered in order: the refusal as an error, then the others; the text then goes to the primary', async () => {
    const amb = await splitting({ routing: { functions: { allow: ['sneaky_add_item'] } } });
    const raw = await loginScram(amb.port, 'app', CLIENT_PASSWORD, { database: DB });
    const note = 'safety net pipelined';
    const sneaky = `SELECT sneaky_add_item('${note}') AS id, ${WHERE}`;
    try {
      // One write: the three requests reach the ambassador together and go out on one replica
      // lease back to back, so the other two are in flight there when the first is refused.
      raw.write([encodeQuery(sneaky), encodeQuery('SELECT 1 AS n'), encodeQuery('SELECT 2 AS n')]);
      const refused = await raw.answer();
      // The replica describes the row before the insert fails: the client sees what it would there.
      assert.deepEqual(refused.map((m) => m.type), ['T', 'E', 'Z'], 'the refused call is answered with its error');
      assert.equal(refused[1]!.error?.code, '25006');
      for (const n of ['1', '2']) {
        const answer = await raw.answer();
        assert.deepEqual(answer.map((m) => m.type), ['T', 'D', 'C', 'Z'], `SELECT ${n}`);
        assert.equal(decodeDataRow(answer[1]!.payload)[0], n);
      }
      // Learned as a write: this time it runs on the primary, and inserts.
      raw.write(encodeQuery(sneaky));
      const again = await raw.answer();
      assert.deepEqual(again.map((m) => m.type), ['T', 'D', 'C', 'Z']);
      const { rows } = await withClient(directConfig(topology, DB), (d) => d.query('SELECT count(*)::int AS n FROM items WHERE note = $1', [note]));
      assert.equal(rows[0].n, 1, 'only the call on the primary inserted');
    } finally {
      raw.destroy();
    }
  });

  PROTOCOLS.forEach((protocol, index) => {
    test(`${protocol.name}: an allow-listed writing function is re-run on the primary once, then its text goes there directly`, async () => {
      const amb = await splitting({ routing: { functions: { allow: ['sneaky_add_item'] } } });
      const conn = await protocol.open(amb);
      const note = `safety net ${index}`;
      const text = `SELECT sneaky_add_item($1) AS id, ${WHERE}, ${index} AS variant`;
      try {
        const first = (await conn.query(text, [note], `sneaky_${index}`))[0];
        assertAllOnPrimary(topology, [seen(first)], 'the re-run');
        assert.equal(safetyNetLines(amb).length, 1, `safety-net log lines after the first call: ${JSON.stringify(safetyNetLines(amb))}`);
        const second = (await conn.query(text, [note], `sneaky_${index}`))[0];
        assertAllOnPrimary(topology, [seen(second)], 'the second call');
        assert.equal(safetyNetLines(amb).length, 1, 'the second call of the same text was sent to a replica again');
        // The classifier still calls the function a read: only the exact text was learned.
        const other = `SELECT sneaky_add_item($1) AS id, ${WHERE}, ${index} AS variant, 'other text' AS other`;
        assertAllOnPrimary(topology, [seen((await conn.query(other, [note], `sneaky_other_${index}`))[0])], 'another text calling the function');
        assert.equal(safetyNetLines(amb).length, 2, 'a different text was not tried on a replica first');
        const { rows } = await withClient(directConfig(topology, DB), (d) => d.query('SELECT count(*)::int AS n FROM items WHERE note = $1', [note]));
        assert.equal(rows[0].n, 3, 'three calls did not insert exactly three rows on the primary');
      } finally {
        await conn.close();
      }
    });
  });
});
