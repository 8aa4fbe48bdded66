// Per-interval operation counts and latency percentiles: each window summarises only what was
// recorded since it last closed.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OpWindow, windowTotals } from '../../../soak/op-window.ts';

test('p50, p99 and max are nearest-rank over the completed operations of the window only', () => {
  const window = new OpWindow();
  for (let ms = 1; ms <= 200; ms++) window.record('short', 'ok', ms);
  window.record('short', 'unexpected', 99_999); // a failed operation's time is not a latency
  window.record('short', 'expected', 99_999);
  const first = window.close();
  assert.deepEqual(first.short, { ops: 200, expectedErrors: 1, unexpectedErrors: 1, p50Ms: 100, p99Ms: 198, maxMs: 200 });
  assert.deepEqual(first['long-txn'], { ops: 0, expectedErrors: 0, unexpectedErrors: 0, p50Ms: null, p99Ms: null, maxMs: null });

  window.record('short', 'ok', 7);
  const second = window.close();
  assert.deepEqual(second.short, { ops: 1, expectedErrors: 0, unexpectedErrors: 0, p50Ms: 7, p99Ms: 7, maxMs: 7 }, 'a new window after close');
});

test('expected errors seen by completed operations (disconnects) count without ending an operation', () => {
  const window = new OpWindow();
  window.record('disconnect', 'ok', 30);
  window.expectedError('disconnect');
  window.record('disconnect', 'ok', 10);
  const summary = window.close();
  assert.equal(summary.disconnect.ops, 2);
  assert.equal(summary.disconnect.expectedErrors, 1);
  assert.deepEqual(windowTotals(summary), { ops: 2, expectedErrors: 1, unexpectedErrors: 0 });
});

test('latencies are sorted as numbers, not as text', () => {
  const window = new OpWindow();
  for (const ms of [9, 100, 20, 3]) window.record('big-result', 'ok', ms);
  const summary = window.close()['big-result'];
  assert.equal(summary.p50Ms, 9);
  assert.equal(summary.maxMs, 100);
});
