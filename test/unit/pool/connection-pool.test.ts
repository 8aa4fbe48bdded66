// ConnectionPool leases over a fake factory and a FakeClock: the size limit, FIFO waiters, direct
// hand-off, acquire timeouts, broken and dead connections, LIFO idle reuse, resize and close.
// `check()` asserts the pool's invariants after each step.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AmbassadorError } from '../../../src/errors.ts';
import { BASE, settle, setup, track } from './pool-fakes.ts';

test('size is respected under 100 concurrent acquires; every one is served in turn', async () => {
  const { pool, factory, check } = setup({ size: 10 });
  const letGo = factory.hold();
  const served: number[] = [];
  const acquires = Array.from({ length: 100 }, (_, i) => track(pool.acquire().then((conn) => (served.push(i), conn))));
  await settle();
  check();
  assert.equal(factory.attemptTimes.length, 10);
  assert.deepEqual([pool.stats().connecting, pool.stats().waiting], [10, 100]);
  letGo();
  await settle();
  check();
  assert.deepEqual([pool.stats().active, pool.stats().waiting], [10, 90]);
  for (const [i, acquire] of acquires.entries()) {
    assert.ok(acquire.value, `acquire ${i} is served in turn`);
    pool.release(acquire.value, 'reusable');
    await settle();
    check();
  }
  assert.deepEqual(served, Array.from({ length: 100 }, (_, i) => i));
  assert.deepEqual([factory.conns.length, pool.stats().idle], [10, 10]);
});

test('waiters are served first in, first out as connections come back', async () => {
  const { pool, check } = setup({ size: 1 });
  const first = await pool.acquire();
  const order: string[] = [];
  const names = ['b', 'c', 'd'];
  const waiting = names.map((name) => track(pool.acquire().then((conn) => (order.push(name), conn))));
  await settle();
  check();
  let conn = first;
  for (const [i, waiter] of waiting.entries()) {
    pool.release(conn, 'reusable');
    await settle();
    assert.deepEqual(order, names.slice(0, i + 1));
    assert.equal(waiter.value, first);
    conn = waiter.value;
    check();
  }
});

test('a released connection goes straight to the head waiter, never through idle', async () => {
  const { pool, check, events } = setup({ size: 1 });
  const conn = await pool.acquire();
  const waiter = track(pool.acquire());
  await settle();
  pool.release(conn, 'reusable');
  assert.deepEqual([pool.stats().idle, pool.stats().active, pool.stats().waiting], [0, 1, 0]);
  await settle();
  assert.equal(waiter.value, conn);
  check();
  assert.deepEqual(
    events.filter((e) => e.type !== 'created').map((e) => e.type),
    [],
    'the one connection served both: none destroyed, none opened again',
  );
});

test('acquireTimeout rejects with POOL_TIMEOUT at exactly the configured time and drops the waiter', async () => {
  const { pool, clock, check, events } = setup({ size: 1, acquireTimeoutMs: 1000 });
  const conn = await pool.acquire();
  const waiter = track(pool.acquire());
  await clock.advanceAsync(999);
  assert.equal(waiter.settled, false);
  assert.equal(pool.stats().maxWaitMs, 999);
  await clock.advanceAsync(1);
  assert.ok(waiter.error instanceof AmbassadorError, `expected an AmbassadorError, got ${String(waiter.error)}`);
  assert.equal(waiter.error.code, 'POOL_TIMEOUT');
  assert.equal(waiter.error.sqlstate, '53300');
  assert.match(waiter.error.message, /after waiting 1000 ms/);
  assert.match(waiter.error.message, /db1:5432\/app\/alice/);
  assert.match(waiter.error.message, /pool\.size 1/);
  assert.match(waiter.error.message, /pool\.acquireTimeout/);
  assert.equal(pool.stats().waiting, 0);
  assert.deepEqual(events.at(-1), { type: 'timeout', key: 'db1:5432/app/alice', waitMs: 1000 });
  pool.release(conn, 'reusable');
  assert.deepEqual([pool.stats().idle, pool.stats().active], [1, 0]);
  check();
});

test('a broken release is destroyed and a replacement is created for the waiter', async () => {
  const { pool, factory, check, destroyReasons } = setup({ size: 1 });
  const conn = await pool.acquire();
  const waiter = track(pool.acquire());
  await settle();
  pool.release(conn, 'broken');
  assert.deepEqual(factory.destroyed, [conn]);
  assert.deepEqual(destroyReasons(), ['broken']);
  await settle();
  assert.equal(factory.conns.length, 2, 'a replacement was created');
  assert.equal(waiter.value, factory.conns[1]);
  check();
});

test('a connection that died while active is destroyed on release', async () => {
  const { pool, factory, check, destroyReasons } = setup();
  const conn = await pool.acquire();
  factory.kill(conn);
  assert.equal(pool.stats().active, 1);
  pool.release(conn, 'reusable');
  assert.deepEqual(destroyReasons(), ['closed']);
  check();
});

test('a dead idle connection is skipped; otherwise acquire takes the most recently used (LIFO)', async () => {
  const { pool, factory, check, destroyReasons } = setup();
  const [a, b] = await Promise.all([pool.acquire(), pool.acquire()]);
  pool.release(a, 'reusable');
  pool.release(b, 'reusable');
  const again = await pool.acquire();
  assert.equal(again, b);
  pool.release(b, 'reusable');
  b.alive = false; // the socket closed, no callback yet
  assert.equal(await pool.acquire(), a);
  assert.deepEqual(destroyReasons(), ['closed']);
  assert.deepEqual(factory.destroyed, [b]);
  check();
});

test('resize up serves waiters; resize down closes extra idle and retires extra active on release', async () => {
  const { pool, factory, check, destroyReasons } = setup({ size: 1 });
  const first = await pool.acquire();
  const waiters = [track(pool.acquire()), track(pool.acquire())];
  await settle();
  pool.resize({ ...BASE, size: 3 });
  await settle();
  assert.ok(waiters.every((w) => w.value), 'every waiter was served');
  assert.equal(factory.conns.length, 3);
  check();
  pool.release(waiters[0]!.value!, 'reusable');
  pool.release(waiters[1]!.value!, 'reusable');
  pool.resize({ ...BASE, size: 2 });
  assert.deepEqual([pool.stats().idle, pool.stats().active, destroyReasons()], [1, 1, ['resized']]);
  check();
  pool.resize({ ...BASE, size: 1 });
  assert.deepEqual([pool.stats().idle, pool.stats().active], [0, 1]);
  pool.release(first, 'reusable');
  assert.equal(pool.stats().active, 0);
  check();
  pool.release(await pool.acquire(), 'reusable');
  assert.equal(pool.stats().idle, 1);
  pool.release(await pool.acquire(), 'reusable');
  assert.deepEqual(destroyReasons(), ['resized', 'resized']);
  check();
});

test('close rejects waiters with POOL_CLOSED; active connections and late creates are destroyed', async () => {
  const { pool, clock, factory, destroyReasons } = setup({ size: 2, idleTimeoutMs: 1000 });
  const active = await pool.acquire();
  const letGo = factory.hold();
  const waiters = [track(pool.acquire()), track(pool.acquire())]; // one create in flight, one queued
  await settle();
  assert.deepEqual([pool.stats().connecting, pool.stats().waiting], [1, 2]);
  await pool.close();
  await settle();
  for (const waiter of waiters) {
    assert.ok(waiter.error instanceof AmbassadorError, `expected an AmbassadorError, got ${String(waiter.error)}`);
    assert.equal(waiter.error.code, 'POOL_CLOSED');
    assert.equal(waiter.error.sqlstate, '57P01');
  }
  assert.equal(active.destroyed, false);
  pool.release(active, 'reusable');
  assert.equal(active.destroyed, true);
  letGo();
  await settle();
  assert.equal(factory.conns.length, 2);
  assert.deepEqual(factory.open(), []);
  assert.deepEqual(destroyReasons(), ['pool-closed', 'pool-closed']);
  assert.deepEqual([pool.stats().connecting, clock.pending()], [0, []]);
  await assert.rejects(pool.acquire(), (err: unknown) => err instanceof AmbassadorError && err.code === 'POOL_CLOSED');
});

test('close destroys idle connections at once', async () => {
  const { pool, factory, destroyReasons } = setup({ size: 2, minIdle: 1 });
  const [a, b] = await Promise.all([pool.acquire(), pool.acquire()]);
  pool.release(b, 'reusable');
  const closing = pool.close();
  assert.deepEqual(factory.destroyed, [b]);
  await closing;
  pool.release(a, 'reusable');
  assert.deepEqual(factory.destroyed, [b, a]);
  assert.deepEqual(destroyReasons(), ['pool-closed', 'pool-closed']);
});

test('close ends connects sleeping in backoff and leaves no timer behind', async () => {
  const { pool, clock, factory } = setup({ size: 1 });
  factory.failNext(1);
  const waiter = track(pool.acquire());
  await settle();
  assert.equal(factory.attemptTimes.length, 1);
  assert.ok(clock.pending().length > 0, 'a backoff timer is pending');
  await pool.close();
  await clock.advanceAsync(10_000);
  assert.equal(factory.attemptTimes.length, 1);
  assert.equal((waiter.error as AmbassadorError).code, 'POOL_CLOSED');
  assert.deepEqual([pool.stats().connecting, clock.pending()], [0, []]);
});

test('releasing a connection the pool did not lease throws', async () => {
  const { pool } = setup();
  const conn = await pool.acquire();
  pool.release(conn, 'reusable');
  assert.throws(() => pool.release(conn, 'reusable'), /has not leased/);
});

test('tryAcquire leases an idle connection at once, and otherwise neither waits nor queues', async () => {
  const { pool, factory, check } = setup({ size: 1 });
  assert.equal(pool.tryAcquire(), null, 'nothing idle yet: no lease');
  await settle();
  assert.deepEqual([pool.stats().waiting, factory.attemptTimes.length], [0, 0], 'a failed tryAcquire queues nothing and connects nothing');
  const conn = await pool.acquire();
  assert.equal(pool.tryAcquire(), null, 'the only connection is leased');
  pool.release(conn, 'reusable');
  assert.equal(pool.tryAcquire(), conn);
  assert.deepEqual([pool.stats().active, pool.stats().idle], [1, 0]);
  check();
  pool.release(conn, 'reusable');
  await pool.close();
  assert.equal(pool.tryAcquire(), null, 'a closed pool leases nothing');
});

test('wait() hands a released connection to the head callback at once; waiters share one timeout timer, each due at its own time', async () => {
  const { pool, clock, check } = setup({ size: 1, acquireTimeoutMs: 1000 });
  const conn = await pool.acquire();
  const timersBefore = clock.pending().length;
  const outcomes: Array<{ at: number; conn: unknown; code: string | undefined }> = [];
  const start = clock.now();
  for (let i = 0; i < 50; i++) {
    pool.wait((err, leased) => outcomes[i] = { at: clock.now() - start, conn: leased, code: err instanceof AmbassadorError ? err.code : undefined });
    await clock.advanceAsync(10);
  }
  assert.ok(clock.pending().length <= timersBefore + 1, `50 waiters, one timer for their timeouts: ${clock.pending().join(',')} (before: ${timersBefore})`);
  pool.release(conn, 'reusable');
  assert.deepEqual(outcomes[0], { at: 500, conn, code: undefined }, 'the head waiter got it inside release');
  await clock.advanceAsync(500); // now 1000 ms after the first wait began: the second waiter (at 10) is not due yet
  assert.equal(outcomes.filter(Boolean).length, 1);
  await clock.advanceAsync(10);
  assert.deepEqual(outcomes[1], { at: 1010, conn: null, code: 'POOL_TIMEOUT' });
  await clock.advanceAsync(25);
  assert.deepEqual(outcomes.slice(2, 4).map((o) => [o.at, o.code]), [[1020, 'POOL_TIMEOUT'], [1030, 'POOL_TIMEOUT']]);
  assert.equal(outcomes.filter(Boolean).length, 4, 'the others wait on');
  pool.release(conn, 'reusable');
  assert.equal(outcomes[4]?.conn, conn);
  assert.equal(pool.stats().waiting, 45);
  check();
});

test('a queue that empties and fills again keeps its one timeout timer, and a later waiter still times out on time', async () => {
  const { pool, clock, check } = setup({ size: 1, acquireTimeoutMs: 1000 });
  const conn = await pool.acquire(); // it waited for the connection: the timer was armed then
  const armed: number[] = [];
  const setTimeoutOf = clock.setTimeout.bind(clock);
  clock.setTimeout = (fn, ms) => (armed.push(ms), setTimeoutOf(fn, ms));
  // A busy pool: a waiter queues, the connection comes back to it, the queue is empty again.
  for (let i = 0; i < 100; i++) {
    let next: unknown = null;
    pool.wait((_err, leased) => (next = leased));
    await clock.advanceAsync(1);
    pool.release(conn, 'reusable');
    assert.equal(next, conn, `round ${i}: the waiter got the connection`);
    assert.equal(pool.stats().waiting, 0);
  }
  assert.deepEqual(armed, [], 'never armed again');
  // The timer (due at 1000) finds nobody and stops; a waiter at 1500 gets its own, due at 2500.
  await clock.advanceAsync(1400);
  armed.length = 0; // (the pool's maintenance timer may have been armed meanwhile)
  const late = track(new Promise((resolve, reject) => pool.wait((err, leased) => (leased === null ? reject(err) : resolve(leased)))));
  assert.deepEqual(armed, [1000]);
  await clock.advanceAsync(999);
  assert.equal(late.settled, false);
  await clock.advanceAsync(1);
  assert.equal((late.error as AmbassadorError).code, 'POOL_TIMEOUT');
  check();
});

test('waiters served out of turn by their own connects leave the oldest at the head, counted once', async () => {
  const { pool, factory, clock, check } = setup({ size: 40 });
  factory.failNext(1); // the oldest waiter's connect fails once and sleeps in backoff
  const waiters = Array.from({ length: 40 }, () => track(pool.acquire()));
  await settle();
  check();
  assert.equal(waiters[0]!.settled, false);
  assert.ok(waiters.slice(1).every((w) => w.value !== undefined), 'the other 39 got the connects they started');
  assert.equal(pool.stats().waiting, 1);
  // Two more arrive behind the oldest.
  const later = [track(pool.acquire()), track(pool.acquire())];
  await settle();
  assert.equal(pool.stats().waiting, 3);
  for (let i = 1; i <= 3; i++) {
    pool.release(waiters[i]!.value!, 'reusable');
    await settle();
    check();
  }
  assert.equal(waiters[0]!.value, waiters[1]!.value, 'the oldest waiter is served first');
  assert.equal(later[0]!.value, waiters[2]!.value);
  assert.equal(later[1]!.value, waiters[3]!.value);
  assert.equal(pool.stats().waiting, 0);
  // The failed connect tries again and lands for no one waiting: it goes idle.
  await clock.advanceAsync(1000);
  check();
  assert.deepEqual([pool.stats().active, pool.stats().idle, pool.stats().waiting], [39, 1, 0]);
});

test('close settles only the waiters still waiting, once each, when others were served out of turn', async () => {
  // Few enough that the served ones stay queued behind the oldest (no rebuild of the queue).
  const { pool, factory } = setup({ size: 8 });
  factory.failNext(1); // the oldest waiter's connect fails once; the other 7 are served by theirs
  const settled = Array.from({ length: 8 }, () => [] as string[]);
  for (const calls of settled) pool.wait((err, conn) => calls.push(conn === null ? (err as AmbassadorError).code : 'conn'));
  await settle();
  assert.deepEqual(settled[0], []);
  assert.ok(settled.slice(1).every((calls) => calls.length === 1 && calls[0] === 'conn'));
  await pool.close();
  assert.deepEqual(settled[0], ['POOL_CLOSED']);
  assert.ok(settled.slice(1).every((calls) => calls.length === 1), 'no waiter served before the close is settled again');
  assert.equal(pool.stats().waiting, 0);
});
