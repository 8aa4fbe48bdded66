// Learned writes: a text a replica refused (SQLSTATE 25006) stays a write whatever the parser
// says, keeps the other fields of its classification, survives cache eviction and setCatalog(),
// and the set of learned texts is bounded (oldest forgotten first).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Classifier, createClassifier, EMPTY_FUNCTION_CATALOG, InMemoryFunctionCatalog } from '../../../src/router/classifier.ts';

await createClassifier({ functions: EMPTY_FUNCTION_CATALOG }); // loads the parser module

const catalog = new InMemoryFunctionCatalog({ readOnly: ['price_of'] });

test('a learned text is a write with reason learned-write, cached or not', () => {
  const local = new Classifier({ functions: catalog });
  assert.equal(local.classify('select price_of(1)').route, 'read');
  local.learnWrite('select price_of(1)');
  assert.deepEqual(local.classify('select price_of(1)'), { route: 'write', reason: 'learned-write', kind: 'query', statements: 1 });
  assert.ok(Object.isFrozen(local.classify('select price_of(1)')));
  local.learnWrite('select price_of(2)'); // never classified before
  assert.equal(local.classify('select price_of(2)').reason, 'learned-write');
  assert.equal(local.classify('select price_of(3)').reason, 'learned-write', 'the same statement with another number');
  assert.equal(local.classify('select price_of(1) ').route, 'read', 'another text');
  assert.equal(local.classify("select price_of('1')").route, 'read', 'another text');
  assert.equal(local.stats().learned, 1, 'price_of(1) and price_of(2) share their shape');
});

test('a learned write keeps kind, transaction, hints and statement count', () => {
  const local = new Classifier({ functions: catalog });
  local.learnWrite('declare c cursor for select price_of(1)');
  assert.equal(local.classify('declare c cursor for select price_of(1)').kind, 'cursor');
  local.learnWrite('/* ambassador:route=replica ambassador:retry=off */ begin read only; select my_fn(); commit');
  assert.deepEqual(local.classify('/* ambassador:route=replica ambassador:retry=off */ begin read only; select my_fn(); commit'), {
    route: 'write', reason: 'learned-write', kind: 'query', statements: 3, transaction: 'commit',
    parts: ['transaction-control', 'unknown-function:my_fn', 'transaction-control'], hint: 'replica', retry: 'off',
  });
  local.learnWrite('selec 1');
  assert.deepEqual(local.classify('selec 1'), { route: 'write', reason: 'learned-write', kind: 'query', statements: 0 });
});

test('learned writes survive cache eviction and setCatalog()', () => {
  const local = new Classifier({ functions: catalog, cacheEntries: 2 });
  local.learnWrite('select price_of(1)');
  for (let index = 0; index < 10; index += 1) local.classify(`select ${index}`);
  assert.equal(local.classify('select price_of(1)').reason, 'learned-write');
  local.setCatalog(new InMemoryFunctionCatalog({ readOnly: ['price_of'] }));
  assert.equal(local.stats().cached, 0);
  assert.equal(local.classify('select price_of(1)').reason, 'learned-write');
  assert.equal(local.stats().learned, 1);
});

test('learned writes are bounded by entries, oldest forgotten first', () => {
  const local = new Classifier({ functions: catalog, learnedEntries: 3, cacheEntries: 2 });
  for (let index = 1; index <= 4; index += 1) local.learnWrite(`select price_of(a${index})`);
  assert.equal(local.stats().learned, 3);
  for (let index = 0; index < 10; index += 1) local.classify(`select c${index}`); // evict the cache
  assert.equal(local.classify('select price_of(a1)').route, 'read', 'the oldest is forgotten');
  assert.equal(local.classify('select price_of(a2)').reason, 'learned-write');
  assert.equal(local.classify('select price_of(a4)').reason, 'learned-write');
});

test('learned writes are bounded by characters; oversize texts are not kept', () => {
  const local = new Classifier({ functions: catalog, learnedChars: 40, maxParseBytes: 64 });
  local.learnWrite('select price_of(1) as first_text'); // 32 characters
  local.learnWrite('select price_of(2) as second'); // 28 characters: the first goes
  assert.equal(local.stats().learned, 1);
  local.learnWrite(`select ${'1'.repeat(60)}`); // over maxParseBytes: already a write, not kept
  assert.equal(local.stats().learned, 1);
  assert.equal(local.classify(`select ${'1'.repeat(60)}`).reason, 'too-large');
});

test('learning a text twice keeps one entry', () => {
  const local = new Classifier({ functions: catalog });
  local.learnWrite('select price_of(1)');
  local.learnWrite('select price_of(1)');
  assert.equal(local.stats().learned, 1);
  assert.equal(local.classify('select price_of(1)').reason, 'learned-write');
});
