// Fuzz properties of the SQL side of the router: the lexer and statement splitter
// (src/router/sql-lexer.ts), the classifier and its literal-shape cache key (classifier.ts,
// literal-shape.ts) and the session-effects analysis (session-effects.ts). Inputs are SQL-ish
// texts built from the lexer's hard cases (quotes of every kind, dollar quotes, nested and
// unterminated comments, UESCAPE, operator runs, lone surrogates) and mutated corpus statements.
// None of these may throw, and all run in linear time: a 1 MB text of any repeated piece goes
// through every one of them (no wall-clock assertion: a quadratic path simply never finishes).

import assert from 'node:assert/strict';
import fc from 'fast-check';

import { Classifier, createClassifier, InMemoryFunctionCatalog } from '../../src/router/classifier.ts';
import { readHints } from '../../src/router/classifier-hints.ts';
import { literalShape, sameLiteralShapeBytes } from '../../src/router/literal-shape.ts';
import { analyzeSessionEffects, plainQueryBytes, plainStatement, SessionEffectsCache, type StatementEffects } from '../../src/router/session-effects.ts';
import { isSignificant, splitStatements, tokenize, type Token } from '../../src/router/sql-lexer.ts';
import { CORPUS, CORPUS_FUNCTIONS } from '../unit/router/classifier-corpus.ts';
import { codePoint, fuzzProperty, type FuzzProperty } from './fuzz.ts';

const PIECES = [
  // quotes and their prefixes
  "'", "''", '"', '""', "E'", "e'\\'", "N'", "B'", "X'", "U&'", 'U&"', ' UESCAPE ', "'!'", '\\', '\\u00e9', '\\U0001F600', '\\+01F600',
  '$$', '$a$', '$A$', '$1', '$', '$_$', 'a$b',
  // comments and whitespace
  '--', '/*', '*/', '/* /* */', '\n', '\r', ' ', '\t', '\f', '\v', '/* ambassador:route=replica */', '-- ambassador:retry=off\n', '/*ambassador:route=primary*/',
  // operators and punctuation
  ';', '(', ')', ',', '.', '::', '..', '[', ']', '+', '-', '+-', '-+', '*', '/', '<', '>', '=', '!', '~', '@', '#', '%', '^', '&', '|', '`', '?', ':=',
  // numbers
  '0', '1', '42', '1.5', '.5', '1e3', '1e', '0x1F', '0o17', '0b101', '1_000', '1..2', '08',
  // words the classifier and the session analysis look for
  'select', 'insert', 'update', 'delete', 'into', 'values', 'from', 'where', 'returning', 'for', 'share', 'set', 'reset', 'show', 'begin', 'commit',
  'rollback', 'savepoint', 'release', 'start', 'transaction', 'read', 'only', 'write', 'create', 'or', 'replace', 'function', 'procedure', 'as', 'atomic',
  'end', 'case', 'temp', 'temporary', 'table', 'explain', 'analyze', 'analyse', 'with', 'hold', 'cursor', 'declare', 'close', 'prepare', 'execute',
  'deallocate', 'listen', 'unlisten', 'notify', 'discard', 'all', 'do', 'copy', 'lock', 'fetch', 'move', 'call', 'local', 'session', 'to', 'default',
  'search_path', 'pg_temp', 'transaction_read_only', 'default_transaction_read_only', 'ambassador.route', 'ambassador.retry', 'ambassador.min_lsn',
  'primary', 'replica', 'auto', 'on', 'off', 'nextval', 'set_config', 'pg_advisory_lock', 'pg_advisory_unlock_all', 'add_order', 'price_of', 'send_email',
  // characters past ASCII
  'é', '\u00a0', 'Ä', '😀', '\ud800', '\udc00', '\0', 'ß', 'İ',
];

const piece = fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...PIECES) }, { weight: 1, arbitrary: codePoint }, { weight: 1, arbitrary: fc.stringMatching(/^[a-z_][a-z0-9_]{0,8}$/) });

const joined = fc.array(fc.tuple(piece, fc.constantFrom('', ' ', ' ', '\n')), { maxLength: 40 }).map((parts) => parts.map(([p, gap]) => p + gap).join(''));

const SOURCES = CORPUS.map((entry) => entry.sql);

/** A corpus statement with pieces inserted, removed or cut off. */
const mutatedStatement = fc
  .record({ sql: fc.constantFrom(...SOURCES), edits: fc.array(fc.tuple(fc.nat(), fc.nat({ max: 8 }), piece), { minLength: 1, maxLength: 4 }), truncate: fc.option(fc.nat(), { nil: undefined }) })
  .map(({ sql, edits, truncate }) => {
    let text = sql;
    for (const [at, remove, insert] of edits) {
      const where = at % (text.length + 1);
      text = text.slice(0, where) + insert + text.slice(where + remove);
    }
    return truncate === undefined ? text : text.slice(0, truncate % (text.length + 1));
  });

/** Deep nesting the parser recurses into (kept under the classifier's 16 KB parse limit). */
const NESTINGS: Array<[string, string, string]> = [
  ['select ', '(', ')'], ['select * from ', '(select * from ', ') x'], ['select ', 'case when true then ', ' end'], ['select ', 'array[', ']'],
  ['select ', 'f(', ')'], ['select ', 'not ', ''], ['select ', '- ', ''], ['delete from t where a in ', '(select a from t where a in ', ')'],
];
const deepText = fc
  .record({ nesting: fc.constantFrom(...NESTINGS), depth: fc.oneof(fc.integer({ min: 1, max: 9000 }), fc.constant(9000)), inner: fc.constantFrom('1', 'nextval(1)', '1 for update', '') })
  .map(({ nesting: [head, open, close], depth, inner }) => {
    const levels = Math.min(depth, Math.floor((16 * 1024 - head.length - inner.length) / (open.length + close.length)));
    return head + open.repeat(levels) + inner + close.repeat(levels);
  });

export const sqlText: fc.Arbitrary<string> = fc.oneof(
  { weight: 5, arbitrary: joined },
  { weight: 5, arbitrary: mutatedStatement },
  { weight: 3, arbitrary: fc.constantFrom(...SOURCES) },
  { weight: 2, arbitrary: fc.string({ unit: codePoint, maxLength: 40 }) },
  { weight: 1, arbitrary: deepText },
);

// ---------------------------------------------------------------------------------------------
// Lexer

/** Tokens cover the text exactly, in order, each non-empty; identifier values fit NAMEDATALEN. */
function checkTokens(sql: string, tokens: readonly Token[]): void {
  let pos = 0;
  for (const token of tokens) {
    assert.equal(token.start, pos, 'tokens are contiguous');
    assert.ok(token.end > token.start, 'tokens are not empty');
    assert.equal(token.text, sql.slice(token.start, token.end));
    if (token.uncertain === 'unterminated') assert.equal(token.end, sql.length, 'an unterminated token runs to the end');
    if (token.kind === 'identifier') assert.ok(Buffer.byteLength(token.value!, 'utf8') <= 63, 'identifier values are truncated to 63 bytes');
    pos = token.end;
  }
  assert.equal(pos, sql.length, 'tokens reach the end of the text');
}

/** Statements are in order, disjoint, made of their tokens; what lies between them is not significant. */
function checkStatements(sql: string, tokens: readonly Token[]): void {
  const statements = splitStatements(sql, [...tokens]);
  let last = 0;
  const inside = new Set<number>();
  for (const statement of statements) {
    assert.ok(statement.start >= last, 'statements are in order and do not overlap');
    assert.equal(statement.text, sql.slice(statement.start, statement.end));
    assert.equal(statement.tokens.map((token) => token.text).join(''), statement.text);
    assert.ok(statement.tokens.some(isSignificant), 'a statement has a significant token');
    for (const token of statement.tokens) inside.add(token.start);
    last = statement.end;
  }
  for (const token of tokens) {
    if (!inside.has(token.start)) assert.ok(!isSignificant(token) || token.kind === 'semicolon', `"${token.text}" is outside every statement`);
  }
}

const OPERATOR_CHARS = '~!@#^&|`?+-*/%<>=';

/**
 * scan.l's operator rule as written, rescanning after every cut (quadratic, fine for short
 * texts): the longest run of operator characters not containing `--` or `/*`, with trailing + and
 * - given back when nothing in the rest of it is one of ~!@#^&|`?%.
 */
function referenceOperators(run: string): string[] {
  const out: string[] = [];
  for (let pos = 0; pos < run.length; ) {
    let end = pos + 1;
    while (end < run.length && !run.startsWith('--', end) && !run.startsWith('/*', end)) end++;
    if (end - pos > 1 && /[+-]$/.test(run.slice(pos, end)) && !/[~!@#^&|`?%]/.test(run.slice(pos, end - 1))) {
      do end--;
      while (end - pos > 1 && /[+-]/.test(run[end - 1]!));
    }
    out.push(run.slice(pos, end));
    pos = end;
  }
  return out;
}

const operatorRuns = fuzzProperty(
  'sql-lexer',
  'operator-runs-split-as-scan-l-does',
  300,
  fc.string({ unit: fc.constantFrom(...OPERATOR_CHARS, '+', '-', '+', '-'), minLength: 1, maxLength: 40 }).filter((run) => !run.startsWith('--') && !run.startsWith('/*')),
  (run) => {
    // Between two letters, so the run is one operator run (a `--` or `/*` inside cuts it as scan.l does).
    const tokens = tokenize(`a${run}b`).slice(1, -1);
    const end = Math.min(...['--', '/*'].map((cut) => (run.indexOf(cut, 1) < 0 ? run.length : run.indexOf(cut, 1))));
    const operators = tokens.filter((token) => token.start <= end).map((token) => token.text);
    assert.deepEqual(operators, referenceOperators(run.slice(0, end)));
  },
);

const lexerCovers = fuzzProperty('sql-lexer', 'tokens-and-statements-cover-the-text', 400, sqlText, (sql) => {
  const tokens = tokenize(sql);
  checkTokens(sql, tokens);
  checkStatements(sql, tokens);
});

/** Hints as the lexer sees the text: from the comment tokens before the first significant token. */
function lexerHints(sql: string): ReturnType<typeof readHints> {
  const comments: string[] = [];
  for (const token of tokenize(sql)) {
    if (isSignificant(token)) break;
    if (token.kind === 'comment') comments.push(token.text);
  }
  return readHints(comments.join('\n'));
}

const hintsAreLeading = fuzzProperty(
  'classifier-hints',
  'hints-come-from-the-comments-the-lexer-sees-first',
  300,
  fc.oneof(sqlText, fc.array(fc.constantFrom('-- a', '-- ambassador:route=replica', '/* ambassador:route=primary */', '/* /* */ */', '\n', '\r', '\r\n', ' ', 'select 1', '-- ambassador:retry=off', '*/'), { maxLength: 8 }).map((parts) => parts.join(''))),
  (sql) => assert.deepEqual(readHints(sql), lexerHints(sql)),
);

// ---------------------------------------------------------------------------------------------
// Literal shape and the classifier

const literalShapeProperty = fuzzProperty('literal-shape', 'shape-leaves-no-number-and-keeps-the-rest', 300, sqlText, (sql) => {
  const shape = literalShape(sql);
  if (shape === null) return;
  assert.ok(!/['"$\\]|--|\/\*/.test(sql), 'a text the lexer must read keeps its exact text');
  assert.equal(literalShape(shape), null, 'a shape has no number left to replace');
  // Only digits (and what continues a number) were replaced: the rest is the text's.
  const kept = shape.split('?');
  let at = 0;
  for (const part of kept) {
    const found = sql.indexOf(part, at);
    assert.ok(found >= at, `"${part}" comes from the text`);
    at = found + part.length;
  }
});

/** Numbers in ways the parser reads differently: 0 and 1 (booleans), signs, fractions, radixes. */
const NUMBERS = ['0', '1', '2', '42', '0.0', '1.5', '1e3', '0x10', '00', '1_000', '2147483648'];
const NUMBER = /(?<![A-Za-z0-9_$.\u0080-\uffff])[0-9]+(?:\.[0-9]+)?(?![A-Za-z0-9_$.\u0080-\uffff])/g;

const BOOLEAN_TEMPLATES = [
  'SET transaction_read_only = 1', 'SET transaction_read_only TO 0', 'SET default_transaction_read_only = 1', 'SET SESSION default_transaction_read_only = 0',
  'SET ambassador.retry = 1', 'SET LOCAL ambassador.retry TO 0', 'EXPLAIN (ANALYZE 1) DELETE FROM t WHERE id = 5', 'EXPLAIN (ANALYSE 0, VERBOSE 1) UPDATE t SET a = 1',
  'BEGIN; SET transaction_read_only = 0; SELECT 1; COMMIT', 'SELECT 1; SET ambassador.retry = 0', 'select * from t limit 5 offset 10',
];

/** Corpus texts with a shape (numbers, nothing only the lexer reads), and the boolean cases (which must keep their text). */
const SHAPED = [...SOURCES.filter((sql) => literalShape(sql) !== null), ...BOOLEAN_TEMPLATES];

const numberVariants = fc.record({
  sql: fc.constantFrom(...SHAPED),
  first: fc.array(fc.constantFrom(...NUMBERS), { minLength: 1, maxLength: 8 }),
  second: fc.array(fc.constantFrom(...NUMBERS), { minLength: 1, maxLength: 8 }),
});

function withNumbers(sql: string, numbers: readonly string[]): string {
  let i = 0;
  return sql.replace(NUMBER, () => numbers[i++ % numbers.length]!);
}

/**
 * A text with a literal shape and another to compare it with: the same with other numbers, the
 * same with any of its digits changed (names' digits too), the same with pieces written over it
 * (a number turned into a word, a quote, a comment), or any text.
 */
const shapePairs: fc.Arbitrary<[string, string]> = fc.oneof(
  numberVariants.map(({ sql, first, second }): [string, string] => [withNumbers(sql, first), withNumbers(sql, second)]),
  fc.tuple(numberVariants, fc.array(fc.tuple(fc.nat(), fc.nat({ max: 3 }), piece), { minLength: 1, maxLength: 3 })).map(([{ sql, first, second }, edits]): [string, string] => {
    let text = withNumbers(sql, second);
    for (const [at, remove, insert] of edits) {
      const where = at % (text.length + 1);
      text = text.slice(0, where) + insert + text.slice(where + remove);
    }
    return [withNumbers(sql, first), text];
  }),
  fc.tuple(numberVariants, fc.array(fc.constantFrom(...'0123456789x'), { minLength: 1, maxLength: 12 })).map(([{ sql, first }, digits]): [string, string] => {
    const shaped = withNumbers(sql, first);
    let n = 0;
    return [shaped, shaped.replace(/[0-9]/g, (digit) => (n++ % 3 === 0 ? digits[n % digits.length]! : digit))];
  }),
  fc.tuple(sqlText, sqlText),
);

const sameShapeProperty = fuzzProperty('literal-shape', 'same-shape-walk-agrees-with-the-shapes', 500, shapePairs, ([shaped, text]) => {
  const shape = literalShape(shaped);
  // ASCII texts, as plain simple Queries are (the walk's only use).
  fc.pre(shape !== null && !/[^\0-\x7f]/.test(shaped + text));
  // Each in a client's chunk, between bytes that would change the answer if read (a number's
  // fraction, exponent, radix or digit group).
  const around = Buffer.from(`Q\0${text}${['.5', 'e5', 'x1', '_1', '9x'][text.length % 5]!}`);
  const kept = Buffer.from(`a1${shaped}0x1`);
  assert.equal(sameLiteralShapeBytes(kept, 2, 2 + shaped.length, around, 2, 2 + text.length), literalShape(text) === shape, `"${shaped}" / "${text}"`);
});

/** Transaction effects that neither read nor write by themselves (classifier.ts). */
const NEUTRAL = new Set(['commit', 'rollback', 'savepoint', 'release', 'rollback-to', 'follow']);

const FUNCTIONS = { functions: new InMemoryFunctionCatalog({ volatile: CORPUS_FUNCTIONS.volatile, readOnly: CORPUS_FUNCTIONS.readOnly }), allow: CORPUS_FUNCTIONS.allow, deny: CORPUS_FUNCTIONS.deny };

function sqlProperties(classifier: Classifier, fresh: () => Classifier): FuzzProperty[] {
  let sentinel = 0;
  const classifiesAnything = fuzzProperty('classifier', 'classifies-anything-and-stays-sane', 300, sqlText, (sql) => {
    const first = classifier.classify(sql);
    assert.ok(first.route === 'read' || first.route === 'write');
    assert.ok(typeof first.reason === 'string' && first.reason.length > 0);
    assert.ok(Number.isInteger(first.statements) && first.statements >= 0);
    if (first.parts) assert.equal(first.parts.length, first.statements);
    if (first.route === 'read') assert.ok(first.reason !== 'parse-error' && first.reason !== 'too-large');
    assert.deepEqual(fresh().classify(sql), first, 'a cached classification is the one a fresh classifier gives');
    // Whatever the parser went through, it still parses a text it has not seen (no cache hit):
    // a stack overflow inside the WASM parser can leave it broken for good.
    sentinel += 1;
    assert.equal(classifier.classify(`select ${sentinel} from fuzz_sentinel_${sentinel}`).reason, 'select', 'the parser still parses');
  });

  // Texts of one shape share a cache entry, so they must classify alike. One difference is
  // allowed: a number where the grammar wants an integer (`FETCH 1e3`, `varchar(1.5)`) makes a
  // parse error, which fails on every server alike; even then a true write never reads.
  const shapeIsSound = fuzzProperty('classifier', 'texts-of-one-shape-classify-alike', 300, numberVariants, ({ sql, first, second }) => {
    const before = withNumbers(sql, first);
    const after = withNumbers(sql, second);
    const shape = literalShape(after);
    fc.pre(shape !== null && literalShape(before) === shape);
    const cached = fresh();
    cached.classify(before);
    const shared = cached.classify(after);
    const own = fresh().classify(after);
    const why = `"${before}" then "${after}" share the cache key ${JSON.stringify(shape)}`;
    if (own.reason !== 'parse-error' && fresh().classify(before).reason !== 'parse-error') assert.deepEqual(shared, own, why);
    else if (own.route === 'write' && own.reason !== 'parse-error') assert.equal(shared.route, 'write', why);
  });

  const effectsTotal = fuzzProperty('session-effects', 'analysis-is-total-and-the-fast-path-agrees', 300, sqlText, (sql) => {
    const analysis = analyzeSessionEffects(sql);
    assert.equal(analysis.statements, splitStatements(sql).length);
    if (analysis.uncertain) assert.ok(analysis.effects.some((e) => e.kind === 'pin' && e.reason === 'session-state'), 'an uncertain text pins');
    if (plainStatement(sql) !== null) assert.deepEqual(analysis, { effects: [], statements: 1, uncertain: false }, 'the fast path answers what the analysis does');
    // The byte path of a simple Query (no string made) is never plainer than plainStatement.
    const bytes = Buffer.from(sql);
    if (plainQueryBytes(bytes, 0, bytes.length)) assert.notEqual(plainStatement(sql), null, 'plainQueryBytes takes only what plainStatement takes');
    assert.deepEqual(new SessionEffectsCache().get(sql), analysis);
  });

  // A write anywhere makes the whole text a write (transaction control and cursor moves aside,
  // and hints, which only count in the comments that open the text).
  const writeAnywhere = fuzzProperty('classifier', 'a-write-in-any-statement-writes', 300, fc.array(fc.constantFrom(...SOURCES), { minLength: 2, maxLength: 4 }), (parts) => {
    const combined = fresh().classify(parts.join('\n;\n'));
    for (const part of parts) {
      const alone = fresh().classify(part);
      if (alone.route === 'write' && alone.reason !== 'hint' && !NEUTRAL.has(alone.transaction ?? '') && alone.statements > 0) {
        assert.equal(combined.route, 'write', `"${part}" writes (${alone.reason}), so its text does`);
      }
    }
  });

  // Statements are analysed one by one: two texts joined with `;` have the effects of both.
  const effectsCompose = fuzzProperty('session-effects', 'joined-texts-have-the-effects-of-both', 300, fc.tuple(sqlText, sqlText), ([first, second]) => {
    const [a, b] = [analyzeSessionEffects(first), analyzeSessionEffects(second)];
    fc.pre(!a.uncertain && !b.uncertain);
    const joined = analyzeSessionEffects(`${first}\n;\n${second}`);
    const seen = new Set<string>();
    const effects = [...a.effects, ...b.effects].filter((effect) => effect.kind !== 'pin' || (!seen.has(effect.reason) && Boolean(seen.add(effect.reason))));
    const expected: StatementEffects = { effects, statements: a.statements + b.statements, uncertain: false };
    // Bare directive values are quoted in place, wherever they are.
    if (a.quoted !== undefined || b.quoted !== undefined) expected.quoted = `${a.quoted ?? first}\n;\n${b.quoted ?? second}`;
    assert.deepEqual(joined, expected);
  });

  return [lexerCovers, operatorRuns, hintsAreLeading, literalShapeProperty, sameShapeProperty, classifiesAnything, shapeIsSound, writeAnywhere, effectsTotal, effectsCompose, megabyte(classifier)];
}

// ---------------------------------------------------------------------------------------------
// 1 MB texts

const MEGABYTE = 1 << 20;
const HARD_UNITS = [
  '+-', '-+', '*+-', '/**/', '/*', '--\n', "'", "E'\\", '$a$', '$$x', '(', ')', ';', 'select 1, ', "U&'a' UESCAPE '!' ", 'U&"a" ', '$1',
  'set a = 1;', 'begin ', 'case ', 'create function f() begin atomic ', '/* ambassador:route=replica ', 'ambassador:route', ' ', 'é', '1', 'a1',
  "select set_config('a','b',false); ", 'SET search_path = a, b, ', 'declare c cursor with hold for select 1; ',
];

function megabyte(classifier: Classifier): FuzzProperty {
  return fuzzProperty('sql', 'one-megabyte-texts-finish', 2, fc.oneof(fc.constantFrom(...HARD_UNITS), sqlText.filter((t) => t.length > 0)), (unit) => {
    const sql = unit.repeat(Math.ceil(MEGABYTE / unit.length));
    const classification = classifier.classify(sql);
    assert.equal(classification.route, 'write', 'a text over the parse limit goes to the primary');
    readHints(sql);
    literalShape(sql);
    const tokens = tokenize(sql);
    assert.equal(tokens.at(-1)!.end, sql.length);
    analyzeSessionEffects(sql);
  });
}

/** Loads the parser (WASM) once, then builds the properties around one shared classifier. */
export async function loadSqlProperties(): Promise<FuzzProperty[]> {
  const classifier = await createClassifier(FUNCTIONS);
  const fresh = (): Classifier => new Classifier(FUNCTIONS);
  return sqlProperties(classifier, fresh);
}
