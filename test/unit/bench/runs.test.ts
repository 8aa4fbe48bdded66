// The order targets run in within a group: reversed every other round, so that no target always
// runs first after another group, and neighbours stay back to back (ratios pair them by round).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { roundOrder } from '../../../bench/runs.ts';

test('targets run as listed in odd rounds and in reverse in even ones; the list itself is left alone', () => {
  const targets = ['direct', 'ambassador-txn', 'pgbouncer'] as const;
  assert.deepEqual([1, 2, 3, 4].map((round) => roundOrder(targets, round)), [
    ['direct', 'ambassador-txn', 'pgbouncer'],
    ['pgbouncer', 'ambassador-txn', 'direct'],
    ['direct', 'ambassador-txn', 'pgbouncer'],
    ['pgbouncer', 'ambassador-txn', 'direct'],
  ]);
  assert.deepEqual(targets, ['direct', 'ambassador-txn', 'pgbouncer']);
  // --against: the build under test and the old one swap slots every round.
  assert.deepEqual([1, 2].map((round) => roundOrder(['ambassador-txn', 'ambassador-txn-old'], round)[0]), ['ambassador-txn', 'ambassador-txn-old']);
});
