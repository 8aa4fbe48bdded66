// Prepared statements whose result shape changed under them (DDL), under transaction pooling,
// with raw protocol clients on a pool of one server connection. A client that described its
// statement once and then only binds it (Bind, Execute, Sync: as postgres.js does) reads rows by
// the columns it was shown. Postgres answers such a Bind 0A000 "cached plan must not change
// result type" (routine RevalidateCachedQuery, on which postgres.js prepares again) once DDL
// changed those columns, and keeps answering it so until the client prepares again. Here the
// statement is made again on the server (the server's statements are dropped by another
// client's DEALLOCATE ALL, as when it is closed to make room or the client lands on another
// server): made again, it has the table's new shape, and the ambassador must answer as Postgres
// would (result-shapes.ts), not return rows of another shape. A request that describes its
// portal (pg, libpq) gets the new description instead.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { ambassadorsFor, CLIENT_PASSWORD } from '../support/ambassador.ts';
import { directConfig, dropTestDatabase, prepareTestDatabase, withClient } from '../support/pooling.ts';
import { bind, DESCRIBE_PORTAL, EXECUTE, FLUSH, NO_TYPES, summary } from '../support/battery.ts';
import { loginScram, type RawClient, type WireMessage } from '../support/raw-client.ts';
import { getTopology, type Topology } from '../support/topology.ts';
import { decodeErrorFields } from '../../src/protocol/backend.ts';
import { encodeParse, encodeQuery, encodeSync, encodeTarget, FrontendType } from '../../src/protocol/frontend.ts';

const DB = 'pa_result_shapes';
const SYNC = encodeSync();
/** Postgres's answer to a Bind of a statement whose result type changed, as a client sees it. */
const CACHED_PLAN = 'E(ERROR 0A000 RevalidateCachedQuery)';

let topology: Topology;
let admin: pg.Client;
const inProcess = ambassadorsFor(() => topology);

before(async () => {
  topology = await getTopology();
  admin = await prepareTestDatabase(topology, DB);
});

after(async () => {
  await inProcess.stopAll();
  await admin?.end().catch(() => {});
  await dropTestDatabase(topology, DB).catch(() => {});
});

/** A message as summary() has it; an error with its routine (field R) when it has one. */
function shown(m: WireMessage): string {
  const routine = m.type === 'E' ? decodeErrorFields(m.payload).get('R') : undefined;
  return routine === undefined || m.error?.code !== '0A000' ? summary(m) : `${summary(m).slice(0, -1)} ${routine})`;
}

async function answered(raw: RawClient): Promise<string> {
  return (await raw.answer(5_000)).map(shown).join(' ');
}

/** Runs `sql` on a direct connection (the DDL an application's migration runs). */
const direct = (sql: string): Promise<unknown> => withClient(directConfig(topology, DB), (c) => c.query(sql));

interface OneServer {
  /** The client whose statements are checked. */
  raw: RawClient;
  /** Another client of the same pool, which must keep being served. */
  other: RawClient;
  /** A third one, which drops the server's statements. */
  dropper: RawClient;
}

/** Three raw clients of an ambassador whose pool has one server connection; `table` made with one row (1). */
async function oneServer(table: string): Promise<OneServer> {
  await direct(`drop table if exists ${table}; create table ${table} (a int); insert into ${table} values (1)`);
  const amb = await inProcess.start({ pool: { mode: 'transaction', size: 1 }, logging: { level: 'info' } });
  const login = (): Promise<RawClient> => loginScram(amb.port, 'app', CLIENT_PASSWORD, { database: DB });
  return { raw: await login(), other: await login(), dropper: await login() };
}

/** Prepares `name` as `text`, described as postgres.js describes it (Parse, Describe, Sync); returns the answer. */
async function prepareDescribed(raw: RawClient, name: string, text: string): Promise<string> {
  raw.write([encodeParse(name, text, NO_TYPES), encodeTarget(FrontendType.Describe, 'S', name), SYNC]);
  return answered(raw);
}

/** Binds and executes `name` without describing it again (postgres.js); returns the answer. */
async function bound(raw: RawClient, name: string, values: readonly string[] = ['1']): Promise<string> {
  raw.write([bind(name, values), EXECUTE, SYNC]);
  return answered(raw);
}

/** Another client drops every statement of the server connection (its own DEALLOCATE ALL): the next Bind makes them again. */
async function dropServerStatements(clients: OneServer): Promise<void> {
  clients.dropper.write([encodeQuery('deallocate all')]);
  assert.equal(await answered(clients.dropper), 'C(DEALLOCATE ALL) Z(I)');
}

/**
 * Runs `body` on one server whose client `raw` prepared s1 as `text`, was shown the column `a`
 * and ran it; then `ddl` ran, and the server's statements were dropped.
 */
async function afterDdl(table: string, text: string, ddl: string, body: (clients: OneServer) => Promise<void>): Promise<void> {
  const clients = await oneServer(table);
  try {
    assert.equal(await prepareDescribed(clients.raw, 's1', text), '1 t T(a) Z(I)');
    assert.equal(await bound(clients.raw, 's1'), '2 D(1) C(SELECT 1) Z(I)');
    await direct(ddl);
    await dropServerStatements(clients);
    await body(clients);
  } finally {
    closeAll(clients);
  }
}

function closeAll(clients: OneServer): void {
  for (const client of [clients.raw, clients.other, clients.dropper]) client.destroy();
}

describe('a statement made again after DDL changed its result', () => {
  test('a column added: a Bind that relies on the old description fails with 0A000 as from Postgres, every time, until prepared again', () =>
    afterDdl('pa_shape_add', 'select * from pa_shape_add where a = $1', 'alter table pa_shape_add add column b int default 7', async ({ raw }) => {
      assert.equal(await bound(raw, 's1'), `${CACHED_PLAN} Z(I)`, 'no row of two columns read by the one the client was shown');
      assert.equal(await bound(raw, 's1'), `${CACHED_PLAN} Z(I)`, 'again, as Postgres keeps failing it');
      // As postgres.js does on that error: the same text, prepared again under another name.
      assert.equal(await prepareDescribed(raw, 's2', 'select * from pa_shape_add where a = $1'), '1 t T(a,b) Z(I)');
      assert.equal(await bound(raw, 's2'), '2 D(1|7) C(SELECT 1) Z(I)');
      // Closed, the old name can be prepared again, and means the new shape.
      raw.write([encodeTarget(FrontendType.Close, 'S', 's1'), SYNC]);
      assert.equal(await answered(raw), '3 Z(I)');
      assert.equal(await prepareDescribed(raw, 's1', 'select * from pa_shape_add where a = $1'), '1 t T(a,b) Z(I)');
      assert.equal(await bound(raw, 's1'), '2 D(1|7) C(SELECT 1) Z(I)');
    }));

  test('a column’s type changed: 0A000, not values of another type under the old one', () =>
    afterDdl('pa_shape_type', 'select a from pa_shape_type where a = $1', 'alter table pa_shape_type alter column a type text', async ({ raw }) => {
      assert.equal(await bound(raw, 's1'), `${CACHED_PLAN} Z(I)`);
    }));

  test('DDL that leaves the statement’s columns as they were: made again and run without an error', () =>
    afterDdl('pa_shape_same', 'select a from pa_shape_same where a = $1', 'alter table pa_shape_same add column b int default 7; create index on pa_shape_same (a)', async ({ raw }) => {
      assert.equal(await bound(raw, 's1'), '2 D(1) C(SELECT 1) Z(I)');
      assert.equal(await bound(raw, 's1'), '2 D(1) C(SELECT 1) Z(I)');
    }));

  test('a request that describes its portal (pg, libpq) gets the new description and its rows, no error', () =>
    afterDdl('pa_shape_portal', 'select * from pa_shape_portal where a = $1', 'alter table pa_shape_portal add column b int default 7', async ({ raw }) => {
      raw.write([bind('s1', ['1']), DESCRIBE_PORTAL, EXECUTE, SYNC]);
      assert.equal(await answered(raw), '2 T(a,b) D(1|7) C(SELECT 1) Z(I)');
      // Without the Describe it still fails: the client was shown one column for s1.
      assert.equal(await bound(raw, 's1'), `${CACHED_PLAN} Z(I)`);
    }));

  test('inside a transaction block the error fails the block, as in Postgres: 25P02 until it ends', () =>
    afterDdl('pa_shape_block', 'select * from pa_shape_block where a = $1', 'alter table pa_shape_block add column b int default 7', async ({ raw }) => {
      raw.write([encodeQuery('begin')]);
      assert.equal(await answered(raw), 'C(BEGIN) Z(T)');
      assert.equal(await bound(raw, 's1'), `${CACHED_PLAN} Z(E)`);
      raw.write([encodeQuery('select 1')]);
      assert.equal(await answered(raw), 'E(ERROR 25P02) Z(E)');
      raw.write([encodeQuery('rollback')]);
      assert.equal(await answered(raw), 'C(ROLLBACK) Z(I)');
      // In an exchange left open (Flush), the rest of it is skipped up to the client's Sync.
      raw.write([bind('s1', ['1']), EXECUTE, FLUSH]);
      assert.equal((await raw.nextMessage(5_000)).error?.code, '0A000');
      raw.write([bind('s1', ['1']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), 'Z(I)', 'skipped up to its Sync');
    }));

  test('other clients keep being served, the statement made again is theirs to use; one that described the old shape fails on the statement another made in the new one', async () => {
    const clients = await oneServer('pa_shape_others');
    const { raw, other } = clients;
    try {
      const text = 'select * from pa_shape_others where a = $1';
      assert.equal(await prepareDescribed(raw, 's1', text), '1 t T(a) Z(I)');
      assert.equal(await prepareDescribed(other, 'o1', text), '1 t T(a) Z(I)');
      await direct('alter table pa_shape_others add column b int default 7');
      await dropServerStatements(clients);
      assert.equal(await bound(raw, 's1'), `${CACHED_PLAN} Z(I)`);
      // The server holds the statement again, in the new shape: the other client's own name for
      // the same text, described before the DDL, must fail too, not read rows of two columns.
      assert.equal(await bound(other, 'o1'), `${CACHED_PLAN} Z(I)`);
      // And a name prepared now (held: its Parse answered by the ambassador) runs.
      assert.equal(await prepareDescribed(other, 'o2', text), '1 t T(a,b) Z(I)');
      assert.equal(await bound(other, 'o2'), '2 D(1|7) C(SELECT 1) Z(I)');
      other.write([encodeQuery('select count(*) from pa_shape_others')]);
      assert.equal(await answered(other), 'T(count) D(1) C(SELECT 1) Z(I)');
    } finally {
      closeAll(clients);
    }
  });
});
