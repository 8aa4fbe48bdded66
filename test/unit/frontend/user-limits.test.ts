import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NO_TURN, rateLimited, UserLimits, type UserLimitSettings } from '../../../src/frontend/user-limits.ts';

function limits(settings: Partial<UserLimitSettings>): { limits: UserLimits; clock: { now: number } } {
  const clock = { now: 1_000 };
  const all: UserLimitSettings = { maxConnections: 0, transactionsPerSecond: 0, burst: 0, maxWaitMs: 1_000, ...settings };
  return { limits: new UserLimits(all, () => clock.now), clock };
}

test('maxConnections: a user at its maximum is refused, other users are not, a release frees a place', () => {
  const { limits: l } = limits({ maxConnections: 2 });
  const a1 = l.admit('alice');
  const a2 = l.admit('alice');
  assert.ok(a1 && a2);
  assert.equal(l.admit('alice'), null);
  assert.ok(l.admit('bob'));
  a1.release();
  a1.release(); // twice counts once
  assert.equal(l.connections('alice'), 1);
  assert.ok(l.admit('alice'));
  assert.equal(l.admit('alice'), null);
});

test('0 connections means no per-user limit, and a user without clients leaves no entry behind', () => {
  const { limits: l } = limits({});
  const slots = Array.from({ length: 500 }, () => l.admit('carol')!);
  assert.equal(l.connections('carol'), 500);
  for (const slot of slots) slot.release();
  assert.equal(l.connections('carol'), 0);
});

test('no rate limit: every turn is now', () => {
  const { limits: l } = limits({});
  const slot = l.admit('dave')!;
  assert.equal(slot.limited, false);
  for (let i = 0; i < 1000; i++) assert.equal(slot.turn(), 0);
});

test('rate limit: the burst goes at once, then turns come at the rate, each waiting behind the one before', () => {
  const { limits: l, clock } = limits({ transactionsPerSecond: 10, burst: 3, maxWaitMs: 350 });
  const slot = l.admit('erin')!;
  assert.equal(slot.limited, true);
  assert.deepEqual([slot.turn(), slot.turn(), slot.turn()], [0, 0, 0]);
  // The bucket is empty: 100 ms per transaction, each queued behind the previous reservation.
  assert.deepEqual([slot.turn(), slot.turn(), slot.turn()], [100, 200, 300]);
  // The next would wait 400 ms, over maxWait: refused, and it reserves nothing.
  assert.equal(slot.turn(), NO_TURN);
  assert.equal(slot.turn(), NO_TURN);
  clock.now += 1_000; // 10 tokens' worth: the 3 reservations are paid, the bucket refills to its burst
  assert.deepEqual([slot.turn(), slot.turn(), slot.turn(), slot.turn()], [0, 0, 0, 100]);
});

test('rate limit: the bucket is per user, shared by all of its clients', () => {
  const { limits: l } = limits({ transactionsPerSecond: 1, burst: 1, maxWaitMs: 0 });
  const first = l.admit('frank')!;
  const second = l.admit('frank')!;
  const other = l.admit('grace')!;
  assert.equal(first.turn(), 0);
  assert.equal(second.turn(), NO_TURN);
  assert.equal(other.turn(), 0);
});

test('burst 0 means one second of transactions', () => {
  const { limits: l } = limits({ transactionsPerSecond: 5, maxWaitMs: 0 });
  const slot = l.admit('heidi')!;
  for (let i = 0; i < 5; i++) assert.equal(slot.turn(), 0);
  assert.equal(slot.turn(), NO_TURN);
});

test('a reload changes the rate for the next turn', () => {
  const { limits: l } = limits({ transactionsPerSecond: 1, burst: 1, maxWaitMs: 0 });
  const slot = l.admit('ivan')!;
  assert.equal(slot.turn(), 0);
  assert.equal(slot.turn(), NO_TURN);
  l.configure({ maxConnections: 0, transactionsPerSecond: 0, burst: 0, maxWaitMs: 0 });
  assert.equal(slot.limited, false);
  assert.equal(slot.turn(), 0);
});

test('the refusal is SQLSTATE 53400 naming the user and the setting', () => {
  const { limits: l } = limits({ transactionsPerSecond: 1 });
  const err = rateLimited(l.admit('judy')!);
  assert.equal(err.sqlstate, '53400');
  assert.match(err.message, /"judy"/);
  assert.match(err.hint ?? '', /listen\.rateLimit/);
});
