import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Fifo } from '../../../src/lib/fifo.ts';

test('entries come out in the order they went in, with unshift putting one back in front', () => {
  const fifo = new Fifo<number>();
  assert.equal(fifo.shift(), undefined);
  for (let i = 0; i < 5; i++) fifo.push(i);
  assert.equal(fifo.first, 0);
  assert.equal(fifo.shift(), 0);
  assert.equal(fifo.shift(), 1);
  fifo.unshift(1);
  assert.equal(fifo.length, 4);
  assert.deepEqual([fifo.shift(), fifo.shift(), fifo.shift(), fifo.shift(), fifo.shift()], [1, 2, 3, 4, undefined]);
  assert.equal(fifo.length, 0);
  fifo.unshift(9); // into an empty queue
  assert.equal(fifo.shift(), 9);
});

test('draining 300,000 entries interleaved with pushes keeps order and compacts', () => {
  const fifo = new Fifo<number>();
  let next = 0;
  let expected = 0;
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 100_000; i++) fifo.push(next++);
    for (let i = 0; i < 60_000; i++) assert.equal(fifo.shift(), expected++);
  }
  assert.equal(fifo.length, next - expected);
  while (fifo.length > 0) assert.equal(fifo.shift(), expected++);
  assert.equal(expected, 300_000);
  fifo.push(1);
  fifo.clear();
  assert.equal(fifo.length, 0);
  assert.equal(fifo.first, undefined);
});
