// FakeClock: virtual time; advance runs due timers in order, at their due time.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock, spanClock, systemClock } from '../../../src/lib/clock.ts';

test('advance runs due timers in due order (ties in scheduling order), each at its due time', () => {
  const clock = new FakeClock(1000);
  const ran: string[] = [];
  clock.setTimeout(() => ran.push(`b@${clock.now()}`), 20);
  clock.setTimeout(() => ran.push(`a@${clock.now()}`), 10);
  clock.setTimeout(() => ran.push(`c@${clock.now()}`), 20);
  const cancelled = clock.setTimeout(() => ran.push('x'), 5);
  clock.clearTimeout(cancelled);
  clock.advance(19);
  assert.deepEqual(ran, ['a@1010']);
  assert.deepEqual(clock.pending(), [1, 1]);
  clock.advance(1);
  assert.deepEqual(ran, ['a@1010', 'b@1020', 'c@1020']);
  assert.equal(clock.now(), 1020);
});

test('a timer scheduled by a timer runs within the same advance when it falls due', () => {
  const clock = new FakeClock();
  const ran: number[] = [];
  clock.setTimeout(() => clock.setTimeout(() => ran.push(clock.now()), 5), 5);
  clock.advance(9);
  assert.deepEqual(ran, []);
  clock.advance(1);
  assert.deepEqual(ran, [10]);
});

test('advanceAsync lets promise callbacks schedule further timers before moving on', async () => {
  const clock = new FakeClock();
  const ran: number[] = [];
  const sleep = (ms: number): Promise<void> => new Promise((resolve) => clock.setTimeout(resolve, ms));
  void (async () => {
    await sleep(10);
    ran.push(clock.now());
    await sleep(10);
    ran.push(clock.now());
  })();
  await clock.advanceAsync(25);
  assert.deepEqual(ran, [10, 20]);
  assert.equal(clock.now(), 25);
});

test('systemClock timers fire and can be unref-ed and cleared', async () => {
  const fired = await new Promise<boolean>((resolve) => {
    const cancelled = systemClock.setTimeout(() => resolve(false), 5);
    systemClock.clearTimeout(cancelled);
    systemClock.setTimeout(() => resolve(true), 10).unref();
    setTimeout(() => resolve(false), 200);
  });
  assert.equal(fired, true);
  assert.ok(Math.abs(systemClock.now() - Date.now()) < 50, 'systemClock.now() is wall-clock time');
});

test('spanClock reads the wall clock of the start plus monotonic time: a date, never going back', async () => {
  const first = spanClock.now();
  assert.ok(Math.abs(first - Date.now()) < 50, 'a reading is a date (as long as the system clock was not stepped)');
  await new Promise<void>((resolve) => spanClock.setTimeout(() => resolve(), 20));
  const second = spanClock.now();
  assert.ok(second - first >= 19, `${second - first} ms passed over a 20 ms timer`);
  let last = second;
  for (let i = 0; i < 10_000; i++) {
    const now = spanClock.now();
    assert.ok(now >= last, 'monotonic');
    last = now;
  }
});
