// Function catalogs: catalogFromRows() over pg_proc-shaped rows (overloads, schemas, unknown
// names), the built-in introspection functions that a real PostgreSQL 15 catalog marks VOLATILE
// yet must stay reads, and Classifier.setCatalog() swapping the catalog and clearing the cache.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  catalogFromRows,
  Classifier,
  createClassifier,
  EMPTY_FUNCTION_CATALOG,
  InMemoryFunctionCatalog,
} from '../../../src/router/classifier.ts';
import { CORPUS_PROC_ROWS } from './classifier-corpus.ts';
import { PG15_VOLATILE_BUILTINS, pg15VolatileRows } from './classifier-pg-proc.ts';

await createClassifier({ functions: EMPTY_FUNCTION_CATALOG }); // loads the parser module

const pg15 = catalogFromRows([...CORPUS_PROC_ROWS, ...pg15VolatileRows()]);

test('a catalog from pg_proc rows: a user VOLATILE function writes, a STABLE one reads', () => {
  const rows = [
    { schema: 'public', name: 'add_order', volatile: true }, // plpgsql: INSERT INTO orders ...
    { schema: 'public', name: 'price_of', volatile: false },
  ];
  const local = new Classifier({ functions: catalogFromRows(rows) });
  const added = local.classify('SELECT add_order(1)');
  assert.equal(added.route, 'write');
  assert.equal(added.reason, 'volatile-function:add_order');
  assert.equal(local.classify('SELECT price_of(1)').route, 'read');
  assert.equal(local.classify('SELECT other_fn(1)').reason, 'unknown-function:other_fn');
});

test('catalogFromRows: any volatile overload in any schema makes an unqualified name write', () => {
  const rows = catalogFromRows([
    { schema: 'public', name: 'f', volatile: false },
    { schema: 'public', name: 'f', volatile: true },
    { schema: 'app', name: 'g', volatile: true },
    { schema: 'public', name: 'g', volatile: false },
    { schema: 'app', name: 'h', volatile: false },
    { schema: 'other', name: 'h', volatile: false },
  ]);
  assert.equal(rows.isWriting('f'), 'write');
  assert.equal(rows.isWriting('g'), 'write');
  assert.equal(rows.isWriting('h'), 'read');
  assert.equal(rows.isWriting('nope'), 'unknown');
});

test("catalogFromRows: schema.name looks at that schema's overloads only", () => {
  const rows = catalogFromRows([
    { schema: 'app', name: 'g', volatile: true },
    { schema: 'public', name: 'g', volatile: false },
    { schema: 'a.b', name: 'c', volatile: true },
  ]);
  assert.equal(rows.isWriting('g', 'app'), 'write');
  assert.equal(rows.isWriting('g', 'public'), 'read');
  assert.equal(rows.isWriting('g', 'elsewhere'), 'unknown');
  assert.equal(rows.isWriting('c', 'a.b'), 'write');
  assert.equal(rows.isWriting('b.c', 'a'), 'unknown', 'schema and name are not joined into one string');
  assert.equal(catalogFromRows([]).isWriting('g'), 'unknown');
});

test('catalogFromRows reads any iterable once', () => {
  function* rows() {
    yield { schema: 'public', name: 'once', volatile: true };
  }
  assert.equal(catalogFromRows(rows()).isWriting('once'), 'write');
});

test('with a real PostgreSQL 15 catalog, introspection that is VOLATILE in pg_proc stays a read', () => {
  for (const name of ['pg_is_in_recovery', 'pg_last_wal_replay_lsn', 'pg_relation_size', 'clock_timestamp', 'random']) {
    assert.ok(PG15_VOLATILE_BUILTINS.includes(name), `${name} is volatile in the fixture`);
  }
  const local = new Classifier({ functions: pg15 });
  const reads = [
    'select pg_is_in_recovery()', 'select inet_server_port()', 'select inet_server_addr()',
    'select inet_client_port(), inet_client_addr()', 'select pg_last_wal_replay_lsn()',
    'select pg_last_wal_receive_lsn()', 'select pg_last_xact_replay_timestamp()', 'select pg_backend_pid()',
    'select version()', "select current_setting('server_version_num')", 'select clock_timestamp()',
    'select random()', 'select now(), statement_timestamp(), transaction_timestamp(), timeofday()',
    "select pg_size_pretty(pg_database_size(current_database()))", "select pg_relation_size('t'), pg_total_relation_size('t')",
    'select pg_is_wal_replay_paused()', 'select pg_blocking_pids(42)', 'select pg_jit_available()',
    'select pg_is_in_recovery(), pg_last_wal_replay_lsn(), now() - pg_last_xact_replay_timestamp() as lag',
    'select pg_catalog.pg_is_in_recovery()', 'select gen_random_uuid()',
  ];
  for (const sql of reads) assert.equal(local.classify(sql).route, 'read', `${sql}: ${local.classify(sql).reason}`);
});

test('with a real PostgreSQL 15 catalog, volatile built-ins that write or need the primary still write', () => {
  const local = new Classifier({ functions: pg15 });
  assert.equal(local.classify("select nextval('s')").reason, 'writing-function:nextval');
  assert.equal(local.classify('select pg_current_wal_lsn()').reason, 'writing-function:pg_current_wal_lsn');
  assert.equal(local.classify('select pg_export_snapshot()').reason, 'volatile-function:pg_export_snapshot');
  assert.equal(local.classify("select * from ts_stat('select tsv from docs')").reason, 'writing-function:ts_stat');
  assert.equal(local.classify('select app.pg_is_in_recovery()').reason, 'unknown-function:pg_is_in_recovery');
});

test('setCatalog swaps the catalog, clears the cache and keeps allow/deny', () => {
  const local = new Classifier({ functions: EMPTY_FUNCTION_CATALOG, allow: ['my_safe_volatile'], deny: ['send_email'] });
  assert.equal(local.classify('select price_of(1)').reason, 'unknown-function:price_of');
  assert.equal(local.classify('select price_of(1)').reason, 'unknown-function:price_of');
  assert.equal(local.stats().hits, 1);
  local.setCatalog(catalogFromRows([
    { schema: 'public', name: 'price_of', volatile: false },
    { schema: 'public', name: 'send_email', volatile: false },
    { schema: 'public', name: 'my_safe_volatile', volatile: true },
  ]));
  assert.equal(local.stats().cached, 0);
  assert.equal(local.classify('select price_of(1)').route, 'read');
  assert.equal(local.classify("select send_email('a')").reason, 'writing-function:send_email');
  assert.equal(local.classify('select my_safe_volatile()').route, 'read');
  local.setCatalog(new InMemoryFunctionCatalog({ volatile: ['price_of'] }));
  assert.equal(local.classify('select price_of(1)').reason, 'volatile-function:price_of');
});
