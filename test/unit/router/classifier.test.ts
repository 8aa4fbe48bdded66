// Classifier: the corpus (every entry's route, and reason / flags where given) with an in-memory
// catalog and with the same catalog as pg_proc rows, the "zero writes routed to read" safety
// property, caching, hints, directives and the function policy.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  catalogFromRows,
  Classifier,
  createClassifier,
  describeClassification,
  EMPTY_FUNCTION_CATALOG,
  InMemoryFunctionCatalog,
  type Classification,
  type FunctionCatalog,
} from '../../../src/router/classifier.ts';
import { judgeFunction, functionPolicy } from '../../../src/router/classifier-functions.ts';
import { CORPUS, CORPUS_FUNCTIONS, CORPUS_PROC_ROWS, LEARNED_WRITES, type CorpusEntry } from './classifier-corpus.ts';
import { pg15VolatileRows } from './classifier-pg-proc.ts';

const catalog = new InMemoryFunctionCatalog({ volatile: CORPUS_FUNCTIONS.volatile, readOnly: CORPUS_FUNCTIONS.readOnly });
const procCatalog = catalogFromRows([...CORPUS_PROC_ROWS, ...pg15VolatileRows()]);
const classifier = corpusClassifier(await createClassifier({ functions: catalog, allow: CORPUS_FUNCTIONS.allow, deny: CORPUS_FUNCTIONS.deny }));

/** A classifier over `functions` with the corpus's allow/deny lists and learned writes. */
function corpusClassifier(existing?: Classifier, functions: FunctionCatalog = catalog): Classifier {
  const built = existing ?? new Classifier({ functions, allow: CORPUS_FUNCTIONS.allow, deny: CORPUS_FUNCTIONS.deny });
  for (const sql of LEARNED_WRITES) built.learnWrite(sql);
  return built;
}

function label(sql: string): string {
  return JSON.stringify(sql.length > 100 ? `${sql.slice(0, 100)}... (${sql.length} chars)` : sql);
}

function checkEntry(entry: CorpusEntry, result: Classification): void {
  assert.equal(result.route, entry.route, `route (${describeClassification(result)})`);
  if (entry.reason !== undefined) assert.equal(result.reason, entry.reason, 'reason');
  if ('transaction' in entry) assert.equal(result.transaction, entry.transaction, 'transaction');
  if ('hint' in entry) assert.equal(result.hint, entry.hint, 'hint');
  if ('retry' in entry) assert.equal(result.retry, entry.retry, 'retry');
  if ('directive' in entry) assert.deepEqual(result.directive, entry.directive, 'directive');
  if (entry.statements !== undefined) assert.equal(result.statements, entry.statements, 'statements');
  if (entry.kind !== undefined) assert.equal(result.kind, entry.kind, 'kind');
}

/** The entries whose classification differs from what the corpus expects, one line each. */
function mismatches(local: Classifier): string[] {
  return CORPUS.flatMap((entry) => {
    const result = local.classify(entry.sql);
    try {
      checkEntry(entry, result);
      return [];
    } catch (error) {
      return [`${label(entry.sql)}: ${(error as Error).message}`];
    }
  });
}

test('the corpus is large, has no duplicates and covers both routes', () => {
  assert.ok(CORPUS.length >= 300, `only ${CORPUS.length} entries`);
  assert.equal(new Set(CORPUS.map((entry) => entry.sql)).size, CORPUS.length, 'duplicate SQL in the corpus');
  assert.ok(CORPUS.filter((entry) => entry.route === 'read').length >= 100);
  assert.ok(CORPUS.filter((entry) => entry.route === 'write').length >= 150);
});

for (const entry of CORPUS) {
  test(`${entry.route}: ${label(entry.sql)}`, () => {
    checkEntry(entry, classifier.classify(entry.sql));
  });
}

test('the corpus passes with the catalog loaded from pg_proc rows (corpus functions + PostgreSQL 15 built-ins)', () => {
  assert.deepEqual(mismatches(corpusClassifier(undefined, procCatalog)), []);
});

test('zero writes routed to read: every write of the corpus classifies as write, fresh and cached, with either catalog', () => {
  for (const [name, functions] of [['in-memory', catalog], ['pg_proc rows', procCatalog]] as const) {
    const fresh = corpusClassifier(undefined, functions);
    for (const pass of ['fresh', 'cached']) {
      const leaked = CORPUS.filter((entry) => entry.route === 'write' && fresh.classify(entry.sql).route !== 'write');
      assert.deepEqual(leaked.map((entry) => entry.sql), [], `${name}, ${pass}: writes routed to read`);
    }
  }
});

test('without a catalog every user function is a write, built-in reads stay reads', () => {
  const bare = new Classifier({ functions: EMPTY_FUNCTION_CATALOG });
  assert.equal(bare.classify('select add_order(1)').reason, 'unknown-function:add_order');
  assert.equal(bare.classify('select price_of(1)').route, 'write');
  assert.equal(bare.classify('select my_safe_volatile()').route, 'write');
  assert.equal(bare.classify('select count(*), lower(a), now(), random() from t').route, 'read');
});

test('same text is served from the cache; different text (even whitespace) is not', () => {
  const local = new Classifier({ functions: catalog });
  const first = local.classify('select * from t where id = $1');
  assert.deepEqual(local.stats(), { hits: 0, misses: 1, parseErrors: 0, tooLarge: 0, cached: 1, learned: 0 });
  assert.equal(local.classify('select * from t where id = $1'), first, 'same frozen object');
  assert.equal(local.classify('select * from t where id = $1 '), local.classify('select * from t where id = $1 '));
  assert.deepEqual(local.stats(), { hits: 2, misses: 2, parseErrors: 0, tooLarge: 0, cached: 2, learned: 0 });
  assert.ok(Object.isFrozen(first));
});

test('an unquoted SET ambassador.route = primary is a directive, not a parse error', () => {
  const local = new Classifier({ functions: catalog });
  assert.deepEqual(local.classify('SET ambassador.route = primary'), {
    route: 'write', reason: 'directive', kind: 'directive', statements: 1, directive: { route: 'primary' },
  });
  assert.deepEqual(local.classify('set ambassador.route = primary'), local.classify("set ambassador.route = 'primary'"));
  assert.equal(local.classify('select primary').reason, 'parse-error');
  assert.equal(local.stats().parseErrors, 1);
});

test('parse errors are counted and cached; oversize texts are counted and never cached', () => {
  const local = new Classifier({ functions: catalog, maxParseBytes: 32 });
  local.classify('selec 1');
  local.classify('selec 1');
  const big = `select ${'1,'.repeat(20)}1`;
  assert.equal(local.classify(big).reason, 'too-large');
  assert.equal(local.classify(big).reason, 'too-large');
  assert.deepEqual(local.stats(), { hits: 1, misses: 3, parseErrors: 1, tooLarge: 2, cached: 1, learned: 0 });
});

test('the size cap counts UTF-8 bytes, not characters', () => {
  const local = new Classifier({ functions: catalog, maxParseBytes: 40 });
  assert.equal(local.classify(`select '${'a'.repeat(25)}'`).route, 'read');
  assert.equal(local.classify(`select '${'é'.repeat(25)}'`).reason, 'too-large');
});

test('the cache keeps recently used entries, drops old unused ones, and stays within its size', () => {
  const local = new Classifier({ functions: catalog, cacheEntries: 4 });
  for (let round = 0; round < 10; round += 1) {
    local.classify('select c0'); // used every round: always a hit after the first
    local.classify(`select c${round + 1}`);
    assert.ok(local.stats().cached <= 4, `holds ${local.stats().cached}`);
  }
  assert.equal(local.stats().hits, 9);
  local.classify('select c1'); // long unused: dropped
  assert.equal(local.stats().hits, 9);
});

test('the cache also respects its character budget', () => {
  const local = new Classifier({ functions: catalog, cacheChars: 40 });
  for (let index = 0; index < 10; index += 1) local.classify(`select c111111${index}`);
  assert.ok(local.stats().cached <= 3, `holds ${local.stats().cached}`);
  local.classify(`select c${'1'.repeat(30)}`); // longer than half the budget: never cached
  local.classify(`select c${'1'.repeat(30)}`);
  assert.equal(local.stats().hits, 0);
});

test('SET ambassador.retry takes a boolean; RESET turns retries back on; anything else is invalid', () => {
  const local = new Classifier({ functions: catalog });
  for (const [sql, retry] of [
    ['SET ambassador.retry = off', false],
    ["set ambassador.retry to 'false'", false],
    ['SET ambassador.retry = on', true],
    ['set ambassador.retry = true', true],
    ['RESET ambassador.retry', true],
  ] as const) {
    assert.deepEqual(local.classify(sql).directive, { retry }, sql);
    assert.equal(local.classify(sql).kind, 'directive', sql);
  }
  assert.equal(local.classify('SET ambassador.retry = sometimes').reason, 'invalid-directive');
  assert.equal(describeClassification(local.classify('set ambassador.retry = off')), 'write reason=directive kind=directive statements=1 directive.retry=off');
});

test('describeClassification prints one line with every field that is set', () => {
  const line = describeClassification(classifier.classify('/* ambassador:route=primary ambassador:retry=off */ begin; select 1'));
  assert.equal(line, 'write reason=multi-statement-write kind=query statements=2 parts=transaction-control,select transaction=begin hint=primary retry=off');
  assert.equal(describeClassification(classifier.classify("set ambassador.min_lsn = '0/16B3748'")), 'write reason=directive kind=directive statements=1 directive.min_lsn=0/16B3748');
  assert.ok(!describeClassification(classifier.classify('select 1')).includes('\n'));
});

test('function policy: deny beats allow and the catalog; allow beats the catalog; schema-qualified lists', () => {
  const policy = functionPolicy(new InMemoryFunctionCatalog({ volatile: ['f', 'g', 'app.h'] }), ['f', 'nextval', 'app.h'], ['f']);
  assert.deepEqual(judgeFunction(policy, 'f'), { writes: true, reason: 'writing-function:f' });
  assert.deepEqual(judgeFunction(policy, 'nextval'), { writes: true, reason: 'writing-function:nextval' });
  assert.deepEqual(judgeFunction(policy, 'g'), { writes: true, reason: 'volatile-function:g' });
  assert.deepEqual(judgeFunction(policy, 'h', 'app'), { writes: false });
  assert.deepEqual(judgeFunction(policy, 'h', 'other'), { writes: true, reason: 'unknown-function:h' });
  assert.deepEqual(judgeFunction(policy, 'random', 'app'), { writes: true, reason: 'unknown-function:random' });
});

test('the in-memory catalog answers by name or schema.name', () => {
  const local = new InMemoryFunctionCatalog({ volatile: ['a', 's.b'], readOnly: ['c'] });
  assert.equal(local.isWriting('a'), 'write');
  assert.equal(local.isWriting('a', 'any'), 'write');
  assert.equal(local.isWriting('b'), 'unknown');
  assert.equal(local.isWriting('b', 's'), 'write');
  assert.equal(local.isWriting('c'), 'read');
  assert.equal(local.isWriting('d'), 'unknown');
});

test('a catalog verdict is asked with the schema the statement names', () => {
  const asked: Array<[string, string | undefined]> = [];
  const spy = new Classifier({ functions: { isWriting: (name, schema) => (asked.push([name, schema]), 'read') } });
  assert.equal(spy.classify('select app.report(1), plain(2)').route, 'read');
  assert.deepEqual(asked, [['report', 'app'], ['plain', undefined]]);
});
