// FunctionCatalogs over a scripted catalog reader: built-in lists only until the first read, the
// catalog's verdicts after it, a failed read keeping the previous catalog, re-reads after DDL
// (settled under fake timers, never two at once for a database), per-database isolation, the
// periodic refresh and stop().

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino, type Logger } from 'pino';

import { FunctionCatalogs, type CatalogReader } from '../../../src/health/function-catalogs.ts';
import { loadClassifierModule } from '../../../src/router/classifier.ts';
import type { ServerRequest } from '../../../src/pool/server-pool.ts';

await loadClassifierModule();

type Rows = Array<Array<string | null>>;

const SHOP_ROWS: Rows = [['public', 'add_order', 't'], ['public', 'price_of', 'f']];
const REFRESH_MS = 60_000;
const SETTLE_MS = 50;

function request(database: string, user = 'app'): ServerRequest {
  return { user, database, params: new Map() };
}

interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

function memoryLog(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  return { log, lines };
}

/**
 * A catalog reader whose every call waits until the test answers it (`answer()` / `fail()`,
 * oldest call first), counting calls per database and the most ever running at once.
 */
class ScriptedReader {
  readonly calls: ServerRequest[] = [];
  running = 0;
  maxRunning = 0;
  private readonly waiting: Array<{ resolve: (rows: Rows) => void; reject: (error: Error) => void }> = [];

  readonly read: CatalogReader = (req) => {
    this.calls.push(req);
    this.running += 1;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    return new Promise<Rows>((resolve, reject) => this.waiting.push({ resolve, reject })).finally(() => (this.running -= 1));
  };

  get pending(): number {
    return this.waiting.length;
  }

  callsFor(database: string): number {
    return this.calls.filter((call) => call.database === database).length;
  }

  answer(rows: Rows): Promise<void> {
    const next = this.waiting.shift();
    assert.ok(next, 'test: no catalog read is waiting');
    next.resolve(rows);
    return settle();
  }

  fail(message: string): Promise<void> {
    const next = this.waiting.shift();
    assert.ok(next, 'test: no catalog read is waiting');
    next.reject(new Error(message));
    return settle();
  }
}

/** Lets pending promise callbacks run (setImmediate is not faked in these tests). */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function catalogs(reader: ScriptedReader): { catalogs: FunctionCatalogs; lines: LogLine[] } {
  const { log, lines } = memoryLog();
  return { catalogs: new FunctionCatalogs({ classifier: {}, refreshIntervalMs: REFRESH_MS, read: reader.read, log }), lines };
}

test('until the first read a user function is unknown and writes; after it the catalog decides', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const reader = new ScriptedReader();
  const { catalogs: functions } = catalogs(reader);
  const shop = request('shop');
  const classifier = functions.classifierFor(shop);
  assert.equal(reader.calls.length, 1, 'first use starts the read');
  assert.equal(reader.calls[0], shop, 'with the request that first used the database');
  assert.deepEqual([classifier.classify('select add_order()').route, classifier.classify('select add_order()').reason], ['write', 'unknown-function:add_order']);
  assert.equal(classifier.classify('select price_of(1)').reason, 'unknown-function:price_of');
  assert.equal(classifier.classify('select lower(name) from t').route, 'read', 'built-in lists apply at once');

  let ready = false;
  void functions.ready(shop).then(() => (ready = true));
  await settle();
  assert.equal(ready, false, 'ready() waits for the read');
  await reader.answer(SHOP_ROWS);
  assert.equal(ready, true);
  assert.deepEqual({ ...classifier.classify('select add_order()') }, { route: 'write', reason: 'volatile-function:add_order', kind: 'query', statements: 1 });
  assert.deepEqual([classifier.classify('select price_of(1)').route, classifier.classify('select price_of(1)').reason], ['read', 'select']);
  assert.equal(functions.classifierFor(shop), classifier, 'one classifier per database');
  assert.equal(reader.calls.length, 1);
  functions.stop();
});

test('a failed read keeps the previous catalog and logs a warning; a failed first read resolves ready()', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const reader = new ScriptedReader();
  const { catalogs: functions, lines } = catalogs(reader);
  const shop = request('shop');
  const classifier = functions.classifierFor(shop);
  await reader.answer(SHOP_ROWS);

  functions.invalidate('shop');
  t.mock.timers.tick(SETTLE_MS);
  assert.equal(reader.pending, 1, 're-read after DDL');
  await reader.fail('canceling statement due to statement timeout');
  assert.equal(classifier.classify('select add_order()').reason, 'volatile-function:add_order');
  assert.equal(classifier.classify('select price_of(1)').route, 'read');
  const warnings = lines.filter((line) => line.level === 40);
  assert.equal(warnings.length, 1);
  assert.equal(warnings[0]!['database'], 'shop');
  assert.equal(warnings[0]!['err'], 'canceling statement due to statement timeout');

  const crm = request('crm');
  const crmClassifier = functions.classifierFor(crm);
  await reader.fail('connection refused');
  await functions.ready(crm);
  assert.equal(crmClassifier.classify('select add_order()').reason, 'unknown-function:add_order', 'built-in lists only');
  assert.equal(lines.filter((line) => line.level === 40).length, 2);
  t.mock.timers.tick(REFRESH_MS);
  assert.equal(reader.callsFor('crm'), 2, 'a failed read is retried at the next refresh');
  functions.stop();
});

test('invalidate() re-reads the catalog once DDL has settled for 50 ms', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const reader = new ScriptedReader();
  const { catalogs: functions } = catalogs(reader);
  const shop = request('shop');
  const classifier = functions.classifierFor(shop);
  await reader.answer(SHOP_ROWS);

  functions.invalidate('shop');
  t.mock.timers.tick(SETTLE_MS - 1);
  assert.equal(reader.calls.length, 1, 'not before the settle time');
  functions.invalidate('shop');
  t.mock.timers.tick(SETTLE_MS - 1);
  assert.equal(reader.calls.length, 1, 'more DDL restarts the wait');
  t.mock.timers.tick(1);
  assert.equal(reader.calls.length, 2);
  await reader.answer([['public', 'add_order', 't'], ['public', 'price_of', 't']]);
  assert.equal(classifier.classify('select price_of(1)').reason, 'volatile-function:price_of', 'the new catalog applies');

  functions.invalidate('nowhere');
  t.mock.timers.tick(SETTLE_MS);
  assert.equal(reader.calls.length, 2, 'a database never used has nothing to re-read');
  functions.stop();
});

test('a re-read asked for during a read runs once, after it, never alongside', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const reader = new ScriptedReader();
  const { catalogs: functions } = catalogs(reader);
  const shop = request('shop');
  const classifier = functions.classifierFor(shop);
  functions.invalidate('shop');
  functions.invalidate('shop');
  t.mock.timers.tick(SETTLE_MS);
  functions.invalidate('shop');
  t.mock.timers.tick(SETTLE_MS);
  assert.equal(reader.calls.length, 1, 'the first read is still running');

  await reader.answer(SHOP_ROWS);
  assert.equal(reader.calls.length, 2, 'one more read, right after');
  assert.equal(reader.maxRunning, 1);
  await reader.answer([['public', 'add_order', 'f']]);
  assert.equal(classifier.classify('select add_order()').route, 'read', 'the later read wins');
  t.mock.timers.tick(SETTLE_MS * 10);
  assert.equal(reader.calls.length, 2, 'and only one');

  t.mock.timers.tick(REFRESH_MS - SETTLE_MS * 10 - 1);
  assert.equal(reader.calls.length, 2);
  t.mock.timers.tick(1);
  assert.equal(reader.calls.length, 3, 'then the periodic refresh');
  assert.equal(reader.maxRunning, 1);
  functions.stop();
});

test('each database has its own classifier and catalog read', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const reader = new ScriptedReader();
  const { catalogs: functions } = catalogs(reader);
  const shop = functions.classifierFor(request('shop'));
  const crm = functions.classifierFor(request('crm', 'sales'));
  assert.notEqual(shop, crm);
  assert.deepEqual(reader.calls.map((call) => [call.database, call.user]), [['shop', 'app'], ['crm', 'sales']]);
  assert.equal(functions.classifierFor(request('shop', 'someone-else')), shop, 'by database, whoever asks');
  assert.equal(reader.calls.length, 2);

  await reader.answer(SHOP_ROWS);
  await reader.answer([['public', 'add_order', 'f']]);
  assert.equal(shop.classify('select add_order()').reason, 'volatile-function:add_order');
  assert.equal(crm.classify('select add_order()').route, 'read');
  assert.equal(crm.classify('select price_of(1)').reason, 'unknown-function:price_of');

  functions.invalidate('crm');
  t.mock.timers.tick(SETTLE_MS);
  assert.deepEqual([reader.callsFor('shop'), reader.callsFor('crm')], [1, 2]);
  functions.stop();
});

test('stop() ends the periodic refresh and DDL re-reads', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const reader = new ScriptedReader();
  const { catalogs: functions } = catalogs(reader);
  functions.classifierFor(request('shop'));
  await reader.answer(SHOP_ROWS);
  t.mock.timers.tick(REFRESH_MS);
  assert.equal(reader.calls.length, 2, 'refreshes while running');
  await reader.answer(SHOP_ROWS);

  functions.stop();
  t.mock.timers.tick(REFRESH_MS * 3);
  functions.invalidate('shop');
  t.mock.timers.tick(SETTLE_MS);
  await settle();
  assert.equal(reader.calls.length, 2);
});

test('stop() during a read: no re-read follows, even one asked for', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const reader = new ScriptedReader();
  const { catalogs: functions } = catalogs(reader);
  functions.classifierFor(request('shop'));
  functions.invalidate('shop');
  t.mock.timers.tick(SETTLE_MS);
  functions.stop();
  await reader.answer(SHOP_ROWS);
  t.mock.timers.tick(REFRESH_MS * 2);
  await settle();
  assert.equal(reader.calls.length, 1);
});
