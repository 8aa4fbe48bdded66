import assert from 'node:assert/strict';
import { test } from 'node:test';

import { analyzeSessionEffects, plainStatement, SessionEffectsCache, type SessionEffect } from '../../../src/router/session-effects.ts';
import { CORPUS } from './session-effects-corpus.ts';

test('the corpus is large enough to mean something', () => {
  assert.ok(CORPUS.length >= 120, `only ${CORPUS.length} cases`);
  assert.equal(new Set(CORPUS.map((c) => c.sql)).size, CORPUS.length, 'duplicate SQL in the corpus');
});

for (const { sql, effects, statements = 1, uncertain = false } of CORPUS) {
  test(`effects of ${JSON.stringify(sql)}`, () => {
    const result = analyzeSessionEffects(sql);
    assert.deepEqual(result.effects, effects);
    assert.equal(result.statements, statements, 'statements');
    assert.equal(result.uncertain, uncertain, 'uncertain');
  });
}

test('a set statement is replayable verbatim: no trailing comment or semicolon swallows the next one', () => {
  const { effects } = analyzeSessionEffects("SET x = 'a' -- note\n;\n/* c */ SET y TO 2 /* tail */;");
  const statements = effects.map((effect) => (effect as Extract<SessionEffect, { kind: 'set' }>).statement);
  assert.deepEqual(statements, ["SET x = 'a'", 'SET y TO 2']);
  // Joined as the session sync does, each still stands alone.
  assert.deepEqual(analyzeSessionEffects(statements.join(';\n')).effects, effects);
});

test('a set_config replay statement reproduces the setting it came from', () => {
  const call = `select set_config('my.Name"x', E'it''s a \\\\ "test"', false)`;
  const [effect] = analyzeSessionEffects(call).effects;
  assert.equal(effect?.kind, 'set-config');
  const replay = (effect as Extract<SessionEffect, { kind: 'set-config' }>).statement;
  assert.equal(replay, `SET "my.Name""x" TO E'it''s a \\\\ "test"'`);
  // The replay text, analyzed again, is a plain SET of the same (case-folded) name.
  assert.deepEqual(analyzeSessionEffects(replay).effects, [{ kind: 'set', name: 'my.name"x', statement: replay }]);
});

test('identifiers fold like Postgres: ASCII only, quoted kept, 63 bytes at most', () => {
  const long = 'A'.repeat(70);
  assert.deepEqual(analyzeSessionEffects(`listen ${long}`).effects, [{ kind: 'listen', channel: 'a'.repeat(63) }]);
  assert.deepEqual(analyzeSessionEffects('listen "Ünï"').effects, [{ kind: 'listen', channel: 'Ünï' }]);
  assert.deepEqual(analyzeSessionEffects('listen ÄBC').effects, [{ kind: 'listen', channel: 'Äbc' }]);
  // 'é' is two bytes in UTF-8: 31 of them (62 bytes) fit, the 32nd would make 64.
  assert.deepEqual(analyzeSessionEffects(`listen "${'é'.repeat(40)}"`).effects, [{ kind: 'listen', channel: 'é'.repeat(31) }]);
});

test('a bare SET ambassador.route = primary is quoted (PRIMARY is reserved); nothing else is', () => {
  const cases: Array<[string, string | undefined]> = [
    ['SET ambassador.route = primary; SELECT 1', "SET ambassador.route = 'primary'; SELECT 1"],
    ['SET ambassador.route = primary', "SET ambassador.route = 'primary'"],
    ["select 'SET ambassador.route = primary'; set session AMBASSADOR.Route TO Primary;", "select 'SET ambassador.route = primary'; set session AMBASSADOR.Route TO 'primary';"],
    ['set local ambassador.route=primary;set ambassador.route=primary', "set local ambassador.route='primary';set ambassador.route='primary'"],
    ["SET ambassador.route = 'primary'; SELECT 1", undefined],
    ['SET ambassador.route = "primary"; SELECT 1', undefined],
    ['SET ambassador.route = primary_key; SELECT 1', undefined],
    ['SET ambassador.route = primary key', undefined],
    ['SET other.route = primary', undefined],
    ['SELECT primary FROM t', undefined],
    ['SELECT $$SET ambassador.route = primary$$; SELECT 1', undefined],
    ['/* SET ambassador.route = primary */ SELECT 1', undefined],
    ["SELECT E'SET ambassador.route = primary'; SET ambassador.route = primary", "SELECT E'SET ambassador.route = primary'; SET ambassador.route = 'primary'"],
    ['-- SET ambassador.route = primary\nSET /* x */ ambassador.route = primary -- y', "-- SET ambassador.route = primary\nSET /* x */ ambassador.route = 'primary' -- y"],
    ['SET ambassador.route = primary; SELECT (1', undefined], // uncertain: the lexer's offsets are not trusted
  ];
  for (const [sql, quoted] of cases) {
    const result = analyzeSessionEffects(sql);
    assert.equal(result.quoted, quoted, sql);
    if (quoted === undefined) continue;
    const again = analyzeSessionEffects(quoted);
    assert.equal(again.quoted, undefined, 'quoting is done once');
    assert.equal(again.statements, result.statements);
    assert.deepEqual(again.effects.map((effect) => effect.kind), result.effects.map((effect) => effect.kind));
  }
});

test('effects of several statements come in statement order', () => {
  const sql = "begin; select pg_advisory_lock(7); listen jobs; set x = 1; select set_config('a.b', 'c', false); commit";
  assert.deepEqual(
    analyzeSessionEffects(sql).effects.map((effect) => effect.kind),
    ['transaction', 'advisory-lock', 'listen', 'set', 'set-config', 'transaction'],
  );
});

test('pins of one reason are reported once per text', () => {
  const { effects } = analyzeSessionEffects("load 'a'; load 'b'; select set_config('x.y', $1, false)");
  assert.deepEqual(effects, [{ kind: 'pin', reason: 'session-state' }]);
});

test('a very long text is analyzed without trouble', () => {
  const sql = `select ${Array.from({ length: 20_000 }, (_, i) => `'v${i}'`).join(', ')}; set x = 1`;
  const result = analyzeSessionEffects(sql);
  assert.deepEqual(result.effects, [{ kind: 'set', name: 'x', statement: 'set x = 1' }]);
  assert.equal(result.statements, 2);
});

test('SessionEffectsCache returns the same frozen result for the same text', () => {
  const cache = new SessionEffectsCache();
  const first = cache.get('set x = 1');
  assert.equal(cache.get('set x = 1'), first);
  assert.equal(cache.size, 1);
  assert.ok(Object.isFrozen(first) && Object.isFrozen(first.effects) && Object.isFrozen(first.effects[0]));
  assert.throws(() => (first.effects as SessionEffect[]).push({ kind: 'reset-all' }));
  assert.deepEqual(first, analyzeSessionEffects('set x = 1'));
});

test('SessionEffectsCache keeps a bounded number of texts, the recently used ones longest', () => {
  const cache = new SessionEffectsCache(4);
  const a = cache.get('set a = 1');
  const b = cache.get('set b = 1');
  assert.equal(cache.get('set a = 1'), a); // used again: carried into the next generation
  cache.get('set c = 1');
  assert.equal(cache.get('set a = 1'), a);
  assert.notEqual(cache.get('set b = 1'), b, 'b was not used again and is gone');
  for (let i = 0; i < 50; i++) cache.get(`set x${i} = 1`);
  assert.ok(cache.size <= 4, `size ${cache.size}`);
});

test('SessionEffectsCache analyzes but does not keep texts over the size limit', () => {
  const cache = new SessionEffectsCache(10, 16);
  const long = 'set x = 1 /* padding */';
  const first = cache.get(long);
  assert.deepEqual(first.effects, [{ kind: 'set', name: 'x', statement: 'set x = 1' }]);
  assert.equal(cache.size, 0);
  assert.notEqual(cache.get(long), first);
  cache.get('set y = 1');
  assert.equal(cache.size, 1);
});

test('plainStatement agrees with the full analysis on every text it answers', async () => {
  const { CORPUS: CLASSIFIED } = await import('./classifier-corpus.ts');
  const texts = [...CORPUS.map((c) => c.sql), ...CLASSIFIED.map((c) => c.sql)];
  // Variations: case, trailing semicolons, a second statement, unbalanced parentheses.
  const variants = texts.flatMap((sql) => [sql, sql.toUpperCase(), `${sql};`, `${sql};  \n`, `${sql}; select 1`, `${sql})`, `(${sql}`, `  ${sql}`]);
  let answered = 0;
  for (const sql of variants) {
    const plain = plainStatement(sql);
    if (plain === null) continue;
    answered++;
    const full = analyzeSessionEffects(sql);
    assert.deepEqual({ ...plain, effects: [...plain.effects] }, full, JSON.stringify(sql));
  }
  assert.ok(answered >= 200, `only ${answered} texts answered quickly`);
});

test('plainStatement answers the statements pgbench sends and declines what needs the lexer', () => {
  for (const sql of [
    'SELECT abalance FROM pgbench_accounts WHERE aid = 48213;',
    'UPDATE pgbench_accounts SET abalance = abalance + -2113 WHERE aid = 48213;',
    'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 48213, -2113, CURRENT_TIMESTAMP);',
    'select count(*) from (select 1) s',
    "SELECT 'x'", 'SELECT "col" FROM t', "SELECT 'set_config' AS name, 'temp' AS t", "SELECT 'it''s; -- not a comment, $1 /* nor this */ (' FROM t",
    `INSERT INTO "orders" ("id", "note") VALUES (1, 'temperature'), (2, 'a "quoted" word'), (3, '')`,
    "SELECT 'C:\\temp\\x'", "SELECT E'it\\'s'", "SELECT N'x', B'101', X'ff', U&'d\\0061t'", 'SELECT "a\\b" FROM t',
    // Comments and dollar quotes: skipped whole, scanned words inside them do not count.
    "SELECT 'x' -- c", 'SELECT $1', 'SELECT $$x$$', 'SELECT 1 -- note', 'SELECT /* c */ 1', '/* app=web */ select 1', '-- c\nSELECT 1', 'SELECT/**/1',
    "SELECT 1 -- set_config('a','b',false)", "SELECT $$set_config('a','b',false)$$", "SELECT $q$ it's $$ \\ $q$, $2", 'SELECT /* /* nested */ still */ 1',
    "SELECT $f$x$f$ FROM t WHERE a = $1 AND b = 'c'", 'SELECT 1 --',
    // No quote, parenthesis, `/` or inner semicolon: read in one match (with spaces and a
    // semicolon around it, a digit, `_` or a letter beyond ASCII in or after the first word, a
    // `--` comment). One whose comment hides a semicolon goes to the loop, to the same answer.
    ' \t\nSELECT abalance FROM t WHERE aid = 5 ;\n ', 'select1', 'SELECT café FROM t', 'SELECT a.b, c::int FROM t WHERE x >= 2 AND y <> 3 OR z ~* w',
    'SELECT 1 -- a;  ', 'SELECT 1 -- a;\n', 'SELECT-1', 'end_x', 'SELECT 1 -- a; SET x = 1',
    // First words that only share a letter or a beginning with one the full analysis reads.
    'TABLE t', 'VALUES (1)', 'with w as (select 1) select * from w', 'SHOW search_path', 'Sets_not_a_statement', 'ending', 'CALL p()',
  ]) {
    assert.deepEqual(plainStatement(sql), { effects: [], statements: 1, uncertain: false }, sql);
    assert.deepEqual(analyzeSessionEffects(sql), { effects: [], statements: 1, uncertain: false }, `the full analysis of ${sql}`);
  }
  for (const sql of [
    "SELECT 'a\\'", "SELECT 'a\\' || 'b'", "SELECT 1E'x'", "SELECT xE'x'", 'SELECT 1 \\ 2', "SELECT E'unterminated\\'", "SELECT 'unterminated", 'SELECT "unterminated', 'SELECT "set_config"(\'a\', \'b\', false)',
    'SELECT "pg_advisory_lock"(1)', "SELECT 'x'; SELECT 2", "'x'", 'SELECT 1; SELECT 2',
    // What only the lexer places: a $ after a word or a number, a lone or unterminated one, an unterminated comment.
    'SELECT a$1', 'SELECT 1$$x$$', 'SELECT $', 'SELECT $$x', '$$x$$', 'SELECT /* x', 'SELECT /* /* nested */ 1', 'SELECT 1; -- after',
    '/* c */ SET x = 1', 'SET/**/x = 1', 'select set_config/*x*/($1, $2, false)', 'select pg_advisory_lock($1)',
    'SELECT (1', 'SELECT 1)', 'set search_path = a', 'Begin', 'commit', 'SELECT pg_advisory_lock(1)', 'select set_config(a, b, false)',
    'SELECT * INTO TEMP t FROM x', 'create table t (a int)', 'explain select 1', '', '   ', '(select 1)', 'listen x', 'discard all',
    // Every first word the full analysis reads, in any case.
    'DROP TABLE t', 'Grant select on t to u', 'ReVoKe all on t from u', 'SECURITY LABEL ON TABLE t IS NULL', 'COMMENT ON TABLE t IS NULL', 'ABORT', 'end',
    'release sp', 'SAVEPOINT sp', 'Rollback', 'START TRANSACTION', 'DeAllocate p', 'prepare p as select 1', 'CLOSE c', 'declare c cursor for select 1',
    "LOAD 'x'", 'unlisten *', 'RESET ALL', 'reset x',
    // Declined with no quote or parenthesis either: a first word the analysis reads (around spaces
    // and semicolons, or ended by a digit or a letter beyond ASCII), a second statement (after a
    // `--` comment too), a space beyond ASCII first, a scanned word, an unclosed `/*`.
    ' \tBEGIN;', 'end ;\n', 'RESET ALL ;', 'SET x TO 1;', 'SELECT 1;;', 'SELECT 1; SET x = 1', '\u00a0SELECT 1', 'SELECT 1 AS temp_x', 'SELECT 1 -- a\n; SET x = 1', 'SELECT 1 /* a', 'end1', 'endé',
  ]) {
    assert.equal(plainStatement(sql), null, sql);
  }
});

test('plainStatement answers a multi-row INSERT of megabytes as the full analysis does, reading it once', () => {
  const rows = Array.from({ length: 20_000 }, (_, i) => `(${i}, 'name ${i}', 'it''s row ${i}; not (a statement')`);
  const sql = `INSERT INTO "t" ("a", "b", "c") VALUES ${rows.join(', ')}`;
  assert.ok(sql.length > 1_000_000);
  assert.deepEqual(plainStatement(sql), { effects: [], statements: 1, uncertain: false });
  const full = analyzeSessionEffects(sql);
  assert.deepEqual(full, { effects: [], statements: 1, uncertain: false });
  assert.equal(plainStatement(`${sql}; SELECT set_config('a', 'b', false)`), null);
  assert.equal(plainStatement(sql.replace("'name 7'", "'name 7\\'")), null, 'a literal whose end depends on standard_conforming_strings');
  assert.deepEqual(plainStatement(sql.replace("'name 7'", "E'name\\n7'")), { effects: [], statements: 1, uncertain: false });
});

test('plainStatement reads a function body and comments of megabytes once, as the full analysis does', () => {
  const body = Array.from({ length: 20_000 }, (_, i) => `  -- step ${i}: it's not a quote\n  PERFORM set_config('x', '${i}', false); /* temp */`).join('\n');
  const sql = `/* migration 42 */ SELECT run_once($body$\n${body}\n$body$, $1) -- done`;
  assert.ok(sql.length > 1_000_000);
  assert.deepEqual(plainStatement(sql), { effects: [], statements: 1, uncertain: false });
  assert.deepEqual(analyzeSessionEffects(sql), { effects: [], statements: 1, uncertain: false });
  assert.equal(plainStatement(sql.replace('$body$, $1)', '$body$, $1); SELECT 1')), null, 'a second statement');
  assert.equal(plainStatement(sql.replace(/\$body\$, \$1\)/, '$bod$, $1)')), null, 'the body left open');
});

test('the cache answers plain statements without keeping them', () => {
  const cache = new SessionEffectsCache(10);
  for (let i = 0; i < 50; i++) assert.deepEqual(cache.get(`SELECT abalance FROM pgbench_accounts WHERE aid = ${i}`).effects, []);
  assert.equal(cache.size, 0);
  assert.equal(cache.get("SET x = 'y'").effects.length, 1);
  assert.equal(cache.size, 1);
});
