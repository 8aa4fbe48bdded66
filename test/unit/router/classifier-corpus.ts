// Classifier corpus, part 1: reads, transactions, hints, directives, session statements.
// Each entry is a statement and its expected route (and reason / flags where they matter).
// The catalog and lists the corpus assumes are in CORPUS_FUNCTIONS, the same catalog as pg_proc
// rows in CORPUS_PROC_ROWS (the corpus must pass with either); the texts in LEARNED_WRITES are
// learned as writes before the corpus runs. Part 2 (writes) lives in classifier-corpus-writes.ts
// and is merged into CORPUS here.

import type { ProcRow } from '../../../src/router/classifier-functions.ts';
import { WRITE_CORPUS } from './classifier-corpus-writes.ts';

export interface CorpusEntry {
  sql: string;
  route: 'read' | 'write';
  reason?: string;
  transaction?: string;
  hint?: 'primary' | 'replica';
  retry?: 'off';
  directive?: { route?: string; minLsn?: string };
  statements?: number;
  kind?: string;
}

/** Catalog contents, allow and deny lists the corpus is written against. */
export const CORPUS_FUNCTIONS = {
  volatile: ['add_order', 'audit_log', 'billing.charge', 'my_safe_volatile'],
  readOnly: ['price_of', 'reporting.order_total', 'is_active'],
  allow: ['my_safe_volatile'],
  deny: ['send_email'],
};

/**
 * CORPUS_FUNCTIONS as `SELECT n.nspname, p.proname, p.provolatile = 'v'` would return them:
 * add_order is plpgsql VOLATILE and inserts into orders (two overloads), audit_log has a STABLE
 * and a VOLATILE overload (so it writes), price_of is STABLE, is_active IMMUTABLE.
 */
export const CORPUS_PROC_ROWS: ProcRow[] = [
  { schema: 'public', name: 'add_order', volatile: true },
  { schema: 'public', name: 'add_order', volatile: true },
  { schema: 'public', name: 'audit_log', volatile: false },
  { schema: 'public', name: 'audit_log', volatile: true },
  { schema: 'billing', name: 'charge', volatile: true },
  { schema: 'public', name: 'my_safe_volatile', volatile: true },
  { schema: 'public', name: 'price_of', volatile: false },
  { schema: 'reporting', name: 'order_total', volatile: false },
  { schema: 'public', name: 'is_active', volatile: false },
];

/** Reads by the parser that a replica refused (SQLSTATE 25006): learned before the corpus runs. */
export const LEARNED_WRITES: readonly string[] = [
  'select price_of(13) /* catalog was stale: price_of now inserts */',
  'select * from t where is_active(t) -- refused by a replica',
  '/* ambassador:route=replica */ select legacy_touch(1)',
  'begin read only; select price_of(14); commit',
  'declare learned_c cursor for select price_of(15)',
];

export function read(sql: string, reason?: string, extra: Partial<CorpusEntry> = {}): CorpusEntry {
  return { sql, route: 'read', ...(reason === undefined ? {} : { reason }), ...extra };
}

export function write(sql: string, reason?: string, extra: Partial<CorpusEntry> = {}): CorpusEntry {
  return { sql, route: 'write', ...(reason === undefined ? {} : { reason }), ...extra };
}

const SELECTS: CorpusEntry[] = [
  read('select 1', 'select', { statements: 1 }),
  read('SELECT 1'),
  read('select * from t'),
  read('select * from t where id = $1', 'select'),
  read('select * from t where id = $1 and name = $2 limit $3'),
  read('select a, b from t join u on t.id = u.t_id where u.x > 3 order by a desc limit 10'),
  read('select a from t1 join t2 using (id) join t3 on t3.id = t2.id left join t4 on true'),
  read('select count(*) from t'),
  read('select count(distinct a), sum(b), avg(c), min(d), max(e) from t group by f having count(*) > 1'),
  read('select lower(name), upper(name), length(name), substr(name, 1, 3) from users'),
  read("select coalesce(a, b), nullif(a, 0), greatest(a, b), least(a, b) from t"),
  read('select now(), current_timestamp, current_date, localtime, clock_timestamp()'),
  read('select random()'),
  read('select gen_random_uuid()'),
  read("select generate_series(1, 10)"),
  read('select * from generate_series(1, 10) as g(i)'),
  read("select jsonb_build_object('a', 1), jsonb_agg(x), json_agg(y) from t"),
  read("select data->>'name', data #> '{a,b}' from docs where data @> '{\"a\":1}'"),
  read("select jsonb_path_query(doc, '$.a[*]') from docs"),
  read("select string_agg(name, ', ' order by name) from users"),
  read("select array_agg(x), array_length(arr, 1), unnest(arr) from t group by arr"),
  read("select regexp_replace(s, 'a+', 'b', 'g'), split_part(s, ',', 2) from t"),
  read("select to_char(now(), 'YYYY-MM-DD'), date_trunc('day', ts), extract(year from ts) from t"),
  read("select ts at time zone 'UTC' from events"),
  read("select position('a' in s), substring(s from 2 for 3), trim(both ' ' from s), overlay(s placing 'x' from 1) from t"),
  read('select row_number() over (partition by a order by b), rank() over w from t window w as (order by c)'),
  read('select lag(x) over (order by t), lead(x, 2) over (order by t) from series'),
  read('select percentile_cont(0.5) within group (order by x) from t'),
  read('select * from t where exists (select 1 from u where u.id = t.id)'),
  read('select * from t where id in (select id from u where flag)'),
  read('select (select max(id) from u) as m from t'),
  read('select * from t union select * from u'),
  read('select * from t union all select * from u except select * from v intersect select * from w'),
  read('select distinct on (a) a, b from t order by a, b'),
  read('with x as (select * from t) select * from x', 'select'),
  read('with recursive r(n) as (select 1 union all select n + 1 from r where n < 10) select * from r'),
  read('with a as (select 1), b as (select 2) select * from a, b'),
  read('with x as materialized (select * from t) select * from x'),
  read('select * from t tablesample system (10)'),
  read('select * from t, lateral (select * from u where u.t_id = t.id) s'),
  read("select price_of(42)", 'select'),
  read("select reporting.order_total(7)", 'select'),
  read("select is_active(u) from users u"),
  read("select my_safe_volatile()", 'select'),
  read("select pg_catalog.now(), pg_catalog.lower('A')"),
  read("select current_setting('search_path')"),
  read("select version()"),
  read("select pg_is_in_recovery()"),
  read("select pg_last_wal_replay_lsn()"),
  read("select pg_size_pretty(pg_total_relation_size('t'))"),
  read("select has_table_privilege('t', 'select')"),
  read("select pg_get_viewdef('v'::regclass)"),
  read("select 'nextval' as n, 'delete from t' as d"),
  read("select $$ insert into t values (1) $$"),
  read("select * from \"DELETE\""),
  read('select 1 as "update"'),
  read("select * from t where name like 'x%' and tags && array['a']"),
  read("select case when a > 1 then 'x' else 'y' end from t"),
  read("select cast(a as text), a::int, b::jsonb from t"),
  read("select * from pg_stat_activity"),
  read("select * from information_schema.tables where table_schema = 'public'"),
  read("select relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"),
  read('select * from t order by id fetch first 5 rows only'),
  read('select * from t offset 10 limit 5'),
  read('select a, count(*) from t group by rollup (a)'),
  read('select a, b from t group by grouping sets ((a), (b), ())'),
  read("select xmlelement(name foo, 'bar')"),
  read("select json_object('a': 1)"),
  read("select * from json_table('[1,2]'::jsonb, '$[*]' columns (v int path '$')) jt"),
  read("select md5('x'), sha256('x'::bytea), encode('x'::bytea, 'hex')"),
  read("select abs(-1), round(1.5), floor(2.7), ceil(2.1), mod(7, 3), power(2, 10), sqrt(16)"),
  read("select format('%s-%s', a, b), concat(a, b), concat_ws(',', a, b) from t"),
  read("select to_tsvector('english', body) @@ to_tsquery('cat') from docs"),
  read("select ts_rank(v, q) from docs, to_tsquery('a') q"),
  read("select age(ts), make_date(2024, 1, 1), date_part('hour', ts) from t"),
  read("select int4range(1, 10) @> 5, lower(int4range(1, 10))"),
  read('select * from t where id = any($1::int[])'),
  read('values (1), (2), (3)', 'select'),
  read("values (1, 'a'), (2, 'b') order by 1"),
  read('table t', 'select'),
  read('table public.t'),
  read('(select 1) union (select 2)'),
  read('select 1 /* trailing comment */'),
  read('/* leading comment */ select 1', 'select'),
  read('-- line comment\nselect 1'),
  read('select /* inline */ 1 -- tail'),
  read('/* nested /* comment */ still comment */ select 1'),
  read('select 1;', 'select', { statements: 1 }),
  read('  \n\t select 1  \n'),
];

const SHOW_EXPLAIN_COPY: CorpusEntry[] = [
  read('show search_path', 'show'),
  read('SHOW ALL', 'show'),
  read('show transaction_read_only'),
  read('show ambassador.route'),
  read('explain select * from t', 'explain'),
  read('explain delete from t', 'explain'),
  read('explain insert into t values (1)', 'explain'),
  read('explain update t set a = 1', 'explain'),
  read('explain (costs off) select nextval(\'s\')', 'explain'),
  read('explain (analyze false) delete from t', 'explain'),
  read('explain (analyze off, verbose) update t set a = 1', 'explain'),
  read('explain analyze select * from t', 'explain-analyze'),
  read('explain (analyze, buffers) select count(*) from t', 'explain-analyze'),
  read('explain (analyze true, format json) select 1', 'explain-analyze'),
  read('copy t to stdout', 'copy-to'),
  read('copy t (a, b) to stdout with (format csv, header)', 'copy-to'),
  read('copy (select * from t where a > 1) to stdout', 'copy-to'),
  read('COPY (SELECT 1) TO STDOUT WITH BINARY', 'copy-to'),
  read('declare c cursor for select * from t', 'cursor-read'),
  read('declare c no scroll cursor without hold for select * from t', 'cursor-read'),
  read('declare c binary cursor for select 1', 'cursor-read'),
];

const TRANSACTIONS: CorpusEntry[] = [
  read('begin read only', 'transaction-control', { transaction: 'begin-read-only' }),
  read('BEGIN TRANSACTION READ ONLY', 'transaction-control', { transaction: 'begin-read-only' }),
  read('begin isolation level repeatable read, read only', undefined, { transaction: 'begin-read-only' }),
  read('start transaction read only', undefined, { transaction: 'begin-read-only' }),
  read('start transaction isolation level serializable, read only', 'transaction-control', { transaction: 'begin-read-only' }),
  read('start transaction isolation level serializable read only deferrable', undefined, { transaction: 'begin-read-only' }),
  // No read mode: the session default decides (a plain BEGIN may go to a replica whose session
  // is default_transaction_read_only); an explicit READ WRITE never.
  write('begin', 'transaction-control', { transaction: 'begin', statements: 1 }),
  write('BEGIN WORK', 'transaction-control', { transaction: 'begin' }),
  write('BEGIN TRANSACTION', 'transaction-control', { transaction: 'begin' }),
  write('begin;', 'transaction-control', { transaction: 'begin' }),
  write('/* app=web */ begin', 'transaction-control', { transaction: 'begin' }),
  write('begin isolation level read committed', 'transaction-control', { transaction: 'begin' }),
  write('begin deferrable', 'transaction-control', { transaction: 'begin' }),
  write('start transaction', 'transaction-control', { transaction: 'begin' }),
  write('START TRANSACTION ISOLATION LEVEL SERIALIZABLE', undefined, { transaction: 'begin' }),
  write('/* ambassador:route=replica */ begin', 'transaction-control', { transaction: 'begin', hint: 'replica' }),
  write('begin read write', 'transaction-control', { transaction: 'begin-read-write' }),
  write('BEGIN TRANSACTION READ WRITE', 'transaction-control', { transaction: 'begin-read-write' }),
  write('start transaction read write', 'transaction-control', { transaction: 'begin-read-write' }),
  write('begin isolation level serializable, read write, deferrable', undefined, { transaction: 'begin-read-write' }),
  write('begin read only, read write', undefined, { transaction: 'begin-read-write' }),
  // Postgres lets the last mention win (read only); one READ WRITE anywhere keeps it a write.
  write('begin read write, read only', undefined, { transaction: 'begin-read-write' }),
  write('commit', 'transaction-control', { transaction: 'commit' }),
  write('COMMIT AND CHAIN', undefined, { transaction: 'commit' }),
  write('end', undefined, { transaction: 'commit' }),
  write('rollback', 'transaction-control', { transaction: 'rollback' }),
  write('abort', undefined, { transaction: 'rollback' }),
  write('savepoint s1', undefined, { transaction: 'savepoint' }),
  write('release savepoint s1', undefined, { transaction: 'release' }),
  write('rollback to savepoint s1', undefined, { transaction: 'rollback-to' }),
  write("prepare transaction 'tx1'", undefined, { transaction: 'prepare-transaction' }),
  write("commit prepared 'tx1'", undefined, { transaction: 'commit-prepared' }),
  write("rollback prepared 'tx1'", undefined, { transaction: 'rollback-prepared' }),
  read('set transaction read only', 'transaction-control', { transaction: 'set-read-only' }),
  read('set transaction isolation level serializable, read only', undefined, { transaction: 'set-read-only' }),
  read('set transaction_read_only = on', undefined, { transaction: 'set-read-only' }),
  write('set transaction read write', undefined, { transaction: 'set-read-write' }),
  write('set transaction isolation level repeatable read', undefined, { transaction: 'follow' }),
  write('set session characteristics as transaction read only', 'session-state', { transaction: 'session-read-only' }),
  write('set session characteristics as transaction read write', undefined, { transaction: 'session-read-write' }),
  write('set default_transaction_read_only = on', 'session-state', { transaction: 'session-read-only' }),
  write("set default_transaction_read_only to 'true'", undefined, { transaction: 'session-read-only' }),
  write('set default_transaction_read_only = off', undefined, { transaction: 'session-read-write' }),
  write('reset default_transaction_read_only', undefined, { transaction: 'session-read-write' }),
  write('fetch 10 c', 'cursor-follow', { transaction: 'follow' }),
  write('fetch all from c', 'cursor-follow'),
  write('move next in c', 'cursor-follow'),
  write('close c', 'cursor-follow'),
  write('close all', 'cursor-follow'),
];

const HINTS_AND_DIRECTIVES: CorpusEntry[] = [
  write('/* ambassador:route=primary */ select 1', 'hint', { hint: 'primary' }),
  write('-- ambassador:route=primary\nselect * from t', 'hint', { hint: 'primary' }),
  read('/* ambassador:route=replica */ select 1', 'select', { hint: 'replica' }),
  read('-- ambassador:route=replica\nselect * from t', 'select', { hint: 'replica' }),
  read('/* ambassador:route=replica */ select my_report()', 'hint', { hint: 'replica' }),
  read('/* ambassador:route=replica */ select add_order(1)', 'hint', { hint: 'replica' }),
  write('/* ambassador:route=replica */ delete from t', 'dml', { hint: 'replica' }),
  write('/* ambassador:route=replica */ select nextval(\'s\')', 'writing-function:nextval', { hint: 'replica' }),
  write('/* ambassador:route=replica */ select * from t for update', 'locking-clause', { hint: 'replica' }),
  write('/* ambassador:route=replica */ selec 1', 'parse-error', { hint: 'replica' }),
  write('/* ambassador:route=replica */ select my_fn(); select 1', 'multi-statement-write', { hint: 'replica' }),
  write('/* ambassador:route=primary ambassador:retry=off */ select 1', 'hint', { hint: 'primary', retry: 'off' }),
  read('/* ambassador:retry=off */ select 1', 'select', { retry: 'off' }),
  write('/* ambassador:retry=off */ insert into t values (1)', 'dml', { retry: 'off' }),
  read('/* app=web */ /* ambassador:route=replica */ select 1', 'select', { hint: 'replica' }),
  read('select 1 /* ambassador:route=primary */', 'select', { hint: undefined }),
  read('select /* ambassador:route=primary */ 1', 'select', { hint: undefined }),
  read("select '/* ambassador:route=primary */'", 'select', { hint: undefined }),
  write('select my_fn() /* ambassador:route=replica */', 'unknown-function:my_fn', { hint: undefined }),
  read('/* ambassador:route=sideways */ select 1', 'select', { hint: undefined }),
  write('set ambassador.route = replica', 'directive', { directive: { route: 'replica' } }),
  write('SET ambassador.route TO REPLICA', 'directive', { directive: { route: 'replica' } }),
  write('set ambassador.route = auto', 'directive', { directive: { route: 'auto' } }),
  write("SET ambassador.route = 'primary'", 'directive', { directive: { route: 'primary' } }),
  write('set ambassador.route = "primary"', 'directive', { directive: { route: 'primary' } }),
  // PRIMARY is a reserved word: the parser rejects the documented unquoted form, which is
  // judged as if quoted; anything else around it stays a parse error.
  write('set ambassador.route = primary', 'directive', { directive: { route: 'primary' }, statements: 1, kind: 'directive' }),
  write('SET AMBASSADOR.ROUTE TO PRIMARY', 'directive', { directive: { route: 'primary' } }),
  write('set session ambassador.route = Primary;', 'directive', { directive: { route: 'primary' } }),
  write('set local ambassador.route to primary ; ', 'directive', { directive: { route: 'primary' } }),
  write('set "ambassador".route = primary', 'directive', { directive: { route: 'primary' } }),
  write('/* pin */ set ambassador.route =\n-- the primary, please\n  primary -- done', 'directive', { directive: { route: 'primary' } }),
  write('/* 😀 é */ set ambassador.route = primary', 'directive', { directive: { route: 'primary' } }),
  write('/* ambassador:route=replica */ set ambassador.route = primary', 'directive', { directive: { route: 'primary' }, hint: 'replica' }),
  write('set ambassador.route = primary; select 1', 'parse-error', { directive: undefined }),
  write('select 1; set ambassador.route = primary', 'parse-error', { directive: undefined }),
  write('set ambassador.route = primary; delete from t', 'parse-error'),
  write('set ambassador.route = primary key', 'parse-error'),
  write('set ambassador.route = primary, replica', 'parse-error'),
  write('set ambassador.min_lsn = primary', 'parse-error'),
  write('set search_path = primary', 'parse-error'),
  write('select primary', 'parse-error'),
  write('select primary from t', 'parse-error'),
  write('set ambassador.route = primaryx', 'invalid-directive'),
  write("set ambassador.route to 'auto'", 'directive', { directive: { route: 'auto' } }),
  write('reset ambassador.route', 'directive', { directive: { route: 'auto' } }),
  write("set ambassador.min_lsn = '0/16B3748'", 'directive', { directive: { minLsn: '0/16B3748' } }),
  write("set ambassador.min_lsn = '1A/FF000000'", 'directive', { directive: { minLsn: '1A/FF000000' } }),
  write('reset ambassador.min_lsn', 'directive', { directive: { minLsn: '0/0' } }),
  write("set ambassador.min_lsn = 'yesterday'", 'invalid-directive'),
  write('set ambassador.route = sideways', 'invalid-directive'),
];

const SESSION: CorpusEntry[] = [
  write("set search_path = app, public", 'session-state'),
  write("set statement_timeout = '5s'", 'session-state'),
  write('set local lock_timeout = 1000', 'session-state'),
  write("set time zone 'UTC'", 'session-state'),
  write('set role reporting', 'session-state'),
  write('reset all', 'session-state'),
  write('reset search_path', 'session-state'),
  write('discard all', 'session-state'),
  write('discard plans', 'session-state'),
  write('deallocate p1', 'session-state'),
  write('deallocate all', 'session-state'),
  write('prepare p1 as select * from t where id = $1', 'prepare'),
  write('prepare p2(int) as insert into t values ($1)', 'prepare-write'),
  write('execute p1(1)', 'execute'),
  write('listen chan', 'listen-notify'),
  write('LISTEN "Order Events"', 'listen-notify'),
  write('unlisten chan', 'listen-notify'),
  write('unlisten *', 'listen-notify'),
  write("notify chan, 'payload'", 'listen-notify'),
  write('NOTIFY chan', 'listen-notify'),
  write('set work_mem = 65536', 'session-state'),
  write("SET application_name TO 'billing'", 'session-state'),
  write('set session search_path to default', 'session-state'),
  write('set local statement_timeout = 0', 'session-state'),
  write("set session authorization 'alice'", 'session-state'),
];

const MULTI_AND_EMPTY: CorpusEntry[] = [
  read('select 1; select 2', 'multi-statement-read', { statements: 2 }),
  read('select * from t; select * from u; show search_path', 'multi-statement-read', { statements: 3 }),
  read('begin read only; select 1; commit', 'multi-statement-read', { transaction: 'commit' }),
  read('/* a */ select 1; /* b */ select 2; -- c'),
  write('select 1; insert into t values (1)', 'multi-statement-write'),
  write('insert into t values (1); select 1', 'multi-statement-write'),
  write('select 1; select nextval(\'s\')', 'multi-statement-write'),
  write('begin; select 1; commit', 'multi-statement-write', { transaction: 'commit' }),
  write('begin; select 1', 'multi-statement-write', { transaction: 'begin', statements: 2 }),
  write('select 1; begin', 'multi-statement-write', { transaction: 'begin' }),
  write('start transaction; select * from t', 'multi-statement-write', { transaction: 'begin' }),
  write('begin read write; select 1', 'multi-statement-write', { transaction: 'begin-read-write' }),
  read('begin read only; select 1', 'multi-statement-read', { transaction: 'begin-read-only' }),
  write('select 1; set search_path = x', 'multi-statement-write'),
  write('commit; rollback', 'multi-statement-write'),
  write('select 1; select * from t for share', 'multi-statement-write'),
  read('', 'empty', { statements: 0 }),
  read('   ', 'empty'),
  read('/* nothing here */', 'empty'),
  read(';', 'empty'),
];

const LEARNED: CorpusEntry[] = [
  write('select price_of(13) /* catalog was stale: price_of now inserts */', 'learned-write', { statements: 1 }),
  write('select * from t where is_active(t) -- refused by a replica', 'learned-write'),
  write('/* ambassador:route=replica */ select legacy_touch(1)', 'learned-write', { hint: 'replica' }),
  write('begin read only; select price_of(14); commit', 'learned-write', { transaction: 'commit', statements: 3 }),
  write('declare learned_c cursor for select price_of(15)', 'learned-write', { kind: 'cursor' }),
  // Exact text only: the same statements written differently are judged afresh.
  read('select price_of(13)', 'select'),
  read('select * from t where is_active(t)', 'select'),
];

export const READ_CORPUS: CorpusEntry[] = [
  ...SELECTS, ...SHOW_EXPLAIN_COPY, ...TRANSACTIONS, ...HINTS_AND_DIRECTIVES, ...SESSION, ...MULTI_AND_EMPTY, ...LEARNED,
];

export const CORPUS: CorpusEntry[] = [...READ_CORPUS, ...WRITE_CORPUS];
