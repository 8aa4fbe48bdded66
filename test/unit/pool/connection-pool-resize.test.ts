// ConnectionPool.resize as a config reload uses it: every option applies to what is already open
// or waiting (lifetimes, idle timeout, acquire timeouts, the retry delay under way, the size for
// connects in flight), and connections() lists the open connections with their state and times.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AmbassadorError } from '../../../src/errors.ts';
import { BASE, settle, setup, track } from './pool-fakes.ts';

test('resize down under load: leased connections are kept and retired on release, idle ones beyond the size close now', async () => {
  const { pool, factory, check, destroyReasons } = setup({ size: 4 });
  const leased = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()]);
  const idle = await pool.acquire();
  pool.release(idle, 'reusable');
  pool.resize({ ...BASE, size: 2 });
  assert.deepEqual(destroyReasons(), ['resized'], 'the idle connection went at once');
  assert.deepEqual([pool.stats().active, pool.stats().idle], [3, 0]);
  assert.ok(leased.every((conn) => !conn.destroyed), 'no leased connection was touched');
  pool.release(leased[0]!, 'reusable');
  assert.deepEqual(destroyReasons(), ['resized', 'resized'], 'released beyond the new size: retired');
  pool.release(leased[1]!, 'reusable');
  pool.release(leased[2]!, 'reusable');
  assert.deepEqual(destroyReasons(), ['resized', 'resized'], 'within the new size: kept');
  assert.deepEqual([pool.stats().idle, factory.open().length], [2, 2]);
  check();
});

test('a connect in flight that lands for no one after the pool shrank is not kept beyond the size', async () => {
  const { pool, clock, factory, check, destroyReasons } = setup({ size: 2, acquireTimeoutMs: 100 });
  const held = await pool.acquire();
  const letGo = factory.hold();
  const waiter = track(pool.acquire()); // its connect is held
  await settle();
  pool.resize({ ...BASE, size: 1, acquireTimeoutMs: 100 });
  clock.advance(100);
  await settle();
  assert.ok(waiter.error instanceof AmbassadorError, 'the waiter timed out: the connect lands for no one');
  letGo();
  await settle();
  assert.deepEqual(destroyReasons(), ['resized']);
  assert.deepEqual([pool.stats().idle, pool.stats().active], [0, 1]);
  check();
  pool.release(held, 'reusable');
  assert.equal(factory.open().length, 1);
  check();
});

test('a shorter maxLifetime applies to open connections: idle ones retire at the next upkeep, leased ones on release', async () => {
  const { pool, clock, factory, check, destroyReasons } = setup({ size: 2, maxLifetimeMs: 0 }, () => 0);
  const leased = await pool.acquire();
  const idle = await pool.acquire();
  pool.release(idle, 'reusable');
  clock.advance(5_000);
  pool.resize({ ...BASE, size: 2, maxLifetimeMs: 4_000 });
  assert.deepEqual(destroyReasons(), ['lifetime'], 'the idle one past its new lifetime went at once');
  assert.equal(leased.destroyed, false);
  pool.release(leased, 'reusable');
  assert.deepEqual(destroyReasons(), ['lifetime', 'lifetime']);
  assert.equal(factory.open().length, 0);
  check();
});

test('a longer maxLifetime keeps connections that the old one would have retired', async () => {
  const { pool, clock, destroyReasons } = setup({ size: 1, maxLifetimeMs: 1_000 }, () => 0);
  const conn = await pool.acquire();
  pool.resize({ ...BASE, size: 1, maxLifetimeMs: 10_000 });
  clock.advance(2_000);
  pool.release(conn, 'reusable');
  assert.deepEqual(destroyReasons(), []);
  assert.equal(await pool.acquire(), conn);
});

test('a new idle timeout applies to connections already idle', async () => {
  const { pool, clock, destroyReasons } = setup({ size: 1, idleTimeoutMs: 0 });
  pool.release(await pool.acquire(), 'reusable');
  clock.advance(3_000);
  assert.deepEqual(destroyReasons(), []);
  pool.resize({ ...BASE, size: 1, idleTimeoutMs: 1_000 });
  assert.deepEqual(destroyReasons(), ['idle-timeout'], 'idle for 3 s, longer than the new 1 s');
});

test('waiters take a new acquire timeout, counted from when they started waiting', async () => {
  const { pool, clock } = setup({ size: 1, acquireTimeoutMs: 10_000 });
  await pool.acquire();
  const early = track(pool.acquire());
  clock.advance(3_000);
  const late = track(pool.acquire());
  clock.advance(1_000);
  pool.resize({ ...BASE, size: 1, acquireTimeoutMs: 5_000 });
  await settle();
  assert.equal(early.settled, false);
  clock.advance(1_000); // early has waited 5 s
  await settle();
  assert.ok(early.error instanceof AmbassadorError && early.error.code === 'POOL_TIMEOUT');
  assert.equal(late.settled, false);
  pool.resize({ ...BASE, size: 1, acquireTimeoutMs: 0 });
  clock.advance(60_000);
  await settle();
  assert.equal(late.settled, false, 'acquireTimeout 0: no limit any more');
});

test('a shortened acquire timeout times out at once a waiter that already waited longer', async () => {
  const { pool, clock } = setup({ size: 1, acquireTimeoutMs: 10_000 });
  await pool.acquire();
  const waiter = track(pool.acquire());
  clock.advance(4_000);
  pool.resize({ ...BASE, size: 1, acquireTimeoutMs: 2_000 });
  clock.advance(0);
  await settle();
  assert.ok(waiter.error instanceof AmbassadorError && waiter.error.code === 'POOL_TIMEOUT');
  assert.match(waiter.error.message, /after waiting 4000 ms/);
});

test('a backoff delay under way is cut to the new retry.maxDelay', async () => {
  const slow = { max: 5, initialDelayMs: 8_000, maxDelayMs: 8_000 };
  const { pool, clock, factory } = setup({ size: 1, acquireTimeoutMs: 0, retry: slow }, () => 1);
  factory.failNext(1);
  const waiter = track(pool.acquire());
  await settle();
  assert.equal(factory.attemptTimes.length, 1);
  await clock.advanceAsync(100); // the second attempt sleeps 8 s
  pool.resize({ ...BASE, size: 1, acquireTimeoutMs: 0, retry: { max: 5, initialDelayMs: 200, maxDelayMs: 500 } });
  await clock.advanceAsync(500);
  assert.deepEqual(factory.attemptTimes, [0, 600]);
  assert.ok(waiter.value);
});

test('retry.max applies to the attempts of a waiter already connecting', async () => {
  const { pool, clock, factory } = setup({ size: 1, acquireTimeoutMs: 0, retry: { max: 5, initialDelayMs: 100, maxDelayMs: 100 } });
  factory.failNext(10);
  const waiter = track(pool.acquire());
  await clock.advanceAsync(100); // attempts at 0 and 75 ms failed; the third is due at 150 ms
  pool.resize({ ...BASE, size: 1, acquireTimeoutMs: 0, retry: { max: 1, initialDelayMs: 100, maxDelayMs: 100 } });
  await clock.advanceAsync(1_000);
  assert.ok(waiter.error instanceof AmbassadorError, String(waiter.error));
  assert.deepEqual(factory.attemptTimes, [0, 75, 150], 'the attempt already due runs; none after it (1 + retry.max passed), not 6 as before');
});

test('connections() lists idle and leased connections with when they connected and were last used', async () => {
  const { pool, clock } = setup({ size: 2 });
  clock.advance(1_000);
  const first = await pool.acquire();
  clock.advance(1_000);
  const second = await pool.acquire();
  clock.advance(500);
  pool.release(first, 'reusable');
  clock.advance(500);
  const rows = pool.connections().map((row) => [row.conn.id, row.state, row.connectedAt, row.lastUsedAt]);
  assert.deepEqual(rows, [
    [first.id, 'idle', 1_000, 2_500],
    [second.id, 'active', 2_000, 2_000],
  ]);
  assert.equal(pool.activeCount, 1);
  await pool.close();
  assert.equal(pool.isClosed, true);
  assert.deepEqual(pool.connections().map((row) => row.conn.id), [second.id], 'a closed pool still lists what is leased');
});
