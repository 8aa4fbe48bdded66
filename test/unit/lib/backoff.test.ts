// backoffDelay (the pure formula, equal jitter) and FailureBackoff (consecutive failures of one target).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffDelay, FailureBackoff } from '../../../src/lib/backoff.ts';
import { seededRandom } from '../../support/random.ts';

const policy = { initialDelayMs: 100, maxDelayMs: 1000 };

test('the ceiling doubles per attempt from initialDelay and stops at maxDelay', () => {
  const ceilings = [0, 1, 2, 3, 4, 5, 6].map((attempt) => backoffDelay(attempt, policy, () => 1));
  assert.deepEqual(ceilings, [100, 200, 400, 800, 1000, 1000, 1000]);
});

test('equal jitter: the delay is half the ceiling plus random() times the other half', () => {
  assert.equal(backoffDelay(2, policy, () => 0), 200);
  assert.equal(backoffDelay(2, policy, () => 0.5), 300);
  assert.equal(backoffDelay(2, policy, () => 0.25), 250);
  assert.equal(backoffDelay(5, policy, () => 0), 500, 'never less than half of maxDelay once capped');
});

test('equal jitter: every delay lies in [c/2, c], and below the cap the spacing never shrinks', () => {
  const random = seededRandom(7);
  const wide = { initialDelayMs: 50, maxDelayMs: 1_000_000 };
  for (let run = 0; run < 200; run++) {
    let previous = 0;
    for (let attempt = 0; attempt < 12; attempt++) {
      const ceiling = Math.min(wide.maxDelayMs, wide.initialDelayMs * 2 ** attempt);
      const delay = backoffDelay(attempt, wide, random);
      assert.ok(delay >= ceiling / 2 && delay <= ceiling, `attempt ${attempt}: ${delay} outside [${ceiling / 2}, ${ceiling}]`);
      assert.ok(delay >= previous, `attempt ${attempt}: ${delay} shorter than the previous ${previous}`);
      previous = delay;
    }
  }
});

test('huge or negative attempt numbers give a finite delay', () => {
  assert.equal(backoffDelay(10_000, policy, () => 1), 1000);
  assert.equal(backoffDelay(-3, policy, () => 1), 100);
  assert.equal(backoffDelay(3, { initialDelayMs: 0, maxDelayMs: 0 }, () => 1), 0);
});

test('FailureBackoff: no delay until a failure, growing with consecutive failures, reset by success', () => {
  const backoff = new FailureBackoff(policy, () => 0.5);
  assert.equal(backoff.delay(), 0);
  const delays: number[] = [];
  for (let i = 0; i < 6; i++) {
    backoff.fail();
    delays.push(backoff.delay());
  }
  assert.deepEqual(delays, [75, 150, 300, 600, 750, 750]);
  assert.equal(backoff.failures, 6);
  backoff.succeed();
  assert.equal(backoff.failures, 0);
  assert.equal(backoff.delay(), 0);
});

test('FailureBackoff: setPolicy applies new limits and keeps the failure count', () => {
  const backoff = new FailureBackoff(policy, () => 1);
  backoff.fail();
  backoff.fail();
  assert.equal(backoff.delay(), 200);
  backoff.setPolicy({ initialDelayMs: 10, maxDelayMs: 15 });
  assert.equal(backoff.failures, 2);
  assert.equal(backoff.delay(), 15);
});
