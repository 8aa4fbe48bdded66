// AddressBook (the first lookup sets the baseline, changes compare sorted sets, failures and
// slow lookups reject and keep the last addresses) and which hosts are names at all.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AddressBook, isHostName } from '../../../src/health/resolver.ts';
import { FakeClock } from '../../../src/lib/clock.ts';
import { settle } from './health-fakes.ts';

test('isHostName: names yes; IPv4, IPv6 and Unix socket directories no', () => {
  assert.equal(isHostName('db.internal'), true);
  assert.equal(isHostName('localhost'), true);
  assert.equal(isHostName('10.0.0.1'), false);
  assert.equal(isHostName('::1'), false);
  assert.equal(isHostName('fe80::1'), false);
  assert.equal(isHostName('/var/run/postgresql'), false);
});

test('the first lookup is the baseline; a different set is a change, the same set in another order is not', async () => {
  const answers = [['10.0.0.2', '10.0.0.1', '10.0.0.1'], ['10.0.0.1', '10.0.0.2'], ['10.0.0.3']];
  const book = new AddressBook(async () => answers.shift()!, new FakeClock());
  assert.equal(await book.refresh('db:5432', 'db', 100), null);
  assert.deepEqual(book.addresses('db:5432'), ['10.0.0.1', '10.0.0.2'], 'sorted, without repeats');
  assert.equal(await book.refresh('db:5432', 'db', 100), null);
  assert.deepEqual(await book.refresh('db:5432', 'db', 100), { from: ['10.0.0.1', '10.0.0.2'], to: ['10.0.0.3'] });
});

test('a failed lookup rejects with the name and the resolver code, and keeps the last addresses', async () => {
  let fail = false;
  const book = new AddressBook(async () => {
    if (fail) throw Object.assign(new Error('getaddrinfo EAI_AGAIN db'), { code: 'EAI_AGAIN' });
    return ['10.0.0.1'];
  }, new FakeClock());
  await book.refresh('db:5432', 'db', 100);
  fail = true;
  await assert.rejects(book.refresh('db:5432', 'db', 100), /could not resolve db: EAI_AGAIN/);
  assert.deepEqual(book.addresses('db:5432'), ['10.0.0.1']);
  const empty = new AddressBook(async () => [], new FakeClock());
  await assert.rejects(empty.refresh('x:1', 'x', 100), /x resolved to no address/);
});

test('a lookup slower than the timeout rejects at the timeout', async () => {
  const clock = new FakeClock();
  const book = new AddressBook(() => new Promise<string[]>(() => {}), clock);
  let error: unknown = null;
  void book.refresh('db:5432', 'db', 250).catch((err: unknown) => (error = err));
  await clock.advanceAsync(249);
  assert.equal(error, null);
  await clock.advanceAsync(1);
  await settle();
  assert.match(String(error), /resolving db took longer than 250 ms/);
});
