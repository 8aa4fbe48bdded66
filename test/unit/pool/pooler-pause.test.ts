// PAUSE/RESUME on the Pooler over fake connects on a FakeClock: new acquires are held (acquireOn
// is not), pause() answers when nothing is leased any more or after its limit with the count,
// resume() lets the held requests through in order, a held request gives up after
// failoverTimeout with PAUSED, close() fails held requests with POOL_CLOSED, and leases of a
// drained pool and acquires already past the gate count as leased.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AmbassadorError } from '../../../src/errors.ts';
import { settle, track } from './pool-fakes.ts';
import { loginError, PRIMARY, REPLICA, REQUEST, setupPooler } from './pooler-fakes.ts';
import { settings } from './pooler-settings-fakes.ts';

const P = 'db1:5432';
const R1 = 'db2:5432';

test('with nothing leased, pause() answers at once; acquires wait until resume(), acquireOn does not', async () => {
  const { pooler, upstream } = setupPooler([P]);
  assert.equal(pooler.resume(), false, 'not paused');
  assert.deepEqual(await pooler.pause(1_000), { drained: true, active: 0 });
  assert.equal(pooler.paused, true);
  const held = track(pooler.acquire(REQUEST));
  const read = track(pooler.acquireFor({ kind: 'read' }, REQUEST));
  await settle();
  assert.deepEqual([held.settled, read.settled, upstream.attempts.length], [false, false, 0]);
  const internal = await pooler.acquireOn(pooler.hosts[0]!, REQUEST);
  assert.ok(internal, 'acquireOn is not held');
  pooler.release(internal, 'reusable');
  assert.equal(pooler.resume(), true);
  assert.equal(pooler.paused, false);
  await settle();
  assert.ok(held.value && read.value);
  await pooler.close();
});

test('pause() answers once the last leased connection is released; leases taken before it stay', async () => {
  const { pooler } = setupPooler([P]);
  const leases = [await pooler.acquire(REQUEST), await pooler.acquire(REQUEST)];
  const pausing = track(pooler.pause(60_000));
  await settle();
  assert.equal(pausing.settled, false);
  assert.ok(leases.every((lease) => !lease.isClosed));
  pooler.release(leases[0]!, 'reusable');
  await settle();
  assert.equal(pausing.settled, false, 'one is still leased');
  pooler.release(leases[1]!, 'reusable');
  await settle();
  assert.deepEqual(pausing.value, { drained: true, active: 0 });
  await pooler.close();
});

test('pause() gives up waiting after its limit and says how many are still leased', async () => {
  const { pooler, clock } = setupPooler([P]);
  const lease = await pooler.acquire(REQUEST);
  const pausing = track(pooler.pause(500));
  await clock.advanceAsync(499);
  assert.equal(pausing.settled, false);
  await clock.advanceAsync(1);
  assert.deepEqual(pausing.value, { drained: false, active: 1 });
  assert.equal(pooler.paused, true, 'still paused: only the wait ended');
  pooler.release(lease, 'reusable');
  await pooler.close();
});

test('resume() lets the held requests through first come, first served', async () => {
  const one = settings([P]);
  const { pooler } = setupPooler([P], { pool: { ...one.pool, size: 1 } });
  await pooler.pause(1_000);
  const order: string[] = [];
  const held = ['a', 'b', 'c'].map((name) => ({ name, lease: track(pooler.acquire(REQUEST).then((lease) => (order.push(name), lease))) }));
  await settle();
  pooler.resume();
  for (const { lease } of held) {
    await settle();
    assert.ok(lease.value, 'served in turn');
    pooler.release(lease.value, 'reusable');
  }
  assert.deepEqual(order, ['a', 'b', 'c']);
  await pooler.close();
});

test('a held request gives up after health.failoverTimeout with PAUSED; nothing is leased for it', async () => {
  const { pooler, clock, upstream } = setupPooler([P]);
  await pooler.pause(1_000);
  const held = track(pooler.acquire(REQUEST));
  await clock.advanceAsync(9_999);
  assert.equal(held.settled, false);
  await clock.advanceAsync(1);
  assert.ok(held.error instanceof AmbassadorError, String(held.error));
  assert.equal(held.error.code, 'PAUSED');
  assert.match(held.error.message, /paused and was not resumed within 10000 ms/);
  assert.equal(upstream.attempts.length, 0);
  assert.deepEqual(pooler.stats(), []);
  await pooler.close();
});

test('close() fails held requests with POOL_CLOSED', async () => {
  const { pooler } = setupPooler([P]);
  await pooler.pause(1_000);
  const held = track(pooler.acquire(REQUEST));
  await settle();
  await pooler.close();
  await settle();
  assert.ok(held.error instanceof AmbassadorError);
  assert.equal(held.error.code, 'POOL_CLOSED');
});

test('a lease from a drained pool, and an acquire past the gate, count as leased', async () => {
  const one = settings([P, R1]);
  const { pooler, prober } = setupPooler([P, R1], { pool: { ...one.pool, size: 1 } });
  prober.answers.set(P, PRIMARY).set(R1, REPLICA);
  await pooler.ready(REQUEST);
  const read = await pooler.acquireFor({ kind: 'read' }, REQUEST);
  const write = await pooler.acquire(REQUEST);
  const queued = track(pooler.acquire(REQUEST)); // past the gate, waiting in P's pool
  await settle();
  pooler.reconfigure({ ...settings([P]), pool: { ...one.pool, size: 1 } }); // R1 removed: its pool drained
  const pausing = track(pooler.pause(60_000));
  await settle();
  pooler.release(write, 'reusable'); // goes to the queued acquire
  await settle();
  assert.ok(queued.value);
  pooler.release(queued.value, 'reusable');
  await settle();
  assert.equal(pausing.settled, false, 'the drained pool\'s lease is still out');
  pooler.release(read, 'reusable');
  await settle();
  assert.deepEqual(pausing.value, { drained: true, active: 0 });
  await pooler.close();
});

test('pause() answers when the last acquire past the gate fails instead of leasing', async () => {
  const { pooler, upstream } = setupPooler([P]);
  upstream.refuse(P, loginError('28P01', 'password authentication failed'));
  const failing = track(pooler.acquire(REQUEST)); // past the gate: counts until it settles
  const pausing = track(pooler.pause(60_000));
  assert.equal(pausing.settled, false);
  await settle();
  await settle();
  assert.ok(failing.error instanceof AmbassadorError);
  assert.deepEqual(pausing.value, { drained: true, active: 0 });
  await pooler.close();
});
