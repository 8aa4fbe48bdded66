import assert from 'node:assert/strict';
import { test } from 'node:test';

import { decodeUnicodeEscapes, splitStatements, tokenize, truncateIdentifier, type Token } from '../../../src/router/sql-lexer.ts';
import { CORPUS } from './session-effects-corpus.ts';

const significant = (sql: string): Array<[Token['kind'], string]> =>
  tokenize(sql)
    .filter((token) => token.kind !== 'whitespace')
    .map((token) => [token.kind, token.text]);

const only = (sql: string): Token => {
  const tokens = tokenize(sql);
  assert.equal(tokens.length, 1, `${JSON.stringify(sql)} gave ${tokens.length} tokens`);
  return tokens[0]!;
};

test('every token kind', () => {
  const sql = "select \"Q\"\"x\", 'a''b', B'01', $t$body$t$, 1.5e3, $1, a <= b; -- c\n/* d */ \\";
  assert.deepEqual(significant(sql), [
    ['identifier', 'select'],
    ['quoted-identifier', '"Q""x"'],
    ['punctuation', ','],
    ['string', "'a''b'"],
    ['punctuation', ','],
    ['bit-string', "B'01'"],
    ['punctuation', ','],
    ['dollar-string', '$t$body$t$'],
    ['punctuation', ','],
    ['number', '1.5e3'],
    ['punctuation', ','],
    ['parameter', '$1'],
    ['punctuation', ','],
    ['identifier', 'a'],
    ['operator', '<='],
    ['identifier', 'b'],
    ['semicolon', ';'],
    ['comment', '-- c'],
    ['comment', '/* d */'],
    ['other', '\\'],
  ]);
  assert.equal(tokenize(' \t\r\n\f')[0]?.kind, 'whitespace');
});

test('identifiers: folded to lower case (ASCII only), $ allowed after the first character', () => {
  assert.deepEqual(only('FooBar').value, 'foobar');
  assert.deepEqual(only('ÄBc').value, 'Äbc');
  assert.deepEqual(only('a$b$c').kind, 'identifier');
  assert.deepEqual(only('_x1').value, '_x1');
  assert.equal(only('"A""b"').value, 'A"b');
  assert.equal(truncateIdentifier('x'.repeat(64)), 'x'.repeat(63));
  assert.equal(truncateIdentifier('€'.repeat(22)), '€'.repeat(21)); // 3 bytes each: 63
  assert.equal(truncateIdentifier('a' + '😀'.repeat(16)), 'a' + '😀'.repeat(15)); // never split a character
});

test('strings: standard, E, N, U&, bit, hex', () => {
  assert.equal(only("'it''s'").value, "it's");
  assert.equal(only("E'a\\'b\\nc\\\\'").value, "a'b\nc\\");
  assert.equal(only("e'\\u00e9\\U0001F600'").value, 'é😀');
  assert.equal(only("E'\\101'").value, undefined, 'octal escapes are bytes, not text');
  assert.equal(only("E'\\x41'").value, undefined);
  assert.equal(only("N'abc'").value, 'abc');
  assert.equal(only("U&'d\\0061t\\+000061'").value, 'data');
  assert.equal(only("u&'\\D83D\\DE00'").value, '😀');
  assert.equal(only("U&'\\zz'").value, undefined);
  assert.deepEqual([only("X'1F'").kind, only("b'01'").kind], ['bit-string', 'bit-string']);
  assert.equal(only('U&"d\\0061t"').value, 'dat');
  const tokens = tokenize("U&'d!0061t' UESCAPE '!'");
  assert.equal(tokens[0]?.value, 'dat');
  assert.equal(decodeUnicodeEscapes('a!!b', '!'), 'a!b');
  assert.equal(decodeUnicodeEscapes('x', '+'), undefined, 'invalid escape character');
});

test('a prefix letter only counts at the start of a token', () => {
  assert.deepEqual(significant("xe'a'"), [
    ['identifier', 'xe'],
    ['string', "'a'"],
  ]);
  assert.deepEqual(significant("xu&'a'"), [
    ['identifier', 'xu'],
    ['operator', '&'],
    ['string', "'a'"],
  ]);
});

test('a backslash in a standard string is ambiguous only when it can move the end', () => {
  assert.equal(only("'C:\\dir'").uncertain, undefined);
  assert.equal(only("'C:\\dir'").value, undefined, 'its value depends on standard_conforming_strings');
  assert.equal(tokenize("'a\\' || 'b'")[0]?.uncertain, 'backslash');
  assert.equal(only("'a\\\\'").uncertain, undefined);
});

test('dollar quotes follow the server: tags, $n parameters, no tag after an identifier', () => {
  assert.equal(only('$$a $b$ c$$').value, 'a $b$ c');
  assert.equal(only('$a$ $$ x $$ $a$').value, ' $$ x $$ ');
  assert.equal(only('$a$ $ab$ $b$a$').value, ' $ab$ $b');
  assert.equal(only('$_1$x$_1$').kind, 'dollar-string');
  assert.deepEqual(significant('$1$$x$$'), [
    ['parameter', '$1'],
    ['dollar-string', '$$x$$'],
  ]);
  assert.deepEqual(significant('a$$ b $$ c $$'), [
    ['identifier', 'a$$'],
    ['identifier', 'b'],
    ['dollar-string', '$$ c $$'],
  ]);
  assert.deepEqual(significant('$1x'), [
    ['parameter', '$1'],
    ['identifier', 'x'],
  ]);
  assert.deepEqual(significant('$ab'), [
    ['other', '$'],
    ['identifier', 'ab'],
  ]);
  assert.equal(only('$q$ open').uncertain, 'unterminated');
});

test('comments: line, nested block, and operators cut where a comment starts', () => {
  assert.equal(only('/* a /* b */ c */').kind, 'comment');
  assert.equal(only('/* a /* b */ c').uncertain, 'unterminated');
  assert.deepEqual(significant('1+--c\n2'), [
    ['number', '1'],
    ['operator', '+'],
    ['comment', '--c'],
    ['number', '2'],
  ]);
  assert.deepEqual(significant('a*/*c*/b'), [
    ['identifier', 'a'],
    ['operator', '*'],
    ['comment', '/*c*/'],
    ['identifier', 'b'],
  ]);
  assert.deepEqual(significant('--x\rselect'), [
    ['comment', '--x'],
    ['identifier', 'select'],
  ]);
});

test('operators: trailing + and - split off as in scan.l, unless the operator has ~!@#^&|`?%', () => {
  assert.deepEqual(significant('x=-1'), [
    ['identifier', 'x'],
    ['operator', '='],
    ['operator', '-'],
    ['number', '1'],
  ]);
  assert.deepEqual(significant('a @- b').map(([, text]) => text), ['a', '@-', 'b']);
  assert.deepEqual(significant('a <=> b').map(([, text]) => text), ['a', '<=>', 'b']);
  assert.deepEqual(significant('x::int').map(([, text]) => text), ['x', '::', 'int']);
});

test('numbers', () => {
  for (const number of ['42', '1_000', '3.14', '.5', '5.', '1e10', '1.5E-3', '0x1F', '0o17', '0b101']) {
    assert.deepEqual(significant(number), [['number', number]], number);
  }
  assert.deepEqual(significant('1..10').map(([, text]) => text), ['1', '..', '10']);
});

test('unterminated quotes are flagged, never thrown', () => {
  for (const sql of ["'abc", "E'abc\\'", '"abc', '$$abc', "B'01", "U&'x", '/* x']) {
    const tokens = tokenize(sql);
    assert.equal(tokens.at(-1)?.uncertain, 'unterminated', sql);
    assert.equal(tokens.map((token) => token.text).join(''), sql);
  }
});

function assertRoundTrip(sql: string): void {
  const tokens = tokenize(sql);
  assert.equal(tokens.map((token) => token.text).join(''), sql, 'tokens cover the text');
  tokens.forEach((token, i) => {
    assert.equal(token.start, i === 0 ? 0 : tokens[i - 1]!.end);
    assert.equal(sql.slice(token.start, token.end), token.text);
  });
  const statements = splitStatements(sql);
  let cursor = 0;
  for (const statement of statements) {
    assert.equal(sql.slice(statement.start, statement.end), statement.text);
    assert.equal(statement.tokens.map((token) => token.text).join(''), statement.text);
    const gap = tokenize(sql.slice(cursor, statement.start));
    assert.ok(gap.every((token) => ['whitespace', 'comment', 'semicolon'].includes(token.kind)), `gap before ${statement.text}`);
    cursor = statement.end;
  }
  assert.ok(tokenize(sql.slice(cursor)).every((token) => ['whitespace', 'comment', 'semicolon'].includes(token.kind)));
}

test('splitting then re-joining gives back every statement exactly', () => {
  const sql = "select 1; set x = 'a;b' ;\n/* c; */ select $$;$$ ;select (1;2); listen x";
  const statements = splitStatements(sql);
  assert.deepEqual(
    statements.map((statement) => statement.text),
    ['select 1', " set x = 'a;b' ", "\n/* c; */ select $$;$$ ", 'select (1;2)', ' listen x'],
  );
  assert.equal(statements.map((statement) => statement.text).join(';'), sql);
  assertRoundTrip(sql);
});

test('every corpus text round-trips through tokenize and splitStatements', () => {
  for (const { sql } of CORPUS) assertRoundTrip(sql);
});

test('random texts round-trip and never throw', () => {
  const alphabet = ["'", '"', '$', '$a$', 'E', 'U&', '-', '/', '*', '\\', ';', '(', ')', ' ', '\n', 'a', '1', '.', 'e', ':', '=', 'begin', 'end', 'create function'];
  let seed = 12345;
  const random = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (let round = 0; round < 2000; round++) {
    const sql = Array.from({ length: random(40) }, () => alphabet[random(alphabet.length)]).join('');
    assertRoundTrip(sql);
  }
});

test('BEGIN ATOMIC bodies of CREATE FUNCTION and PROCEDURE are not split, as in psql', () => {
  const body = 'create or replace function f() returns int language sql begin atomic select case when true then 1 end; select 2; end';
  assert.deepEqual(
    splitStatements(`${body}; select 3`).map((statement) => [statement.text.trim(), statement.unbalanced]),
    [
      [body, false],
      ['select 3', false],
    ],
  );
  // Elsewhere BEGIN and END are ordinary statements.
  assert.equal(splitStatements('begin; select 1; end').length, 3);
  assert.equal(splitStatements('create table t (begin int); select 1').length, 2);
  assert.equal(splitStatements('create procedure p() begin atomic select 1;').at(-1)?.unbalanced, true);
});

test('parentheses keep a semicolon inside the statement, as in psql', () => {
  const statements = splitStatements('create rule r as on insert to t do also (insert into a values (1); insert into b values (2)); select 1');
  assert.equal(statements.length, 2);
  assert.equal(statements[0]?.unbalanced, false);
  assert.equal(splitStatements('select (1; select 2').at(-1)?.unbalanced, true);
  assert.equal(splitStatements('select 1); select 2').length, 2);
});
