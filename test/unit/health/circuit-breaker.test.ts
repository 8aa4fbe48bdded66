// CircuitBreaker on a FakeClock: closed -> open after `threshold` consecutive failures, refusing
// without a connect while open (HOST_UNAVAILABLE naming host, breaker, last error, next try),
// half-open after the cooldown or at once on a successful probe, exactly one trial at a time,
// and the trial's outcome closing or reopening it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AmbassadorError } from '../../../src/errors.ts';
import { CircuitBreaker, type BreakerTransition } from '../../../src/health/circuit-breaker.ts';
import { FakeClock } from '../../../src/lib/clock.ts';

function breaker(threshold = 3, cooldownMs = 10_000) {
  const clock = new FakeClock(1_000);
  const changes: BreakerTransition[] = [];
  const cb = new CircuitBreaker('db1:5432', { threshold, cooldownMs }, clock, (change) => changes.push(change));
  const moves = (): string[] => changes.map((change) => `${change.from}->${change.to}`);
  return { clock, cb, changes, moves };
}

function refusal(fn: () => unknown): AmbassadorError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof AmbassadorError, `expected an AmbassadorError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a refusal');
}

test('opens after threshold consecutive failures; a success in between starts the count again', () => {
  const { cb, moves } = breaker(3);
  cb.failed(cb.admit(), 'ECONNREFUSED');
  cb.failed(cb.admit(), 'ECONNREFUSED');
  cb.succeeded(cb.admit());
  cb.failed(cb.admit(), 'ECONNREFUSED');
  cb.failed(cb.admit(), 'ECONNREFUSED');
  assert.equal(cb.state, 'closed', 'two failures since the last success are not three');
  assert.deepEqual(moves(), []);
  cb.failed(cb.admit(), 'connect ECONNREFUSED 10.0.0.1:5432');
  assert.equal(cb.state, 'open');
  assert.deepEqual(moves(), ['closed->open']);
});

test('while open, admit() refuses at once with HOST_UNAVAILABLE naming the host, the breaker, the last error and the next try', () => {
  const { clock, cb, changes } = breaker(1, 10_000);
  cb.failed(cb.admit(), 'connect ECONNREFUSED 10.0.0.1:5432');
  assert.equal(changes[0]!.retryAt, 11_000);
  assert.match(changes[0]!.reason, /1 consecutive connect failures, the last: connect ECONNREFUSED/);
  clock.advance(2_500);
  const err = refusal(() => cb.admit());
  assert.equal(err.code, 'HOST_UNAVAILABLE');
  assert.equal(err.sqlstate, '08001');
  assert.match(err.message, /db1:5432/);
  assert.match(err.message, /circuit breaker is open/);
  assert.match(err.message, /connect ECONNREFUSED 10\.0\.0\.1:5432/);
  assert.match(err.message, /tries again in 7500 ms/);
  assert.equal(cb.refusal()?.code, 'HOST_UNAVAILABLE');
});

test('after the cooldown it is half-open: one trial at a time; the trial succeeding closes it', () => {
  const { clock, cb, moves } = breaker(1, 10_000);
  cb.failed(cb.admit(), 'timeout');
  clock.advance(9_999);
  assert.equal(cb.state, 'open');
  clock.advance(1);
  assert.equal(cb.state, 'half-open');
  assert.equal(cb.refusal(), null, 'a trial may go');
  const trial = cb.admit();
  assert.equal(trial.trial, true);
  const second = refusal(() => cb.admit());
  assert.match(second.message, /half-open.*trial connection is under way/);
  cb.succeeded(trial);
  assert.equal(cb.state, 'closed');
  assert.equal(cb.failures, 0);
  assert.equal(cb.admit().trial, false);
  assert.deepEqual(moves(), ['closed->open', 'open->half-open', 'half-open->closed']);
});

test('the trial failing reopens it with a new cooldown', () => {
  const { clock, cb, changes, moves } = breaker(1, 1_000);
  cb.failed(cb.admit(), 'refused');
  clock.advance(1_000);
  const trial = cb.admit();
  clock.advance(300);
  cb.failed(trial, 'refused again');
  assert.equal(cb.state, 'open');
  assert.equal(changes.at(-1)!.retryAt, clock.now() + 1_000);
  assert.match(changes.at(-1)!.reason, /the trial connect failed: refused again/);
  clock.advance(999);
  assert.equal(cb.state, 'open');
  clock.advance(1);
  assert.equal(cb.state, 'half-open');
  assert.deepEqual(moves(), ['closed->open', 'open->half-open', 'half-open->open', 'open->half-open']);
});

test('a late failure of a connect admitted before the breaker opened does not take the trial\'s place', () => {
  const { clock, cb } = breaker(2, 1_000);
  const early = cb.admit();
  cb.failed(cb.admit(), 'refused');
  cb.failed(cb.admit(), 'refused');
  clock.advance(1_000);
  const trial = cb.admit();
  cb.failed(early, 'timed out long ago');
  assert.equal(cb.state, 'half-open', 'only the trial decides');
  assert.equal(cb.lastError, 'timed out long ago');
  cb.succeeded(trial);
  assert.equal(cb.state, 'closed');
});

test('a successful probe moves an open breaker to half-open at once; it does nothing otherwise', () => {
  const { clock, cb, moves, changes } = breaker(1, 60_000);
  cb.probeSucceeded();
  assert.equal(cb.state, 'closed');
  cb.failed(cb.admit(), 'refused');
  clock.advance(100);
  cb.probeSucceeded();
  assert.equal(cb.state, 'half-open');
  assert.equal(changes.at(-1)!.reason, 'a health probe succeeded');
  assert.deepEqual(clock.pending(), [], 'the cooldown timer is gone');
  cb.probeSucceeded();
  assert.deepEqual(moves(), ['closed->open', 'open->half-open']);
});

test('stop() cancels the cooldown timer', () => {
  const { clock, cb } = breaker(1, 5_000);
  cb.failed(cb.admit(), 'refused');
  assert.deepEqual(clock.pending(), [5_000]);
  cb.stop();
  assert.deepEqual(clock.pending(), []);
  clock.advance(10_000);
  assert.equal(cb.state, 'open');
});
