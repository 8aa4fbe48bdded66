// Upstream logins derive SCRAM keys off the event loop and once per (password, salt, count):
// ScramClient.answerServerFirst against the RFC 7677 vector, its state while the keys are being
// derived, and SaltedKeyCache's sharing, bounds and failures.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deriveScramKeys, SaltedKeyCache, ScramClient, ScramError, type ScramKeys } from '../../../src/protocol/scram.ts';

const b = (text: string): Buffer => Buffer.from(text, 'latin1');

// RFC 7677 section 3.
const RFC = {
  password: 'pencil',
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'),
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};

function rfcClient(): ScramClient {
  const client = new ScramClient({ password: RFC.password, username: 'user', nonce: RFC.clientNonce });
  client.clientFirst();
  return client;
}

/** A derivation that counts its calls and resolves when told to. */
function controlledDerivation(): { derive: (p: string, s: Buffer, i: number) => Promise<ScramKeys>; calls: Array<[string, number]>; finish(): Promise<void> } {
  const calls: Array<[string, number]> = [];
  const pending: Array<() => void> = [];
  return {
    calls,
    derive: (password, salt, iterations) => {
      calls.push([password, iterations]);
      return new Promise((resolve, reject) => pending.push(() => deriveScramKeys(password, salt, iterations).then(resolve, reject)));
    },
    finish: async () => {
      for (const run of pending.splice(0)) run();
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
}

test('answerServerFirst with keys from the thread pool reproduces the RFC 7677 exchange', async () => {
  const client = rfcClient();
  const clientFinal = await client.answerServerFirst(b(RFC.serverFirst), deriveScramKeys);
  assert.equal(clientFinal.toString('latin1'), RFC.clientFinal);
  client.verifyServerFinal(b(RFC.serverFinal));
  assert.equal(client.state, 'done');
});

test('answerServerFirst: deriving-keys until the keys arrive; a server-final meanwhile is out of order', async () => {
  const control = controlledDerivation();
  const client = rfcClient();
  // The first exchange fails for good at the out-of-order step below; its keys arriving later change nothing.
  const answerFails = assert.rejects(client.answerServerFirst(b(RFC.serverFirst), control.derive), (err: unknown) => err instanceof ScramError && err.reason === 'out-of-order');
  assert.equal(client.state, 'deriving-keys');
  assert.throws(() => client.verifyServerFinal(b(RFC.serverFinal)), (err: unknown) => err instanceof ScramError && err.reason === 'out-of-order');

  const second = rfcClient();
  const secondAnswer = second.answerServerFirst(b(RFC.serverFirst), control.derive);
  await control.finish();
  assert.equal((await secondAnswer).toString('latin1'), RFC.clientFinal);
  assert.equal(second.state, 'expect-server-final');
  await answerFails;
  assert.equal(client.state, 'failed');
});

test('answerServerFirst checks the server-first-message before deriving anything', async () => {
  const control = controlledDerivation();
  const client = rfcClient();
  await assert.rejects(client.answerServerFirst(b('r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096'), control.derive), (err: unknown) => err instanceof ScramError && err.reason === 'nonce-mismatch');
  assert.equal(client.state, 'failed');
  assert.deepEqual(control.calls, []);
});

test('answerServerFirst: a derivation that fails fails the exchange', async () => {
  const client = rfcClient();
  await assert.rejects(client.answerServerFirst(b(RFC.serverFirst), () => Promise.reject(new Error('no thread pool'))), /no thread pool/);
  assert.equal(client.state, 'failed');
});

test('SaltedKeyCache: one derivation per password, salt and count, shared by logins that overlap', async () => {
  const control = controlledDerivation();
  const cache = new SaltedKeyCache(control.derive);
  const first = cache.keysFor('pencil', RFC.salt, 4096);
  const overlapping = cache.keysFor('pencil', RFC.salt, 4096);
  assert.equal(overlapping, first);
  cache.keysFor('pencil', RFC.salt, 4097);
  cache.keysFor('pencil2', RFC.salt, 4096);
  cache.keysFor('pencil', Buffer.from('other salt'), 4096);
  await control.finish();
  assert.deepEqual(control.calls, [['pencil', 4096], ['pencil', 4097], ['pencil2', 4096], ['pencil', 4096]]);
  assert.deepEqual(await cache.keysFor('pencil', RFC.salt, 4096), await first, 'a later login gets the same keys');
  assert.equal(control.calls.length, 4);

  const client = rfcClient();
  assert.equal((await client.answerServerFirst(b(RFC.serverFirst), cache.keysFor)).toString('latin1'), RFC.clientFinal);
  client.verifyServerFinal(b(RFC.serverFinal));
  const again = rfcClient();
  assert.equal((await again.answerServerFirst(b(RFC.serverFirst), cache.keysFor)).toString('latin1'), RFC.clientFinal, 'cached keys are not worn out by use');
  assert.equal(control.calls.length, 4);
});

test('SaltedKeyCache keeps at most maxEntries, oldest out, and forgets a failed derivation', async () => {
  let calls = 0;
  let fail = false;
  const cache = new SaltedKeyCache(async (password, salt, iterations) => {
    calls++;
    if (fail) throw new Error('failed');
    return deriveScramKeys(password, salt, iterations);
  }, 2);
  await cache.keysFor('a', RFC.salt, 1);
  await cache.keysFor('b', RFC.salt, 1);
  await cache.keysFor('c', RFC.salt, 1);
  assert.equal(cache.size, 2);
  await cache.keysFor('c', RFC.salt, 1);
  assert.equal(calls, 3, 'c is kept');
  await cache.keysFor('a', RFC.salt, 1);
  assert.equal(calls, 4, 'a was the oldest and went out');

  fail = true;
  await assert.rejects(cache.keysFor('d', RFC.salt, 1), /failed/);
  fail = false;
  await cache.keysFor('d', RFC.salt, 1);
  assert.equal(calls, 6, 'the failed derivation was not kept');
});
