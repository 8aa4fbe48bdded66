// literalShape: the classifier's cache key for texts that differ only in numbers. The property
// that matters: two texts with one shape always classify alike (checked against the real parser
// over the classifier corpus with its numbers changed).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { createClassifier, EMPTY_FUNCTION_CATALOG } from '../../../src/router/classifier.ts';
import { literalShape, sameLiteralShapeBytes } from '../../../src/router/literal-shape.ts';
import { CORPUS } from './classifier-corpus.ts';

test('numeric literals of every form become one placeholder', () => {
  assert.equal(literalShape('SELECT abalance FROM pgbench_accounts WHERE aid = 48213;'), 'SELECT abalance FROM pgbench_accounts WHERE aid = ?;');
  assert.equal(literalShape('UPDATE t SET a = a + -2113 WHERE id IN (1, 22, 333)'), 'UPDATE t SET a = a + -? WHERE id IN (?, ?, ?)');
  assert.equal(literalShape('select 1.5, .5, 1e10, 2.5E-3, 1_000, 0x1F, 0o17, 0b101 limit 10'), 'select ?, .?, ?, ?, ?, ?, ?, ? limit ?');
  assert.equal(literalShape('select * from t1 join t2 on t1.a2 = t2.b2'), null, 'digits inside names are names');
  assert.equal(literalShape('select a from t'), null, 'nothing to replace');
});

test('texts whose strings, comments or run-on numbers matter keep their exact text', () => {
  for (const sql of [
    "select 1 from t where a = 'x'",
    'select "c1" from t where id = 1',
    'select $1::int + 1',
    'select 1 -- route=replica',
    '/* route=primary */ select 1',
    "SET ambassador.min_lsn = '0/16B3748'",
    'select 1into t', // SELECT 1 INTO t: a write, which `select 1 t` is not
    'select 1e', 'select 0xg',
    'select 0x', 'select 0b2f', 'select 0o8', // a radix prefix without a digit of its radix
    'select ?, 2', // its shape would be that of `select 1, 2`
    "select E'\\\\' || 1",
  ]) {
    assert.equal(literalShape(sql), null, sql);
  }
});

test('texts with one shape classify alike (the corpus with its numbers changed)', async () => {
  const fresh = () => createClassifier({ functions: EMPTY_FUNCTION_CATALOG });
  let shaped = 0;
  for (const { sql } of CORPUS) {
    const shape = literalShape(sql);
    if (shape === null) continue;
    shaped++;
    const variant = sql.replace(/(?<![A-Za-z0-9_$\u0080-\uffff])\d+/g, (digits) => String(Number(digits.replaceAll('_', '')) + 7));
    assert.equal(literalShape(variant), shape, variant);
    const judge = async (text: string) => {
      const { route, reason, kind, statements } = (await fresh()).classify(text);
      return { route, reason, kind, statements };
    };
    assert.deepEqual(await judge(variant), await judge(sql), `${sql} / ${variant}`);
  }
  assert.ok(shaped >= 20, `only ${shaped} corpus texts have numbers to replace`);
});

test('the classifier shares one entry between texts of one shape, and a learned write covers its shape', async () => {
  const classifier = await createClassifier({ functions: EMPTY_FUNCTION_CATALOG });
  for (let id = 0; id < 100; id++) assert.equal(classifier.classify(`SELECT abalance FROM pgbench_accounts WHERE aid = ${id}`).route, 'read');
  assert.deepEqual({ ...classifier.stats(), cached: undefined }, { hits: 99, misses: 1, parseErrors: 0, tooLarge: 0, cached: undefined, learned: 0 });
  classifier.learnWrite('SELECT refresh_totals(7)');
  assert.equal(classifier.classify('SELECT refresh_totals(8)').reason, 'learned-write');
  assert.equal(classifier.classify('SELECT refresh_totals(7)').reason, 'learned-write');
});

test('sameLiteralShapeBytes tells a text of the same shape without making one', () => {
  const shaped = 'SELECT abalance FROM pgbench_accounts WHERE aid = 48213;';
  const sameLiteralShape = (a: string, b: string) => sameLiteralShapeBytes(Buffer.from(a), 0, a.length, Buffer.from(b), 0, b.length);
  for (const text of ['SELECT abalance FROM pgbench_accounts WHERE aid = 7;', 'SELECT abalance FROM pgbench_accounts WHERE aid = 1.5e3;', 'SELECT abalance FROM pgbench_accounts WHERE aid = 0x1F;']) {
    assert.equal(sameLiteralShape(shaped, text), true, text);
    assert.equal(literalShape(text), literalShape(shaped), text);
  }
  for (const text of [
    'SELECT abalance FROM pgbench_accounts WHERE aid = 7',
    'SELECT abalance FROM pgbench_accounts WHERE aid = 7; ',
    'SELECT abalance FROM pgbench_accounts WHERE aid = x;',
    "SELECT abalance FROM pgbench_accounts WHERE aid = '7';",
    'SELECT abalance FROM pgbench_accounts WHERE aid = 7a;', // runs into a word: the exact text is its key
    'select abalance FROM pgbench_accounts WHERE aid = 7;',
  ]) {
    assert.equal(sameLiteralShape(shaped, text), false, text);
    assert.notEqual(literalShape(text), literalShape(shaped), text);
  }
  // Bytes in a larger chunk: what lies before the text is not the text's (a digit opening it starts a number).
  const kept = Buffer.from('Qa15 + x');
  assert.equal(sameLiteralShapeBytes(kept, 3, kept.length, Buffer.from('Q\u00007 + x1'), 2, 7), true);
  assert.equal(sameLiteralShapeBytes(kept, 3, kept.length, Buffer.from('Q\u00007 + y1'), 2, 7), false);
  // A digit inside a name is the name's: it must be the same digit.
  assert.equal(sameLiteralShape('select a1 from t where b = 2', 'select a1 from t where b = 3'), true);
  assert.equal(sameLiteralShape('select a1 from t where b = 2', 'select a2 from t where b = 2'), false);
});

test('texts of one shape classify as a fresh classifier would, and no shape is a text', async () => {
  const fresh = () => createClassifier({ functions: EMPTY_FUNCTION_CATALOG });
  const classifier = await fresh();
  const pgbench = (aid: number) => `SELECT abalance FROM pgbench_accounts WHERE aid = ${aid};`;
  assert.equal(classifier.classify(pgbench(1)).route, 'read');
  for (const text of [pgbench(2), pgbench(3), 'SELECT abalance FROM pgbench_accounts WHERE aid = 3x;', 'update t set a = 2 where id = 4', 'update t set a = 3 where id = 4']) {
    assert.deepEqual(classifier.classify(text), (await fresh()).classify(text), text);
  }
  // `select ?` is a syntax error, whatever `select 1` (its shape's text) is; so is `select ?, 2`.
  assert.equal(classifier.classify('select 1').route, 'read');
  assert.equal(classifier.classify('select ?').reason, 'parse-error');
  assert.equal(classifier.classify('select 1, 2').route, 'read');
  assert.equal(classifier.classify('select now()').route, 'read');
  assert.equal(classifier.classify('select ?, 2').reason, 'parse-error');
  // A learned write is not answered with the read before it, by the last text or by its shape.
  assert.equal(classifier.classify('select * from orders where id = 1').route, 'read');
  classifier.learnWrite('select * from orders where id = 5');
  assert.equal(classifier.classify('select * from orders where id = 2').reason, 'learned-write');
  assert.equal(classifier.classify('select * from orders where id = 3').reason, 'learned-write');
});

test('a simple Query is classified from its bytes as its text is, and never from another text', async () => {
  const fresh = () => createClassifier({ functions: EMPTY_FUNCTION_CATALOG });
  const classifier = await fresh();
  // As a client's chunk holds it: a Query message, and bytes after it (an exponent, if read).
  const ascii = (sql: string) => classifier.classifyAsciiQuery(Buffer.from(`Q\0\0\0\0${sql}e5`), 5, 5 + sql.length);
  for (const sql of ['select * from orders where id = 1', 'select * from orders where id = 2', 'select * from orders where id = 2a', 'select now()', 'select now()', 'update orders set n = 1 where id = 2', 'update orders set n = 5 where id = 2']) {
    assert.deepEqual(ascii(sql), (await fresh()).classify(sql), sql);
  }
  assert.equal(ascii('select * from orders where id = 1').route, 'read');
  // The last text came as a string: the bytes of the one before say nothing any more.
  assert.equal(classifier.classify('delete from orders where id = 9').route, 'write');
  assert.equal(ascii('select * from orders where id = 2').route, 'read');
  classifier.learnWrite('select * from orders where id = 7');
  assert.equal(ascii('select * from orders where id = 3').reason, 'learned-write');
});
