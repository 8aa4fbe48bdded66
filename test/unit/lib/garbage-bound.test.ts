import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GarbageBound } from '../../../src/lib/garbage-bound.ts';

test('a young-generation collection is requested once per `everyBytes` forwarded', () => {
  const calls: string[] = [];
  const bound = new GarbageBound(1000, (o) => calls.push(o.type));
  for (let i = 0; i < 25; i++) bound.account(100);
  assert.deepEqual(calls, ['minor', 'minor']);
  bound.account(499);
  assert.equal(calls.length, 2);
  bound.account(1);
  assert.equal(calls.length, 3);
});

test('without a collector, or with a zero interval, the bound does nothing', () => {
  const calls: string[] = [];
  const off = new GarbageBound(0, (o) => calls.push(o.type));
  off.account(10_000_000);
  assert.equal(off.active, false);
  assert.deepEqual(calls, []);
  assert.equal(new GarbageBound(1000, null).active, false);
});

test('the process collector can be obtained from V8', () => {
  assert.equal(new GarbageBound(1000).active, true);
});
