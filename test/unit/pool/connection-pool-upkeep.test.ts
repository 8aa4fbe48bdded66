// ConnectionPool connects and upkeep over a fake factory and a FakeClock: retries with a shared
// backoff, the real connect error for the client, idle timeout, minIdle refill, jittered lifetimes.
// `check()` asserts the pool's invariants after each step.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AmbassadorError } from '../../../src/errors.ts';
import { settle, setup, track } from './pool-fakes.ts';

test('a failing create: 1 + retry.max attempts with growing delays, then the factory error itself', async () => {
  const { pool, clock, factory, check } = setup({ retry: { max: 3, initialDelayMs: 100, maxDelayMs: 1000 } });
  factory.failNext(100);
  const acquire = track(pool.acquire());
  for (let i = 0; i < 12; i++) {
    await clock.advanceAsync(50);
    check();
  }
  // random() = 0.5 (equal jitter: 3/4 of the ceiling): delays 75, 150, 300.
  assert.deepEqual(factory.attemptTimes, [0, 75, 225, 525]);
  assert.ok(acquire.error instanceof AmbassadorError, `expected an AmbassadorError, got ${String(acquire.error)}`);
  assert.equal(acquire.error.code, 'UPSTREAM_CONNECT_FAILED');
  assert.equal(acquire.error.message, 'connection to 10.0.0.9:5432 refused (ECONNREFUSED)');
  const stats = pool.stats();
  assert.deepEqual(
    [stats.connectAttempts, stats.connectFailures, stats.connecting, stats.waiting, stats.lastConnectError],
    [4, 4, 0, 0, 'connection to 10.0.0.9:5432 refused (ECONNREFUSED)'],
  );
});

test('the backoff is shared: after failures a new acquire waits before its first attempt; success resets', async () => {
  const { pool, clock, factory, check } = setup({ retry: { max: 1, initialDelayMs: 100, maxDelayMs: 1000 } });
  factory.failNext(2);
  const failed = track(pool.acquire());
  await clock.advanceAsync(100);
  assert.ok(failed.error instanceof AmbassadorError, `expected an AmbassadorError, got ${String(failed.error)}`);
  assert.deepEqual(factory.attemptTimes, [0, 75]);
  const start = clock.now();
  const next = track(pool.acquire());
  await clock.advanceAsync(149); // two failures: 0.75 * 200
  assert.equal(factory.attemptTimes.length, 2);
  await clock.advanceAsync(1);
  assert.deepEqual(factory.attemptTimes.slice(2), [start + 150]);
  assert.ok(next.value, 'the acquire after the delay got a connection');
  check();
  const third = track(pool.acquire());
  await settle();
  assert.deepEqual(factory.attemptTimes.slice(3), [start + 150]);
  assert.ok(third.value, 'the acquire after a success got a connection at once');
  check();
});

test('an error the factory calls not retryable ends the acquire after one attempt; the next acquire still waits the backoff', async () => {
  const { pool, clock, factory, check } = setup({ retry: { max: 3, initialDelayMs: 100, maxDelayMs: 1000 } });
  factory.retryable = (err) => !(err instanceof AmbassadorError && err.message.includes('password'));
  factory.failNext(1, 'password authentication failed for user "alice"');
  const refused = track(pool.acquire());
  await clock.advanceAsync(1000);
  assert.deepEqual(factory.attemptTimes, [0]);
  assert.ok(refused.error instanceof AmbassadorError);
  assert.match(refused.error.message, /password authentication failed/);
  factory.failNext(1);
  const retried = track(pool.acquire());
  await clock.advanceAsync(1000);
  // 0.75 * 100 after the first failure, 0.75 * 200 after the second: a refusal is still a failed attempt.
  assert.deepEqual(factory.attemptTimes, [0, 1075, 1225]);
  assert.ok(retried.value, 'a retryable error was retried');
  check();
});

test('resetBackoff: after a probe got through, the next connect goes at once', async () => {
  const { pool, clock, factory } = setup({ retry: { max: 0, initialDelayMs: 1000, maxDelayMs: 1000 } });
  factory.failNext(1);
  const failed = track(pool.acquire());
  await settle();
  assert.ok(failed.error instanceof AmbassadorError);
  pool.resetBackoff();
  const next = track(pool.acquire());
  await settle();
  assert.deepEqual(factory.attemptTimes, [0, 0]);
  assert.ok(next.value);
  assert.equal(clock.now(), 0);
});

test('an acquire timeout while connects fail names the connect error', async () => {
  const { pool, clock, factory } = setup({ size: 1, acquireTimeoutMs: 300, retry: { max: 5, initialDelayMs: 100, maxDelayMs: 1000 } });
  factory.failNext(100, 'password authentication failed for user "alice"');
  const acquire = track(pool.acquire());
  await clock.advanceAsync(300);
  assert.ok(acquire.error instanceof AmbassadorError, `expected an AmbassadorError, got ${String(acquire.error)}`);
  assert.equal(acquire.error.code, 'POOL_TIMEOUT');
  assert.match(acquire.error.message, /password authentication failed for user "alice"/);
});

test('a refusing host is not hammered by many clients: size connects in flight, each after its delay', async () => {
  const { pool, clock, factory, check } = setup({ size: 2, acquireTimeoutMs: 2000, retry: { max: 1, initialDelayMs: 100, maxDelayMs: 1000 } });
  factory.failNext(Infinity);
  const clients = Array.from({ length: 50 }, () => track(pool.acquire()));
  for (let t = 0; t < 2100; t += 25) {
    await clock.advanceAsync(25);
    check();
  }
  // Two at once (size 2), then each slot waits the shared, growing delay (capped at 0.75 * 1000).
  assert.deepEqual(factory.attemptTimes, [0, 0, 75, 150, 375, 750, 1125, 1500, 1875]);
  assert.ok(clients.every((c) => c.error instanceof AmbassadorError), 'every client got an AmbassadorError');
  const codes = new Set(clients.map((c) => (c.error as AmbassadorError).code));
  assert.deepEqual([...codes].sort(), ['POOL_TIMEOUT', 'UPSTREAM_CONNECT_FAILED']);
  assert.equal(pool.stats().waiting, 0);
});

test('idle connections beyond minIdle are closed after idleTimeout, the least recently used first', async () => {
  const { pool, clock, factory, check, destroyReasons } = setup({ size: 3, minIdle: 1, idleTimeoutMs: 1000 });
  await settle();
  const conns = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()]);
  for (const conn of conns) pool.release(conn, 'reusable');
  check();
  await clock.advanceAsync(999);
  assert.equal(pool.stats().idle, 3);
  await clock.advanceAsync(1);
  assert.equal(pool.stats().idle, 1);
  assert.deepEqual(destroyReasons(), ['idle-timeout', 'idle-timeout']);
  assert.deepEqual(factory.open(), [conns[2]]);
  check();
});

test('minIdle is refilled in the background, also after a failed background connect', async () => {
  const { pool, clock, factory, check, destroyReasons } = setup({ size: 3, minIdle: 2, idleTimeoutMs: 10_000 });
  await settle();
  assert.equal(pool.stats().idle, 2);
  check();
  factory.failNext(1);
  factory.kill(factory.conns[0]!);
  assert.deepEqual([pool.stats().idle, destroyReasons()], [1, ['closed']]);
  await clock.advanceAsync(1000); // maintenance tick: the refill fails, nobody is rejected
  assert.deepEqual([pool.stats().idle, pool.stats().connectFailures], [1, 1]);
  await clock.advanceAsync(1000); // next tick: waits its backoff (75 ms), then succeeds
  assert.equal(pool.stats().connecting, 1);
  await clock.advanceAsync(74);
  assert.equal(pool.stats().idle, 1, 'still waiting out the backoff');
  await clock.advanceAsync(1);
  assert.equal(pool.stats().idle, 2);
  check();
});

test('lifetime is jittered per connection and retires on release', async () => {
  // random() = 0.2: 1000 * (0.85 + 0.15 * 0.2) = 880 ms.
  const { pool, clock, factory, check, destroyReasons } = setup({ size: 1, maxLifetimeMs: 1000 }, () => 0.2);
  const conn = await pool.acquire();
  await clock.advanceAsync(879);
  pool.release(conn, 'reusable');
  assert.equal(await pool.acquire(), conn);
  const waiter = track(pool.acquire());
  await clock.advanceAsync(1);
  pool.release(conn, 'reusable');
  assert.deepEqual(destroyReasons(), ['lifetime']);
  await settle();
  assert.equal(factory.conns.length, 2, 'a replacement was created');
  assert.equal(waiter.value, factory.conns[1]);
  check();
});

test('acquire skips idle connections past their lifetime', async () => {
  const { pool, clock, factory, check, destroyReasons } = setup({ size: 2, maxLifetimeMs: 1000, idleTimeoutMs: 0 }, () => 0.5);
  const [a, b] = await Promise.all([pool.acquire(), pool.acquire()]);
  pool.release(a, 'reusable');
  await clock.advanceAsync(900); // both expire at 925; the maintenance tick only at 1000
  pool.release(b, 'reusable');
  await clock.advanceAsync(24);
  assert.equal(pool.stats().idle, 2);
  await clock.advanceAsync(1); // 925: expired, but nobody looked yet
  const fresh = await pool.acquire(); // skips both expired idle connections
  assert.equal(fresh, factory.conns[2]);
  assert.deepEqual(destroyReasons(), ['lifetime', 'lifetime']);
  check();
});

test('expired idle connections are retired by the maintenance tick', async () => {
  const { pool, clock, check, destroyReasons } = setup({ size: 1, maxLifetimeMs: 1000 }, () => 0.5);
  pool.release(await pool.acquire(), 'reusable');
  await clock.advanceAsync(999); // expired at 925, the tick runs at 1000
  assert.equal(pool.stats().idle, 1);
  await clock.advanceAsync(1);
  assert.deepEqual([pool.stats().idle, destroyReasons()], [0, ['lifetime']]);
  check();
});
